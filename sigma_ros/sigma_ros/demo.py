# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""``sigma-demo``: the main job. The whole stack on the simulated SO-101, finishing by itself.

Starts the simulated SO-101 (:mod:`sigma_ros.sim_node`) and the four Sigma nodes from the same
graph description ``launch/sigma.launch.py`` and ``sigma-graph`` use (:mod:`sigma_ros.graph`:
node list, parameter file ``config/sigma.yaml``, per-node ``--ros-args``), with the shipped
checkpoint ``checkpoints/sigma_so101_default``; then, per episode, resets the simulator
(randomised cube, seeded), sends the instruction on ``/instruction`` and lets the graph act until
the task is solved or the episode times out. Prints success, time to success and the per-stage
latency each node reports on ``sigma/status``, then stops everything.

By default the Sigma nodes run one process each (like ``ros2 launch``) and the simulator runs in
this process; ``--composition=single_process`` puts everything in this process. Options that need a
display (``--gui``) are off by default. Everything stays on an isolated ROS domain unless
``--domain_id`` is given. Every DemoConfig field is ``--field=value`` (draccus, :mod:`sigma_model.cli`).

Examples::

    sigma-demo                                # 3 episodes, shipped checkpoint
    sigma-demo --episodes=10 --json=demo.json
    sigma-demo --telepathy=false              # the tau = 0 baseline path
    sigma-demo --gui=true                     # MuJoCo viewer (needs a display)
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sigma_model.cli import check_choice, fail, parse_cli

from sigma_ros.graph import COMPOSITIONS, composition
from sigma_ros.graph_main import stop_processes

PROG = "sigma-demo"
DEFAULT_CHECKPOINT = "checkpoints/sigma_so101_default"
STAGE_ORDER = (("perception_node", "decode"), ("perception_node", "vision_stage"),
               ("language_node", "language_stage"), ("action_node", "action_stage"), ("action_node", "adapter"),
               ("controller_node", "control_stage"))


def default_checkpoint() -> str:
    """Return the shipped checkpoint: ./checkpoints/... in a source tree, else next to the package."""
    local = Path(DEFAULT_CHECKPOINT)
    if (local / "config.json").is_file():
        return str(local)
    repo = Path(__file__).resolve().parents[2] / DEFAULT_CHECKPOINT
    return str(repo)


#: {condition: (telepathy, adapter)} of --conditions.
CONDITION_FLAGS = {"sigma": (True, False), "sigma_adapter": (True, True), "telepathy_off": (False, False),
                   "telepathy_off_adapter": (False, True)}
STEP_MODES = ("timer", "on_command")


@dataclass
class DemoConfig:
    """sigma-demo's command line."""

    checkpoint: str | None = None  # Sigma checkpoint (default: checkpoints/sigma_so101_default)
    episodes: int = 3  # episodes to run
    seed: int = 10_000  # seed of the first episode (episode i: seed + i)
    instruction: str | None = None  # instruction for every episode (default: left/right alternating)
    telepathy: bool = True  # false: the tau = 0 baseline path
    adapter: bool = False  # risk-gated inference adapter on in the action node
    max_episode_s: float = 15.0  # simulated seconds per episode
    real_time_factor: float = 1.0  # wall-clock speed of sim + controller (< 1 on slow machines)
    # sim stepping: wall-clock timer (real time), or on_command: one step per motor command, the controller silent
    # while it waits for a plan (with sync_plans the simulation then pauses for each plan, as in-process)
    step_mode: str = "timer"
    # the arm holds at each plan's end until the plan of a frame from then on (LeRobot's synchronous loop, as the
    # in-process evaluation); false: plans run on, aligned to their frame's stamp (latency hiding)
    sync_plans: bool = True
    # processes: one process per Sigma node (like ros2 launch); single_process: the nodes in this process too
    composition: str = COMPOSITIONS[0]
    config_file: str | None = None  # ROS 2 parameter file (default: config/sigma.yaml)
    domain_id: int | None = None  # ROS domain id (default: a free-ish isolated one)
    startup_timeout: float = 120.0  # seconds to wait for the nodes
    gui: bool = False  # show the MuJoCo viewer (needs a display)
    json: str | None = None  # also write the results as JSON to this file
    # closed-loop evaluation through ROS: run the episodes once per condition (sigma, sigma_adapter,
    # telepathy_off, telepathy_off_adapter; the graph is restarted for each) instead of --telepathy/--adapter
    conditions: list[str] | None = None
    report: str | None = None  # write sigma_eval_report.json (sigma-closed-loop's report format) in this directory
    overwrite: bool = False  # replace an existing --json file or a report already in --report
    verbose: bool = False  # show the nodes' own log output

    def __post_init__(self) -> None:
        if not (self.episodes > 0 and self.real_time_factor > 0 and self.max_episode_s > 0
                and self.startup_timeout > 0):
            raise ValueError("--episodes, --real_time_factor, --max_episode_s and --startup_timeout must be positive")
        if not 0 <= self.seed <= 2**31 - self.episodes:  # the sim node's seed parameter (int32), episode i: seed + i
            raise ValueError(f"--seed must be in 0..{2**31 - self.episodes} for {self.episodes} episodes, "
                             f"got {self.seed}")
        check_choice("--step_mode", self.step_mode, STEP_MODES)
        composition(self.composition)
        unknown = sorted(set(self.conditions or ()) - set(CONDITION_FLAGS))
        if unknown or self.conditions == []:
            raise ValueError(f"--conditions must be a non-empty list of {list(CONDITION_FLAGS)}, got {self.conditions}")


class StatusCollector:
    """Newest sigma/status message per node, plus the episode status events of the sim."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: dict[str, Any] = {}

    def on_status(self, msg) -> None:
        with self.lock:
            self.status[msg.node] = msg

    def nodes(self) -> set[str]:
        with self.lock:
            return set(self.status)

    def latencies(self) -> dict[str, dict[str, float]]:
        """{node: {stage: mean ms}} from the newest Status of each node."""
        with self.lock:
            out = {}
            for node, m in self.status.items():
                out[node] = {n: float(v) for n, v in zip(m.stage_names, m.stage_latency_mean_ms)}
                rates = dict(zip(m.rate_names, m.rates_hz))
                out[node].update({f"rate:{k}": float(v) for k, v in rates.items()})
                out[node]["mode:" + m.mode] = 1.0
            return out


def _child_env(domain_id: int) -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start_node_processes(specs, params_file, checkpoint, overrides, domain_id, log_path, verbose):
    from sigma_ros.graph_main import start_node_process

    log = None if verbose else open(log_path, "ab")
    procs = [(spec, start_node_process(spec, params_file, checkpoint, overrides=overrides.get(spec.name),
                                       env=_child_env(domain_id), log=log)) for spec in specs]
    return procs, log


def format_latency(lat: dict[str, dict[str, float]]) -> list[str]:
    lines = []
    for node, stage in STAGE_ORDER:
        v = lat.get(node, {}).get(stage)
        if v is not None:
            lines.append(f"  {node:<16} {stage:<15} {v:8.2f} ms")
    ctl = lat.get("controller_node", {})
    if "rate:control_achieved" in ctl:
        lines.append(f"  {'controller_node':<16} {'control rate':<15} {ctl['rate:control_achieved']:8.2f} Hz")
    return lines


def perception_supports_env_state() -> bool:
    """Whether the perception node feeds privileged sim state (env_state) to the vision stage itself."""
    from sigma_ros.perception_node import PerceptionNode

    return any(p.name == "env_state_topic" for p in PerceptionNode.PARAMS)


class EnvStateShim:
    """Privileged-state bridge for a perception node without env_state support (in-process only).

    Models trained with ``env_state_dim > 0`` (the cube pose from the simulator) need
    ``SigmaObservation.env_state``; this wraps the in-process perception node's
    ``model.vision_stage`` to add the newest ``sim/env_state`` pose (published by the sim node with
    every camera frame, just before it).
    """

    def __init__(self, perception_node, monitor, dim: int) -> None:
        import dataclasses

        import torch
        from std_msgs.msg import Float64MultiArray

        from sigma_ros import qos
        from sigma_ros.sim_node import ENV_STATE_TOPIC

        self.latest = None
        monitor.create_subscription(Float64MultiArray, ENV_STATE_TOPIC, self.on_pose, qos.SENSOR)
        model = perception_node.model
        original = model.vision_stage

        def vision_stage(obs, tau_prev=None):
            if obs.env_state is None and self.latest is not None:
                obs = dataclasses.replace(obs, env_state=self.latest.to(obs.robot_state.dtype))
            return original(obs, tau_prev)

        model.vision_stage = vision_stage
        self._torch, self.dim = torch, dim

    def on_pose(self, msg) -> None:
        data = list(msg.data)[: self.dim]
        if len(data) == self.dim:
            self.latest = self._torch.tensor([data], dtype=self._torch.float32)


class PlanWatch:
    """Whether a plan of a camera frame stamped after :meth:`mark` has reached ``monitor``."""

    def __init__(self, monitor) -> None:
        from sigma_ros_msgs.msg import ActionPlan

        from sigma_ros import graph, qos

        self.clock = monitor.get_clock()
        self.cond = threading.Condition()
        self.since_ns = self.newest_ns = 0
        self.marked = 0.0  # monotonic s of mark()
        self.first_seen: float | None = None  # monotonic s the first plan after mark() arrived
        monitor.create_subscription(ActionPlan, graph.TOPIC_BY_KEY["action_plan"].name, self.on_plan, qos.PIPELINE)

    def on_plan(self, msg) -> None:
        with self.cond:
            self.newest_ns = max(self.newest_ns, msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
            if self.first_seen is None and self.newest_ns > self.since_ns:
                self.first_seen = time.monotonic()
            self.cond.notify_all()

    def mark(self) -> None:
        with self.cond:
            self.since_ns = self.clock.now().nanoseconds
            self.marked, self.first_seen = time.monotonic(), None

    def wait(self, timeout_s: float) -> float | None:
        """Wait for the first plan after :meth:`mark` (sent with a reset); None if none came within ``timeout_s``.

        Else return the monotonic time halfway between the mark and that plan's arrival: motor commands that come
        later are the plan's (those of the plan before stop when the controller gets the reset, right after the mark;
        the plan's start when the controller gets it, about when this monitor does).
        """
        with self.cond:
            if not self.cond.wait_for(lambda: self.newest_ns > self.since_ns, timeout_s):
                return None
            return self.marked + 0.5 * (self.first_seen - self.marked)


def run_episode(sim, seed: int, instruction: str, send_instruction: Callable[[str], None],
                poll: Callable[[], None], wall_s: float, reset_timeout_s: float = 10.0,
                wait_first_plan: Callable[[], float | None] | None = None) -> dict[str, Any]:
    """One episode as one handshake with the sim node, by episode id.

    Reset the sim to ``seed`` and ``instruction``, wait until that episode has started, send the instruction, and return
    the final status of that episode (``poll()`` runs while waiting; after ``wall_s`` the sim ends it).

    With ``wait_first_plan`` (blocks until the graph's first plan after the instruction arrived, returns
    :meth:`PlanWatch.wait`'s time, None on timeout) the arm holds until that plan is there, as the in-process
    evaluation computes its first plan before the first step; else the sim holds for its ``reset_hold_s``.

    Raises:
        RuntimeError: If the episode does not start within ``reset_timeout_s`` or the result is
            not that of this episode, seed and instruction.
    """
    episode = sim.request_reset(seed, instruction, hold=wait_first_plan is not None)
    sim.wait_episode_started(episode, reset_timeout_s)
    send_instruction(instruction)
    if wait_first_plan is not None:
        seen = wait_first_plan()
        if seen is None:
            print("[sigma-demo] no plan for the new episode yet: starting anyway", flush=True)
        sim.release_episode(episode, since=seen)  # (lock-step: that plan's commands that came first step it first)
    deadline = time.monotonic() + wall_s
    while (result := sim.wait_episode_result(episode, 0.05)) is None:
        poll()
        if time.monotonic() > deadline:
            print("[sigma-demo] episode wall-clock limit reached", flush=True)
            result = sim.end_episode(episode, "wall_clock_limit")
    got = (result["episode"], result["seed"], result["instruction"])
    if got != (episode, seed, instruction):
        raise RuntimeError(f"sim result {got} is not that of episode {episode} (seed {seed}, {instruction!r})")
    return dict(result)


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import Empty, String

    from sigma_model.checkpoint import CONFIG_NAME
    from sigma_model.configuration_sigma import SigmaConfig
    from sigma_ros import graph, qos
    from sigma_ros.executors import make_executor
    from sigma_ros.graph_main import create_nodes
    from sigma_ros.lifecycle import bring_up_all
    from sigma_ros.sim_node import SimNode
    from sigma_ros.testing import domain_id_for
    from sigma_sim.episode_variations import episode_instruction
    from sigma_sim.so101_env import SimConfig, SO101PickPlaceEnv

    checkpoint = cfg.checkpoint or default_checkpoint()
    if not (Path(checkpoint) / CONFIG_NAME).is_file():
        raise RuntimeError(f"no checkpoint at {checkpoint} (run sigma-make-default, or pass --checkpoint=DIR)")
    checkpoint = str(Path(checkpoint).resolve())
    mconf = SigmaConfig.load(Path(checkpoint) / CONFIG_NAME)
    params_file = cfg.config_file or str(graph.default_config_file())
    domain_id = cfg.domain_id if cfg.domain_id is not None else domain_id_for("sigma-demo")
    rate = 30.0 * cfg.real_time_factor
    common = {"telepathy": cfg.telepathy, "torch_threads": 1, "sync_plans": cfg.sync_plans}
    overrides = {spec.name: dict(common) for spec in graph.NODES}
    overrides["controller_node"].update(rate_hz=rate, output_type="joint_trajectory",
                                        silent_while_waiting=cfg.step_mode == "on_command")
    overrides["action_node"]["use_adapter"] = bool(cfg.adapter)
    if cfg.real_time_factor != 1.0:  # sensor timeouts scale with the slowed clock
        overrides["controller_node"].update(plan_timeout_s=0.5 / cfg.real_time_factor,
                                            joint_state_timeout_s=0.5 / cfg.real_time_factor)

    shim_needed = bool(mconf.env_state_dim) and not perception_supports_env_state()
    single_process = cfg.composition == "single_process"
    if shim_needed and not single_process:
        print("[sigma-demo] the checkpoint uses privileged sim state (cube pose, env_state_dim > 0) and the "
              "perception node does not subscribe to it: running the nodes in this process with a bridge",
              flush=True)
        single_process = True
    print(f"[sigma-demo] checkpoint {checkpoint}; ROS domain {domain_id}; "
          f"{'single process' if single_process else 'one process per node'}", flush=True)
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = rclpy.Context()
    rclpy.init(args=[], context=context, domain_id=domain_id)
    procs, log = [], None
    fd, log_path = tempfile.mkstemp(prefix="sigma_demo_nodes_", suffix=".log")  # new, private (0600)
    os.close(fd)
    nodes = []
    sim = None
    monitor = None
    executor = None
    sim_executor = None
    spin_threads: list[threading.Thread] = []
    viewer = None
    results: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    try:
        if single_process:
            nodes = create_nodes(list(graph.NODES), params_file, [], checkpoint, None, context=context,
                                 extra_overrides=overrides)
        else:
            procs, log = start_node_processes(graph.NODES, params_file, checkpoint, overrides, domain_id, log_path,
                                              cfg.verbose)
        size = mconf.image_size
        env = SO101PickPlaceEnv(SimConfig(image_width=size, image_height=size, render_observations=False,
                                          max_episode_steps=10**9))
        sim_params = graph.ros_arguments(None, [], {
            "control_hz": 30.0, "real_time_factor": float(cfg.real_time_factor), "step_mode": cfg.step_mode,
            "image_size": int(size), "audio_sample_rate": int(mconf.audio_sample_rate),
            "audio_chunk_s": mconf.audio_chunk_samples / mconf.audio_sample_rate, "seed": int(cfg.seed),
            "max_episode_s": float(cfg.max_episode_s), "command_type": "joint_trajectory",
            "env_state_encoding": (mconf.notes or {}).get("env_state") or "raw",
        }, node_name="sim_node")
        sim = SimNode(env=env, context=context, cli_args=sim_params)
        if cfg.gui:
            try:
                import mujoco.viewer

                viewer = mujoco.viewer.launch_passive(env.model, env.data)
            except Exception as err:  # noqa: BLE001
                print(f"[sigma-demo] --gui: no viewer ({err}); continuing headless", flush=True)
        monitor = rclpy.create_node("sigma_demo", context=context)
        collector = StatusCollector()
        from sigma_ros_msgs.msg import Status

        monitor.create_subscription(Status, graph.TOPIC_BY_KEY["status"].name, collector.on_status, qos.STATUS)
        instr_pub = monitor.create_publisher(String, graph.TOPIC_BY_KEY["instruction"].name, qos.INSTRUCTION)
        reset_pub = monitor.create_publisher(Empty, graph.TOPIC_BY_KEY["reset"].name, qos.INSTRUCTION)
        executor = make_executor(context)
        for n in (*nodes, monitor):
            executor.add_node(n)
        spin_threads.append(threading.Thread(target=executor.spin, daemon=True))
        # The sim renders with an OpenGL context: it is spun by one dedicated thread only.
        sim_executor = SingleThreadedExecutor(context=context)
        sim_executor.add_node(sim)
        spin_threads.append(threading.Thread(target=sim_executor.spin, daemon=True))
        spin_threads[0].start()  # the sim starts once the nodes are active (below)

        want = {s.name for s in graph.NODES}
        deadline = time.monotonic() + cfg.startup_timeout
        while not want <= collector.nodes():
            for spec, p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{spec.name} exited with {p.returncode} during start-up (log: {log_path})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes not up after {cfg.startup_timeout:.0f}s: missing "
                                   f"{sorted(want - collector.nodes())} (log: {log_path})")
            time.sleep(0.2)
        # the nodes are up (unconfigured): configure + activate them through their lifecycle services
        alive = {spec.name: p for spec, p in procs}
        brought_up = bring_up_all(monitor, sorted(want), max(1.0, deadline - time.monotonic()),
                                  alive=lambda name: name not in alive or alive[name].poll() is None)
        failed = {name: what for name, (ok, what) in brought_up.items() if not ok}
        if failed:
            errors = {n.get_name(): n.config_error for n in nodes if n.config_error}
            raise RuntimeError(f"nodes not active: {failed} {errors or ''} (log: {log_path})".strip())
        if shim_needed:  # the perception node's model exists once it is configured
            perception = next(n for n in nodes if n.get_name() == "perception_node")
            EnvStateShim(perception, monitor, mconf.env_state_dim)
        # configuring in-process nodes imports torch/transformers extensions, which crashed (SIGSEGV)
        # while the sim rendered with OpenGL in another thread: the sim runs from here on
        spin_threads[1].start()
        t_wait = time.monotonic() + 10.0
        while instr_pub.get_subscription_count() < 1 and time.monotonic() < t_wait:
            time.sleep(0.05)
        print(f"[sigma-demo] graph up in {time.perf_counter() - t_start:.1f}s: sim_node + "
              f"{', '.join(s.name for s in graph.NODES)}", flush=True)

        plans = PlanWatch(monitor)

        def send_instruction(instruction: str) -> None:
            plans.mark()
            instr_pub.publish(String(data=instruction))
            # then a new episode: fresh memory and tau even for the same words; the perception node skips frames
            # stamped before it, so the first plan of the episode has this instruction and the new scene
            reset_pub.publish(Empty())

        def poll() -> None:
            if viewer is not None and viewer.is_running():
                with sim.lock:
                    viewer.sync()
            for spec, p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{spec.name} exited with {p.returncode} (log: {log_path})")

        for i in range(cfg.episodes):
            seed = cfg.seed + i
            instruction = cfg.instruction or episode_instruction(i, seed)
            print(f"[sigma-demo] episode {i + 1}/{cfg.episodes}: seed {seed}, instruction {instruction!r}", flush=True)
            status = run_episode(sim, seed, instruction, send_instruction, poll,
                                 wall_s=cfg.max_episode_s / cfg.real_time_factor * 3 + 10,
                                 wait_first_plan=lambda: plans.wait(cfg.startup_timeout))
            status["latency_ms"] = collector.latencies()
            results.append(status)
            t = status["time_to_success_s"]
            print(f"[sigma-demo]   -> {'SUCCESS' if status['success'] else 'failed '} "
                  f"{'in %.2f s' % t if t is not None else 'after %.2f s' % status['time']} (simulated), "
                  f"cube lifted: {status['was_lifted']}, commands received: {status['commands_in']}", flush=True)
    finally:
        if viewer is not None:
            try:
                viewer.close()
            except Exception:  # noqa: BLE001
                pass
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if sim_executor is not None:
            sim_executor.shutdown(timeout_sec=2.0)
        for t in spin_threads:
            if t.ident is not None:
                t.join(timeout=5.0)
        stop_processes([(spec.name, p) for spec, p in procs])
        if log is not None:
            log.close()
        for n in nodes:
            try:
                n.shutdown()
            except Exception:  # noqa: BLE001
                pass
        timing = sim.timing() if sim is not None else {}
        if sim is not None:
            sim.shutdown()
        context.try_shutdown()

    lat = results[-1]["latency_ms"] if results else {}
    ok = sum(r["success"] for r in results)
    times = [r["time_to_success_s"] for r in results if r["time_to_success_s"] is not None]
    summary = {
        "checkpoint": checkpoint, "episodes": len(results), "successes": ok,
        "episode_success_rate": ok / max(1, len(results)),
        "mean_time_to_success_s": sum(times) / len(times) if times else None,
        "telepathy": cfg.telepathy, "adapter": cfg.adapter, "sync_plans": cfg.sync_plans,
        "single_process": single_process,
        "sim_timing_ms": timing, "latency_ms": lat, "episodes_detail": results,
        "wall_s": time.perf_counter() - t_start,
    }
    print("")
    print(f"[sigma-demo] success rate: {ok}/{len(results)} = {summary['episode_success_rate']:.0%}"
          + (f"; mean time to success {summary['mean_time_to_success_s']:.2f} s" if times else ""))
    print("[sigma-demo] per-stage latency (mean over each node's status window):")
    for line in format_latency(lat):
        print(line)
    if timing:
        print(f"  {'sim_node':<16} {'physics step':<15} {timing.get('physics_step_ms', float('nan')):8.2f} ms")
        print(f"  {'sim_node':<16} {'render':<15} {timing.get('render_ms', float('nan')):8.2f} ms")
    print(f"[sigma-demo] done in {summary['wall_s']:.1f} s")
    return summary


def ros_report(runs: dict[str, dict[str, Any]], cfg: DemoConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return the closed-loop report (sigma_sim.closed_loop format) of demo runs, one per condition."""
    from sigma_sim.closed_loop import ClosedLoopConfig, EpisodeOutcome, build_closed_loop_report

    outcomes = []
    for condition, summary in runs.items():
        for i, ep in enumerate(summary["episodes_detail"]):
            lat = ep.get("latency_ms", {})
            latency = {f"{node}.{stage}": v for node, stages in lat.items() for stage, v in stages.items()
                       if not stage.startswith(("rate:", "mode:"))}
            outcomes.append(EpisodeOutcome(
                condition=condition, episode=i, seed=ep["seed"], instruction=ep["instruction"], success=ep["success"],
                steps=ep["step"], time_to_success_s=ep["time_to_success_s"], was_lifted=ep["was_lifted"],
                mean_abs_delta_command=ep["mean_abs_delta_command"], mean_sq_jerk=ep["mean_sq_jerk"],
                safety_step_limited_fraction=float("nan"), plans=0, latency_ms=latency,
            ))
    loop = ClosedLoopConfig(episodes=cfg.episodes, seed=cfg.seed, conditions=tuple(runs),
                            max_steps=int(round(cfg.max_episode_s * 30)))
    meta = {"mode": "closed_loop_ros", "real_time_factor": cfg.real_time_factor, "step_mode": cfg.step_mode,
            "single_process": next(iter(runs.values()))["single_process"],
            "checkpoint": next(iter(runs.values()))["checkpoint"],
            "replan": "every camera frame (perception -> language -> action pipeline rate)"}
    report, records = build_closed_loop_report(outcomes, loop, meta=meta)
    report["meta"]["mode"] = "closed_loop_ros"
    report["meta"].pop("replan_every", None)
    return report, records


def check_outputs(cfg: DemoConfig) -> None:
    """Before any episode: ``--report`` and ``--json`` must be writable and hold no result unless ``--overwrite``.

    Raises:
        OSError: One line naming the path.
    """
    if cfg.report:
        from sigma_sim.closed_loop import prepare_report_dir

        prepare_report_dir(cfg.report, cfg.overwrite)
    if cfg.json:
        path = Path(cfg.json)
        if path.is_dir():
            raise IsADirectoryError(f"--json {path} is a directory, not a file")
        if path.exists() and not cfg.overwrite:
            raise FileExistsError(f"{path} exists already; pass --overwrite=true to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise PermissionError(f"--json {path}: its directory is not writable")


def main(argv: list[str] | None = None) -> int:
    cfg = parse_cli(DemoConfig, argv, PROG, description=__doc__)
    try:
        check_outputs(cfg)
    except OSError as err:
        fail(PROG, err)
    conditions = cfg.conditions or [next(k for k, v in CONDITION_FLAGS.items() if v == (cfg.telepathy, cfg.adapter))]
    runs: dict[str, dict[str, Any]] = {}
    try:
        for condition in conditions:
            telepathy, adapter = CONDITION_FLAGS[condition]
            if len(conditions) > 1:
                print(f"[sigma-demo] ===== condition {condition} =====", flush=True)
            runs[condition] = run_demo(dataclasses.replace(cfg, telepathy=telepathy, adapter=adapter))
    except KeyboardInterrupt:
        print("[sigma-demo] interrupted", file=sys.stderr)
        return 130
    except RuntimeError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    if cfg.json:
        from sigma_model.data._io import atomic_write_bytes

        data = runs[conditions[0]] if len(runs) == 1 else runs
        atomic_write_bytes(cfg.json, (json.dumps(data, indent=2, default=str) + "\n").encode())
    if cfg.report:
        from sigma_sim.closed_loop import format_summary, write_closed_loop_report

        report, records = ros_report(runs, cfg)
        path = write_closed_loop_report(report, records, cfg.report)
        print(format_summary(report))
        print(f"[sigma-demo] report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
