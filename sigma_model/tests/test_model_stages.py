# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Stage composition, per-workspace checkpoints, configs and input validation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file, save_file

from sigma_model import SigmaConfig, SigmaModel, SigmaObservation, load_checkpoint, save_checkpoint
from sigma_model.checkpoint import CheckpointError, workspace_file

from sigma_model.testing import TEXT, make_observation, make_tau_matter_, randomize_, small_config


def run_stages(vision_model, language_model, action_model, obs, texts, tau_prev, memory_prev, seed):
    """Do what the three ROS nodes do, in order, each with its own model object."""
    text = language_model.tokenize(texts)
    vis = vision_model.vision_stage(obs, tau_prev)
    lang = language_model.language_stage(text, vis.vision_tokens, vis.state_tokens, memory_prev)
    act = action_model.action_stage(lang.high_level_rep, lang.high_level_mask, lang.tau, vis.state_tokens,
                                    generator=torch.Generator().manual_seed(seed))
    cmd = action_model.control_stage(act.action_vector, act.action_chunk, act.action_trajectory, obs.robot_state)
    return lang, act, cmd


def test_stage_composition_equals_whole_forward(model, obs):
    randomize_(model.action.residual_head, seed=2)
    tau_prev, memory_prev = torch.randn(2, model.config.d_tau), torch.randn(2, model.config.d_model)
    with torch.no_grad():
        whole = model(obs, model.tokenize(TEXT), tau_prev, memory_prev, generator=torch.Generator().manual_seed(4))
        lang, act, cmd = run_stages(model, model, model, obs, TEXT, tau_prev, memory_prev, seed=4)
    assert torch.equal(whole.motor_commands, cmd)
    assert torch.equal(whole.language.tau, lang.tau)
    assert torch.equal(whole.language.memory, lang.memory)
    assert torch.equal(whole.action.action_trajectory, act.action_trajectory)


def test_select_action_carries_tau_and_memory(model, obs):
    """Step t+1 sees step t's tau as tau_prev and its memory as m_{t-1}: the same as calling the model with them."""
    make_tau_matter_(model, seed=2)
    out1, state1 = model.select_action(obs, TEXT, generator=torch.Generator().manual_seed(0))
    out2, state2 = model.select_action(obs, TEXT, state1, generator=torch.Generator().manual_seed(0))
    tokens = model.tokenize(TEXT)
    with torch.no_grad():
        first = model(obs, tokens, generator=torch.Generator().manual_seed(0))
        second = model(obs, tokens, tau_prev=first.language.tau, memory_prev=first.language.memory,
                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(out1.motor_commands, first.motor_commands)
    assert torch.equal(out2.motor_commands, second.motor_commands)
    assert torch.equal(state2.tau, second.language.tau) and torch.equal(state2.memory, second.language.memory)
    assert not torch.allclose(out2.motor_commands, out1.motor_commands)  # the recurrence changes the step


def test_checkpoint_round_trips_bit_for_bit_per_workspace(model, obs, tmp_path):
    randomize_(model, seed=11)
    save_checkpoint(model, tmp_path)
    for ws in ("vision", "language", "action"):
        keys = load_file(str(workspace_file(tmp_path, ws))).keys()
        assert keys and all(k.startswith(ws + ".") for k in keys)
    loaded = load_checkpoint(tmp_path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert loaded.config == model.config
    # each node loads only its own workspace, and together they reproduce the whole model
    nodes = {ws: load_checkpoint(tmp_path, workspaces=(ws,)).eval() for ws in ("vision", "language", "action")}
    assert nodes["action"].vision is None and nodes["action"].language is None
    with torch.no_grad():
        whole = model(obs, model.tokenize(TEXT), generator=torch.Generator().manual_seed(1))
        _, _, cmd = run_stages(nodes["vision"], nodes["language"], nodes["action"], obs, TEXT, None, None, seed=1)
    assert torch.equal(whole.motor_commands, cmd)


def test_checkpoint_errors_are_clear(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="no Sigma checkpoint"):
        load_checkpoint(tmp_path)
    save_checkpoint(model, tmp_path)
    workspace_file(tmp_path, "action").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="corrupt checkpoint file .*action.safetensors"):
        load_checkpoint(tmp_path)
    load_checkpoint(tmp_path, workspaces=("vision",))  # other workspaces are unaffected
    workspace_file(tmp_path, "vision").unlink()
    with pytest.raises(FileNotFoundError, match="vision.safetensors"):
        load_checkpoint(tmp_path, workspaces=("vision",))


def test_an_interrupted_save_leaves_the_checkpoint_before_whole(model, tmp_path, monkeypatch):
    """Saving over a checkpoint writes beside it and swaps: an interrupt leaves no mix of old and new files.

    Other files in the directory (a PROVENANCE.md, a report) are kept; a file in the directory's place is refused.
    """
    from sigma_model import checkpoint as checkpoint_module

    target = tmp_path / "ckpt"
    randomize_(model, seed=1)
    save_checkpoint(model, target)
    (target / "PROVENANCE.md").write_text("how it was made")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    randomize_(model, seed=2)
    real_save, calls = checkpoint_module.save_file, []

    def interrupted(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint_module, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, target)
    monkeypatch.setattr(checkpoint_module, "save_file", real_save)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no partial copy left
    save_checkpoint(model, target)
    loaded = load_checkpoint(target)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert (target / "PROVENANCE.md").read_text() == "how it was made"
    (tmp_path / "file").write_text("mine")
    with pytest.raises(FileExistsError, match="it is a file"):
        save_checkpoint(model, tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"


def test_config_json_fusion_weights_decide_over_a_copy_in_the_weights_file(model, obs, tmp_path):
    """A user's edit of config.json's fusion weights takes effect, also for checkpoints that stored a copy."""
    save_checkpoint(model, tmp_path)
    path = workspace_file(tmp_path, "action")
    tensors = load_file(str(path))
    assert "action.fusion_weights" not in tensors  # the config holds them
    save_file({**tensors, "action.fusion_weights": torch.tensor([1.0, 1.0, 1.0])}, str(path))  # as older ones did
    SigmaConfig(**{**model.config.to_dict(), "fusion_weights": (0.0, 0.0, 1.0)}).save(tmp_path / "config.json")
    loaded = load_checkpoint(tmp_path)
    assert loaded.action.fusion_weights.tolist() == [0.0, 0.0, 1.0]
    model.action.fusion_weights.copy_(torch.tensor([0.0, 0.0, 1.0]))
    with torch.no_grad():
        out = [m.eval()(obs, m.tokenize(TEXT), generator=torch.Generator().manual_seed(1)).motor_commands
               for m in (model, loaded)]
    assert torch.equal(out[0], out[1])


def test_checkpoint_rejects_mismatched_config(model, tmp_path):
    save_checkpoint(model, tmp_path)
    SigmaConfig(**{**model.config.to_dict(), "d_tau": 9}).save(tmp_path / "config.json")
    with pytest.raises(CheckpointError, match=r"action.safetensors does not match config.json: \d+ tensors"):
        load_checkpoint(tmp_path, workspaces=("action",))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt checkpoint config: .*config.json"):
        load_checkpoint(tmp_path, workspaces=("action",))


def test_a_config_naming_a_text_encoder_that_is_not_installed_is_a_checkpoint_error(model, tmp_path):
    """Before, SigmaModel's ValueError escaped load_checkpoint: sigma-closed-loop ended in a traceback."""
    save_checkpoint(model, tmp_path)
    config = SigmaConfig(**{**model.config.to_dict(), "text_encoder": str(tmp_path / "no_encoder")})
    config.save(tmp_path / "config.json")
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(tmp_path)
    assert str(raised.value).startswith(f"checkpoint {tmp_path}: cannot build the model config.json describes: "
                                        "text_encoder ") and "\n" not in str(raised.value)


def test_missing_workspace_is_a_clear_error(config, obs):
    vision_only = SigmaModel(config, workspaces=("vision",))
    with pytest.raises(RuntimeError, match="without the language workspace"):
        vision_only.tokenize(["hi"])
    with pytest.raises(ValueError, match="unknown workspaces"):
        SigmaModel(config, workspaces=("vision", "dream"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(d_model=30, n_heads=4), "divisible"),
        (dict(image_size=30), "multiple of patch_size"),
        (dict(backbone="gpt"), "backbone must be one of"),
        (dict(backbone="hf"), "needs backbone_path"),
        (dict(chunk_len=0), "chunk_len must be a positive int"),
        (dict(controller_gain=1.5), "controller_gain"),
        (dict(fusion_weights=(1.0, 0.0, 0.0)), "fusion_weights"),
        (dict(dropout=1.0), "dropout"),
        (dict(state_mean=[0.0] * 6), "given together"),
        (dict(action_mean=[0.0] * 5, action_std=[1.0] * 5), "need 6 values"),
        (dict(action_mean=[0.0] * 6, action_std=[1.0] * 5 + [0.0]), "finite and > 0"),
        (dict(state_mean=[float("nan")] * 6, state_std=[1.0] * 6), "finite"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_config(**overrides)


def test_normalisation_statistics_only_rescale_inputs_and_outputs(model, obs, config, tmp_path):
    """With state/action statistics the same weights see (state - mean) / std and emit mean + std * output."""
    randomize_(model.action.residual_head, seed=3)
    state_mean, state_std = [0.1, -0.2, 0.3, 1.4, 0.0, 0.4], [0.5, 0.3, 0.3, 0.2, 0.5, 0.6]
    action_mean, action_std = [0.2, -0.1, 0.3, 1.2, 0.1, 0.5], [0.4, 0.2, 0.3, 0.1, 0.5, 0.5]
    stats = dict(state_mean=state_mean, state_std=state_std, action_mean=action_mean, action_std=action_std)
    norm = SigmaModel(dataclasses.replace(config, **stats)).eval()
    norm.load_state_dict(model.state_dict())  # the statistics are not weights
    text = model.tokenize(TEXT)
    raw_obs = dataclasses.replace(
        obs, robot_state=(obs.robot_state - torch.tensor(state_mean)) / torch.tensor(state_std)
    )
    with torch.no_grad():
        vis, vis_raw = norm.vision_stage(obs), model.vision_stage(raw_obs)
        assert torch.allclose(vis.state_tokens, vis_raw.state_tokens, atol=1e-6)
        lang = model.language_stage(text, vis.vision_tokens, vis.state_tokens)
        args = (lang.high_level_rep, lang.high_level_mask, lang.tau, vis.state_tokens)
        act = norm.action_stage(*args, generator=torch.Generator().manual_seed(5))
        act_raw = model.action_stage(*args, generator=torch.Generator().manual_seed(5))
    mean, std = torch.tensor(action_mean), torch.tensor(action_std)
    for name in ("action_vector", "action_chunk", "action_trajectory", "baseline_trajectory"):
        assert torch.allclose(getattr(act, name), mean + std * getattr(act_raw, name), atol=1e-5), name
    assert torch.allclose(act.residual_trajectory, std * act_raw.residual_trajectory, atol=1e-6)
    assert act.residual_trajectory.abs().sum() > 0
    save_checkpoint(norm, tmp_path)
    assert load_checkpoint(tmp_path).config.action_std == tuple(action_std)


def test_config_round_trip(tmp_path, config):
    config.save(tmp_path / "c.json")
    assert SigmaConfig.load(tmp_path / "c.json") == config
    with pytest.raises(ValueError, match="unknown SigmaConfig fields"):
        SigmaConfig.from_dict({**config.to_dict(), "bogus": 1})
    assert dataclasses.replace(config, d_tau=16).d_tau == 16


def bad(obs: SigmaObservation, **changes) -> SigmaObservation:
    return dataclasses.replace(obs, **changes)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda o, c: bad(o, image=o.image[:, :, :10]), r"image must have shape \[2,3,32,32\], got \[2, 3, 10, 32\]"),
        (lambda o, c: bad(o, image=o.image[0]), "image must have shape"),
        (lambda o, c: bad(o, image="not a tensor"), "image must be a torch.Tensor"),
        (lambda o, c: bad(o, robot_state=o.robot_state[:, :4]), "robot_state must have shape"),
        (lambda o, c: bad(o, robot_state=o.robot_state * float("nan")), "robot_state contains NaN"),
        (lambda o, c: bad(o, audio=o.audio[:, :7]), "audio must have shape"),
        (lambda o, c: bad(o, audio=o.audio / 0.0), "audio contains NaN or Inf"),
        (lambda o, c: bad(o, depth=torch.zeros(2, 1, 5, 5)), "depth must have shape"),
    ],
)
def test_bad_observations_raise_clear_errors(model, obs, config, change, message):
    with pytest.raises(ValueError, match=message):
        model.vision_stage(change(obs, config))


def test_bad_stage_inputs_raise_clear_errors(model, obs, config):
    text = model.tokenize(TEXT)
    with torch.no_grad():
        vis = model.vision_stage(obs)
        with pytest.raises(ValueError, match="tau_prev must have shape"):
            model.vision_stage(obs, torch.zeros(2, config.d_tau + 1))
        with pytest.raises(ValueError, match="memory_prev contains NaN"):
            model.language_stage(
                text, vis.vision_tokens, vis.state_tokens, torch.full((2, config.d_model), float("nan"))
            )
        with pytest.raises(ValueError, match="vision_tokens must have shape"):
            model.language_stage(text, vis.vision_tokens[:, :1], vis.state_tokens)
        lang = model.language_stage(text, vis.vision_tokens, vis.state_tokens)
        with pytest.raises(ValueError, match="tau must have shape"):
            model.action_stage(lang.high_level_rep, lang.high_level_mask, lang.tau[:, :3], vis.state_tokens)
        with pytest.raises(ValueError, match="action_chunk must have shape"):
            model.control_stage(torch.zeros(2, 6), torch.zeros(2, 2, 6), torch.zeros(2, 5, 6), obs.robot_state)
        with pytest.raises(ValueError, match="step_index"):
            model.control_stage(torch.zeros(2, 6), torch.zeros(2, 4, 6), torch.zeros(2, 5, 6), obs.robot_state, -1)
    with pytest.raises(ValueError, match="list of strings"):
        model.tokenize("not a list")


def test_tokenizer_truncates_and_handles_empty_and_unicode(model, config):
    tokens = model.tokenize(["", "x" * 500, "pick the cube ✓"])
    assert tokens.ids.shape == (3, config.max_text_tokens)
    assert tokens.mask[0].sum() == 2  # BOS + EOS
    assert tokens.mask[1].all()
    with torch.no_grad():
        obs = make_observation(config, batch=3)
        out = model(obs, tokens, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.motor_commands).all()
    fits = "x" * (config.max_text_tokens - 2)  # BOS + bytes + EOS: exactly max_text_tokens
    assert torch.equal(model.tokenize([fits], truncate=False).ids, model.tokenize([fits]).ids)
    with pytest.raises(ValueError, match=f"longer than the model's {config.max_text_tokens} tokens"):
        model.tokenize(["pick the cube", fits + "x"], truncate=False)  # one more byte would be cut
