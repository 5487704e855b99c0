# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""rosbag2 <-> LeRobot conversion (sigma_ros.bag_convert).

A robot's bag becomes a LeRobot dataset (training data) and back, preserving frames, episodes, tasks and timing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sigma_model.data.lerobot_io import create_lerobot_dataset, finalize_lerobot_dataset
from sigma_model.data.lerobot_source import load_lerobot_dataset
from sigma_model.data.windows import pick_rgb_from_example
from sigma_ros.bag_convert import (
    ACTION_KEY, CONVERSION_META, IMAGE_KEY, STATE_KEY, bag_to_lerobot, bag_to_lerobot_main, lerobot_to_bag,
    lerobot_to_bag_main,
)
from sigma_ros.bag_io import BagError, BagReader
from sigma_ros.bag_pairing import read_paired_frames
from sigma_ros.bag_robot_writer import RobotBagWriter, write_synthetic_robot_bag

S = 1_000_000_000


def _frames(root):
    """Return the dataset's frames as LeRobotDataset returns them, images as HWC uint8."""
    return [{**f, IMAGE_KEY: pick_rgb_from_example(f, IMAGE_KEY).permute(1, 2, 0).numpy()}
            for f in load_lerobot_dataset(root)]


def _assert_same_paired(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.t_ns, x.episode, x.instruction) == (y.t_ns, y.episode, y.instruction)
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_allclose(x.state, y.state, atol=1e-6)  # LeRobot stores float32
        np.testing.assert_allclose(x.action, y.action, atol=1e-6)


def _assert_same_lerobot(fa, fb):
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb):
        for key in ("episode_index", "frame_index", "index", "task_index", "timestamp"):
            assert float(x[key]) == float(y[key]), key
        assert x["task"] == y["task"]
        np.testing.assert_array_equal(x[IMAGE_KEY], y[IMAGE_KEY])
        np.testing.assert_array_equal(np.asarray(x[STATE_KEY]), np.asarray(y[STATE_KEY]))
        np.testing.assert_array_equal(np.asarray(x[ACTION_KEY]), np.asarray(y[ACTION_KEY]))


@pytest.mark.parametrize("storage,action_type,back_storage", [
    ("sqlite3", "joint_trajectory", "mcap"),
    ("mcap", "float64_multi_array", "sqlite3"),
])
def test_round_trip_bag_lerobot_bag(tmp_path, storage, action_type, back_storage):
    bag_a = tmp_path / "a"
    write_synthetic_robot_bag(bag_a, storage, n_frames=14, image_size=(12, 16), camera_hz=10.0, joint_hz=40.0,
                              instructions=((0.0, "pick up the red cube"), (0.55, "place it in the bowl")),
                              gaps=((10, 1.5),), action_type=action_type, seed=3)
    s1 = bag_to_lerobot(bag_a, tmp_path / "l1", repo_id="test/robot")
    assert (s1.episodes, s1.frames, s1.fps) == (3, 14, 10)
    assert s1.tasks == ["pick up the red cube", "place it in the bowl"]
    assert not any(s1.skipped.values())

    paired_a, stats_a, _ = read_paired_frames(bag_a)
    l1 = _frames(tmp_path / "l1")
    assert [int(f["episode_index"]) for f in l1] == [f.episode for f in paired_a] == [0] * 5 + [1] * 5 + [2] * 4
    for f_lr, f_bag in zip(l1, paired_a):  # the LeRobot frames are the bag's paired frames
        assert f_lr["task"] == f_bag.instruction
        np.testing.assert_array_equal(f_lr[IMAGE_KEY], f_bag.image)
        np.testing.assert_allclose(np.asarray(f_lr[STATE_KEY]), f_bag.state, atol=1e-6)
        np.testing.assert_allclose(np.asarray(f_lr[ACTION_KEY]), f_bag.action, atol=1e-6)
        assert float(f_lr["timestamp"]) == pytest.approx(int(f_lr["frame_index"]) / 10.0)  # LeRobot convention
    info = json.loads((tmp_path / "l1" / "meta" / "info.json").read_text())
    assert info["features"][STATE_KEY]["names"][0] == "shoulder_pan.pos"
    meta = json.loads((tmp_path / "l1" / CONVERSION_META).read_text())
    assert meta["topics"]["action"] == "/action" and len(meta["episodes"]) == 3

    s2 = lerobot_to_bag(tmp_path / "l1", tmp_path / "b", storage=back_storage)
    assert (s2.episodes, s2.frames) == (3, 14)
    with BagReader(tmp_path / "b") as r:
        assert r.storage == back_storage
        assert r.topics["/action"] == stats_a.action_type  # the source's command type is kept
    paired_b, _, _ = read_paired_frames(tmp_path / "b")
    _assert_same_paired(paired_a, paired_b)  # same frames at the same (ns) times, episodes, tasks

    bag_to_lerobot(tmp_path / "b", tmp_path / "l2", repo_id="test/robot")
    _assert_same_lerobot(l1, _frames(tmp_path / "l2"))


def test_lerobot_dataset_to_bag_and_back(tmp_path):
    """A dataset not made from a bag (e.g. sigma-sim-record's): timestamps and gaps are made up."""
    names = [f"j{i}.pos" for i in range(6)]
    features = {IMAGE_KEY: {"dtype": "image", "shape": (10, 12, 3), "names": ["height", "width", "channels"]},
                STATE_KEY: {"dtype": "float32", "shape": (6,), "names": names},
                ACTION_KEY: {"dtype": "float32", "shape": (6,), "names": names}}
    rng = np.random.default_rng(0)
    w = create_lerobot_dataset(tmp_path / "sim", "test/sim", 15, features)
    for ep, (task, n) in enumerate((("stack the blocks", 4), ("stack the blocks", 3), ("open the drawer", 5))):
        for _ in range(n):
            w.add_frame({IMAGE_KEY: rng.integers(0, 256, (10, 12, 3), dtype=np.uint8),
                         STATE_KEY: rng.standard_normal(6).astype(np.float32),
                         ACTION_KEY: rng.standard_normal(6).astype(np.float32), "task": task})
        w.save_episode()
    finalize_lerobot_dataset(w)
    s = lerobot_to_bag(tmp_path / "sim", tmp_path / "bag", storage="mcap", action_type="float64_multi_array")
    assert (s.episodes, s.frames) == (3, 12) and s.details["joint_names"] == [f"j{i}" for i in range(6)]
    paired, stats, _ = read_paired_frames(tmp_path / "bag", joint_names=[f"j{i}" for i in range(6)])
    assert all(f.usable for f in paired) and stats.episodes == 3  # same task, split by the inter-episode gap
    src = _frames(tmp_path / "sim")
    bag_to_lerobot(tmp_path / "bag", tmp_path / "again", joint_names=[f"j{i}" for i in range(6)])
    again = _frames(tmp_path / "again")
    assert load_lerobot_dataset(tmp_path / "again").fps == 15
    _assert_same_lerobot(src, again)


def test_recorded_timestamps(tmp_path):
    """--timestamps recorded: each frame's time since its episode's first frame, not frame_index / fps."""
    write_synthetic_robot_bag(tmp_path / "bag", "sqlite3", n_frames=12, image_size=8, camera_hz=10.0,
                              gaps=((4, 0.25), (8, 2.0)))  # a pause within episode 0, then a new episode
    s = bag_to_lerobot(tmp_path / "bag", tmp_path / "ds", timestamps="recorded")
    assert (s.episodes, s.frames) == (2, 12)
    paired, _, _ = read_paired_frames(tmp_path / "bag")
    frames = _frames(tmp_path / "ds")
    starts = {f.episode: f.t_ns for f in reversed(paired)}
    got = [float(f["timestamp"]) for f in frames]
    want = [(f.t_ns - starts[f.episode]) / 1e9 for f in paired]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got[4] == pytest.approx(0.65, abs=1e-6) and got[4] != pytest.approx(4 / s.fps)  # after the pause
    assert [int(f["frame_index"]) for f in frames] == list(range(8)) + list(range(4))


def test_skipped_frames_and_default_task(tmp_path):
    bag = tmp_path / "bag"
    with RobotBagWriter(bag, "sqlite3") as w:
        q = np.zeros(6)
        w.image(10 * S, np.zeros((4, 4, 3), np.uint8))  # no state, no command yet
        w.joint_state(10 * S + 1, q)
        w.image(10 * S + S // 10, np.zeros((4, 4, 3), np.uint8))  # no command
        w.action(10 * S + S // 10 + 1, q)
        w.image(10 * S + 2 * S // 10, np.full((4, 4, 3), 7, np.uint8))  # no instruction
        w.instruction(10 * S + 25 * S // 100, "wave")
        w.image(10 * S + 3 * S // 10, np.full((4, 4, 3), 9, np.uint8))
    s = bag_to_lerobot(bag, tmp_path / "l")
    assert s.frames == 1 and s.skipped["no_state"] == 1 and s.skipped["no_action"] == 1
    assert s.skipped["no_instruction"] == 1
    s = bag_to_lerobot(bag, tmp_path / "l", default_task="idle", overwrite=True)
    assert s.frames == 2 and s.tasks == ["idle", "wave"] and s.episodes == 2
    with pytest.raises(FileExistsError):
        bag_to_lerobot(bag, tmp_path / "l")


def test_converted_bag_is_training_data(tmp_path, monkeypatch):
    """Bag -> LeRobot -> sigma-preprocess shards (what sigma-train reads)."""
    from sigma_model.data import preprocess
    from sigma_model.data.shards import ShardDataset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_synthetic_robot_bag(tmp_path / "bag", "sqlite3", n_frames=24, image_size=16,
                              instructions=((0.0, "pick up the red cube"), (1.2, "place it in the bowl")))
    bag_to_lerobot(tmp_path / "bag", tmp_path / "ds")
    assert preprocess.main([f"--dataset={tmp_path / 'ds'}", f"--out_dir={tmp_path / 'shards'}", "--window.horizon_T=8",
                            "--window.image_size=[16,16]", "--progress=false"]) == 0
    ds = ShardDataset(tmp_path / "shards")
    assert len(ds) == (11 - 8 + 1) + (13 - 8 + 1)  # episodes of 11 and 13 frames, 8-frame windows
    texts = {ds[i]["text"] for i in range(len(ds))}
    assert texts == {"pick up the red cube", "place it in the bowl"}
    paired, _, _ = read_paired_frames(tmp_path / "bag")
    np.testing.assert_allclose(np.asarray(ds[0]["gt_action_trajectory"]),
                               np.stack([f.action for f in paired[:8]]), atol=1e-6)


def test_command_lines(tmp_path, capsys):
    write_synthetic_robot_bag(tmp_path / "bag", "mcap", n_frames=5, image_size=8)
    assert bag_to_lerobot_main([f"--bag={tmp_path / 'bag'}", f"--output={tmp_path / 'ds'}", "--repo_id=me/x"]) == 0
    assert "1 episodes, 5 frames at 10 fps" in capsys.readouterr().out
    assert bag_to_lerobot_main([f"--bag={tmp_path / 'bag'}", f"--output={tmp_path / 'ds3'}", "--max_frames=3"]) == 0
    assert "1 episodes, 3 frames at 10 fps" in capsys.readouterr().out
    assert lerobot_to_bag_main([f"--dataset={tmp_path / 'ds'}", f"--bag={tmp_path / 'back'}", "--storage=sqlite3",
                                "--action_type=float64_multi_array", "--topics.action=/arm/command"]) == 0
    assert "std_msgs/msg/Float64MultiArray" in capsys.readouterr().out
    with BagReader(tmp_path / "back") as r:
        assert r.storage == "sqlite3" and r.topics["/arm/command"] == "std_msgs/msg/Float64MultiArray"
    # a truncated recording: exit code 2 and a message naming the file
    f = next((tmp_path / "bag").glob("*.mcap"))
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    assert bag_to_lerobot_main([f"--bag={tmp_path / 'bag'}", f"--output={tmp_path / 'ds2'}"]) == 2
    err = capsys.readouterr().err
    assert "sigma-bag-to-lerobot: error:" in err and str(tmp_path / "bag") in err and "truncated" in err
    assert lerobot_to_bag_main([f"--dataset={tmp_path / 'ds'}", f"--bag={tmp_path / 'back'}"]) == 2  # exists
    assert "exists already" in capsys.readouterr().err


def test_overwrite_never_loses_the_input_or_the_dataset_before(tmp_path):
    """--overwrite replaces a dataset only once the new one is complete, and never a folder that is not a dataset.

    Before, it deleted the output first: a conversion that failed half-way left no dataset (only a partial one), and
    an output folder holding the input bag lost the bag.
    """
    good = tmp_path / "good_bag"
    write_synthetic_robot_bag(good, n_frames=12)
    out = tmp_path / "dataset"
    first = bag_to_lerobot(good, out)
    before = _frames(out)
    bad = tmp_path / "bad_bag"  # the camera changes size half-way: the conversion fails at frame 6
    start = 1_700_000_000 * S
    with RobotBagWriter(bad) as w:
        w.instruction(start, "pick up the cube")
        for k in range(12):
            t = start + S // 1000 + k * S // 10
            w.joint_state(t - 1000, np.zeros(6))
            w.action(t - 1000, np.zeros(6))
            w.image(t, np.zeros((32, 32, 3) if k < 6 else (24, 24, 3), np.uint8))
    with pytest.raises(BagError, match="pass an image size"):
        bag_to_lerobot(bad, out, overwrite=True)
    _assert_same_lerobot(_frames(out), before)  # the dataset before, whole
    assert json.loads((out / "meta" / "sigma_bag_conversion.json").read_text())["total_frames"] == first.frames
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_bag", "dataset", "good_bag"]  # no partial copy left
    again = bag_to_lerobot(bad, out, overwrite=True, image_size=(24, 24))  # a conversion that succeeds replaces it
    assert again.frames == 12 and len(_frames(out)) == 12
    # an output folder that holds the input, or is not a dataset, is never replaced
    recordings = tmp_path / "recordings"
    write_synthetic_robot_bag(recordings / "run1", n_frames=12)
    (recordings / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a LeRobot dataset"):
        bag_to_lerobot(recordings / "run1", recordings, overwrite=True)
    with pytest.raises(FileExistsError, match="holds"):
        bag_to_lerobot(out / "meta", out, overwrite=True)
    assert (recordings / "notes.txt").read_text() == "mine"
    with BagReader(recordings / "run1") as reader:
        assert reader.topics
