# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Replay throughput (samples/s) of `sigma-bag-eval`: offline and through the ROS 2 node graph.

    python benchmarks/bench_bag_replay.py                        # default-size model, 60 frames
    python benchmarks/bench_bag_replay.py --frames=120 --rates=[0,1,2,4] --storage=mcap --json=out.json
    python benchmarks/bench_bag_replay.py --small=true           # the tests' small model (quick)

Writes a synthetic robot recording (camera at --camera_hz, joint states and commands at 50 Hz, two
instructions) into a temporary directory, then measures, on the same weights:

* reading + pairing the recording (frames/s),
* the offline path (vision -> language -> action stages frame by frame, with the nodes' recurrence),
  best of --repeats runs after a warm-up,
* the ROS 2 graph path for each --rates value: the four nodes as separate processes like
  sigma-graph (--graph=processes, default) or in this process (--graph=inprocess), on a private
  ROS domain with real rclpy + Fast DDS. Rate 0 = lockstep (each frame once the previous plan
  arrived: the graph's sequential throughput); r > 0 = published at r x the recorded speed
  (throughput is then bounded by r x the camera rate; drops show where the graph cannot keep up).
  Samples/s = plans received / time from the first frame published to the last plan received
  (start-up excluded); with the camera -> plan latency, the nodes' stage latency and drops.

torch runs on --threads threads for the offline path (default 1, as every node with
config/sigma.yaml's torch_threads; more threads on a busy 2-core machine can be much slower).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

from sigma_ros.bag_io import BagReader  # noqa: E402
from sigma_ros.bag_pairing import PairingStats, iter_paired_frames  # noqa: E402
from sigma_ros.bag_robot_writer import write_synthetic_robot_bag  # noqa: E402
from sigma_ros.bag_replay import evaluate_bag  # noqa: E402
from sigma_ros.bag_replay_config import BagEvalConfig  # noqa: E402
from sigma_ros.bag_replay_offline import attach_targets, run_offline, schedule  # noqa: E402
from sigma_model.cli import check_choice, parse_cli  # noqa: E402


def build_checkpoint(workdir: Path, small: bool, checkpoint: str | None, seed: int) -> str:
    if checkpoint:
        return checkpoint
    from sigma_model import SigmaConfig, SigmaModel, save_checkpoint

    if small:
        from sigma_model.testing import small_config

        config = small_config()
    else:
        config = SigmaConfig()
    torch.manual_seed(seed)
    model = SigmaModel(config).eval()
    with torch.no_grad():  # a non-zero telepathy residual head, as after training
        g = torch.Generator().manual_seed(seed + 1)
        for p in model.action.residual_head.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
    path = workdir / "ckpt"
    save_checkpoint(model, path)
    return str(path)


PROG = "python benchmarks/bench_bag_replay.py"


@dataclass
class Options:
    frames: int = 60  # camera frames in the recording
    camera_hz: float = 10.0
    storage: str = "sqlite3"  # sqlite3 or mcap
    image_size: int | None = None  # camera image size (default: the model's)
    rates: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0])  # ROS replay rates (0 = lockstep); []: none
    repeats: int = 3  # offline: best of this many timed runs
    threads: int = 1  # torch threads of the offline path (1, as each node of config/sigma.yaml; 0 = torch default)
    small: bool = False  # the tests' small model instead of the default size
    checkpoint: str | None = None  # a Sigma checkpoint instead of seeded random weights
    seed: int = 0
    graph: str = "processes"  # inprocess (the nodes in this process) or processes (one each, as sigma-graph runs them)
    json: str | None = None  # also write the results to this JSON file

    def __post_init__(self) -> None:
        check_choice("--storage", self.storage, ("sqlite3", "mcap"))
        check_choice("--graph", self.graph, ("inprocess", "processes"))


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(Options, argv, PROG, description=__doc__)
    results: dict = {"frames": args.frames, "camera_hz": args.camera_hz, "storage": args.storage, "graph": args.graph,
                     "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    with tempfile.TemporaryDirectory(prefix="sigma_bench_bag_") as tmp:
        tmp = Path(tmp)
        ckpt = build_checkpoint(tmp, args.small, args.checkpoint, args.seed)
        if args.threads:
            torch.set_num_threads(args.threads)
        results["torch_threads"] = torch.get_num_threads()
        from sigma_model.checkpoint import load_checkpoint

        model = load_checkpoint(ckpt).eval()
        c = model.config
        size = args.image_size or c.image_size
        results["model"] = {"d_model": c.d_model, "image_size": c.image_size, "camera_image": size,
                            "params": sum(p.numel() for p in model.parameters())}
        duration = args.frames / args.camera_hz
        bag = tmp / "bag"
        write_synthetic_robot_bag(bag, args.storage, n_frames=args.frames, camera_hz=args.camera_hz, image_size=size,
                                  instructions=((0.0, "pick up the red cube"), (duration / 2, "place it in the bowl")),
                                  seed=args.seed)
        # reading + pairing
        t0 = time.perf_counter()
        stats = PairingStats()
        with BagReader(bag) as reader:
            frames = list(iter_paired_frames(reader, stats=stats))
        read_s = time.perf_counter() - t0
        results["read_pair_frames_per_s"] = len(frames) / read_s
        cfg = BagEvalConfig(seed=args.seed)
        steps = schedule(frames, True, cfg.tau_timeout_s)
        attach_targets(frames, steps, c.chunk_len, c.traj_len)
        # offline
        run_offline(model, frames[: min(5, len(frames))], steps[: min(5, len(steps))], cfg)  # warm-up
        best = float("inf")
        n = sum(s.vision for s in steps)
        for _ in range(max(1, args.repeats)):
            _, seconds = run_offline(model, frames, steps, cfg)
            best = min(best, seconds)
        results["offline"] = {"frames": n, "seconds": best, "samples_per_s": n / best,
                              "ms_per_frame": 1e3 * best / n}
        print(f"model d_model={c.d_model} image {c.image_size} ({results['model']['params'] / 1e6:.2f} M params), "
              f"camera {size}x{size} at {args.camera_hz:g} Hz, {args.frames} frames, {args.storage}, "
              f"torch threads {torch.get_num_threads()}")
        print(f"read + pair recording : {results['read_pair_frames_per_s']:8.1f} frames/s")
        print(f"offline replay        : {results['offline']['samples_per_s']:8.1f} samples/s "
              f"({results['offline']['ms_per_frame']:.1f} ms/frame, best of {args.repeats})")
        results["ros"] = {}
        for rate in args.rates:
            cfg = BagEvalConfig(rate=rate, seed=args.seed, frame_timeout_s=30.0, graph_mode=args.graph)
            t0 = time.perf_counter()
            report, _ = evaluate_bag(str(bag), ckpt, None, config=cfg, offline=False, model=model,
                                     checkpoint_dir=ckpt, n_boot=10)
            wall = time.perf_counter() - t0
            g = report["meta"]["ros_graph"]
            key = "lockstep" if rate == 0 else f"rate_x{rate:g}"
            lat = g["latency_e2e_ms"] or {}
            results["ros"][key] = {"samples_per_s": g["samples_per_s"], "plans": g["plans_received"],
                                   "expected": g["plans_expected"], "dropped_frames": g["dropped_frames"],
                                   "latency_e2e_ms": lat, "stage_latency_ms": g["stage_latency_ms"],
                                   "node_dropped_inputs": g["node_dropped_inputs"], "wall_s_incl_startup": wall}
            stages = ", ".join(f"{k} {v['mean_of_last']:.1f}" for k, v in g["stage_latency_ms"].items())
            print(f"ROS graph {key:<12}: {(g['samples_per_s'] or 0):8.1f} samples/s  plans {g['plans_received']}/"
                  f"{g['plans_expected']}  dropped {g['dropped_frames']}  camera->plan median "
                  f"{lat.get('median', float('nan')):.1f} ms p90 {lat.get('p90', float('nan')):.1f} ms  "
                  f"(stages ms: {stages}; {wall:.1f} s incl. start-up)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
