"""/diagnostics: one diagnostic_msgs/DiagnosticStatus per node and status period, as
diagnostic_updater publishes it (name "<node>: sigma", hardware_id, level, message, key/values),
with the level judged from the lifecycle state, the mode and the inputs dropped since the last
report."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sigma_ros.diagnostics import ERROR, OK, WARN, DropWatch, judge


def test_levels_from_state_mode_and_drops():
    assert judge("active", "running", "", {}) == (OK, "running")
    assert judge("active", "dry_run", "", {"camera": 0}) == (OK, "dry_run")
    assert judge("active", "hold", "no plan yet", {}) == (WARN, "hold: no plan yet")
    assert judge("inactive", "inactive", "deactivated", {}) == (WARN, "inactive (deactivated)")
    assert judge("unconfigured", "unconfigured", "", {}) == (WARN, "unconfigured")
    level, message = judge("active", "running", "", {"camera": 2, "audio": 0})
    assert level == WARN and message == "running; dropped since last report: camera=2"
    level, message = judge("active", "hold", "measurement fault", {"joint_state_faults": 1})
    assert level == ERROR and "joint_state_faults=1" in message
    assert judge("unconfigured", "unconfigured", "", {}, "no Sigma checkpoint at /x") == \
        (ERROR, "cannot configure: no Sigma checkpoint at /x")


def test_drop_watch_counts_since_the_previous_report():
    watch = DropWatch()
    assert watch.new({"camera": 3}) == {"camera": 3}
    assert watch.new({"camera": 3, "audio": 1}) == {"camera": 0, "audio": 1}
    assert watch.new({"camera": 5, "audio": 1}) == {"camera": 2, "audio": 0}


rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")
pytest.importorskip("diagnostic_msgs.msg")

from test_ros_controller import Q0, RATE, WIDE, make_plan  # noqa: E402

from sigma_ros.model_loader import build_full_model  # noqa: E402
from sigma_ros.testing import GraphHarness  # noqa: E402


def _next_status(h, node: str, timeout: float = 10.0, predicate=lambda s: True, start: int | None = None):
    """The next DiagnosticStatus of ``node`` recorded after this call (or after the first ``start``
    arrays) that satisfies ``predicate``."""
    start = h.rec.count("diagnostics") if start is None else start
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for array in h.rec.get("diagnostics")[start:]:
            for status in array.status:
                if status.name == f"{node}: sigma" and predicate(status):
                    return status
        time.sleep(0.05)
    seen = [(_level(s), s.message) for a in h.rec.get("diagnostics")[start:] for s in a.status if s.name == f"{node}: sigma"]
    raise TimeoutError(f"no matching diagnostics from {node}; seen (level, message): {seen[-8:]}")


def _level(status) -> int:
    return status.level[0] if isinstance(status.level, bytes) else int(status.level)


def test_controller_diagnostics_follow_state_mode_and_drops():
    model = build_full_model(seed=0)
    with GraphHarness("test_ros_diagnostics", nodes=("controller_node",), activate=False,
                      overrides={"controller_node": dict(WIDE, rate_hz=RATE, min_plan_ticks=1, status_period_s=0.2,
                                                         plan_timeout_s=1.0)}) as h:
        status = _next_status(h, "controller_node")
        assert _level(status) == WARN and status.message.startswith("unconfigured")
        assert status.hardware_id == "cpu"
        h.bring_up("controller_node")
        h.wait_matched()
        h.stream_joint_states(Q0)

        # active but no plan: holding -> WARN with the reason
        status = _next_status(h, "controller_node", predicate=lambda s: "hold" in s.message)
        values = dict((kv.key, kv.value) for kv in status.values)
        assert _level(status) == WARN and status.message.startswith("hold: no plan"), status.message
        assert values["lifecycle state"] == "active" and values["mode"] == "hold"
        assert float(values["ticks rate (Hz)"]) > 0 and "dropped action_plan" in values

        # plans flowing: running -> OK
        pub = h.pub_internal["action_plan"]
        good, _ = make_plan(model, h, 5)  # (made once: the model in the probe's timer starved its recording)

        def publish_good() -> None:
            good.header.stamp = h.now()
            pub.publish(good)

        timer = h.probe.create_timer(0.1, publish_good)
        try:
            status = _next_status(h, "controller_node", predicate=lambda s: _level(s) == OK)
            assert status.message == "running"
            values = dict((kv.key, kv.value) for kv in status.values)
            assert "control_stage latency last/mean/max (ms)" in values

            # a bad plan (another robot's joints) is dropped: WARN naming the input
            bad, _ = make_plan(model, h, 6)
            bad.joint_names = ["a", "b", "c", "d", "e", "f"]
            start = h.rec.count("diagnostics")  # (the report can arrive before the next line runs)
            pub.publish(bad)
            status = _next_status(h, "controller_node", predicate=lambda s: "action_plan=" in s.message, start=start)
            assert _level(status) == WARN and "dropped since last report: action_plan=1" in status.message, \
                status.message

            # an implausible joint state is a fault: ERROR
            h.set_joint_positions(np.full(6, 500.0))  # beyond the (wide) limits
            status = _next_status(h, "controller_node", predicate=lambda s: _level(s) == ERROR)
            assert "joint_state_faults" in status.message, status.message
        finally:
            timer.cancel()
            h.set_joint_positions(Q0)

        # deactivated: WARN inactive
        from lifecycle_msgs.msg import Transition

        assert h.lifecycle("controller_node").change(Transition.TRANSITION_DEACTIVATE) is True
        status = _next_status(h, "controller_node",  # (a report may still count faults from before: ERROR)
                              predicate=lambda s: s.message.startswith("inactive") and _level(s) != ERROR)
        assert _level(status) == WARN and status.message == "inactive (deactivated)", status.message
