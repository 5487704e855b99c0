# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""LeRobot datasets written and described by LeRobot's own code (``lerobot.datasets``).

Recording goes through ``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` / ``finalize``;
this module adds what the project's recorders share around those calls:

- :func:`create_lerobot_dataset`: refuses to replace a dataset unless asked (and anything but a
  dataset always), and stores camera features as PNG images (default) or as video (``video=True``,
  AV1 by LeRobot's encoder);
- :func:`replacing_dataset`: writes a dataset beside its root and puts it in place only when
  complete, so a failed or interrupted conversion leaves the dataset before it as it was;
- :func:`finalize_lerobot_dataset`: ``finalize()`` plus ``meta/stats.json`` rewritten in the
  features' order (LeRobot aggregates over a ``set`` of keys, whose order changes with the Python
  hash seed), so the same recording gives the same bytes in every process;
- :func:`quiet_progress`: no ``datasets`` progress bar per saved episode;
- :func:`normalization_stats`: MEAN_STD statistics from ``LeRobotDatasetMetadata.stats``.

PNG images are the default: training reads every frame many times, and a 96x96 frame reads about
2x faster from PNG than from AV1 video here (wall clock and CPU time), losslessly, so training sees
the camera's own pixels. Video records 1.5x (CPU) to 3x (wall clock) faster and takes 3.4x less
disk; recording happens once (``benchmarks/bench_lerobot_storage.py``).
LeRobot is imported inside the functions, so ``import sigma_model.data`` stays light.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._io import replacing_directory

log = logging.getLogger(__name__)

__all__ = ["CAMERA_DTYPES", "create_lerobot_dataset", "finalize_lerobot_dataset", "import_lerobot",
           "normalization_stats", "quiet_progress", "replacing_dataset"]

CAMERA_DTYPES = ("image", "video")


def import_lerobot():
    """LeRobot's dataset module (``lerobot.datasets.lerobot_dataset``), with a clear error without it."""
    try:
        from lerobot.datasets import lerobot_dataset
    except ImportError as err:
        raise ImportError("LeRobot datasets need the 'lerobot' package (pip install -r requirements-lerobot.txt "
                          f"--no-deps, see README): {err}") from err
    return lerobot_dataset


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Turn off the ``datasets`` progress bars (one per ``save_episode``) for the block."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def create_lerobot_dataset(root: str | os.PathLike, repo_id: str, fps: int, features: Mapping[str, Mapping[str, Any]],
                           robot_type: str | None = None, *, overwrite: bool = False, video: bool = False):
    """``LeRobotDataset.create`` at ``root``; camera features become ``"video"`` if ``video`` else ``"image"``.

    An existing non-empty ``root`` is refused (``FileExistsError``) unless ``overwrite``, and always when it is not
    a LeRobot dataset (no ``meta/info.json``: a folder of other files, say the recording being converted).
    """
    root = Path(root)
    if root.is_dir() and any(root.iterdir()):
        _check_replaceable(root, overwrite)
        shutil.rmtree(root)
    elif root.exists() and not root.is_dir():
        raise FileExistsError(f"dataset root {root} is a file")
    elif root.is_dir():
        root.rmdir()  # LeRobot creates the directory itself
    if int(fps) <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    camera = "video" if video else "image"
    feats = {k: ({**ft, "dtype": camera} if ft["dtype"] in CAMERA_DTYPES else dict(ft)) for k, ft in features.items()}
    return import_lerobot().LeRobotDataset.create(repo_id, int(fps), feats, root=root, robot_type=robot_type,
                                                  use_videos=video)


def _check_replaceable(root: Path, overwrite: bool) -> None:
    if not overwrite:
        raise FileExistsError(f"dataset root {root} already exists and is not empty "
                              "(pass overwrite=True / --overwrite to replace it)")
    if not (root / "meta" / "info.json").is_file():
        raise FileExistsError(f"{root} is not a LeRobot dataset (no meta/info.json): not replaced, even with "
                              "overwrite; choose another path")


@contextlib.contextmanager
def replacing_dataset(root: str | os.PathLike, overwrite: bool = False,
                      keep: tuple[str | os.PathLike, ...] = ()) -> Iterator[Path]:
    """Yield a fresh path beside ``root`` to write a dataset at; it becomes ``root`` when the block succeeds.

    An existing ``root`` is checked first as :func:`create_lerobot_dataset` does, and refused if it holds any of
    ``keep`` (the input of a conversion). The dataset before stays in place until the new one is complete: a failure
    or an interrupt removes the partial copy and leaves ``root`` as it was.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"dataset root {root} is a file")
    if root.is_dir() and any(root.iterdir()):
        _check_replaceable(root, overwrite)
        for path in map(Path, keep):
            if path.resolve().is_relative_to(root.resolve()):
                raise FileExistsError(f"{root} holds {path}: not replaced; choose another output path")
    with replacing_directory(root) as partial:
        yield partial


def finalize_lerobot_dataset(dataset) -> None:
    """Discard unsaved frames (and their PNG files), ``dataset.finalize()``.

    Remove the empty temporary ``images/`` folders, then write ``meta/stats.json`` in the order of the features
    (deterministic bytes).
    """
    from lerobot.datasets.utils import write_stats

    if dataset.episode_buffer and dataset.episode_buffer["size"]:
        log.warning("%s: discarding %d frames of an unsaved episode", dataset.root, dataset.episode_buffer["size"])
        dataset.clear_episode_buffer()
    dataset.finalize()
    images = Path(dataset.root) / "images"  # LeRobot's temporary PNG folders, empty once episodes are saved
    if images.is_dir() and not any(p.is_file() for p in images.rglob("*")):
        shutil.rmtree(images)
    stats = dataset.meta.stats
    if stats:
        write_stats({k: stats[k] for k in dataset.meta.features if k in stats}, dataset.root)


def _metadata(dataset: str | os.PathLike):
    """``LeRobotDatasetMetadata`` of a local dataset root (or its ``meta/stats.json``) or a hub id."""
    from .lerobot_source import open_lerobot_metadata

    path = Path(dataset).expanduser()
    if path.is_file() and path.name == "stats.json" and path.parent.name == "meta":
        path = path.parent.parent
    return open_lerobot_metadata(path if path.exists() else str(dataset))


def normalization_stats(dataset: str | os.PathLike, state_key: str = "observation.state",
                        action_key: str = "action", min_std: float = 1e-3) -> dict[str, list[float]]:
    """Return SigmaConfig ``state_mean/state_std/action_mean/action_std`` from a LeRobot dataset's statistics.

    The statistics are ``LeRobotDatasetMetadata.stats`` (a local root, its ``meta/stats.json`` or a hub id); stds are
    floored at ``min_std`` so a joint that never moved stays finite.
    """
    meta = _metadata(dataset)
    stats = meta.stats or {}
    out: dict[str, list[float]] = {}
    for prefix, key in (("state", state_key), ("action", action_key)):
        if key not in stats or not {"mean", "std"} <= set(stats[key]):
            raise ValueError(f"{dataset}: the dataset's statistics have no mean/std for {key!r}")
        out[f"{prefix}_mean"] = [float(v) for v in stats[key]["mean"]]
        out[f"{prefix}_std"] = [max(float(v), min_std) for v in stats[key]["std"]]
    return out
