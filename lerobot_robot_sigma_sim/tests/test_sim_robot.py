# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The simulated SO-101 as a LeRobot robot.

Found by LeRobot's plugin discovery (distribution ``lerobot_robot_sigma_sim``), driven by Sigma's robot bridge as a real
arm is.
"""

from __future__ import annotations

import numpy as np
import pytest

from sigma_model.robot_bridge import BridgeError, RobotBridge, make_robot, robot_types
from sigma_model.safety import KNOWN_JOINT_LIMITS, SO101_JOINT_NAMES, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS


def test_sim_robot_is_a_lerobot_robot_type_driven_through_the_bridge():
    assert {"sigma_so101_sim", "so101_follower"} <= set(robot_types())
    robot = make_robot("sigma_so101_sim", {"image_width": 32, "image_height": 32, "camera_fps": 10.0, "seed": 3})
    assert type(robot).__name__ == "SigmaSO101Sim"
    bridge = RobotBridge(robot, SO101_JOINT_NAMES, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS, SO101_LOWER_LIMITS,
                         SO101_UPPER_LIMITS, max_step=0.05)
    first = bridge.connect()
    try:
        assert [u.mode for u in bridge.units.joints] == ["degrees"] * 5 + ["range_0_100"]
        assert first.frames["front"].shape == (32, 32, 3) and first.frames["front"].dtype == np.uint8
        np.testing.assert_allclose(first.positions, robot.env.joint_positions, atol=1e-9)
        target = first.positions + np.array([0.3, -0.2, 0.2, 0.1, -0.3, 0.2])
        frames, prev = 0, first.positions
        for k in range(60):  # 2 s of simulated time at 30 Hz
            bridge.command(target, k / 30)
            tick = bridge.tick(k / 30)
            assert tick.error == ""
            frames += "front" in tick.observation.frames
            assert (np.abs(tick.sent - prev) <= 0.05 + 1e-9).all()  # the bridge's max_step
            prev = tick.sent
        assert frames == 20  # a new frame every round(30 / 10) reads
        np.testing.assert_allclose(bridge.measured, target, atol=0.05)  # the physics followed the targets
        assert robot.episode_status()["step"] == 60
    finally:
        bridge.close()
    assert not robot.is_connected
    with pytest.raises(Exception, match="unknown robot type 'no_such_robot'"):
        make_robot("no_such_robot")


@pytest.mark.parametrize("fields, message", [
    ({"max_relative_target": -1}, "robot config of sigma_so101_sim: max_relative_target must be a finite number > 0, "
                                  "got -1.0"),  # the config's own check, not draccus' "Couldn't instantiate"
    ({"max_relative_target": "x"}, "robot config of sigma_so101_sim: `max_relative_target`: Could not decode the value "
                                   "into any of the given types: float: Couldn't parse 'x' into a float dict: "),
    ({"bogus": 1}, "robot config of sigma_so101_sim: The fields `bogus` are not valid for SigmaSO101SimConfig"),
])
def test_a_bad_robot_config_is_one_line_that_names_the_cause(fields, message):
    with pytest.raises(BridgeError) as refused:
        make_robot("sigma_so101_sim", fields)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value), str(refused.value)


def test_after_a_reset_the_bridge_starts_from_the_new_position_not_the_old_one():
    """A simulator reset moves the arm at once: no command afterwards may head back towards where it was before."""
    robot = make_robot("sigma_so101_sim", {"image_width": 32, "image_height": 32, "seed": 3})
    bridge = RobotBridge(robot, SO101_JOINT_NAMES, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS, SO101_LOWER_LIMITS,
                         SO101_UPPER_LIMITS, max_step=0.2, max_relative_target=None)
    first = bridge.connect()
    try:
        away = first.positions + np.array([-0.5, 0.6, -0.6, 0.4, -0.4, 0.5])
        t = 0.0
        for _ in range(45):  # the arm moves far from its start
            t += 1 / 30
            bridge.command(away, t)
            bridge.tick(t)
        assert np.abs(bridge.measured - first.positions).max() > 0.3
        robot.reset_episode(4, "move the cube to the left")
        bridge.forget()
        t += 1 / 30
        tick = bridge.tick(t, send=False)
        assert tick.decision.command is None  # nothing known about the new position yet: no hold target either
        for _ in range(10):
            present = np.asarray(robot.env.joint_positions, dtype=np.float64)
            t += 1 / 30
            bridge.command(present, t)  # hold still where the arm is now
            tick = bridge.tick(t)
            assert np.abs(tick.sent - present).max() <= 1e-6, (tick.sent - present).round(3)
    finally:
        bridge.close()


@pytest.mark.parametrize("reported", [float("nan"), 5000.0, -5000.0])
def test_a_robot_reporting_goals_that_cannot_be_is_a_failed_send_not_a_crash(reported):
    """A reported goal that cannot be one (NaN, degrees far beyond the limits) neither stops the loop nor counts.

    ``send_action`` returns the goals written; a bad bus read or conversion may make one impossible. The send
    counts as failed, and the next goals stay within the limits and within max_step of the goal before and the one
    sent.
    """
    robot = make_robot("sigma_so101_sim", {"image_width": 32, "image_height": 32, "seed": 3})
    bridge = RobotBridge(robot, SO101_JOINT_NAMES, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS, SO101_LOWER_LIMITS,
                         SO101_UPPER_LIMITS, max_step=0.05, max_relative_target=None)
    first = bridge.connect()
    send = robot.send_action
    try:
        target = first.positions + np.array([0.3, -0.2, 0.2, 0.1, -0.3, 0.2])
        sent = [first.positions]
        for k in range(12):
            if k in (4, 5):
                robot.send_action = lambda action: {**send(action), "elbow_flex.pos": reported}
            bridge.command(target, k / 30)
            tick = bridge.tick(k / 30)
            robot.send_action = send
            assert ("not credible" in tick.error) == (k in (4, 5)) and tick.observation is not None, (k, tick.error)
            sent.append(bridge.safety.last_command)
        assert bridge.send_errors == 2
        sent = np.array(sent)
        assert np.abs(np.diff(sent, axis=0)).max() <= 0.05 + 1e-9
        assert ((sent >= SO101_LOWER_LIMITS) & (sent <= SO101_UPPER_LIMITS)).all()
        np.testing.assert_allclose(sent[-1], target, atol=1e-9)  # and the loop went on to its target
    finally:
        bridge.close()


def test_the_bridge_takes_each_joints_limits_and_range_by_name_in_any_joint_order():
    """joint_names reversed, no limits or ranges given: each joint gets its own, by name.

    Before, the robot node passed the SO-101's limits and ranges in their order: reversed, the gripper's 0..100 spanned
    shoulder_pan's range and its targets were kept within shoulder_pan's limits.
    """
    names = tuple(reversed(SO101_JOINT_NAMES))
    robot = make_robot("sigma_so101_sim", {"image_width": 32, "image_height": 32, "seed": 3})
    bridge = RobotBridge(robot, names, max_step=10.0, max_relative_target=None)
    first = bridge.connect()
    try:
        np.testing.assert_allclose(first.positions, robot.env.joint_positions[::-1], atol=1e-9)
        lo, hi = bridge.limits
        assert dict(zip(names, lo)) == pytest.approx({j: KNOWN_JOINT_LIMITS[j][0] for j in names})
        assert dict(zip(names, hi)) == pytest.approx({j: KNOWN_JOINT_LIMITS[j][1] for j in names})
        bridge.command(np.full(6, 3.0), 0.0)
        tick = bridge.tick(0.0)
        assert dict(zip(names, tick.sent)) == pytest.approx({j: KNOWN_JOINT_LIMITS[j][1] for j in names})
    finally:
        bridge.close()
