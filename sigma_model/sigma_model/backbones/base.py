# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The backbone interface used by the language intent workspace."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..outputs import TextTokens

if TYPE_CHECKING:
    from ..configuration_sigma import SigmaConfig


class SigmaBackbone(nn.Module):
    """A multimodal decoder seen by Sigma.

    Subclasses set `hidden_size`, implement `tokenize`, `embed_text` and `forward`. The language
    workspace projects vision and state tokens into `hidden_size`, concatenates
    [text; vision; state] and calls `forward` to get hidden_sequence_base. A backbone with
    `external_weights` keeps its own weights where `SigmaConfig.backbone_path` points (only its
    LoRA adapters go into Sigma checkpoints); VLA backbones (vla.py) also take a context.
    """

    hidden_size: int
    external_weights = False

    def tokenize(self, texts: list[str], max_length: int) -> TextTokens:
        raise NotImplementedError

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, context=None) -> torch.Tensor:
        raise NotImplementedError


def build_backbone(config: "SigmaConfig") -> SigmaBackbone:
    """Return the text backbone named by `config.backbone` ("tiny" or "hf"; VLAs: vla.build_vla)."""
    if config.backbone == "tiny":
        from .tiny import TinyDecoderBackbone

        return TinyDecoderBackbone(config)
    if config.backbone == "hf":
        from .hf_vlm import HFBackbone

        return HFBackbone.from_pretrained(config.backbone_path, load_in_4bit=config.backbone_4bit)
    raise ValueError(f"backbone {config.backbone!r} is a VLA: build it with sigma_model.backbones.vla.build_vla")


#: transformers decoders whose attention mask is the plain causal one (no sliding window, chunks or prefix)
PLAIN_CAUSAL_DECODERS = ("llama",)


def run_decoder(decoder: nn.Module, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """last_hidden_state of a transformers decoder on embeddings [B,L,H] with a key mask [B,L] (nonzero = token).

    One pass, so no KV cache. A padded batch of a plain causal decoder on SDPA gets its causal + padding mask from
    here: the boolean [B,1,L,L] mask that transformers builds itself by vmap, at several ms per call on the CPU at
    Sigma's sizes. Other decoders (e.g. a sliding window) keep transformers' own masking. Off the CPU that mask is
    built whether or not the batch is padded: asking would stall the stream (and break a CUDA graph's capture).
    """
    valid = attention_mask.bool()
    mask = attention_mask.long()
    config = decoder.config
    if (getattr(config, "_attn_implementation", None) == "sdpa" and config.model_type in PLAIN_CAUSAL_DECODERS
            and (valid.device.type != "cpu" or not bool(valid.all()))):
        n = valid.shape[1]
        mask = torch.ones(n, n, dtype=torch.bool, device=valid.device).tril() & valid[:, None, None, :]
    return decoder(inputs_embeds=inputs_embeds, attention_mask=mask, use_cache=False).last_hidden_state
