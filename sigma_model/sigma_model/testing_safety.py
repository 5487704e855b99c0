# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Machinery of the property-based safety tests, shared by sigma_model's and sigma_ros's tests.

Random targets and measurements of every kind, an independent checker of the safety guarantees, and a driver of random
plan / joint-state / tick / reset sequences through a control loop.
"""

from __future__ import annotations

import numpy as np

from sigma_model.freshness import NS
from sigma_model.safety import MODE_TRACK, SafetyConfig

EPS = 1e-9
TARGETS = ("none", "inside", "any", "huge", "nan", "wrong_size")
MEASUREMENTS = ("none", "near", "inside", "tolerance", "beyond", "huge", "nan", "wrong_size")
STAMP_OFFSETS = (0.0, -0.01, -0.2, -0.6, -5.0, 0.05, 0.5, 10.0)  # stamp - now (s): fresh ... stale, future
LOOP_ACTIONS = ("tick",) * 6 + ("plan", "plan", "state", "state", "state", "clear")


def loop_events(max_size: int = 60):
    """Hypothesis strategy: (action, target kind, measurement kind, stamp offset) sequences for drive_loop."""
    from hypothesis import strategies as st

    return st.lists(st.tuples(st.sampled_from(LOOP_ACTIONS), st.sampled_from(("inside", "any", "huge", "nan")),
                              st.sampled_from(MEASUREMENTS[1:]), st.sampled_from(STAMP_OFFSETS + ("zero",))),
                    min_size=1, max_size=max_size)


def vector(rng, cfg: SafetyConfig, kind: str, near=None) -> np.ndarray | None:
    """Return a target or measurement of the given kind (values from ``rng``)."""
    n = cfg.n_joints
    u = rng.random(n)
    span = cfg.upper - cfg.lower
    if kind == "none":
        return None
    if kind == "near" and near is not None:
        return np.clip(near + (2 * u - 1) * 3 * cfg.max_step, cfg.lower - cfg.measurement_tolerance,
                       cfg.upper + cfg.measurement_tolerance)
    if kind == "tolerance":  # beyond a limit, within the tolerance
        return np.where(u > 0.5, cfg.upper + u * cfg.measurement_tolerance, cfg.lower - u * cfg.measurement_tolerance)
    if kind == "beyond":  # beyond a limit by more than the tolerance
        v = cfg.lower + u * span
        j = rng.integers(n)
        v[j] = cfg.upper[j] + cfg.measurement_tolerance[j] + 10.0 ** rng.uniform(-6, 1)
        return v
    if kind == "huge":
        return rng.choice([1e308, -1e308, 1e38, 3.5e38, -1e300], n)
    if kind == "nan":
        v = cfg.lower + u * span
        v[rng.integers(n)] = rng.choice([np.nan, np.inf, -np.inf])
        return v
    if kind == "wrong_size":
        return np.zeros(rng.choice([0, 1, n + 1]))
    if kind == "any":
        return rng.uniform(-10, 10, n)
    return cfg.lower + u * span  # inside


def plausible(cfg: SafetyConfig, meas) -> np.ndarray | None:
    """Independent check of a measurement (not the filter's own code)."""
    if meas is None:
        return None
    m = np.asarray(meas, dtype=np.float64).reshape(-1)
    if m.shape != (cfg.n_joints,) or not np.isfinite(m).all():
        return None
    tol = cfg.measurement_tolerance
    return m if ((m >= cfg.lower - tol) & (m <= cfg.upper + tol)).all() else None


class Checker:
    """Asserts the guarantees on each command let out, given the measurement the filter saw."""

    def __init__(self, cfg: SafetyConfig) -> None:
        self.cfg = cfg
        self.prev: np.ndarray | None = None

    def check(self, decision, meas) -> None:
        cfg, c = self.cfg, decision.command
        m = plausible(cfg, meas)
        if meas is not None and m is None:
            assert decision.fault, "an implausible measurement must be a fault"
            assert decision.mode != MODE_TRACK
            if c is not None:  # hold the previous command, or send nothing
                assert self.prev is not None
                np.testing.assert_array_equal(c, self.prev)
        if c is None:
            assert not decision.publish
            return
        assert c.shape == (cfg.n_joints,) and np.isfinite(c).all()
        assert (c >= cfg.lower).all() and (c <= cfg.upper).all(), "command outside the joint limits"
        if cfg.dry_run:
            assert not decision.publish
        if self.prev is not None:
            assert (np.abs(c - self.prev) <= cfg.max_step + EPS).all(), "command jumped more than max_step"
        if m is not None:
            far = np.zeros(cfg.n_joints, bool) if self.prev is None else np.abs(self.prev - m) > 2 * cfg.max_step + EPS
            assert (np.abs(c - m) <= cfg.max_step + EPS)[~far].all(), "command more than max_step from the measurement"
            if far.any():
                assert (np.abs(c - m) < np.abs(self.prev - m))[far].all(), "command did not approach the measurement"
        self.prev = c.copy()

    def reset(self) -> None:
        self.prev = None


def drive_loop(events, rng, cfg: SafetyConfig, tick, on_plan, on_state, clear, measured_now, checker: Checker) -> None:
    """One random sequence of plans, joint states, ticks and episode resets (``clear``) through a control loop."""
    now_ns = 1_000 * NS
    for action, target_kind, meas_kind, offset in events:
        stamp = 0 if offset == "zero" else now_ns + int(offset * NS)
        if action == "tick":
            now_ns += int(rng.uniform(0.0, 0.3) * NS)
            meas = measured_now(now_ns)
            result = tick(now_ns)
            checker.check(result.decision, meas)
            if result.publish:
                assert result.decision.command is not None and not cfg.dry_run
        elif action == "plan":
            on_plan([vector(rng, cfg, target_kind) for _ in range(3)], stamp, now_ns)
        elif action == "state":
            on_state(vector(rng, cfg, meas_kind, near=checker.prev), stamp, now_ns)
        else:  # an episode reset: the next command is limited against the measurement only, as at start-up
            clear()
            checker.reset()


def plan_target(plan, state, step):
    """Return the plan's target at a tick; a plan whose target is NaN also raises sometimes (a failing model)."""
    target = plan[min(step, len(plan) - 1)]
    if np.isnan(target).any() and step % 2:
        raise RuntimeError("model failure")
    return target
