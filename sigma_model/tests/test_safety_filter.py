# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""sigma_model.safety.SafetyFilter.

The ROS-free safety logic the controller node and the offline /simulated evaluation share (no ROS needed).
"""

from __future__ import annotations

import numpy as np
import pytest

from sigma_model.safety import (
    KNOWN_JOINT_LIMITS, MODE_HOLD, MODE_NO_STATE, MODE_TRACK, SO101_JOINT_NAMES, JointLimits, SafetyConfig,
    SafetyFilter,
)

LOWER = [-1.0, -1.0, -1.0]
UPPER = [1.0, 1.0, 0.5]
NAMES = ("a", "b", "c")


def make(**kw) -> SafetyFilter:
    values = dict(lower=LOWER, upper=UPPER, max_step=0.1, plan_timeout_s=0.5, joint_names=NAMES)
    values.update(kw)
    return SafetyFilter(SafetyConfig(**values))


def test_track_within_limits_is_bit_exact():
    f = make()
    f.feed_plan(0.0)
    target = np.array([0.05, -0.03, 0.01])
    d = f.step(target, np.zeros(3), 0.01)
    assert d.mode == MODE_TRACK and d.publish and not d.clamped_step and not d.clamped_limits
    assert np.array_equal(d.command, target)


def test_max_relative_step_per_tick():
    f = make()
    f.feed_plan(0.0)
    current = np.array([0.2, 0.2, 0.2])
    d = f.step(np.array([0.9, -0.9, 0.25]), current, 0.01)
    np.testing.assert_allclose(d.command, [0.3, 0.1, 0.25])
    assert d.clamped_step and "step limited" in d.reasons


def test_per_joint_max_step():
    f = make(max_step=[0.1, 0.5, 0.01])
    f.feed_plan(0.0)
    d = f.step(np.array([1.0, 1.0, 1.0]), np.zeros(3), 0.0)
    np.testing.assert_allclose(d.command, [0.1, 0.5, 0.01])


def test_joint_limits_clamp():
    f = make(max_step=10.0)
    f.feed_plan(0.0)
    d = f.step(np.array([3.0, -3.0, 0.9]), np.zeros(3), 0.0)
    np.testing.assert_allclose(d.command, [1.0, -1.0, 0.5])
    assert d.clamped_limits and not d.clamped_step and d.reasons == ["joint limits"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_target_rejected_and_holds(bad):
    f = make()
    f.feed_plan(0.0)
    current = np.array([0.1, 0.2, 0.3])
    d = f.step(np.array([0.0, bad, 0.0]), current, 0.01)
    assert d.mode == MODE_HOLD and np.isfinite(d.command).all()
    np.testing.assert_allclose(d.command, current)
    assert f.rejected_targets == 1


def test_wrong_size_target_rejected():
    f = make()
    f.feed_plan(0.0)
    d = f.step(np.zeros(5), np.zeros(3), 0.0)
    assert d.mode == MODE_HOLD


def test_watchdog_holds_the_previous_command_when_plan_stale():
    f = make(plan_timeout_s=0.5)
    f.feed_plan(0.0)
    assert f.step(np.array([0.05, 0.0, 0.0]), np.zeros(3), 0.4).mode == MODE_TRACK
    d = f.step(np.array([0.05, 0.0, 0.0]), np.array([0.02, 0.0, 0.0]), 0.6)
    assert d.mode == MODE_HOLD and any("stale" in r for r in d.reasons)
    np.testing.assert_array_equal(d.command, [0.05, 0.0, 0.0])  # no jump back to the measurement
    # the measurement sags: the hold keeps the previous command (within the step limit of the measurement)
    d = f.step(None, np.array([-0.03, 0.0, 0.0]), 0.7)
    np.testing.assert_array_equal(d.command, [0.05, 0.0, 0.0])
    # a fresh plan resumes tracking
    f.feed_plan(0.8)
    assert f.step(np.array([0.0, 0.0, 0.0]), np.zeros(3), 0.81).mode == MODE_TRACK


def test_invalid_joint_state_holds_last_command():
    f = make()
    f.feed_plan(0.0)
    first = f.step(np.array([0.05, 0.0, 0.0]), np.zeros(3), 0.0).command
    d = f.step(np.array([0.1, 0.0, 0.0]), np.array([np.nan, 0.0, 0.0]), 0.01)
    assert d.mode == MODE_HOLD and d.fault and "joint state not finite" in d.reasons
    np.testing.assert_allclose(d.command, first)
    assert f.faults == 1


def test_no_state_no_command():
    f = make()
    d = f.step(None, None, 0.0)
    assert d.mode == MODE_NO_STATE and d.command is None and not d.publish
    assert d.reasons == ["no plan", "no joint state", "no safe position known"]


@pytest.mark.parametrize("reading", [2.5, 1e308, -1e308, 1.0 + 0.1 + 1e-9])
def test_implausible_measurement_is_a_fault(reading):
    """Beyond the limits by more than the tolerance (or absurd).

    No command at start-up, the previous command afterwards; counted and reported.
    """
    f = make()
    f.feed_plan(0.0)
    d = f.step(np.array([0.5, 0.0, 0.0]), np.array([reading, 0.0, 0.0]), 0.0)
    assert d.command is None and d.fault and not d.publish and f.faults == 1
    assert any("implausible joint state" in r for r in d.reasons)
    prev = f.step(np.array([0.5, 0.0, 0.0]), np.zeros(3), 0.01).command
    d = f.step(np.array([0.5, 0.0, 0.0]), np.array([reading, 0.0, 0.0]), 0.02)
    assert d.fault and d.mode == MODE_HOLD and f.faults == 2
    np.testing.assert_array_equal(d.command, prev)


def test_measurements_are_read_as_n_numbers_whatever_their_container():
    """A (1, n) array or a list of n numbers is a measurement.

    non-numbers or another count are a fault, never an exception.
    """
    f = make()
    f.feed_plan(0.0)
    d = f.step(np.array([0.05, 0.0, 0.0]), np.zeros((1, 3)), 0.0)
    assert d.mode == MODE_TRACK and not d.fault
    for reading, why in (
        (["a", "b", "c"], "joint state not numeric"),
        ([0.0, 0.0], "joint state has 2 values, expected 3"),
        ([0.0, np.nan, 0.0], "joint state not finite"),
    ):
        d = f.step(np.array([0.05, 0.0, 0.0]), reading, 0.01)
        assert d.fault and d.mode == MODE_HOLD and d.reasons[0] == why
    d = f.step(np.array([0.05, 0.0, 0.0]), [0.0, 0.0, 0.9], 0.02)  # the reason names the joint
    assert d.fault and d.reasons[0].startswith("implausible joint state: c = 0.9 rad")


def test_targets_are_read_as_n_numbers_or_rejected():
    f = make()
    f.feed_plan(0.0)
    d = f.step(np.array([[0.05, 0.0, 0.0]]), np.zeros(3), 0.0)  # (1, n)
    assert d.mode == MODE_TRACK
    np.testing.assert_array_equal(d.command, [0.05, 0.0, 0.0])
    for bad in (["a", "b", "c"], [object()] * 3):
        d = f.step(bad, np.zeros(3), 0.01)
        assert d.mode == MODE_HOLD and "non-finite or mis-sized target rejected" in d.reasons
    assert f.rejected_targets == 2


def test_measurement_beyond_the_limits_within_tolerance_is_limited_against_it():
    """The issue's example scaled to these limits: a reading 0.08 past the upper limit.

    Hold and track commands stay within the limits and within max_step of the measurement.
    """
    f = make(max_step=0.1)
    f.feed_plan(0.0)
    measured = np.array([1.08, 0.0, 0.0])
    for target in (None, np.array([-1.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0])):
        g = make(max_step=0.1)
        g.feed_plan(0.0)
        d = g.step(target, measured, 0.0)
        assert not d.fault and d.command is not None
        assert (np.abs(d.command - measured) <= 0.1 + 1e-12).all() and d.command[0] <= 1.0


def test_consecutive_commands_never_jump_more_than_max_step():
    """Plan switches and hold starts are limited against the previous command, not only the measurement.

    A lagging arm (measured 0.1 behind) cannot make two commands 0.2 apart.
    """
    f = make(max_step=0.1)
    f.feed_plan(0.0)
    a = f.step(np.array([0.1, 0.0, 0.0]), np.zeros(3), 0.0).command  # 0.1
    b = f.step(np.array([-0.1, 0.0, 0.0]), np.array([0.05, 0.0, 0.0]), 0.01).command  # plan switch
    np.testing.assert_allclose(a, [0.1, 0.0, 0.0])
    np.testing.assert_allclose(b, [0.0, 0.0, 0.0])  # not -0.05 (0.15 from a)
    c = f.step(np.array([0.1, 0.0, 0.0]), np.array([0.05, 0.0, 0.0]), 0.02).command
    assert abs(c[0] - b[0]) <= 0.1 + 1e-12


def test_first_command_after_a_fault_is_limited_against_the_measurement():
    f = make(max_step=0.1)
    f.feed_plan(0.0)
    f.step(np.array([0.1, 0.0, 0.0]), np.zeros(3), 0.0)
    f.step(np.array([0.1, 0.0, 0.0]), np.array([np.inf, 0.0, 0.0]), 0.01)  # fault: holds 0.1
    d = f.step(np.array([0.5, 0.0, 0.0]), np.array([0.15, 0.0, 0.0]), 0.02)
    assert abs(d.command[0] - 0.15) <= 0.1 + 1e-12 and abs(d.command[0] - 0.1) <= 0.1 + 1e-12


def test_pushed_arm_is_approached_by_max_step_per_tick():
    """Measured more than 2 * max_step from the previous command (pushed or blocked arm).

    The command moves towards the measurement by max_step per tick, never jumps.
    """
    f = make(max_step=0.1)
    f.feed_plan(0.0)
    f.step(np.zeros(3), np.zeros(3), 0.0)
    measured = np.array([0.5, 0.0, 0.0])
    got = [f.step(np.array([0.5, 0.0, 0.0]), measured, 0.01 * k).command[0] for k in range(1, 6)]
    np.testing.assert_allclose(got, [0.1, 0.2, 0.3, 0.4, 0.5])


def test_reset_forgets_the_previous_command():
    f = make(max_step=0.1)
    f.feed_plan(0.0)
    f.step(np.zeros(3), np.zeros(3), 0.0)
    f.step(None, np.zeros(3), 0.01)
    f.step(None, np.zeros(3), 0.02)
    assert f.holds == 1  # one hold, however many ticks it lasts
    f.reset()
    d = f.step(None, np.array([0.5, 0.0, 0.0]), 0.03)
    np.testing.assert_allclose(d.command, [0.5, 0.0, 0.0])
    assert d.mode == MODE_HOLD and f.holds == 2  # a new hold after the reset


def test_dry_run_never_publishes():
    f = make(dry_run=True)
    f.feed_plan(0.0)
    d = f.step(np.array([0.05, 0.0, 0.0]), np.zeros(3), 0.0)
    assert d.command is not None and not d.publish


def test_never_nan_under_random_inputs():
    rng = np.random.default_rng(0)
    f = make()
    t = 0.0
    for i in range(2000):
        t += 0.033
        if rng.random() < 0.3:
            f.feed_plan(t)
        target = rng.normal(0, 2, 3)
        current = rng.normal(0, 1, 3)
        if rng.random() < 0.1:
            target[rng.integers(3)] = np.nan
        if rng.random() < 0.1:
            current[rng.integers(3)] = np.inf
        d = f.step(target if rng.random() > 0.1 else None, current if rng.random() > 0.05 else None, t)
        if d.command is not None:
            assert np.isfinite(d.command).all()
            assert (d.command >= np.array(LOWER)).all() and (d.command <= np.array(UPPER)).all()


@pytest.mark.parametrize("kw, message", [
    (dict(lower=[0.0, 0.0, 0.0], upper=[-1.0, 1.0, 1.0]),
     "lower limits must be <= upper limits: [0.0, 0.0, 0.0] > [-1.0, 1.0, 1.0]"),
    (dict(max_step=0.0), "max_step must be > 0, got [0.0, 0.0, 0.0]"),
    (dict(max_step=[0.1, 0.1]), "max_step must have 3 values, got shape [2]"),
    (dict(lower=[np.nan, 0.0, 0.0]), "lower must be finite, got [nan, 0.0, 0.0]"),
    (dict(upper=[1.0, 1.0]), "upper must have 3 values, got shape [2]"),
    (dict(measurement_tolerance=[0.1, np.inf, 0.1]), "measurement_tolerance must be finite, got [0.1, inf, 0.1]"),
    (dict(plan_timeout_s=0.0), "plan_timeout_s must be > 0, got 0.0"),
    (dict(measurement_tolerance=0.2), "measurement_tolerance [0.2, 0.2, 0.2] must be <= max_step [0.1, 0.1, 0.1]"),
    (dict(measurement_tolerance=-0.01), "measurement_tolerance must be >= 0, got [-0.01, -0.01, -0.01]"),
    (dict(joint_names=(), lower=(), upper=()), "joint limits need at least one joint"),
])
def test_bad_config_raises(kw, message):
    with pytest.raises(ValueError) as err:
        make(**kw)
    assert str(err.value) == message


def test_config_reads_numbers_as_float_vectors_and_defaults_the_tolerance():
    """Integer limits are stored as float64; the tolerance defaults to 0.1 rad (or max_step if smaller)."""
    cfg = SafetyConfig(lower=[-1, -1], upper=[1, 1], max_step=0.3, joint_names=("a", "b"))
    assert all(v.dtype == np.float64 for v in (cfg.lower, cfg.upper, cfg.max_step, cfg.measurement_tolerance))
    assert cfg.measurement_tolerance.tolist() == [0.1, 0.1]
    small_step = SafetyConfig(max_step=0.05, joint_names=("a",), lower=[-1], upper=[1])
    assert small_step.measurement_tolerance.tolist() == [0.05]
    f = SafetyFilter(cfg)  # a reading 0.12 beyond the limit is beyond the default tolerance: a fault
    assert f.step(None, [1.12, 0.0], 0.0).fault and not f.step(None, [1.08, 0.0], 0.0).fault


def test_a_one_joint_arm_is_filtered_like_any_other():
    f = SafetyFilter(SafetyConfig(lower=[-1.0], upper=[1.0], max_step=0.1, joint_names=("gripper",)))
    f.feed_plan(0.0)
    d = f.step([0.5], [0.0], 0.0)
    assert d.mode == MODE_TRACK and d.command.tolist() == [0.1]


def test_the_first_hold_counts():
    f = make()
    d = f.step(None, np.zeros(3), 0.0)  # no plan yet: hold the measurement
    assert d.mode == MODE_HOLD and f.holds == 1


def test_a_hold_without_a_target_says_whether_the_plan_is_missing_or_stale():
    f = make(plan_timeout_s=0.5)
    d = f.step(None, np.zeros(3), 0.0)
    assert d.reasons == ["no plan"]
    f.feed_plan(0.0)
    assert f.step(None, np.zeros(3), 0.1).reasons == ["no plan"]  # a fresh plan, but no target this tick
    assert f.step(None, np.zeros(3), 1.0).reasons == ["plan stale (1.000s > 0.5s)"]


@pytest.mark.parametrize("now", [4.0, float("nan")])
def test_a_plan_from_after_now_is_not_followed(now):
    """The clock went back (a use_sim_time switch, a looped bag) or is NaN: the plan's age is unknown, so it holds."""
    f = make(plan_timeout_s=0.5)
    f.feed_plan(5.0)
    assert f.plan_stale(now)
    d = f.step([0.05, 0.0, 0.0], np.zeros(3), now)
    assert d.mode == MODE_HOLD and d.command.tolist() == [0.0, 0.0, 0.0]
    assert len(d.reasons) == 1 and d.reasons[0].startswith("plan of unknown age"), d.reasons
    assert f.step([0.05, 0.0, 0.0], np.zeros(3), 5.2).mode == MODE_TRACK  # the plan's own time again
    with pytest.raises(ValueError, match="finite"):
        f.feed_plan(float("nan"))


@pytest.mark.parametrize("names", [SO101_JOINT_NAMES, tuple(reversed(SO101_JOINT_NAMES)),
                                   SO101_JOINT_NAMES[1:] + SO101_JOINT_NAMES[:1]], ids=["so101", "reversed", "rotated"])
def test_without_explicit_limits_each_joint_gets_its_own_limits_by_name_in_any_order(names):
    """The gripper at 1.95 rad is implausible (its limit 1.745 + 0.1), however joint_names orders the joints.

    The filter clamps each joint to its own limits. Before, the SO-101's limits applied in their order: reversed,
    the gripper was judged by shoulder_pan's (+-1.92) and shoulder_pan by the gripper's.
    """
    at = {j: i for i, j in enumerate(names)}
    q = np.zeros(6)
    q[at["gripper"]] = 1.95
    measured, fault = JointLimits(joint_names=names).check(q)
    assert measured is None and fault.startswith("implausible joint state: gripper = 1.95 rad")
    f = SafetyFilter(SafetyConfig(max_step=10.0, joint_names=names))
    f.feed_plan(0.0)
    d = f.step(np.full(6, 3.0), np.zeros(6), 0.0)
    assert {j: d.command[at[j]] for j in names} == pytest.approx({j: KNOWN_JOINT_LIMITS[j][1] for j in names})
    d = f.step(np.full(6, -3.0), d.command, 0.0)
    assert {j: d.command[at[j]] for j in names} == pytest.approx({j: KNOWN_JOINT_LIMITS[j][0] for j in names})


def test_a_joint_without_built_in_limits_needs_explicit_ones():
    with pytest.raises(ValueError) as err:
        JointLimits(joint_names=("shoulder_pan", "j1"))
    assert "\n" not in str(err.value) and str(err.value).startswith(
        "no built-in limits for joint(s) ['j1'] (built in: ['shoulder_pan',")
    assert "give explicit joint limits" in str(err.value)
    with pytest.raises(ValueError, match=r"no built-in limits for joint\(s\) \['j0'\]"):
        SafetyConfig(upper=[1.0], joint_names=("j0",))  # one side given: the other is looked up
    explicit = JointLimits([-1.0, -2.0], [1.0, 2.0], joint_names=("gripper", "j1"))  # explicit: joint_names order
    assert explicit.lower.tolist() == [-1.0, -2.0] and explicit.upper.tolist() == [1.0, 2.0]
