# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""``sigma-bag-eval``.

Evaluate Sigma on a robot's rosbag2 recording, through the ROS 2 node graph and through the offline model, in the
``sigma_eval_report.json`` format of ``sigma-eval``.

    sigma-bag-eval --bag=robot_bag/ --checkpoint=runs/sigma --output=eval_bag/             # recorded rate
    sigma-bag-eval --bag=robot_bag/ --checkpoint=runs/sigma --output=eval_bag/ --rate=4    # 4x accelerated
    sigma-bag-eval --bag=robot_bag/ --checkpoint=runs/sigma --output=eval_bag/ --rate=0    # lockstep
    sigma-bag-eval --bag=robot_bag/ --checkpoint=runs/sigma --output=eval_bag/ --ros=false # offline only

Every BagEvalCLI field (BagEvalConfig's and the inputs and outputs) is ``--field=value``, the topics
``--topics.<role>=NAME``, the adapter ``--adapter_config.<field>=...`` (draccus, :mod:`sigma_model.cli`).

The recording (camera, joint states, instruction, commanded actions; :mod:`sigma_ros.bag_pairing`) is
paired frame by frame. Conditions of the report:

* ``ros_graph``: the four Sigma nodes (the same nodes, parameter file and ``--ros-args`` as
  ``sigma-graph``; real rclpy + DDS on a private ROS domain, so a robot on the network never hears
  the replay) run one process each (``--graph_mode=processes``, the command's default, as ``sigma-graph``
  / ``ros2 launch`` run them) or all in this process (``--graph_mode=inprocess``, the API's default:
  ``sigma_ros.testing.GraphHarness``, starts in seconds). They get the
  recording's camera frames, joint states and instructions, published as recorded at ``--rate``
  times the recorded speed (the nodes' timeouts scaled by the same factor), or in lockstep
  (``--rate=0``: each frame once the previous frame's plan arrived, preceded by its newest joint
  state; the replay waits where the recording's timeouts expire). The recorded commands are never
  published. The plan of each frame, the motor commands, each node's Status (per-stage latency,
  dropped inputs) and the end-to-end latency are collected. Camera frames and joint states are
  restamped with the replay's clock when they are published (the nodes judge freshness by stamp);
  each frame's (unique) stamp pairs the graph's outputs with it.
* ``offline``: the same checkpoint's stage functions (``vision_stage`` -> ``language_stage`` ->
  ``action_stage``) run frame by frame in this process, following the nodes' rules: tau_prev is the
  previous processed frame's tau unless older than ``tau_timeout_s``; the semantic memory resets on
  an instruction change; a frame without a valid joint state (within ``max_age_s``; valid as the graph's perception
  node judges it, :func:`graph_joint_limits`, counted in ``meta.pairing.invalid_joint_states``) is skipped,
  one before the first instruction gets no plan; the diffusion sampler is reseeded with ``--seed``
  for every plan (the action node's ``reseed_every_plan``).

Errors are measured against the recorded commands, as the shards' targets are: for a frame at
position s of its episode, the action vector is the command paired with frame s, the chunk and the
trajectory the commands of frames s .. s+chunk_len-1 and s .. s+traj_len-1 (frames whose window
runs past the episode end are replayed but not scored). Both conditions are scored on the same
frames in the same batches of ``--batch_size`` consecutive frames; ``ros_graph`` records add
``latency_e2e_ms`` (camera published -> plan received), ``latency_<stage>_ms`` (from the nodes'
Status), ``dropped_frames``, ``motor_cmd_mse`` (first motor command after each plan vs the recorded
command), ``recurrence_mismatches`` and ``max_abs_diff_vs_offline``. ``meta.consistency`` holds the
largest action difference between the two paths over the frames the graph stepped as the offline path did (same
tau source, joint state, instruction and memory step; ``*_mismatches`` count the others); ``meta.ros_graph`` the
totals.

Modules: ``bag_replay_config`` (options), ``bag_replay_offline`` (frame schedule, offline path),
``bag_replay_graph`` (ROS graph path), ``bag_replay_scoring`` (records and summaries); this one runs
an evaluation, writes its outputs and is the command line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from sigma_model.cli import check_choice, parse_cli
from sigma_model.evaluation.evaluate import ReportOptions, format_summary
from sigma_model.safety import JointLimits

from sigma_ros.bag_io import BACKENDS, BagError, BagReader, bag_info
from sigma_ros.bag_pairing import PairingStats, RobotTopics, iter_paired_frames, resolve_joint_names

from sigma_ros.bag_replay_config import CONDITION_OFFLINE, CONDITION_ROS, FRAMES_LOG_NAME, BagEvalConfig
from sigma_ros.bag_replay_graph import run_graph
from sigma_ros.bag_replay_offline import attach_targets, run_offline, schedule
from sigma_ros.bag_replay_scoring import batches_of, build_records, graph_summary

log = logging.getLogger(__name__)
PROG = "sigma-bag-eval"


# ----------------------------------------------------------------------------- one evaluation
def resolve_model(checkpoint: str | None, heads: str | None, device: str, model_seed: int = 0,
                  model_config: str | None = None, workdir: Path | None = None):
    """(full model for the offline path, checkpoint dir the nodes load, heads file or None).

    With ``heads`` the merged weights go to a temporary checkpoint dir (the caller removes it).
    """
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
    """Replay ``bag`` through the graph (``ros``) and the offline model (``offline``).

    Returns (report, details) and writes the report files into ``out_dir`` when given. ``model`` and ``checkpoint_dir``
    skip loading (the nodes load ``checkpoint_dir``; it must hold the same weights).
    """
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
        raise ValueError(
            "this checkpoint needs a privileged env_state (env_state_dim > 0), which a robot recording lacks"
        )
    try:
        return _evaluate(bag, checkpoint, out_dir, cfg, topics, joint_names, ros, offline, heads_file, backend,
                         ci_method, confidence, n_boot, table_every, plots, progress, model, checkpoint_dir)
    finally:
        if merged_dir is not None:
            import shutil

            shutil.rmtree(merged_dir, ignore_errors=True)


def graph_joint_limits(joint_names: Sequence[str]) -> JointLimits:
    """Return the joint-state check of the replayed graph's perception node over ``joint_names``.

    Built as the node builds it from the graph's parameter file (``/**``, then ``perception_node``):
    ``joint_lower_limits``/``joint_upper_limits`` (empty or absent: each joint's built-in limits by name) and
    ``joint_state_tolerance_rad``. ValueError (one line) where the node would not configure, e.g. for joints without
    built-in limits.
    """
    import yaml

    from sigma_ros import graph

    data = yaml.safe_load(graph.default_config_file().read_text()) or {}
    params: dict[str, Any] = {}
    for section in ("/**", "perception_node", "/perception_node"):
        params.update((data.get(section) or {}).get("ros__parameters") or {})
    return JointLimits(params.get("joint_lower_limits"), params.get("joint_upper_limits"),
                       params.get("joint_state_tolerance_rad", JointLimits.measurement_tolerance), joint_names)


def _evaluate(bag, checkpoint, out_dir, cfg, topics, joint_names, ros, offline, heads_file, backend, ci_method,
              confidence, n_boot, table_every, plots, progress, model, checkpoint_dir):
    from sigma_model.evaluation.check_a import check_a_section, find_init_heads
    from sigma_model.evaluation.report import build_report

    c = model.config
    stats = PairingStats()
    t_read = time.perf_counter()
    with BagReader(bag, backend) as reader:
        topics = (topics or RobotTopics()).resolve(reader.topics, reader.name, ("camera", "joint_states", "action"))
        joints = resolve_joint_names(reader, topics, joint_names)
        if len(joints) != c.state_dim or len(joints) != c.action_dim:
            raise ValueError(f"{bag}: {len(joints)} joints {joints}, the model has state_dim {c.state_dim} and "
                             f"action_dim {c.action_dim} (choose the joints with --joint_names)")
        frames = list(iter_paired_frames(reader, topics, joints, action_align=cfg.action_align,
                                         max_age_s=cfg.max_age_s, gap_s=cfg.gap_s, max_frames=cfg.max_frames,
                                         stats=stats, joint_limits=graph_joint_limits(joints)))
        info = bag_info(reader)
        if not frames:
            raise BagError(f"{reader.name}: no camera frames")
        assert all(f.index == i for i, f in enumerate(frames))
        for text in sorted({f.instruction for f in frames if f.instruction is not None}):
            try:  # the language node refuses an instruction the model would cut: no comparison could hold
                model.tokenize([text], truncate=False)
            except ValueError as err:
                raise ValueError(f"{bag}: {err}") from None
        steps = schedule(frames, cfg.telepathy, cfg.tau_timeout_s)
        attach_targets(frames, steps, c.chunk_len, c.traj_len)
        read_s = time.perf_counter() - t_read
        batches = batches_of(steps, cfg.batch_size)
        if not batches:
            raise ValueError(
                f"{bag}: no frame to score: each needs a joint state, an instruction and recorded commands for "
                f"{max(c.chunk_len, c.traj_len)} frames of its episode (frames {len(frames)}, without state "
                f"{sum(f.state is None for f in frames)}, "
                f"without instruction {sum(f.instruction is None for f in frames)}, "
                f"without command {sum(f.action is None for f in frames)}, episodes {stats.episodes})"
            )
        off_out, off_s = (run_offline(model, frames, steps, cfg) if offline else (None, 0.0))
        graph = run_graph(checkpoint_dir, reader, RobotTopics(**stats.topics), frames, steps, joints, cfg,
                          progress) if ros else None
    records, consistency = build_records(batches, steps, frames, off_out, graph, model, cfg)
    info_c: dict[str, dict[str, Any]] = {}
    if graph is not None:
        short = ("lockstep" if cfg.rate == 0 else f"x{cfg.rate:g}") + (
            ", procs" if cfg.graph_mode == "processes" else ""
        )
        info_c[CONDITION_ROS] = {"telepathy": cfg.telepathy, "adapter": cfg.adapter, "label": f"ROS graph {short}",
                                 "mode": graph.mode}
    if off_out is not None:
        info_c[CONDITION_OFFLINE] = {"telepathy": cfg.telepathy, "adapter": cfg.adapter,
                                     "label": "offline model stages"}
    n_offline = sum(1 for s in steps if s.vision)
    ca = check_a_section(
        model, heads_file, find_init_heads(checkpoint) if checkpoint else None
    )  # one model, both paths
    meta = {
        "source": "rosbag",
        "bag": info,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "checkpoint_dir": checkpoint_dir,
        "pairing": {
            **stats.as_dict(),
            "action_align": cfg.action_align,
            "max_age_s": cfg.max_age_s,
            "frames": len(frames),
            "frames_with_plan": sum(s.plan for s in steps),
            "frames_scored": sum(len(b) for b in batches),
        },
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "telepathy": cfg.telepathy,
        "adapter": cfg.adapter_config.to_dict() if cfg.adapter else None,
        "tau_timeout_s": cfg.tau_timeout_s,
        "device": cfg.device,
        "consistency": consistency,
        "timing": {
            "read_s": read_s,
            "offline": {
                "seconds": off_s,
                "frames": n_offline,
                "samples_per_s": (n_offline / off_s) if off_s > 0 else None,
            }
            if off_out is not None
            else None,
        },
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
    """sigma_eval_report.json + sigma_eval_batches.jsonl (report.write_report), the plots with a bag-replay title.

    A per-frame log (sigma_bag_frames.jsonl).
    """
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
               "tau_from": s.tau_from, "memory_step": s.memory_step if s.plan else None}
        if off_out is not None and s.index in off_out:
            row["offline_tau_l2"] = off_out[s.index].tau_l2
        if graph is not None:
            row["published"] = s.index in graph.published
            row["plan_received"] = s.index in graph.outputs
            if s.index in graph.outputs:
                row["latency_e2e_ms"] = graph.outputs[s.index].latency_ms
                row["graph_tau_from"] = graph.used_tau.get(s.index, s.tau_from)
                if s.index in graph.used_memory:
                    row["graph_instruction"], row["graph_memory_step"] = graph.used_memory[s.index]
                if off_out is not None and s.index in off_out:
                    row["max_abs_diff_vs_offline"] = max(
                        float((a - o).abs().max())
                        for a, o in zip(graph.outputs[s.index].actions, off_out[s.index].actions)
                    )
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
@dataclass
class BagEvalCLI(ReportOptions, BagEvalConfig):
    """sigma-bag-eval's command line: BagEvalConfig (the evaluation), the recording, the model and the report."""

    bag: str | None = None  # rosbag2 directory (or a single .db3 / .mcap file); required
    # Sigma checkpoint (model dir, training step dir or training output); default: seeded random weights
    checkpoint: str | None = None
    model_seed: int = 0  # seed of the random weights without --checkpoint
    output: str = "sigma_bag_eval"  # directory for the report, logs and plots
    ros: bool = True  # the ROS graph path (false: offline only, no ROS 2 needed)
    offline: bool = True  # the offline path (false: the ROS graph path only)
    # processes: one process per node, as sigma-graph / ros2 launch run them (deployment-like latency);
    # inprocess: all four in this process (starts in seconds; the nodes then share one interpreter lock)
    graph_mode: str = "processes"
    backend: str = "auto"  # bag library: auto (rosbag2_py if importable, else rosbags), rosbag2_py or rosbags
    # the recording's topics (default: the Sigma graph's names, else the one topic of the type); action:
    # the recorded commands, JointTrajectory or Float64MultiArray
    topics: RobotTopics = field(default_factory=RobotTopics)
    joint_names: list[str] | None = None  # joint order (default: SO-101 joints when present, else the bag's)

    def __post_init__(self) -> None:
        BagEvalConfig.__post_init__(self)
        ReportOptions.__post_init__(self)
        if not self.bag:
            raise ValueError("--bag is required")
        if not (self.ros or self.offline):
            raise ValueError("--ros=false and --offline=false leave nothing to evaluate")
        check_choice("--backend", self.backend, BACKENDS)

    def evaluation(self) -> BagEvalConfig:
        """Return the BagEvalConfig part."""
        return BagEvalConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(BagEvalConfig)})


def format_ros_summary(report: dict[str, Any]) -> str:
    meta = report.get("meta", {})
    lines = []
    g = meta.get("ros_graph")
    if g:
        lines.append(
            f"ROS graph ({g['mode']}): {g['frames_published']} frames published, {g['plans_received']}/"
            f"{g['plans_expected']} plans, {g['dropped_frames']} dropped, {g['motor_commands']} motor commands, "
            f"{(g['samples_per_s'] or 0):.1f} samples/s"
        )
        if g.get("latency_e2e_ms"):
            e = g["latency_e2e_ms"]
            lines.append(
                f"  camera -> plan latency: median {e['median']:.1f} ms, p90 {e['p90']:.1f} ms, max {e['max']:.1f} ms"
            )
        stages = g.get("stage_latency_ms") or {}
        if stages:
            lines.append("  stage latency (node status, mean of last values): " + ", ".join(
                f"{k} {v['mean_of_last']:.1f} ms" for k, v in stages.items()))
        drops = {n: {k: v for k, v in (d or {}).items() if v} for n, d in (g.get("node_dropped_inputs") or {}).items()}
        drops = {n: d for n, d in drops.items() if d}
        lines.append(f"  node dropped inputs: {drops or 'none'}")
    t = (meta.get("timing") or {}).get("offline")
    if t:
        lines.append(
            f"offline: {t['frames']} frames in {t['seconds']:.2f} s ({(t['samples_per_s'] or 0):.1f} samples/s)"
        )
    c = meta.get("consistency") or {}
    if c.get("frames_compared"):
        lines.append(f"ROS graph vs offline: max |action difference| {c['ros_graph_vs_offline_max_abs_diff']:.3g} over "
                     f"{c['frames_compared']} frames (recurrence mismatches {c['recurrence_mismatches']}, "
                     f"state mismatches {c['state_mismatches']}, memory mismatches {c['memory_mismatches']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cli = parse_cli(BagEvalCLI, argv, PROG, description=__doc__)
    logging.basicConfig(level=logging.WARNING if cli.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        from sigma_model.evaluation.report import refuse_existing_report

        refuse_existing_report(cli.output, cli.overwrite)
        if cli.threads is not None:
            torch.set_num_threads(cli.threads)
        bar = None
        if cli.ros and not cli.quiet:
            from tqdm import tqdm

            bar = tqdm(total=cli.max_frames, unit="frame", desc=f"{PROG} (ROS graph)", dynamic_ncols=True)
        try:
            report, _ = evaluate_bag(
                cli.bag, cli.checkpoint, cli.output, config=cli.evaluation(), topics=cli.topics,
                joint_names=cli.joint_names, ros=cli.ros, offline=cli.offline, heads=cli.heads, backend=cli.backend,
                model_seed=cli.model_seed, ci_method=cli.ci, confidence=cli.confidence, n_boot=cli.n_bootstrap,
                table_every=cli.table_every, plots=cli.plots, progress=None if bar is None else bar.update)
        finally:
            if bar is not None:
                bar.close()
    except (BagError, FileNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if cli.quiet:
        print(Path(cli.output) / "sigma_eval_report.json")
        return 0
    print(format_summary(report))
    print("")
    print(format_ros_summary(report))
    for name, path in report.get("files", {}).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
