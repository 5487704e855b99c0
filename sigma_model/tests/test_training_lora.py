# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""LoRA (peft) on the backbone's q/k/v/o projections only; the frozen backbone stays unchanged."""

from __future__ import annotations

import pytest
import torch

from sigma_model import SigmaModel
from sigma_model.backbones.quantization import require_4bit
from sigma_model.training.configuration_training import TrainingConfig
from sigma_model.training.lora import (
    BACKBONE_PREFIX, apply_lora, expected_lora_parameter_count, load_adapter,
    lora_parameter_count, merged_state_dict, save_adapter, trainable_summary,
)
from sigma_model.training.trainer import SigmaTrainer

from sigma_model.testing import small_config

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_lora_parameter_count_matches_formula():
    mc = small_config(use_audio=False, d_model=32, backbone_layers=2)
    torch.manual_seed(0)
    model = SigmaModel(mc)
    heads_before = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(BACKBONE_PREFIX))
    r = 16
    # Llama with num_key_value_heads = num_heads: q, k, v, o are all d x d; A is r x d, B is d x r
    formula = mc.backbone_layers * 4 * r * (mc.d_model + mc.d_model)
    assert expected_lora_parameter_count(model, r) == formula
    apply_lora(model, r=r, alpha=32, dropout=0.05)
    assert lora_parameter_count(model) == formula
    trainable_backbone = [n for n, p in model.named_parameters() if n.startswith(BACKBONE_PREFIX) and p.requires_grad]
    assert sum(p.numel() for n, p in model.named_parameters() if n in trainable_backbone) == formula
    assert len(trainable_backbone) == mc.backbone_layers * 4 * 2
    for name in trainable_backbone:
        module = name.split(".lora_")[0].rsplit(".", 1)[-1]
        assert ".lora_A." in name or ".lora_B." in name, name
        assert module in TARGETS, name
    # Sigma's own attention layers (nn.MultiheadAttention out_proj etc.) got no adapters
    assert not any(".lora_" in n for n, _ in model.named_parameters() if not n.startswith(BACKBONE_PREFIX))
    summary = trainable_summary(model)
    assert summary["lora"] == formula and summary["backbone_trainable"] == 0
    assert summary["heads_trainable"] == heads_before


def test_training_changes_only_lora_and_heads(tmp_path):
    mc = small_config(use_audio=False)
    cfg = TrainingConfig(synthetic_samples=12, batch_size=4, max_steps=3, warmup_steps=0, learning_rate=1e-2,
                         output_dir=str(tmp_path / "run"), save_every=0)
    trainer = SigmaTrainer(cfg, mc)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    for _ in range(3):
        trainer.train_step()
    after = trainer.model.state_dict()
    frozen = [k for k in before if k.startswith(BACKBONE_PREFIX) and ".lora_" not in k]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # embeddings, base q/k/v/o, MLP, norms
    lora_b = [k for k in before if ".lora_B." in k]
    assert all(not before[k].any() for k in lora_b)  # peft starts B at zero
    assert all(after[k].any() for k in lora_b)  # and training moved every adapter
    heads = [k for k in before if not k.startswith(BACKBONE_PREFIX) and before[k].is_floating_point()]
    assert any(not torch.equal(before[k], after[k]) for k in heads)


def test_without_lora_the_backbone_is_fully_frozen(tmp_path):
    cfg = TrainingConfig(synthetic_samples=8, batch_size=4, max_steps=1, warmup_steps=0, use_lora=False,
                         output_dir=str(tmp_path / "run"))
    trainer = SigmaTrainer(cfg, small_config(use_audio=False))
    summary = trainer.summary()
    assert summary["lora"] == 0 and summary["backbone_trainable"] == 0 and summary["heads_trainable"] > 0
    assert trainer.lora_config is None


def test_adapter_files_roundtrip_and_merge(tmp_path):
    mc = small_config(use_audio=False)
    torch.manual_seed(0)
    model = SigmaModel(mc)
    config = apply_lora(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.normal_(0, 0.1)
    save_adapter(model, config, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    torch.manual_seed(1)
    other = SigmaModel(mc)
    other.load_state_dict(
        {k: v for k, v in model.state_dict().items() if ".lora_" not in k and ".base_layer." not in k}, strict=False
    )
    apply_lora(other)
    load_adapter(other, tmp_path / "adapter")
    lora_keys = [k for k in model.state_dict() if ".lora_" in k]
    assert all(torch.equal(model.state_dict()[k], other.state_dict()[k]) for k in lora_keys)
    merged = merged_state_dict(model)
    plain = SigmaModel(mc)
    assert set(merged) == set(plain.state_dict())
    name = "language.backbone.decoder.layers.0.self_attn.q_proj"
    layer = dict(model.named_modules())[name]
    want = layer.base_layer.weight + layer.get_delta_weight("default")
    torch.testing.assert_close(merged[name + ".weight"], want)


def test_unknown_target_modules_and_4bit_errors(tmp_path):
    model = SigmaModel(small_config(use_audio=False))
    with pytest.raises(ValueError, match="query_key_value"):
        apply_lora(model, target_modules=("query_key_value",))
    if torch.cuda.is_available():
        pytest.skip("4-bit is available on this machine")
    with pytest.raises(RuntimeError, match="CUDA"):
        require_4bit()
    cfg = TrainingConfig(synthetic_samples=8, batch_size=4, load_in_4bit=True, output_dir=str(tmp_path / "q"))
    with pytest.raises(RuntimeError, match="CUDA"):
        SigmaTrainer(cfg, small_config(use_audio=False))
