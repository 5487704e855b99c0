# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The simulated SO-101's ``max_relative_target`` and ``send_action``: bad caps refused, the goal held returned."""

from __future__ import annotations

import math

import pytest

from lerobot_robot_sigma_sim import SigmaSO101Sim, SigmaSO101SimConfig
from sigma_sim.scene import JOINT_NAMES

CAPS = {j: 5.0 for j in JOINT_NAMES}


@pytest.fixture
def connect():
    robots = []

    def make(**fields) -> SigmaSO101Sim:
        robot = SigmaSO101Sim(SigmaSO101SimConfig(camera="", seed=3, **fields))
        robot.connect()
        robots.append(robot)
        return robot

    yield make
    for robot in robots:
        robot.disconnect()


@pytest.mark.parametrize("cap, words", [
    (-5.0, "max_relative_target must be a finite number > 0, got -5.0"),
    (0, "got 0"), (math.nan, "got nan"), (math.inf, "got inf"), (True, "got True"),
    ({"shoulder_pan": 5.0}, "a cap for each joint of"),
    ({**CAPS, "elbow": 5.0}, "and no other"),
    ({**CAPS, "gripper": -1.0}, "max_relative_target[gripper] must be a finite number > 0, got -1.0"),
])
def test_a_cap_that_is_no_cap_is_refused_when_the_config_is_made(cap, words):
    """Before, -5 drove a held arm 5 degrees a tick, NaN turned the cap off, a partial dict failed at the first send."""
    with pytest.raises(ValueError) as raised:
        SigmaSO101SimConfig(camera="", max_relative_target=cap)
    assert words in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("field", ["control_hz", "camera_fps", "max_episode_s"])
def test_rates_and_durations_must_be_finite_and_positive(field):
    for value in (0.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=f"{field} must be a finite number > 0"):
            SigmaSO101SimConfig(camera="", **{field: value})
    with pytest.raises(ValueError, match="success_hold_s must be a finite number >= 0"):
        SigmaSO101SimConfig(camera="", success_hold_s=math.nan)


def test_an_int_cap_or_a_full_dict_caps_every_tick(connect):
    """An int (5) is a cap as 5.0 is (LeRobot's check took floats only: a TypeError at the first send)."""
    assert SigmaSO101SimConfig(camera="", max_relative_target=5).max_relative_target == 5.0
    for cap in (5, {**CAPS, "shoulder_pan": 2}):
        robot = connect(max_relative_target=cap)
        present = robot.get_observation()
        sent = robot.send_action({**present, "shoulder_pan.pos": present["shoulder_pan.pos"] + 90.0})
        step = 2.0 if isinstance(cap, dict) else 5.0
        assert sent["shoulder_pan.pos"] == pytest.approx(present["shoulder_pan.pos"] + step)


def test_send_action_returns_the_goal_the_motors_hold(connect):
    """A goal beyond a joint's range is held at its end: that is what is returned (and lerobot-record records)."""
    robot = connect()
    present = robot.get_observation()
    sent = robot.send_action({**present, "shoulder_pan.pos": 1e30, "gripper.pos": -1e30})
    assert sent == robot.units.from_radians(robot.env.last_action)
    assert sent["shoulder_pan.pos"] == pytest.approx(math.degrees(robot.env.ctrl_high[0]))
    assert sent["gripper.pos"] == pytest.approx(0.0, abs=1e-9)
    assert sent["elbow_flex.pos"] == pytest.approx(present["elbow_flex.pos"])


def test_an_action_without_every_joint_is_one_line_naming_them_and_sends_nothing(connect):
    robot = connect()
    present = robot.get_observation()
    action = {k: v for k, v in present.items() if k not in ("wrist_roll.pos", "gripper.pos")}
    with pytest.raises(ValueError, match=r"^action lacks \['wrist_roll.pos', 'gripper.pos'\]; sigma_so101_sim needs"):
        robot.send_action(action)
    assert robot.episode_status()["step"] == 0
