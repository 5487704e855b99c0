# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Recording scripted SO-101 demonstrations as a LeRobot v3.0 dataset with LeRobotDataset (sigma_sim.record)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import sigma_sim  # noqa: F401  (selects a headless GL backend before mujoco loads)
from sigma_sim import _gl
from sigma_sim.record import (
    ACTION_KEY,
    IMAGE_KEY,
    STATE_KEY,
    episode_frames,
    instruction_for_episode,
    main,
    record_dataset,
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


def _simulated(seed: int, index: int, config: SimConfig):
    """Return the (frame, task) pairs of the recorder's episode ``index`` (seed ``seed``), simulated again."""
    env = SO101PickPlaceEnv(config)
    try:
        return list(episode_frames(env, seed, instruction_for_episode(index, seed)))
    finally:
        env.close()


def _as_uint8_hwc(img):
    """LeRobotDataset returns images as float32 [3, H, W] in [0, 1]."""
    return (img * 255).round().to(dtype=torch.uint8).permute(1, 2, 0).numpy()


def test_record_cli_writes_a_lerobot_dataset_that_reads_back_the_recorded_frames(tmp_path, capsys):
    """sigma-sim-record writes with LeRobotDataset.

    LeRobotDataset reads back, frame by frame, the images, states, actions, tasks, timestamps and episode boundaries the
    simulator produced.
    """
    pytest.importorskip("lerobot.datasets.lerobot_dataset")
    from sigma_model.data.lerobot_source import load_lerobot_dataset

    root = tmp_path / "ds"
    assert main([f"--root={root}", "--episodes=2", "--seed", "10", "--image_size=32", "--quiet=true"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 2 and summary["failed_seeds"] == []

    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["fps"] == 30 and info["robot_type"] == "so101_follower"
    assert info["total_episodes"] == 2 and info["total_frames"] == summary["frames"]
    assert info["features"][IMAGE_KEY]["shape"] == [32, 32, 3] and info["features"][IMAGE_KEY]["dtype"] == "image"
    assert info["features"][STATE_KEY]["shape"] == [6]
    assert (root / "data" / "chunk-000" / "file-000.parquet").is_file()
    assert (root / "meta" / "tasks.parquet").is_file()
    assert (root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").is_file()

    source = load_lerobot_dataset(root)
    assert source.describe()["total_episodes"] == 2 and len(source) == summary["frames"]
    frames = list(source)
    config = SimConfig(image_width=32, image_height=32)
    expected = [(ep, i, frame, task) for ep, seed in enumerate((10, 11))
                for i, (frame, task) in enumerate(_simulated(seed, ep, config))]
    assert len(frames) == len(expected) == summary["frames"]
    for index, (f, (ep, i, frame, task)) in enumerate(zip(frames, expected)):
        assert (int(f["index"]), int(f["episode_index"]), int(f["frame_index"])) == (index, ep, i)
        assert float(f["timestamp"]) == pytest.approx(i / 30, abs=1e-6)
        assert f["task"] == task
        np.testing.assert_array_equal(_as_uint8_hwc(f[IMAGE_KEY]), frame[IMAGE_KEY])
        np.testing.assert_array_equal(f[STATE_KEY].numpy(), frame[STATE_KEY])
        np.testing.assert_array_equal(f[ACTION_KEY].numpy(), frame[ACTION_KEY])
    lengths = [sum(1 for e in expected if e[0] == ep) for ep in (0, 1)]
    episodes = source.meta.episodes
    assert [(int(episodes[ep]["dataset_from_index"]), int(episodes[ep]["dataset_to_index"])) for ep in (0, 1)] == \
        [(0, lengths[0]), (lengths[0], lengths[0] + lengths[1])]
    assert {instruction_target(f["task"]) for f in frames} == {"left", "right"}
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as refused:
        main([f"--root={root}", "--episodes=1", "--quiet=true"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and err.startswith("sigma-sim-record: error: ") and "not empty" in err
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # never overwritten
    # an overwrite that fails (too few successful episodes) leaves the dataset before whole, and no partial copy
    with pytest.raises(RuntimeError, match="successful episodes"):
        record_dataset(root, 3, seed=10, sim_config=config, overwrite=True, max_seed_tries=1)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_video_recording_reads_back_with_torchcodec(tmp_path, capsys):
    pytest.importorskip("torchcodec")
    pytest.importorskip("lerobot.datasets.lerobot_dataset")
    from sigma_model.data.lerobot_source import load_lerobot_dataset

    root = tmp_path / "ds"
    assert main([f"--root={root}", "--episodes=1", "--seed=10", "--image_size=32", "--quiet=true",
                 "--video=true"]) == 0
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["features"][IMAGE_KEY]["dtype"] == "video" and list((root / "videos").rglob("*.mp4"))
    frames = list(load_lerobot_dataset(root))
    expected = _simulated(10, 0, SimConfig(image_width=32, image_height=32))
    assert len(frames) == len(expected)
    errors = [np.abs(_as_uint8_hwc(f[IMAGE_KEY]).astype(int) - frame[IMAGE_KEY].astype(int)).mean()
              for f, (frame, _) in zip(frames, expected)]
    assert np.mean(errors) < 8 and max(errors) < 16, errors  # AV1 is lossy (32x32); states and actions are not
    np.testing.assert_array_equal(np.stack([f[STATE_KEY].numpy() for f in frames]),
                                  np.stack([frame[STATE_KEY] for frame, _ in expected]))


def test_parallel_recording_writes_the_same_dataset(tmp_path):
    """Worker processes run ahead.

    A skipped failure re-simulates the episodes behind it with their corrected index (instruction), so the files equal a
    one-process recording byte for byte (at the same root: LeRobot's parquet metadata holds a fingerprint of the data it
    was given, image paths included).
    """
    import hashlib

    from sigma_sim.record import record_dataset

    def files(root):
        return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
                for f in sorted(root.rglob("*")) if f.is_file()}

    config = SimConfig(image_width=32, image_height=32)
    root = tmp_path / "ds"
    # seeds 96 and 98 are expert failures (skipped), so the in-flight episodes get re-simulated
    one = record_dataset(root, 4, seed=95, sim_config=config, env_state=True, action_noise=0.02)
    root.rename(tmp_path / "one")
    two = record_dataset(root, 4, seed=95, sim_config=config, env_state=True, action_noise=0.02, workers=2)
    assert one.failed_seeds, "pick a seed range with an expert failure to exercise the re-simulation"
    assert (one.failed_seeds, one.instructions, one.frames) == (two.failed_seeds, two.instructions, two.frames)
    assert files(tmp_path / "one") == files(root)
    with pytest.raises(ValueError, match="workers"):
        record_dataset(tmp_path / "three", 1, sim_config=config, workers=0)


def test_lead_policy_acts_before_the_expert_takes_over():
    from sigma_sim.expert import expert_episode

    env = SO101PickPlaceEnv(SimConfig(image_width=32, image_height=32))
    calls = []

    def lead(obs):  # raise the shoulder: the expert must start from a state a reset never gives
        calls.append(obs["joint_positions"].copy())
        target = np.asarray(obs["joint_positions"], dtype=np.float64).copy()
        target[1] -= 0.3
        return target

    try:
        plain = next(expert_episode(env, seed=4))[0]["joint_positions"]
        gen = expert_episode(env, seed=4, lead=lead, lead_steps=12)
        first = next(gen)[0]["joint_positions"]
        assert len(calls) == 12
        assert abs(first[1] - plain[1]) > 0.1
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                assert stop.value.success  # the expert recovers from where the lead left the arm
                break
    finally:
        env.close()


def test_lead_steps_are_seeded_and_a_third_are_plain_demonstrations():
    from sigma_sim.record import lead_steps_for

    steps = [lead_steps_for(seed, 150) for seed in range(600)]
    assert steps == [lead_steps_for(seed, 150) for seed in range(600)]
    assert 0.25 < steps.count(0) / len(steps) < 0.42 and max(steps) <= 150
    assert all(lead_steps_for(seed, 0) == 0 for seed in range(20))


def test_recording_with_a_lead_checkpoint(tmp_path):
    import torch

    from sigma_model import SigmaModel, save_checkpoint
    from sigma_model.data.lerobot_source import load_lerobot_dataset
    from sigma_sim.record import lead_steps_for, record_dataset

    from sigma_model.testing import small_config

    torch.manual_seed(0)
    save_checkpoint(SigmaModel(small_config()), tmp_path / "lead")
    seed = next(s for s in range(100, 200) if lead_steps_for(s, 20) > 0)
    config = SimConfig(image_width=32, image_height=32)
    led = record_dataset(tmp_path / "led", 1, seed=seed, sim_config=config, lead_checkpoint=tmp_path / "lead",
                         lead_max_steps=20, keep_failed=True)
    record_dataset(tmp_path / "plain", 1, seed=seed, sim_config=config, keep_failed=True)
    assert led.frames > 0
    first = [next(iter(load_lerobot_dataset(tmp_path / name)))[STATE_KEY] for name in ("led", "plain")]
    assert not np.allclose(np.asarray(first[0]), np.asarray(first[1]))


def test_expert_taking_over_a_held_cube_carries_it_on():
    """A lead that grasps and lifts the cube (the expert's own first half) hands over a pinched cube.

    The expert closes, lifts and carries it without opening the jaws first.
    """
    from sigma_sim.expert import Phase, ScriptedExpert

    env = SO101PickPlaceEnv(SimConfig(image_width=32, image_height=32))
    try:
        first = ScriptedExpert(env)
        env.reset(seed=7)
        first.reset()
        for _ in range(600):
            if first.phase is Phase.CARRY:
                break
            env.step(first.act())
        assert first.phase is Phase.CARRY and env.is_carried()
        held = env.last_action[5]
        taker = ScriptedExpert(env)
        assert taker.phase is Phase.CLOSE
        gripper = []
        while taker.phase in (Phase.CLOSE, Phase.LIFT, Phase.CARRY):
            action = taker.act()
            gripper.append(action[5])
            env.step(action)
            assert len(gripper) < 300
        assert max(gripper) <= held + 1e-6  # never opened while holding
        assert taker.phase is Phase.LOWER and taker.attempts == 0 and env.is_carried()
    finally:
        env.close()
