"""``sigma-bag-eval``: evaluate Sigma on a robot's rosbag2 recording, through the ROS 2 node graph
and through the offline model, in the ``sigma_eval_report.json`` format of ``sigma-eval``.

    sigma-bag-eval robot_bag/ --checkpoint runs/sigma -o eval_bag/            # recorded rate
    sigma-bag-eval robot_bag/ --checkpoint runs/sigma -o eval_bag/ --rate 4   # 4x accelerated
    sigma-bag-eval robot_bag/ --checkpoint runs/sigma -o eval_bag/ --rate 0   # lockstep (max throughput)
    sigma-bag-eval robot_bag/ --checkpoint runs/sigma -o eval_bag/ --no-ros   # offline only

The recording (camera, joint states, instruction, commanded actions; :mod:`sigma_ros.bag_io`) is
paired frame by frame. Conditions of the report:

* ``ros_graph``: the four Sigma nodes (the same nodes, parameter file and ``--ros-args`` as
  ``sigma-graph``; real rclpy + DDS on a private ROS domain, so a robot on the network never hears
  the replay) run one process each (``--graph processes``, the command's default, as ``sigma-graph``
  / ``ros2 launch`` run them) or all in this process (``--graph inprocess``, the API's default:
  ``sigma_ros.testing.GraphHarness``, starts in seconds). They get the
  recording's camera frames, joint states and instructions, published as recorded at ``--rate``
  times the recorded speed (the nodes' timeouts scaled by the same factor), or in lockstep
  (``--rate 0``: each frame once the previous frame's plan arrived, preceded by its newest joint
  state; the replay waits where the recording's timeouts expire). The recorded commands are never
  published. The plan of each frame, the motor commands, each node's Status (per-stage latency,
  dropped inputs) and the end-to-end latency are collected. Camera frames and joint states are
  restamped with the replay's clock when they are published (the nodes judge freshness by stamp);
  each frame's (unique) stamp pairs the graph's outputs with it.
* ``offline``: the same checkpoint's stage functions (``vision_stage`` -> ``language_stage`` ->
  ``action_stage``) run frame by frame in this process, following the nodes' rules: tau_prev is the
  previous processed frame's tau unless older than ``tau_timeout_s``; the semantic memory resets on
  an instruction change; a frame without a valid joint state (within ``max_age_s``) is skipped,
  one before the first instruction gets no plan; the diffusion sampler is reseeded with ``--seed``
  for every plan (the action node's ``reseed_every_plan``).

Errors are measured against the recorded commands, as the shards' targets are: for a frame at
position s of its episode, the action vector is the command paired with frame s, the chunk and the
trajectory the commands of frames s .. s+chunk_len-1 and s .. s+traj_len-1 (frames whose window
runs past the episode end are replayed but not scored). Both conditions are scored on the same
frames in the same batches of ``--batch-size`` consecutive frames; ``ros_graph`` records add
``latency_e2e_ms`` (camera published -> plan received), ``latency_<stage>_ms`` (from the nodes'
Status), ``dropped_frames``, ``motor_cmd_mse`` (first motor command after each plan vs the recorded
command), ``recurrence_mismatches`` and ``max_abs_diff_vs_offline``. ``meta.consistency`` holds the
largest action difference between the two paths; ``meta.ros_graph`` the totals.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import logging
import math
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from sigma_ros.bag_io import BACKENDS, BagError, BagReader, bag_info
from sigma_ros.bag_pairing import PairedFrame, PairingStats, RobotTopics, iter_paired_frames

log = logging.getLogger(__name__)

CONDITION_ROS = "ros_graph"
CONDITION_OFFLINE = "offline"
FRAMES_LOG_NAME = "sigma_bag_frames.jsonl"
STAGES = ("decode", "vision_stage", "language_stage", "action_stage", "adapter", "control_stage")
NODES = ("perception_node", "language_node", "action_node", "controller_node")
_TAGS = itertools.count()


@dataclass
class BagEvalConfig:
    """Options of one bag evaluation."""

    batch_size: int = 4
    seed: int = 0  # the action node's diffusion_seed and the offline generator seed
    telepathy: bool = True
    adapter: bool = False
    adapter_config: Any = None  # sigma_model.evaluation.AdapterConfig (None: defaults)
    rate: float = 1.0  # >0: x recorded speed; 0: lockstep
    action_align: str = "latest"
    max_age_s: float = 1.0  # joint-state (and command) freshness = perception joint_state_timeout_s
    tau_timeout_s: float = 2.0  # perception tau_timeout_s
    gap_s: float | None = None  # episode split gap (None: 5 camera periods, >= 0.5 s)
    max_frames: int | None = None
    output_type: str = "joint_trajectory"
    frame_timeout_s: float = 30.0  # lockstep: longest wait for one frame's plan
    settle_s: float = 0.02  # lockstep: pause after a joint state / instruction before the frame
    device: str = "cpu"
    domain_id: int | None = None
    graph_mode: str = "inprocess"  # inprocess: the nodes in this process; processes: one process per node
    startup_timeout_s: float = 60.0
    hard_thresholds: dict[str, float] = field(default_factory=lambda: {"vec": 0.1, "chunk": 0.2, "traj": 0.2})
    success_thresholds: dict[str, float] = field(default_factory=lambda: {"vec": 0.1, "chunk": 0.2, "traj": 0.2})

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if not (isinstance(self.rate, (int, float)) and math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError(f"rate must be >= 0 (0 = lockstep), got {self.rate!r}")
        if self.action_align not in ("latest", "next"):
            raise ValueError(f"action_align must be 'latest' or 'next', got {self.action_align!r}")
        if self.graph_mode not in ("inprocess", "processes"):
            raise ValueError(f"graph_mode must be 'inprocess' or 'processes', got {self.graph_mode!r}")
        if self.output_type not in ("joint_trajectory", "float64_multi_array"):
            raise ValueError(f"output_type must be joint_trajectory or float64_multi_array, got {self.output_type!r}")
        for name in ("max_age_s", "tau_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")


# ----------------------------------------------------------------------------- frame schedule
@dataclass
class Step:
    """What the nodes do with one camera frame (the offline path follows it; the graph is checked
    against it)."""

    index: int
    vision: bool  # the perception node runs the vision stage (image decodes, valid fresh joint state)
    plan: bool  # ... and the language/action nodes produce a plan (an instruction is in force)
    tau_from: int | None = None  # frame whose tau is tau_prev (None: zeros)
    reset_memory: bool = False  # m_{t-1} = 0 (first plan or a new instruction)
    target: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # recorded vector, chunk, trajectory


def schedule(frames: Sequence[PairedFrame], telepathy: bool, tau_timeout_s: float) -> list[Step]:
    steps: list[Step] = []
    tau_t = tau_idx = None
    seq = None
    limit = int(tau_timeout_s * 1e9)
    for f in frames:
        if f.image is None or f.state is None:
            steps.append(Step(f.index, False, False))
            continue
        tau_from = tau_idx if (telepathy and tau_idx is not None and f.t_ns - tau_t <= limit) else None
        if f.instruction is None:
            steps.append(Step(f.index, True, False, tau_from))
            continue
        reset = f.instruction_seq != seq
        seq = f.instruction_seq
        steps.append(Step(f.index, True, True, tau_from, reset))
        tau_t, tau_idx = f.t_ns, f.index
    return steps


def attach_targets(frames: Sequence[PairedFrame], steps: Sequence[Step], chunk_len: int, traj_len: int) -> None:
    """Recorded command windows (vector, chunk, trajectory) of the frames whose window is complete."""
    horizon = max(chunk_len, traj_len, 1)
    by_episode: dict[int, list[int]] = {}
    for i, f in enumerate(frames):
        by_episode.setdefault(f.episode, []).append(i)
    for idxs in by_episode.values():
        for pos, i in enumerate(idxs):
            window = idxs[pos:pos + horizon]
            if len(window) < horizon or any(frames[j].action is None for j in window):
                continue
            acts = np.stack([frames[j].action for j in window]).astype(np.float32)
            steps[i].target = (acts[0], acts[:chunk_len], acts[:traj_len])


def frame_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """HxWx3 uint8 -> [1,3,S,S] float in [0,1], exactly as the perception node's image_to_tensor
    with resize_images=true."""
    from sigma_ros.conversions import _resize, rgb_array_to_tensor

    t = rgb_array_to_tensor(image)
    if image.shape[:2] != (size, size):
        t = _resize(t, size, "bilinear").clamp_(0.0, 1.0)
    return t


# ----------------------------------------------------------------------------- offline path
@dataclass
class FrameOutput:
    """Actions and diagnostics of one frame's plan (either path)."""

    actions: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # [1,A], [1,C,A], [1,T,A]
    tau_l2: float
    z_sem_pool: torch.Tensor | None = None  # [1, d]
    adapter_scale: float | None = None
    adapter_fallback: bool | None = None
    latency_ms: float | None = None


@torch.no_grad()
def run_offline(model, frames: Sequence[PairedFrame], steps: Sequence[Step], cfg: BagEvalConfig
                ) -> tuple[dict[int, FrameOutput], float]:
    """The offline path (module docstring); returns {frame index: output} and the seconds it took."""
    from sigma_model.outputs import SigmaObservation

    adapter = None
    if cfg.adapter:
        from sigma_model.evaluation.adapter import RiskGatedAdapter

        adapter = RiskGatedAdapter(cfg.adapter_config)
    c = model.config
    device = next(model.parameters()).device
    audio = torch.zeros(1, c.audio_chunk_samples, device=device) if c.use_audio else None
    taus: dict[int, torch.Tensor] = {}
    memory = None
    text = None
    outputs: dict[int, FrameOutput] = {}
    start = time.perf_counter()
    for step in steps:
        if not step.vision:
            continue
        t0 = time.perf_counter()
        f = frames[step.index]
        obs = SigmaObservation(image=frame_tensor(f.image, c.image_size).to(device),
                               robot_state=torch.from_numpy(f.state.astype(np.float32)).unsqueeze(0).to(device),
                               audio=audio)
        tau_prev = taus.get(step.tau_from) if step.tau_from is not None else None
        vis = model.vision_stage(obs, tau_prev)
        if not step.plan:
            continue
        if step.reset_memory or text is None:
            memory = None
            text = model.tokenize([f.instruction])
        gen = torch.Generator(device=device).manual_seed(int(cfg.seed))
        lang = model.language_stage(text, vis.vision_tokens, vis.state_tokens, memory, cfg.telepathy,
                                    image_tokens=vis.backbone_image_tokens, robot_state=obs.robot_state,
                                    generator=gen)
        memory = lang.memory
        taus[step.index] = lang.tau
        act = model.action_stage(lang.high_level_rep, lang.high_level_mask, lang.tau, vis.state_tokens,
                                 telepathy=cfg.telepathy, generator=gen, backbone_actions=lang.backbone_actions)
        actions = (act.action_vector, act.action_chunk, act.action_trajectory)
        scale = fallback = None
        if adapter is not None:
            res = adapter.adapt_output(act, lang.tau)
            actions = (res.action_vector.to(act.action_vector.dtype), res.action_chunk.to(act.action_chunk.dtype),
                       res.action_trajectory.to(act.action_trajectory.dtype))
            scale, fallback = float(res.scale[0]), bool(res.fallback[0])
        outputs[step.index] = FrameOutput(
            actions=tuple(a.detach().float().cpu() for a in actions), tau_l2=float(lang.tau.float().norm()),
            z_sem_pool=lang.z_sem_pool.detach().float().cpu(), adapter_scale=scale, adapter_fallback=fallback,
            latency_ms=1e3 * (time.perf_counter() - t0))
    return outputs, time.perf_counter() - start


# ----------------------------------------------------------------------------- ROS graph path
@dataclass
class GraphRun:
    """What the graph did with the recording."""

    outputs: dict[int, FrameOutput]
    published: dict[int, float]  # frame index -> perf_counter at publish
    plan_times: dict[int, float]  # frame index -> perf_counter at plan arrival
    used_tau: dict[int, int | None]  # frame index -> frame whose tau the perception node used
    used_state: dict[int, np.ndarray]
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
    """The four nodes as child processes (exactly ``sigma-graph``'s command lines) on ``domain_id``."""
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
            procs.append((spec.name, start_node_process(spec, params, checkpoint_dir, overrides=overrides.get(spec.name),
                                                        env=env, log=log_file), log_file))
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
    """Until every node process runs and publishes Status, is brought to ``active`` through its
    lifecycle services (as ``sigma-graph`` does) and is matched with the probe."""
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
                           "run scripts/setup.sh, or pass --no-ros for the offline path only") from err

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
        from sigma_model.evaluation.adapter import AdapterConfig

        adapter_file = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="sigma_bag_adapter_", delete=False)
        (cfg.adapter_config or AdapterConfig()).save(adapter_file.name)
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
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            return stamp

        def publish_frame(raw, index: int) -> None:
            msg = deserialize_message(raw.data, Image)
            stamp = restamp(msg)
            by_stamp[stamp], stamp_of[index] = index, stamp
            published[index] = time.perf_counter()
            h.pub_image.publish(msg)

        def publish_joint_state(raw) -> None:
            msg = deserialize_message(raw, JointState)
            restamp(msg)
            h.pub_joint.publish(msg)

        def wait_plan(index: int, timeout: float) -> bool:
            stamp = stamp_of[index]
            with arrived_cond:
                return arrived_cond.wait_for(lambda: stamp in arrived, timeout)

        start = time.perf_counter()
        def time_groups():
            group: list = []
            for m in reader.messages(order):
                if group and m.t_ns != group[0].t_ns:
                    yield group
                    group = []
                group.append(m)
            if group:
                yield group

        stop = False
        for group in time_groups():
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
                    elif last_js is not None:
                        publish_joint_state(last_js)  # (again) just before the frame: fresh in wall time
                        n_js += 1
                        last_js_time = time.perf_counter()
                        time.sleep(cfg.settle_s)
                    publish_frame(m, index)
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
        from sigma_ros.conversions import tensor_from_msg

        for m in rec.get("semantic_memory"):
            idx = by_stamp.get(_stamp_ns(m.header))
            if idx is not None:
                sem[idx] = tensor_from_msg(m.z_sem_pool)
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
        motor = [(t, v) for t, v in ((t, _command_vector(m, joint_names)) for m, t in zip(cmds, cmd_t)) if v is not None]
        st = h.rec.get("status")
        statuses = list(zip(h.rec.times["status"][: len(st)], st))
        return GraphRun(outputs=outputs, published=published, plan_times=plan_times, used_tau=used_tau,
                        used_state=used_state, motor_commands=motor, statuses=statuses, final_status=final,
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


# ----------------------------------------------------------------------------- scoring
def _status_latency(statuses: Sequence[tuple[float, Any]], t_start: float, t_end: float) -> dict[str, float]:
    """Per-stage latency (ms) of a time window: the mean over the nodes' Status messages received in
    it of each stage's window mean (the first Status after it when none arrived inside)."""
    inside = [m for t, m in statuses if t_start <= t <= t_end + 0.3]
    if not inside:
        seen = set()
        for t, m in statuses:
            if t > t_end and m.node not in seen:
                inside.append(m)
                seen.add(m.node)
    values: dict[str, list[float]] = {}
    for m in inside:
        for name, v in zip(m.stage_names, m.stage_latency_mean_ms):
            values.setdefault(name, []).append(float(v))
    return {f"latency_{k}_ms": float(np.mean(v)) for k, v in values.items() if v}


def _first_commands(run: GraphRun) -> dict[int, np.ndarray]:
    """For each frame with a plan: the first motor command received after its plan (and before the next plan)."""
    order = sorted(run.plan_times.items(), key=lambda kv: kv[1])
    times = [t for t, _ in run.motor_commands]
    out = {}
    import bisect

    for k, (idx, t_plan) in enumerate(order):
        t_next = order[k + 1][1] if k + 1 < len(order) else float("inf")
        i = bisect.bisect_right(times, t_plan)
        if i < len(times) and times[i] < t_next:
            out[idx] = run.motor_commands[i][1]
    return out


def batches_of(steps: Sequence[Step], batch_size: int) -> list[list[int]]:
    """Scored frames (a plan is expected and the recorded window is complete), batch by batch."""
    scored = [s.index for s in steps if s.plan and s.target is not None]
    return [scored[i:i + batch_size] for i in range(0, len(scored), batch_size)]


def _frames_in_step(steps: Sequence[Step], frames: Sequence[PairedFrame], offline: dict[int, FrameOutput] | None,
                    graph: GraphRun | None) -> set[int]:
    """Frames whose graph plan must equal the offline one: planned on both paths, with the same tau source
    and state, and no earlier frame of their memory segment (since the last reset) dropped or mismatched:
    after a drop the recurrence (m_t, tau) legitimately differs."""
    if graph is None or offline is None:
        return set()
    in_step: set[int] = set()
    broken = False
    for s in steps:
        if s.reset_memory:
            broken = False
        if not s.plan:
            continue
        i = s.index
        st = graph.used_state.get(i)
        ok = (i in graph.outputs and i in offline and graph.used_tau.get(i, s.tau_from) == s.tau_from
              and (st is None or np.allclose(st, frames[i].state.astype(np.float32), atol=1e-6)))
        broken = broken or not ok
        if not broken:
            in_step.add(i)
    return in_step


def build_records(batches: Sequence[Sequence[int]], steps: Sequence[Step], frames: Sequence[PairedFrame],
                  offline: dict[int, FrameOutput] | None, graph: GraphRun | None, model, cfg: BagEvalConfig
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-batch records of both conditions (report.py format) and the consistency figures."""
    from sigma_model.evaluation.replay import batch_record, text_embedding

    emb_cache: dict[str, torch.Tensor] = {}

    def sem_align(out: FrameOutput, text: str) -> float | None:
        if out.z_sem_pool is None:
            return None
        if text not in emb_cache:
            with torch.no_grad():
                tok = model.tokenize([text])
                emb_cache[text] = text_embedding(model, tok.ids, tok.mask).float().cpu()
        return float(torch.nn.functional.cosine_similarity(out.z_sem_pool.reshape(1, -1), emb_cache[text], dim=-1))

    first_cmd = _first_commands(graph) if graph is not None else {}
    expected_tau = {s.index: s.tau_from for s in steps}
    in_step = _frames_in_step(steps, frames, offline, graph)
    records_ros: list[dict[str, Any]] = []
    records_off: list[dict[str, Any]] = []
    max_diff = 0.0
    compared = 0
    mismatches = {"recurrence": 0, "state": 0}
    for b, idxs in enumerate(batches):
        targets_all = {i: steps[i].target for i in idxs}

        def record(condition: str, outs: dict[int, FrameOutput], present: list[int]) -> dict[str, Any]:
            if not present:
                return {"condition": condition, "batch": b, "num_samples": 0}
            acts = [torch.cat([outs[i].actions[k].reshape(1, *outs[i].actions[k].shape[1:]) for i in present])
                    for k in range(3)]
            tg = [torch.from_numpy(np.stack([targets_all[i][k] for i in present])) for k in range(3)]
            tau = torch.tensor([outs[i].tau_l2 for i in present], dtype=torch.float32)
            aligns = [sem_align(outs[i], frames[i].instruction) for i in present]
            sem = None if any(a is None for a in aligns) else torch.tensor(aligns)
            rec = batch_record(condition, b, acts, tg, None if torch.isnan(tau).any() else tau, sem,
                               cfg.hard_thresholds, cfg.success_thresholds)
            scales = [outs[i].adapter_scale for i in present if outs[i].adapter_scale is not None]
            if scales:
                rec["adapter_scale"] = float(np.mean(scales))
                rec["adapter_fallback_fraction"] = float(np.mean([bool(outs[i].adapter_fallback) for i in present]))
            return rec

        if graph is not None:
            present = [i for i in idxs if i in graph.outputs]
            rec = record(CONDITION_ROS, graph.outputs, present)
            rec["dropped_frames"] = len(idxs) - len(present)
            lat = [graph.outputs[i].latency_ms for i in present if graph.outputs[i].latency_ms is not None]
            if lat:
                rec["latency_e2e_ms"] = float(np.mean(lat))
            pubs = [graph.published[i] for i in idxs if i in graph.published]
            ends = [graph.plan_times[i] for i in present] + pubs
            if pubs:
                rec.update(_status_latency(graph.statuses, min(pubs), max(ends)))
            cmd_err = [float(np.mean((first_cmd[i] - targets_all[i][0]) ** 2)) for i in present
                       if i in first_cmd and first_cmd[i].shape == targets_all[i][0].shape]
            if cmd_err:
                rec["motor_cmd_mse"] = float(np.mean(cmd_err))
            rec["recurrence_mismatches"] = 0
            if offline is not None:
                diffs = []
                for i in present:
                    if i in in_step:
                        d = max(float((a - o).abs().max()) for a, o in zip(graph.outputs[i].actions, offline[i].actions))
                        diffs.append(d)
                if diffs:
                    rec["max_abs_diff_vs_offline"] = max(diffs)
                    max_diff = max(max_diff, max(diffs))
                    compared += len(diffs)
            for i in present:
                got_tau = graph.used_tau.get(i, expected_tau[i])
                if got_tau != expected_tau[i]:
                    rec["recurrence_mismatches"] += 1
                    mismatches["recurrence"] += 1
                st = graph.used_state.get(i)
                if st is not None and not np.allclose(st, frames[i].state.astype(np.float32), atol=1e-6):
                    mismatches["state"] += 1
            records_ros.append(rec)
        if offline is not None:
            present = [i for i in idxs if i in offline]
            rec = record(CONDITION_OFFLINE, offline, present)
            lat = [offline[i].latency_ms for i in present if offline[i].latency_ms is not None]
            if lat:
                rec["latency_offline_ms"] = float(np.mean(lat))
            records_off.append(rec)
    both = sum(1 for s in steps if graph is not None and offline is not None and s.index in graph.outputs
               and s.index in offline)
    consistency = {"ros_graph_vs_offline_max_abs_diff": max_diff if compared else None,
                   "frames_compared": compared, "frames_diverged": both - len(in_step),
                   "recurrence_mismatches": mismatches["recurrence"], "state_mismatches": mismatches["state"]}
    return records_ros + records_off, consistency


def graph_summary(graph: GraphRun, steps: Sequence[Step]) -> dict[str, Any]:
    """Totals of the ROS run: frames, plans, drops (the nodes' own counters too), latency, rates."""
    expected = [s.index for s in steps if s.plan and s.index in graph.published]
    got = [i for i in expected if i in graph.outputs]
    node_drops = {}
    node_latency = {}
    for node, st in graph.final_status.items():
        if st is None:
            node_drops[node] = None
            continue
        node_drops[node] = {n: int(c) for n, c in zip(st.drop_names, st.drop_counts)}
        for name, mean, mx in zip(st.stage_names, st.stage_latency_mean_ms, st.stage_latency_max_ms):
            node_latency[name] = {"node": node, "window_mean_ms": float(mean), "window_max_ms": float(mx)}
    stage_samples: dict[str, list[float]] = {}
    for _, m in graph.statuses:
        for name, last in zip(m.stage_names, m.stage_latency_ms):
            stage_samples.setdefault(name, []).append(float(last))
    e2e = [graph.outputs[i].latency_ms for i in got if graph.outputs[i].latency_ms is not None]
    first = min(graph.published.values()) if graph.published else None
    last = max(graph.plan_times.values()) if graph.plan_times else None
    span = (last - first) if (first is not None and last is not None and last > first) else None
    return {
        "mode": graph.mode,
        "frames_published": graph.frames_published,
        "joint_states_published": graph.joint_states_published,
        "instructions_published": graph.instructions_published,
        "plans_expected": len(expected),
        "plans_received": len(got),
        "dropped_frames": len(expected) - len(got),
        "node_dropped_inputs": node_drops,
        "motor_commands": len(graph.motor_commands),
        "latency_e2e_ms": {"mean": float(np.mean(e2e)), "median": float(np.median(e2e)),
                           "p90": float(np.percentile(e2e, 90)), "max": float(np.max(e2e))} if e2e else None,
        "stage_latency_ms": {k: {"mean_of_last": float(np.mean(v)), "max_of_last": float(np.max(v))}
                             for k, v in stage_samples.items()},
        "stage_latency_final_status": node_latency,
        "seconds": graph.seconds,
        "samples_per_s": (len(got) / span) if span else None,
    }


# ----------------------------------------------------------------------------- one evaluation
def resolve_model(checkpoint: str | None, heads: str | None, device: str, model_seed: int = 0,
                  model_config: str | None = None, workdir: Path | None = None):
    """(full model for the offline path, checkpoint dir the nodes load, heads file or None). With
    ``heads`` the merged weights go to a temporary checkpoint dir (the caller removes it)."""
    from sigma_model.checkpoint import load_checkpoint, save_checkpoint
    from sigma_model.evaluation.replay import load_model, resolve_checkpoint

    if not checkpoint:
        from sigma_ros.model_loader import random_checkpoint

        model_dir = random_checkpoint(model_seed, model_config)
        log.warning("no --checkpoint: seeded random weights (model_seed %d)", model_seed)
        return load_checkpoint(model_dir).to(device).eval(), str(model_dir), None
    model_dir, found = resolve_checkpoint(checkpoint)
    model, heads_file = load_model(checkpoint, device, heads)
    if heads is not None:  # the nodes load plain checkpoints: write the merged weights once
        merged = Path(tempfile.mkdtemp(prefix="sigma_bag_ckpt_", dir=workdir))
        save_checkpoint(model.cpu(), merged)
        model.to(device)
        model_dir = merged
    return model, str(model_dir), heads_file if heads is not None else found


def evaluate_bag(
    bag: str,
    checkpoint: str | None,
    out_dir: str | None = None,
    *,
    config: BagEvalConfig | None = None,
    topics: RobotTopics | None = None,
    joint_names: Sequence[str] | None = None,
    ros: bool = True,
    offline: bool = True,
    heads: str | None = None,
    backend: str = "auto",
    model_seed: int = 0,
    model_config: str | None = None,
    ci_method: str = "bootstrap",
    confidence: float = 0.95,
    n_boot: int = 2000,
    table_every: int = 20,
    plots: bool = True,
    progress=None,
    model=None,
    checkpoint_dir: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Replay ``bag`` through the graph (``ros``) and the offline model (``offline``); returns
    (report, details) and writes the report files into ``out_dir`` when given. ``model`` and
    ``checkpoint_dir`` skip loading (the nodes load ``checkpoint_dir``; it must hold the same weights)."""
    cfg = config or BagEvalConfig()
    if not (ros or offline):
        raise ValueError("nothing to evaluate: enable the ROS graph path, the offline path or both")
    heads_file = None
    merged_dir = None
    if model is None:
        model, checkpoint_dir, heads_file = resolve_model(checkpoint, heads, cfg.device, model_seed, model_config)
        if heads is not None:
            merged_dir = checkpoint_dir
    elif ros and not checkpoint_dir:
        raise ValueError("evaluate_bag(model=...) with the ROS path needs checkpoint_dir (what the nodes load)")
    c = model.config
    missing = [w for w in ("vision", "language", "action") if w not in model.workspaces]
    if missing:
        raise ValueError(f"the model lacks workspaces {missing}")
    if c.env_state_dim:
        raise ValueError("this checkpoint needs a privileged env_state (env_state_dim > 0), which a robot recording lacks")
    try:
        return _evaluate(bag, checkpoint, out_dir, cfg, topics, joint_names, ros, offline, heads_file, backend,
                         ci_method, confidence, n_boot, table_every, plots, progress, model, checkpoint_dir)
    finally:
        if merged_dir is not None:
            import shutil

            shutil.rmtree(merged_dir, ignore_errors=True)


def _evaluate(bag, checkpoint, out_dir, cfg, topics, joint_names, ros, offline, heads_file, backend, ci_method,
              confidence, n_boot, table_every, plots, progress, model, checkpoint_dir):
    from sigma_model.evaluation.check_a import check_a_section, find_init_heads
    from sigma_model.evaluation.report import build_report

    c = model.config
    stats = PairingStats()
    t_read = time.perf_counter()
    with BagReader(bag, backend) as reader:
        frames = list(iter_paired_frames(reader, topics, joint_names, action_align=cfg.action_align,
                                         max_age_s=cfg.max_age_s, gap_s=cfg.gap_s, max_frames=cfg.max_frames,
                                         stats=stats))
        info = bag_info(reader)
        if not frames:
            raise BagError(f"{reader.name}: no camera frames")
        assert all(f.index == i for i, f in enumerate(frames))
        joints = stats.joint_names
        if len(joints) != c.state_dim or len(joints) != c.action_dim:
            raise ValueError(f"{bag}: {len(joints)} joints {joints}, the model has state_dim {c.state_dim} and "
                             f"action_dim {c.action_dim} (choose the joints with --joint-names)")
        steps = schedule(frames, cfg.telepathy, cfg.tau_timeout_s)
        attach_targets(frames, steps, c.chunk_len, c.traj_len)
        read_s = time.perf_counter() - t_read
        batches = batches_of(steps, cfg.batch_size)
        if not batches:
            raise ValueError(
                f"{bag}: no frame to score: each needs a joint state, an instruction and recorded commands for "
                f"{max(c.chunk_len, c.traj_len)} frames of its episode (frames {len(frames)}, without state "
                f"{sum(f.state is None for f in frames)}, without instruction {sum(f.instruction is None for f in frames)}, "
                f"without command {sum(f.action is None for f in frames)}, episodes {stats.episodes})")
        off_out, off_s = (run_offline(model, frames, steps, cfg) if offline else (None, 0.0))
        graph = run_graph(checkpoint_dir, reader, RobotTopics(**stats.topics), frames, steps, joints, cfg,
                          progress) if ros else None
    records, consistency = build_records(batches, steps, frames, off_out, graph, model, cfg)
    info_c: dict[str, dict[str, Any]] = {}
    if graph is not None:
        short = ("lockstep" if cfg.rate == 0 else f"x{cfg.rate:g}") + (", procs" if cfg.graph_mode == "processes" else "")
        info_c[CONDITION_ROS] = {"telepathy": cfg.telepathy, "adapter": cfg.adapter, "label": f"ROS graph {short}",
                                 "mode": graph.mode}
    if off_out is not None:
        info_c[CONDITION_OFFLINE] = {"telepathy": cfg.telepathy, "adapter": cfg.adapter,
                                     "label": "offline model stages"}
    n_offline = sum(1 for s in steps if s.vision)
    ca = check_a_section(model, heads_file, find_init_heads(checkpoint) if checkpoint else None)  # one model, both paths
    meta = {
        "source": "rosbag",
        "bag": info,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "checkpoint_dir": checkpoint_dir,
        "pairing": {**stats.as_dict(), "action_align": cfg.action_align, "max_age_s": cfg.max_age_s,
                    "frames": len(frames), "frames_with_plan": sum(s.plan for s in steps),
                    "frames_scored": sum(len(b) for b in batches)},
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "telepathy": cfg.telepathy,
        "adapter": (cfg.adapter_config.to_dict() if cfg.adapter_config is not None else {}) if cfg.adapter else None,
        "tau_timeout_s": cfg.tau_timeout_s,
        "device": cfg.device,
        "consistency": consistency,
        "timing": {"read_s": read_s,
                   "offline": {"seconds": off_s, "frames": n_offline,
                               "samples_per_s": (n_offline / off_s) if off_s > 0 else None} if off_out is not None else None},
        "ros_graph": graph_summary(graph, steps) if graph is not None else None,
        "sigma_config": c.to_dict(),
        "torch_version": torch.__version__,
    }
    reference = CONDITION_OFFLINE if (graph is not None and off_out is not None) else ""
    report = build_report(records, hard_thresholds=cfg.hard_thresholds, success_thresholds=cfg.success_thresholds,
                          reference=reference, condition_info=info_c,
                          check_a=ca,
                          ci_method=ci_method, confidence=confidence, n_boot=n_boot, seed=cfg.seed,
                          table_every=table_every, meta=meta)
    details = {"frames": frames, "steps": steps, "offline": off_out, "graph": graph, "records": records}
    if out_dir is not None:
        write_outputs(report, records, steps, frames, off_out, graph, out_dir, plots)
    return report, details


def write_outputs(report, records, steps, frames, off_out, graph, out_dir, plots: bool = True) -> dict[str, Path]:
    """sigma_eval_report.json + sigma_eval_batches.jsonl (report.write_report), the plots with a
    bag-replay title, and a per-frame log (sigma_bag_frames.jsonl)."""
    from sigma_model.evaluation.report import (
        IMPROVEMENT_PLOT_NAME, MSE_PLOT_NAME, REPORT_NAME, plot_improvement, plot_mse_per_batch, write_report,
    )

    out = Path(out_dir)
    labels = {k: v.get("label", k) for k, v in report["conditions"].items()}
    paths = write_report(report, records, out, plots=False, labels=labels)
    lines = []
    for s in steps:
        f = frames[s.index]
        row = {"frame": s.index, "t_ns": f.t_ns, "episode": f.episode, "instruction": f.instruction,
               "vision": s.vision, "plan_expected": s.plan, "scored": s.plan and s.target is not None,
               "tau_from": s.tau_from}
        if off_out is not None and s.index in off_out:
            row["offline_tau_l2"] = off_out[s.index].tau_l2
        if graph is not None:
            row["published"] = s.index in graph.published
            row["plan_received"] = s.index in graph.outputs
            if s.index in graph.outputs:
                row["latency_e2e_ms"] = graph.outputs[s.index].latency_ms
                row["graph_tau_from"] = graph.used_tau.get(s.index, s.tau_from)
                if off_out is not None and s.index in off_out:
                    row["max_abs_diff_vs_offline"] = max(
                        float((a - o).abs().max()) for a, o in zip(graph.outputs[s.index].actions, off_out[s.index].actions))
        lines.append(json.dumps(row))
    paths["frame_log"] = out / FRAMES_LOG_NAME
    paths["frame_log"].write_text("\n".join(lines) + "\n")
    if plots:
        paths["mse_plot"] = plot_mse_per_batch(
            [r for r in records if r.get("num_samples")], out / MSE_PLOT_NAME, labels,
            title="Sigma rosbag replay: per-batch action MSE against the recorded commands (lower is better)")
        imp = plot_improvement(report, out / IMPROVEMENT_PLOT_NAME, labels)
        if imp is not None:
            paths["improvement_plot"] = imp
    full = dict(report)
    full["files"] = {k: p.name for k, p in paths.items() if k != "report"}
    tmp = out / f".{REPORT_NAME}.tmp"
    tmp.write_text(json.dumps(full, indent=2, allow_nan=False) + "\n")
    tmp.replace(out / REPORT_NAME)
    report["files"] = {k: str(p) for k, p in paths.items()}
    return paths


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    from sigma_model.evaluation.adapter import AdapterConfig

    p = argparse.ArgumentParser(
        prog="sigma-bag-eval",
        description="Replay a robot rosbag2 recording (sqlite3 or MCAP) through the Sigma ROS 2 node graph and the "
                    "offline model; report action errors against the recorded commands, per-stage latency and "
                    "dropped messages in the sigma_eval_report.json format.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("bag", help="rosbag2 directory (or a single .db3 / .mcap file)")
    p.add_argument("--checkpoint", default=None,
                   help="Sigma checkpoint (model dir, training step dir or training output); default: seeded random weights")
    p.add_argument("--heads", default=None, help="sigma_telepathy_heads.safetensors to load over the checkpoint")
    p.add_argument("--model-seed", type=int, default=0, help="seed of the random weights without --checkpoint")
    p.add_argument("--output", "-o", default="sigma_bag_eval", help="directory for the report, logs and plots")
    p.add_argument("--overwrite", action="store_true", help="replace a report already in --output")
    p.add_argument("--rate", type=float, default=1.0,
                   help="publish at this multiple of the recorded speed; 0 = lockstep (each frame after the previous plan)")
    p.add_argument("--no-ros", action="store_true", help="offline path only (no ROS 2 needed)")
    p.add_argument("--no-offline", action="store_true", help="ROS graph path only")
    p.add_argument("--batch-size", type=int, default=4, help="consecutive scored frames per report batch")
    p.add_argument("--seed", type=int, default=0, help="diffusion seed (the action node's diffusion_seed)")
    p.add_argument("--telepathy", choices=("on", "off"), default="on", help="off = the tau = 0 baseline path")
    p.add_argument("--max-frames", type=int, default=None, help="replay at most this many camera frames")
    p.add_argument("--action-align", choices=("latest", "next"), default="latest",
                   help="a frame's recorded command: the newest at/before it, or the first at/after it")
    p.add_argument("--max-age-s", type=float, default=1.0,
                   help="joint states / commands older than this are not paired (the perception node's joint_state_timeout_s)")
    p.add_argument("--tau-timeout-s", type=float, default=2.0, help="the perception node's tau_timeout_s")
    p.add_argument("--gap-s", type=float, default=None, help="pause that ends an episode (default 5 camera periods, >= 0.5 s)")
    p.add_argument("--output-type", choices=("joint_trajectory", "float64_multi_array"), default="joint_trajectory",
                   help="the controller node's motor command type")
    p.add_argument("--frame-timeout-s", type=float, default=30.0, help="longest wait for a frame's plan")
    p.add_argument("--graph", choices=("inprocess", "processes"), default="processes",
                   help="one process per node, as sigma-graph / ros2 launch run them (deployment-like latency), or all "
                        "four in this process (starts in seconds; the nodes then share one interpreter lock)")
    p.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID of the replay (default: a private one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads of the offline path (torch default; on a busy machine 1 avoids OpenMP "
                        "oversubscription, which can slow it down many times)")
    p.add_argument("--backend", choices=BACKENDS, default="auto", help="bag library (auto: rosbag2_py if importable, else rosbags)")
    g = p.add_argument_group("topics (default: the Sigma graph's names, else the one topic of the type)")
    g.add_argument("--camera-topic", default=None)
    g.add_argument("--joint-states-topic", default=None)
    g.add_argument("--instruction-topic", default=None)
    g.add_argument("--action-topic", default=None, help="recorded commands: JointTrajectory or Float64MultiArray")
    g.add_argument("--joint-names", nargs="+", default=None, help="joint order (default: SO-101 joints when present, else the bag's)")
    a = p.add_argument_group("adapter (paper 4.3)")
    a.add_argument("--adapter", action="store_true", help="apply the risk-gated adapter (action node use_adapter)")
    a.add_argument("--adapter-config", default=None, help="JSON file with AdapterConfig fields")
    d = AdapterConfig()
    a.add_argument("--adapter-min-scale", type=float, default=None, help=f"default {d.min_scale}")
    a.add_argument("--adapter-max-scale", type=float, default=None, help=f"default {d.max_scale}")
    a.add_argument("--adapter-k", type=float, default=None, help=f"default {d.k}")
    a.add_argument("--adapter-tau-range", type=float, nargs=2, default=None, metavar=("LO", "HI"))
    a.add_argument("--adapter-max-residual-ratio", type=float, default=None)
    s = p.add_argument_group("statistics and output")
    s.add_argument("--hard-thresholds", nargs=3, type=float, metavar=("VEC", "CHUNK", "TRAJ"), default=(0.1, 0.2, 0.2))
    s.add_argument("--success-thresholds", nargs=3, type=float, metavar=("VEC", "CHUNK", "TRAJ"), default=(0.1, 0.2, 0.2))
    s.add_argument("--ci", choices=("bootstrap", "t"), default="bootstrap")
    s.add_argument("--confidence", type=float, default=0.95)
    s.add_argument("--n-bootstrap", type=int, default=2000)
    s.add_argument("--table-every", type=int, default=20)
    s.add_argument("--no-plots", action="store_true")
    s.add_argument("--quiet", "-q", action="store_true", help="print only the report path")
    return p


def format_ros_summary(report: dict[str, Any]) -> str:
    meta = report.get("meta", {})
    lines = []
    g = meta.get("ros_graph")
    if g:
        lines.append(f"ROS graph ({g['mode']}): {g['frames_published']} frames published, {g['plans_received']}/"
                     f"{g['plans_expected']} plans, {g['dropped_frames']} dropped, {g['motor_commands']} motor commands, "
                     f"{(g['samples_per_s'] or 0):.1f} samples/s")
        if g.get("latency_e2e_ms"):
            e = g["latency_e2e_ms"]
            lines.append(f"  camera -> plan latency: median {e['median']:.1f} ms, p90 {e['p90']:.1f} ms, max {e['max']:.1f} ms")
        stages = g.get("stage_latency_ms") or {}
        if stages:
            lines.append("  stage latency (node status, mean of last values): " + ", ".join(
                f"{k} {v['mean_of_last']:.1f} ms" for k, v in stages.items()))
        drops = {n: {k: v for k, v in (d or {}).items() if v} for n, d in (g.get("node_dropped_inputs") or {}).items()}
        drops = {n: d for n, d in drops.items() if d}
        lines.append(f"  node dropped inputs: {drops or 'none'}")
    t = (meta.get("timing") or {}).get("offline")
    if t:
        lines.append(f"offline: {t['frames']} frames in {t['seconds']:.2f} s ({(t['samples_per_s'] or 0):.1f} samples/s)")
    c = meta.get("consistency") or {}
    if c.get("frames_compared"):
        lines.append(f"ROS graph vs offline: max |action difference| {c['ros_graph_vs_offline_max_abs_diff']:.3g} over "
                     f"{c['frames_compared']} frames (recurrence mismatches {c['recurrence_mismatches']}, "
                     f"state mismatches {c['state_mismatches']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        from sigma_model.evaluation.evaluate import adapter_config_from_args, format_summary
        from sigma_model.evaluation.report import refuse_existing_report

        refuse_existing_report(args.output, args.overwrite)
        if args.threads is not None:
            if args.threads <= 0:
                raise ValueError("--threads must be positive")
            torch.set_num_threads(args.threads)
        if not 0 < args.confidence < 1:
            raise ValueError("--confidence must be in (0, 1)")
        cfg = BagEvalConfig(
            batch_size=args.batch_size, seed=args.seed, telepathy=args.telepathy == "on", adapter=args.adapter,
            adapter_config=adapter_config_from_args(args), rate=args.rate, action_align=args.action_align,
            max_age_s=args.max_age_s, tau_timeout_s=args.tau_timeout_s, gap_s=args.gap_s, max_frames=args.max_frames,
            output_type=args.output_type, frame_timeout_s=args.frame_timeout_s, device=args.device,
            domain_id=args.domain_id, graph_mode=args.graph,
            hard_thresholds=dict(zip(("vec", "chunk", "traj"), args.hard_thresholds)),
            success_thresholds=dict(zip(("vec", "chunk", "traj"), args.success_thresholds)),
        )
        topics = RobotTopics(camera=args.camera_topic, joint_states=args.joint_states_topic,
                             instruction=args.instruction_topic, action=args.action_topic)
        bar = None
        if not (args.quiet or args.no_ros):
            from tqdm import tqdm

            bar = tqdm(total=args.max_frames, unit="frame", desc="sigma-bag-eval (ROS graph)", dynamic_ncols=True)
        try:
            report, _ = evaluate_bag(
                args.bag, args.checkpoint, args.output, config=cfg, topics=topics, joint_names=args.joint_names,
                ros=not args.no_ros, offline=not args.no_offline, heads=args.heads, backend=args.backend,
                model_seed=args.model_seed, ci_method=args.ci, confidence=args.confidence, n_boot=args.n_bootstrap,
                table_every=args.table_every, plots=not args.no_plots, progress=None if bar is None else bar.update)
        finally:
            if bar is not None:
                bar.close()
    except (BagError, FileNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"sigma-bag-eval: error: {err}", file=sys.stderr)
        return 2
    if args.quiet:
        print(Path(args.output) / "sigma_eval_report.json")
        return 0
    print(format_summary(report))
    print("")
    print(format_ros_summary(report))
    for name, path in report.get("files", {}).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
