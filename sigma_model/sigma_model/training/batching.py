# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Batches for training: collation, a deterministic data order, model inputs, synthetic windows.

A sample (one window of the sigma_model.data shards) is a dict with
    vision_inputs uint8 [3,H,W] (or [T,3,H,W]: the window's frames, the first one is used),
    robot_state [S] (or [T,S]: first row), gt_action_vector [A], gt_action_chunk [T,A],
    gt_action_trajectory [T,A], text (str), and optionally base_action_vector / base_action_chunk /
    base_action_trajectory (baseline policy actions for TRAF), avg_action_l2, max_action_l2, and
    prev_vision_inputs / prev_robot_state (the observation of the window before it in the same
    episode; when present the trainer reads m_prev from it, see trainer.py).
A batch is the same with a leading batch axis and `text` a list of strings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..configuration_sigma import SigmaConfig
from ..outputs import SigmaObservation

REQUIRED_KEYS = ("vision_inputs", "robot_state", "gt_action_vector", "gt_action_chunk", "gt_action_trajectory", "text")
BASELINE_KEYS = ("base_action_vector", "base_action_chunk", "base_action_trajectory")


def collate_samples(samples: Sequence[dict]) -> dict:
    """Stack per-sample dicts into a batch (tensors stacked, strings listed, numbers to tensors).

    A key must be present in every sample or in none (a partially missing baseline is an error).
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    keys = set(samples[0])
    for i, s in enumerate(samples[1:], 1):
        if set(s) != keys:
            raise ValueError(
                f"sample {i} has keys {sorted(set(s) ^ keys)} that sample 0 does not share (or vice versa)"
            )
    batch: dict = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        first = values[0]
        if isinstance(first, torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(first, str):
            batch[key] = list(values)
        elif isinstance(first, (int, float)) and not isinstance(first, bool):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = list(values)
    return batch


def epoch_order(num_samples: int, epoch: int, seed: int, shuffle: bool = True) -> list[int]:
    """Return the sample order of one epoch: a permutation that depends only on (seed, epoch)."""
    if not shuffle:
        return list(range(num_samples))
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(num_samples, generator=g).tolist()


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Return the augmentation seed of item `index` in `epoch` of a run seeded `seed`.

    It depends on nothing else, so an item is augmented the same in any loader worker and after a resume.
    """
    return ((int(seed) * 1_000_003 + int(epoch)) * 4_294_967_311 + int(index)) % (2**63 - 1)


def load_item(dataset, index: int, seed: int) -> dict:
    """Return item `index` of `dataset`, augmented from `seed` if the dataset augments (has ``sample(index, seed)``)."""
    sample = getattr(dataset, "sample", None)
    return sample(index, seed) if sample is not None else dataset[index]


def batches_per_epoch(num_samples: int, batch_size: int, drop_last: bool) -> int:
    return num_samples // batch_size if drop_last else math.ceil(num_samples / batch_size)


@dataclass
class DataPosition:
    """Where the data stream stands: epoch and the next batch index within it."""

    epoch: int = 0
    batch_index: int = 0


class _SeededItems(torch.utils.data.Dataset):
    """Map-style view of a dataset keyed by (index, augmentation seed), for DataLoader workers."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, key: tuple[int, int]) -> dict:
        return load_item(self.dataset, *key)


class BatchStream:
    """Endless, resumable stream of collated batches from a map-style dataset (len + getitem).

    The order is epoch_order(seed, epoch) and each item's augmentation seed is sample_seed(seed, epoch, index);
    `position` says which batch comes next, so a resumed run that restores the position sees exactly the batches an
    uninterrupted run would. With `num_workers` > 0, worker processes load and augment the next batches while the
    model trains (the same batches as in-process loading); setting `position` (a resume or a rewind) restarts them
    there.
    """

    def __init__(self, dataset, batch_size: int, seed: int, shuffle: bool = True, drop_last: bool = True,
                 position: DataPosition | None = None, num_workers: int = 0, pin_memory: bool = False) -> None:
        n = len(dataset)
        if n == 0:
            raise ValueError("the training dataset is empty")
        if drop_last and n < batch_size:
            raise ValueError(
                f"the dataset has {n} samples, fewer than one batch of {batch_size} "
                "(lower batch_size or set drop_last=False)"
            )
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.position = position or DataPosition()
        self.per_epoch = batches_per_epoch(n, batch_size, drop_last)
        self._batches = None  # iterator of the batches from `_batches_at` on
        self._batches_at: tuple[int, int] | None = None

    def batch_keys(self, position: DataPosition):
        """Yield the (index, augmentation seed) keys of every batch from `position` on, forever."""
        epoch, b = position.epoch, position.batch_index
        while True:
            if b >= self.per_epoch:
                epoch, b = epoch + 1, 0
            order = epoch_order(len(self.dataset), epoch, self.seed, self.shuffle)
            for b in range(b, self.per_epoch):
                idx = order[b * self.batch_size:(b + 1) * self.batch_size]
                yield [(i, sample_seed(self.seed, epoch, i)) for i in idx]
            b = self.per_epoch

    def _start(self):
        keys = self.batch_keys(self.position)
        if self.num_workers == 0:
            return (collate_samples([load_item(self.dataset, *k) for k in batch]) for batch in keys)
        # its own generator: starting workers must not draw from the global RNG (the model's dropout)
        loader = torch.utils.data.DataLoader(_SeededItems(self.dataset), batch_sampler=keys,
                                             num_workers=self.num_workers, collate_fn=collate_samples,
                                             pin_memory=self.pin_memory,
                                             generator=torch.Generator().manual_seed(self.seed))
        return iter(loader)

    def next_batch(self) -> dict:
        pos = self.position
        if self._batches is None or self._batches_at != (pos.epoch, pos.batch_index):
            self.close()
            self._batches = self._start()
        try:
            batch = next(self._batches)
        except BaseException:  # a failed or interrupted load: the next call starts again at this position
            self.close()
            raise
        if pos.batch_index >= self.per_epoch:
            pos.epoch, pos.batch_index = pos.epoch + 1, 0
        pos.batch_index += 1
        self._batches_at = (pos.epoch, pos.batch_index)
        return batch

    def close(self) -> None:
        """Stop the loader workers (the next batch starts them again)."""
        self._batches, self._batches_at = None, None


# ------------------------------------------------------------ model inputs
def _first_frame(x: torch.Tensor, per_sample_dims: int) -> torch.Tensor:
    return x[:, 0] if x.dim() == per_sample_dims + 2 else x


def prepare_image(images: torch.Tensor, config: SigmaConfig) -> torch.Tensor:
    """[B,3,H,W] (or [B,T,3,H,W]: first frame) uint8/float -> the model's image size, same dtype kind."""
    images = _first_frame(images, 3)
    if images.dim() != 4 or images.shape[1] != config.image_channels:
        raise ValueError(f"vision_inputs must be [B,{config.image_channels},H,W], got {list(images.shape)}")
    size = config.image_size
    if images.shape[-2:] == (size, size):
        return images
    was_uint8 = images.dtype == torch.uint8
    x = images.float() / 255.0 if was_uint8 else images.float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0.0, 1.0)
    return x


def observation_from_batch(
    batch: dict, config: SigmaConfig, device: torch.device, prefix: str = ""
) -> SigmaObservation:
    image = prepare_image(batch[prefix + "vision_inputs"], config).to(device)
    state = _first_frame(batch[prefix + "robot_state"], 1).to(device, torch.float32)
    if state.dim() != 2 or state.shape[1] != config.state_dim:
        raise ValueError(f"{prefix}robot_state must be [B,{config.state_dim}], got {list(state.shape)}")
    audio = batch.get(prefix + "audio")
    return SigmaObservation(
        image=image, robot_state=state, audio=None if audio is None else audio.to(device, torch.float32)
    )


def targets_from_batch(batch: dict, config: SigmaConfig, device: torch.device) -> dict[str, torch.Tensor]:
    c = config
    want = {
        "vec": ("gt_action_vector", (c.action_dim,)),
        "chunk": ("gt_action_chunk", (c.chunk_len, c.action_dim)),
        "traj": ("gt_action_trajectory", (c.traj_len, c.action_dim)),
    }
    out = {}
    for level, (key, shape) in want.items():
        t = batch[key]
        if tuple(t.shape[1:]) != shape:
            raise ValueError(
                f"{key} has per-sample shape {list(t.shape[1:])}, the model predicts {list(shape)} "
                f"(match SigmaConfig chunk_len/traj_len/action_dim to the shards' horizon)"
            )
        out[level] = t.to(device, torch.float32)
    return out


def check_batch(batch: dict) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in batch]
    if missing:
        raise ValueError(f"training batch is missing keys {missing} (has {sorted(batch)})")
    b = len(batch["text"])
    for key in REQUIRED_KEYS[:-1] + tuple(k for k in BASELINE_KEYS if k in batch):
        value = batch[key]
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"batch[{key!r}] must be a tensor, got {type(value).__name__}")
        if value.shape[0] != b:
            raise ValueError(f"batch[{key!r}] has batch size {value.shape[0]}, text has {b}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"batch[{key!r}] contains NaN or Inf")


# -------------------------------------------------------------- synthetic
class SyntheticWindows:
    """Deterministic stand-in for shard samples (same keys), learnable from image, state and text.

    Sample i: state s ~ N(0, 0.5^2); instruction "move left"/"move right" picks a direction d; the
    image brightness encodes s[0]; the chunk/trajectory move linearly from s towards s + d, the
    vector is the first chunk step. With `with_baseline` a fixed, imperfect baseline is included.
    """

    INSTRUCTIONS = ("move the arm left", "move the arm right")

    def __init__(self, config: SigmaConfig, num_samples: int, seed: int = 0, with_baseline: bool = False,
                 with_previous: bool = False) -> None:
        if num_samples <= 0:
            raise ValueError("num_samples must be positive")
        self.config, self.num_samples, self.seed = config, num_samples, seed
        self.with_baseline, self.with_previous = with_baseline, with_previous

    def __len__(self) -> int:
        return self.num_samples

    def _observation(self, g: torch.Generator, state: torch.Tensor) -> torch.Tensor:
        c = self.config
        level = (torch.sigmoid(state[0]) * 200 + 20).round()
        noise = torch.randint(0, 16, (c.image_channels, c.image_size, c.image_size), generator=g)
        return (level + noise).clamp(0, 255).to(torch.uint8)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        c = self.config
        g = torch.Generator().manual_seed(self.seed * 7919 + index)
        state = 0.5 * torch.randn(c.state_dim, generator=g)
        side = index % 2
        direction = torch.full((c.action_dim,), 0.3 if side else -0.3)
        base = state[: c.action_dim] if c.action_dim <= c.state_dim else torch.zeros(c.action_dim)

        def path(length: int) -> torch.Tensor:
            frac = torch.arange(1, length + 1, dtype=torch.float32).unsqueeze(1) / length
            return base + frac * direction

        chunk, traj = path(c.chunk_len), path(c.traj_len)
        sample = {
            "vision_inputs": self._observation(g, state),
            "robot_state": state,
            "gt_action_vector": chunk[0].clone(),
            "gt_action_chunk": chunk,
            "gt_action_trajectory": traj,
            "text": self.INSTRUCTIONS[side],
            "avg_action_l2": float(chunk.norm(dim=-1).mean()),
            "max_action_l2": float(chunk.norm(dim=-1).max()),
        }
        if self.with_baseline:
            sample["base_action_vector"] = sample["gt_action_vector"] * 0.8
            sample["base_action_chunk"] = chunk * 0.8
            sample["base_action_trajectory"] = traj * 0.8
        if self.with_previous:
            prev_state = state - 0.05 * direction[: c.state_dim] if c.action_dim >= c.state_dim else state
            sample["prev_vision_inputs"] = self._observation(g, prev_state)
            sample["prev_robot_state"] = prev_state
        return sample


# ------------------------------------------------------ consecutive windows
class PreviousWindowDataset:
    """Adds `prev_vision_inputs` / `prev_robot_state` to every sample.

    The observation of the preceding kept window of the same episode (largest smaller frame_index), or the sample's own
    observation for an episode's first window. Needs `episode_index` and `frame_index` per sample (the sigma_model.data
    shards carry them). `has_previous` says which case applied.
    """

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        episodes, frames = self._index_columns(dataset)
        order = sorted(range(len(episodes)), key=lambda i: (episodes[i], frames[i], i))
        self.previous: list[int | None] = [None] * len(episodes)
        for a, b in zip(order, order[1:]):
            if episodes[a] == episodes[b] and frames[a] < frames[b]:
                self.previous[b] = a

    @staticmethod
    def supports(dataset) -> bool:
        if len(dataset) == 0:
            return False
        first = dataset[0]
        return "episode_index" in first and "frame_index" in first

    @staticmethod
    def _index_columns(dataset) -> tuple[list[int], list[int]]:
        paths = getattr(dataset, "paths", None)
        if paths is not None and hasattr(dataset, "load_shard"):  # ShardDataset: read whole columns per shard
            episodes, frames = [], []
            for s in range(len(paths)):
                tensors, _ = dataset.load_shard(s)
                episodes += tensors["episode_index"].reshape(-1).tolist()
                frames += tensors["frame_index"].reshape(-1).tolist()
            if len(episodes) == len(dataset):
                return episodes, frames
        items = [dataset[i] for i in range(len(dataset))]
        return [int(x["episode_index"]) for x in items], [int(x["frame_index"]) for x in items]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.dataset[index])
        prev = self.previous[index]
        source = sample if prev is None else self.dataset[prev]
        sample["prev_vision_inputs"] = source["vision_inputs"]
        sample["prev_robot_state"] = source["robot_state"]
        sample["has_previous"] = torch.tensor(prev is not None)
        return sample
