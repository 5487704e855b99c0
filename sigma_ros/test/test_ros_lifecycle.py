"""The Sigma nodes are managed nodes, driven through their standard lifecycle services:
unconfigured -> inactive -> active -> inactive. The controller publishes nothing before it is
active, one hold on deactivate and nothing after; a plan that arrives while it is inactive is never
executed; every node stops its outputs while inactive and resumes when activated again; cleanup
releases the model and a new configure loads it again."""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")
pytest.importorskip("diagnostic_msgs.msg")

from lifecycle_msgs.msg import Transition  # noqa: E402
from test_ros_controller import Q0, RATE, WIDE, commands, make_plan  # noqa: E402

from sigma_ros.model_loader import build_full_model  # noqa: E402
from sigma_ros.testing import GraphHarness  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return build_full_model(seed=0)


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_controller_lifecycle_commands_only_while_active(model):
    with GraphHarness("test_ros_lifecycle_controller", nodes=("controller_node",), activate=False,
                      overrides={"controller_node": dict(WIDE, rate_hz=RATE, min_plan_ticks=1,
                                                         plan_timeout_s=10.0)}) as h:
        ctrl = h.by_name["controller_node"]
        life = h.lifecycle("controller_node")
        assert life.state(30) == "unconfigured" and ctrl.model is None
        h.stream_joint_states(Q0)

        # configure: the checkpoint is loaded, nothing is published (the node is inactive)
        assert life.change(Transition.TRANSITION_CONFIGURE, 60) is True
        assert life.state() == "inactive" and ctrl.model is not None
        states = []  # the lifecycle state at every motor command the node publishes
        publish = ctrl.cmd_pub.publish
        ctrl.cmd_pub.publish = lambda msg: (states.append(ctrl.lifecycle_state()), publish(msg))
        h.wait_matched()
        plan, _ = make_plan(model, h, 7)
        h.pub_internal["action_plan"].publish(plan)  # arrives while inactive: must never be executed
        time.sleep(1.0)
        assert h.rec.count("motor_commands") == 0

        # activate: the timer runs; the plan from before is not executed, the arm holds at Q0
        assert life.change(Transition.TRANSITION_ACTIVATE) is True
        h.rec.wait_for("motor_commands", 10, 10)
        cmds, _ = commands(h)
        assert all(np.allclose(c, Q0, atol=1e-9) for c in cmds), "a plan received while inactive was executed"
        assert ctrl.mode == "hold" and "no plan" in ctrl.reason

        # a plan while active is executed
        plan, _ = make_plan(model, h, 8)
        plan.header.stamp = h.now()
        h.pub_internal["action_plan"].publish(plan)
        _wait(lambda: any(not np.allclose(c, Q0, atol=1e-6) for c in commands(h)[0]), 10, "the plan's commands")

        # deactivate: one hold command (the last command again), then nothing
        assert life.change(Transition.TRANSITION_DEACTIVATE) is True
        time.sleep(0.5)
        cmds, _ = commands(h)
        assert states.count("deactivating") == 1 and set(states) == {"active", "deactivating"}, set(states)
        np.testing.assert_allclose(cmds[-1], cmds[-2], atol=1e-12)  # the arm holds where it was commanded
        assert ctrl.mode == "inactive"
        plan, _ = make_plan(model, h, 9)
        plan.header.stamp = h.now()
        h.pub_internal["action_plan"].publish(plan)  # ignored while inactive
        time.sleep(1.0)
        assert h.rec.count("motor_commands") == len(cmds), "the controller published while inactive"
        assert ctrl.loop.plan is None and ctrl.loop.pending is None

        # cleanup releases the model; configure + activate bring it back, holding
        assert life.change(Transition.TRANSITION_CLEANUP) is True
        assert life.state() == "unconfigured" and ctrl.model is None
        ok, what = life.bring_up(60)
        assert ok, what
        n = h.rec.count("motor_commands")
        h.rec.wait_for("motor_commands", n + 5, 10)
        assert all(np.allclose(c, Q0, atol=1e-9) for c in commands(h)[0][n:])


def test_pipeline_nodes_stop_while_inactive_and_resume():
    """A deactivated perception node produces no tokens from camera frames; activated again, it does."""
    with GraphHarness("test_ros_lifecycle_pipeline", nodes=("perception_node",)) as h:
        life = h.lifecycle("perception_node")
        h.wait_matched()
        h.stream_joint_states(Q0)
        time.sleep(0.3)

        def frames(n: int) -> None:
            for i in range(n):
                h.send_audio(np.zeros(1600, np.float32), 16000)
                h.send_image(np.full((96, 96, 3), 30 * i, np.uint8))
                time.sleep(0.15)

        frames(3)
        h.rec.wait_for("vision_tokens", 1, 20)
        assert life.change(Transition.TRANSITION_DEACTIVATE) is True
        n = h.rec.count("vision_tokens")
        frames(4)
        time.sleep(0.5)
        assert h.rec.count("vision_tokens") == n, "tokens published while inactive"
        assert h.by_name["perception_node"].mode == "inactive"
        assert life.change(Transition.TRANSITION_ACTIVATE) is True
        deadline = time.monotonic() + 20
        while h.rec.count("vision_tokens") == n:
            assert time.monotonic() < deadline, "no tokens after activation"
            frames(1)
