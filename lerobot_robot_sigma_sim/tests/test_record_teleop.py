# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Recording teleoperated demonstrations with LeRobot's own ``lerobot-record``, rehearsed on the simulator.

``lerobot-record`` (its ``main``, in a subprocess, as the console script runs it) drives ``sigma_so101_sim`` with the
scripted expert as its teleoperator (``sigma_scripted_expert``, standing in for a person with a leader arm) for two
episodes; the dataset is then checked, replayed, preprocessed in radians, trained on for 2 steps, and the checkpoint
runs a closed-loop step on the simulator through Sigma's robot bridge.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest

TASK = "pick the cube and place it on the left"
SEED = 100  # episode N's scene: seed SEED + N
FPS = 10  # the simulator's control rate and the dataset's frame rate
EPISODE_S = 15  # the expert solves these scenes in about 6 s of simulated time: slack for a slow, busy machine
IMAGE = 32
REPO_ID = "local/sim_teleop"


def _gl_or_skip() -> None:
    import sigma_sim
    from sigma_sim import _gl

    if sigma_sim.GL_BACKEND is None or not _gl.probe_gl_backend(sigma_sim.GL_BACKEND):
        pytest.skip("the simulated camera renders: no working headless GL backend (install libegl1 or libosmesa6)")


def _sim(seed: int, **fields):
    from lerobot_robot_sigma_sim import SigmaSO101Sim, SigmaSO101SimConfig

    fields = {"control_hz": FPS, "image_width": IMAGE, "image_height": IMAGE, "instruction": TASK, **fields}
    return SigmaSO101Sim(SigmaSO101SimConfig(seed=seed, **fields))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Two episodes recorded by ``lerobot-record --robot.type=sigma_so101_sim --teleop.type=sigma_scripted_expert``."""
    _gl_or_skip()
    tmp = tmp_path_factory.mktemp("teleop")
    root = tmp / "dataset"
    argv = [sys.executable, "-m", "lerobot.scripts.lerobot_record",
            "--robot.type=sigma_so101_sim", "--robot.id=rehearsal", f"--robot.control_hz={FPS}",
            f"--robot.camera_fps={FPS}", f"--robot.image_width={IMAGE}", f"--robot.image_height={IMAGE}",
            f"--robot.seed={SEED}", f"--robot.instruction={TASK}",
            "--teleop.type=sigma_scripted_expert", "--teleop.robot_id=rehearsal",
            f"--dataset.repo_id={REPO_ID}", f"--dataset.root={root}", f"--dataset.fps={FPS}",
            f"--dataset.episode_time_s={EPISODE_S}", "--dataset.reset_time_s=1", "--dataset.num_episodes=2",
            f"--dataset.single_task={TASK}", "--dataset.push_to_hub=false", "--play_sounds=false"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_LEROBOT_HOME": str(tmp / "hf_lerobot")}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(REPO_ID, root=root)


def _episodes(dataset) -> list[dict[str, np.ndarray]]:
    table = dataset.hf_dataset.with_format(None)
    index = np.asarray(table["episode_index"])
    columns = {k: np.asarray(table[k]) for k in ("observation.state", "action", "frame_index")}
    return [{k: v[index == e] for k, v in columns.items()} for e in range(dataset.meta.total_episodes)]


def test_lerobot_record_with_the_scripted_teleoperator_records_solved_demonstrations(recorded):
    meta = recorded.meta
    joints = ["shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos",
              "gripper.pos"]
    assert (meta.fps, meta.robot_type, meta.total_episodes) == (FPS, "sigma_so101_sim", 2)
    assert meta.features["observation.state"]["names"] == joints and meta.features["action"]["names"] == joints
    assert meta.features["observation.images.front"]["dtype"] == "video"
    assert tuple(meta.features["observation.images.front"]["shape"]) == (IMAGE, IMAGE, 3)
    assert list(meta.tasks.index) == [TASK]
    assert {recorded[i]["task"] for i in (0, len(recorded) - 1)} == {TASK}
    assert tuple(recorded[0]["observation.images.front"].shape) == (3, IMAGE, IMAGE)
    for e, episode in enumerate(_episodes(recorded)):
        n = len(episode["action"])
        assert 60 <= n <= EPISODE_S * FPS + 1, f"episode {e}: {n} frames (the record loop ran below 40% speed?)"
        np.testing.assert_array_equal(episode["frame_index"], np.arange(n))
        # Replayed on a fresh simulator with episode e's scene, the recorded actions reproduce the recorded joint
        # states frame by frame (each state was read before its action: the scene was reset before the episode's
        # first frame, so the teleoperator heard "Recording episode e"), and the task ends solved.
        robot = _sim(SEED + e, camera="")
        robot.connect()
        try:
            for state, action in zip(episode["observation.state"], episode["action"]):
                observed = robot.get_observation()
                np.testing.assert_allclose([observed[k] for k in joints], state, atol=0.05)  # degrees
                robot.send_action(dict(zip(joints, action.astype(float))))
            status = robot.episode_status()
        finally:
            robot.disconnect()
        assert status["success"] and status["target"] == "left", (e, status)
        assert episode["action"][:, 5].min() < 20 < 60 < episode["action"][:, 5].max()  # the gripper closed, opened


def test_recorded_dataset_trains_sigma_and_the_checkpoint_runs_a_closed_loop_step(recorded, tmp_path):
    from sigma_model import load_checkpoint
    from sigma_model.data.preprocess import main as preprocess_main
    from sigma_model.data.shards import ShardDataset
    from sigma_model.robot_bridge import RobotBridge
    from sigma_model.safety import SO101_JOINT_NAMES, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS
    from sigma_model.testing import small_config
    from sigma_model.training.train import main as train_main
    from sigma_sim.closed_loop import SigmaPolicy

    small = small_config(use_audio=False, image_size=IMAGE)
    shards = tmp_path / "shards"
    assert preprocess_main([f"--dataset={recorded.root}", f"--out_dir={shards}", f"--window.horizon_T={small.traj_len}",
                            f"--window.chunk_len={small.chunk_len}", f"--window.image_size=[{IMAGE},{IMAGE}]",
                            "--window.joint_units=degrees",
                            "--progress=false"]) == 0
    windows = ShardDataset(shards, require_complete=True)
    first = windows[0]
    assert first["text"] == TASK
    # The shards hold radians: the first window's state is the simulator's joint angles at the start of episode 0.
    robot = _sim(SEED, camera="")
    robot.connect()
    start = robot.env.joint_positions.copy()
    robot.disconnect()
    np.testing.assert_allclose(first["robot_state"].numpy(), start, atol=1e-4)
    episode0 = _episodes(recorded)[0]
    np.testing.assert_allclose(first["gt_action_vector"].numpy(), np.radians(episode0["action"][0, :5]).tolist()
                               + [SO101_LOWER_LIMITS[5] + episode0["action"][0, 5] / 100
                                  * (SO101_UPPER_LIMITS[5] - SO101_LOWER_LIMITS[5])], atol=1e-5)

    out = tmp_path / "run"
    model_flags = [f"--model.{name}={getattr(small, name)}"
                   for name in ("d_model", "n_heads", "image_size", "patch_size", "use_audio", "chunk_len", "traj_len")]
    assert train_main([f"--train.shards_dir={shards}", f"--train.output_dir={out}", "--train.max_steps=2",
                       "--train.batch_size=4", "--train.warmup_steps=1", "--train.curriculum_steps=2",
                       "--progress=false", *model_flags]) == 0
    model = load_checkpoint(out / "checkpoints" / "step_00000002" / "model")

    # One closed-loop step on the simulator through the robot bridge (sigma-robot's logic): read, plan, command, send.
    robot = _sim(SEED + 7)
    bridge = RobotBridge(robot, SO101_JOINT_NAMES, SO101_LOWER_LIMITS, SO101_UPPER_LIMITS, SO101_LOWER_LIMITS,
                         SO101_UPPER_LIMITS)
    try:
        obs = bridge.connect()
        policy = SigmaPolicy(model)
        policy.reset(TASK, seed=0)
        target = policy.act({"image": obs.frames["front"], "joint_positions": obs.positions})
        assert target.shape == (6,) and np.isfinite(target).all()
        bridge.command(target, time.monotonic())
        tick = bridge.tick(time.monotonic())
        assert tick.error == "" and tick.sent is not None and robot.episode_status()["step"] == 1
    finally:
        bridge.close()


def test_scripted_teleoperator_is_a_lerobot_teleoperator_that_follows_the_record_cues(caplog):
    _gl_or_skip()
    from lerobot.teleoperators import make_teleoperator_from_config
    from lerobot.teleoperators.config import TeleoperatorConfig
    from lerobot.utils.utils import log_say

    from lerobot_robot_sigma_sim import SigmaScriptedExpert

    config = TeleoperatorConfig.get_choice_class("sigma_scripted_expert")(robot_id="cues")
    teleop = make_teleoperator_from_config(config)
    assert isinstance(teleop, SigmaScriptedExpert)
    with pytest.raises(LookupError, match="no connected sigma_so101_sim robot with id 'cues'.*--robot.type"):
        teleop.connect()
    robot = _sim(SEED, id="cues")
    robot.connect()
    try:
        teleop.connect()
        assert teleop.action_features == robot.action_features and teleop.feedback_features == {}
        for _ in range(3):
            robot.send_action(teleop.get_action())
        caplog.set_level(logging.INFO)  # as lerobot-record's init_logging
        log_say("Reset the environment", play_sounds=False)
        assert robot.episodes_started == 1
        log_say("Recording episode 3", play_sounds=False)
        assert robot.episodes_started == 2 and robot.episode_steps == 0
        reference = _sim(SEED + 3, camera="")
        reference.connect()
        np.testing.assert_array_equal(robot.env.cube_pos, reference.env.cube_pos)  # episode 3's scene
        reference.disconnect()
        teleop.disconnect()
        log_say("Recording episode 4", play_sounds=False)  # no longer listening
        assert robot.episodes_started == 2
    finally:
        robot.disconnect()
    robot = _sim(SEED, id="cues", instruction="")
    robot.connect()
    try:
        with pytest.raises(ValueError, match="--robot.instruction"):
            SigmaScriptedExpert(config).connect()
    finally:
        robot.disconnect()
