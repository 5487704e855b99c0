# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Backbones behind one interface.

A generic Hugging Face model loaded from a local directory (made here, since no hub is reachable) and the LeRobot policy
adapters' clear failure.
"""

from __future__ import annotations

import sys

import pytest
import torch

from sigma_model import SigmaModel, load_checkpoint, save_checkpoint
from sigma_model.backbones.base import run_decoder
from sigma_model.backbones.vla import load_lerobot_policy

from sigma_model.testing import make_observation, small_config


def test_hf_backbone_from_local_directory(hf_dir, tmp_path):
    cfg = small_config(backbone="hf", backbone_path=str(hf_dir))
    torch.manual_seed(0)
    model = SigmaModel(cfg).eval()
    assert model.language.backbone.hidden_size == 24
    assert isinstance(model.language.to_backbone, torch.nn.Linear)  # d_model 32 -> 24 -> 32
    tokens = model.tokenize(["pick the cube", "place it on the left"])
    assert tokens.ids[0, :3].tolist() == [2, 3, 4]
    obs = make_observation(cfg)
    with torch.no_grad():
        out = model(obs, tokens, generator=torch.Generator().manual_seed(0))
    assert out.motor_commands.shape == (2, cfg.action_dim)
    save_checkpoint(model, tmp_path)
    again = load_checkpoint(tmp_path).eval()
    with torch.no_grad():
        out2 = again(
            obs, again.tokenize(["pick the cube", "place it on the left"]), generator=torch.Generator().manual_seed(0)
        )
    assert torch.equal(out.motor_commands, out2.motor_commands)


@pytest.mark.parametrize("backbone", ["tiny", "hf", "hf_eager"])
def test_backbone_pass_equals_the_decoder_with_its_own_masking(backbone, hf_dir):
    """run_decoder gives the decoder's own output on its 2-D mask, bit for bit.

    run_decoder has no KV cache and, on SDPA, builds a padded batch's causal + padding mask itself. Checked on padded
    and unpadded batches, with and without gradients, SDPA and eager.
    """
    cfg = small_config(**({} if backbone == "tiny" else {"backbone": "hf", "backbone_path": str(hf_dir)}))
    torch.manual_seed(0)
    bb = SigmaModel(cfg).language.backbone
    if backbone == "hf_eager":
        bb.decoder.config._attn_implementation = "eager"
    x = torch.randn(3, 12, bb.hidden_size)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[0, 5:8] = False  # text padding in the middle of the sequence, as before the vision tokens
    mask[1, 2:8] = False
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            for rows in (slice(0, 3), slice(2, 3)):  # padded, unpadded
                own = bb.decoder(inputs_embeds=x[rows], attention_mask=mask[rows].long()).last_hidden_state
                assert torch.equal(run_decoder(bb.decoder, x[rows], mask[rows]), own)
    assert not torch.equal(run_decoder(bb.decoder, x, mask)[0], run_decoder(bb.decoder, x, torch.ones_like(mask))[0])


def test_a_decoder_with_a_sliding_window_keeps_its_own_mask():
    """run_decoder leaves a sliding-window decoder's masking to transformers.

    A window shorter than the sequence is part of transformers' mask, which a plain causal one would miss.
    """
    from transformers import MistralConfig, MistralModel

    torch.manual_seed(0)
    decoder = MistralModel(MistralConfig(vocab_size=16, hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, sliding_window=3)).eval()
    assert decoder.config._attn_implementation == "sdpa"
    x = torch.randn(2, 10, 24)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 3:5] = False
    with torch.no_grad():
        assert torch.equal(run_decoder(decoder, x, mask),
                           decoder(inputs_embeds=x, attention_mask=mask.long()).last_hidden_state)


def test_hf_backbone_missing_path_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = small_config(backbone="hf", backbone_path="nobody/no-such-model")
    with pytest.raises(RuntimeError, match="could not load backbone 'nobody/no-such-model'"):
        SigmaModel(cfg)


def test_4bit_needs_cuda_and_bitsandbytes(hf_dir):
    if torch.cuda.is_available():
        pytest.skip("this checks the CPU error path")
    with pytest.raises(RuntimeError, match="4-bit loading needs a CUDA GPU"):
        SigmaModel(small_config(backbone="hf", backbone_path=str(hf_dir), backbone_4bit=True))


@pytest.mark.parametrize("kind", ["pi05", "smolvla"])
def test_lerobot_policy_backbones_fail_clearly_without_lerobot(kind, monkeypatch):
    pytest.importorskip("torch")
    # LeRobot is in the default install: hide it (a None entry in sys.modules makes the import
    # fail), also any of its modules an earlier test imported.
    for name in [m for m in sys.modules if m == "lerobot" or m.startswith("lerobot.")] + ["lerobot"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(RuntimeError, match=f"the {kind} backbone needs LeRobot"):
        load_lerobot_policy(kind, "lerobot/pi05_base")
    with pytest.raises(RuntimeError, match="needs LeRobot"):
        SigmaModel(small_config(backbone=kind, backbone_path="lerobot/pi05_base"))
