# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The sigma policy type in-process: config, batch mapping, curriculum, action queue, processors."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import NormalizationMode
from safetensors.torch import load_file, save_file
from sigma_model.training import Curriculum, SigmaTrainer, TrainingConfig

from sigma_model.testing import cli_error
from sigma_sim.closed_loop_cli import main as closed_loop_main

from conftest import CURRICULUM_STEPS, IMAGE_KEY, TINY_MODEL, policy_config
from lerobot_policy_sigma import (
    SigmaConfig,
    SigmaPolicy,
    make_sigma_pre_post_processors,
)
from lerobot_policy_sigma.export import main as export_main
from lerobot_policy_sigma.modeling_sigma import NAMED_KEYS

B = 2


def lerobot_batch(config: SigmaConfig, seed: int = 0, previous: bool = True) -> dict:
    """Return a normalised training batch as LeRobot's dataset + preprocessor deliver it."""
    g = torch.Generator().manual_seed(seed)
    m = config.model
    t = (2,) if previous else ()
    batch = {
        IMAGE_KEY: torch.rand(B, *t, 3, m.image_size, m.image_size, generator=g),
        "observation.state": torch.randn(B, *t, m.state_dim, generator=g),
        "action": torch.randn(B, m.traj_len, m.action_dim, generator=g),
        "task": ["pick the cube and place it on the left", "place it right"],
    }
    if previous:
        batch["observation.state_is_pad"] = torch.tensor([[True, False], [False, False]])
    return batch


def observation(config: SigmaConfig, seed: int = 1) -> dict:
    batch = lerobot_batch(config, seed, previous=False)
    return {k: v for k, v in batch.items() if k != "action"}


def make_policy(config: SigmaConfig | None = None, seed: int = 0) -> SigmaPolicy:
    torch.manual_seed(seed)
    return SigmaPolicy(config or policy_config())


# ------------------------------------------------------------------------ config
def test_config_is_registered_and_round_trips(tmp_path):
    config = policy_config(rho_hard=0.5)
    assert PreTrainedConfig.get_choice_class("sigma") is SigmaConfig and config.type == "sigma"
    config.save_pretrained(tmp_path)
    loaded = PreTrainedConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, SigmaConfig)
    assert loaded.model == config.model and loaded.loss == config.loss and loaded.finetune == config.finetune
    assert loaded.input_features == config.input_features and loaded.output_features == config.output_features


def test_dataset_windows_follow_the_shards():
    config = policy_config()
    assert config.action_delta_indices == list(range(TINY_MODEL.traj_len))
    assert config.observation_delta_indices == [-1, 0]  # the two-pass memory reads the preceding frame
    assert config.drop_n_last_frames == TINY_MODEL.traj_len - 1
    assert config.chunk_size == TINY_MODEL.traj_len and config.n_action_steps == TINY_MODEL.n_action_steps
    assert policy_config(memory_mode="zeros").observation_delta_indices is None
    assert policy_config(use_previous_window=False).observation_delta_indices is None


@pytest.mark.parametrize("change, message", [
    ({"model": dataclasses.replace(TINY_MODEL, controller_gain=0.5)}, "controller_gain"),
    ({"model": dataclasses.replace(TINY_MODEL, chunk_len=6)}, "chunk_len"),
    ({"model": dataclasses.replace(TINY_MODEL, env_state_dim=7)}, "env_state_dim"),
    ({"model": dataclasses.replace(TINY_MODEL, state_mean=(0.0,) * 6, state_std=(1.0,) * 6)}, "normalise"),
    ({"scheduler_decay": "exp"}, "scheduler_decay"),
])
def test_config_rejects_what_the_policy_cannot_do(change, message):
    with pytest.raises(ValueError, match=message):
        SigmaConfig(**{"model": TINY_MODEL, "device": "cpu", **change})


def test_model_statistics_are_allowed_without_processor_normalisation():
    model = dataclasses.replace(TINY_MODEL, state_mean=(0.0,) * 6, state_std=(2.0,) * 6)
    identity = {k: NormalizationMode.IDENTITY for k in ("VISUAL", "STATE", "ACTION")}
    assert SigmaConfig(model=model, normalization_mapping=identity, device="cpu").model.state_std == (2.0,) * 6


def test_features_set_the_model_sizes_and_must_fit():
    config = policy_config(model=dataclasses.replace(TINY_MODEL, state_dim=4, action_dim=4))
    config.validate_features()
    assert (config.model.state_dim, config.model.action_dim) == (6, 6)
    config.input_features = {"observation.state": config.input_features["observation.state"]}
    with pytest.raises(ValueError, match="camera"):
        config.validate_features()
    config = policy_config()
    config.image_key = "observation.images.wrist"
    with pytest.raises(ValueError, match="image_key"):
        config.validate_features()


# ---------------------------------------------------------------------- training
def test_sigma_batch_is_the_shard_window():
    policy = make_policy()
    batch = lerobot_batch(policy.config)
    s = policy.sigma_batch(batch)
    m = policy.config.model
    assert torch.equal(s["vision_inputs"], batch[IMAGE_KEY][:, 1]) and torch.equal(
        s["prev_vision_inputs"], batch[IMAGE_KEY][:, 0]
    )
    assert torch.equal(s["robot_state"], batch["observation.state"][:, 1])
    assert torch.equal(s["prev_robot_state"], batch["observation.state"][:, 0])
    assert s["has_previous"].tolist() == [False, True]
    assert torch.equal(s["gt_action_vector"], batch["action"][:, 0])
    assert torch.equal(s["gt_action_chunk"], batch["action"][:, : m.chunk_len])
    assert torch.equal(s["gt_action_trajectory"], batch["action"][:, : m.traj_len])
    assert s["text"] == batch["task"]
    assert torch.equal(s["audio"], torch.zeros(B, m.audio_chunk_samples)) and torch.equal(s["prev_audio"], s["audio"])
    silent = make_policy(policy_config(model=dataclasses.replace(TINY_MODEL, use_audio=False)))
    assert "audio" not in silent.sigma_batch(batch) and "prev_audio" not in silent.sigma_batch(batch)
    with pytest.raises(ValueError, match="task"):
        policy.sigma_batch({k: v for k, v in batch.items() if k != "task"})
    with pytest.raises(ValueError, match="action"):
        policy.sigma_batch({**batch, "action": batch["action"][:, 0]})


def test_update_advances_the_curriculum():
    policy = make_policy()
    policy.train()
    curriculum = Curriculum.from_config(policy.config.loss)
    batch = lerobot_batch(policy.config)
    seen = []
    for _ in range(CURRICULUM_STEPS + 1):
        loss, metrics = policy(batch)
        assert torch.isfinite(loss) and loss.requires_grad
        seen.append((metrics["curriculum_step"], metrics["w_sem"], metrics["w_int"], metrics["w_tau"]))
        policy.update()
    want = [(k, *dataclasses.astuple(curriculum(k))) for k in range(CURRICULUM_STEPS + 1)]
    assert seen == want
    assert seen[0][1] != seen[-1][1]
    assert int(policy.curriculum_step) == CURRICULUM_STEPS + 1


def test_only_lora_and_heads_train():
    policy = make_policy()
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert {id(p) for p in policy.get_optim_params()} == {id(p) for n, p in policy.named_parameters() if n in trainable}
    backbone = [n for n in trainable if ".backbone." in n]
    assert backbone and all(".lora_" in n for n in backbone)
    assert any(n.startswith("model.action.") for n in trainable)


def test_training_presets_are_sigma_trains_optimiser_and_schedule(tmp_path):
    steps = 30
    run = TrainingConfig(synthetic_samples=4, batch_size=2, max_steps=steps, warmup_steps=5, min_lr_ratio=0.1,
                         learning_rate=3e-4, output_dir=str(tmp_path), device="cpu")
    config = policy_config()
    config.optimizer_lr, config.scheduler_warmup_steps, config.scheduler_min_lr_ratio = 3e-4, 5, 0.1
    trainer = SigmaTrainer(run, TINY_MODEL)
    policy = make_policy(config)
    optimizer = config.get_optimizer_preset().build(policy.get_optim_params())
    scheduler = config.get_scheduler_preset().build(optimizer, steps)
    assert type(optimizer) is type(trainer.optimizer)
    assert config.get_optimizer_preset().grad_clip_norm == run.max_grad_norm
    for key in ("lr", "betas", "eps", "weight_decay"):
        assert optimizer.param_groups[0][key] == trainer.optimizer.param_groups[0][key], key
    ours, theirs = [], []
    for _ in range(steps):
        ours.append(optimizer.param_groups[0]["lr"])
        theirs.append(trainer.optimizer.param_groups[0]["lr"])
        optimizer.step(), scheduler.step(), trainer.optimizer.step(), trainer.scheduler.step()
    assert ours == pytest.approx(theirs, rel=1e-12) and len(set(ours)) > 10


# ------------------------------------------------------------------------ acting
def test_select_action_runs_each_plan_for_n_action_steps_and_reset_clears_tau_and_memory():
    policy = make_policy()
    obs = observation(policy.config)
    n = policy.config.n_action_steps
    first = policy.predict_action_chunk(obs)
    second = policy.predict_action_chunk(obs)  # tau and memory of the first plan carried in
    assert first.shape == (B, n, policy.config.model.action_dim)
    assert not torch.allclose(first, second)
    policy.reset()
    actions = [policy.select_action(obs) for _ in range(n + 1)]
    assert torch.allclose(torch.stack(actions[:n], dim=1), first)
    assert torch.allclose(actions[n], second[:, 0])
    policy.reset()
    assert policy._tau is None and policy._memory is None and not policy._queue
    assert torch.allclose(policy.select_action(obs), first[:, 0])


def test_plans_longer_than_the_trajectory_hold_its_last_step():
    model = dataclasses.replace(TINY_MODEL, n_action_steps=TINY_MODEL.traj_len + 2)
    policy = make_policy(policy_config(model=model))
    chunk = policy.predict_action_chunk(observation(policy.config))
    assert chunk.shape == (B, model.traj_len + 2, model.action_dim)
    assert torch.equal(chunk[:, -1], chunk[:, -3])


def test_save_and_from_pretrained_keep_weights_and_curriculum(tmp_path):
    policy = make_policy()
    policy.update()
    policy.update()
    policy.save_pretrained(tmp_path)
    loaded = SigmaPolicy.from_pretrained(tmp_path)
    assert int(loaded.curriculum_step) == 2
    obs = observation(policy.config)
    assert torch.equal(loaded.predict_action_chunk(obs), policy.predict_action_chunk(obs))


def save_policy(directory: Path, config: SigmaConfig | None = None) -> Path:
    """Save a tiny sigma policy with its processors (unit statistics) as lerobot-train does."""
    config = config or policy_config()
    unit = {"mean": torch.zeros(6), "std": torch.ones(6)}
    make_policy(config).save_pretrained(directory)
    for processor in make_sigma_pre_post_processors(config, {"observation.state": unit, "action": unit}):
        processor.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("task", ["", ["", ""], ["  ", "\n"], ["pick the cube", "\u200b"]])
def test_blank_instructions_are_refused(task):
    policy = make_policy()
    n = 1 if isinstance(task, str) else len(task)
    obs = {k: v[:n] for k, v in observation(policy.config).items() if k != "task"}
    with pytest.raises(ValueError, match="blank instruction"):
        policy.predict_action_chunk({**obs, "task": task})
    batch = {k: v[:n] for k, v in lerobot_batch(policy.config).items() if k != "task"}
    with pytest.raises(ValueError, match="blank instruction"):
        policy({**batch, "task": task})


def test_images_are_uint8_or_float_in_the_unit_range():
    policy = make_policy()
    obs = observation(policy.config)
    pixels = (obs[IMAGE_KEY] * 255).round().to(torch.uint8)
    unit = {**obs, IMAGE_KEY: pixels.float() / 255}
    want = policy.predict_action_chunk(unit)
    for image in (pixels, unit[IMAGE_KEY].double()):
        policy.reset()
        assert torch.allclose(policy.predict_action_chunk({**obs, IMAGE_KEY: image}), want, atol=1e-6)
    policy.reset()
    assert torch.allclose(policy.predict_action_chunk({**obs, IMAGE_KEY: unit[IMAGE_KEY].half()}), want, atol=1e-2)
    with pytest.raises(ValueError, match=r"float images must be in \[0, 1\].*uint8"):
        policy.predict_action_chunk({**obs, IMAGE_KEY: pixels.float()})
    batch = lerobot_batch(policy.config)
    with pytest.raises(ValueError, match=r"float images must be in \[0, 1\]"):
        policy({**batch, IMAGE_KEY: batch[IMAGE_KEY] * 255})
    assert torch.isfinite(policy({**batch, IMAGE_KEY: batch[IMAGE_KEY].double()})[0])


def test_an_empty_batch_is_refused():
    policy = make_policy()
    obs, batch = observation(policy.config), lerobot_batch(policy.config)
    with pytest.raises(ValueError, match="empty batch"):
        policy.predict_action_chunk({**{k: v[:0] for k, v in obs.items()}, "task": []})
    with pytest.raises(ValueError, match="empty batch"):
        policy({**{k: v[:0] for k, v in batch.items()}, "task": []})


def test_a_batch_of_another_size_before_reset_is_refused():
    policy = make_policy()
    obs = observation(policy.config)
    one = {k: v[:1] for k, v in obs.items()}
    policy.select_action(obs)
    for act in (policy.select_action, policy.predict_action_chunk):
        with pytest.raises(ValueError, match=r"a batch of 1 in an episode of batches of 2; call reset\(\)"):
            act(one)
    policy.reset()
    assert policy.select_action(one).shape == (1, policy.config.model.action_dim)


def test_unusable_saved_policies_are_one_line_errors(tmp_path, capsys):
    base = save_policy(tmp_path / "base")
    other = save_policy(tmp_path / "other", policy_config(model=dataclasses.replace(TINY_MODEL, d_model=64)))
    weights = "model.safetensors"
    stats = "policy_preprocessor_step_3_normalizer_processor.safetensors"
    truncated = (base / weights).read_bytes()[:1000]
    cases = {
        "truncated": (lambda d: (d / weights).write_bytes(truncated), f"{weights} is not a readable safetensors"),
        "empty": (lambda d: (d / weights).write_bytes(b""), f"{weights} is not a readable safetensors"),
        "no_weights": (lambda d: (d / weights).unlink(), f"{weights} is missing"),
        "other_weights": (lambda d: shutil.copy(other / weights, d), "config.json: size mismatch for model."),
        "other_config": (lambda d: shutil.copy(other / "config.json", d), "config.json: size mismatch for model."),
        "no_stats": (lambda d: (d / stats).unlink(), f"{stats} is missing (policy_preprocessor.json references it)"),
    }
    for name, (damage, message) in cases.items():
        directory = shutil.copytree(base, tmp_path / name)
        damage(directory)
        with pytest.raises((ValueError, FileNotFoundError)) as raised:
            SigmaPolicy.from_pretrained(directory)
        assert str(directory) in str(raised.value) and message in str(raised.value), (name, raised.value)
        assert "\n" not in str(raised.value)
        error = cli_error(export_main, [f"--pretrained={directory}", f"--output={tmp_path / 'out'}"], capsys)
        assert error.startswith(f"sigma-from-lerobot: error: {directory}/") and message in error, (name, error)
    assert isinstance(SigmaPolicy.from_pretrained(base), SigmaPolicy)


def test_weights_missing_from_or_foreign_to_the_file_are_refused_whatever_strict_says(tmp_path, capsys):
    """LeRobot loads non-strictly (a missing head would act at random init): each loading path names the keys."""
    base = save_policy(tmp_path / "base")
    weights = load_file(base / "model.safetensors")
    head = sorted(k for k in weights if ".action_token_head." in k)
    many = sorted(weights)[:NAMED_KEYS + 2]
    cases = {
        "missing_head": ({k: v for k, v in weights.items() if k not in head},
                         "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in head)),
        "missing_many": ({k: v for k, v in weights.items() if k not in many},
                         f'"{many[NAMED_KEYS - 1]}", ... ({len(many)} in all)'),
        "unexpected": ({**weights, "model.stray": torch.zeros(2)}, 'Unexpected key(s) in state_dict: "model.stray"'),
    }
    for name, (tensors, message) in cases.items():
        directory = shutil.copytree(base, tmp_path / name)
        save_file(tensors, directory / "model.safetensors")
        for strict in ({}, {"strict": False}, {"strict": True}):
            with pytest.raises(ValueError) as raised:
                SigmaPolicy.from_pretrained(directory, **strict)
            line = str(raised.value)
            assert line.startswith(f"{directory}/model.safetensors does not fit its config.json: "), line
            assert message in line and "\n" not in line, (name, strict, line)
        error = cli_error(closed_loop_main, [f"--policy_path={directory}", "--episodes=1"], capsys)
        assert error.startswith(f"sigma-closed-loop: error: {directory}/") and message in error, (name, error)


# -------------------------------------------------------------------- processors
def test_processors_normalise_and_unnormalise_with_the_dataset_stats():
    config = policy_config()
    stats = {"observation.state": {"mean": torch.arange(6.0), "std": torch.full((6,), 2.0)},
             "action": {"mean": -torch.arange(6.0), "std": torch.full((6,), 0.5)},
             IMAGE_KEY: {"mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.1)}}
    pre, post = make_sigma_pre_post_processors(config, stats)
    frame = {IMAGE_KEY: torch.rand(3, 32, 32), "observation.state": torch.randn(6), "action": torch.randn(6),
             "task": "pick the cube"}
    out = pre(dict(frame))
    assert torch.allclose(out["observation.state"], ((frame["observation.state"] - torch.arange(6.0)) / 2.0)[None])
    assert torch.allclose(out["action"], ((frame["action"] + torch.arange(6.0)) / 0.5)[None])
    assert torch.equal(out[IMAGE_KEY], frame[IMAGE_KEY][None])  # images stay in [0, 1]
    assert out["task"] == ["pick the cube"]
    assert torch.allclose(post(out["action"]), frame["action"][None], atol=1e-6)
