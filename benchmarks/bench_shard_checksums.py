# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Benchmark: the cost of verifying shard checksums (SHA-256 from meta.json) when opening a ShardDataset.

Writes a shard set shaped like the default model's dataset (40082 windows of 96x96 images, horizon 16,
1000 per shard: about 1.1 GB) and times opening it without verification, verified for the first time
in this process, and verified again (each file is hashed once per process).

    python benchmarks/bench_shard_checksums.py [--samples=40082 --shard_size=1000 --image=96]
"""

from __future__ import annotations

from dataclasses import dataclass
import tempfile
import time
from pathlib import Path

import torch

from sigma_model.data.shards import ShardDataset, ShardWriter
from sigma_model.cli import parse_cli


def _opened_in(directory: Path, verify: bool) -> float:
    t0 = time.perf_counter()
    ShardDataset(directory, verify_checksums=verify)
    return time.perf_counter() - t0


PROG = "python benchmarks/bench_shard_checksums.py"


@dataclass
class Options:
    samples: int = 40082
    shard_size: int = 1000
    image: int = 96  # square image size
    horizon: int = 16


def main(argv: list[str] | None = None) -> None:
    args = parse_cli(Options, argv, PROG, description=__doc__)
    g = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        writer = ShardWriter(directory, args.shard_size)
        for i in range(args.samples):
            writer.add(
                {
                    "vision_inputs": torch.randint(0, 256, (3, args.image, args.image), dtype=torch.uint8, generator=g),
                    "robot_state": torch.randn(6, generator=g),
                    "gt_action_vector": torch.randn(6, generator=g),
                    "gt_action_chunk": torch.randn(args.horizon, 6, generator=g),
                    "gt_action_trajectory": torch.randn(args.horizon, 6, generator=g),
                    "avg_action_l2": torch.tensor(0.1),
                    "max_action_l2": torch.tensor(0.2),
                    "episode_index": torch.tensor(i // 200),
                    "frame_index": torch.tensor(i % 200),
                    "window_index": torch.tensor(i),
                    "text": "pick the cube and place it on the left",
                }
            )
        meta = writer.close({})
        size_mb = sum(p.stat().st_size for p in writer.shard_paths) / 2**20
        plain = _opened_in(directory, verify=False)
        first = _opened_in(directory, verify=True)
        again = _opened_in(directory, verify=True)
    print(f"{meta['num_samples']} samples in {meta['num_shards']} shards, {size_mb:.0f} MiB (page cache warm)")
    print(f"open without verification: {plain * 1e3:.1f} ms")
    print(f"open, verified (first time in this process): {first * 1e3:.0f} ms ({size_mb / first:.0f} MiB/s)")
    print(f"open, verified again (hashed once per process): {again * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
