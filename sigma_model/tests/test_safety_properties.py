# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Property-based tests of the safety guarantees (hypothesis).

Thousands of random sequences of targets, measurements, timings, stamps and faults through :class:`SafetyFilter` and
through :class:`ControlLoop` (the controller's logic). ``sigma_ros/test/test_controller_properties.py`` drives the
controller node's message callbacks the same way.

For every command let out (published, or computed in dry run):
* finite and within the joint limits;
* within max_step of the previous command;
* within max_step of a plausible measurement, unless the arm is more than 2 * max_step from the
  previous command, in which case the command moves towards the measurement;
* on an implausible measurement: a counted fault, and the previous command (or none).

Examples per run: SIGMA_PROPERTY_SCALE multiplies them; SIGMA_PROPERTY_RANDOM=1 draws new ones each
run instead of CI's fixed, reproducible set.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigma_model.control_loop import ControlLoop, ControlLoopConfig
from sigma_model.freshness import NS
from sigma_model.safety import MODE_TRACK, SafetyConfig, SafetyFilter
from sigma_model.testing_safety import (
    EPS, MEASUREMENTS, TARGETS, Checker, drive_loop, loop_events, plan_target, plausible, vector,
)

SCALE = float(os.environ.get("SIGMA_PROPERTY_SCALE", "1"))
FILTER_EXAMPLES = int(3000 * SCALE)
LOOP_EXAMPLES = int(2500 * SCALE)
settings.register_profile("sigma", derandomize=os.environ.get("SIGMA_PROPERTY_RANDOM") != "1", database=None,
                          deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("sigma")


@st.composite
def safety_configs(draw):
    n = 3
    lower = np.array(draw(st.lists(st.floats(-3.0, 0.0), min_size=n, max_size=n)))
    width = np.array(draw(st.lists(st.floats(0.0, 4.0), min_size=n, max_size=n)))
    max_step = np.array(draw(st.lists(st.floats(0.005, 0.5), min_size=n, max_size=n)))
    tol = max_step * np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)))
    return SafetyConfig(lower=lower, upper=lower + width, max_step=max_step, measurement_tolerance=tol,
                        plan_timeout_s=draw(st.floats(0.01, 1.0)), dry_run=draw(st.booleans()),
                        joint_names=("a", "b", "c"))


@settings(max_examples=FILTER_EXAMPLES)
@given(cfg=safety_configs(),
       events=st.lists(st.tuples(st.sampled_from(("tick",) * 8 + ("plan", "reset")), st.sampled_from(TARGETS),
                                 st.sampled_from(MEASUREMENTS)), min_size=1, max_size=40),
       seed=st.integers(0, 2**32 - 1))
def test_safety_filter_never_lets_an_unsafe_command_out(cfg, events, seed):
    rng = np.random.default_rng(seed)
    f = SafetyFilter(cfg)
    checker = Checker(cfg)
    now = 0.0
    for action, target_kind, meas_kind in events:
        if action == "plan":
            f.feed_plan(now)
        elif action == "reset":
            f.reset()
            checker.reset()
        else:
            now += rng.uniform(0.0, 0.5)
            meas = vector(rng, cfg, meas_kind, near=checker.prev)
            faults = f.faults
            decision = f.step(vector(rng, cfg, target_kind), meas, now)
            checker.check(decision, meas)
            assert f.faults == faults + (1 if decision.fault else 0)


@settings(max_examples=FILTER_EXAMPLES)
@given(cfg=safety_configs(),
       events=st.lists(st.tuples(st.sampled_from(("tick",) * 8 + ("plan", "reset")), st.sampled_from(TARGETS),
                                 st.sampled_from(MEASUREMENTS),
                                 st.sampled_from(("written",) * 3 + ("capped", "failed", "failed_after_writing",
                                                                      "not_credible"))),
                       min_size=1, max_size=40),
       seed=st.integers(0, 2**32 - 1))
def test_no_command_jumps_from_a_goal_the_motors_may_hold(cfg, events, seed):
    """A send may write other values (a robot's own cap) or fail before or after writing.

    Every command sent stays within the limits and within max_step of the goal the motors actually hold, whichever
    happened. A report that cannot be a goal (NaN, far beyond the limits: a bad reading or conversion) is refused and
    taken as a failed send.
    """
    rng = np.random.default_rng(seed)
    f = SafetyFilter(cfg)
    goal = None  # what the motors hold; after a reset (the arm moved by other means) only the measurement limits
    now = 0.0
    for action, target_kind, meas_kind, delivery in events:
        if action == "plan":
            f.feed_plan(now)
        elif action == "reset":
            f.reset()
            goal = None
        else:
            now += rng.uniform(0.0, 0.5)
            meas = vector(rng, cfg, meas_kind, near=goal)
            c = f.step(vector(rng, cfg, target_kind), meas, now).command
            if c is None or cfg.dry_run:  # nothing sent
                continue
            assert ((c >= cfg.lower) & (c <= cfg.upper)).all(), (delivery, c)
            if goal is not None:
                assert (np.abs(c - goal) <= cfg.max_step + EPS).all(), (delivery, c, goal)
            m = plausible(cfg, meas)
            if delivery == "written":
                goal = c
                f.delivered(c)
            elif delivery == "capped":  # the robot moved the goal towards where it measures the arm
                goal = c if m is None else c + rng.random(cfg.n_joints) * (m - c)
                f.delivered(goal)
            elif delivery == "not_credible":
                bogus = c.copy()
                far = [np.nan, cfg.upper.max() + 100.0, cfg.lower.min() - 100.0]
                bogus[rng.integers(cfg.n_joints)] = rng.choice(far)
                with pytest.raises(ValueError, match="not credible"):
                    f.delivered(bogus)
                goal = c if rng.random() < 0.5 else goal  # written or not, as after a failure
                f.delivered(None)
            else:
                goal = c if delivery == "failed_after_writing" else goal
                f.delivered(None)


@settings(max_examples=LOOP_EXAMPLES)
@given(cfg=safety_configs(), events=loop_events(), seed=st.integers(0, 2**32 - 1),
       loop_config=st.builds(ControlLoopConfig, rate_hz=st.sampled_from([10.0, 30.0, 100.0]),
                             joint_state_timeout_s=st.floats(0.05, 1.0), min_plan_ticks=st.integers(1, 10),
                             align_plans_to_stamp=st.booleans(), hold_before_first_plan=st.booleans(),
                             accept_unstamped=st.booleans(), sync_plans=st.booleans(),
                             silent_while_waiting=st.booleans()))
def test_control_loop_never_lets_an_unsafe_command_out(cfg, events, seed, loop_config):
    from sigma_model.freshness import StaleInput

    loop = ControlLoop(plan_target, SafetyFilter(cfg), loop_config)
    checker = Checker(cfg)

    def on_plan(targets, stamp, now):
        try:
            loop.on_plan(targets, 1, stamp, now)
        except StaleInput:
            pass

    def on_state(vec, stamp, now):
        try:
            loop.on_joint_state(vec if np.asarray(vec).size == cfg.n_joints else None, stamp, now)
        except StaleInput:
            pass

    def tick(now):
        result = loop.tick(now)
        if result.decision.mode == MODE_TRACK:  # tracking uses a fresh, valid measurement
            assert loop.state_stamp is not None and now - loop.state_stamp <= loop.config.joint_state_timeout_s * NS
        return result

    drive_loop(events, np.random.default_rng(seed), cfg, tick, on_plan, on_state, loop.new_episode, loop.measured,
               checker)
