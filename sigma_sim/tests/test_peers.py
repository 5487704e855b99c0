# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Sigma's peers (sigma_sim.peers).

The recipes state LeRobot's real defaults and their lerobot-train flags set the changes; LeRobot's ACT and Diffusion
Policy train a few steps with LeRobot's training loop on a simulator dataset and run a closed-loop episode through
`sigma-closed-loop --policy_path`, reported in Sigma's format.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from lerobot.configs.train import TrainPipelineConfig
from sigma_sim.closed_loop import ClosedLoopConfig, evaluate
from sigma_sim.closed_loop_cli import main as closed_loop_main
from sigma_sim.lerobot_closed_loop import LeRobotPolicyAdapter
from sigma_sim.peers import (LEROBOT_SAVE_FREQ, LEROBOT_SEED, PEERS, flag_value, main, policy_config,
                             recipes_table, train_command, train_config)
from sigma_sim.so101_env import SimConfig, SO101PickPlaceEnv

import sigma_sim


def test_recipes_state_lerobots_defaults_and_their_flags_set_the_changes():
    for name, recipe in PEERS.items():
        config = policy_config(name)
        assert config.type == recipe.policy_type, name
        default = type(config)()  # LeRobot's defaults
        for change in recipe.changes:
            assert flag_value(getattr(default, change.option)) == flag_value(change.default), (name, change.option)
            assert flag_value(getattr(config, change.option)) == flag_value(change.value), (name, change.option)
            assert change.value != change.default and change.why
        untouched = {"chunk_size", "n_action_steps", "horizon", "down_dims", "dim_model"} - {
            c.option for c in recipe.changes
        }
        for option in untouched & set(vars(default)):
            assert getattr(config, option) == getattr(default, option), (name, option)
    assert {r.policy_type for r in PEERS.values()} == {"act", "diffusion"}
    assert [n for n, r in PEERS.items() if r.scaled_down] == ["act_small", "diffusion_small"]
    table = recipes_table()
    assert "`act_small` (scaled down)" in table and "`chunk_size=16` (`100`)" in table
    assert "`pretrained_backbone_weights=null` (`ResNet18_Weights.IMAGENET1K_V1`)" in table


def test_the_printed_lerobot_train_command_is_the_config_that_trains(tmp_path):
    options = dict(steps=7, batch_size=3, num_workers=0, seed=4, save_freq=5)
    cfg = train_config("act_small", tmp_path / "data", tmp_path / "out", **options)
    command = train_command("act_small", tmp_path / "data", tmp_path / "out", **options)
    assert (
        command[0].endswith("lerobot-train")
        and command[1 : len(PEERS["act_small"].flags()) + 1] == PEERS["act_small"].flags()
    )
    for flag in command[len(PEERS["act_small"].flags()) + 1:]:
        key, value = flag.removeprefix("--").split("=", 1)
        obj = cfg
        for part in key.split("."):
            obj = getattr(obj, part)
        assert flag_value(obj) == value or str(obj) == value, flag
    assert not cfg.policy.push_to_hub and cfg.policy.chunk_size == 16
    assert (cfg.seed, cfg.save_freq) == (4, 5) and "--seed=4" in command and "--save_freq=5" in command
    lerobot_defaults = {f.name: f.default for f in dataclasses.fields(TrainPipelineConfig)}
    assert (lerobot_defaults["seed"], lerobot_defaults["save_freq"]) == (LEROBOT_SEED, LEROBOT_SAVE_FREQ)
    default = train_config("act_small", tmp_path / "data", tmp_path / "out", steps=7)
    assert (default.seed, default.save_freq) == (LEROBOT_SEED, LEROBOT_SAVE_FREQ)


def test_peers_read_only_the_camera_and_joints_of_a_dataset_that_records_the_cube_pose(tmp_path):
    """sigma-make-default's dataset also holds the simulator's cube pose: privileged, never a peer's input."""
    import draccus
    from lerobot.policies.act.configuration_act import ACTConfig

    from sigma_sim.record import ENV_STATE_KEY, IMAGE_KEY, STATE_KEY

    features = {IMAGE_KEY: {"dtype": "image", "shape": [32, 48, 3], "names": ["height", "width", "channels"]},
                STATE_KEY: {"dtype": "float32", "shape": [6], "names": None},
                "action": {"dtype": "float32", "shape": [6], "names": None}}
    (tmp_path / "meta").mkdir()
    for extra, restricted in [({}, False), ({ENV_STATE_KEY: {"dtype": "float32", "shape": [7], "names": None}}, True)]:
        (tmp_path / "meta" / "info.json").write_text(json.dumps({"features": {**features, **extra}}))
        cfg = train_config("act_small", tmp_path, tmp_path / "out", steps=1)
        flags = [f for f in train_command("act_small", tmp_path, tmp_path / "out", steps=1)
                 if f.startswith("--policy.input_features=")]
        if not restricted:  # LeRobot makes every dataset column an input: nothing to restrict
            assert not cfg.policy.input_features and not flags
            continue
        assert {k: (f.type.value, f.shape) for k, f in cfg.policy.input_features.items()} == {
            IMAGE_KEY: ("VISUAL", (3, 32, 48)), STATE_KEY: ("STATE", (6,))}
        (flag,) = flags  # the printed lerobot-train flag parses to the same inputs
        parsed = draccus.parse(config_class=ACTConfig, args=[flag.replace("--policy.", "--", 1)])
        assert parsed.input_features == cfg.policy.input_features


def test_training_a_peer_refuses_a_missing_dataset_or_an_existing_output(tmp_path, capsys):
    for argv, words in [(["--peer=act_small", f"--root={tmp_path / 'none'}", f"--output_dir={tmp_path / 'o'}"],
                         "is not a LeRobot dataset"),
                        (["--peer=act_small", f"--root={tmp_path}", f"--output_dir={tmp_path}"], "exists")]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and words in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.skipif(sigma_sim.GL_BACKEND is None, reason="no headless OpenGL (libegl1 / libosmesa6)")
@pytest.mark.parametrize("peer", ["act_small", "diffusion_small"])
def test_peer_trains_on_the_sim_dataset_and_runs_a_closed_loop_episode(peer, tiny_dataset, tmp_path):
    out = tmp_path / "train"
    assert main([f"--peer={peer}", f"--root={tiny_dataset}", f"--output_dir={out}", "--steps=2", "--batch_size=2",
                 "--num_workers=0"]) == 0
    last = out / "checkpoints" / "last"
    assert json.loads((last / "training_state" / "training_step.json").read_text())["step"] == 2
    pretrained = last / "pretrained_model"

    adapter = LeRobotPolicyAdapter.from_pretrained(pretrained)
    assert adapter.policy.config.type == PEERS[peer].policy_type and adapter.image_size == (32, 32)
    env = SO101PickPlaceEnv(SimConfig(image_width=32, image_height=32))
    try:
        obs, _ = env.reset(seed=3)
        adapter.reset("pick the cube and place it on the left", 3)
        action = adapter.act(obs)
    finally:
        env.close()
    assert action.shape == (6,) and np.isfinite(action).all()

    report_dir = tmp_path / "eval"
    assert closed_loop_main([f"--policy_path={pretrained}", "--episodes=1", "--max_steps=10", f"--output={report_dir}",
                             "--quiet=true"]) == 0
    report = json.loads((report_dir / "sigma_eval_report.json").read_text())
    name = f"lerobot_{PEERS[peer].policy_type}"
    assert set(report["closed_loop"]) == {name}
    closed, condition = report["closed_loop"][name], report["conditions"][name]
    assert closed["episodes"] == 1 and closed["successes"] == 0 and closed["mean_abs_delta_command"] > 0
    assert condition["policy_type"] == PEERS[peer].policy_type and condition["policy_path"] == str(pretrained)
    assert condition["extra"]["latency_ms_policy"] > 0 and condition["extra"]["episode_steps"] == 10
    assert report["meta"]["replan_every"] == policy_config(peer).n_action_steps
    sigma_format, _ = evaluate(None, ClosedLoopConfig(episodes=1, max_steps=3, conditions=("expert",)))
    assert report.keys() - {"files"} == sigma_format.keys() and report["format"] == sigma_format["format"]
    assert closed.keys() == sigma_format["closed_loop"]["expert"].keys()
