# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""LeRobot motor units <-> radians (sigma_model.robot_units), one test per norm mode.

Checked against LeRobot's own normalisation (``SerialMotorsBus._normalize``) where LeRobot is installed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sigma_model.robot_units import (
    DEGREES, RADIANS, RANGE_0_100, RANGE_M100_100, JointUnits, RobotUnits, dataset_units, degrees_range_rad,
    units_of_robot,
)
from sigma_model.safety import SO101_JOINT_NAMES, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS

LO, HI = -0.17453, 1.74533  # the SO-101 gripper's range


def _lerobot_bus(norm_mode: str, range_min: int, range_max: int, drive_mode: int = 0):
    """Return a real FeetechMotorsBus (never connected) holding one calibrated motor."""
    pytest.importorskip("lerobot")
    pytest.importorskip("scservo_sdk")
    from lerobot.motors import Motor, MotorCalibration, MotorNormMode
    from lerobot.motors.feetech import FeetechMotorsBus

    motors = {"j": Motor(1, "sts3215", MotorNormMode(norm_mode))}
    cal = {
        "j": MotorCalibration(id=1, drive_mode=drive_mode, homing_offset=0, range_min=range_min, range_max=range_max)
    }
    return FeetechMotorsBus("/dev/null", motors, calibration=cal)


def test_degrees_are_angles_from_the_middle_of_the_calibrated_range():
    u = JointUnits(DEGREES, LO, HI)
    assert u.to_radians(90.0) == pytest.approx(math.pi / 2, abs=1e-12)
    assert u.to_radians(-45.0) == pytest.approx(-math.pi / 4, abs=1e-12)
    assert u.from_radians(math.pi) == pytest.approx(180.0, abs=1e-12)
    for q in np.linspace(-2.5, 2.5, 11):
        assert u.to_radians(u.from_radians(q)) == pytest.approx(q, abs=1e-12)
    assert u.step_from_radians(math.radians(10.0)) == pytest.approx(10.0)
    # LeRobot's degrees of a raw encoder value -> the shaft's angle from the range middle
    bus = _lerobot_bus("degrees", 1000, 3000)
    for raw in (1000, 1500, 2000, 2731, 3000):
        deg = bus._normalize({1: raw})[1]
        assert u.to_radians(deg) == pytest.approx((raw - 2000) * 2 * math.pi / 4095, abs=1e-12)
    assert degrees_range_rad(1000, 3000, 4095) == pytest.approx((-2000 * math.pi / 4095, 2000 * math.pi / 4095))


def test_range_m100_100_spans_the_joint_range():
    lo, hi = -1.91986, 1.91986
    u = JointUnits(RANGE_M100_100, lo, hi)
    assert u.to_radians(-100.0) == pytest.approx(lo)
    assert u.to_radians(100.0) == pytest.approx(hi)
    assert u.to_radians(0.0) == pytest.approx(0.0, abs=1e-12)
    assert u.to_radians(50.0) == pytest.approx(hi / 2)
    for q in np.linspace(lo, hi, 9):
        assert u.to_radians(u.from_radians(q)) == pytest.approx(q, abs=1e-12)
    assert u.step_from_radians(hi - lo) == pytest.approx(200.0)
    assert u.range_rad == (lo, hi)
    # LeRobot: the calibrated range's ends are -100 / +100 (also with an inverted drive)
    for drive_mode, (raw_lo, raw_hi) in ((0, (1200, 2900)), (1, (2900, 1200))):
        bus = _lerobot_bus("range_m100_100", 1200, 2900, drive_mode)
        assert u.to_radians(bus._normalize({1: raw_lo})[1]) == pytest.approx(lo)
        assert u.to_radians(bus._normalize({1: raw_hi})[1]) == pytest.approx(hi)


def test_range_0_100_is_the_gripper_closed_at_the_low_end():
    u = JointUnits(RANGE_0_100, LO, HI)
    assert u.to_radians(0.0) == pytest.approx(LO)
    assert u.to_radians(100.0) == pytest.approx(HI)
    assert u.to_radians(25.0) == pytest.approx(LO + 0.25 * (HI - LO))
    assert u.from_radians(LO) == pytest.approx(0.0, abs=1e-12)
    for q in np.linspace(LO, HI, 9):
        assert u.to_radians(u.from_radians(q)) == pytest.approx(q, abs=1e-12)
    assert u.step_from_radians((HI - LO) / 10) == pytest.approx(10.0)
    bus = _lerobot_bus("range_0_100", 2000, 3500)
    assert u.to_radians(bus._normalize({1: 2000})[1]) == pytest.approx(LO)
    assert u.to_radians(bus._normalize({1: 2750})[1]) == pytest.approx((LO + HI) / 2)
    # and back: LeRobot's unnormalize of our value gives the raw encoder value
    assert bus._unnormalize({1: u.from_radians(HI)})[1] == 3500


def test_radians_pass_through():
    u = JointUnits(RADIANS, LO, HI)
    assert u.to_radians(0.123) == 0.123 and u.from_radians(-2.0) == -2.0
    assert u.range_rad == (-math.inf, math.inf)


def test_robot_units_dicts_limits_and_steps():
    joints = [JointUnits(DEGREES, lo, hi, calibrated=(-1.0, 1.2)) for lo, hi in
              zip(SO101_LOWER_LIMITS[:5], SO101_UPPER_LIMITS[:5])] + [JointUnits(RANGE_0_100, LO, HI)]
    units = RobotUnits(SO101_JOINT_NAMES, joints)
    q = np.array([0.1, -0.2, 0.3, -0.4, 0.5, 0.6])
    action = units.from_radians(q)
    assert set(action) == {f"{j}.pos" for j in SO101_JOINT_NAMES}
    assert action["shoulder_pan.pos"] == pytest.approx(math.degrees(0.1))
    assert action["gripper.pos"] == pytest.approx((0.6 - LO) / (HI - LO) * 100)
    np.testing.assert_allclose(units.to_radians({**action, "front": None}), q, atol=1e-12)
    lo, hi = units.limits(SO101_LOWER_LIMITS, SO101_UPPER_LIMITS)
    np.testing.assert_allclose(lo, [-1.0] * 5 + [LO])
    np.testing.assert_allclose(hi, [1.2] * 5 + [HI])
    steps = units.steps(0.1)
    assert steps["elbow_flex"] == pytest.approx(math.degrees(0.1)) and steps["gripper"] == pytest.approx(10 / (HI - LO))
    with pytest.raises(ValueError, match="do not overlap"):
        units.limits([2.0] * 6, [3.0] * 6)
    with pytest.raises(KeyError, match="gripper.pos"):
        units.to_radians({k: 0.0 for k in action if k != "gripper.pos"})
    with pytest.raises(ValueError, match="expected 6"):
        units.from_radians([0.0] * 5)


def test_units_of_robot_read_the_motor_bus_or_norm_modes():
    pytest.importorskip("lerobot")
    from lerobot.motors import Motor, MotorCalibration, MotorNormMode
    from lerobot.motors.feetech import FeetechMotorsBus

    names = SO101_JOINT_NAMES
    motors = {j: Motor(i + 1, "sts3215", MotorNormMode.RANGE_0_100 if j == "gripper" else MotorNormMode.DEGREES)
              for i, j in enumerate(names)}
    cal = {j: MotorCalibration(id=i + 1, drive_mode=0, homing_offset=0, range_min=1048, range_max=3048)
           for i, j in enumerate(names)}

    class Arm:
        bus = FeetechMotorsBus("/dev/null", motors, calibration=cal)

    units = units_of_robot(Arm(), names, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS)
    assert [u.mode for u in units.joints] == [DEGREES] * 5 + [RANGE_0_100]
    assert units.joints[0].calibrated == pytest.approx((-2000 * math.pi / 4095, 2000 * math.pi / 4095))
    assert units.joints[5].range_rad == (SO101_LOWER_LIMITS[5], SO101_UPPER_LIMITS[5])

    class Sim:
        norm_modes = {j: (MotorNormMode.RANGE_0_100 if j == "gripper" else MotorNormMode.RANGE_M100_100) for j in names}

    assert [u.mode for u in units_of_robot(Sim(), names, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS).joints] == \
        [RANGE_M100_100] * 5 + [RANGE_0_100]
    with pytest.raises(ValueError, match="no motor bus"):
        units_of_robot(object(), names, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS)
    assert {u.mode for u in units_of_robot(object(), names, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS, "radians").joints} \
        == {RADIANS}
    with pytest.raises(ValueError, match="no motor 'wrist'"):
        units_of_robot(Arm(), ["wrist"], [0.0], [1.0])
    for joint in ("gripper", "elbow_flex"):  # a calibration file with range_min > range_max (edited, or swapped)
        inverted = {**cal, joint: MotorCalibration(id=1, drive_mode=0, homing_offset=0, range_min=3400,
                                                   range_max=2000)}

        class Inverted:
            bus = FeetechMotorsBus("/dev/null", motors, calibration=inverted)

        with pytest.raises(ValueError, match=f"motor '{joint}': calibrated range_min 3400 is not below range_max"):
            units_of_robot(Inverted(), names, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS)


def test_dataset_units_convert_an_so101_lerobot_record_dataset_to_radians():
    assert dataset_units(RADIANS) is None
    frames = np.array([[90.0, -45.0, 0.0, 30.0, -180.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 100.0]])
    q = dataset_units(DEGREES).array_to_radians(frames)
    np.testing.assert_allclose(q[:, :5], np.radians(frames[:, :5]), atol=1e-12)
    np.testing.assert_allclose(q[:, 5], [LO, HI], atol=1e-12)  # the gripper is 0..100 in every mode
    ranged = dataset_units(RANGE_M100_100).array_to_radians(np.array([-100.0, 100.0, 0.0, 0.0, 0.0, 50.0]))
    assert ranged[0] == pytest.approx(SO101_LOWER_LIMITS[0]) and ranged[1] == pytest.approx(SO101_UPPER_LIMITS[1])
    assert ranged[2] == pytest.approx((SO101_LOWER_LIMITS[2] + SO101_UPPER_LIMITS[2]) / 2)
    assert ranged[5] == pytest.approx((LO + HI) / 2)
    # the same numbers as sigma-robot's conversion of a robot reading
    units = dataset_units(DEGREES)
    np.testing.assert_allclose(units.to_radians(dict(zip(units.keys, frames[0]))), q[0], atol=1e-12)
    with pytest.raises(ValueError, match="expected 6 joint values"):
        units.array_to_radians(np.zeros((2, 7)))
    with pytest.raises(ValueError, match="joint_units must be one of"):
        dataset_units("auto")


def test_dataset_units_map_each_joints_range_by_name_in_any_joint_order():
    """Reversed joints: the gripper's 0..100 spans the gripper's range, shoulder_pan's -100..100 its own.

    Before, the SO-101's ranges applied in their order: the gripper got shoulder_pan's.
    """
    names = tuple(reversed(SO101_JOINT_NAMES))
    q = dataset_units(RANGE_M100_100, names).array_to_radians(np.array([100.0, 0.0, 0.0, 0.0, 0.0, -100.0]))
    assert q[0] == pytest.approx(HI) and q[5] == pytest.approx(SO101_LOWER_LIMITS[0])
    with pytest.raises(ValueError, match=r"no built-in limits for joint\(s\) \['j0'\].*range_lower_rad"):
        dataset_units(DEGREES, ["j0"])
