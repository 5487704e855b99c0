"""``sigma.launch.py`` under the real ``launch`` / ``launch_ros`` (ROS 2's launch system).

Skipped where they are not importable: the PyPI ``ros-*`` wheels ship neither (``test_ros_launch.py``
covers the launch file there with stand-ins). On an apt/colcon ROS 2 install, or with launch and
launch_ros built from source next to the venv (README, "The real launch test"), it starts the
graph as ``ros2 launch sigma_ros sigma.launch.py`` does, with the shipped checkpoint: the four
lifecycle nodes reach ``active`` through the launch file's own transitions, camera frames and
joint states in give motor commands within the joint limits out, and Ctrl-C (SIGINT) stops
every node process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("launch")
pytest.importorskip("launch_ros")
pytest.importorskip("rclpy")

from sigma_model.safety import SO101_LOWER_LIMITS, SO101_UPPER_LIMITS  # noqa: E402
from sigma_ros import graph  # noqa: E402
from sigma_ros.testing import GraphHarness, domain_id_for, log_text, node_env  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHIPPED = str(REPO / "checkpoints" / "sigma_so101_default")
LAUNCH_FILE = REPO / "sigma_ros" / "launch" / "sigma.launch.py"
HOME = [0.0, -1.0, 1.0, 0.85, 0.0, 0.2]
RUN_LAUNCH = """
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
args = [a.split(":=", 1) for a in sys.argv[2:]]
service = LaunchService()
service.include_launch_description(LaunchDescription([
    IncludeLaunchDescription(PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=args)]))
sys.exit(service.run())
"""


def _commands_within_limits(msgs) -> bool:
    lower, upper = np.asarray(SO101_LOWER_LIMITS), np.asarray(SO101_UPPER_LIMITS)
    for m in msgs:
        q = np.asarray(m.points[0].positions)
        if q.shape != lower.shape or not np.all((q >= lower - 1e-9) & (q <= upper + 1e-9)):
            return False
    return True


@pytest.mark.parametrize("composition", ["processes", "single_process"])
def test_real_launch_runs_the_graph_and_stops_on_sigint(tmp_path, composition):
    domain = domain_id_for(f"test_ros_launch_real_{composition}")
    log = open(tmp_path / "launch.log", "w+b")
    launch = subprocess.Popen(
        [sys.executable, "-c", RUN_LAUNCH, str(LAUNCH_FILE), f"checkpoint:={SHIPPED}", f"composition:={composition}",
         "respawn:=false"],
        env=node_env(domain), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    h = GraphHarness(f"test_ros_launch_real_probe_{composition}", nodes=(), domain_id=domain)
    try:
        deadline = time.monotonic() + 240
        while {m.node for m in h.rec.get("status")} < {s.name for s in graph.NODES}:
            assert launch.poll() is None, f"launch exited with {launch.returncode}:\n{log_text(log)[-3000:]}"
            assert time.monotonic() < deadline, f"nodes not active:\n{log_text(log)[-3000:]}"
            time.sleep(0.2)
        h.stream_joint_states(HOME)
        h.send_instruction("pick the cube and place it on the left")
        rng = np.random.default_rng(0)
        deadline = time.monotonic() + 120
        while h.rec.count("motor_commands") < 10:
            assert time.monotonic() < deadline, f"no motor commands:\n{log_text(log)[-3000:]}"
            h.send_image(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
            time.sleep(1 / 30)
        assert _commands_within_limits(h.rec.get("motor_commands"))
    finally:
        h.close()
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGINT)
    assert launch.wait(timeout=60) == 0, log_text(log)[-3000:]
    leftovers = subprocess.run(["pgrep", "-g", str(launch.pid)], capture_output=True, text=True).stdout.split()
    assert not leftovers, f"node processes still running after SIGINT: {leftovers}"
