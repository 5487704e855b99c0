# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The sim clock jumping back (``ros2 bag play --loop --clock``, a simulator reset) on perception and controller.

Every stamp seen before the jump lies in the future of the new timeline: without handling the jump the nodes refuse
all new inputs as out of order and hold for good. With it the jump is a reset: counted, histories cleared, the arm
holds, and the new timeline's frames and plans run.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")

import torch  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402

from sigma_ros.conversions import array_to_image, make_joint_state, plan_to_msg, time_from_ns  # noqa: E402
from sigma_ros.testing import JOINTS, GraphHarness  # noqa: E402

NS = 1_000_000_000
Q0 = np.array([0.0, 0.1, -0.1, 0.2, 0.0, 0.3])
WIDE = {"joint_lower_limits": [-100.0] * 6, "joint_upper_limits": [100.0] * 6, "max_step_rad": [100.0]}


class SimClock:
    """A simulator: publishes /clock and joint states at Q0 stamped with it, 10 ms of sim time per 10 ms."""

    def __init__(self, h, start_ns: int) -> None:
        self.h, self.now_ns = h, start_ns
        self.pub = h.probe.create_publisher(Clock, "/clock", 10)
        self._lock = threading.Lock()
        self._stop, self._paused = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            if self._paused.is_set():
                continue
            with self._lock:
                self.now_ns += NS // 100
                stamp = time_from_ns(self.now_ns)
            self.pub.publish(Clock(clock=stamp))
            self.h.pub_joint.publish(make_joint_state(Q0, JOINTS, stamp))

    def stamp(self):
        with self._lock:
            return time_from_ns(self.now_ns)

    def jump(self, delta_ns: int) -> None:
        """Move the clock by ``delta_ns`` once the messages of the old timeline are delivered.

        One stamped before a jump back and delivered after it is refused as from the future, the reason the nodes
        then report last.
        """
        self._paused.set()
        time.sleep(0.3)
        with self._lock:
            self.now_ns += delta_ns
        self._paused.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def wait_until(cond, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def make_plan(ctrl, stamp, plan_id: int):
    c = ctrl.config
    g = torch.Generator().manual_seed(plan_id)
    with torch.inference_mode():
        act = ctrl.model.action_stage(torch.randn(1, 10, c.d_model, generator=g), torch.ones(1, 10, dtype=torch.bool),
                                      torch.randn(1, c.d_tau, generator=g),
                                      torch.randn(1, c.n_state_tokens, c.d_model, generator=g), generator=g)
    msg = plan_to_msg(act)
    msg.header.stamp = stamp
    msg.plan_id = plan_id
    msg.joint_names = list(JOINTS)
    return msg


def test_a_clock_jump_back_restarts_perception_and_controller():
    sim_time = {"use_sim_time": True}
    with GraphHarness("test_ros_clock_jump", nodes=("perception_node", "controller_node"),
                      overrides={"perception_node": sim_time,
                                 "controller_node": dict(WIDE, min_plan_ticks=1, plan_timeout_s=2.0, **sim_time)}) as h:
        h.wait_matched()
        perception, ctrl = h.by_name["perception_node"], h.by_name["controller_node"]
        size = perception.config.image_size
        sim = SimClock(h, 5000 * NS)
        try:
            def frame_and_plan(plan_id: int) -> int:
                """Send a camera frame and a plan stamped now (sim time); wait until both run. Returns the stamp."""
                stamp = sim.stamp()
                n_tokens = h.rec.count("vision_tokens")
                h.pub_image.publish(array_to_image(np.zeros((size, size, 3), np.uint8), "rgb8", stamp))
                wait_until(lambda: any(m.header.stamp == stamp for m in h.rec.get("vision_tokens")[n_tokens:]),
                           f"tokens of frame {plan_id}")
                h.pub_internal["action_plan"].publish(make_plan(ctrl, sim.stamp(), plan_id))
                wait_until(lambda: ctrl.last_plan_id == plan_id and ctrl.mode == "running", f"plan {plan_id} runs")
                return stamp.sec * NS + stamp.nanosec

            wait_until(lambda: ctrl.get_clock().now().nanoseconds >= 5000 * NS, "the sim clock")
            before = frame_and_plan(1)
            sim.jump(-60 * NS)  # the bag starts over
            for node in (perception, ctrl):
                wait_until(lambda node=node: node.stats.drops["clock_jumps_back"] == 1, f"{node.get_name()} jump")
            after = frame_and_plan(2)
            assert after < before - 50 * NS
            assert "ROS clock jumped back" in perception.stats.last_error
            st = h.status_of("controller_node")
            assert dict(zip(st.drop_names, st.drop_counts))["clock_jumps_back"] == 1
            # an error logged after the jump's warning (rclpy refuses two severities from one call site) is survived
            bad = make_joint_state(Q0, JOINTS, sim.stamp())
            bad.position[1] = float("nan")
            h.pub_joint.publish(bad)
            for node in (perception, ctrl):
                wait_until(lambda node=node: node.stats.drops["joint_states"] >= 1, f"{node.get_name()} refusal")
            frame_and_plan(3)
            cmds = [np.array(m.points[0].positions) for m in h.rec.get("motor_commands")]
            assert cmds and all(np.isfinite(c).all() for c in cmds)
        finally:
            sim.stop()


def test_switching_use_sim_time_at_run_time_restarts_the_controller():
    """Setting use_sim_time at run time moves the node onto another timeline: a restart, as a jump back is.

    rcl reports the switch (``ros2 param set /controller_node use_sim_time true``) as a clock change with a delta of
    0, not as a jump back. It is counted, the old plan and joint state dropped, and no command follows that plan
    afterwards (before, plan age and joint-state age came out negative: both stayed "fresh", the arm kept tracking).
    """
    from rclpy.parameter import Parameter

    with GraphHarness("test_ros_sim_time_switch", nodes=("controller_node",),
                      overrides={"controller_node": dict(WIDE, min_plan_ticks=1, plan_timeout_s=0.3)}) as h:
        h.wait_matched()
        h.stream_joint_states(Q0)
        ctrl = h.by_name["controller_node"]
        h.pub_internal["action_plan"].publish(make_plan(ctrl, h.now(), 1))
        wait_until(lambda: ctrl.last_plan_id == 1 and ctrl.mode == "running", "plan 1 runs")
        ctrl.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, True)])
        wait_until(lambda: ctrl.stats.drops["clock_jumps_back"] == 1, "the switch counted")
        n = h.rec.count("motor_commands")
        sim = SimClock(h, 1000 * NS)  # a simulator's /clock (and joint states stamped with it)
        try:
            wait_until(lambda: ctrl.get_clock().now().nanoseconds >= 1001 * NS, "a second of sim time")
        finally:
            sim.stop()
        assert ctrl.mode != "running", (ctrl.mode, ctrl.reason)
        plan_steps = {tuple(np.round(m.points[0].positions, 9)) for m in h.rec.get("motor_commands")[:n]}
        after = [tuple(np.round(m.points[0].positions, 9)) for m in h.rec.get("motor_commands")[n:]]
        assert after, "the controller holds at the new timeline's joint state"
        assert all(np.allclose(c, Q0) for c in after), after  # holds where the arm is, no plan step
        assert not plan_steps & set(after) - {tuple(np.round(Q0, 9))}
