# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""``sigma-robot`` in the Sigma graph on an emulated SO-101.

LeRobot's real ``SO101Follower`` and ``FeetechMotorsBus`` on a pseudo-terminal that speaks the Feetech protocol
(``lerobot_robot_sigma_sim.feetech_emulator``), the robot node as its own process started as ``sigma-graph --robot=
so101_follower --port <pty>`` starts it, the four Sigma nodes (random weights) planning from camera frames and the robot
node's joint states.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")
pytest.importorskip("scservo_sdk")

from lerobot_robot_sigma_sim.feetech_emulator import SO101_MOTORS, write_calibration  # noqa: E402
from sigma_ros import graph, qos  # noqa: E402
from sigma_ros.graph_main import start_node_process  # noqa: E402
from sigma_ros.testing import GraphHarness, domain_id_for, log_text, node_env  # noqa: E402

HOMING = 50
CALIBRATION = {**{m: (HOMING, 1400, 2700) for m in SO101_MOTORS[:5]}, "gripper": (HOMING, 2000, 3400)}
START = [2048 + HOMING] * 5 + [2100 + HOMING]  # encoder ticks: present 2048 (arm), 2100 (gripper)
TICKS_PER_RAD = 4095 / (2 * math.pi)
GRIPPER_TICKS_PER_RAD = 1400 / (1.74533 + 0.17453)  # 0..100 over the joint range [-0.17453, 1.74533]
MAX_STEP_RAD = 0.2  # config/sigma.yaml robot_node max_step_rad


def test_sigma_robot_help_lists_robot_types():
    out = subprocess.run([sys.executable, "-m", "sigma_ros.robot_node", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    types = out.stdout.split("robot types: ")[1].split(", ")
    assert {"so101_follower", "koch_follower", "sigma_so101_sim"} <= {t.strip() for t in types}
    assert "robot.port" in out.stdout and "torque_on_exit" in out.stdout


def test_sigma_robot_that_cannot_connect_is_a_one_line_config_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sigma_ros.robot_node", f"robot.port={tmp_path}/no_such_port",
                          f"robot.calibration_dir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == graph.EXIT_CONFIG_ERROR, out.stderr
    assert "cannot start: robot so101_follower: ConnectionError" in out.stderr and "Traceback" not in out.stderr


def _raise_priority() -> None:
    """Run the emulated servos ahead of other load, where permitted.

    A higher priority for their session (with sched_autogroup the kernel shares the CPU between sessions first, so a
    nice value alone does not help against other sessions' load), and for the process.
    """
    try:
        Path("/proc/self/autogroup").write_text("-10")
    except OSError:  # no autogroup scheduling, or not permitted
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -5)
    except OSError:  # not permitted: the normal priority
        pass


def _start_emulator(log_path) -> tuple[subprocess.Popen, str]:
    """Return the emulated bus in its own process, at a higher priority where permitted.

    A real servo answers within microseconds, and LeRobot gives up on an answer after ~35 ms, which a loaded machine can
    exceed in scheduling an emulator process of normal priority.
    """
    proc = subprocess.Popen([sys.executable, "-m", "lerobot_robot_sigma_sim.feetech_emulator",
                             f"--positions=[{','.join(map(str, START))}]", f"--log={log_path}"],
                            stdout=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_raise_priority)
    line = proc.stdout.readline()
    assert line.startswith("port "), line
    return proc, line.split()[1]


def _stop_emulator(proc, log_path) -> tuple[list[dict], dict]:
    """SIGINT the emulator; its writes and final registers from its log."""
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines()]
    return records[:-1], records[-1]["final"]


def test_graph_drives_the_emulated_arm_within_its_limits(tmp_path):
    from sensor_msgs.msg import JointState

    write_calibration(tmp_path / "follower.json", CALIBRATION)
    domain = domain_id_for("test_ros_robot")
    rng = np.random.default_rng(0)
    emulator, port = _start_emulator(tmp_path / "bus.jsonl")
    h = proc = None
    try:
        # a loaded 2-core machine takes seconds per plan: frames and plans stay fresh for 10 s
        h = GraphHarness("test_ros_robot", domain_id=domain, overrides={
            "perception_node": {"use_audio": False, "camera_max_age_s": 10.0},
            "controller_node": {"plan_timeout_s": 10.0}})
        log = open(tmp_path / "robot_node.log", "w+b")
        proc = start_node_process(graph.ROBOT_NODE, h.params_file, "", env=node_env(domain), log=log,
                                  robot={"type": "so101_follower", "port": port, "id": "follower"},
                                  overrides={"robot.calibration_dir": str(tmp_path)})
        h.probe.create_subscription(JointState, graph.TOPIC_BY_KEY["joint_states"].name,
                                    h.rec.callback("joint_states"), qos.SENSOR)
        # radians from the calibration: present 2048 is 2 ticks below the middle of the range (2050).
        # (Matched by value: on a shared machine another graph may use the same ROS domain.)
        at_start = lambda m: np.allclose(m.position[:5], -2 / TICKS_PER_RAD, atol=1e-6)  # noqa: E731
        deadline = time.monotonic() + 120.0
        while not any(at_start(m) for m in h.rec.get("joint_states")):
            assert proc.poll() is None, log_text(log)[-3000:]
            assert time.monotonic() < deadline, "no joint states at the start position from the robot node"
            time.sleep(0.1)
        h.wait_matched()
        h.send_instruction("pick up the red cube")
        h.probe.create_timer(1.0, lambda: h.send_image(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)))
        h.rec.wait_for("action_plan", 1, timeout=120.0)
        t_run = time.monotonic()
        while time.monotonic() - t_run < 4.0:  # a few seconds of the graph driving the arm
            assert proc.poll() is None, log_text(log)[-3000:]
            time.sleep(0.1)
        n_commands = h.rec.count("motor_commands")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log_text(log)[-3000:]
        assert "Traceback" not in log_text(log)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if h is not None:
            h.close()
        writes, final = _stop_emulator(emulator, tmp_path / "bus.jsonl")
    assert n_commands >= 10, "the controller published fewer than 10 commands in 4 s"
    goals = [w for w in writes if w["name"] == "Goal_Position"]
    assert len(goals) >= 6 * 30, "fewer than 30 goal packets reached the bus"
    for w in goals:  # every goal ever written lies in the servo's calibrated range
        _, lo, hi = CALIBRATION[SO101_MOTORS[w["id"] - 1]]
        assert lo <= w["value"] <= hi, w
    by_servo = {i: np.array([w["value"] for w in goals if w["id"] == i], dtype=float) for i in range(1, 7)}
    for i, ticks in by_servo.items():  # and moves by at most max_step_rad per tick (+1: whole ticks), up to the
        # last goal: on SIGINT the node stops the arm where it measures it (a hold at the measured position, tested in
        # test_feetech_bridge.py), which may lie more than max_step behind the goal the arm was still moving to
        per_rad = GRIPPER_TICKS_PER_RAD if i == 6 else TICKS_PER_RAD
        assert np.abs(np.diff(ticks[:-1])).max() <= MAX_STEP_RAD * per_rad + 1, i
    moved = max(np.abs(ticks - ticks[0]).max() for ticks in by_servo.values())
    assert moved > 5, "the graph's commands never moved the arm"
    # torque_on_exit hold (the default): after SIGINT the motors keep their torque
    assert final["Torque_Enable"] == {str(i): 1 for i in range(1, 7)}


def sim_robot(**options):
    from sigma_model.robot_bridge import make_robot

    return make_robot("sigma_so101_sim", {"image_width": 32, "image_height": 32, **options})


@contextlib.contextmanager
def robot_node(robot, name: str):
    """Yield a RobotNode bridging ``robot`` in its own context; shut down and destroyed afterwards."""
    from sigma_ros.robot_node import RobotNode
    from sigma_ros.testing import isolated_context

    context = isolated_context(name)
    try:
        node = RobotNode(robot=robot, context=context)
        assert not node.config_error, node.config_error
        try:
            yield node
        finally:
            node.shutdown()  # again after a test's own shutdown: a no-op
            node.destroy_node()
    finally:
        context.try_shutdown()


def test_robot_node_shutdown_after_its_timer_was_destroyed_still_closes_the_robot():
    """On SIGINT rclpy's handler destroys the node's timer first: shutdown still holds and disconnects the robot."""
    robot = sim_robot()
    with robot_node(robot, "test_ros_robot_shutdown") as node:
        assert robot.is_connected
        node.timer.destroy()
        node.shutdown()
        assert not robot.is_connected


@pytest.mark.parametrize("bad", [np.zeros((32, 32, 3), np.float32), np.zeros((32, 32, 4), np.uint8),
                                 np.zeros((32,), np.uint8), np.zeros((0, 32, 3), np.uint8)])
def test_a_bad_camera_frame_is_dropped_and_the_robot_loop_goes_on(bad):
    """A camera frame that is not [H, W, 3] uint8 mid-run is dropped with a one-line reason; the loop goes on.

    The joint states and the following good frames are published (before, the timer callback raised: the node died).
    """
    robot = sim_robot(camera_fps=30.0)
    observe, reads = robot.get_observation, []

    def get_observation():
        obs = observe()
        reads.append(1)
        return {**obs, "front": bad.copy()} if len(reads) in (3, 4) else obs

    robot.get_observation = get_observation
    with robot_node(robot, "test_ros_robot_bad_frame") as node:
        frames = []
        node.image_pubs["front"].publish = frames.append
        for _ in range(8):
            node.step()
        assert node.ticks == 8 and node.stats.drops["robot_io"] == 2, node.stats.drops
        assert "camera front: array_to_image expects" in node.stats.last_error
        assert len(frames) == 6 and all(f.height == 32 and f.width == 32 and f.encoding == "rgb8" for f in frames)


def test_a_robot_whose_disconnect_fails_still_shuts_the_node_down():
    """A port already gone (unplugged) makes disconnect raise: the bridge logs it, and the node's own shutdown runs."""
    robot = sim_robot()

    def unplugged():
        raise OSError("[Errno 5] Input/output error: '/dev/ttyACM0'")

    with robot_node(robot, "test_ros_robot_disconnect") as node:
        robot.disconnect = unplugged
        node.shutdown()  # returns


def test_a_command_that_sat_in_a_queue_or_comes_from_the_future_is_refused():
    """A trajectory stamped longer than command_timeout_s ago, or ahead of the clock, is refused and counted.

    Its stamp is its age: it sat in a queue or a stalled link (before, a command stamped 600 s ago was tracked as
    fresh). An unstamped one (ros2 topic pub) counts as sent now.
    """
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from sigma_ros.conversions import time_from_ns

    with robot_node(sim_robot(), "test_ros_robot_command_stamps") as node:
        on_command = node.guarded("motor_commands", node.on_command)
        here = node.bridge.measured

        def command(offset_s: float | None) -> None:
            msg = JointTrajectory(joint_names=list(node.p.joint_names),
                                  points=[JointTrajectoryPoint(positions=here.tolist())])
            if offset_s is not None:
                msg.header.stamp = time_from_ns(node.get_clock().now().nanoseconds + int(offset_s * 1e9))
            on_command(msg)

        command(-600.0)
        command(3600.0)
        assert node.bridge.commands_in == 0
        assert node.stats.drops["motor_commands_stale"] == 1 and node.stats.drops["motor_commands_future"] == 1
        command(0.0)
        command(None)
        assert node.bridge.commands_in == 2
