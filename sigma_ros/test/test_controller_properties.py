"""The property-based safety tests of ``sigma_model/tests/test_safety_properties.py`` through the
controller node's message callbacks: random sequences of plans (from the model's action stage,
sometimes absurd), joint states by name with any stamp, ticks and resets, with the node's clock
replaced; every message the node publishes obeys the safety guarantees."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigma_model.freshness import NS
from sigma_model.safety import MODE_TRACK
from sigma_model.testing_safety import Checker, drive_loop, loop_events

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")

NODE_EXAMPLES = int(100 * float(os.environ.get("SIGMA_PROPERTY_SCALE", "1")))


@pytest.fixture(scope="module")
def ros_context():
    from sigma_ros.testing import isolated_context

    context = isolated_context("test_controller_properties")
    yield context
    context.try_shutdown()


@settings(max_examples=NODE_EXAMPLES, derandomize=os.environ.get("SIGMA_PROPERTY_RANDOM") != "1", database=None,
          deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(events=loop_events(), seed=st.integers(0, 2**32 - 1), dry_run=st.booleans(), max_step=st.floats(0.01, 0.3),
       min_plan_ticks=st.integers(1, 8))
def test_controller_node_never_publishes_an_unsafe_command(ros_context, events, seed, dry_run, max_step,
                                                          min_plan_ticks):
    """Random sequences through ControllerNode.on_plan / on_joint_state / on_tick with real messages
    (plans from the model's action stage, sometimes absurd; joint states by name, any stamp) and the
    node's clock replaced: every message it publishes obeys the guarantees."""
    import torch

    from sigma_ros.controller_node import ControllerNode
    from sigma_ros.conversions import make_joint_state, plan_to_msg
    from sigma_ros.testing import JOINTS

    rng = np.random.default_rng(seed)
    node = ControllerNode(context=ros_context, parameter_overrides=[
        rclpy.parameter.Parameter("max_step_rad", value=[max_step]),
        rclpy.parameter.Parameter("dry_run", value=dry_run),
        rclpy.parameter.Parameter("min_plan_ticks", value=min_plan_ticks),
    ])
    try:
        node.trigger_configure()
        node.trigger_activate()
        cfg, c = node.safety.config, node.config
        clock = {"now": 1_000 * NS}
        node.now_ns = lambda: clock["now"]
        sent: list = []
        node.cmd_pub.publish = sent.append
        node.dry_pub.publish = sent.append
        checker = Checker(cfg)
        faults = [0]

        def on_plan(_targets, stamp, now):
            g = torch.Generator().manual_seed(int(stamp) % 1000)
            with torch.inference_mode():
                act = node.model.action_stage(
                    torch.randn(1, 4, c.d_model, generator=g), torch.ones(1, 4, dtype=torch.bool),
                    torch.randn(1, c.d_tau, generator=g), torch.randn(1, c.n_state_tokens, c.d_model, generator=g))
                if rng.random() < 0.25:
                    act.action_trajectory.mul_(1e30)  # an absurd plan
            msg = plan_to_msg(act)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp), NS)
            msg.plan_id = 1
            clock["now"] = now
            node.guarded("action_plan", node.on_plan)(msg)

        def on_state(vec, stamp, now):
            vec = None if vec is None or np.asarray(vec).size != 6 else vec
            positions = [float("nan")] * 6 if vec is None else [float(v) for v in vec]
            msg = make_joint_state(positions, JOINTS)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp), NS)
            clock["now"] = now
            node.guarded("joint_states", node.on_joint_state)(msg)

        def tick(now):
            clock["now"] = now
            before = len(sent)
            node.on_tick()
            out = sent[before:]
            assert len(out) <= 1
            command = None
            if out:
                command = np.array(out[0].data if dry_run else out[0].points[0].positions)
            decision = SimpleNamespace(command=command, fault=node.safety.faults > faults[0],
                                       mode=MODE_TRACK if node.mode == "running" else node.mode,
                                       publish=bool(out) and not dry_run)
            faults[0] = node.safety.faults
            return SimpleNamespace(decision=decision, publish=decision.publish)

        drive_loop(events, rng, cfg, tick, on_plan, on_state, node.reset_episode, node.loop.measured, checker)
    finally:
        node.destroy_node()
