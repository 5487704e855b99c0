# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Benchmark: camera frames stored as PNG images or as AV1 video in a LeRobot dataset, on CPU.

Simulates a few scripted-expert episodes of the SO-101 task (96x96 camera, as ``sigma-sim-record``
records them), then writes the same frames with ``LeRobotDataset`` twice (``dtype`` ``image``: PNG
inside the parquet files; ``video``: AV1 mp4, LeRobot's default) and reads them back with
``LeRobotDataset``: in order (as ``sigma-preprocess`` does) and at random indices (as a training
data loader does, every frame many times), alternating between the two. Prints frames/s (wall clock
and per CPU-second of all threads), disk size and video / image ratios.

    python benchmarks/bench_lerobot_storage.py [--episodes=4 --image_size=96]
"""

from __future__ import annotations

from dataclasses import dataclass
import random
import tempfile
import time
from pathlib import Path

import torch

import sigma_sim  # noqa: F401  (headless GL before mujoco)
from sigma_model.data.lerobot_io import create_lerobot_dataset, finalize_lerobot_dataset, quiet_progress
from sigma_model.data.lerobot_source import load_lerobot_dataset
from sigma_sim.record import ROBOT_TYPE, dataset_features, episode_frames, instruction_for_episode
from sigma_sim.so101_env import SimConfig, SO101PickPlaceEnv
from sigma_model.cli import parse_cli


def simulate(episodes: int, size: int) -> list[list[tuple[dict, str]]]:
    env = SO101PickPlaceEnv(SimConfig(image_width=size, image_height=size))
    try:
        return [list(episode_frames(env, seed, instruction_for_episode(seed, seed))) for seed in range(episodes)]
    finally:
        env.close()


def timed(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of ``fn()``; CPU time counts every thread of this process (decoders too)."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def write(root: Path, episodes, size: int, video: bool) -> None:
    ds = create_lerobot_dataset(root, "bench/storage", 30, dataset_features(size, size), ROBOT_TYPE, video=video)
    with quiet_progress():
        for frames in episodes:
            for frame, task in frames:
                ds.add_frame({**frame, "task": task})
            ds.save_episode()
    finalize_lerobot_dataset(ds)


PROG = "python benchmarks/bench_lerobot_storage.py"


@dataclass
class Options:
    episodes: int = 4
    image_size: int = 96
    random_reads: int = 500
    rounds: int = 3  # reads alternate between the two; best round counts


def main(argv: list[str] | None = None) -> None:
    args = parse_cli(Options, argv, PROG, description=__doc__)
    torch.set_num_threads(1)
    episodes = simulate(args.episodes, args.image_size)
    n = sum(len(e) for e in episodes)
    print(f"{args.episodes} episodes, {n} frames, {args.image_size}x{args.image_size} camera; "
          "frames/s as wall clock (CPU time of all threads)")
    kinds = {"image": False, "video": True}
    best: dict[tuple[str, str], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {k: Path(tmp) / k for k in kinds}
        for k, video in kinds.items():
            best[k, "record"] = timed(lambda: write(roots[k], episodes, args.image_size, video))
        sources = {k: load_lerobot_dataset(roots[k]) for k in kinds}
        indices = random.Random(0).choices(range(n), k=args.random_reads)
        for _ in range(args.rounds):
            for k, source in sources.items():
                for what, fn in (("in order", lambda: sum(1 for _ in source)),
                                 ("at random", lambda: [source.dataset[i] for i in indices])):
                    t = timed(fn)
                    best[k, what] = min(best.get((k, what), t), t)
        size = {k: sum(f.stat().st_size for f in roots[k].rglob("*") if f.is_file()) / 2**20 for k in kinds}
    count = {"record": n, "in order": n, "at random": args.random_reads}

    def rate(k, what):
        wall, cpu = best[k, what]
        return count[what] / wall, count[what] / cpu

    for k in kinds:
        print(f"{k}: {size[k]:.2f} MiB; " + ", ".join(
            f"{what} {rate(k, what)[0]:.0f} ({rate(k, what)[1]:.0f}) frames/s" for what in count))
    print(f"video / image: size {size['video'] / size['image']:.2f}x; " + ", ".join(
        f"{what} {rate('video', what)[0] / rate('image', what)[0]:.2f}x "
        f"({rate('video', what)[1] / rate('image', what)[1]:.2f}x)" for what in count))


if __name__ == "__main__":
    main()
