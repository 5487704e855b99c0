# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The Feetech path without hardware.

LeRobot's real ``FeetechMotorsBus`` and ``SO101Follower`` on an emulated STS3215 bus (a pty), driven by Sigma's robot
bridge (no ROS).
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

pytest.importorskip("scservo_sdk")

from lerobot.motors import Motor, MotorNormMode  # noqa: E402
from lerobot.motors.feetech import FeetechMotorsBus  # noqa: E402
from lerobot.robots import make_robot_from_config  # noqa: E402
from lerobot.robots.so_follower import SO101FollowerConfig  # noqa: E402

from lerobot_robot_sigma_sim.feetech_emulator import (  # noqa: E402
    INST_SYNC_WRITE, SO101_MOTORS, FeetechBusEmulator, checksum, relax_timeouts, write_calibration,
)
from sigma_model.robot_bridge import BridgeError, RobotBridge  # noqa: E402
from sigma_model.safety import SO101_LOWER_LIMITS, SO101_UPPER_LIMITS  # noqa: E402

HOMING = 50
ARM = (HOMING, 1400, 2700)  # the arm joints' calibrated range: +-650 ticks around 2050, +-0.997 rad
GRIPPER = (HOMING, 2000, 3400)
CALIBRATION = {**{m: ARM for m in SO101_MOTORS[:5]}, "gripper": GRIPPER}
START = [2300 + HOMING] * 5 + [2100 + HOMING]  # encoder positions: present 2300 (arm, +0.38 rad), 2100 (gripper)
TICKS_PER_RAD = 4095 / (2 * math.pi)


@pytest.fixture
def emulator():
    with FeetechBusEmulator(positions=START) as emu:
        yield emu


@pytest.fixture
def fast_emulator():
    """Servos that reach their goal at once: the targets' progression does not depend on timing."""
    with FeetechBusEmulator(positions=START, speed=1e9) as emu:
        yield emu


def _follower(emu, tmp_path, calibrate: bool = True, robot_id: str = "follower"):
    if calibrate:
        write_calibration(tmp_path / f"{robot_id}.json", CALIBRATION)
    robot = make_robot_from_config(SO101FollowerConfig(port=emu.port, id=robot_id, calibration_dir=tmp_path))
    relax_timeouts(robot.bus)
    return robot


def _bridge(robot, **kwargs) -> RobotBridge:
    kwargs.setdefault("max_step", 0.1)
    return RobotBridge(robot, SO101_MOTORS, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS, SO101_LOWER_LIMITS,
                       SO101_UPPER_LIMITS, **kwargs)


def _goals(emu, since: int = 0) -> list[dict[int, int]]:
    """Goal_Position sync writes after the first ``since`` writes, one dict (id -> ticks) per packet."""
    out: dict[float, dict[int, int]] = {}
    for w in emu.writes_of("Goal_Position")[since:]:
        out.setdefault(w.t, {})[w.id] = w.value
    return list(out.values())


def test_a_packet_just_written_is_handled_before_the_emulator_reports(emulator):
    """The emulator reads what is on its port before it reports registers or writes, so it never misses a packet.

    Counting the bytes waiting (FIONREAD) instead missed about 1 in 200 packets just written on Linux: the
    pseudo-terminal passes them on a moment later.
    """
    port = os.open(emulator.port, os.O_RDWR | os.O_NOCTTY)
    try:
        for k in range(2000):
            goal = 1400 + k % 1000
            body = [0xFE, 7, INST_SYNC_WRITE, 42, 2, 1, goal & 0xFF, goal >> 8]  # Goal_Position of servo 1, no answer
            os.write(port, bytes([0xFF, 0xFF, *body, checksum(body)]))
            writes = emulator.writes_of("Goal_Position")
            assert len(writes) == k + 1 and writes[-1].value == goal, k
    finally:
        os.close(port)


def test_lerobot_feetech_bus_talks_to_the_emulator(emulator):
    bus = FeetechMotorsBus(emulator.port, {m: Motor(i + 1, "sts3215", MotorNormMode.DEGREES)
                                           for i, m in enumerate(SO101_MOTORS)})
    relax_timeouts(bus)
    bus.connect()  # handshake: ping every id, model number 777, the same firmware version
    try:
        assert bus.broadcast_ping() == {i: 777 for i in range(1, 7)}
        assert bus.sync_read("Present_Position", normalize=False) == dict(zip(SO101_MOTORS, [2350] * 5 + [2150]))
        bus.write("Homing_Offset", "gripper", HOMING, normalize=False)
        assert bus.read("Homing_Offset", "gripper", normalize=False) == HOMING
        assert bus.read("Present_Position", "gripper", normalize=False) == 2100
        bus.write("Homing_Offset", "elbow_flex", -20, normalize=False)  # sign-magnitude, as LeRobot encodes it
        assert bus.read("Homing_Offset", "elbow_flex", normalize=False) == -20
        bus.sync_write("Goal_Position", {"gripper": 2300, "wrist_roll": 1900}, normalize=False)
        assert emulator.register(6, "Present_Position") == 2100  # no torque, no motion
        bus.enable_torque(["gripper", "wrist_roll"])
        assert emulator.register(6, "Goal_Position") == 2100  # torque on: the servo holds where it is
        bus.sync_write("Goal_Position", {"gripper": 2300, "wrist_roll": 1900}, normalize=False)
        deadline = time.monotonic() + 10.0  # 3000 ticks/s: 150 ms of motion
        while bus.sync_read("Present_Position", ["gripper", "wrist_roll"], normalize=False) != \
                {"gripper": 2300, "wrist_roll": 1900} and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bus.sync_read("Present_Position", ["gripper", "wrist_roll"], normalize=False) == \
            {"gripper": 2300, "wrist_roll": 1900}
        assert emulator.registers("Torque_Enable") == {1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 1}
        # a corrupted packet gets no answer
        fd = os.open(emulator.port, os.O_RDWR | os.O_NOCTTY)
        try:
            before = emulator.bad_packets
            os.write(fd, bytes([0xFF, 0xFF, 1, 2, 1, 0x00]))  # ping id 1 with a wrong checksum
            deadline = time.monotonic() + 10.0  # the emulator thread counts it when it is scheduled
            while emulator.bad_packets == before and time.monotonic() < deadline:
                time.sleep(0.01)
            assert emulator.bad_packets == before + 1
        finally:
            os.close(fd)
    finally:
        bus.disconnect(disable_torque=True)
    assert emulator.registers("Torque_Enable") == {i: 0 for i in range(1, 7)}


def test_bridge_loads_the_calibration_file_and_holds_on_start(emulator, tmp_path):
    robot = _follower(emulator, tmp_path)
    bridge = _bridge(robot)
    first = bridge.connect()
    try:
        for i in range(1, 7):  # the file was written to the motors (they had the factory values)
            h, lo, hi = CALIBRATION[SO101_MOTORS[i - 1]]
            assert (emulator.register(i, "Homing_Offset"), emulator.register(i, "Min_Position_Limit"),
                    emulator.register(i, "Max_Position_Limit")) == (h, lo, hi)
        assert robot.is_calibrated
        assert emulator.registers("Torque_Enable") == {i: 1 for i in range(1, 7)}
        # radians: degrees from the middle of the range (2050); the gripper 0..100 over the joint range
        np.testing.assert_allclose(first.positions[:5], (2300 - 2050) / TICKS_PER_RAD, atol=1e-9)
        assert first.positions[5] == pytest.approx(-0.17453 + (100 / 1400) * (1.74533 + 0.17453), abs=1e-6)
        lo, hi = bridge.limits
        np.testing.assert_allclose(hi[:5], 650 / TICKS_PER_RAD, atol=1e-9)
        np.testing.assert_allclose(lo[:5], -650 / TICKS_PER_RAD, atol=1e-9)
        n = len(emulator.writes_of("Goal_Position"))
        bridge.tick(0.0)  # no command: hold where the arm is
        assert _goals(emulator, n) == [{i: (2300 if i < 6 else 2100) for i in range(1, 7)}]
        # LeRobot's own max_relative_target is set (0.25 rad in each motor's unit) as a second line
        cap = robot.config.max_relative_target
        assert cap["shoulder_pan"] == pytest.approx(math.degrees(0.25))
        assert cap["gripper"] == pytest.approx(0.25 / (1.74533 + 0.17453) * 100)
    finally:
        bridge.close()


def test_bridge_keeps_targets_in_the_calibrated_range_and_the_step_limit(fast_emulator, tmp_path):
    emulator = fast_emulator
    bridge = _bridge(_follower(emulator, tmp_path), max_step=0.1)
    bridge.connect()
    n = len(emulator.writes_of("Goal_Position"))
    far = np.array([3.0, -3.0, 3.0, -3.0, 3.0, 3.0])  # beyond every limit
    t = 0.0
    for k in range(60):
        if k % 3 == 0:
            bridge.command(far if k < 30 else -far, t)
        bridge.tick(t)
        t += 1 / 30
    goals = _goals(emulator, n)
    assert len(goals) == 60
    ticks = np.array([[g[i] for i in range(1, 7)] for g in goals], dtype=float)
    lo = np.array([c[1] for c in (CALIBRATION[m] for m in SO101_MOTORS)])
    hi = np.array([c[2] for c in (CALIBRATION[m] for m in SO101_MOTORS)])
    assert (ticks >= lo).all() and (ticks <= hi).all(), "a goal outside the calibrated range was sent"
    step = np.abs(np.diff(ticks, axis=0))
    max_arm = 0.1 * TICKS_PER_RAD + 1  # +1: LeRobot truncates to whole ticks
    max_gripper = 0.1 / (1.74533 + 0.17453) * 1400 + 1
    assert step[:, :5].max() <= max_arm and step[:, 5].max() <= max_gripper, step.max(axis=0)
    assert ticks[29, :5].tolist() == [2700, 1400, 2700, 1400, 2700]  # reached the calibrated ends
    assert ticks[29, 5] == 3400 and ticks[-1, 5] == 2000
    with pytest.raises(ValueError, match="finite"):
        bridge.command([0.0, 0.0, float("nan"), 0.0, 0.0, 0.0], t)
    bridge.close()


def test_a_failed_send_does_not_let_the_next_goal_jump(tmp_path):
    """LeRobot reads the present position before it writes a goal (max_relative_target): that read can time out.

    Then the goal is not written, and the next one must stay within max_step of the goal the motors still hold, even
    when the arm is measured past it (pushed, or falling). The servos here move only when the test moves them: to the
    goal a tick writes, by the read of that tick; during the failed send the arm is pushed 1.5 max_step past the last
    goal written, in the direction of motion.
    """
    s = 0.1 * TICKS_PER_RAD
    direction = np.array([1, -1, 1, -1, 1])
    with FeetechBusEmulator(positions=START, speed=0.0) as emulator:
        bridge = _bridge(_follower(emulator, tmp_path), max_step=0.1)
        bridge.connect()
        n = len(emulator.writes_of("Goal_Position"))
        for k in range(8):
            bridge.command(np.array([3.0, -3.0, 3.0, -3.0, 3.0, 3.0]), k / 30)
            if k == 3:
                emulator.mute_sync_reads = 1  # the send's read of the present position gets no answer
            written = _goals(emulator, n)[-1] if k > 0 else None
            for i in range(1, 6):
                if written is not None:  # one max_step on from the last goal written (1.5 during the failed send)
                    ahead = (1.5 if k == 3 else 1.0) * s * direction[i - 1]
                    emulator.set_actual(i, written[i] + emulator.register(i, "Homing_Offset") + ahead)
            tick = bridge.tick(k / 30)
            assert ("send_action failed" in tick.error) == (k == 3) and tick.observation is not None, (k, tick.error)
        goals = _goals(emulator, n)
        assert len(goals) == 7 and bridge.send_errors == 1
        ticks = np.array([[g[i] for i in range(1, 6)] for g in goals], dtype=float)
        assert np.abs(np.diff(ticks, axis=0)).max() <= s + 1, np.diff(ticks, axis=0)
        assert (np.diff(ticks, axis=0) * direction >= 0).all() and (ticks[-1] - ticks[0]) @ direction > 0  # moved on
        bridge.close()


def test_bridge_holds_after_the_command_timeout(fast_emulator, tmp_path):
    emulator = fast_emulator
    bridge = _bridge(_follower(emulator, tmp_path), max_step=0.02, command_timeout_s=0.5)
    bridge.connect()
    bridge.command([0.5] * 5 + [1.0], 0.0)
    n = len(emulator.writes_of("Goal_Position"))
    for k in range(30):  # 1 s of ticks: moving for 0.5 s, then holding
        bridge.tick(k / 30)
    goals = _goals(emulator, n)
    moving, holding = goals[:15], goals[16:]
    assert len({tuple(g.values()) for g in moving}) == 15  # every tick moved on
    assert len({tuple(g.values()) for g in holding}) == 1  # every tick after the timeout: the same target
    assert holding[0] != moving[0]
    bridge.close()


@pytest.mark.parametrize("policy,torque", [("hold", 1), ("release", 0)])
def test_bridge_close_follows_the_torque_policy(emulator, tmp_path, policy, torque):
    robot = _follower(emulator, tmp_path)
    bridge = _bridge(robot, torque_on_exit=policy)
    bridge.connect()
    bridge.command([0.3] * 6, 0.0)
    for k in range(5):
        bridge.tick(k / 30)
    n = len(emulator.writes_of("Goal_Position"))
    bridge.close()
    assert not robot.is_connected
    assert emulator.registers("Torque_Enable") == {i: torque for i in range(1, 7)}
    # the last command holds at the position measured last (not the target it was heading to)
    (last,) = _goals(emulator, n)
    measured = bridge.units.from_radians(bridge.measured)
    for i, m in enumerate(SO101_MOTORS, start=1):
        assert abs(robot.bus._unnormalize({i: measured[f"{m}.pos"]})[i] - last[i]) <= 1


def test_bridge_refuses_a_robot_without_calibration(emulator, tmp_path):
    robot = _follower(emulator, tmp_path, calibrate=False, robot_id="new_arm")
    connects, connect = [], robot.connect
    robot.connect = lambda *a, **k: connects.append(1) or connect(*a, **k)
    with pytest.raises(BridgeError, match=r"not calibrated.*lerobot-calibrate --robot.type=so101_follower"):
        _bridge(robot, robot_type="so101_follower").connect()
    assert not robot.is_connected
    assert len(connects) == 1  # a configuration error is not retried like a missed status packet


def test_bridge_refuses_a_robot_with_other_joints(emulator, tmp_path):
    robot = _follower(emulator, tmp_path)
    with pytest.raises(BridgeError, match="not the joints"):
        RobotBridge(robot, ["a", "b"], [0, 0], [1, 1], [0, 0], [1, 1])


def test_bridge_retries_a_connection_that_misses_a_status_packet(emulator, tmp_path):
    emulator.mute_reads = 1  # one read at connect gets no answer (a bus hiccup)
    bridge = _bridge(_follower(emulator, tmp_path))
    try:
        first = bridge.connect()
        assert emulator.mute_reads == 0 and first is not None
        np.testing.assert_allclose(first.positions[:5], (2300 - 2050) / TICKS_PER_RAD, atol=1e-9)
    finally:
        bridge.close()
    emulator.mute_reads = 10**6  # a bus that never answers: LeRobot's error after the last attempt
    with pytest.raises(RuntimeError, match="motor check failed"):
        _bridge(_follower(emulator, tmp_path, robot_id="other")).connect()
