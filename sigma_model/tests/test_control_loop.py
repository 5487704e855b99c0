# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The controller's logic without ROS (:class:`ControlLoop`).

Which plan and which step of it each tick follows, when a newer plan takes over, stamp alignment, stale and invalid
inputs, and what is published. The safety guarantees over random sequences are in test_safety_properties.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from sigma_model.control_loop import ControlLoop, ControlLoopConfig
from sigma_model.freshness import NS, StaleInput
from sigma_model.safety import MODE_HOLD, MODE_NO_STATE, MODE_TRACK, SafetyConfig, SafetyFilter

PERIOD = NS // 10  # 10 Hz
T0 = 100 * NS


def make_loop(calls=None, plan_timeout_s=1.0, dry_run=False, states=None, **loop_kw):
    """Return a 2-joint loop whose plan is (plan id, offset).

    Target = offset + 0.01 * step; (plan id, step) is recorded in ``calls`` and the state control_fn was given in
    ``states``.
    """
    calls = [] if calls is None else calls
    states = [] if states is None else states

    def control_fn(plan, state, step):
        calls.append((plan[0], step))
        states.append(state)
        if plan[1] is None:
            raise RuntimeError("broken plan")
        return np.full(2, plan[1] + 0.01 * step)

    safety = SafetyFilter(SafetyConfig(lower=[-1, -1], upper=[1, 1], max_step=0.5, measurement_tolerance=0.1,
                                       plan_timeout_s=plan_timeout_s, dry_run=dry_run, joint_names=("a", "b")))
    loop_kw.setdefault("rate_hz", 10.0)
    return ControlLoop(control_fn, safety, ControlLoopConfig(**loop_kw)), calls


def run_ticks(loop, now, n, state=(0.0, 0.0)):
    """N ticks one period apart, a fresh joint state before each; returns [(plan_id, step)] and the last time."""
    seen = []
    for _ in range(n):
        now += PERIOD
        loop.on_joint_state(np.array(state), now, now)
        r = loop.tick(now)
        seen.append((r.plan_id, r.step_index))
    return seen, now


def test_config_validation():
    with pytest.raises(ValueError, match=r"rate_hz must be > 0, got 0"):
        ControlLoopConfig(rate_hz=0.0)
    with pytest.raises(ValueError, match=r"min_plan_ticks must be >= 1, got 0"):
        ControlLoopConfig(min_plan_ticks=0)
    slow = ControlLoopConfig(rate_hz=0.5, min_plan_ticks=1)  # a slow rate and plans that switch every tick are valid
    assert ControlLoop(lambda p, s, k: s, SafetyFilter(), slow).period_ns == 2 * NS


def test_control_fn_gets_the_measurement_as_float64():
    states = []
    loop, _ = make_loop(states=states)
    loop.on_plan((1, 0.0), 1, T0, T0)
    loop.on_joint_state([0, 1], T0, T0)  # integers, as some drivers send them
    loop.tick(T0)
    assert states[0].dtype == np.float64 and states[0].tolist() == [0.0, 1.0]


def test_a_newer_plan_takes_over_after_min_plan_ticks():
    loop, calls = make_loop(min_plan_ticks=3, align_plans_to_stamp=False)
    loop.on_plan((1, 0.0), 1, T0, T0)
    seen, now = run_ticks(loop, T0, 1)
    loop.on_plan((2, 0.2), 2, now, now)  # arrives after one tick on plan 1: waits
    more, now = run_ticks(loop, now, 5)
    assert seen + more == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    assert calls == seen + more  # control_fn saw the same plan and step
    # plan 2 has run >= 3 ticks: the next plan is adopted on arrival
    loop.on_plan((3, 0.1), 3, now, now)
    seen, now = run_ticks(loop, now, 1)
    assert seen == [(3, 0)]


def test_the_newest_waiting_plan_wins():
    loop, _ = make_loop(min_plan_ticks=2, align_plans_to_stamp=False)
    loop.on_plan((1, 0.0), 1, T0, T0)
    loop.on_plan((2, 0.0), 2, T0 + 1, T0 + 1)  # plan 1 has not run yet: 2 waits
    loop.on_plan((3, 0.0), 3, T0 + 2, T0 + 2)  # replaces 2
    seen, _ = run_ticks(loop, T0, 3)
    assert seen == [(1, 0), (1, 1), (3, 0)]


def test_a_waiting_plan_starts_at_the_step_its_frame_is_late_by_when_it_takes_over():
    loop, _ = make_loop(min_plan_ticks=3)
    loop.on_plan((1, 0.0), 1, T0, T0)
    loop.on_plan((2, 0.0), 2, T0, T0)  # same frame: waits 3 ticks; the 4th tick is step 4
    seen, _ = run_ticks(loop, T0, 5)
    assert seen == [(1, 0), (1, 1), (1, 2), (2, 4), (2, 5)]


@pytest.mark.parametrize("latency_s, start", [(0.0, 0), (0.14, 1), (0.16, 2), (0.34, 3)])
def test_a_plan_starts_at_the_step_its_camera_frame_is_late_by(latency_s, start):
    """Aligned: tick k after the frame is step k (rounded to the nearest tick); unaligned: step 0."""
    for align in (True, False):
        loop, calls = make_loop(align_plans_to_stamp=align, min_plan_ticks=1)
        before = T0 - NS // 2
        loop.on_plan((1, 0.0), 1, before, before)  # a plan is running
        loop.on_joint_state(np.zeros(2), before, before)
        loop.tick(before)
        stamp = T0 - int(latency_s * NS)
        loop.on_plan((2, 0.0), 2, stamp, T0)
        loop.on_joint_state(np.zeros(2), T0, T0)
        r = loop.tick(T0)
        expected = start if align else 0
        assert (r.plan_id, r.step_index) == (2, expected) and calls[-1] == (2, expected)
        assert r.decision.mode == MODE_TRACK and r.publish
        np.testing.assert_allclose(r.decision.command, 0.01 * expected)


def test_the_first_plan_since_start_or_reset_starts_at_step_0():
    """The arm held still since the frame of the first plan: no step is skipped, however late it is."""
    loop, calls = make_loop(min_plan_ticks=1)
    now = T0
    for plan_id in (1, 2):
        loop.on_plan((plan_id, 0.0), plan_id, now - int(0.34 * NS), now)
        seen, now = run_ticks(loop, now, 2)
        assert seen == [(plan_id, 0), (plan_id, 1)]
        loop.new_episode()  # a reset


def test_alignment_counts_from_the_tick_that_first_uses_the_plan():
    """A plan that arrives between ticks (or is adopted at the end of one) is aligned at the tick that runs it."""
    loop, _ = make_loop(min_plan_ticks=1)
    loop.on_plan((1, 0.0), 1, T0, T0)
    seen, now = run_ticks(loop, T0, 1)
    # frame at now - 0.06 s, arriving at now + 0.04 s: the next tick is 0.16 s after the frame, step 2 (at its
    # arrival the frame was 0.10 s old: step 1, one tick behind)
    loop.on_plan((2, 0.0), 2, now - int(0.06 * NS), now + int(0.04 * NS))
    seen, now = run_ticks(loop, now, 2)
    assert seen == [(2, 2), (2, 3)]
    # adopted at the end of a tick (min_plan_ticks reached there): aligned at the next tick as well
    loop2, _ = make_loop(min_plan_ticks=2)
    loop2.on_plan((1, 0.0), 1, T0, T0)
    seen, now = run_ticks(loop2, T0, 1)
    loop2.on_plan((2, 0.0), 2, now - PERIOD, now)  # waits: plan 1 ran 1 tick of 2
    seen, now = run_ticks(loop2, now, 2)
    assert seen == [(1, 1), (2, 3)]  # plan 2 adopted at the end of this tick: its frame 3 periods before the next


def test_a_stale_plan_holds_and_a_new_one_replaces_it_at_once():
    loop, calls = make_loop(plan_timeout_s=0.5, min_plan_ticks=8, align_plans_to_stamp=False)
    loop.on_plan((1, 0.3), 1, T0, T0)
    seen, now = run_ticks(loop, T0, 5)  # 0.5 s: still fresh (the timeout is strict)
    assert seen == [(1, k) for k in range(5)]
    late, now = run_ticks(loop, now, 1)  # 0.6 s without a plan: hold the last command, control_fn not called
    r = loop.tick(now)
    assert late == [(-1, -1)] and r.decision.mode == MODE_HOLD and len(calls) == 5
    np.testing.assert_allclose(r.decision.command, 0.3 + 0.04)
    loop.on_plan((2, 0.0), 2, now, now)  # plan 1 ran only 5 of min_plan_ticks ticks but is stale: replaced
    seen, _ = run_ticks(loop, now, 1)
    assert seen == [(2, 0)]


def test_refused_plans_raise_and_change_nothing():
    loop, _ = make_loop(align_plans_to_stamp=False)
    with pytest.raises(StaleInput, match=r"^action_plan: stamp 2\.000s old") as refused:
        loop.on_plan((1, 0.0), 1, T0 - 2 * NS, T0)  # older than plan_timeout_s
    assert refused.value.kind == "stale"
    assert loop.plan is None and loop.pending is None
    assert loop.safety.plan_age(T0 / NS) == float("inf")  # the watchdog was not fed
    loop.on_plan((2, 0.0), 2, T0, T0)
    assert loop.safety.plan_age(T0 / NS) == 0.0
    with pytest.raises(StaleInput, match=r"^joint_states: stamp .* older than the last") as refused:
        loop.on_joint_state(np.zeros(2), T0, T0)
        loop.on_joint_state(np.zeros(2), T0 - 1, T0)
    assert refused.value.kind == "out_of_order"


@pytest.mark.parametrize("unstamped", [False, True])
def test_unstamped_and_slightly_future_stamps(unstamped):
    """Stamps up to stamp_future_tolerance_s ahead are accepted (clock offsets).

    Unstamped messages only when allowed, and then they count as stamped on arrival.
    """
    loop, _ = make_loop(accept_unstamped=unstamped, stamp_future_tolerance_s=0.1, align_plans_to_stamp=False)
    loop.on_plan((1, 0.0), 1, T0 + int(0.05 * NS), T0)
    loop.on_joint_state(np.zeros(2), T0 + int(0.05 * NS), T0)
    with pytest.raises(StaleInput, match="in the future"):
        loop.on_plan((2, 0.0), 2, T0 + int(0.2 * NS), T0)
    later = T0 + NS // 10
    if unstamped:
        loop.on_joint_state(np.ones(2) * 0.1, 0, later)
        loop.on_plan((3, 0.0), 3, 0, later)
        assert loop.state_stamp == later and loop.pending[2] == later
    else:
        for call in (lambda: loop.on_joint_state(np.zeros(2), 0, later), lambda: loop.on_plan((3, 0.0), 3, 0, later)):
            with pytest.raises(StaleInput, match="unstamped"):
                call()


def test_without_any_joint_state_nothing_is_sent():
    loop, calls = make_loop()
    loop.on_plan((1, 0.0), 1, T0, T0)
    r = loop.tick(T0)
    assert r.decision.mode == MODE_NO_STATE and r.decision.command is None and not r.publish
    assert not r.decision.fault and loop.safety.faults == 0 and calls == []


def test_invalid_or_stale_joint_states_hold():
    loop, calls = make_loop(joint_state_timeout_s=0.25, align_plans_to_stamp=False)
    loop.on_plan((1, 0.0), 1, T0, T0)
    _, now = run_ticks(loop, T0, 1)
    loop.on_joint_state(None, now, now)  # malformed message: invalid until the next good one
    r = loop.tick(now + PERIOD)
    assert np.isnan(loop.measured(now + PERIOD)).all()
    assert r.decision.mode == MODE_HOLD and r.decision.fault and len(calls) == 1
    loop.on_joint_state(np.zeros(2), now + PERIOD, now + PERIOD)
    assert loop.tick(now + 2 * PERIOD).decision.mode == MODE_TRACK
    # the last state is 0.2 s old: still used; at 0.3 s it is stale and the loop holds
    assert loop.measured(now + 3 * PERIOD) is not None
    r = loop.tick(now + 4 * PERIOD)
    assert loop.measured(now + 4 * PERIOD) is None
    assert r.decision.mode == MODE_HOLD and "no joint state" in r.decision.reasons


def test_clear_plans_holds_until_the_next_plan():
    loop, calls = make_loop(min_plan_ticks=8, align_plans_to_stamp=False)
    loop.on_plan((1, 0.1), 1, T0, T0)
    loop.on_plan((2, 0.1), 2, T0, T0)  # waiting
    _, now = run_ticks(loop, T0, 2)
    loop.clear_plans()
    seen, now = run_ticks(loop, now, 2)
    assert seen == [(-1, -1)] * 2 and len(calls) == 2  # neither plan is followed
    loop.on_plan((3, 0.1), 3, now, now)  # adopted at once: there is no current plan
    seen, _ = run_ticks(loop, now, 1)
    assert seen == [(3, 0)]


def test_a_new_episode_limits_its_first_command_against_the_measurement_only():
    """A reset forgets the previous command.

    The arm may have been moved (a sim reset, a person): the previous episode's last command must not pull the first
    commands back towards where that episode ended (clear_plans alone keeps it: a hold).
    """
    for new_episode in (True, False):
        loop, _ = make_loop(min_plan_ticks=1, align_plans_to_stamp=False)
        loop.on_plan((1, 0.8), 1, T0, T0)
        _, now = run_ticks(loop, T0, 1, state=(0.8, 0.8))
        assert loop.safety.last_command.tolist() == [0.8, 0.8]
        loop.new_episode() if new_episode else loop.clear_plans()
        loop.on_plan((2, -0.1), 2, now, now)  # the arm was moved to -0.1 by the reset; the plan holds it there
        seen, now = run_ticks(loop, now, 1, state=(-0.1, -0.1))
        command = loop.safety.last_command
        if new_episode:
            assert seen == [(2, 0)] and command.tolist() == [-0.1, -0.1]
        else:  # limited against the old command as well: it moves towards the measurement from there
            assert command.tolist() == pytest.approx([0.3, 0.3])


def test_a_failing_control_fn_holds_that_tick_and_is_counted():
    loop, _ = make_loop(min_plan_ticks=1, align_plans_to_stamp=False)
    loop.on_plan((1, 0.2), 1, T0, T0)
    run_ticks(loop, T0, 1)
    loop.on_plan((2, None), 2, T0 + PERIOD, T0 + PERIOD)
    loop.on_joint_state(np.full(2, 0.2), T0 + 2 * PERIOD, T0 + 2 * PERIOD)
    r = loop.tick(T0 + 2 * PERIOD)
    assert loop.control_errors == 1 and r.decision.mode == MODE_HOLD and r.publish
    np.testing.assert_allclose(r.decision.command, 0.2)  # the previous command
    loop.on_joint_state(np.full(2, 0.2), T0 + 3 * PERIOD, T0 + 3 * PERIOD)
    loop.tick(T0 + 3 * PERIOD)
    assert loop.control_errors == 2


def test_before_the_first_plan_the_loop_holds_or_stays_silent():
    loop, _ = make_loop()  # hold_before_first_plan: hold the measured position
    loop.on_joint_state(np.array([0.5, -0.5]), T0, T0)
    r = loop.tick(T0)
    assert r.publish and r.decision.mode == MODE_HOLD
    np.testing.assert_allclose(r.decision.command, [0.5, -0.5])
    silent, _ = make_loop(hold_before_first_plan=False)
    silent.on_joint_state(np.array([0.5, -0.5]), T0, T0)
    r = silent.tick(T0)
    assert not r.publish and r.decision.command is None and r.decision.reasons == ["no plan yet (silent)"]
    assert r.decision.mode == MODE_HOLD
    assert not r.decision.fault and silent.safety.faults == 0
    silent.on_joint_state(np.array([5.0, 0.0]), T0 + 1, T0 + 1)  # implausible: counted and reported
    r = silent.tick(T0 + 1)
    assert not r.publish and r.decision.fault and silent.safety.faults == 1
    assert r.decision.reasons[0] == "no plan yet (silent)" and "implausible joint state" in r.decision.reasons[1]


def test_dry_run_computes_but_does_not_publish():
    loop, _ = make_loop(dry_run=True, align_plans_to_stamp=False)
    loop.on_plan((1, 0.1), 1, T0, T0)
    loop.on_joint_state(np.zeros(2), T0, T0)
    r = loop.tick(T0)
    assert r.decision.mode == MODE_TRACK and not r.publish
    np.testing.assert_allclose(r.decision.command, 0.1)


def test_sync_plans_hold_at_each_end_and_run_the_next_plan_from_step_0():
    """Synchronous inference: a plan's min_plan_ticks steps from step 0, then hold + request.

    Until a plan of a frame stamped from the request on comes; older plans are not used.
    """
    loop, calls = make_loop(min_plan_ticks=3, sync_plans=True)
    loop.on_plan((1, 0.0), 1, T0 - 5 * PERIOD, T0)  # the first plan: step 0 whatever its age
    seen, now = run_ticks(loop, T0, 3)
    assert seen == [(1, 0), (1, 1), (1, 2)]
    now += PERIOD
    loop.on_joint_state(np.array([0.0, 0.0]), now, now)
    r = loop.tick(now)  # the plan is done
    assert (r.plan_id, r.plan_request_ns, r.decision.mode) == (-1, now, MODE_HOLD)
    assert r.publish and r.decision.command.tolist() == [0.02, 0.02]  # its last command, held
    request = now
    loop.on_plan((2, 0.5), 2, request - 1, now)  # computed from a frame before the request: not used
    more, now = run_ticks(loop, now, 2)
    assert more == [(-1, -1), (-1, -1)]
    r = loop.tick(now)
    assert r.plan_request_ns == request  # repeated until the plan comes, with the same stamp
    loop.on_plan((3, 0.3), 3, request + PERIOD // 2, now + PERIOD)  # late, from a frame after the request: step 0
    more, now = run_ticks(loop, now, 4)
    assert more == [(3, 0), (3, 1), (3, 2), (-1, -1)]
    assert [c for c in calls if c[0] == 2] == []
    loop.clear_plans()
    assert loop.request_ns is None


def test_sync_plans_ask_again_for_a_plan_that_does_not_come():
    """A lost (or refused) plan must not stall the arm for good: after plan_timeout_s the loop asks again."""
    loop, _ = make_loop(min_plan_ticks=2, sync_plans=True, plan_timeout_s=0.5)
    seen, now = run_ticks(loop, T0, 3)  # start: the first plan comes unasked
    assert seen == [(-1, -1)] * 3 and loop.request_ns is None
    _, now = run_ticks(loop, now, 4)  # more than 0.5 s without it: ask
    first = loop.request_ns
    assert first is not None and first > T0
    loop.on_plan((1, 0.0), 1, first - 1, now)  # an old plan: not the one asked for
    seen, now = run_ticks(loop, now, 2)
    assert seen == [(-1, -1)] * 2
    loop.on_plan((2, 0.0), 2, first, now)
    seen, now = run_ticks(loop, now, 3)
    assert seen == [(2, 0), (2, 1), (-1, -1)]  # done: a new request
    done = loop.request_ns
    assert done == now
    _, now = run_ticks(loop, now, 5)
    assert loop.request_ns == done  # repeated within plan_timeout_s
    _, now = run_ticks(loop, now, 1)
    assert loop.request_ns == now > done  # then asked again, with a new stamp


def test_sync_plans_waiting_says_why_and_stays_silent_before_the_first_plan():
    loop, _ = make_loop(min_plan_ticks=1, sync_plans=True, hold_before_first_plan=False, plan_timeout_s=0.5)
    now = T0 + PERIOD
    loop.on_joint_state(np.array([0.0, 0.0]), now, now)
    r = loop.tick(now)
    assert (r.publish, r.decision.command, r.decision.reasons, r.decision.fault, r.plan_request_ns) == (
        False, None, ["no plan yet (silent)"], False, None)
    assert r.decision.mode == MODE_HOLD and r.decision.publish is False
    loop.on_joint_state(np.array([5.0, 0.0]), now, now)  # implausible: a fault, reported even while silent
    r = loop.tick(now)
    assert r.publish is False and r.decision.fault is True and r.decision.publish is False
    assert r.decision.reasons[0] == "no plan yet (silent)" and len(r.decision.reasons) == 2
    loop.on_joint_state(np.array([0.0, 0.0]), now + 6 * PERIOD, now + 6 * PERIOD)
    r = loop.tick(now + 6 * PERIOD)  # the first plan did not come within plan_timeout_s: asked for, still silent
    assert (r.publish, r.plan_request_ns) == (False, now + 6 * PERIOD)
    loop.on_plan((1, 0.0), 1, now + 6 * PERIOD, now + 6 * PERIOD)
    _, t = run_ticks(loop, now + 6 * PERIOD, 1)
    loop.on_joint_state(np.array([0.0, 0.0]), t + PERIOD, t + PERIOD)
    r = loop.tick(t + PERIOD)  # done: hold, and why
    assert r.decision.reasons == ["waiting for the plan of a frame from now on (sync_plans)", "no plan"]
    assert r.publish and r.decision.command.tolist() == [0.0, 0.0]


def test_sync_plans_silent_while_waiting_publish_nothing_until_the_next_plan():
    """silent_while_waiting: nothing is sent while waiting; the arm keeps its last goal (a sim pauses).

    The plan is still asked for, faults are still reported, and the next plan's first command is step-limited against
    the last one sent.
    """
    loop, calls = make_loop(min_plan_ticks=2, sync_plans=True, silent_while_waiting=True, plan_timeout_s=0.5)
    now = T0 + PERIOD
    loop.on_joint_state(np.array([0.0, 0.0]), now, now)
    r = loop.tick(now)  # the first plan has not come: silent
    assert (r.publish, r.decision.command) == (False, None)
    loop.on_plan((1, 0.3), 1, now, now)
    seen, now = run_ticks(loop, now, 2)
    assert seen == [(1, 0), (1, 1)]
    sent = loop.safety.last_command.copy()
    for i in range(3):  # the plan is done: asked for, silent, the measurement still checked
        now += PERIOD
        loop.on_joint_state(np.array([5.0 if i == 1 else 0.3, 0.0]), now, now)
        r = loop.tick(now)
        assert (r.publish, r.decision.command, r.decision.publish) == (False, None, False)
        assert r.plan_request_ns == now - i * PERIOD and r.decision.fault is (i == 1)
        assert r.decision.reasons[0] == "waiting for the plan of a frame from now on (silent)"
    assert loop.safety.last_command.tolist() == sent.tolist()
    loop.on_plan((2, 0.95), 2, now, now)
    now += PERIOD
    loop.on_joint_state(np.array([0.3, 0.0]), now, now)
    r = loop.tick(now)  # step 0 of the next plan, limited to max_step (0.5) from the last command sent
    assert r.publish and (r.plan_id, r.step_index) == (2, 0) and calls[-1] == (2, 0)
    assert np.abs(r.decision.command - sent).max() <= 0.5 + 1e-9 and r.decision.command[0] > sent[0]


def test_restart_after_the_clock_jumped_back_holds_then_follows_the_new_timeline():
    """A looped bag or simulator reset: stamps start over. Without restart() every new input is out of order."""
    loop, calls = make_loop(min_plan_ticks=1)
    loop.on_plan((1, 0.2), 1, T0, T0)
    _, now = run_ticks(loop, T0, 3)
    back = now - 30 * NS  # the clock jumped back 30 s
    with pytest.raises(StaleInput, match="older than the last accepted"):
        loop.on_joint_state(np.zeros(2), back, back)
    loop.restart()
    r = loop.tick(back)
    assert r.decision.mode == MODE_HOLD and r.plan_id == -1 and r.publish  # the old plan and measurement are gone
    np.testing.assert_array_equal(r.decision.command, loop.safety.last_command)  # holds its last command
    loop.on_plan((2, -0.1), 2, back, back)
    seen, _ = run_ticks(loop, back, 2)
    assert seen == [(2, 0), (2, 1)] and calls[-1] == (2, 1)
