# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The ROS graph path of a bag replay.

The four Sigma nodes (in this process or one process each) get the recording's frames, joint states and instructions;
their plans, commands and statuses are collected.
"""

from __future__ import annotations

import gc
import itertools
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from sigma_ros.bag_io import BagReader
from sigma_ros.bag_pairing import PairedFrame, RobotTopics, time_groups


from sigma_ros.bag_replay_config import NODES, BagEvalConfig
from sigma_ros.bag_replay_offline import FrameOutput, Step
from sigma_ros.conversions import time_from_ns

log = logging.getLogger(__name__)
_TAGS = itertools.count()  # distinct harness tags within one process


# ----------------------------------------------------------------------------- ROS graph path
@dataclass
class GraphRun:
    """What the graph did with the recording."""

    outputs: dict[int, FrameOutput]
    published: dict[int, float]  # frame index -> perf_counter at publish
    plan_times: dict[int, float]  # frame index -> perf_counter at plan arrival
    used_tau: dict[int, int | None]  # frame index -> frame whose tau the perception node used
    used_state: dict[int, np.ndarray]
    used_memory: dict[int, tuple[str, int]]  # frame -> (instruction, steps since memory reset) of the language node
    motor_commands: list[tuple[float, np.ndarray]]
    statuses: list[tuple[float, Any]]
    final_status: dict[str, Any]
    seconds: float
    frames_published: int
    joint_states_published: int
    instructions_published: int
    mode: str


def _sleep_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def _time_ns(t) -> int:
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def _stamp_ns(header) -> int:
    return _time_ns(header.stamp)


def _command_vector(msg, joint_names: Sequence[str]) -> np.ndarray | None:
    if hasattr(msg, "points"):
        if not msg.points:
            return None
        pos = list(msg.points[0].positions)
        names = list(msg.joint_names)
        if names and all(j in names for j in joint_names):
            return np.array([pos[names.index(j)] for j in joint_names], dtype=np.float64)
        return np.asarray(pos, dtype=np.float64)
    return np.asarray(list(msg.data), dtype=np.float64)


def start_node_processes(checkpoint_dir: str, overrides: dict[str, dict], domain_id: int) -> list:
    """Return the four nodes as child processes (exactly ``sigma-graph``'s command lines) on ``domain_id``."""
    import os

    from sigma_ros import graph
    from sigma_ros.graph_main import start_node_process

    params = str(graph.default_config_file())
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    procs = []
    try:
        for spec in graph.NODES:
            log_file = tempfile.TemporaryFile()
            procs.append(
                (
                    spec.name,
                    start_node_process(
                        spec, params, checkpoint_dir, overrides=overrides.get(spec.name), env=env, log=log_file
                    ),
                    log_file,
                )
            )
    except BaseException:
        stop_node_processes(procs)
        raise
    return procs


def _process_output(log_file, limit: int = 3000) -> str:
    try:
        log_file.seek(0)
        return log_file.read().decode(errors="replace")[-limit:]
    except Exception:  # noqa: BLE001
        return ""


def wait_for_node_processes(h, procs, subs, timeout: float) -> None:
    """Until every node process runs and publishes Status.

    Is brought to ``active`` through its lifecycle services (as ``sigma-graph`` does) and is matched with the probe.
    """
    from sigma_ros.lifecycle import bring_up_all

    deadline = time.monotonic() + timeout
    want = {name for name, _, _ in procs}
    by_name = {name: p for name, p, _ in procs}
    active = False
    while True:
        for name, p, log_file in procs:
            if p.poll() is not None:
                raise RuntimeError(f"node process {name} exited with {p.returncode}:\n{_process_output(log_file)}")
        seen = {m.node for m in h.rec.get("status")}
        if want <= seen and not active:
            results = bring_up_all(h.probe, sorted(want), max(1.0, deadline - time.monotonic()),
                                   alive=lambda name: by_name[name].poll() is None)
            active = all(ok for ok, _ in results.values())  # else: an exit (above) or the timeout (below)
        matched = (h.pub_image.get_subscription_count() >= 1 and h.pub_joint.get_subscription_count() >= 2
                   and h.pub_instruction.get_subscription_count() >= 1
                   and all(s.get_publisher_count() >= 1 for s in subs))
        if active and matched:
            time.sleep(0.3)  # the pipeline between the nodes matches in the same discovery round
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"node processes not ready after {timeout:.0f} s (status from {sorted(seen)}, "
                               f"active: {active}, probe matched: {matched})")
        time.sleep(0.1)


# internal topic -> (nodes publishing it, nodes subscribing to it) that must have been discovered
PIPELINE_LINKS = {
    "vision_tokens": ({"perception_node"}, {"language_node"}),
    "state_tokens": ({"perception_node"}, {"action_node"}),
    "telepathy_factors": ({"language_node"}, {"action_node", "perception_node"}),
    "high_level_rep": ({"language_node"}, {"action_node"}),
    "action_plan": ({"action_node"}, {"controller_node"}),
}


def wait_for_pipeline(probe, timeout: float) -> None:
    """Until the ROS graph shows every link between the nodes (so no first frame is lost to discovery)."""
    from sigma_ros.graph import TOPIC_BY_KEY

    deadline = time.monotonic() + timeout
    while True:
        missing = []
        for key, (pubs, subs) in PIPELINE_LINKS.items():
            name = "/" + TOPIC_BY_KEY[key].name.lstrip("/")
            have_p = {i.node_name for i in probe.get_publishers_info_by_topic(name)}
            have_s = {i.node_name for i in probe.get_subscriptions_info_by_topic(name)}
            if not (pubs <= have_p and subs <= have_s):
                missing.append(key)
        if not missing:
            time.sleep(0.5)  # discovery seen; the readers and writers match right after
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Sigma nodes are not connected after {timeout:.0f} s (links missing: {missing})")
        time.sleep(0.05)


def stop_node_processes(procs) -> None:
    from sigma_ros.graph_main import stop_processes

    stop_processes([(name, p) for name, p, _ in procs])
    for _, _, log_file in procs:
        log_file.close()


def run_graph(checkpoint_dir: str, reader: BagReader, topics: RobotTopics, frames: Sequence[PairedFrame],
              steps: Sequence[Step], joint_names: Sequence[str], cfg: BagEvalConfig,
              progress=None) -> GraphRun:
    """Replay the recording's inputs through the four nodes and collect what they publish."""
    try:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import Image, JointState
        from sigma_ros_msgs.msg import ActionPlan, SemanticMemory, TelepathyFactors, VisionTokens

        from sigma_ros.graph import TOPIC_BY_KEY
        from sigma_ros.testing import GraphHarness, Recorder, domain_id_for
    except ImportError as err:
        raise RuntimeError(f"the ROS 2 graph replay needs rclpy and sigma_ros_msgs ({err}); "
                           "run scripts/setup.sh, or pass --ros=false for the offline path only") from err

    rate = float(cfg.rate)
    lockstep = rate == 0
    scale = 1.0 if lockstep else 1.0 / rate
    # node timeouts on the wall clock: the recording's, scaled by the rate; in lockstep generous ones
    # (frames follow each other closely), and the replay waits them out where the recording's expire
    tau_wall = 5.0 if lockstep else cfg.tau_timeout_s * scale
    state_wall = 3.0 if lockstep else cfg.max_age_s * scale
    common = {"telepathy": bool(cfg.telepathy), "status_period_s": 0.25, "joint_names": list(joint_names),
              "device": cfg.device}
    adapter_file = None
    action = {"diffusion_seed": int(cfg.seed), "reseed_every_plan": True, "use_adapter": bool(cfg.adapter)}
    if cfg.adapter:
        adapter_file = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="sigma_bag_adapter_", delete=False)
        cfg.adapter_config.save(adapter_file.name)
        action["adapter_config"] = adapter_file.name
    overrides = {
        "perception_node": dict(common, resize_images=True, use_tau_feedback=True, frame_stride=1,
                                count_missing_frames=not lockstep,
                                tau_timeout_s=float(tau_wall),
                                joint_state_timeout_s=float(state_wall)),
        "language_node": dict(common, restore_memory=False),
        "action_node": dict(common, **action),
        "controller_node": dict(common, plan_timeout_s=float(5.0 if lockstep else 0.5 * scale),
                                joint_state_timeout_s=float(state_wall)),
    }
    by_stamp: dict[int, int] = {}  # replay stamp of each published frame -> frame index
    stamp_of: dict[int, int] = {}  # frame index -> replay stamp
    step_of = {s.index: s for s in steps}
    wanted = {s.index for s in steps if s.plan}
    tag = f"sigma_bag_eval_{next(_TAGS)}"
    frozen = False
    procs: list = []
    if cfg.graph_mode == "processes":  # one process per node, as `sigma-graph` / `ros2 launch` run them
        domain = cfg.domain_id if cfg.domain_id is not None else domain_id_for(tag)
        h = GraphHarness(tag, nodes=(), output_type=cfg.output_type, domain_id=domain)
        try:
            procs = start_node_processes(checkpoint_dir, overrides, domain)
        except BaseException:
            h.close()
            raise
    else:
        h = GraphHarness(tag, checkpoint=checkpoint_dir, overrides=overrides, output_type=cfg.output_type,
                         domain_id=cfg.domain_id)
    try:
        rec = Recorder()
        arrived: set[int] = set()
        arrived_cond = threading.Condition()
        store_plan = rec.callback("action_plan")

        def on_plan(msg) -> None:
            store_plan(msg)
            with arrived_cond:
                arrived.add(_stamp_ns(msg.header))
                arrived_cond.notify_all()

        deep = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
        subs = [h.probe.create_subscription(typ, TOPIC_BY_KEY[key].name, cb, deep)
                for key, typ, cb in (("action_plan", ActionPlan, on_plan),
                                     ("vision_tokens", VisionTokens, rec.callback("vision_tokens")),
                                     ("telepathy_factors", TelepathyFactors, rec.callback("telepathy_factors")),
                                     ("semantic_memory", SemanticMemory, rec.callback("semantic_memory")))]
        startup = cfg.startup_timeout_s
        if procs:
            wait_for_node_processes(h, procs, subs, startup)
        else:
            h.wait_matched(timeout=startup)
            deadline = time.monotonic() + startup
            while any(s.get_publisher_count() < 1 for s in subs) and time.monotonic() < deadline:
                time.sleep(0.05)
            h.rec.wait_for("status", 1, startup)
        wait_for_pipeline(h.probe, startup)
        # A full (generation 2) garbage collection of this process's heap (torch, the message
        # packages, ...) stalls every node for 0.1-0.7 s; freeze what exists now so that the
        # collector only scans what the replay allocates.
        gc.collect()
        gc.freeze()
        frozen = True

        published: dict[int, float] = {}
        n_js = n_instr = 0
        cam, js, ins = topics.camera, topics.joint_states, topics.instruction
        role = {cam: 3, js: 1}
        if ins:
            role[ins] = 0
        order = [t for t in (cam, js, ins) if t]
        count = 0
        t0_bag = None
        t0_wall = None
        pending_js = last_js = None
        pending_instr: list[bytes] = []
        last_tau_time = last_js_time = None
        timeout = cfg.frame_timeout_s  # lockstep: the first plan may be slow; then 10x the slowest so far
        slowest = 0.0

        last_stamp = [0]

        def restamp(msg) -> int:
            """Stamp a message with the replay clock (unique, increasing)."""
            stamp = max(h.probe.get_clock().now().nanoseconds, last_stamp[0] + 1)
            last_stamp[0] = stamp
            msg.header.stamp = time_from_ns(stamp)
            return stamp

        def publish_frame(raw, index: int, with_state: int | None = None) -> None:
            """Publish a frame, stamped now or (lockstep) with the stamp of its joint state, read with it."""
            msg = deserialize_message(raw.data, Image)
            if with_state is None:
                stamp = restamp(msg)
            else:
                stamp = with_state
                msg.header.stamp = time_from_ns(stamp)
            by_stamp[stamp], stamp_of[index] = index, stamp
            published[index] = time.perf_counter()
            h.pub_image.publish(msg)

        def publish_joint_state(raw) -> int:
            msg = deserialize_message(raw, JointState)
            stamp = restamp(msg)
            h.pub_joint.publish(msg)
            return stamp

        def wait_plan(index: int, timeout: float) -> bool:
            stamp = stamp_of[index]
            with arrived_cond:
                return arrived_cond.wait_for(lambda: stamp in arrived, timeout)

        start = time.perf_counter()
        stop = False
        for group in time_groups(reader.messages(order)):
            if stop:
                break
            group.sort(key=lambda m: role[m.topic])
            for m in group:
                kind = role[m.topic]
                if t0_bag is None:
                    t0_bag, t0_wall = m.t_ns, time.perf_counter()
                if kind == 3 and cfg.max_frames is not None and count >= cfg.max_frames:
                    stop = True
                    break
                if not lockstep:
                    target = t0_wall + (m.t_ns - t0_bag) / 1e9 * scale
                    delay = target - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    if kind == 0:
                        h.pub_instruction.publish(m.data)
                        n_instr += 1
                    elif kind == 1:
                        publish_joint_state(m.data)
                        n_js += 1
                    else:
                        if len(group) > 1:
                            time.sleep(0.002)  # let a state stamped with the frame reach the node first
                        publish_frame(m, count)
                        count += 1
                        if progress is not None:
                            progress(1)
                    continue
                # lockstep
                if kind == 0:
                    pending_instr.append(m.data)
                elif kind == 1:
                    pending_js = m.data
                else:
                    index = count
                    count += 1
                    step = step_of[index]
                    if pending_instr:
                        for data in pending_instr:
                            h.pub_instruction.publish(data)
                            n_instr += 1
                        pending_instr = []
                        time.sleep(max(cfg.settle_s, 0.05))
                    f = frames[index]
                    if cfg.telepathy and step.vision and step.tau_from is None and last_tau_time is not None:
                        _sleep_until(last_tau_time + tau_wall + 0.1)  # tau too old in the recording: expire it
                    if pending_js is not None:
                        last_js, pending_js = pending_js, None
                    if f.state is None:  # no valid fresh state in the recording: the node must have none either
                        if last_js is not None:
                            publish_joint_state(last_js)
                            n_js += 1
                            last_js, last_js_time = None, time.perf_counter()
                        if last_js_time is not None:
                            _sleep_until(last_js_time + state_wall + 0.1)
                    state_stamp = None
                    if f.state is not None and last_js is not None:
                        state_stamp = publish_joint_state(last_js)  # (again) just before the frame: fresh in wall time
                        n_js += 1
                        last_js_time = time.perf_counter()
                        time.sleep(cfg.settle_s)
                    publish_frame(m, index, state_stamp)
                    if step.plan:
                        if wait_plan(index, timeout):
                            slowest = max(slowest, time.perf_counter() - published[index])
                        timeout = min(cfg.frame_timeout_s, max(2.0, 10.0 * slowest))
                        last_tau_time = time.perf_counter()  # the tau reached the perception node before the plan
                    else:
                        time.sleep(0.05)
                    if progress is not None:
                        progress(1)
        # wait for the plans still in flight
        want_stamps = {stamp_of[i] for i in wanted if i in published}
        end = time.monotonic() + cfg.frame_timeout_s
        with arrived_cond:  # until every plan arrived, or none for 2 s (lost frames never come)
            while not want_stamps <= arrived and time.monotonic() < end:
                before = len(arrived)
                arrived_cond.wait_for(lambda: want_stamps <= arrived or len(arrived) > before,
                                      min(2.0, max(0.0, end - time.monotonic())))
                if len(arrived) == before:
                    break
        time.sleep(0.3)  # the motor commands of the last plan
        seconds = time.perf_counter() - start
        final = {}
        for node in NODES:
            try:
                final[node] = h.status_of(node, timeout=3.0)
            except TimeoutError:
                final[node] = None
        plans = rec.get("action_plan")
        plan_t = rec.times["action_plan"][: len(plans)]
        outputs: dict[int, FrameOutput] = {}
        plan_times: dict[int, float] = {}
        tau_l2: dict[int, float] = {}
        for m in rec.get("telepathy_factors"):
            idx = by_stamp.get(_stamp_ns(m.header))
            if idx is not None and len(m.tau_l2):
                tau_l2[idx] = float(m.tau_l2[0])
        sem: dict[int, torch.Tensor] = {}
        used_memory: dict[int, tuple[str, int]] = {}
        from sigma_ros.conversions import tensor_from_msg

        for m in rec.get("semantic_memory"):
            idx = by_stamp.get(_stamp_ns(m.header))
            if idx is not None:
                sem[idx] = tensor_from_msg(m.z_sem_pool)
                used_memory[idx] = (m.instruction, int(m.step_index))
        for m, t in zip(plans, plan_t):
            idx = by_stamp.get(_stamp_ns(m.header))
            if idx is None or idx in outputs:
                continue
            acts = tuple(tensor_from_msg(getattr(m, k)) for k in ("action_vector", "action_chunk", "action_trajectory"))
            outputs[idx] = FrameOutput(
                actions=acts, tau_l2=tau_l2.get(idx, float("nan")), z_sem_pool=sem.get(idx),
                adapter_scale=float(m.adapter_scale[0]) if m.adapter_enabled and len(m.adapter_scale) else None,
                adapter_fallback=bool(m.adapter_fallback[0]) if m.adapter_enabled and len(m.adapter_fallback) else None,
                latency_ms=1e3 * (t - published[idx]) if idx in published else None)
            plan_times[idx] = t
        used_tau: dict[int, int | None] = {}
        used_state: dict[int, np.ndarray] = {}
        for m in rec.get("vision_tokens"):
            idx = by_stamp.get(_stamp_ns(m.header))
            if idx is None:
                continue
            used_tau[idx] = by_stamp.get(_time_ns(m.tau_stamp), -1) if m.used_tau else None
            used_state[idx] = tensor_from_msg(m.robot_state).numpy().reshape(-1)
        cmds = h.rec.get("motor_commands")
        cmd_t = h.rec.times["motor_commands"][: len(cmds)]
        motor = [
            (t, v) for t, v in ((t, _command_vector(m, joint_names)) for m, t in zip(cmds, cmd_t)) if v is not None
        ]
        st = h.rec.get("status")
        statuses = list(zip(h.rec.times["status"][: len(st)], st))
        return GraphRun(outputs=outputs, published=published, plan_times=plan_times, used_tau=used_tau,
                        used_state=used_state, used_memory=used_memory, motor_commands=motor, statuses=statuses,
                        final_status=final,
                        seconds=seconds, frames_published=len(published), joint_states_published=n_js,
                        instructions_published=n_instr,
                        mode=("lockstep" if lockstep else f"rate x{rate:g}")
                        + (", node processes" if procs else ""))
    finally:
        if frozen:
            gc.unfreeze()
        stop_node_processes(procs)
        h.close()
        if adapter_file is not None:
            Path(adapter_file.name).unlink(missing_ok=True)
