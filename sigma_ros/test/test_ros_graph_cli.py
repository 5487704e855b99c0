# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The project commands that replace ``ros2 launch`` / ``ros2 topic pub`` with the PyPI wheels.

``sigma-graph`` (one process per node, as launch does) and ``sigma-instruct``; topic remaps; motor commands out; clean
shutdown on Ctrl-C (SIGINT); a killed node restarted while the others run on, the controller holding meanwhile and the
semantic memory restored; a node that cannot start as configured stops the graph.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")

from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from sigma_ros import qos  # noqa: E402
from sigma_ros.testing import GraphHarness, domain_id_for  # noqa: E402

Q0 = np.array([0.0, 0.2, -0.2, 0.1, 0.0, 0.4])
REMAPPED = "/arm_controller/joint_trajectory"
SHIPPED = str(Path(__file__).resolve().parents[2] / "checkpoints" / "sigma_so101_default")


def _env(domain: int) -> dict:
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _start_graph(args: list[str], env: dict, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sigma_ros.graph_main", *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def _stop_graph(graph, log) -> tuple[object, str]:
    """SIGINT sigma-graph; its exit code and output."""
    if graph.poll() is None:
        graph.send_signal(signal.SIGINT)
    try:
        rc = graph.wait(timeout=30)
    except subprocess.TimeoutExpired:
        graph.kill()
        rc = "killed"
    log.seek(0)
    text = log.read()
    log.close()
    return rc, text


def _wait(condition, timeout: float, what: str, graph=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert graph is None or graph.poll() is None, f"sigma-graph exited while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_list_params():
    out = subprocess.run([sys.executable, "-m", "sigma_ros.graph_main", "--list_params=true"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    for name in ("rate_hz", "diffusion_seed", "max_instruction_chars", "resize_images", "checkpoint", "dry_run"):
        assert name in out
    assert "Watchdog" in out


def test_sigma_graph_runs_instruct_and_stops_on_sigint(tmp_path):
    domain = domain_id_for("test_ros_graph_cli")
    env = _env(domain)
    log = open(tmp_path / "graph.log", "w+")
    graph = _start_graph([f"--motor_commands_topic={REMAPPED}", "--log_level=info"], env, log)
    h = None
    try:
        h = GraphHarness("test_ros_graph_cli_probe", nodes=(), domain_id=domain)
        remapped = []
        h.probe.create_subscription(JointTrajectory, REMAPPED, remapped.append, qos.COMMAND)
        deadline = time.monotonic() + 180
        while h.pub_image.get_subscription_count() < 1 or h.pub_instruction.get_subscription_count() < 1:
            assert graph.poll() is None, "sigma-graph exited early"
            assert time.monotonic() < deadline, "sigma-graph nodes did not come up"
            time.sleep(0.2)
        h.stream_joint_states(Q0)
        out = subprocess.run([sys.executable, "-m", "sigma_ros.instruct", "--text=put the cup on the plate",
                              "--wait=20"], env=env, capture_output=True, text=True, timeout=60)
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
        rc, text = _stop_graph(graph, log)
    assert rc == 0, f"sigma-graph exit code {rc}\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    assert text.count("starting") >= 4


def _drive(h, graph, text: str):
    """Joint states, a camera frame every 0.2 s and ``text`` to the graph until 3 plans came; the frame timer."""
    h.stream_joint_states(Q0)
    frames = h.probe.create_timer(0.2, lambda: h.send_image(np.full((96, 96, 3), 60, np.uint8)))
    _wait(lambda: h.pub_instruction.get_subscription_count() >= 1, 30, "the instruction subscriber", graph)
    h.send_instruction(text)
    _wait(lambda: h.rec.count("action_plan") >= 3, 60, "plans", graph)
    return frames


def _text(log) -> str:
    log.seek(0)
    return log.read()


def _pids(log, name: str) -> list[int]:
    return [int(p) for p in re.findall(rf"{name} started \(pid (\d+)\)", _text(log))]


def test_sigma_graph_restarts_a_killed_node_and_the_graph_recovers(tmp_path):
    """Kill -9 of the language node.

    sigma-graph and the other nodes run on, the controller holds while no plans come, the node is restarted with its
    memory, and plans flow again.
    """
    domain = domain_id_for("test_ros_graph_respawn")
    log = open(tmp_path / "graph.log", "w+")
    graph = _start_graph([f"--checkpoint={SHIPPED}", "--respawn_delay=1.0"], _env(domain), log)
    text = "pick the cube and place it on the left"
    h = None
    try:
        h = GraphHarness("test_ros_graph_respawn_probe", nodes=(), domain_id=domain)
        nodes = {"perception_node", "language_node", "action_node", "controller_node"}
        _wait(lambda: nodes <= {m.node for m in h.rec.get("status")}, 180, "status from the four nodes", graph)
        frames = _drive(h, graph, text)
        before = h.rec.get("semantic_memory")[-1]
        assert before.instruction == text

        [pid] = _pids(log, "language_node")
        n_status, n_memory = h.rec.count("status"), h.rec.count("semantic_memory")
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: len(_pids(log, "language_node")) == 2, 60, "the restart of language_node", graph)
        # while the language node is down no plans come, and the controller holds
        _wait(lambda: any(m.node == "controller_node" and m.mode == "hold" for m in h.rec.get("status")[n_status:]),
              30, "a hold of the controller", graph)
        # the restarted node continues the semantic memory of the same instruction, and plans flow again
        _wait(lambda: h.rec.count("semantic_memory") > n_memory, 120, "memory from the restarted node", graph)
        after = h.rec.get("semantic_memory")[n_memory]
        assert after.instruction == text and after.step_index > before.step_index, (after.step_index, before.step_index)
        n_plans = h.rec.count("action_plan")
        _wait(lambda: h.rec.count("action_plan") >= n_plans + 3, 60, "plans after the restart", graph)
        assert graph.poll() is None
        log.seek(0)
        params = sorted(set(re.findall(r"--params-file (\S+/overrides_\S+)", log.read())))
        assert len(params) == 4 and all(Path(p).is_file() for p in params)  # kept for restarts
        assert stat.S_IMODE(Path(params[0]).parent.stat().st_mode) == 0o700
        frames.cancel()
    finally:
        if h is not None:
            h.close()
        rc, out = _stop_graph(graph, log)
    assert rc == 0, f"sigma-graph exit code {rc}\n{out[-3000:]}"
    assert "language_node exited with -9; restarting it in 1 s" in out
    assert "restarts: {'language_node': 1}" in out
    assert "restored semantic memory" in out
    assert out.count("language_node active") == 2  # brought to active again after the restart
    assert "Traceback" not in out, out[-3000:]
    assert not any(Path(p).exists() for p in params)  # removed when sigma-graph exits


def test_sigma_graph_does_not_restart_a_node_that_cannot_start(tmp_path):
    log = open(tmp_path / "graph.log", "w+")
    graph = _start_graph([f"--checkpoint={tmp_path / 'missing'}", "--nodes=[action_node]"],
                         _env(domain_id_for("test_ros_graph_bad_checkpoint")), log)
    try:
        rc = graph.wait(timeout=120)
    finally:
        _, out = _stop_graph(graph, log)
    assert rc == 2, out
    assert f"action_node: cannot start: no Sigma checkpoint at {tmp_path / 'missing'}" in out
    assert "action_node exited with 2; stopping the graph" in out and "restarting" not in out
    assert "Traceback" not in out


def test_sigma_graph_no_respawn_stops_the_graph(tmp_path):
    log = open(tmp_path / "graph.log", "w+")
    graph = _start_graph([f"--checkpoint={SHIPPED}", "--nodes=[controller_node]", "--respawn=false"],
                         _env(domain_id_for("test_ros_graph_no_respawn")), log)
    try:
        _wait(lambda: _pids(log, "controller_node"), 60, "the controller", graph)
        os.kill(_pids(log, "controller_node")[0], signal.SIGKILL)
        rc = graph.wait(timeout=60)
    finally:
        _, out = _stop_graph(graph, log)
    assert rc == 1, out
    assert "controller_node exited with -9; stopping the graph" in out and "restarting" not in out


def test_ctrl_c_while_the_nodes_still_import_stops_the_graph_quietly_and_at_once(tmp_path):
    """Ctrl-C reaches the terminal's whole process group: sigma-graph and its nodes, importing torch for seconds.

    Before, each node process still importing died of it with a KeyboardInterrupt traceback.
    """
    log = open(tmp_path / "graph.log", "w+")
    graph = subprocess.Popen([sys.executable, "-m", "sigma_ros.graph_main", f"--checkpoint={SHIPPED}"],
                             env=_env(domain_id_for("test_ros_graph_ctrl_c_early")), stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)  # a group of its own, as in a terminal
    try:
        _wait(lambda: len(_pids(log, "")) == 4, 60, "the four node processes", graph)
        os.killpg(graph.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        t0 = time.monotonic()
        rc = graph.wait(timeout=30)
        seconds = time.monotonic() - t0
    finally:
        _, out = _stop_graph(graph, log)
    assert rc == 0, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert "did not stop" not in out and seconds < 8, (seconds, out)  # no node waited for to its SIGTERM timeout


def test_sigma_graph_single_process_composes_the_active_graph(tmp_path):
    """--composition=single_process.

    The four nodes in one process, brought to active through their lifecycle services; plans and motor commands flow,
    /diagnostics reports every node active; SIGINT: exit 0.
    """
    domain = domain_id_for("test_ros_graph_single")
    log = open(tmp_path / "graph.log", "w+")
    graph = _start_graph(["--composition=single_process", f"--checkpoint={SHIPPED}"], _env(domain), log)
    h = None
    try:
        h = GraphHarness("test_ros_graph_single_probe", nodes=(), domain_id=domain)
        nodes = {"perception_node", "language_node", "action_node", "controller_node"}

        def active() -> set:
            return {s.name.split(":")[0] for a in h.rec.get("diagnostics") for s in a.status
                    if ("lifecycle state", "active") in {(kv.key, kv.value) for kv in s.values}}

        _wait(lambda: nodes <= active(), 180, "the four nodes active", graph)
        frames = _drive(h, graph, "pick the cube and place it on the left")
        _wait(lambda: h.rec.count("motor_commands") >= 3, 30, "motor commands", graph)
        frames.cancel()
    finally:
        if h is not None:
            h.close()
        rc, out = _stop_graph(graph, log)
    assert rc == 0, f"sigma-graph exit code {rc}\n{out[-3000:]}"
    assert "perception_node, language_node, action_node, controller_node active (one process)" in out
    assert "Traceback" not in out and "transition" not in out, out[-3000:]


def test_sigma_graph_single_process_with_a_bad_checkpoint_is_one_line_and_exit_code_2(tmp_path):
    log = open(tmp_path / "graph.log", "w+")
    graph = _start_graph(["--composition=single_process", f"--checkpoint={tmp_path / 'missing'}",
                          "--nodes=[action_node]"], _env(domain_id_for("test_ros_graph_single_bad")), log)
    try:
        rc = graph.wait(timeout=120)
    finally:
        _, out = _stop_graph(graph, log)
    assert rc == 2, out
    assert f"sigma-graph: action_node: cannot start: no Sigma checkpoint at {tmp_path / 'missing'}" in out
    assert "Traceback" not in out


# sigma-graph --composition=single_process interrupted during its start. "init": a SIGINT just before rclpy.init (whose
# handler is not installed yet); "configuring": the controller's configure (the model loading of a loaded machine)
# runs on in an executor worker thread, and the test sends SIGINT once it printed "configuring"; "unwoken": that
# configure shuts the context down as rclpy's signal thread does after it woke the executor, which wakes nothing.
_INTERRUPTED_GRAPH = """
import os, signal, sys, time
import rclpy
from sigma_ros import graph_main
from sigma_ros.controller_node import ControllerNode

def configure(self):
    print("configuring", flush=True)
    if sys.argv[1] == "unwoken":
        with self.context.handle:
            self.context.handle.shutdown()
    time.sleep(600)

if sys.argv[1] == "init":
    init = rclpy.init
    rclpy.init = lambda **kw: (os.kill(os.getpid(), signal.SIGINT), init(**kw))
else:
    ControllerNode.configure = configure
graph_main.main(sys.argv[2:])
"""


@pytest.mark.parametrize("when", ["init", "configuring", "unwoken"])
def test_sigma_graph_single_process_stops_when_interrupted_during_its_start(tmp_path, when):
    """Exit 0 at once.

    A SIGINT before rclpy.init is not lost, a node still configuring is not waited for, and the spin loop ends on a
    context shut down without a wake-up.
    """
    log = open(tmp_path / "graph.log", "w+")
    graph = subprocess.Popen([sys.executable, "-c", _INTERRUPTED_GRAPH, when, "--composition=single_process",
                              f"--checkpoint={SHIPPED}", "--nodes=[controller_node]"],
                             env=_env(domain_id_for("test_ros_graph_single_interrupted")), stdout=log,
                             stderr=subprocess.STDOUT)
    try:
        if when != "init":
            _wait(lambda: "configuring" in _text(log), 120, "the configure", graph)
        if when == "configuring":
            graph.send_signal(signal.SIGINT)
        rc = graph.wait(timeout=120 if when == "init" else 30)
    finally:
        _, out = _stop_graph(graph, log)
    assert rc == 0, out
    assert "Traceback" not in out and "active (one process)" not in out, out


@pytest.mark.parametrize("text", ["pick the\x07 cube", "   ", "pick\x1b[2J the cube"])
def test_sigma_instruct_refuses_bad_instructions(text):
    """Control characters (NUL would cut the text in transport) and empty texts: one line, exit 2, nothing sent."""
    out = subprocess.run([sys.executable, "-m", "sigma_ros.instruct", f"--text={text}", "--wait=0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "sigma-instruct: error: instruction:" in out.stderr
    assert "published" not in out.stdout
