# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Episode grouping, sliding windows and Sigma training samples (paper section 4.1).

Frames (LeRobot frame dicts) are grouped by ``episode_index`` and sorted by ``frame_index``; each
episode of length L gives windows starting at ``0, stride, 2*stride, ...`` while ``start + T <= L``
(``T = horizon_T``, default 16), i.e. ``floor((L - T) / stride) + 1`` windows (0 when ``L < T``).
``compute_action_stats`` gives the window's average and maximum action L2 norm; windows whose
average is below ``min_action_norm`` are dropped as near-static.

Sample dict of a kept window starting at frame ``s`` (A = action dim, S = state dim)::

    vision_inputs         uint8  [3, H, W]   image at frame s (resized to image_size when set)
    robot_state           float32 [S]        state at frame s
    gt_action_vector      float32 [A]        action at frame s (the next command)
    gt_action_chunk       float32 [C, A]     actions s .. s+C-1 (C = chunk_len, default = T)
    gt_action_trajectory  float32 [T, A]     actions s .. s+T-1 (the whole window)
    avg_action_l2         float32 []         mean_t ||a_t||_2 over the window (see action_norm_mode)
    max_action_l2         float32 []         max_t  ||a_t||_2
    text                  str                task text at frame s
    episode_index, frame_index, window_index   int64 []
    base_action_vector / base_action_chunk / base_action_trajectory   (only with a baseline policy)

``chunk`` is the short-horizon target of the model's action-chunk head (its ``chunk_len``), the
``trajectory`` the full-horizon target of its trajectory head (``traj_len = T``); with the default
config (chunk_len = traj_len = 16 = T) the two tensors hold the same values.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..robot_units import dataset_units

__all__ = [
    "WindowConfig",
    "WindowStats",
    "FrameRecord",
    "IMAGE_KEY_CANDIDATES",
    "STATE_KEY_CANDIDATES",
    "ACTION_KEY_CANDIDATES",
    "TEXT_KEY_CANDIDATES",
    "find_image_key",
    "find_state_key",
    "find_action_key",
    "find_text_key",
    "pick_rgb_from_example",
    "pick_state_from_example",
    "pick_action_from_example",
    "pick_text_from_example",
    "compute_action_stats",
    "build_windows",
    "num_windows",
    "group_episodes",
    "extract_frame",
    "make_window_sample",
    "iter_window_samples",
    "hold_state_baseline",
]

IMAGE_KEY_CANDIDATES = (
    "observation.images.front", "observation.image", "observation.images.top", "observation.images.up",
    "observation.images.main", "observation.images.cam_high", "observation.images.laptop",
    "observation.images.side", "observation.images.wrist", "observation.images.phone",
    "observation.images.rgb", "observation.rgb", "image", "images", "rgb", "observation.images",
)
STATE_KEY_CANDIDATES = (
    "observation.state", "observation.robot_state", "observation.joint_positions", "observation.qpos",
    "robot_state", "state", "observation.environment_state",
)
ACTION_KEY_CANDIDATES = ("action", "actions", "action.joints", "action.joint_positions")
TEXT_KEY_CANDIDATES = (
    "task", "language_instruction", "instruction", "text", "prompt", "observation.language",
    "task_description", "language",
)


# --------------------------------------------------------------------------------------------------
# Config / stats
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WindowConfig:
    horizon_T: int = 16
    stride: int = 1
    chunk_len: int | None = None           # None -> horizon_T
    min_action_norm: float = 1e-3
    action_norm_mode: str = "absolute"     # "absolute": ||a_t||; "delta": ||a_{t+1} - a_t||
    image_size: tuple[int, int] | None = (96, 96)   # (H, W); None keeps the dataset's size
    image_key: str | None = None
    state_key: str | None = None
    action_key: str | None = None
    text_key: str | None = None
    default_text: str = ""
    # unit of the dataset's state and action: radians, or an SO-101's lerobot-record units (degrees |
    # range_m100_100: the arm joints' norm mode; gripper 0..100), converted to radians
    joint_units: str = "radians"

    def __post_init__(self) -> None:
        if self.horizon_T < 1:
            raise ValueError(f"horizon_T must be >= 1, got {self.horizon_T}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.chunk_len is not None and not (1 <= self.chunk_len <= self.horizon_T):
            raise ValueError(f"chunk_len must be in [1, horizon_T={self.horizon_T}], got {self.chunk_len}")
        if self.action_norm_mode not in ("absolute", "delta"):
            raise ValueError(f"action_norm_mode must be 'absolute' or 'delta', got {self.action_norm_mode!r}")
        dataset_units(self.joint_units)  # raises on an unknown unit
        if self.action_norm_mode == "delta" and self.horizon_T < 2:
            raise ValueError("action_norm_mode='delta' needs horizon_T >= 2")
        if not math.isfinite(self.min_action_norm):
            raise ValueError("min_action_norm must be finite")
        if self.image_size is not None:
            h, w = self.image_size
            if h < 1 or w < 1:
                raise ValueError(f"image_size must be positive, got {self.image_size}")
            object.__setattr__(self, "image_size", (int(h), int(w)))

    @property
    def effective_chunk_len(self) -> int:
        return self.horizon_T if self.chunk_len is None else int(self.chunk_len)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_size"] = list(self.image_size) if self.image_size is not None else None
        d["effective_chunk_len"] = self.effective_chunk_len
        return d


@dataclass
class _Running:
    n: int = 0
    total: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, x: float) -> None:
        self.n += 1
        self.total += x
        self.lo = min(self.lo, x)
        self.hi = max(self.hi, x)

    def to_dict(self) -> dict[str, float | None]:
        if self.n == 0:
            return {"mean": None, "min": None, "max": None}
        return {"mean": self.total / self.n, "min": self.lo, "max": self.hi}


@dataclass
class WindowStats:
    frames_seen: int = 0
    episodes_seen: int = 0
    episodes_too_short: int = 0
    episodes_with_kept_windows: int = 0
    windows_total: int = 0
    windows_kept: int = 0
    windows_dropped_static: int = 0
    avg_action_l2_kept: _Running = field(default_factory=_Running)
    max_action_l2_kept: _Running = field(default_factory=_Running)
    avg_action_l2_all: _Running = field(default_factory=_Running)
    per_episode: dict[int, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames_seen": self.frames_seen,
            "episodes_seen": self.episodes_seen,
            "episodes_too_short": self.episodes_too_short,
            "episodes_with_kept_windows": self.episodes_with_kept_windows,
            "windows_total": self.windows_total,
            "windows_kept": self.windows_kept,
            "windows_dropped_static": self.windows_dropped_static,
            "avg_action_l2_kept": self.avg_action_l2_kept.to_dict(),
            "max_action_l2_kept": self.max_action_l2_kept.to_dict(),
            "avg_action_l2_all": self.avg_action_l2_all.to_dict(),
            "per_episode": {str(k): v for k, v in sorted(self.per_episode.items())},
        }


# --------------------------------------------------------------------------------------------------
# pick_* (tolerant to common LeRobot key names)
# --------------------------------------------------------------------------------------------------

def _is_image_value(v: Any) -> bool:
    if isinstance(v, (bytes, bytearray)):
        return True
    if isinstance(v, dict) and ("bytes" in v or "path" in v):
        return True
    if isinstance(v, (torch.Tensor, np.ndarray)):
        return v.ndim == 3 and (v.shape[0] in (1, 3, 4) or v.shape[-1] in (1, 3, 4))
    return type(v).__name__.endswith("Image") or hasattr(v, "convert") and hasattr(v, "size")


def find_image_key(example: Mapping[str, Any], key: str | None = None) -> str:
    if key is not None:
        if key not in example:
            raise KeyError(f"image key {key!r} not in example (keys: {sorted(example)})")
        return key
    for k in IMAGE_KEY_CANDIDATES:
        if k in example and _is_image_value(example[k]):
            return k
    for k in sorted(example):
        if k.startswith("observation.images.") and _is_image_value(example[k]):
            return k
    for k in sorted(example):
        if ("image" in k or "rgb" in k or "camera" in k) and _is_image_value(example[k]):
            return k
    raise KeyError(f"no image found in example (keys: {sorted(example)}); pass image_key=")


def _find_key(example: Mapping[str, Any], key: str | None, candidates: Sequence[str], what: str,
              contains: Sequence[str] = ()) -> str:
    if key is not None:
        if key not in example:
            raise KeyError(f"{what} key {key!r} not in example (keys: {sorted(example)})")
        return key
    for k in candidates:
        if k in example and example[k] is not None:
            return k
    for k in sorted(example):
        if any(c in k for c in contains) and example[k] is not None:
            return k
    raise KeyError(f"no {what} found in example (keys: {sorted(example)}); pass {what}_key=")


def find_state_key(example: Mapping[str, Any], key: str | None = None) -> str:
    return _find_key(example, key, STATE_KEY_CANDIDATES, "state", contains=("state",))


def find_action_key(example: Mapping[str, Any], key: str | None = None) -> str:
    return _find_key(example, key, ACTION_KEY_CANDIDATES, "action", contains=("action",))


def find_text_key(example: Mapping[str, Any], key: str | None = None) -> str | None:
    try:
        return _find_key(example, key, TEXT_KEY_CANDIDATES, "text")
    except KeyError:
        if key is not None:
            raise
        return None


def _to_hwc_uint8(img: Any) -> np.ndarray:
    """Any supported image value -> contiguous HWC uint8 RGB numpy array (no torch ops).

    These tiny per-frame ops are much faster single-threaded in numpy/PIL than with torch intra-op threads.
    """
    if isinstance(img, dict):
        data = img.get("bytes")
        if data is None:
            path = img.get("path")
            if not path:
                raise ValueError("image dict has neither 'bytes' nor 'path'")
            with open(path, "rb") as f:
                data = f.read()
        img = data
    if isinstance(img, (bytes, bytearray)):
        from PIL import Image  # noqa: PLC0415

        with Image.open(io.BytesIO(img)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    if not isinstance(img, (torch.Tensor, np.ndarray)):
        if hasattr(img, "convert"):  # PIL image
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
        raise TypeError(f"unsupported image type {type(img).__name__}")
    prefer_hwc = isinstance(img, np.ndarray)  # numpy/PIL convention is HWC, torch/LeRobot is CHW
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[:, :, None]
        prefer_hwc = True
    if a.ndim != 3:
        raise ValueError(f"image must have 3 dims, got shape {tuple(a.shape)}")
    if not _is_channels_last(tuple(a.shape), prefer_hwc):
        a = a.transpose(1, 2, 0)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            # LeRobot returns float images in [0, 1]
            a = np.clip(np.rint(a.astype(np.float32) * np.float32(255.0)), 0, 255).astype(np.uint8)
        else:
            a = np.clip(a, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def _is_channels_last(shape: tuple[int, ...], prefer_hwc: bool) -> bool:
    first, last = shape[0], shape[-1]
    if first == 3 and last != 3:
        return False
    if last == 3 and first != 3:
        return True
    if first == last == 3:
        return prefer_hwc
    first_c, last_c = first in (1, 4), last in (1, 4)
    if first_c != last_c:
        return last_c
    return prefer_hwc


def _resize_hwc_uint8(a: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or a.shape[:2] == tuple(size):
        return a
    from PIL import Image  # noqa: PLC0415

    h, w = size
    # Pillow's bilinear filter widens its support when downscaling (antialiased); deterministic.
    return np.asarray(Image.fromarray(a).resize((int(w), int(h)), Image.BILINEAR), dtype=np.uint8)


def pick_rgb_from_example(example: Mapping[str, Any], key: str | None = None,
                          size: tuple[int, int] | None = None) -> torch.Tensor:
    """Return the example's RGB image as uint8 ``[3, H, W]`` (optionally resized to ``size=(H, W)``).

    Accepts CHW/HWC tensors or arrays (uint8, or float in [0, 1] as LeRobot returns them), PIL images,
    encoded bytes, or ``{"bytes", "path"}`` dicts (HF ``datasets.Image`` storage).
    """
    hwc = _resize_hwc_uint8(_to_hwc_uint8(example[find_image_key(example, key)]), size)
    return torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1)))


def _to_float_vector(v: Any, what: str) -> torch.Tensor:
    t = v.detach().cpu() if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
    t = t.to(torch.float32).reshape(-1)
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} contains NaN/inf")
    return t


def pick_state_from_example(example: Mapping[str, Any], key: str | None = None) -> torch.Tensor:
    """Robot state (proprioception) as float32 ``[state_dim]``."""
    k = find_state_key(example, key)
    return _to_float_vector(example[k], f"state {k!r}")


def pick_action_from_example(example: Mapping[str, Any], key: str | None = None) -> torch.Tensor:
    """Return the action as float32 ``[action_dim]``."""
    k = find_action_key(example, key)
    return _to_float_vector(example[k], f"action {k!r}")


def pick_text_from_example(example: Mapping[str, Any], key: str | None = None, default: str = "") -> str:
    """Task / instruction text (LeRobot puts it under ``"task"``)."""
    k = find_text_key(example, key)
    if k is None:
        return default
    v = example[k]
    if isinstance(v, (list, tuple)):
        v = v[0] if v else default
    if isinstance(v, bytes):
        v = v.decode("utf-8", errors="replace")
    if isinstance(v, torch.Tensor) or isinstance(v, np.ndarray):
        return default
    return str(v) if v is not None else default


def compute_action_stats(actions: torch.Tensor | np.ndarray, mode: str = "absolute") -> tuple[float, float]:
    """(average, max) L2 norm of the actions of a window ``[T, A]``.

    ``mode="absolute"`` (paper): norms of the action vectors themselves.  ``mode="delta"``: norms of
    the per-step changes ``a_{t+1} - a_t`` (a motion measure for absolute joint-position actions).
    """
    a = torch.as_tensor(actions, dtype=torch.float64)
    if a.ndim == 1:
        a = a.unsqueeze(-1)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"actions must be [T, A] with T >= 1, got {tuple(a.shape)}")
    if mode == "delta":
        if a.shape[0] < 2:
            raise ValueError("mode='delta' needs at least 2 actions")
        a = a[1:] - a[:-1]
    elif mode != "absolute":
        raise ValueError(f"mode must be 'absolute' or 'delta', got {mode!r}")
    n = torch.linalg.vector_norm(a, dim=-1)
    return float(n.mean()), float(n.max())


def num_windows(length: int, horizon_T: int, stride: int = 1) -> int:
    return 0 if length < horizon_T else (length - horizon_T) // stride + 1


def build_windows(length: int, horizon_T: int = 16, stride: int = 1) -> list[tuple[int, int]]:
    """``[(start, end)]`` (end exclusive) of the sliding windows over an episode of ``length`` frames."""
    return [(s, s + horizon_T) for s in range(0, length - horizon_T + 1, stride)] if length >= horizon_T else []


# --------------------------------------------------------------------------------------------------
# Frames -> episodes -> windows
# --------------------------------------------------------------------------------------------------

@dataclass
class FrameRecord:
    """The parts of one frame a window needs (image already converted/resized)."""

    episode_index: int
    frame_index: int
    image: torch.Tensor
    state: torch.Tensor
    action: torch.Tensor
    text: str


def _scalar(v: Any) -> int:
    if isinstance(v, torch.Tensor):
        return int(v.reshape(-1)[0].item())
    if isinstance(v, np.ndarray):
        return int(v.reshape(-1)[0])
    if isinstance(v, (list, tuple)):
        return int(v[0])
    return int(v)


class _Keys:
    def __init__(self, cfg: WindowConfig) -> None:
        self.cfg = cfg
        self.image = self.state = self.action = None
        self.text: str | None = None
        self.resolved = False

    def resolve(self, example: Mapping[str, Any]) -> None:
        self.image = find_image_key(example, self.cfg.image_key)
        self.state = find_state_key(example, self.cfg.state_key)
        self.action = find_action_key(example, self.cfg.action_key)
        self.text = find_text_key(example, self.cfg.text_key)
        self.resolved = True

    def as_dict(self) -> dict[str, str | None]:
        return {"image": self.image, "state": self.state, "action": self.action, "text": self.text}


def extract_frame(example: Mapping[str, Any], keys: _Keys, image_size: tuple[int, int] | None,
                  default_text: str = "") -> FrameRecord:
    if not keys.resolved:
        keys.resolve(example)
    return FrameRecord(
        episode_index=_scalar(example["episode_index"]),
        frame_index=_scalar(example["frame_index"]),
        image=pick_rgb_from_example(example, keys.image, image_size),
        state=pick_state_from_example(example, keys.state),
        action=pick_action_from_example(example, keys.action),
        text=pick_text_from_example(example, keys.text, default_text) if keys.text else default_text,
    )


def group_episodes(records: Iterable[FrameRecord], *, buffer_all: bool = False
                   ) -> Iterator[tuple[int, list[FrameRecord]]]:
    """Group records by ``episode_index`` and sort each group by ``frame_index``.

    Streaming by default (LeRobot stores episodes contiguously): a group is emitted when the episode
    index changes.  If an episode reappears after it was emitted, a ValueError asks for
    ``buffer_all=True`` (collect everything, emit sorted by episode index).
    """
    if buffer_all:
        groups: dict[int, list[FrameRecord]] = {}
        for r in records:
            groups.setdefault(r.episode_index, []).append(r)
        for ep in sorted(groups):
            yield ep, _sorted_episode(ep, groups[ep])
        return
    done: set[int] = set()
    cur: int | None = None
    buf: list[FrameRecord] = []
    for r in records:
        if r.episode_index != cur:
            if cur is not None:
                done.add(cur)
                yield cur, _sorted_episode(cur, buf)
            if r.episode_index in done:
                raise ValueError(f"episode {r.episode_index} is not stored contiguously; "
                                 "use buffer_all=True (--buffer-all-episodes)")
            cur, buf = r.episode_index, []
        buf.append(r)
    if cur is not None:
        yield cur, _sorted_episode(cur, buf)


def _sorted_episode(ep: int, recs: list[FrameRecord]) -> list[FrameRecord]:
    recs = sorted(recs, key=lambda r: r.frame_index)
    idx = [r.frame_index for r in recs]
    if len(set(idx)) != len(idx):
        raise ValueError(f"episode {ep} has duplicate frame_index values")
    return recs


BaselinePolicy = Callable[[Mapping[str, Any]], Any]


def _baseline_outputs(out: Any, chunk_len: int, horizon_T: int, action_dim: int) -> dict[str, torch.Tensor]:
    if isinstance(out, Mapping):
        vec = out.get("action_vector", out.get("base_action_vector"))
        chk = out.get("action_chunk", out.get("base_action_chunk"))
        trj = out.get("action_trajectory", out.get("base_action_trajectory"))
    else:
        vec, chk, trj = out
    res = {
        "base_action_vector": torch.as_tensor(vec, dtype=torch.float32).reshape(action_dim),
        "base_action_chunk": torch.as_tensor(chk, dtype=torch.float32).reshape(chunk_len, action_dim),
        "base_action_trajectory": torch.as_tensor(trj, dtype=torch.float32).reshape(horizon_T, action_dim),
    }
    return {k: v.contiguous() for k, v in res.items()}


def hold_state_baseline(sample: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Return a trivial deterministic baseline: hold the current joint positions (state) for every step.

    Suited to absolute joint-position action spaces (SO-101), where it means "do not move".
    Requires state_dim == action_dim.
    """
    state = sample["robot_state"]
    a = sample["gt_action_vector"].shape[-1]
    if state.shape[-1] != a:
        raise ValueError(f"hold_state baseline needs state_dim == action_dim ({state.shape[-1]} != {a})")
    c = sample["gt_action_chunk"].shape[0]
    t = sample["gt_action_trajectory"].shape[0]
    return {"action_vector": state.clone(), "action_chunk": state.expand(c, a).clone(),
            "action_trajectory": state.expand(t, a).clone()}


def make_window_sample(recs: Sequence[FrameRecord], start: int, cfg: WindowConfig, window_index: int,
                       avg_l2: float, max_l2: float, actions: torch.Tensor,
                       baseline_policy: BaselinePolicy | None = None) -> dict[str, Any]:
    first = recs[start]
    traj = actions[start:start + cfg.horizon_T].contiguous()
    sample: dict[str, Any] = {
        "vision_inputs": first.image.contiguous(),
        "robot_state": first.state.contiguous(),
        "gt_action_vector": traj[0].clone(),
        "gt_action_chunk": traj[: cfg.effective_chunk_len].clone(),
        "gt_action_trajectory": traj.clone(),
        "avg_action_l2": torch.tensor(avg_l2, dtype=torch.float32),
        "max_action_l2": torch.tensor(max_l2, dtype=torch.float32),
        "text": first.text,
        "episode_index": torch.tensor(first.episode_index, dtype=torch.int64),
        "frame_index": torch.tensor(first.frame_index, dtype=torch.int64),
        "window_index": torch.tensor(window_index, dtype=torch.int64),
    }
    if baseline_policy is not None:
        sample.update(_baseline_outputs(baseline_policy(sample), cfg.effective_chunk_len, cfg.horizon_T,
                                        traj.shape[-1]))
    return sample


def iter_window_samples(frames: Iterable[Mapping[str, Any]], cfg: WindowConfig | None = None, *,
                        stats: WindowStats | None = None, baseline_policy: BaselinePolicy | None = None,
                        buffer_all: bool = False, keys_out: dict[str, Any] | None = None,
                        skip: int = 0) -> Iterator[dict[str, Any]]:
    """Frames -> kept window samples, in (episode, start) order.

    ``stats`` (a :class:`WindowStats`) is updated in place; ``keys_out`` receives the resolved
    image/state/action/text keys.  The first ``skip`` kept windows are counted in ``stats`` but not
    materialised (no sample dict, no baseline call) - used when resuming.
    """
    cfg = cfg or WindowConfig()
    stats = stats if stats is not None else WindowStats()
    keys = _Keys(cfg)
    units = dataset_units(cfg.joint_units)

    def records() -> Iterator[FrameRecord]:
        for ex in frames:
            stats.frames_seen += 1
            rec = extract_frame(ex, keys, cfg.image_size, cfg.default_text)
            if units is not None:
                rec.state = torch.from_numpy(units.array_to_radians(rec.state)).float()
                rec.action = torch.from_numpy(units.array_to_radians(rec.action)).float()
            if keys_out is not None and not keys_out:
                keys_out.update(keys.as_dict())
            yield rec

    kept = 0
    for ep, recs in group_episodes(records(), buffer_all=buffer_all):
        stats.episodes_seen += 1
        L = len(recs)
        wins = build_windows(L, cfg.horizon_T, cfg.stride)
        ep_stats = {"frames": L, "windows": len(wins), "kept": 0, "dropped_static": 0}
        stats.per_episode[ep] = ep_stats
        if not wins:
            stats.episodes_too_short += 1
            continue
        dims = {r.action.shape[0] for r in recs}
        if len(dims) != 1:
            raise ValueError(f"episode {ep}: inconsistent action dims {sorted(dims)}")
        actions = torch.stack([r.action for r in recs])
        for s, e in wins:
            avg_l2, max_l2 = compute_action_stats(actions[s:e], cfg.action_norm_mode)
            stats.windows_total += 1
            stats.avg_action_l2_all.add(avg_l2)
            if avg_l2 < cfg.min_action_norm:
                stats.windows_dropped_static += 1
                ep_stats["dropped_static"] += 1
                continue
            stats.windows_kept += 1
            ep_stats["kept"] += 1
            stats.avg_action_l2_kept.add(avg_l2)
            stats.max_action_l2_kept.add(max_l2)
            idx = kept
            kept += 1
            if idx < skip:
                continue
            yield make_window_sample(recs, s, cfg, idx, avg_l2, max_l2, actions, baseline_policy)
        if ep_stats["kept"]:
            stats.episodes_with_kept_windows += 1
