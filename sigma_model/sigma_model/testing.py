# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Helpers for the tests of every Sigma package (and of users' own extensions).

A small fast configuration, seeded observations, non-zero weights for zero-initialised heads, a tiny local Hugging Face
model, the fields of the paper's evaluation report, offline runs of console scripts, and the refusals and help of
command lines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from sigma_model.configuration_sigma import SigmaConfig
from sigma_model.evaluation.report import PAPER_FIELDS  # noqa: F401  (the fields tests check)
from sigma_model.outputs import SigmaObservation

TEXT = ["pick the cube and place it on the left", "place it right"]


def small_config(**overrides) -> SigmaConfig:
    """Return a fast configuration with the default structure (all branches, audio on)."""
    values = dict(
        d_model=32, n_heads=2, backbone_heads=2, backbone_layers=1, image_size=32, patch_size=16,
        audio_chunk_samples=320, audio_patch_samples=80, n_vision_tokens=4, n_state_tokens=2,
        n_semantic_factors=3, d_tau=8, chunk_len=4, traj_len=5, n_action_queries=3,
        action_token_dim=4, action_refine_layers=1, dit_layers=1, diffusion_steps=3, max_text_tokens=16,
    )
    values.update(overrides)
    return SigmaConfig(**values)


def make_observation(config: SigmaConfig, batch: int = 2, seed: int = 0) -> SigmaObservation:
    g = torch.Generator().manual_seed(seed)
    size = config.image_size
    return SigmaObservation(
        image=torch.randint(0, 256, (batch, config.image_channels, size, size), generator=g, dtype=torch.uint8),
        robot_state=torch.randn(batch, config.state_dim, generator=g),
        audio=0.1 * torch.randn(batch, config.audio_chunk_samples, generator=g),
    )


def randomize_(module: nn.Module, seed: int = 1) -> None:
    """Give zero-initialised heads non-zero weights so every path is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))


def save_tiny_llama(root: Path) -> Path:
    """Return a tiny Llama with hidden size 24 and a word-level tokenizer, saved in ``root`` (no hub)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "pick", "the", "cube", "and", "place", "it", "on", "left", "right"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlamaModel(LlamaConfig(vocab_size=len(words), hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                               num_attention_heads=2, num_key_value_heads=2,
                               max_position_embeddings=64)).save_pretrained(root)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(root)
    return root


def save_tiny_bert(root: Path) -> Path:
    """Return a tiny BERT encoder (hidden size 16) with a word-level tokenizer, saved in ``root`` (no hub).

    A stand-in for ``SigmaConfig.text_encoder`` models such as all-MiniLM-L6-v2.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "pick", "the", "cube", "and", "place", "it", "on", "left", "right",
             "move", "to", "green", "blue", "square"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, max_position_embeddings=64)).save_pretrained(root)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                            sep_token="[SEP]").save_pretrained(root)
    return root


def make_tau_matter_(model: nn.Module, seed: int = 1) -> nn.Module:
    """Give the telepathy residual head.

    The vision FiLM and the language modulator non-zero weights and open their log-scale gates, so tau and tau_prev
    change every stage's output (as after training; the zero-initialised heads of a new model make tau inert). Returns
    the model.
    """
    for i, module in enumerate((model.action.residual_head if model.action is not None else None,
                                model.vision.modulator.film if model.vision is not None else None,
                                model.language.modulator if model.language is not None else None)):
        if module is not None:
            randomize_(module, seed + i)
    with torch.no_grad():
        if model.vision is not None:
            model.vision.modulator.mod_log_scale.fill_(0.0)
            model.vision.modulator.tau_log_scale.fill_(0.0)
        if model.language is not None:
            model.language.modulator.log_scale.fill_(0.0)
    return model


def console_script(name: str) -> str:
    """Return the path of an installed console script (lerobot-train, lerobot-eval, ...) next to this interpreter."""
    script = shutil.which(name, path=str(Path(sys.executable).parent))
    assert script, f"{name} is not installed next to {sys.executable} (scripts/setup.sh installs it)"
    return script


def run_offline(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command with no hub access and no wandb; assert it exits 0 (showing its output's tail if not)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, (f"{Path(cmd[0]).name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                                  f"{proc.stderr[-6000:]}")
    return proc


def cli_error(main, argv: list[str], capsys) -> str:
    """Run a ``parse_cli`` command's ``main(argv)`` that must refuse ``argv``.

    Asserts exit status 2 and exactly one line on stderr, which it returns (pytest's ``capsys`` captures it).
    """
    capsys.readouterr()
    try:
        main(argv)
    except SystemExit as stop:
        err = capsys.readouterr().err
        assert stop.code == 2 and len(err.splitlines()) == 1, (stop.code, err)
        return err.strip()
    raise AssertionError(f"{argv} was accepted")


def cli_help(main, capsys) -> str:
    """Return what ``main(["--help"])`` prints (it must exit 0)."""
    capsys.readouterr()
    try:
        main(["--help"])
    except SystemExit as stop:
        assert stop.code == 0
        return capsys.readouterr().out
    raise AssertionError("--help did not exit")
