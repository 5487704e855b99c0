# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Small synthetic LeRobot datasets with a known window structure (tests, benchmarks, smoke runs).

Each episode is a *static* part (``static`` frames whose action is exactly zero) followed by a
*moving* part (``moving`` frames whose action has L2 norm exactly ``action_norm`` up to float32
rounding).  Images encode the episode and frame index in their pixels so tests can check which frame
a window picked: ``img[0, 0] = (frame_index % 256, episode_index % 256, 255)`` (HWC, RGB) and the rest
is a deterministic pattern.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .lerobot_io import create_lerobot_dataset, finalize_lerobot_dataset, quiet_progress

__all__ = ["synthetic_features", "synthetic_action", "synthetic_image", "write_synthetic_dataset",
           "expected_window_counts"]

TASKS = ("pick up the red cube", "place the cube in the bowl", "push the block to the left")


def synthetic_features(image_hw: tuple[int, int] = (24, 32), dim: int = 6,
                       image_key: str = "observation.images.front") -> dict:
    names = [f"joint_{i}" for i in range(dim)]
    return {
        image_key: {"dtype": "image", "shape": (image_hw[0], image_hw[1], 3),
                    "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (dim,), "names": names},
        "action": {"dtype": "float32", "shape": (dim,), "names": names},
    }


def synthetic_action(t_moving: int | None, dim: int = 6, action_norm: float = 1.0) -> np.ndarray:
    """Zero for the static part (``t_moving is None``), else a unit-norm rotating vector * action_norm."""
    a = np.zeros(dim, dtype=np.float32)
    if t_moving is not None:
        th = 0.37 * t_moving
        a[0] = action_norm * math.cos(th)
        a[1] = action_norm * math.sin(th)
    return a


def synthetic_image(episode: int, frame: int, hw: tuple[int, int] = (24, 32)) -> np.ndarray:
    h, w = hw
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[..., 0] = (xx * 7 + frame * 3) % 256
    img[..., 1] = (yy * 11 + episode * 29) % 256
    img[..., 2] = ((xx + yy) * 5 + frame) % 256
    img[0, 0] = (frame % 256, episode % 256, 255)
    return img


def write_synthetic_dataset(root: str | os.PathLike, episodes: Sequence[tuple[int, int]], *,
                            fps: int = 10, image_hw: tuple[int, int] = (24, 32), dim: int = 6,
                            action_norm: float = 1.0, repo_id: str = "local/sigma_synthetic",
                            image_key: str = "observation.images.front", overwrite: bool = False) -> Path:
    """Write episodes given as ``[(static_frames, moving_frames), ...]`` with ``LeRobotDataset``.

    Returns the root.
    """
    ds = create_lerobot_dataset(root, repo_id, fps, synthetic_features(image_hw, dim, image_key),
                                robot_type="so101_follower", overwrite=overwrite)
    try:
        with quiet_progress():
            for ep, (n_static, n_moving) in enumerate(episodes):
                state = np.zeros(dim, dtype=np.float32)
                for i in range(n_static + n_moving):
                    act = synthetic_action(None if i < n_static else i - n_static, dim, action_norm)
                    ds.add_frame({image_key: synthetic_image(ep, i, image_hw), "observation.state": state.copy(),
                                  "action": act, "task": TASKS[ep % len(TASKS)]})
                    state = (state + 0.1 * act).astype(np.float32)
                ds.save_episode()
    finally:
        finalize_lerobot_dataset(ds)
    return Path(root)


def expected_window_counts(episodes: Sequence[tuple[int, int]], horizon_T: int, stride: int,
                           min_action_norm: float, action_norm: float = 1.0) -> dict[str, int]:
    """Brute-force the window counts the pipeline must produce (absolute-norm mode)."""
    total = kept = too_short = 0
    for n_static, n_moving in episodes:
        L = n_static + n_moving
        if L < horizon_T:
            too_short += 1
            continue
        for s in range(0, L - horizon_T + 1, stride):
            total += 1
            k = sum(1 for t in range(s, s + horizon_T) if t >= n_static)
            if k * action_norm / horizon_T >= min_action_norm:
                kept += 1
    return {"windows_total": total, "windows_kept": kept, "windows_dropped_static": total - kept,
            "episodes_too_short": too_short}
