"""Minimal LeRobot v3.0 dataset writer and reader (no dependency on ``lerobot``).

LeRobot itself cannot be installed next to this project's torch (it pins ``torch<2.11``), so the
project carries this small, dependency-light implementation of the on-disk format
(``codebase_version: v3.0``)::

    root/
      data/chunk-000/file-000.parquet        frames of many episodes (one row per frame)
      meta/info.json                         fps, robot_type, features, totals, path templates
      meta/stats.json                        aggregated per-feature stats (min/max/mean/std/count/qXX)
      meta/tasks.parquet                     task string (pandas index) -> task_index
      meta/episodes/chunk-000/file-000.parquet  per-episode rows: tasks, length, from/to index, stats/...

Images use LeRobot's ``"image"`` dtype: PNG bytes embedded in the parquet file as the Hugging Face
``datasets.Image`` struct ``{bytes: binary, path: string}``.  Video (``"video"`` dtype) features are
*read* (with PyAV, when installed) but not written.

The writer mirrors LeRobot's recording API::

    w = LeRobotDatasetWriter.create(root, repo_id, fps, features, robot_type)
    w.add_frame({"observation.images.front": hwc_uint8, "observation.state": s, "action": a}, task="...")
    w.save_episode()
    w.finalize()

and datasets written by it load with LeRobot's own ``LeRobotDataset(repo_id, root=root)`` (checked
against the standalone ``lerobot-dataset`` 0.4.4 package).  The reader,
:class:`LeRobotDatasetReader`, iterates frames like ``LeRobotDataset.__getitem__`` does: feature
keys plus ``episode_index``, ``frame_index``, ``index``, ``timestamp``, ``task_index`` and ``task``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._io import atomic_write_bytes

log = logging.getLogger(__name__)

__all__ = [
    "CODEBASE_VERSION",
    "DEFAULT_FEATURES",
    "LeRobotFormatError",
    "LeRobotDatasetWriter",
    "LeRobotDatasetReader",
    "encode_png",
    "decode_png",
    "image_to_hwc_uint8",
    "normalization_stats",
]

CODEBASE_VERSION = "v3.0"
DEFAULT_CHUNK_SIZE = 1000
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
LEGACY_TASKS_PATH = "meta/tasks.jsonl"
LEGACY_EPISODES_PATH = "meta/episodes.jsonl"
EPISODES_DIR = "meta/episodes"
CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DEFAULT_DATA_PATH = "data/" + CHUNK_FILE_PATTERN + ".parquet"
DEFAULT_EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE_PATTERN + ".parquet"
DEFAULT_VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE_PATTERN + ".mp4"
DEFAULT_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)

DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": (1,), "names": None},
    "frame_index": {"dtype": "int64", "shape": (1,), "names": None},
    "episode_index": {"dtype": "int64", "shape": (1,), "names": None},
    "index": {"dtype": "int64", "shape": (1,), "names": None},
    "task_index": {"dtype": "int64", "shape": (1,), "names": None},
}

_NUMERIC_DTYPES = {
    "float16", "float32", "float64", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool",
}


class LeRobotFormatError(ValueError):
    """A dataset on disk (or a frame given to the writer) does not follow the LeRobot format."""


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - dependency is declared
        raise ImportError("sigma_model.data needs 'pyarrow' to read/write LeRobot parquet files "
                          "(pip install pyarrow)") from e
    return pa, pq


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover
        raise ImportError("sigma_model.data needs 'pillow' for PNG images (pip install pillow)") from e
    return Image


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------

def image_to_hwc_uint8(img: Any, expected_shape: Sequence[int] | None = None) -> np.ndarray:
    """Convert an image (PIL, numpy/torch HWC or CHW, uint8 or float in [0, 1]) to HWC uint8 RGB."""
    Image = None
    if not isinstance(img, (np.ndarray, torch.Tensor)):
        Image = _pil()
        if isinstance(img, Image.Image):
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
        raise LeRobotFormatError(f"unsupported image type {type(img).__name__}")
    arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3:
        raise LeRobotFormatError(f"image must have 3 dims (HWC or CHW), got shape {arr.shape}")
    if expected_shape is not None and len(expected_shape) == 3:
        h, w, c = _hwc_from_feature_shape(expected_shape)
        if arr.shape == (c, h, w) and arr.shape != (h, w, c):
            arr = np.transpose(arr, (1, 2, 0))
        elif arr.shape != (h, w, c):
            raise LeRobotFormatError(
                f"image of shape {arr.shape} does not match feature shape {tuple(expected_shape)} "
                f"(expected {(h, w, c)} or {(c, h, w)})")
    elif arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = np.transpose(arr, (1, 2, 0))
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
        else:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def _hwc_from_feature_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """LeRobot image features are declared (H, W, C) (names height/width/channels); accept (C, H, W)."""
    a, b, c = (int(x) for x in shape)
    if c in (1, 3, 4):
        return a, b, c
    if a in (1, 3, 4):
        return b, c, a
    return a, b, c


def encode_png(img_hwc_uint8: np.ndarray, compress_level: int = 6) -> bytes:
    Image = _pil()
    buf = io.BytesIO()
    Image.fromarray(img_hwc_uint8).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """Decode encoded image bytes (PNG/JPEG/...) to HWC uint8 RGB."""
    Image = _pil()
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


# --------------------------------------------------------------------------------------------------
# Schema helpers
# --------------------------------------------------------------------------------------------------

def _normalize_features(features: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, ft in features.items():
        if "/" in key:
            raise LeRobotFormatError(f"feature names must not contain '/': {key!r}")
        if "dtype" not in ft or "shape" not in ft:
            raise LeRobotFormatError(f"feature {key!r} needs 'dtype' and 'shape': {dict(ft)}")
        dtype = ft["dtype"]
        shape = tuple(int(s) for s in ft["shape"])
        if dtype == "video":
            raise LeRobotFormatError(
                f"feature {key!r}: dtype 'video' is not supported by this writer; use dtype 'image'")
        if dtype == "image":
            if len(shape) != 3:
                raise LeRobotFormatError(f"image feature {key!r} needs a 3-dim shape (H, W, C), got {shape}")
        elif dtype == "string":
            pass
        elif dtype in _NUMERIC_DTYPES:
            if len(shape) != 1:
                raise LeRobotFormatError(
                    f"numeric feature {key!r}: only 1-dim shapes are supported, got {shape}")
        else:
            raise LeRobotFormatError(f"feature {key!r}: unsupported dtype {dtype!r}")
        new = dict(ft)
        new["shape"] = shape
        new.setdefault("names", None)
        out[key] = new
    for key, ft in DEFAULT_FEATURES.items():
        out[key] = dict(ft)
    return out


def _arrow_type(ft: Mapping[str, Any]):
    pa, _ = _pa()
    dtype = ft["dtype"]
    if dtype == "image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    if dtype == "string":
        return pa.string()
    value = pa.bool_() if dtype == "bool" else pa.from_numpy_dtype(np.dtype(dtype))
    if tuple(ft["shape"]) == (1,):
        return value
    return pa.list_(value, int(ft["shape"][0]))


def _hf_feature_json(ft: Mapping[str, Any]) -> dict[str, Any]:
    """The ``datasets.Features`` JSON (datasets>=4 style) stored in the parquet schema metadata."""
    dtype = ft["dtype"]
    if dtype == "image":
        return {"_type": "Image"}
    if dtype == "string":
        return {"dtype": "string", "_type": "Value"}
    value = {"dtype": dtype, "_type": "Value"}
    if tuple(ft["shape"]) == (1,):
        return value
    return {"feature": value, "length": int(ft["shape"][0]), "_type": "List"}


def _data_schema(features: Mapping[str, Mapping[str, Any]]):
    pa, _ = _pa()
    fields = [pa.field(k, _arrow_type(ft)) for k, ft in features.items() if ft["dtype"] != "video"]
    hf = {"info": {"features": {k: _hf_feature_json(ft) for k, ft in features.items()
                                if ft["dtype"] != "video"}}}
    return pa.schema(fields, metadata={b"huggingface": json.dumps(hf).encode()})


def _jsonable_features(features: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    out = {}
    for k, ft in features.items():
        d = dict(ft)
        d["shape"] = list(d["shape"])
        out[k] = d
    return out


# --------------------------------------------------------------------------------------------------
# Statistics (same layout as LeRobot's compute_episode_stats / aggregate_stats)
# --------------------------------------------------------------------------------------------------

def _feature_stats(arr: np.ndarray, axis, keepdims: bool) -> dict[str, np.ndarray]:
    arr = arr.astype(np.float64)
    stats = {
        "min": np.min(arr, axis=axis, keepdims=keepdims),
        "max": np.max(arr, axis=axis, keepdims=keepdims),
        "mean": np.mean(arr, axis=axis, keepdims=keepdims),
        "std": np.std(arr, axis=axis, keepdims=keepdims),
        "count": np.array([arr.shape[0]], dtype=np.int64),
    }
    for q in DEFAULT_QUANTILES:
        stats[f"q{int(round(q * 100)):02d}"] = np.quantile(arr, q, axis=axis, keepdims=keepdims)
    return stats


def _episode_stats(columns: Mapping[str, Any], features: Mapping[str, Mapping[str, Any]],
                   images: Mapping[str, list[np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    ep_stats: dict[str, dict[str, np.ndarray]] = {}
    for key, ft in features.items():
        if ft["dtype"] in ("string", "video"):
            continue
        if ft["dtype"] == "image":
            imgs = images[key]
            # LeRobot samples a subset of frames for image stats; do the same (deterministically).
            n = len(imgs)
            idx = np.unique(np.linspace(0, n - 1, num=min(n, 100)).round().astype(int))
            arr = np.stack([np.transpose(imgs[i], (2, 0, 1)) for i in idx])  # N,C,H,W
            st = _feature_stats(arr, axis=(0, 2, 3), keepdims=True)
            ep_stats[key] = {k: (v if k == "count" else np.squeeze(v / 255.0, axis=0)) for k, v in st.items()}
            ep_stats[key]["count"] = np.array([len(idx)], dtype=np.int64)
        else:
            arr = np.asarray(columns[key])
            if arr.ndim == 1:
                arr = arr[:, None]
            ep_stats[key] = _feature_stats(arr, axis=0, keepdims=False)
    return ep_stats


def _aggregate_stats(stats_list: Sequence[Mapping[str, Mapping[str, np.ndarray]]]) -> dict:
    keys = sorted({k for s in stats_list for k in s})
    out: dict[str, dict[str, np.ndarray]] = {}
    for key in keys:
        items = [s[key] for s in stats_list if key in s]
        counts = np.array([float(it["count"][0]) for it in items])
        total = counts.sum()
        w = counts / total
        bshape = (-1,) + (1,) * np.asarray(items[0]["mean"]).ndim
        wb = w.reshape(bshape)
        means = np.stack([np.asarray(it["mean"]) for it in items])
        mean = (means * wb).sum(axis=0)
        var = ((np.stack([np.asarray(it["std"]) for it in items]) ** 2 + (means - mean) ** 2) * wb).sum(axis=0)
        agg = {
            "min": np.min(np.stack([np.asarray(it["min"]) for it in items]), axis=0),
            "max": np.max(np.stack([np.asarray(it["max"]) for it in items]), axis=0),
            "mean": mean,
            "std": np.sqrt(var),
            "count": np.array([int(total)], dtype=np.int64),
        }
        for qk in items[0]:
            if qk.startswith("q") and all(qk in it for it in items):
                agg[qk] = (np.stack([np.asarray(it[qk]) for it in items]) * wb).sum(axis=0)
        out[key] = agg
    return out


def _stats_to_json(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
    return {k: {sk: np.asarray(sv).tolist() for sk, sv in v.items()} for k, v in stats.items()}


def normalization_stats(stats_json: str | Path, state_key: str = "observation.state", action_key: str = "action",
                        min_std: float = 1e-3) -> dict[str, list[float]]:
    """SigmaConfig ``state_mean/state_std/action_mean/action_std`` from a dataset's ``meta/stats.json``
    (a dataset root or the file itself); stds are floored at ``min_std`` so a joint that never moved
    stays finite."""
    path = Path(stats_json)
    path = path / STATS_PATH if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no LeRobot stats file at {path}")
    stats = json.loads(path.read_text())
    out: dict[str, list[float]] = {}
    for prefix, key in (("state", state_key), ("action", action_key)):
        if key not in stats or not {"mean", "std"} <= set(stats[key]):
            raise LeRobotFormatError(f"{path} has no mean/std for {key!r}")
        out[f"{prefix}_mean"] = [float(v) for v in stats[key]["mean"]]
        out[f"{prefix}_std"] = [max(float(v), min_std) for v in stats[key]["std"]]
    return out


# --------------------------------------------------------------------------------------------------
# Tasks parquet (pandas-compatible: task string is the DataFrame index, like LeRobot writes it)
# --------------------------------------------------------------------------------------------------

def _write_tasks(root: Path, tasks: Sequence[str]) -> None:
    pa, pq = _pa()
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                      "__index_level_0__": pa.array(list(tasks), pa.string())})
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(root / TASKS_PATH, buf.getvalue())


def _read_tasks(root: Path) -> list[str]:
    pa, pq = _pa()
    path = root / TASKS_PATH
    if path.exists():
        table = pq.read_table(path)
        names = table.column_names
        str_cols = [n for n in names if pa.types.is_string(table.schema.field(n).type)
                    or pa.types.is_large_string(table.schema.field(n).type)]
        col = "task" if "task" in str_cols else ("__index_level_0__" if "__index_level_0__" in str_cols
                                                 else (str_cols[0] if str_cols else None))
        if col is None or "task_index" not in names:
            raise LeRobotFormatError(f"{path}: expected a task string column and 'task_index'")
        texts = table.column(col).to_pylist()
        idx = table.column("task_index").to_pylist()
        out = [""] * (max(idx) + 1 if idx else 0)
        for i, t in zip(idx, texts):
            out[int(i)] = t
        return out
    legacy = root / LEGACY_TASKS_PATH
    if legacy.exists():  # LeRobot v2.x
        rows = [json.loads(line) for line in legacy.read_text().splitlines() if line.strip()]
        out = [""] * (max((r["task_index"] for r in rows), default=-1) + 1)
        for r in rows:
            out[int(r["task_index"])] = r["task"]
        return out
    raise LeRobotFormatError(f"{root}: no {TASKS_PATH} (or legacy {LEGACY_TASKS_PATH}) found")


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------

class LeRobotDatasetWriter:
    """Records a LeRobot v3.0 dataset (images embedded as PNG; no videos).

    Use :meth:`create`, then :meth:`add_frame` for every step, :meth:`save_episode` at the end of each
    episode, and :meth:`finalize` once at the end (also done by the context manager).  ``frame_index``,
    ``timestamp`` (``frame_index / fps`` unless the frame has a ``"timestamp"``), ``episode_index``,
    ``index`` and ``task_index`` are filled in automatically, as in LeRobot.
    """

    def __init__(self) -> None:  # use create()
        raise TypeError("use LeRobotDatasetWriter.create(root, repo_id, fps, features, robot_type)")

    @classmethod
    def create(
        cls,
        root: str | os.PathLike,
        repo_id: str,
        fps: int,
        features: Mapping[str, Mapping[str, Any]],
        robot_type: str | None = None,
        *,
        overwrite: bool = False,
        chunks_size: int = DEFAULT_CHUNK_SIZE,
        data_files_size_in_mb: int = DEFAULT_DATA_FILE_SIZE_IN_MB,
        png_compress_level: int = 6,
    ) -> "LeRobotDatasetWriter":
        """Create an empty dataset at ``root`` (which must not exist or be empty, unless ``overwrite``).

        ``features`` uses LeRobot's layout, e.g.::

            {"observation.images.front": {"dtype": "image", "shape": (96, 96, 3),
                                          "names": ["height", "width", "channels"]},
             "observation.state": {"dtype": "float32", "shape": (6,), "names": [...]},
             "action": {"dtype": "float32", "shape": (6,), "names": [...]}}
        """
        root = Path(root)
        if root.exists() and any(root.iterdir()):
            if not overwrite:
                raise FileExistsError(f"dataset root {root} already exists and is not empty "
                                      "(pass overwrite=True to replace it)")
            shutil.rmtree(root)
        if int(fps) <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        obj = cls.__new__(cls)
        obj.root = root
        obj.repo_id = repo_id
        obj.fps = int(fps)
        obj.robot_type = robot_type
        obj.features = _normalize_features(features)
        obj.chunks_size = int(chunks_size)
        obj.data_files_size_in_mb = int(data_files_size_in_mb)
        obj.png_compress_level = int(png_compress_level)
        obj._schema = _data_schema(obj.features)
        obj.info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type,
            "total_episodes": 0,
            "total_frames": 0,
            "total_tasks": 0,
            "chunks_size": obj.chunks_size,
            "data_files_size_in_mb": obj.data_files_size_in_mb,
            "video_files_size_in_mb": DEFAULT_VIDEO_FILE_SIZE_IN_MB,
            "fps": obj.fps,
            "splits": {},
            "data_path": DEFAULT_DATA_PATH,
            "video_path": None,
            "features": _jsonable_features(obj.features),
        }
        obj.tasks: list[str] = []
        obj._task_to_index: dict[str, int] = {}
        obj._episode_stats: list[dict] = []
        obj._episode_rows: list[dict] = []
        obj._writer = None
        obj._chunk_idx = 0
        obj._file_idx = 0
        obj._file_frames = 0
        obj._finalized = False
        obj._reset_buffer()
        root.mkdir(parents=True, exist_ok=True)
        obj._write_info()
        return obj

    # -- properties mirroring LeRobot ---------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return int(self.info["total_episodes"])

    @property
    def num_frames(self) -> int:
        return int(self.info["total_frames"])

    @property
    def user_feature_keys(self) -> list[str]:
        return [k for k in self.features if k not in DEFAULT_FEATURES]

    @property
    def episode_buffer_size(self) -> int:
        return len(self._buf_tasks)

    def _reset_buffer(self) -> None:
        self._buf: dict[str, list] = {k: [] for k in self.user_feature_keys}
        self._buf_images: dict[str, list[np.ndarray]] = {
            k: [] for k in self.user_feature_keys if self.features[k]["dtype"] == "image"}
        self._buf_timestamps: list[float] = []
        self._buf_tasks: list[str] = []

    def _write_info(self) -> None:
        data = (json.dumps(self.info, indent=4, ensure_ascii=False) + "\n").encode()
        atomic_write_bytes(self.root / INFO_PATH, data)

    # -- recording ----------------------------------------------------------------------------------
    def add_frame(self, frame: Mapping[str, Any], task: str | None = None) -> None:
        """Buffer one frame of the current episode.

        ``frame`` holds every user feature (images as HWC/CHW uint8 or float [0, 1] arrays/tensors or
        PIL images; numeric features as arrays/tensors/lists of the declared shape) and optionally
        ``"timestamp"``.  The task text is ``task`` or, as in LeRobot>=0.4, ``frame["task"]``.
        """
        if self._finalized:
            raise RuntimeError("dataset already finalized")
        frame = dict(frame)
        frame_task = frame.pop("task", None)
        task = task if task is not None else frame_task
        if not isinstance(task, str):
            raise LeRobotFormatError("add_frame needs a task string (task=... or frame['task'])")
        timestamp = frame.pop("timestamp", None)
        expected = set(self.user_feature_keys)
        actual = set(frame)
        if expected != actual:
            msg = "Feature mismatch in `frame` dictionary:\n"
            if expected - actual:
                msg += f"Missing features: {sorted(expected - actual)}\n"
            if actual - expected:
                msg += f"Extra features: {sorted(actual - expected)}\n"
            raise LeRobotFormatError(msg)
        converted: dict[str, Any] = {}
        for key in self.user_feature_keys:
            ft = self.features[key]
            value = frame[key]
            if ft["dtype"] == "image":
                converted[key] = image_to_hwc_uint8(value, ft["shape"])
            elif ft["dtype"] == "string":
                if not isinstance(value, str):
                    raise LeRobotFormatError(f"feature {key!r} must be a str, got {type(value).__name__}")
                converted[key] = value
            else:
                arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
                if arr.shape == () and tuple(ft["shape"]) == (1,):
                    arr = arr.reshape(1)
                if tuple(arr.shape) != tuple(ft["shape"]):
                    raise LeRobotFormatError(
                        f"feature {key!r} has shape {tuple(arr.shape)}, expected {tuple(ft['shape'])}")
                if not np.all(np.isfinite(arr.astype(np.float64))):
                    raise LeRobotFormatError(f"feature {key!r} contains NaN/inf values")
                converted[key] = arr.astype(np.dtype(ft["dtype"]), copy=True)
        for key, value in converted.items():
            if self.features[key]["dtype"] == "image":
                self._buf_images[key].append(value)
            self._buf[key].append(value)
        n = len(self._buf_tasks)
        self._buf_timestamps.append(float(timestamp) if timestamp is not None else n / self.fps)
        self._buf_tasks.append(task)

    def clear_episode_buffer(self) -> None:
        """Discard the frames of the current (unsaved) episode."""
        self._reset_buffer()

    def save_episode(self) -> int:
        """Write the buffered frames as one episode; returns its episode_index."""
        if self._finalized:
            raise RuntimeError("dataset already finalized")
        length = len(self._buf_tasks)
        if length == 0:
            raise ValueError("You must add one or several frames with `add_frame` before calling `save_episode`.")
        pa, pq = _pa()
        ep_idx = self.num_episodes
        start = self.num_frames
        ep_tasks: list[str] = []
        for t in self._buf_tasks:
            if t not in self._task_to_index:
                self._task_to_index[t] = len(self.tasks)
                self.tasks.append(t)
            if t not in ep_tasks:
                ep_tasks.append(t)

        columns: dict[str, Any] = {}
        arrays = []
        for key, ft in self.features.items():
            if key == "timestamp":
                col = np.asarray(self._buf_timestamps, dtype=np.float32)
            elif key == "frame_index":
                col = np.arange(length, dtype=np.int64)
            elif key == "episode_index":
                col = np.full(length, ep_idx, dtype=np.int64)
            elif key == "index":
                col = np.arange(start, start + length, dtype=np.int64)
            elif key == "task_index":
                col = np.asarray([self._task_to_index[t] for t in self._buf_tasks], dtype=np.int64)
            elif ft["dtype"] == "image":
                png = [encode_png(im, self.png_compress_level) for im in self._buf[key]]
                paths = [f"frame-{i:06d}.png" for i in range(length)]
                arrays.append(pa.StructArray.from_arrays(
                    [pa.array(png, pa.binary()), pa.array(paths, pa.string())], names=["bytes", "path"]))
                continue
            elif ft["dtype"] == "string":
                arrays.append(pa.array(self._buf[key], pa.string()))
                continue
            else:
                col = np.stack(self._buf[key])
            columns[key] = col
            typ = _arrow_type(ft)
            if tuple(ft["shape"]) == (1,):
                arrays.append(pa.array(col.reshape(length), typ))
            else:
                flat = pa.array(col.reshape(-1), typ.value_type)
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, int(ft["shape"][0])))
        table = pa.Table.from_arrays(arrays, schema=self._schema)

        # roll to a new data file when the current one would exceed data_files_size_in_mb
        if self._writer is not None:
            cur = self.root / DEFAULT_DATA_PATH.format(chunk_index=self._chunk_idx, file_index=self._file_idx)
            size_mb = (cur.stat().st_size if cur.exists() else 0) / 2**20 + table.nbytes / 2**20
            if size_mb >= self.data_files_size_in_mb:
                self._writer.close()
                self._writer = None
                self._file_idx += 1
                if self._file_idx >= self.chunks_size:
                    self._chunk_idx, self._file_idx = self._chunk_idx + 1, 0
                self._file_frames = 0
        if self._writer is None:
            path = self.root / DEFAULT_DATA_PATH.format(chunk_index=self._chunk_idx, file_index=self._file_idx)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(path, schema=self._schema, compression="snappy", use_dictionary=True)
        self._writer.write_table(table)
        self._file_frames += length

        ep_stats = _episode_stats(columns, self.features, self._buf_images)
        self._episode_stats.append(ep_stats)
        row: dict[str, Any] = {
            "episode_index": ep_idx,
            "tasks": ep_tasks,
            "length": length,
            "data/chunk_index": self._chunk_idx,
            "data/file_index": self._file_idx,
            "dataset_from_index": start,
            "dataset_to_index": start + length,
        }
        for fk, st in ep_stats.items():
            for sk, sv in st.items():
                row[f"stats/{fk}/{sk}"] = np.asarray(sv).tolist()
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        self._episode_rows.append(row)

        self.info["total_episodes"] = ep_idx + 1
        self.info["total_frames"] = start + length
        self.info["total_tasks"] = len(self.tasks)
        self.info["splits"] = {"train": f"0:{ep_idx + 1}"}
        _write_tasks(self.root, self.tasks)
        self._write_info()
        stats = _aggregate_stats(self._episode_stats)
        atomic_write_bytes(self.root / STATS_PATH,
                           (json.dumps(_stats_to_json(stats), indent=4) + "\n").encode())
        self._reset_buffer()
        return ep_idx

    def finalize(self) -> None:
        """Close the parquet writer and write the episodes metadata (required before reading)."""
        if self._finalized:
            return
        if self.episode_buffer_size:
            log.warning("finalize(): discarding %d unsaved frames (call save_episode() first)",
                        self.episode_buffer_size)
            self._reset_buffer()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._episode_rows:
            pa, pq = _pa()
            keys = list(self._episode_rows[0])
            table = pa.table({k: [r[k] for r in self._episode_rows] for k in keys})
            buf = io.BytesIO()
            pq.write_table(table, buf, compression="snappy")
            atomic_write_bytes(self.root / DEFAULT_EPISODES_PATH.format(chunk_index=0, file_index=0),
                               buf.getvalue())
        self._finalized = True

    def __enter__(self) -> "LeRobotDatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.episode_buffer_size:
            self._reset_buffer()
        self.finalize()

    def __repr__(self) -> str:
        return (f"LeRobotDatasetWriter(repo_id={self.repo_id!r}, root={str(self.root)!r}, "
                f"episodes={self.num_episodes}, frames={self.num_frames})")


# --------------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------------

class LeRobotDatasetReader:
    """Iterates the frames of a local LeRobot dataset (v3.0; v2.x data files are also understood).

    ``image_format``: ``"uint8"`` (default, ``[3, H, W]`` uint8 tensor), ``"float32"`` (``[3, H, W]``
    in [0, 1], like ``LeRobotDataset``), ``"hwc"`` (numpy HWC uint8) or ``"bytes"`` (the encoded
    PNG/JPEG bytes, decoded later, e.g. by :func:`sigma_model.data.windows.pick_rgb_from_example`).
    Video features need PyAV (``pip install av``).
    """

    def __init__(self, root: str | os.PathLike, *, episodes: Sequence[int] | None = None,
                 image_format: str = "uint8", batch_size: int = 256) -> None:
        if image_format not in ("uint8", "float32", "hwc", "bytes"):
            raise ValueError(f"image_format must be uint8|float32|hwc|bytes, got {image_format!r}")
        self.root = Path(root)
        info_path = self.root / INFO_PATH
        if not info_path.exists():
            raise LeRobotFormatError(f"{self.root} is not a LeRobot dataset: missing {INFO_PATH}")
        try:
            self.info = json.loads(info_path.read_text())
        except json.JSONDecodeError as e:
            raise LeRobotFormatError(f"{info_path}: invalid JSON ({e})") from e
        for key in ("fps", "features"):
            if key not in self.info:
                raise LeRobotFormatError(f"{info_path}: missing '{key}'")
        self.features: dict[str, dict[str, Any]] = {
            k: {**v, "shape": tuple(v.get("shape", ()))} for k, v in self.info["features"].items()}
        self.fps = int(self.info["fps"])
        self.robot_type = self.info.get("robot_type")
        self.codebase_version = str(self.info.get("codebase_version", ""))
        self.tasks = _read_tasks(self.root)
        self.image_format = image_format
        self.batch_size = int(batch_size)
        self.episodes_meta = self._read_episodes_meta()
        self.selected_episodes = None if episodes is None else sorted({int(e) for e in episodes})
        self.data_files = sorted((self.root / "data").glob("**/*.parquet"))
        if not self.data_files:
            raise LeRobotFormatError(f"{self.root}: no parquet files under data/")
        self._video_cache: dict[tuple, Any] = {}

    # -- metadata -----------------------------------------------------------------------------------
    def _read_episodes_meta(self) -> dict[int, dict[str, Any]]:
        pa, pq = _pa()
        out: dict[int, dict[str, Any]] = {}
        files = sorted((self.root / EPISODES_DIR).glob("*/*.parquet"))
        for f in files:
            schema = pq.read_schema(f)
            cols = [n for n in schema.names if not n.startswith("stats/")]
            for row in pq.read_table(f, columns=cols).to_pylist():
                out[int(row["episode_index"])] = row
        legacy = self.root / LEGACY_EPISODES_PATH
        if not files and legacy.exists():
            for line in legacy.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    out[int(row["episode_index"])] = row
        return out

    @property
    def total_episodes(self) -> int:
        return int(self.info.get("total_episodes", len(self.episodes_meta)))

    @property
    def total_frames(self) -> int:
        return int(self.info.get("total_frames", 0))

    @property
    def num_episodes(self) -> int:
        if self.selected_episodes is None:
            return self.total_episodes
        return len(self.selected_episodes)

    @property
    def num_frames(self) -> int:
        if self.selected_episodes is None:
            return self.total_frames
        return int(sum(int(self.episodes_meta.get(e, {}).get("length", 0)) for e in self.selected_episodes))

    def __len__(self) -> int:
        return self.num_frames

    @property
    def image_keys(self) -> list[str]:
        return [k for k, ft in self.features.items() if ft.get("dtype") == "image"]

    @property
    def video_keys(self) -> list[str]:
        return [k for k, ft in self.features.items() if ft.get("dtype") == "video"]

    @property
    def camera_keys(self) -> list[str]:
        return self.image_keys + self.video_keys

    def load_stats(self) -> dict | None:
        p = self.root / STATS_PATH
        return json.loads(p.read_text()) if p.exists() else None

    # -- iteration ----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter_frames()

    def iter_frames(self, start: int = 0) -> Iterator[dict[str, Any]]:
        """Yield frames in storage order (optionally skipping the first ``start`` selected frames)."""
        pa, pq = _pa()
        import pyarrow.compute as pc

        n_seen = 0
        sel = None if self.selected_episodes is None else set(self.selected_episodes)
        for path in self.data_files:
            try:
                pf = pq.ParquetFile(path)
            except Exception as e:
                raise LeRobotFormatError(f"cannot read parquet file {path}: {e}") from e
            names = pf.schema_arrow.names
            for batch in pf.iter_batches(batch_size=self.batch_size):
                if sel is not None:
                    mask = pc.is_in(batch.column(names.index("episode_index")),
                                    value_set=pa.array(sorted(sel), pa.int64()))
                    batch = batch.filter(mask)
                n = batch.num_rows
                if n == 0:
                    continue
                if n_seen + n <= start:
                    n_seen += n
                    continue
                cols = {name: self._convert_column(name, batch.column(i)) for i, name in enumerate(names)}
                for r in range(n):
                    if n_seen < start:
                        n_seen += 1
                        continue
                    n_seen += 1
                    frame = {name: col[r] for name, col in cols.items()}
                    for name, col in cols.items():
                        ft = self.features.get(name)
                        if ft is not None and ft.get("dtype") == "image":
                            frame[name] = self._decode_image(col[r], name)
                    for key in self.video_keys:
                        frame[key] = self._video_frame(key, frame)
                    ti = int(frame["task_index"]) if "task_index" in frame else 0
                    frame["task"] = self.tasks[ti] if 0 <= ti < len(self.tasks) else ""
                    yield frame

    def _convert_column(self, name: str, arr) -> list[Any]:
        pa, _ = _pa()
        ft = self.features.get(name, {})
        typ = arr.type
        if ft.get("dtype") == "image" or pa.types.is_struct(typ):
            if pa.types.is_struct(typ):
                b = arr.field("bytes").to_pylist()
                p = arr.field("path").to_pylist() if typ.get_field_index("path") >= 0 else [None] * len(arr)
                return [{"bytes": bb, "path": pp} for bb, pp in zip(b, p)]
            return arr.to_pylist()
        if pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ) or pa.types.is_large_list(typ):
            if arr.null_count == 0 and (pa.types.is_fixed_size_list(typ) or len(arr) > 0):
                flat = arr.flatten().to_numpy(zero_copy_only=False)
                if len(arr) and flat.size % len(arr) == 0:
                    mat = flat.reshape(len(arr), -1)
                    return [torch.from_numpy(np.array(row)) for row in mat]
            return [torch.tensor(x) for x in arr.to_pylist()]
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            return arr.to_pylist()
        if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ):
            np_arr = arr.to_numpy(zero_copy_only=False)
            return [torch.tensor(v) for v in np_arr]
        return arr.to_pylist()

    def _decode_image(self, value: Any, key: str) -> Any:
        if self.image_format == "bytes":
            return value
        if isinstance(value, dict):
            data = value.get("bytes")
            if data is None and value.get("path"):
                p = Path(value["path"])
                p = p if p.is_absolute() else self.root / p
                data = p.read_bytes()
            if data is None:
                raise LeRobotFormatError(f"image feature {key!r} has neither bytes nor path")
        else:
            data = value
        hwc = decode_png(data)
        return self._format_hwc(hwc)

    def _format_hwc(self, hwc: np.ndarray) -> Any:
        if self.image_format == "hwc":
            return hwc
        chw = torch.from_numpy(np.ascontiguousarray(np.transpose(hwc, (2, 0, 1))))
        if self.image_format == "float32":
            return chw.float().div_(255.0)
        return chw

    # -- video (optional, PyAV) ---------------------------------------------------------------------
    def _video_frame(self, key: str, frame: Mapping[str, Any]) -> Any:
        ep = int(frame["episode_index"])
        ts = float(frame["timestamp"])
        cache_key = (key, ep)
        if cache_key not in self._video_cache:
            self._video_cache.clear()  # keep at most one decoded episode per camera in memory
            self._video_cache[cache_key] = self._decode_episode_video(key, ep)
        times, frames = self._video_cache[cache_key]
        i = int(np.argmin(np.abs(times - ts)))
        if abs(times[i] - ts) > 0.5 / self.fps + 1e-4:
            raise LeRobotFormatError(f"no video frame for {key!r} episode {ep} at t={ts:.4f}s")
        return self._format_hwc(frames[i])

    def _decode_episode_video(self, key: str, ep: int) -> tuple[np.ndarray, list[np.ndarray]]:
        try:
            import av
        except ImportError as e:
            raise ImportError(
                f"feature {key!r} is stored as video; decoding it without LeRobot needs PyAV "
                "(pip install av)") from e
        meta = self.episodes_meta.get(ep, {})
        if self.codebase_version.startswith("v3") or f"videos/{key}/chunk_index" in meta:
            chunk = int(meta.get(f"videos/{key}/chunk_index", 0))
            file = int(meta.get(f"videos/{key}/file_index", 0))
            from_ts = float(meta.get(f"videos/{key}/from_timestamp", 0.0))
            tmpl = self.info.get("video_path") or DEFAULT_VIDEO_PATH
            path = self.root / tmpl.format(video_key=key, chunk_index=chunk, file_index=file)
        else:  # v2.x: one file per episode
            chunk = ep // int(self.info.get("chunks_size", DEFAULT_CHUNK_SIZE))
            tmpl = self.info.get("video_path") or "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
            path = self.root / tmpl.format(video_key=key, episode_chunk=chunk, episode_index=ep)
            from_ts = 0.0
        length = int(meta.get("length", 0))
        to_ts = from_ts + (length + 1) / self.fps if length else float("inf")
        times, frames = [], []
        tol = 0.5 / self.fps
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if from_ts > 0 and stream.time_base is not None:
                container.seek(int(max(from_ts - 1.0, 0) / stream.time_base), stream=stream, backward=True)
            for fr in container.decode(stream):
                t = float(fr.pts * stream.time_base) if fr.pts is not None else float(fr.time or 0.0)
                if t < from_ts - tol:
                    continue
                if t > to_ts + tol:
                    break
                times.append(t - from_ts)
                frames.append(fr.to_ndarray(format="rgb24"))
        if not frames:
            raise LeRobotFormatError(f"{path}: no frames decoded for episode {ep}")
        return np.asarray(times), frames

    def __repr__(self) -> str:
        return (f"LeRobotDatasetReader(root={str(self.root)!r}, version={self.codebase_version!r}, "
                f"episodes={self.num_episodes}, frames={self.num_frames}, fps={self.fps})")
