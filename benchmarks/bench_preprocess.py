# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Benchmark: LeRobot dataset -> Sigma shards (sigma-preprocess) and shard loading, on CPU.

Writes a synthetic LeRobot v3.0 dataset (PNG images, LeRobotDataset), runs the real preprocessing
pipeline (frames read by LeRobotDataset) with the default window settings (horizon 16, stride 1,
96x96 images) and reads the shards back through ShardDataset + DataLoader.  Prints frames/s,
windows/s and samples/s.

    python benchmarks/bench_preprocess.py [--episodes=10 --frames=200 --image=120x160]
"""

from __future__ import annotations

from dataclasses import dataclass
import re
import tempfile
import time
from pathlib import Path

import torch

from sigma_model.data.preprocess import preprocess_dataset
from sigma_model.data.shards import ShardDataset, collate_sigma_samples
from sigma_model.data.synthetic import write_synthetic_dataset
from sigma_model.data.windows import WindowConfig
from sigma_model.cli import parse_cli


PROG = "python benchmarks/bench_preprocess.py"


@dataclass
class Options:
    episodes: int = 10
    frames: int = 200  # frames per episode
    image: str = "120x160"  # dataset image HxW
    shard_size: int = 500
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[1-9][0-9]*x[1-9][0-9]*", self.image):
            raise ValueError(f"--image must be HxW, e.g. 120x160, got {self.image!r}")


def main(argv: list[str] | None = None) -> None:
    args = parse_cli(Options, argv, PROG, description=__doc__)
    h, w = (int(x) for x in args.image.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        eps = [(args.frames // 4, args.frames - args.frames // 4)] * args.episodes
        root = write_synthetic_dataset(tmp / "ds", eps, image_hw=(h, w))
        t_write = time.perf_counter() - t0
        n_frames = args.episodes * args.frames
        t0 = time.perf_counter()
        meta = preprocess_dataset(root, tmp / "shards", WindowConfig(), shard_size=args.shard_size, progress=False)
        t_pre = time.perf_counter() - t0
        ds = ShardDataset(tmp / "shards")
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=False,
                                             collate_fn=collate_sigma_samples)
        t0 = time.perf_counter()
        n = sum(len(b["text"]) for b in loader)
        t_load = time.perf_counter() - t0
    size_mb = sum(s["num_samples"] for s in meta["shards"])
    print(f"dataset: {args.episodes} episodes x {args.frames} frames, images {h}x{w} "
          f"(write {n_frames / t_write:.0f} frames/s)")
    print(f"preprocess: {n_frames / t_pre:.0f} frames/s, {meta['windows']['windows_total'] / t_pre:.0f} windows/s "
          f"({meta['num_samples']} kept of {meta['windows']['windows_total']}, {meta['num_shards']} shards, "
          f"{t_pre:.2f}s, torch threads {torch.get_num_threads()})")
    print(f"load: {n / t_load:.0f} samples/s (batch {args.batch_size}, {size_mb} samples)")


if __name__ == "__main__":
    main()
