"""Shared fixtures: a small seeded Sigma configuration and observations."""

from __future__ import annotations

import pytest
import torch

from sigma_model import SigmaConfig, SigmaModel, SigmaObservation

# Tiny test models are dominated by per-op overhead; one thread avoids OpenMP contention on CI's 2 cores.
torch.set_num_threads(1)


def small_config(**overrides) -> SigmaConfig:
    """A fast configuration with the default structure (all branches, audio on)."""
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


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A tiny Llama with hidden size 24 (not d_model) and a word-level tokenizer, saved locally
    (no hub here)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "pick", "the", "cube", "and", "place", "it", "on", "left", "right"]
    root = tmp_path_factory.mktemp("tiny_hf")
    torch.manual_seed(0)
    LlamaModel(LlamaConfig(vocab_size=len(words), hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)).save_pretrained(root)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(root)
    return root


@pytest.fixture
def config() -> SigmaConfig:
    return small_config()


@pytest.fixture
def model(config) -> SigmaModel:
    torch.manual_seed(0)
    return SigmaModel(config).eval()


@pytest.fixture
def obs(config) -> SigmaObservation:
    return make_observation(config)
