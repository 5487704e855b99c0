# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Offline default backbone: a small Llama decoder built from config, byte-level tokenizer."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaModel

from ..configuration_sigma import SigmaConfig
from ..outputs import TextTokens
from .base import SigmaBackbone, run_decoder

PAD, BOS, EOS = 0, 1, 2
BYTE_OFFSET = 3
VOCAB_SIZE = 256 + BYTE_OFFSET


def byte_tokenize(texts: list[str], max_length: int) -> TextTokens:
    """UTF-8 bytes shifted by 3, framed by BOS/EOS, right-padded (truncated keeps EOS)."""
    rows = []
    for text in texts:
        body = [b + BYTE_OFFSET for b in text.encode("utf-8")][: max_length - 2]
        rows.append([BOS, *body, EOS])
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), PAD, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return TextTokens(ids=ids, mask=ids != PAD)


class TinyDecoderBackbone(SigmaBackbone):
    """transformers LlamaModel with d_model hidden size; LoRA targets q/k/v/o_proj exist."""

    def __init__(self, config: SigmaConfig) -> None:
        super().__init__()
        self.hidden_size = config.d_model
        max_len = config.max_text_tokens + config.n_vision_tokens + config.n_state_tokens
        self.decoder = LlamaModel(
            LlamaConfig(
                vocab_size=VOCAB_SIZE,
                hidden_size=config.d_model,
                intermediate_size=4 * config.d_model,
                num_hidden_layers=config.backbone_layers,
                num_attention_heads=config.backbone_heads,
                num_key_value_heads=config.backbone_heads,
                max_position_embeddings=max_len,
                pad_token_id=PAD,
                bos_token_id=BOS,
                eos_token_id=EOS,
                attention_dropout=config.dropout,
            )
        )

    def tokenize(self, texts: list[str], max_length: int) -> TextTokens:
        return byte_tokenize(texts, max_length)

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder.embed_tokens(ids)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, context=None) -> torch.Tensor:
        return run_decoder(self.decoder, inputs_embeds, attention_mask)
