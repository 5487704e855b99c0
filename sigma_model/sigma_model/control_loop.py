# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The low-level control loop of the robot: plan selection, fusion and safety (no ROS).

The ROS controller node is a thin shell around :class:`ControlLoop`: it converts messages and
calls :meth:`ControlLoop.on_plan`, :meth:`ControlLoop.on_joint_state` and, at ``rate_hz``,
:meth:`ControlLoop.tick`, then publishes the decision's command. Per tick the loop

* steps through the newest plan: tick ``k`` after the plan's camera frame is
  ``control_fn(plan, state, step_index=k)`` (``model.control_stage``, paper 3.3), so pipeline latency
  does not delay a plan (``align_plans_to_stamp``; counted from the tick that first uses it); the first
  plan since the start or a reset starts at step 0, because the arm held still since its frame; a plan
  runs at least ``min_plan_ticks`` ticks before a newer one replaces it;
* or, with ``sync_plans`` (synchronous inference, as LeRobot's own control loop), runs each plan for
  ``min_plan_ticks`` ticks from step 0, then holds its last command and asks for a plan of a camera
  frame stamped from that tick on (``TickResult.plan_request_ns``, repeated every tick until it comes);
  that plan starts at step 0, because the arm held still since its frame, and earlier plans are not used.
  A plan asked for (or the first since start or reset) that has not come within ``plan_timeout_s``
  (lost, or refused) is asked for again with a new stamp, so a lost plan never stalls the arm for good;
* uses only fresh inputs, judged by header stamp (:mod:`sigma_model.freshness`): plans whose
  camera frame is older than ``plan_timeout_s``, joint states older than ``joint_state_timeout_s``,
  stamps in the future or out of order are refused (counted), and a measurement that grew stale
  since it arrived is not used;
* passes the target through :class:`sigma_model.safety.SafetyFilter` (limits, per-tick step limit
  against the previous command and the measurement, implausible-measurement faults, watchdog).

Times are integer nanoseconds of one clock (the node's ROS clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from sigma_model.freshness import NS, StampGate
from sigma_model.safety import MODE_HOLD, SafetyDecision, SafetyFilter


@dataclass
class ControlLoopConfig:
    rate_hz: float = 30.0
    joint_state_timeout_s: float = 0.5
    stamp_future_tolerance_s: float = 0.1
    align_plans_to_stamp: bool = True
    min_plan_ticks: int = 8
    hold_before_first_plan: bool = True
    accept_unstamped: bool = False
    sync_plans: bool = False
    # sync_plans: while waiting for the next plan publish nothing instead of hold commands (a position-controlled
    # arm keeps its last goal; a simulator stepped once per command pauses, as the in-process evaluation does)
    silent_while_waiting: bool = False

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")
        if self.min_plan_ticks < 1:
            raise ValueError(f"min_plan_ticks must be >= 1, got {self.min_plan_ticks}")


@dataclass
class TickResult:
    decision: SafetyDecision
    publish: bool  # send decision.command now (False in dry run, before the first plan if so configured)
    plan_id: int = -1
    step_index: int = -1
    plan_request_ns: int | None = None  # sync_plans: the next plan must come from a frame stamped at or after this


class ControlLoop:
    """Plan selection + ``control_fn`` + :class:`SafetyFilter` for one arm.

    ``control_fn(plan, state, step_index) -> joint target`` maps a plan (any object) and the
    measured state (float64 [n]) to the target of that tick.
    """

    def __init__(self, control_fn: Callable[[Any, np.ndarray, int], np.ndarray], safety: SafetyFilter,
                 config: ControlLoopConfig | None = None) -> None:
        self.control_fn = control_fn
        self.safety = safety
        self.config = config or ControlLoopConfig()
        c, timeout = self.config, safety.config.plan_timeout_s
        self.period_ns = int(round(NS / c.rate_hz))
        self.plan_gate = StampGate("action_plan", timeout, c.stamp_future_tolerance_s, c.accept_unstamped)
        self.state_gate = StampGate("joint_states", c.joint_state_timeout_s, c.stamp_future_tolerance_s,
                                    c.accept_unstamped)
        self.plan: tuple[Any, int, int | None] | None = None  # (plan, plan_id, stamp to align to, None: step 0)
        self.pending: tuple[Any, int, int] | None = None  # (plan, plan_id, stamp) waiting for min_plan_ticks
        self.ticks_on_plan = 0
        self.start = 0  # the plan's step at its first tick
        self.request_ns: int | None = None  # sync_plans: the stamp the next plan's frame must reach
        self.waiting_since: int | None = None  # sync_plans: first tick without a plan since start or reset
        self.state: np.ndarray | None = None
        self.state_stamp: int | None = None
        self.state_invalid = False
        self.control_errors = 0

    # --------------------------------------------------------------- inputs
    def on_plan(self, plan: Any, plan_id: int, stamp_ns: int, now_ns: int) -> None:
        """Return a plan computed from the camera frame stamped ``stamp_ns``; raises StaleInput if refused."""
        stamp_ns = self.plan_gate.accept(stamp_ns, now_ns)
        now_s = now_ns / NS
        if self.config.sync_plans:
            if (self.plan is None and self.request_ns is None) or (
                    self.request_ns is not None and stamp_ns >= self.request_ns):
                self.plan, self.ticks_on_plan, self.request_ns = (plan, int(plan_id), None), 0, None
                self.waiting_since = None
                self.safety.feed_plan(now_s)
            return  # (a plan of a frame before the request: the arm moved on since, it is not used)
        self.pending = (plan, int(plan_id), stamp_ns)
        if self.plan is None or self.ticks_on_plan >= self.config.min_plan_ticks or self.safety.plan_stale(now_s):
            self._adopt_pending()
        self.safety.feed_plan(now_s)

    def on_joint_state(self, positions: np.ndarray | None, stamp_ns: int, now_ns: int) -> None:
        """Return a measurement (None: the message was malformed, the state is invalid until the next good one)."""
        if positions is None:
            self.state_invalid = True
            return
        self.state_stamp = self.state_gate.accept(stamp_ns, now_ns)
        self.state = np.asarray(positions, dtype=np.float64).copy()
        self.state_invalid = False

    def clear_plans(self) -> None:
        """Drop the current and pending plans: the arm holds until the next plan."""
        self.plan = self.pending = self.request_ns = self.waiting_since = None

    def new_episode(self) -> None:
        """Start an episode: drop the plans and forget the previous command.

        The arm may have been moved since (a simulator reset, a person resetting the scene): the next command is
        limited against the measured position only, as at start-up, never pulled back to where the last episode ended.
        """
        self.clear_plans()
        self.safety.reset()

    def restart(self) -> None:
        """Start a new timeline (the clock jumped back): forget plans, the measurement and both streams' last stamps.

        The arm holds its last command until a fresh joint state and plan arrive.
        """
        self.clear_plans()
        self.plan_gate.reset()
        self.state_gate.reset()
        self.state = self.state_stamp = None

    def _adopt_pending(self) -> None:
        plan, plan_id, stamp = self.pending
        self.pending = None
        align = self.config.align_plans_to_stamp and self.plan is not None
        self.plan = (plan, plan_id, stamp if align else None)
        self.ticks_on_plan = 0

    # ------------------------------------------------------------- control
    def measured(self, now_ns: int):
        """Return the measurement the safety filter sees: NaN marks an invalid one, None a missing or stale one."""
        if self.state_invalid:
            return np.full(self.safety.config.n_joints, np.nan)
        if self.state is None or not self.state_gate.fresh(self.state_stamp, now_ns):
            return None
        return self.state

    def _silent(self, current, plan_request_ns: int | None = None, why: str = "no plan yet") -> TickResult:
        """Nothing is sent this tick (before the first plan, or while waiting silently); a fault is still reported."""
        fault = self.safety.check_measurement(current)[1]
        reasons = [f"{why} (silent)"] + ([fault] if fault else [])
        return TickResult(SafetyDecision(None, MODE_HOLD, False, reasons, fault=bool(fault)), False,
                          plan_request_ns=plan_request_ns)

    def _wait_for_plan(self, current, now_ns: int) -> TickResult:
        """sync_plans, no plan to run: hold; ask (again after plan_timeout_s) for the plan of a frame from now on."""
        timeout_ns = int(self.safety.config.plan_timeout_s * NS)
        if self.plan is not None and self.request_ns is None:  # the plan is done
            self.request_ns = now_ns
        elif self.plan is None and self.request_ns is None and self.waiting_since is None:
            self.waiting_since = now_ns  # the first plan since start or reset comes unasked
        since = self.request_ns if self.request_ns is not None else self.waiting_since
        if since is not None and now_ns - since > timeout_ns:  # it did not come (lost or refused): ask again
            self.request_ns = now_ns
        if self.config.silent_while_waiting:
            return self._silent(current, self.request_ns, "waiting for the plan of a frame from now on")
        if self.plan is None and not self.config.hold_before_first_plan:
            return self._silent(current, self.request_ns)
        decision = self.safety.step(None, current, now_ns / NS)
        decision.reasons.insert(0, "waiting for the plan of a frame from now on (sync_plans)")
        return TickResult(decision, decision.publish and decision.command is not None, plan_request_ns=self.request_ns)

    def tick(self, now_ns: int) -> TickResult:
        now_s = now_ns / NS
        current = self.measured(now_ns)
        target, plan_id, step = None, -1, -1
        if self.config.sync_plans and (self.plan is None or self.ticks_on_plan >= self.config.min_plan_ticks):
            return self._wait_for_plan(current, now_ns)
        if self.plan is not None and not self.safety.plan_stale(now_s):
            plan, plan_id, stamp = self.plan
            if self.ticks_on_plan == 0:
                self.start = 0 if stamp is None else max(0, int((now_ns - stamp) / self.period_ns + 0.5))
            step = self.start + self.ticks_on_plan
            if self.safety.config.check(current)[0] is not None:
                try:
                    target = self.control_fn(plan, current, step)
                except Exception:  # noqa: BLE001 - the loop must keep running: this tick holds
                    self.control_errors += 1
            self.ticks_on_plan += 1
            if self.pending is not None and self.ticks_on_plan >= self.config.min_plan_ticks:
                self._adopt_pending()
        if self.plan is None and not self.config.hold_before_first_plan:
            return self._silent(current)
        decision = self.safety.step(target, current, now_s)
        return TickResult(decision, decision.publish and decision.command is not None, plan_id, step)
