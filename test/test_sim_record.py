"""Recording scripted SO-101 demonstrations as a LeRobot v3.0 dataset (sigma_sim.record)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sigma_sim  # noqa: F401  (selects a headless GL backend before mujoco loads)
from sigma_sim import _gl
from sigma_sim.record import (
    ACTION_KEY,
    IMAGE_KEY,
    STATE_KEY,
    episode_frames,
    instruction_for_episode,
    main,
)
from sigma_sim.so101_env import SimConfig, SO101PickPlaceEnv, instruction_target


@pytest.fixture(scope="module", autouse=True)
def _needs_gl():
    if sigma_sim.GL_BACKEND is None or not _gl.probe_gl_backend(sigma_sim.GL_BACKEND):
        pytest.skip("recording renders camera images: no working headless GL backend "
                    "(install libegl1 or libosmesa6)")


def test_episode_frames_match_lerobot_features():
    env = SO101PickPlaceEnv(SimConfig(image_width=32, image_height=32))
    try:
        gen = episode_frames(env, seed=0, instruction="move the cube to the right")
        frames = []
        while True:
            try:
                frames.append(next(gen))
            except StopIteration as stop:
                result = stop.value
                break
    finally:
        env.close()
    assert result.success
    assert len(frames) == result.steps
    frame, task = frames[0]
    assert task == "move the cube to the right"
    assert set(frame) == {IMAGE_KEY, STATE_KEY, ACTION_KEY}
    assert frame[IMAGE_KEY].shape == (32, 32, 3) and frame[IMAGE_KEY].dtype == np.uint8
    assert frame[STATE_KEY].shape == (6,) and frame[STATE_KEY].dtype == np.float32
    assert frame[ACTION_KEY].shape == (6,) and frame[ACTION_KEY].dtype == np.float32


def test_instructions_alternate_regions():
    targets = [instruction_target(instruction_for_episode(i, seed=i)) for i in range(6)]
    assert targets == ["left", "right"] * 3


def test_record_cli_writes_a_readable_lerobot_dataset(tmp_path, capsys):
    lerobot_format = pytest.importorskip("sigma_model.data.lerobot_format")
    root = tmp_path / "ds"
    assert main(["--root", str(root), "--episodes", "2", "--seed", "10", "--image-size", "32", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 2 and summary["failed_seeds"] == []

    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["fps"] == 30 and info["robot_type"] == "so101_follower"
    assert info["total_episodes"] == 2 and info["total_frames"] == summary["frames"]
    assert info["features"][IMAGE_KEY]["shape"] == [32, 32, 3]
    assert info["features"][STATE_KEY]["shape"] == [6]
    assert (root / "data" / "chunk-000" / "file-000.parquet").is_file()
    assert (root / "meta" / "tasks.parquet").is_file()
    assert (root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").is_file()

    reader = lerobot_format.LeRobotDatasetReader(root)
    assert reader.num_episodes == 2 and len(reader) == summary["frames"]
    tasks = set()
    n = 0
    for frame in reader:
        tasks.add(frame["task"])
        n += 1
    assert n == summary["frames"]
    assert {instruction_target(t) for t in tasks} == {"left", "right"}
