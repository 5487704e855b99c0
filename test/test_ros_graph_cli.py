"""The project commands that replace ``ros2 launch`` / ``ros2 topic pub`` with the PyPI wheels:
``sigma-graph`` (one process per node, as launch does) and ``sigma-instruct``; topic remaps;
motor commands out; clean shutdown on Ctrl-C (SIGINT)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")

from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from sigma_ros import qos  # noqa: E402
from sigma_ros.testing import GraphHarness, domain_id_for  # noqa: E402

Q0 = np.array([0.0, 0.2, -0.2, 0.1, 0.0, 0.4])
REMAPPED = "/arm_controller/joint_trajectory"


def _env(domain: int) -> dict:
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_list_params():
    out = subprocess.run([sys.executable, "-m", "sigma_ros.graph_main", "--list-params"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    for name in ("rate_hz", "diffusion_seed", "max_instruction_chars", "resize_images", "checkpoint", "dry_run"):
        assert name in out
    assert "Watchdog" in out


def test_sigma_graph_runs_instruct_and_stops_on_sigint(tmp_path):
    domain = domain_id_for("test_ros_graph_cli")
    env = _env(domain)
    log = open(tmp_path / "graph.log", "w+")
    graph = subprocess.Popen(
        [sys.executable, "-m", "sigma_ros.graph_main", "--motor-commands-topic", REMAPPED, "--log-level", "info"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    h = None
    try:
        h = GraphHarness("test_ros_graph_cli_probe", nodes=(), domain_id=domain)
        remapped = []
        h.probe.create_subscription(JointTrajectory, REMAPPED, remapped.append, qos.COMMAND)
        deadline = time.monotonic() + 45
        while h.pub_image.get_subscription_count() < 1 or h.pub_instruction.get_subscription_count() < 1:
            assert graph.poll() is None, "sigma-graph exited early"
            assert time.monotonic() < deadline, "sigma-graph nodes did not come up"
            time.sleep(0.2)
        h.stream_joint_states(Q0)
        out = subprocess.run([sys.executable, "-m", "sigma_ros.instruct", "put the cup on the plate", "--wait", "20"],
                             env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "1 subscriber" in out.stdout, out.stdout
        time.sleep(1.0)  # controller, action node and the pipeline are discovered too
        plans_before = h.rec.count("action_plan")
        for i in range(3):
            h.send_audio(np.zeros(1600, np.float32), 16000)
            h.send_image(np.full((96, 96, 3), 40 * i, np.uint8))
            time.sleep(0.5)
        h.rec.wait_for("action_plan", plans_before + 1, 30)
        mem = h.rec.wait_for("semantic_memory", 1, 10)[-1]
        assert mem.instruction == "put the cup on the plate"
        deadline = time.monotonic() + 10
        while not remapped and time.monotonic() < deadline:
            time.sleep(0.05)
        assert remapped, "no motor command on the remapped topic"
        assert all(np.isfinite(m.points[0].positions).all() and len(m.points[0].positions) == 6 for m in remapped)
        assert h.rec.count("motor_commands") == 0  # the default name is remapped away
    finally:
        if h is not None:
            h.close()
        if graph.poll() is None:
            graph.send_signal(signal.SIGINT)
        try:
            rc = graph.wait(timeout=20)
        except subprocess.TimeoutExpired:
            graph.kill()
            rc = "killed"
        log.seek(0)
        text = log.read()
        log.close()
    assert rc == 0, f"sigma-graph exit code {rc}\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    assert text.count("starting") >= 4
