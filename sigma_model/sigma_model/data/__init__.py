# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Sigma data pipeline (paper section 4.1): LeRobot datasets -> sliding windows -> shards.

- :mod:`.lerobot_io` - creating and finishing LeRobot datasets with LeRobot's ``LeRobotDataset``,
  ``normalization_stats`` from their statistics (LeRobot is imported only when used).
- :mod:`.env_file` - ``load_sigma_env`` (``sigma.env`` settings + HF token, never printed).
- :mod:`.lerobot_source` - ``load_lerobot_dataset`` (``LeRobotDataset``, hub id or local root),
  ``prefetch_hf_dataset``, ``safe_iter_dataset`` (retries with exponential backoff on HTTP 429 / transient errors).
- :mod:`.windows` - episode grouping, ``build_windows``, ``pick_*_from_example``,
  ``compute_action_stats``, sample dicts.
- :mod:`.shards` - ``ShardWriter`` (atomic, resumable), ``ShardDataset``, ``collate_sigma_samples``.
- :mod:`.preprocess` - the ``sigma-preprocess`` command.
"""

from .env_file import SigmaEnv, load_sigma_env
from .lerobot_io import create_lerobot_dataset, finalize_lerobot_dataset, normalization_stats
from .lerobot_source import (
    DatasetUnavailableError,
    FrameSource,
    RetryPolicy,
    load_lerobot_dataset,
    prefetch_hf_dataset,
    safe_iter_dataset,
)
from .shards import ShardCorruptError, ShardDataset, ShardWriter, collate_sigma_samples
from .windows import (
    WindowConfig,
    WindowStats,
    build_windows,
    compute_action_stats,
    iter_window_samples,
    pick_action_from_example,
    pick_rgb_from_example,
    pick_state_from_example,
    pick_text_from_example,
)

__all__ = [
    "SigmaEnv", "load_sigma_env",
    "create_lerobot_dataset", "finalize_lerobot_dataset", "normalization_stats",
    "DatasetUnavailableError", "FrameSource", "RetryPolicy", "load_lerobot_dataset", "prefetch_hf_dataset",
    "safe_iter_dataset",
    "ShardCorruptError", "ShardDataset", "ShardWriter", "collate_sigma_samples",
    "WindowConfig", "WindowStats", "build_windows", "compute_action_stats", "iter_window_samples",
    "pick_action_from_example", "pick_rgb_from_example", "pick_state_from_example", "pick_text_from_example",
]
