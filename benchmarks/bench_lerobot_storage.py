"""Benchmark: camera frames stored as PNG images or as AV1 video in a LeRobot dataset, on CPU.

Simulates a few scripted-expert episodes of the SO-101 task (96x96 camera, as ``sigma-sim-record``
records them), then writes the same frames with ``LeRobotDataset`` twice (``dtype`` ``image``: PNG
inside the parquet files; ``video``: AV1 mp4, LeRobot's default) and reads them back with
``LeRobotDataset``: in order (as ``sigma-preprocess`` does) and at random indices (as a training
data loader does, every frame many times). Prints frames/s, disk size and video / image ratios.

    python benchmarks/bench_lerobot_storage.py [--episodes 4 --image-size 96]
"""

from __future__ import annotations

import argparse
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


def simulate(episodes: int, size: int) -> list[list[tuple[dict, str]]]:
    env = SO101PickPlaceEnv(SimConfig(image_width=size, image_height=size))
    try:
        return [list(episode_frames(env, seed, instruction_for_episode(seed, seed))) for seed in range(episodes)]
    finally:
        env.close()


def write(root: Path, episodes, size: int, video: bool) -> float:
    t0 = time.perf_counter()
    ds = create_lerobot_dataset(root, "bench/storage", 30, dataset_features(size, size), ROBOT_TYPE, video=video)
    with quiet_progress():
        for frames in episodes:
            for frame, task in frames:
                ds.add_frame({**frame, "task": task})
            ds.save_episode()
    finalize_lerobot_dataset(ds)
    return time.perf_counter() - t0


def read(root: Path, random_reads: int) -> tuple[float, float]:
    source = load_lerobot_dataset(root)
    t0 = time.perf_counter()
    n = sum(1 for _ in source)
    sequential = n / (time.perf_counter() - t0)
    indices = random.Random(0).choices(range(n), k=random_reads)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    for i in indices:
        source.dataset[i]
    return sequential, random_reads / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--random-reads", type=int, default=500)
    args = ap.parse_args()
    episodes = simulate(args.episodes, args.image_size)
    n = sum(len(e) for e in episodes)
    print(f"{args.episodes} episodes, {n} frames, {args.image_size}x{args.image_size} camera")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, video in (("image", False), ("video", True)):
            root = Path(tmp) / name
            seconds = write(root, episodes, args.image_size, video)
            size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20
            sequential, random_fps = read(root, args.random_reads)
            results[name] = (n / seconds, size, sequential, random_fps)
            print(f"{name:5s}: record {n / seconds:6.0f} frames/s, {size:6.2f} MiB, read in order "
                  f"{sequential:6.0f} frames/s, at random {random_fps:6.0f} frames/s")
    (wi, si, qi, ri), (wv, sv, qv, rv) = results["image"], results["video"]
    print(f"video / image: record {wv / wi:.2f}x, size {sv / si:.2f}x, read in order {qv / qi:.2f}x, "
          f"at random {rv / ri:.2f}x")


if __name__ == "__main__":
    main()
