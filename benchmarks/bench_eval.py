# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Offline replay throughput (samples/s) of `sigma-eval`.

    python benchmarks/bench_eval.py [--samples=64] [--batch_sizes=[1,8,32]] [--device=cpu|cuda]

Writes `--samples` synthetic windows with sigma_model.data.ShardWriter into a temporary directory,
saves a default-size SigmaModel (non-zero telepathy residual head), then measures in one process:

* replay, all five conditions (two model passes per batch: telepathy on and off, + adapter),
* replay, the Sigma condition only (one model pass per batch),
* the whole `run_replay` (shard loading, replay, report, batch log and PNG plots).

Each figure is the best of `--repeats` timed runs after one warm-up run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import tempfile
import time
from pathlib import Path

import torch

from sigma_model import SigmaConfig, SigmaModel, save_checkpoint
from sigma_model.data.shards import ShardDataset, ShardWriter
from sigma_model.evaluation.replay import ReplayConfig, episode_batches, iterate_batches, replay, run_replay
from sigma_model.training.batching import SyntheticWindows
from sigma_model.cli import parse_cli


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


PROG = "python benchmarks/bench_eval.py"


@dataclass
class Options:
    samples: int = 64
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    repeats: int = 2
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    threads: int | None = None  # torch.set_num_threads


def main(argv: list[str] | None = None) -> None:
    args = parse_cli(Options, argv, PROG, description=__doc__)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = SigmaConfig()
    torch.manual_seed(0)
    model = SigmaModel(config)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in model.action.residual_head.parameters():
            p.copy_(0.02 * torch.randn(p.shape, generator=g))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = SyntheticWindows(config, args.samples, seed=0)
        writer = ShardWriter(tmp / "shards", shard_size=32)
        for i in range(len(source)):
            writer.add(source[i])
        writer.close({"source": "bench_eval"})
        save_checkpoint(model, tmp / "ckpt")
        model = model.to(device).eval()
        dataset = ShardDataset(tmp / "shards", cache_shards=8)
        batches = {b: list(iterate_batches(dataset, episode_batches(dataset, b))) for b in args.batch_sizes}

        print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
              f"samples={args.samples} config=default (d_model={config.d_model}, image {config.image_size}px, "
              f"traj_len={config.traj_len}, diffusion_steps={config.diffusion_steps})")
        print(f"{'what':<44}{'batch':>6}{'seconds':>10}{'samples/s':>12}")
        for b in args.batch_sizes:
            for label, conditions in (
                ("replay, 5 conditions (2 passes + adapter)", None),
                ("replay, Sigma only (1 pass)", ("sigma",)),
            ):
                cfg = ReplayConfig(
                    batch_size=b, device=str(device), **({} if conditions is None else {"conditions": conditions})
                )
                seconds = best_of(lambda: replay(model, batches[b], cfg), args.repeats)
                print(f"{label:<44}{b:>6}{seconds:>10.3f}{args.samples / seconds:>12.1f}")
        b = max(args.batch_sizes)
        cfg = ReplayConfig(batch_size=b, device=str(device))

        def whole():
            run_replay(tmp / "shards", tmp / "ckpt", tmp / "out", config=cfg, n_boot=2000)

        seconds = best_of(whole, args.repeats)
        print(
            f"{'run_replay: load + replay + report + plots':<44}{b:>6}{seconds:>10.3f}{args.samples / seconds:>12.1f}"
        )


if __name__ == "__main__":
    main()
