# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Generic Hugging Face (V)LM backbone: a local directory or a hub id, optional 4-bit."""

from __future__ import annotations

import os

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from ..outputs import TextTokens
from .base import SigmaBackbone, run_decoder
from .quantization import require_4bit


def _quantization_config(load_in_4bit: bool):
    if not load_in_4bit:
        return None
    require_4bit()
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)


class TransformersDecoderBackbone(SigmaBackbone):
    """A transformers text decoder and its tokenizer behind the Sigma backbone interface."""

    def __init__(self, decoder: torch.nn.Module, tokenizer) -> None:
        super().__init__()
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.hidden_size = int(decoder.config.hidden_size)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    def tokenize(self, texts: list[str], max_length: int) -> TextTokens:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return TextTokens(ids=enc["input_ids"], mask=enc["attention_mask"].bool())

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder.get_input_embeddings()(ids)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, context=None) -> torch.Tensor:
        return run_decoder(self.decoder, inputs_embeds, attention_mask)


class HFBackbone(TransformersDecoderBackbone):
    """The text decoder of any transformers model (for a VLM: its language model)."""

    @classmethod
    def from_pretrained(cls, path_or_id: str, load_in_4bit: bool = False) -> "HFBackbone":
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        kwargs = {"local_files_only": offline or os.path.isdir(path_or_id)}
        try:
            config = AutoConfig.from_pretrained(path_or_id, **kwargs)
            model = AutoModel.from_pretrained(
                path_or_id, quantization_config=_quantization_config(load_in_4bit), **kwargs
            )
            tokenizer = AutoTokenizer.from_pretrained(path_or_id, **kwargs)
        except OSError as err:
            where = "local directory" if os.path.isdir(path_or_id) else "hub id (needs network or a warm cache)"
            raise RuntimeError(f"could not load backbone {path_or_id!r} as a {where}: {err}") from err
        decoder = getattr(model, "language_model", None) or model
        if getattr(config, "text_config", None) is not None and not hasattr(decoder.config, "hidden_size"):
            decoder.config.hidden_size = config.text_config.hidden_size
        return cls(decoder, tokenizer)
