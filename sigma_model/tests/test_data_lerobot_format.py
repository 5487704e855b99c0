"""LeRobot v3.0 writer/reader (sigma_model.data.lerobot_format)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from sigma_model.data.lerobot_format import (  # noqa: E402
    LeRobotDatasetReader,
    LeRobotDatasetWriter,
    LeRobotFormatError,
)
from sigma_model.data.lerobot_source import import_lerobot_dataset_class  # noqa: E402
from sigma_model.data.synthetic import synthetic_features, synthetic_image, write_synthetic_dataset  # noqa: E402

EPISODES = [(2, 5), (0, 3), (4, 0)]


@pytest.fixture(scope="module")
def ds_root(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("lr") / "ds", EPISODES, fps=10)


def test_layout_and_info(ds_root):
    for rel in ("meta/info.json", "meta/stats.json", "meta/tasks.parquet",
                "meta/episodes/chunk-000/file-000.parquet", "data/chunk-000/file-000.parquet"):
        assert (ds_root / rel).is_file(), rel
    info = json.loads((ds_root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["total_episodes"] == 3 and info["total_frames"] == 14 and info["total_tasks"] == 3
    assert info["fps"] == 10 and info["robot_type"] == "so101_follower"
    assert info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    for k in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert k in info["features"]
    assert info["features"]["observation.images.front"]["dtype"] == "image"
    # image column is the HF datasets.Image struct with embedded PNG bytes
    schema = pq.read_schema(ds_root / "data/chunk-000/file-000.parquet")
    img_t = schema.field("observation.images.front").type
    assert pa.types.is_struct(img_t) and {img_t.field(i).name for i in range(img_t.num_fields)} == {"bytes", "path"}
    assert pa.types.is_fixed_size_list(schema.field("observation.state").type)
    hf = json.loads(schema.metadata[b"huggingface"])
    assert hf["info"]["features"]["observation.images.front"] == {"_type": "Image"}
    stats = json.loads((ds_root / "meta/stats.json").read_text())
    assert stats["action"]["count"] == [14]
    assert np.asarray(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)


def test_episode_meta_and_tasks(ds_root):
    t = pq.read_table(ds_root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["episode_index"] for r in t] == [0, 1, 2]
    assert [(r["dataset_from_index"], r["dataset_to_index"]) for r in t] == [(0, 7), (7, 10), (10, 14)]
    assert [r["length"] for r in t] == [7, 3, 4]
    tasks = pq.read_table(ds_root / "meta/tasks.parquet")
    assert tasks.column("task_index").to_pylist() == [0, 1, 2]
    assert tasks.schema.pandas_metadata["index_columns"] == ["__index_level_0__"]


def test_reader_frames(ds_root):
    r = LeRobotDatasetReader(ds_root)
    frames = list(r)
    assert len(frames) == len(r) == 14
    assert [int(f["index"]) for f in frames] == list(range(14))
    assert [(int(f["episode_index"]), int(f["frame_index"])) for f in frames][:8] == \
        [(0, i) for i in range(7)] + [(1, 0)]
    f = frames[8]
    assert f["task"] == "place the cube in the bowl" and int(f["task_index"]) == 1
    assert f["observation.images.front"].dtype == torch.uint8
    assert f["observation.images.front"].shape == (3, 24, 32)
    expect = torch.from_numpy(synthetic_image(1, 1)).permute(2, 0, 1)
    assert torch.equal(f["observation.images.front"], expect)
    assert f["observation.state"].shape == (6,) and f["observation.state"].dtype == torch.float32
    assert abs(float(f["timestamp"]) - 0.1) < 1e-6
    # episode selection and start offset
    r2 = LeRobotDatasetReader(ds_root, episodes=[2], image_format="float32")
    fr2 = list(r2)
    assert len(r2) == 4 and [int(x["episode_index"]) for x in fr2] == [2] * 4
    assert fr2[0]["observation.images.front"].dtype == torch.float32
    assert [int(x["index"]) for x in LeRobotDatasetReader(ds_root).iter_frames(start=12)] == [12, 13]


def test_writer_validation(tmp_path):
    feats = synthetic_features((8, 8))
    w = LeRobotDatasetWriter.create(tmp_path / "a", "local/a", 5, feats)
    good = {"observation.images.front": np.zeros((8, 8, 3), np.uint8),
            "observation.state": np.zeros(6, np.float32), "action": np.zeros(6, np.float32)}
    with pytest.raises(LeRobotFormatError, match="Missing features"):
        w.add_frame({k: v for k, v in good.items() if k != "action"}, task="t")
    with pytest.raises(LeRobotFormatError, match="shape"):
        w.add_frame({**good, "action": np.zeros(5, np.float32)}, task="t")
    with pytest.raises(LeRobotFormatError, match="task"):
        w.add_frame(good)
    with pytest.raises(ValueError, match="add_frame"):
        w.save_episode()
    # CHW float image in [0, 1] and task given inside the frame (LeRobot>=0.4 style) are accepted
    w.add_frame({**good, "observation.images.front": torch.ones(3, 8, 8), "task": "lift"})
    assert w.save_episode() == 0
    w.finalize()
    frames = list(LeRobotDatasetReader(tmp_path / "a"))
    assert frames[0]["task"] == "lift" and int(frames[0]["observation.images.front"].min()) == 255
    with pytest.raises(FileExistsError):
        LeRobotDatasetWriter.create(tmp_path / "a", "local/a", 5, feats)
    with pytest.raises(LeRobotFormatError, match="video"):
        LeRobotDatasetWriter.create(tmp_path / "b", "local/b", 5,
                                    {"cam": {"dtype": "video", "shape": (8, 8, 3), "names": None}})


def test_not_a_dataset(tmp_path):
    with pytest.raises(LeRobotFormatError, match="info.json"):
        LeRobotDatasetReader(tmp_path)


@pytest.mark.skipif(import_lerobot_dataset_class() is None, reason="no LeRobot dataset API installed")
def test_lerobot_api_reads_our_dataset(ds_root):
    cls, _ = import_lerobot_dataset_class()
    ds = cls("local/sigma_synthetic", root=str(ds_root))
    ours = list(LeRobotDatasetReader(ds_root, image_format="float32"))
    assert len(ds) == len(ours)
    for i in range(len(ds)):
        a = ds[i]
        for k, v in ours[i].items():
            if isinstance(v, str):
                assert a[k] == v
            else:
                assert torch.allclose(a[k].double(), v.double()), k
