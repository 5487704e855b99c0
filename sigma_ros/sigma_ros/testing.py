"""Helpers to run the Sigma graph in-process against real DDS (tests, benchmarks, sim runs).

* :func:`isolated_context` makes an rclpy Context on its own ROS domain (``ROS_DOMAIN_ID``),
  so concurrent test modules or runs on one machine do not hear each other.
* :class:`GraphHarness` starts the four nodes (built by ``sigma_graph``'s ``create_nodes``: same
  parameter file and ``--ros-args`` as ``ros2 launch``) plus a probe node that publishes camera,
  joint-state, audio and instruction messages and records every Sigma output, on the executor of
  every Sigma process (``sigma_ros.executors.make_executor``) in a background thread, and brings the nodes
  to ``active`` through their lifecycle services, as ``sigma-graph`` does.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import zlib
from collections import defaultdict
from typing import Callable

import numpy as np

from sigma_ros import graph

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def domain_id_for(tag: str) -> int:
    """A ROS domain id in [1, 200] derived from a tag and this process id."""
    return 1 + (zlib.crc32(tag.encode()) + 7919 * os.getpid()) % 200


def isolated_context(tag: str, domain_id: int | None = None):
    """A fresh rclpy Context on its own domain; call ``context.try_shutdown()`` when done."""
    import rclpy

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = rclpy.Context()
    rclpy.init(args=[], context=context, domain_id=domain_id if domain_id is not None else domain_id_for(tag))
    return context


def node_env(domain: int) -> dict:
    """The environment of a node process on ROS domain ``domain`` (unbuffered output, local discovery)."""
    return dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1",
                ROS_AUTOMATIC_DISCOVERY_RANGE=os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"))


def log_text(log) -> str:
    """What a node process wrote to ``log`` (a binary file opened w+b)."""
    log.seek(0)
    return log.read().decode(errors="replace")


class Recorder:
    """Thread-safe per-topic message lists with arrival times."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.msgs: dict[str, list] = defaultdict(list)
        self.times: dict[str, list] = defaultdict(list)
        self.cond = threading.Condition(self.lock)

    def callback(self, key: str) -> Callable:
        def cb(msg):
            with self.cond:
                self.msgs[key].append(msg)
                self.times[key].append(time.perf_counter())
                self.cond.notify_all()

        return cb

    def count(self, key: str) -> int:
        with self.lock:
            return len(self.msgs[key])

    def get(self, key: str) -> list:
        with self.lock:
            return list(self.msgs[key])

    def wait_for(self, key: str, n: int = 1, timeout: float = 10.0, predicate: Callable | None = None) -> list:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                msgs = [m for m in self.msgs[key] if predicate is None or predicate(m)]
                if len(msgs) >= n:
                    return msgs
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"waited {timeout}s for {n} message(s) on {key}, got {len(msgs)}")
                self.cond.wait(min(left, 0.1))

    def clear(self, key: str | None = None) -> None:
        with self.lock:
            for k in [key] if key else list(self.msgs):
                self.msgs[k].clear()
                self.times[k].clear()


class GraphHarness:
    """Four Sigma nodes + a probe node in one process on an isolated DDS domain."""

    def __init__(self, tag: str, checkpoint: str = "", params_file: str | None = None,
                 overrides: dict[str, dict] | None = None, nodes: tuple[str, ...] | None = None,
                 output_type: str | None = None, domain_id: int | None = None, activate: bool = True,
                 executor: str | None = None) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Float64MultiArray, String
        from trajectory_msgs.msg import JointTrajectory
        from sigma_ros_msgs.msg import (
            ActionPlan, AudioChunk, HighLevelRep, SemanticMemory, StateTokens, Status, TelepathyFactors, VisionTokens,
        )

        from sigma_ros import qos
        from sigma_ros.graph_main import create_nodes
        from sigma_ros.executors import make_executor

        self.context = isolated_context(tag, domain_id)
        self.params_file = params_file or str(graph.default_config_file())
        overrides = {k: dict(v) for k, v in (overrides or {}).items()}
        # tests and replays drive the graph frame by frame: the model runs on every frame
        overrides.setdefault("perception_node", {}).setdefault("frame_stride", 1)
        if output_type:
            overrides.setdefault("controller_node", {})["output_type"] = output_type
        self.output_type = overrides.get("controller_node", {}).get("output_type", "joint_trajectory")
        specs = [graph.NODE_BY_NAME[n] for n in (nodes if nodes is not None else [s.name for s in graph.NODES])]
        self.nodes = create_nodes(specs, self.params_file, [], checkpoint, None, context=self.context,
                                  extra_overrides=overrides)
        self.by_name = {n.get_name(): n for n in self.nodes}
        self.probe = rclpy.create_node("sigma_probe", context=self.context)
        self.rec = Recorder()
        t = graph.TOPIC_BY_KEY
        p = self.probe
        self.pub_image = p.create_publisher(Image, t["camera"].name, qos.SENSOR)
        self.pub_depth = p.create_publisher(Image, t["depth"].name, qos.SENSOR)
        self.pub_joint = p.create_publisher(JointState, t["joint_states"].name, qos.SENSOR)
        self.pub_audio = p.create_publisher(AudioChunk, t["audio"].name, qos.SENSOR)
        self.pub_instruction = p.create_publisher(String, "/instruction", qos.INSTRUCTION)
        # Raw publishers of internal topics, to inject malformed custom messages.
        self.pub_internal = {
            "vision_tokens": p.create_publisher(VisionTokens, t["vision_tokens"].name, qos.PIPELINE),
            "state_tokens": p.create_publisher(StateTokens, t["state_tokens"].name, qos.PIPELINE),
            "telepathy_factors": p.create_publisher(TelepathyFactors, t["telepathy_factors"].name, qos.PIPELINE),
            "high_level_rep": p.create_publisher(HighLevelRep, t["high_level_rep"].name, qos.PIPELINE),
            "action_plan": p.create_publisher(ActionPlan, t["action_plan"].name, qos.PIPELINE),
        }
        subs = {
            "vision_tokens": (VisionTokens, qos.PIPELINE), "state_tokens": (StateTokens, qos.PIPELINE),
            "telepathy_factors": (TelepathyFactors, qos.PIPELINE), "semantic_memory": (SemanticMemory, qos.LATCHED),
            "high_level_rep": (HighLevelRep, qos.PIPELINE), "action_plan": (ActionPlan, qos.PIPELINE),
            "status": (Status, qos.STATUS), "diagnostics": (DiagnosticArray, qos.STATUS),
        }
        for key, (typ, prof) in subs.items():
            p.create_subscription(typ, t[key].name, self.rec.callback(key), prof)
        cmd_type = JointTrajectory if self.output_type == "joint_trajectory" else Float64MultiArray
        # the probe records every command even when its executor lags
        p.create_subscription(cmd_type, t["motor_commands"].name, self.rec.callback("motor_commands"),
                              qos.COMMAND_CHECK)
        p.create_subscription(Float64MultiArray, "/controller_node/dry_run_commands", self.rec.callback("dry_run_commands"),
                              qos.COMMAND)
        self._joint_positions = None
        self._joint_timer = None
        # Full garbage collections stall every node of this one process for up to ~0.7 s; the
        # long-lived objects made so far are frozen out of them and collection waits for close().
        gc.collect()
        gc.freeze()
        gc.disable()
        self.executor = make_executor(self.context, executor)
        for n in self.nodes:
            self.executor.add_node(n)
        self.executor.add_node(self.probe)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self._lifecycle: dict[str, object] = {}
        if activate:
            from sigma_ros.graph_main import bring_up_nodes

            error = bring_up_nodes(self.nodes, self.probe)
            if error:
                self.close()
                raise RuntimeError(error)

    # ------------------------------------------------------------- lifecycle
    def lifecycle(self, name: str):
        """The probe's client of the lifecycle services of node ``name``."""
        from sigma_ros.lifecycle import LifecycleClient

        if name not in self._lifecycle:
            self._lifecycle[name] = LifecycleClient(self.probe, name)
        return self._lifecycle[name]

    def bring_up(self, name: str, timeout: float = 120.0) -> None:
        """configure + activate node ``name`` through its lifecycle services."""
        ok, what = self.lifecycle(name).bring_up(timeout)
        if not ok:
            node = self.by_name.get(name)
            raise RuntimeError(f"{name}: {what} {getattr(node, 'config_error', '')}".strip())

    def add_node(self, node) -> None:
        """Spin another node with the graph and bring it to active."""
        self.executor.add_node(node)
        self.bring_up(node.get_name())

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - context shut down
            pass

    # --------------------------------------------------------------- feeding
    def now(self):
        return self.probe.get_clock().now().to_msg()

    def wait_matched(self, timeout: float = 10.0) -> None:
        """Wait until DDS discovery connected the probe's publishers to the nodes present."""
        want = {"camera": self.pub_image, "joint_states": self.pub_joint, "audio": self.pub_audio,
                "instruction": self.pub_instruction}
        present = set(self.by_name)
        need = {}
        if "perception_node" in present:
            need.update(camera=1, audio=1, joint_states=1)
        if "controller_node" in present:
            need["joint_states"] = need.get("joint_states", 0) + 1
        if "language_node" in present:
            need["instruction"] = 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(want[k].get_subscription_count() >= n for k, n in need.items()):
                break
            time.sleep(0.05)
        else:
            raise TimeoutError(f"publishers not matched: { {k: want[k].get_subscription_count() for k in need} }")
        time.sleep(0.3)  # the internal pipeline between the nodes matches in the same discovery round

    def send_instruction(self, text: str) -> None:
        from std_msgs.msg import String

        self.pub_instruction.publish(String(data=text))

    def send_joint_state(self, positions, names=JOINTS) -> None:
        from sigma_ros.conversions import make_joint_state

        self.pub_joint.publish(make_joint_state(positions, names, self.now()))

    def stream_joint_states(self, positions, rate_hz: float = 50.0) -> None:
        """Publish ``positions`` periodically (like a robot driver) until stop_joint_stream()."""
        self._joint_positions = np.asarray(positions, dtype=np.float64)
        if self._joint_timer is None:
            self._joint_timer = self.probe.create_timer(1.0 / rate_hz, self._joint_tick)

    def set_joint_positions(self, positions) -> None:
        self._joint_positions = None if positions is None else np.asarray(positions, dtype=np.float64)

    def _joint_tick(self) -> None:
        if self._joint_positions is not None:
            self.send_joint_state(self._joint_positions)

    def stop_joint_stream(self) -> None:
        if self._joint_timer is not None:
            self._joint_timer.cancel()
            self.probe.destroy_timer(self._joint_timer)
            self._joint_timer = None

    def send_audio(self, samples: np.ndarray, sample_rate: int, channels: int = 1) -> None:
        from sigma_ros.conversions import make_audio_chunk

        self.pub_audio.publish(make_audio_chunk(samples, sample_rate, channels, self.now()))

    def send_image(self, rgb: np.ndarray, encoding: str = "rgb8", stamp=None):
        from sigma_ros.conversions import array_to_image

        msg = array_to_image(rgb, encoding, stamp or self.now())
        self.pub_image.publish(msg)
        return msg

    def status_of(self, node: str, timeout: float = 5.0):
        """The next Status message of ``node`` published after this call."""
        start = self.rec.count("status")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.rec.get("status")[start:]:
                if m.node == node:
                    return m
            time.sleep(0.05)
        raise TimeoutError(f"no status from {node}")

    # -------------------------------------------------------------- teardown
    def close(self) -> None:
        self.stop_joint_stream()
        try:
            self.executor.shutdown(timeout_sec=2.0)
        except Exception:  # noqa: BLE001
            pass
        for n in self.nodes:
            try:
                n.destroy_node()
            except Exception:  # noqa: BLE001
                pass
        self.probe.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=5.0)
        gc.enable()
        gc.unfreeze()

    def __enter__(self) -> "GraphHarness":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def drops(status) -> dict[str, int]:
    return dict(zip(status.drop_names, status.drop_counts))
