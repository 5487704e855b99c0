# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""SmolVLA (LeRobot 0.4.4's SmolVLAPolicy) as Sigma's backbone.

On a tiny random SmolVLA saved in the public checkpoint layout (no hub): its image tokens feed the vision workspace, its
language model the hidden sequence, its action expert's chunk is the baseline; LoRA, training, checkpoints.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from sigma_model.testing import make_observation, small_config

from sigma_model import SigmaModel, load_checkpoint, save_checkpoint

pytest.importorskip("lerobot.policies.smolvla.modeling_smolvla")

from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors
from sigma_model.backbones.vla import dataset_stats
from sigma_model.training.configuration_training import TrainingConfig
from sigma_model.training.trainer import SigmaTrainer

STATS = dict(state_mean=(0.1, -0.2, 0.0, 0.3, 0.0, 0.5), state_std=(0.5, 1.0, 2.0, 0.5, 1.0, 0.25),
             action_mean=(0.2, 0.0, -0.1, 0.0, 0.4, 0.1), action_std=(0.3, 0.6, 1.0, 0.5, 2.0, 0.2))
TEXTS = ["pick the cube and place it on the left", "put the red cube in the bowl"]
IMAGE_KEY = "observation.images.front"


def vla_config(smolvla_dir, **overrides):
    return small_config(backbone="smolvla", backbone_path=str(smolvla_dir), use_audio=False, **{**STATS, **overrides})


@pytest.fixture(scope="module")
def model(smolvla_dir):
    torch.manual_seed(0)
    return SigmaModel(vla_config(smolvla_dir)).eval()


@pytest.fixture(scope="module")
def reference(smolvla_dir):
    """LeRobot's own policy and pre/post processors, loaded independently of Sigma."""
    policy = SmolVLAPolicy.from_pretrained(str(smolvla_dir)).eval()
    pre, post = make_smolvla_pre_post_processors(policy.config, dataset_stats(vla_config(smolvla_dir)))
    return policy, pre, post


def lerobot_batch(obs, texts):
    return {IMAGE_KEY: obs.image.float() / 255.0, "observation.state": obs.robot_state, "task": list(texts)}


def test_baseline_is_smolvla_own_action_chunk(model, reference):
    policy, pre, post = reference
    c = model.config
    obs = make_observation(c, batch=2, seed=3)
    with torch.no_grad():
        out = model(obs, model.tokenize(TEXTS), generator=torch.Generator().manual_seed(5))
        noise = torch.randn(2, policy.config.chunk_size, policy.config.max_action_dim,
                            generator=torch.Generator().manual_seed(5))
        chunk = post(policy.predict_action_chunk(pre(lerobot_batch(obs, TEXTS)), noise=noise))
    torch.testing.assert_close(out.language.backbone_actions, chunk, rtol=0, atol=1e-6)
    # the residual head starts at zero: the untrained Sigma plans exactly SmolVLA's chunk
    assert not out.action.residual_chunk.any() and not out.action.residual_trajectory.any()
    torch.testing.assert_close(out.action.action_chunk, chunk[:, :c.chunk_len], rtol=0, atol=1e-6)
    torch.testing.assert_close(out.action.action_trajectory, chunk[:, :c.traj_len], rtol=0, atol=1e-6)
    torch.testing.assert_close(out.action.action_vector, chunk[:, 0], rtol=0, atol=1e-6)
    # Sigma's own heads are not built: the VLA's chunk is the baseline, the residual head corrects it
    assert model.action.chunk_head is None and model.action.trajectory_dit is None


def test_residual_corrects_the_baseline(model):
    c = model.config
    obs = make_observation(c, batch=2, seed=4)
    head = model.action.residual_head
    saved = {k: v.clone() for k, v in head.state_dict().items()}
    try:
        torch.nn.init.normal_(head[-1].weight, std=0.5)
        with torch.no_grad():
            on = model(obs, model.tokenize(TEXTS), generator=torch.Generator().manual_seed(1))
            off = model(obs, model.tokenize(TEXTS), telepathy=False, generator=torch.Generator().manual_seed(1))
    finally:
        head.load_state_dict(saved)
    assert on.action.residual_chunk.abs().min() > 0
    torch.testing.assert_close(on.action.action_chunk, on.action.baseline_chunk + on.action.residual_chunk)
    # tau = 0 baseline: the same chunk with telepathy off (vision then sees tau = 0 too)
    torch.testing.assert_close(on.action.baseline_chunk, off.action.action_chunk, rtol=0, atol=1e-6)


def test_vision_tokens_come_from_the_vlm_image_encoder(model, reference):
    policy, pre, _ = reference
    obs = make_observation(model.config, batch=2, seed=6)
    with torch.no_grad():
        vis = model.vision_stage(obs)
        images, _ = policy.prepare_images(pre(lerobot_batch(obs, TEXTS)))
        want = policy.model.vlm_with_expert.embed_image(images[0])
    torch.testing.assert_close(vis.backbone_image_tokens, want, rtol=0, atol=1e-6)
    assert model.vision.patch_embed is None  # Sigma's resampler reads the VLA's tokens, not own patches
    other = make_observation(model.config, batch=2, seed=7)
    with torch.no_grad():
        assert not torch.allclose(model.vision_stage(other).vision_tokens, vis.vision_tokens)


def test_sigma_block_reads_the_vla_prefix(model):
    """hidden_sequence_base comes from the VLA's language model reading Sigma's tokens against the VLA's own prefix.

    Changing only the prefix's image tokens or state changes it.
    """
    c = model.config
    obs = make_observation(c, batch=2, seed=8)
    text = model.tokenize(TEXTS)
    with torch.no_grad():
        vis = model.vision_stage(obs)
        args = (text, vis.vision_tokens, vis.state_tokens, None)
        base = model.language_stage(
            *args, image_tokens=vis.backbone_image_tokens, robot_state=obs.robot_state, with_actions=False
        )
        again = model.language_stage(
            *args, image_tokens=vis.backbone_image_tokens, robot_state=obs.robot_state, with_actions=False
        )
        image = model.language_stage(
            *args, image_tokens=vis.backbone_image_tokens.flip(0), robot_state=obs.robot_state, with_actions=False
        )
        state = model.language_stage(
            *args, image_tokens=vis.backbone_image_tokens, robot_state=obs.robot_state + 1.0, with_actions=False
        )
    torch.testing.assert_close(again.high_level_rep, base.high_level_rep, rtol=0, atol=0)
    for changed in (image, state):
        assert (changed.high_level_rep - base.high_level_rep).abs().amax(dim=(1, 2)).min() > 1e-4
    assert base.backbone_actions is None  # with_actions=False skips the expert (the trainer's first pass)


@pytest.fixture(scope="module")
def trained(smolvla_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("smolvla_run")
    cfg = TrainingConfig(synthetic_samples=16, batch_size=4, max_steps=8, learning_rate=3e-3, warmup_steps=0,
                         log_every=1, save_every=0, output_dir=str(out), seed=1)
    trainer = SigmaTrainer(cfg, vla_config(smolvla_dir))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    result = trainer.train()
    return trainer, before, trainable, result


def test_lora_trains_only_adapters_and_sigma_heads(trained):
    trainer, before, trainable, result = trained
    model = trainer.model
    backbone = ("language.backbone.", "vision.image_encoder.")
    lora = {n for n in before if ".lora_" in n}
    decoder = "language.backbone.policy.model.vlm_with_expert.vlm.model.text_model.layers."
    assert lora and all(n.startswith(decoder) for n in lora)  # the VLM's language model, not the expert
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert all(p.shape[0] == 16 for n, p in model.named_parameters() if ".lora_A." in n)  # r = 16
    heads = {n for n in before if not n.startswith(backbone)}
    assert trainable == lora | heads
    after = dict(model.named_parameters())
    frozen = [n for n in before if n not in trainable]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)  # the VLA is untouched
    assert any(not torch.equal(before[n], after[n]) for n in lora if ".lora_B." in n)  # adapters learned
    assert any(not torch.equal(before[n], after[n]) for n in heads)
    rows = [json.loads(line) for line in (trainer.output_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and rows[-1]["loss"] < rows[0]["loss"]


def test_trained_baseline_is_still_the_untuned_smolvla(trained, reference):
    """LoRA changes Sigma's block, never the VLA's own prefix: the baseline stays SmolVLA's chunk."""
    trainer = trained[0]
    model = trainer.model.eval()
    assert any(p.any() for n, p in model.named_parameters() if ".lora_B." in n)
    policy, pre, post = reference
    obs = make_observation(model.config, batch=2, seed=10)
    with torch.no_grad():
        out = model(obs, model.tokenize(TEXTS), generator=torch.Generator().manual_seed(6))
        noise = torch.randn(2, policy.config.chunk_size, policy.config.max_action_dim,
                            generator=torch.Generator().manual_seed(6))
        chunk = post(policy.predict_action_chunk(pre(lerobot_batch(obs, TEXTS)), noise=noise))
    torch.testing.assert_close(out.action.baseline_chunk, chunk[:, :model.config.chunk_len], rtol=0, atol=1e-6)
    assert out.action.residual_chunk.abs().max() > 0  # the trained residual corrects it


def test_checkpoint_holds_heads_and_adapters_and_round_trips(trained, smolvla_dir, tmp_path):
    trainer, _, _, result = trained
    model = trainer.model.eval()
    directory = save_checkpoint(model, tmp_path / "ckpt")  # no "Some tensors share memory" error
    config = json.loads((directory / "config.json").read_text())
    assert config["backbone_path"] == str(smolvla_dir) and config["backbone_lora"]["r"] == 16
    for workspace in ("vision", "language", "action"):
        with safe_open(str(directory / f"{workspace}.safetensors"), framework="pt") as f:
            keys = list(f.keys())
        external = [
            k for k in keys if k.startswith(("vision.image_encoder.", "language.backbone.")) and ".lora_" not in k
        ]
        assert keys and not external  # the VLA is referenced, never copied
    for path in (directory, result["checkpoint"] + "/model"):  # also what the trainer exported
        loaded = load_checkpoint(path).eval()
        want, got = model.state_dict(), loaded.state_dict()
        assert set(want) == set(got) and all(torch.equal(want[k], got[k]) for k in want)
        obs = make_observation(model.config, batch=2, seed=9)
        with torch.no_grad():
            a = model(obs, model.tokenize(TEXTS), generator=torch.Generator().manual_seed(2))
            b = loaded(obs, loaded.tokenize(TEXTS), generator=torch.Generator().manual_seed(2))
        assert torch.equal(a.action.action_chunk, b.action.action_chunk) and a.action.residual_chunk.any()
    action_only = load_checkpoint(directory, workspaces=("action",))
    assert action_only.language is None and action_only.vision is None  # no VLA loaded for the action node


def test_4bit_is_refused_on_cpu(smolvla_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this checks the CPU error path")
    with pytest.raises(RuntimeError, match="4-bit loading needs a CUDA GPU"):
        SigmaModel(vla_config(smolvla_dir, backbone_4bit=True))
    cfg = TrainingConfig(synthetic_samples=8, batch_size=4, load_in_4bit=True, output_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="4-bit loading needs a CUDA GPU"):
        SigmaTrainer(cfg, vla_config(smolvla_dir))


def test_mismatched_or_incomplete_backbone_is_a_clear_error(smolvla_dir, tmp_path):
    with pytest.raises(ValueError, match="its action has 6 dims, Sigma's action_dim is 5"):
        SigmaModel(small_config(backbone="smolvla", backbone_path=str(smolvla_dir), action_dim=5, state_dim=5))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((smolvla_dir / "config.json").read_text())
    from safetensors.torch import load_file, save_file

    weights = load_file(str(smolvla_dir / "model.safetensors"))
    weights.pop("model.action_out_proj.weight")
    save_file(weights, str(broken / "model.safetensors"))
    with pytest.raises(RuntimeError, match="lacks 1 weights of the policy"):
        SigmaModel(vla_config(broken))


def test_loading_in_parallel_threads_leaves_draccus_config_type_as_it_was(smolvla_dir):
    """Nodes loading their backbone in parallel threads leave draccus' process-wide config type as it was.

    LeRobot's loading sets it for a moment (``draccus.config_type``, not thread-safe): unserialised, it stayed
    "json", and every later ``--field=[a,b]`` list on a command line in that process failed to parse.
    """
    import threading

    from draccus.options import Options
    from sigma_model.backbones.vla import load_lerobot_policy

    before = Options.get_config_type()
    start = threading.Barrier(4)

    def load():
        start.wait()
        load_lerobot_policy("smolvla", str(smolvla_dir))

    for _ in range(2):
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert Options.get_config_type() == before
