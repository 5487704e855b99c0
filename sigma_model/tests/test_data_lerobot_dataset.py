# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""LeRobot datasets written with LeRobotDataset.create / add_frame / save_episode / finalize, read back.

Writers: sigma_model.data.lerobot_io, the synthetic recorder; reader: LeRobotDataset
(sigma_model.data.lerobot_source.load_lerobot_dataset).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lerobot.datasets.lerobot_dataset")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from sigma_model.data.lerobot_io import (  # noqa: E402
    create_lerobot_dataset,
    finalize_lerobot_dataset,
    normalization_stats,
    quiet_progress,
)
from sigma_model.data.lerobot_source import DatasetUnavailableError, load_lerobot_dataset  # noqa: E402
from sigma_model.data.synthetic import (  # noqa: E402
    TASKS,
    synthetic_action,
    synthetic_features,
    synthetic_image,
    write_synthetic_dataset,
)

EPISODES = [(2, 5), (0, 3), (4, 0)]
IMG = "observation.images.front"


@pytest.fixture(scope="module")
def ds_root(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("lr") / "ds", EPISODES, fps=10)


def recorded_frames(episodes=EPISODES):
    """Return what write_synthetic_dataset hands to add_frame, frame by frame."""
    out = []
    for ep, (n_static, n_moving) in enumerate(episodes):
        state = np.zeros(6, dtype=np.float32)
        for i in range(n_static + n_moving):
            act = synthetic_action(None if i < n_static else i - n_static)
            out.append({"episode_index": ep, "frame_index": i, "image": synthetic_image(ep, i),
                        "state": state.copy(), "action": act, "task": TASKS[ep % len(TASKS)]})
            state = (state + 0.1 * act).astype(np.float32)
    return out


def as_uint8_hwc(img: torch.Tensor) -> np.ndarray:
    """LeRobotDataset returns images as float32 [3, H, W] in [0, 1] (uint8 / 255)."""
    assert img.dtype == torch.float32 and img.ndim == 3 and img.shape[0] == 3
    return (img * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def test_layout_and_info(ds_root):
    for rel in ("meta/info.json", "meta/stats.json", "meta/tasks.parquet",
                "meta/episodes/chunk-000/file-000.parquet", "data/chunk-000/file-000.parquet"):
        assert (ds_root / rel).is_file(), rel
    assert not (ds_root / "images").exists()  # LeRobot's temporary PNG files are gone after save_episode
    info = json.loads((ds_root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["total_episodes"] == 3 and info["total_frames"] == 14 and info["total_tasks"] == 3
    assert info["fps"] == 10 and info["robot_type"] == "so101_follower"
    assert info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    for k in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert k in info["features"]
    assert info["features"][IMG]["dtype"] == "image"
    # image column is the HF datasets.Image struct with embedded PNG bytes
    schema = pq.read_schema(ds_root / "data/chunk-000/file-000.parquet")
    img_t = schema.field(IMG).type
    assert pa.types.is_struct(img_t) and {img_t.field(i).name for i in range(img_t.num_fields)} == {"bytes", "path"}
    assert pa.types.is_fixed_size_list(schema.field("observation.state").type)
    hf = json.loads(schema.metadata[b"huggingface"])
    assert hf["info"]["features"][IMG] == {"_type": "Image"}
    stats = json.loads((ds_root / "meta/stats.json").read_text())
    assert stats["action"]["count"] == [14]
    assert np.asarray(stats[IMG]["mean"]).shape == (3, 1, 1)
    assert list(stats) == [k for k in info["features"] if k in stats]  # the features' order


def test_episode_meta_and_tasks(ds_root):
    t = pq.read_table(ds_root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["episode_index"] for r in t] == [0, 1, 2]
    assert [(r["dataset_from_index"], r["dataset_to_index"]) for r in t] == [(0, 7), (7, 10), (10, 14)]
    assert [r["length"] for r in t] == [7, 3, 4]
    assert [r["tasks"] for r in t] == [[task] for task in TASKS]
    tasks = pq.read_table(ds_root / "meta/tasks.parquet").to_pandas()
    assert list(tasks.index) == list(TASKS) and list(tasks["task_index"]) == [0, 1, 2]


def test_frames_read_back_with_the_recorded_values(ds_root):
    src = load_lerobot_dataset(ds_root)
    frames = list(src)
    expected = recorded_frames()
    assert len(frames) == len(src) == len(expected) == 14
    assert src.fps == 10 and src.tasks == list(TASKS)
    for i, (f, e) in enumerate(zip(frames, expected)):
        assert int(f["index"]) == i
        assert (int(f["episode_index"]), int(f["frame_index"])) == (e["episode_index"], e["frame_index"])
        assert float(f["timestamp"]) == pytest.approx(e["frame_index"] / 10, abs=1e-6)
        assert f["task"] == e["task"] and int(f["task_index"]) == TASKS.index(e["task"])
        np.testing.assert_array_equal(as_uint8_hwc(f[IMG]), e["image"])  # PNG: lossless
        assert f["observation.state"].dtype == torch.float32
        np.testing.assert_array_equal(f["observation.state"].numpy(), e["state"])
        np.testing.assert_array_equal(f["action"].numpy(), e["action"])
    # episode boundaries: LeRobot's episode table points at each episode's first and last frame
    eps = src.meta.episodes
    for ep in range(3):
        lo, hi = int(eps[ep]["dataset_from_index"]), int(eps[ep]["dataset_to_index"])
        assert {int(f["episode_index"]) for f in frames[lo:hi]} == {ep}
        assert [int(f["frame_index"]) for f in frames[lo:hi]] == list(range(hi - lo))
    # a selection of episodes
    only2 = load_lerobot_dataset(ds_root, episodes=[2])
    assert len(only2) == 4 and [int(x["episode_index"]) for x in only2] == [2] * 4
    assert [int(x["index"]) for x in only2] == [10, 11, 12, 13]
    first = load_lerobot_dataset(ds_root, max_episodes=2)
    assert len(first) == 10 and first.describe()["selected_episodes"] == 2
    assert first.describe()["total_frames"] == 14


def test_recording_validates_frames_and_refuses_to_replace(tmp_path):
    feats = synthetic_features((8, 8))
    ds = create_lerobot_dataset(tmp_path / "a", "local/a", 5, feats)
    good = {IMG: np.zeros((8, 8, 3), np.uint8), "observation.state": np.zeros(6, np.float32),
            "action": np.zeros(6, np.float32), "task": "t"}
    with pytest.raises(ValueError, match="Missing features"):
        ds.add_frame({k: v for k, v in good.items() if k != "action"})
    with pytest.raises(ValueError, match="shape"):
        ds.add_frame({**good, "action": np.zeros(5, np.float32)})
    with pytest.raises(ValueError, match="task"):
        ds.add_frame({k: v for k, v in good.items() if k != "task"})
    with pytest.raises(ValueError, match="add_frame"):
        ds.save_episode()
    # a float image in [0, 1] (a torch tensor) is accepted
    ds.add_frame({**good, IMG: torch.ones(8, 8, 3), "task": "lift"})
    ds.save_episode()
    finalize_lerobot_dataset(ds)
    frames = list(load_lerobot_dataset(tmp_path / "a"))
    assert frames[0]["task"] == "lift" and int(as_uint8_hwc(frames[0][IMG]).min()) == 255
    with pytest.raises(FileExistsError, match="not empty"):
        create_lerobot_dataset(tmp_path / "a", "local/a", 5, feats)
    assert len(list(load_lerobot_dataset(tmp_path / "a"))) == 1  # untouched
    (tmp_path / "empty").mkdir()
    finalize_lerobot_dataset(create_lerobot_dataset(tmp_path / "empty", "local/e", 5, feats))
    ds = create_lerobot_dataset(tmp_path / "a", "local/a", 7, feats, overwrite=True)
    assert ds.fps == 7 and ds.meta.total_episodes == 0
    with pytest.raises(ValueError, match="fps"):
        create_lerobot_dataset(tmp_path / "b", "local/b", 0, feats)


def test_finalize_discards_an_unsaved_episode(tmp_path, caplog):
    ds = create_lerobot_dataset(tmp_path / "a", "local/a", 5, synthetic_features((8, 8)))
    frame = {IMG: np.zeros((8, 8, 3), np.uint8), "observation.state": np.zeros(6, np.float32),
             "action": np.zeros(6, np.float32), "task": "t"}
    for _ in range(2):
        ds.add_frame(dict(frame))
    ds.save_episode()
    ds.add_frame(dict(frame))
    assert any((tmp_path / "a" / "images").rglob("*.png"))
    with caplog.at_level(logging.WARNING):
        finalize_lerobot_dataset(ds)
    assert "discarding 1 frames" in caplog.text
    assert not any((tmp_path / "a" / "images").rglob("*.png"))
    src = load_lerobot_dataset(tmp_path / "a")
    assert len(src) == 2 and src.meta.total_episodes == 1


def test_recording_prints_no_progress_bars(tmp_path, capfd):
    import datasets

    assert not datasets.are_progress_bars_disabled()
    write_synthetic_dataset(tmp_path / "ds", [(1, 2), (0, 2)])
    err = capfd.readouterr().err
    assert "Map" not in err and "examples/s" not in err
    assert not datasets.are_progress_bars_disabled()  # restored afterwards
    with quiet_progress():
        assert datasets.are_progress_bars_disabled()


def test_same_bytes_in_every_process(tmp_path):
    """LeRobot aggregates the statistics over a set of feature names, whose order follows the hash seed.

    finalize_lerobot_dataset writes them in the features' order, so every file of a dataset is the same whichever
    process records it (at the same root): here this one and one with PYTHONHASHSEED=0.
    """
    episodes = [(1, 3), (0, 2)]
    script = ("import sys\nfrom sigma_model.data.synthetic import write_synthetic_dataset\n"
              f"write_synthetic_dataset(sys.argv[1], {episodes})\n")
    root = tmp_path / "ds"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    r = subprocess.run([sys.executable, "-c", script, str(root)], env=env, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    files = [{str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}]
    root.rename(tmp_path / "other")
    write_synthetic_dataset(root, episodes)
    files.append({str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()})
    assert files[0].keys() == files[1].keys() and "meta/stats.json" in files[0]
    for name in files[0]:
        assert files[0][name] == files[1][name], name


def test_video_storage_reads_back_with_torchcodec(tmp_path):
    pytest.importorskip("torchcodec")
    feats = synthetic_features((32, 32))
    ds = create_lerobot_dataset(tmp_path / "v", "local/v", 10, feats, video=True)
    yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    images = []
    with quiet_progress():
        for ep in range(2):
            for i in range(6):
                img = np.stack([(xx * 4 + 20 * i) % 256, (yy * 4 + 40 * ep) % 256, np.full_like(xx, 128)], -1)
                images.append(img.astype(np.uint8))
                ds.add_frame({IMG: images[-1], "observation.state": np.full(6, i, np.float32),
                              "action": np.zeros(6, np.float32), "task": "t"})
            ds.save_episode()
    finalize_lerobot_dataset(ds)
    info = json.loads((tmp_path / "v" / "meta" / "info.json").read_text())
    assert info["features"][IMG]["dtype"] == "video" and info["video_path"]
    assert list((tmp_path / "v" / "videos").rglob("*.mp4"))
    frames = list(load_lerobot_dataset(tmp_path / "v"))
    assert len(frames) == 12
    for f, img in zip(frames, images):  # AV1 is lossy: close, and the right frame of the right episode
        assert float(f["observation.state"][0]) == float(f["frame_index"])
        err = np.abs(as_uint8_hwc(f[IMG]).astype(int) - img.astype(int)).mean()
        assert err < 8, err


def test_not_a_dataset_and_missing_files(ds_root, tmp_path):
    with pytest.raises(DatasetUnavailableError, match="meta/info.json"):
        load_lerobot_dataset(tmp_path)
    with pytest.raises(DatasetUnavailableError, match="does not exist"):
        load_lerobot_dataset(tmp_path / "nope")
    with pytest.raises(ValueError, match=r"episodes \[7\] are not in the dataset"):
        load_lerobot_dataset(ds_root, episodes=[1, 7])
    root = write_synthetic_dataset(tmp_path / "ds", [(0, 2)])
    (root / "data" / "chunk-000" / "file-000.parquet").unlink()
    with pytest.raises(DatasetUnavailableError, match="missing dataset file data/chunk-000/file-000.parquet"):
        load_lerobot_dataset(root)


def test_incomplete_local_dataset_is_named_and_never_fetched_from_the_hub(tmp_path, monkeypatch):
    """A local dataset without episodes or without meta/tasks.parquet: LeRobot would fall back to a hub download."""
    from lerobot.datasets import lerobot_dataset

    hub_calls: list = []
    monkeypatch.setattr(lerobot_dataset, "snapshot_download", lambda *a, **k: hub_calls.append(a))
    monkeypatch.setattr(lerobot_dataset, "get_safe_version", lambda *a, **k: hub_calls.append(a) or "v3.0")
    empty = tmp_path / "empty"
    finalize_lerobot_dataset(create_lerobot_dataset(empty, "local/empty", 10, synthetic_features((8, 8))))
    with pytest.raises(DatasetUnavailableError) as err:
        load_lerobot_dataset(empty)
    assert str(err.value) == (f"{empty} is not a complete LeRobot dataset: it has no episodes "
                              "(no meta/episodes/*/*.parquet)")
    root = write_synthetic_dataset(tmp_path / "notasks", [(0, 2)])
    (root / "meta" / "tasks.parquet").unlink()
    with pytest.raises(DatasetUnavailableError) as err:
        load_lerobot_dataset(root)
    assert str(err.value) == f"{root} is not a complete LeRobot dataset (no meta/tasks.parquet)"
    assert hub_calls == []


@pytest.mark.parametrize("max_episodes", [-1, 0, True])
def test_max_episodes_below_one_is_refused(ds_root, max_episodes):
    with pytest.raises(ValueError) as err:
        load_lerobot_dataset(ds_root, episodes=[0, 1], max_episodes=max_episodes)
    assert str(err.value) == f"max_episodes must be >= 1 (or None for all episodes), got {max_episodes!r}"


def test_normalization_stats_are_the_datasets_statistics(ds_root):
    frames = recorded_frames()
    actions = np.stack([f["action"] for f in frames]).astype(np.float64)
    states = np.stack([f["state"] for f in frames]).astype(np.float64)
    stats = normalization_stats(ds_root)
    np.testing.assert_allclose(stats["action_mean"], actions.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["state_mean"], states.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["action_std"], np.maximum(actions.std(0), 1e-3), atol=1e-6)
    assert stats["state_std"][2:] == [1e-3] * 4  # joints that never move: floored, not 0
    assert normalization_stats(Path(ds_root) / "meta" / "stats.json") == stats
    with pytest.raises(ValueError, match="no mean/std for 'observation.wrench'"):
        normalization_stats(ds_root, state_key="observation.wrench")
