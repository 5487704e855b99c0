# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Controller node on real DDS.

Watchdog hold when plans stop, tick stepping through the plan, dry run, the Float64MultiArray output and the achieved
control rate.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")

import torch  # noqa: E402
from sigma_ros_msgs.msg import ActionPlan  # noqa: E402

from sigma_model.safety import SO101_LOWER_LIMITS, SO101_UPPER_LIMITS  # noqa: E402
from sigma_ros.conversions import plan_to_msg  # noqa: E402
from sigma_ros.model_loader import build_full_model  # noqa: E402
from sigma_ros.testing import JOINTS, GraphHarness  # noqa: E402

Q0 = np.array([0.0, 0.1, -0.1, 0.2, 0.0, 0.3])
TIMEOUT = 0.3
RATE = 30.0
# limits that never alter the commands compared with control_stage
WIDE = {"joint_lower_limits": [-100.0] * 6, "joint_upper_limits": [100.0] * 6, "max_step_rad": [100.0]}


@pytest.fixture(scope="module")
def model():
    return build_full_model(seed=0)


def make_plan(model, h, seed: int) -> ActionPlan:
    c = model.config
    g = torch.Generator().manual_seed(seed)
    rep = torch.randn(1, 10, c.d_model, generator=g)
    mask = torch.ones(1, 10, dtype=torch.bool)
    tau = torch.randn(1, c.d_tau, generator=g)
    st = torch.randn(1, c.n_state_tokens, c.d_model, generator=g)
    with torch.inference_mode():
        act = model.action_stage(rep, mask, tau, st, generator=torch.Generator().manual_seed(0))
    msg = plan_to_msg(act)
    msg.header.stamp = h.now()
    msg.plan_id = seed
    msg.joint_names = list(JOINTS)
    msg.adapter_scale = [1.0]
    msg.risk = [0.0]
    return msg, act


@contextlib.contextmanager
def settled_controller(name: str, **params):
    """Yield the controller node alone at RATE with WIDE limits (plus `params`), fed joint states at Q0 for 0.3 s."""
    with GraphHarness(
        name, nodes=("controller_node",), overrides={"controller_node": dict(WIDE, rate_hz=RATE, **params)}
    ) as h:
        h.wait_matched()
        h.stream_joint_states(Q0)
        time.sleep(0.3)
        yield h


def plan_ticks(model, act, ticks) -> list[np.ndarray]:
    """control_stage(step_index=k) of `act` at the measured position Q0, for each k in `ticks`."""
    q = torch.tensor(Q0, dtype=torch.float32)[None]
    with torch.inference_mode():
        return [
            model.control_stage(act.action_vector, act.action_chunk, act.action_trajectory, q, k)[0].double().numpy()
            for k in ticks
        ]


def first_plan_command(cmds) -> int:
    """Index of the first command that is not the hold at Q0."""
    return next(i for i, c in enumerate(cmds) if not np.allclose(c, Q0, atol=1e-12))


def commands(h, key="motor_commands"):
    msgs = h.rec.get(key)
    times = h.rec.times[key][: len(msgs)]
    if key == "motor_commands" and h.output_type == "joint_trajectory":
        return [np.array(m.points[0].positions) for m in msgs], times
    return [np.array(m.data) for m in msgs], times


def test_watchdog_holds_when_plans_stop(model):
    with settled_controller("test_ros_controller_watchdog", plan_timeout_s=TIMEOUT, min_plan_ticks=1) as h:
        ctrl = h.by_name["controller_node"]
        assert ctrl.mode == "hold" and "no plan" in ctrl.reason
        modes = []  # (time, mode) of every tick
        tick = ctrl.loop.tick

        def recorded_tick(now_ns):
            result = tick(now_ns)
            modes.append((time.perf_counter(), result.decision.mode))
            return result

        ctrl.loop.tick = recorded_tick
        pub = h.pub_internal["action_plan"]
        t_end = time.monotonic() + 1.0
        i = 0
        while time.monotonic() < t_end:
            msg, act = make_plan(model, h, 100 + i)
            pub.publish(msg)
            t_last = time.perf_counter()
            i += 1
            time.sleep(0.1)
        assert ctrl.mode == "running", (ctrl.mode, ctrl.reason)
        # ticks step through the newest plan: tick k == control_stage(step_index=k)
        expected = plan_ticks(model, act, range(5))
        time.sleep(TIMEOUT + 0.7)
        cmds, times = commands(h)
        # its first tick is 0-1 periods after its stamp: step 0 or 1 (to the nearest tick), then one step per tick
        start, s = next((j, s) for j in range(len(cmds)) for s in (0, 1)
                        if np.allclose(cmds[j], expected[s], atol=1e-5))
        for k in range(1, 4):
            np.testing.assert_allclose(cmds[start + k], expected[s + k], atol=1e-5)
        # after the last plan: hold within the timeout (+2 ticks, + scheduling slack), for good
        holds = [t for t, mode in modes if t > t_last and mode == "hold"]
        assert holds, "controller never held after plans stopped"
        first_hold = holds[0] - t_last
        assert TIMEOUT - 0.05 <= first_hold <= TIMEOUT + 2.0 / RATE + 0.25, first_hold
        assert [m for t, m in modes if t >= holds[0]] == ["hold"] * len([t for t, _ in modes if t >= holds[0]])
        # the hold keeps the last command: no jump back to the measured position
        held = [c for c, t in zip(cmds, times) if t > holds[0] + 0.05]
        assert held and all(np.array_equal(c, held[0]) for c in held)
        assert not np.allclose(held[0], Q0, atol=1e-3)
        assert ctrl.mode == "hold" and "stale" in ctrl.reason
        st = h.status_of("controller_node")
        rates = dict(zip(st.rate_names, st.rates_hz))
        metrics = dict(zip(st.metric_names, st.metric_values))
        assert abs(rates["control_achieved"] - RATE) < 5.0, rates
        assert metrics["holds"] >= 2 and metrics["plan_age_s"] > TIMEOUT


@pytest.mark.parametrize("align", [True, False])
def test_plan_starts_at_the_tick_of_its_camera_frame(model, align):
    """While a plan runs, one computed from a frame 4 ticks old starts at step_index 4 (aligned) or 0 (not).

    The first plan (nothing ran since the frame) starts at step 0 either way.
    """
    with settled_controller(f"test_ros_controller_align_{align}", align_plans_to_stamp=align, min_plan_ticks=1) as h:
        late = []
        for seed in (6, 7):
            msg, act = make_plan(model, h, seed)
            old = h.probe.get_clock().now().nanoseconds - int(4 / RATE * 1e9)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(old, 1_000_000_000)
            h.pub_internal["action_plan"].publish(msg)
            late.append(act)
            time.sleep(0.2)
        cmds, _ = commands(h)
        first_steps = []
        for act in late:
            expected = plan_ticks(model, act, range(8))
            j = next(j for j in range(len(cmds)) if any(np.allclose(cmds[j], e, atol=1e-5) for e in expected))
            first_steps.append([k for k in range(8) if np.allclose(cmds[j], expected[k], atol=1e-5)])
        assert first_steps[0] == [0], first_steps
        assert first_steps[1] == ([4] if align else [0]) or (align and first_steps[1] == [5]), first_steps


@pytest.mark.parametrize("min_plan_ticks", [4, 0])
def test_min_plan_ticks_runs_a_plan_before_switching(model, min_plan_ticks):
    """A plan that arrives right after another waits min_plan_ticks ticks of the first.

    min_plan_ticks 0 means the model's n_action_steps.
    """
    first = min_plan_ticks or model.config.n_action_steps
    assert first == (4 if min_plan_ticks else 8)
    with settled_controller(f"test_ros_controller_min_ticks_{min_plan_ticks}", align_plans_to_stamp=False,
                            min_plan_ticks=min_plan_ticks) as h:
        (msg_a, act_a), (msg_b, act_b) = make_plan(model, h, 11), make_plan(model, h, 12)
        h.pub_internal["action_plan"].publish(msg_a)
        time.sleep(0.01)
        h.pub_internal["action_plan"].publish(msg_b)
        time.sleep(0.7)
        ticks = plan_ticks(model, act_a, range(first)) + plan_ticks(model, act_b, range(4))
        cmds, _ = commands(h)
        start = first_plan_command(cmds)
        for k, want in enumerate(ticks):
            np.testing.assert_allclose(cmds[start + k], want, atol=1e-5)


def test_dry_run_publishes_no_motor_command(model):
    with GraphHarness("test_ros_controller_dry", nodes=("controller_node",),
                      overrides={"controller_node": {"dry_run": True}}) as h:
        h.wait_matched()
        h.stream_joint_states(Q0)
        for i in range(5):
            h.pub_internal["action_plan"].publish(make_plan(model, h, i)[0])
            time.sleep(0.1)
        time.sleep(0.3)
        assert h.rec.count("motor_commands") == 0
        dry, _ = commands(h, "dry_run_commands")
        assert len(dry) > 5 and all(np.isfinite(c).all() and c.shape == (6,) for c in dry)
        assert h.by_name["controller_node"].mode == "dry_run"


def test_float64_multi_array_output_and_limits(model):
    with GraphHarness("test_ros_controller_f64", nodes=("controller_node",), output_type="float64_multi_array",
                      overrides={"controller_node": {"max_step_rad": [0.05], "plan_timeout_s": 5.0}}) as h:
        h.wait_matched()
        h.stream_joint_states(Q0)
        h.pub_internal["action_plan"].publish(make_plan(model, h, 1)[0])
        time.sleep(0.6)
        cmds, _ = commands(h)
        assert cmds and all(c.shape == (6,) and np.isfinite(c).all() for c in cmds)
        # per-tick relative limit around the measured position and the previous command, joint limits
        lo, hi = np.array(SO101_LOWER_LIMITS), np.array(SO101_UPPER_LIMITS)
        for prev, c in zip([Q0] + cmds, cmds):
            assert (np.abs(c - Q0) <= 0.05 + 1e-12).all()
            assert (np.abs(c - prev) <= 0.05 + 1e-12).all()
            assert (c >= lo).all() and (c <= hi).all()
        assert h.rec.get("motor_commands")[-1].layout.dim[0].size == 6


def test_reset_drops_the_plan_and_holds(model):
    """sigma/reset (a new episode): the controller forgets its plans and its last command.

    It holds the arm where it is measured (the arm may have been moved by the reset), not at the last command.
    """
    from std_msgs.msg import Empty

    from sigma_ros import graph, qos

    with settled_controller("test_ros_controller_reset", plan_timeout_s=5.0, min_plan_ticks=1) as h:
        ctrl = h.by_name["controller_node"]
        h.pub_internal["action_plan"].publish(make_plan(model, h, 3)[0])
        deadline = time.monotonic() + 5
        while ctrl.mode != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ctrl.mode == "running"
        time.sleep(0.2)
        before, _ = commands(h)
        assert np.abs(before[-1] - Q0).max() > 1e-3  # the plan moved the command away from the measurement
        reset = h.probe.create_publisher(Empty, graph.TOPIC_BY_KEY["reset"].name, qos.INSTRUCTION)
        while reset.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        reset.publish(Empty())
        while ctrl.mode != "hold" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ctrl.mode == "hold" and "no plan" in ctrl.reason, (ctrl.mode, ctrl.reason)
        time.sleep(0.2)
        cmds, _ = commands(h)
        assert np.array_equal(cmds[-1], cmds[-2])
        np.testing.assert_allclose(cmds[-1], Q0, atol=1e-9)


def test_sync_plans_hold_at_the_plan_end_and_ask_for_the_next_plan(model):
    """sync_plans: a plan runs min_plan_ticks steps from step 0, then the arm holds its last command.

    The controller asks (sigma/plan_request) for a plan of a frame stamped from then on; that one runs from step 0,
    older ones never.
    """
    from std_msgs.msg import Header

    from sigma_ros import graph, qos

    with settled_controller("test_ros_controller_sync", sync_plans=True, min_plan_ticks=4) as h:
        requests = []
        h.probe.create_subscription(Header, graph.TOPIC_BY_KEY["plan_request"].name,
                                    lambda m: requests.append(m.stamp.sec * 1_000_000_000 + m.stamp.nanosec),
                                    qos.PIPELINE)
        time.sleep(0.3)
        (msg_a, act_a), (msg_b, act_b), (msg_c, act_c) = (make_plan(model, h, s) for s in (21, 22, 23))
        msg_a.header.stamp = h.now()  # (after a request the controller may have made while no plan came)
        stamp_a = msg_a.header.stamp.sec * 1_000_000_000 + msg_a.header.stamp.nanosec
        h.pub_internal["action_plan"].publish(msg_a)
        deadline = time.monotonic() + 5
        while not any(r > stamp_a for r in requests) and time.monotonic() < deadline:
            time.sleep(0.01)
        after = [r for r in requests if r > stamp_a]
        assert after, "no plan request after the plan's 4 ticks"
        h.pub_internal["action_plan"].publish(msg_b)  # its frame is older than the request: never run
        time.sleep(0.3)
        after = [r for r in requests if r > stamp_a]
        assert len(set(after)) == 1 and len(after) > 3  # the same request, repeated while the arm holds
        msg_c.header.stamp = h.now()  # a frame from after the request
        h.pub_internal["action_plan"].publish(msg_c)
        time.sleep(0.5)
        cmds, _ = commands(h)
        start = first_plan_command(cmds)
        want_a, want_c = plan_ticks(model, act_a, range(4)), plan_ticks(model, act_c, range(4))
        for k in range(4):
            np.testing.assert_allclose(cmds[start + k], want_a[k], atol=1e-5)
        held = start + 4
        n_held = next(i for i in range(held, len(cmds)) if not np.allclose(cmds[i], want_a[3], atol=1e-9)) - held
        assert n_held > 3  # the hold: plan a's last command
        for k in range(4):
            np.testing.assert_allclose(cmds[held + n_held + k], want_c[k], atol=1e-5)
        assert not any(np.allclose(c, w, atol=1e-5) for c in cmds for w in plan_ticks(model, act_b, range(8)))
