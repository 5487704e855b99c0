# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""`lerobot-train --policy.type=sigma` on a tiny simulator dataset.

The result loads, computes the same loss as sigma-train on the same windows, and acts in the closed loop as Sigma's own
runtime does.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.datasets.factory import resolve_delta_timestamps
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.factory import get_policy_class, make_pre_post_processors
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot_policy_sigma.export import main as export_main
from sigma_model.data.preprocess import main as preprocess_main
from sigma_model.training import Curriculum, SigmaTrainer, TrainingConfig
from sigma_model.training.batching import collate_samples
from torch.utils.data import default_collate

from conftest import CURRICULUM_STEPS, REPO_ID, TRAIN_STEPS
from lerobot_policy_sigma import SigmaPolicy, export_sigma_checkpoint
from sigma_model import load_checkpoint
from sigma_model.testing import cli_error, cli_help


def load_trained(pretrained_dir) -> tuple[PreTrainedPolicy, object, object]:
    """As LeRobot's commands load a policy: the type from config.json, then the class's from_pretrained."""
    config = PreTrainedConfig.from_pretrained(pretrained_dir)
    policy = get_policy_class(config.type).from_pretrained(pretrained_dir)
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(pretrained_dir))
    return policy, pre, post


def test_lerobot_train_result_loads_with_the_curriculum_advanced(pretrained_dir):
    policy, _, _ = load_trained(pretrained_dir)
    assert isinstance(policy, SigmaPolicy) and not policy.training
    assert int(policy.curriculum_step) == TRAIN_STEPS  # update() ran after each of the optimiser steps
    lora_b = [p for n, p in policy.named_parameters() if ".lora_B." in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # LoRA B starts at zero: the adapters trained


def test_lerobot_train_and_sigma_train_compute_the_same_loss(pretrained_dir, tiny_dataset, tmp_path):
    policy, pre, _ = load_trained(pretrained_dir)
    m = policy.config.model
    # sigma-train's side: the same weights as a Sigma checkpoint, the same dataset as sigma-preprocess shards
    export = export_sigma_checkpoint(policy, pre, tmp_path / "sigma")
    shards = tmp_path / "shards"
    assert preprocess_main([f"--dataset={tiny_dataset}", f"--out_dir={shards}", f"--window.horizon_T={m.traj_len}",
                            f"--window.chunk_len={m.chunk_len}", f"--window.image_size=[{m.image_size},{m.image_size}]",
                            "--progress=false"]) == 0
    run = TrainingConfig(**dataclasses.asdict(policy.config.loss), **dataclasses.asdict(policy.config.finetune),
                         shards_dir=str(shards), init_checkpoint=str(export), output_dir=str(tmp_path / "run"),
                         device="cpu", batch_size=2, warmup_steps=0)
    trainer = SigmaTrainer(run)
    samples = [trainer.dataset[i] for i in range(len(trainer.dataset))]
    silence = torch.zeros(m.audio_chunk_samples)  # LeRobot data has no audio: the policy hears silence
    picked = [{**samples[i], "audio": silence, "prev_audio": silence}  # an episode's first window (no
              for i in (0, -1)]                                        # previous frame) and a later one
    assert [bool(s["has_previous"]) for s in picked] == [False, True]
    sigma = trainer.evaluate(collate_samples(picked), seed=7, weights_step=TRAIN_STEPS)

    # lerobot-train's side: the same windows from LeRobotDataset through the saved preprocessor
    meta = LeRobotDataset(REPO_ID, root=tiny_dataset).meta
    dataset = LeRobotDataset(REPO_ID, root=tiny_dataset, delta_timestamps=resolve_delta_timestamps(policy.config, meta))
    starts = meta.episodes["dataset_from_index"]
    index = [int(starts[int(s["episode_index"])]) + int(s["frame_index"]) for s in picked]
    batch = pre(default_collate([dataset[i] for i in index]))
    with torch.no_grad():
        loss, metrics = policy.forward(batch, generator=torch.Generator().manual_seed(7))

    assert metrics["curriculum_step"] == TRAIN_STEPS
    assert metrics["w_sem"] == Curriculum.from_config(policy.config.loss)(TRAIN_STEPS).w_sem != \
        Curriculum.from_config(policy.config.loss)(0).w_sem
    assert CURRICULUM_STEPS > TRAIN_STEPS
    assert metrics.keys() - {"curriculum_step"} == sigma.keys()  # every column sigma-train logs
    for key, value in sigma.items():  # measured: they agree to about 1e-7 relative
        assert metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert float(loss) == pytest.approx(sigma["loss"], rel=1e-5)


def test_the_trained_policy_acts_in_the_closed_loop_as_sigma_runtime_does(pretrained_dir, tmp_path):
    from sigma_sim.closed_loop import ClosedLoopConfig, run_episode
    from sigma_sim.closed_loop import SigmaPolicy as SigmaRuntime
    from sigma_sim.lerobot_closed_loop import LeRobotPolicyAdapter
    from sigma_sim.so101_env import SimConfig, SO101PickPlaceEnv

    adapter = LeRobotPolicyAdapter.from_pretrained(pretrained_dir)
    export = export_sigma_checkpoint(adapter.policy, adapter.preprocessor, tmp_path / "sigma")
    runtime = SigmaRuntime(load_checkpoint(export))  # the closed-loop evaluation's Sigma on the exported weights
    env = SO101PickPlaceEnv(SimConfig(image_width=32, image_height=32, max_episode_steps=40))
    try:
        instruction = "pick the cube and place it on the left"
        obs, _ = env.reset(seed=3, instruction=instruction)
        adapter.reset(instruction, 3)
        runtime.reset(instruction, 3)
        for _ in range(2 * adapter.policy.config.n_action_steps + 1):  # three plans, tau and memory carried
            ours, theirs = adapter.act(obs), runtime.act(obs)
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)  # measured: within 1.2e-7 rad
            obs, *_ = env.step(theirs)
        outcome = run_episode(env, adapter, seed=4, instruction=instruction, config=ClosedLoopConfig(max_steps=12),
                              condition="sigma_lerobot")
    finally:
        env.close()
    assert outcome.steps == 12 and not outcome.success and len(adapter.latency["policy"]) == 12
    assert outcome.mean_abs_delta_command > 0


def test_sigma_from_lerobot_command_line(capsys):
    """ExportConfig's fields are the flags; a missing one or the old positional form is one line and exit 2."""
    text = cli_help(export_main, capsys)
    assert "--pretrained " in text and "--output " in text
    assert cli_error(export_main, ["--pretrained=x"], capsys) == \
        "sigma-from-lerobot: error: --pretrained and --output are required"
    assert cli_error(export_main, ["x", "y"], capsys) == ("sigma-from-lerobot: error: unrecognized arguments: x y (no "
                                                          "positional arguments: write --FIELD=VALUE, a list as "
                                                          "--FIELD=[a,b])")


def test_sigma_from_lerobot_writes_a_sigma_checkpoint(pretrained_dir, tmp_path, capsys):
    out = tmp_path / "ckpt"
    assert export_main([f"--pretrained={pretrained_dir}", f"--output={out}"]) == 0
    model = load_checkpoint(out)
    assert model.config.state_mean is not None and model.config.action_std is not None
    from lerobot.policies.act.configuration_act import ACTConfig

    ACTConfig(device="cpu").save_pretrained(tmp_path / "act")
    for source, target, message in ((pretrained_dir, out, "exists"), (tmp_path / "act", tmp_path / "a", "'act' policy"),
                                    (tmp_path / "missing", tmp_path / "m", "no config.json")):
        with pytest.raises(SystemExit) as err:
            export_main([f"--pretrained={source}", f"--output={target}"])
        assert err.value.code == 2 and message in capsys.readouterr().err
        assert target == out or not target.exists()
