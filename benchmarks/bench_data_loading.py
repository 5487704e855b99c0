# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Training data loading: samples/s of the shipped recipe's batch stream for each number of loader workers.

    python benchmarks/bench_data_loading.py --dataset=WORK [--workers=[0,1,2]] [--batches=40] [--batch_size=32]
                                            [--rounds=3] [--json=true]

WORK is a `sigma-make-default --stages=[record,preprocess] --work_dir=WORK` directory. The windows are the train
stage's own (`sigma_sim.default_model.training_windows`: every shard read into memory before a worker starts, so the
workers share it; image shift, state noise, language augmentation, the cube-pose target), read by the trainer's
`BatchStream` (per-item augmentation seeds, so every worker count yields the same batches). Each round measures every
worker count in turn, in this process, after one untimed batch (worker start-up); the figures are the median
samples/s over rounds and the median ratio against in-process loading (0 workers) of the same round. Training itself
runs at `samples_per_s` of its metrics: the loader keeps up with it when its rate is well above that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import os
from pathlib import Path
import statistics
import time

import torch

from sigma_model.cli import parse_cli
from sigma_model.training.batching import BatchStream
from sigma_sim.default_model import MakeDefaultConfig, model_config, training_config, training_windows

PROG = "python benchmarks/bench_data_loading.py"


@dataclass
class Options:
    dataset: str | None = None  # sigma-make-default --work_dir with demos/ and shards/; required
    workers: list[int] = field(default_factory=lambda: [0, 1, 2])  # loader worker counts to compare (0 is added)
    batches: int = 40  # timed batches per worker count and round
    batch_size: int = 32
    rounds: int = 3
    seed: int = 0  # the run seed the stream derives the data order and augmentation from
    threads: int = 1  # torch threads of this process (the shipped recipe trains on 1: sigma-make-default --threads)
    json: bool = False  # print one JSON line instead of text

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ValueError("--dataset is required (a sigma-make-default --work_dir with demos/ and shards/)")
        if min(self.batches, self.batch_size, self.rounds) <= 0 or min(self.workers, default=0) < 0:
            raise ValueError("--batches, --batch_size and --rounds must be positive, --workers >= 0")
        self.workers = sorted({0, *self.workers})


def samples_per_s(dataset, workers: int, args: Options) -> float:
    stream = BatchStream(dataset, args.batch_size, args.seed, num_workers=workers)
    try:
        stream.next_batch()  # start-up: workers fork and fill their prefetch queue
        t0 = time.perf_counter()
        for _ in range(args.batches):
            stream.next_batch()
        return args.batches * args.batch_size / (time.perf_counter() - t0)
    finally:
        stream.close()


def main(argv: list[str] | None = None) -> dict:
    args = parse_cli(Options, argv, PROG, description=__doc__)
    torch.set_num_threads(args.threads)
    work = Path(args.dataset)
    if not (work / "shards").is_dir() or not (work / "demos").is_dir():
        raise SystemExit(f"{PROG}: {work} has no demos/ and shards/ (run sigma-make-default "
                         f"--stages=[record,preprocess] --work_dir={work})")
    recipe = MakeDefaultConfig(work_dir=str(work), language_augmentation=True, seed=args.seed)
    dataset = training_windows(recipe, work, training_config(recipe, work), model_config(recipe))
    rates: dict[int, list[float]] = {w: [] for w in args.workers}
    for _ in range(args.rounds):
        for w in args.workers:
            rates[w].append(samples_per_s(dataset, w, args))
    result = {
        "windows": len(dataset), "batch_size": args.batch_size, "batches": args.batches, "rounds": args.rounds,
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "samples_per_s": {w: statistics.median(r) for w, r in rates.items()},
        "ratio_to_in_process": {w: statistics.median(a / b for a, b in zip(r, rates[0])) for w, r in rates.items()},
    }
    if args.json:
        print(json.dumps(result))
        return result
    print(f"training windows of {work} ({result['windows']} windows), batch {args.batch_size}, {args.batches} batches "
          f"x {args.rounds} rounds, {result['cpus']} CPUs")
    for w in args.workers:
        print(f"  {w} loader workers: {result['samples_per_s'][w]:8.1f} samples/s  "
              f"x{result['ratio_to_in_process'][w]:.2f} in-process loading")
    return result


if __name__ == "__main__":
    main()
