# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Small building blocks shared by the three workspaces."""

from __future__ import annotations

import torch
from torch import nn


def attention_keys_values(
    attn: nn.MultiheadAttention, context: torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`attn`'s keys and values [B,heads,L,d_head] of context [B,L,d], and its mask [B,1,1,L] (True = attend)."""
    e = attn.embed_dim
    b, n = context.shape[:2]
    kv = nn.functional.linear(context, attn.in_proj_weight[e:], attn.in_proj_bias[e:])  # one pass, as attn does
    k, v = kv.view(b, n, 2, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    return k, v, None if valid is None else valid[:, None, None, :]


def attend(attn: nn.MultiheadAttention, query: torch.Tensor, kv: tuple) -> torch.Tensor:
    """`attn(query, context, context, key_padding_mask=~valid)` on `attention_keys_values(attn, context, valid)`.

    The same maths, weights and dropout as nn.MultiheadAttention (batch first, need_weights=False), without its
    per-call checks and dispatch, which cost more than the arithmetic at these sizes; query [B,L_q,d].
    """
    k, v, mask = kv
    b, n = query.shape[:2]
    e = attn.embed_dim
    q = nn.functional.linear(query, attn.in_proj_weight[:e], attn.in_proj_bias[:e])
    out = nn.functional.scaled_dot_product_attention(q.view(b, n, attn.num_heads, -1).transpose(1, 2), k, v,
                                                     attn_mask=mask, dropout_p=attn.dropout if attn.training else 0.0)
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, e))


def cross_attend(attn: nn.MultiheadAttention, query: torch.Tensor, context: torch.Tensor,
                 valid: torch.Tensor | None = None) -> torch.Tensor:
    """Query [B,L_q,d] attends to context [B,L,d] (valid [B,L] bool, True = attend) through `attn`."""
    return attend(attn, query, attention_keys_values(attn, context, valid))


class MLP(nn.Sequential):
    """Two-layer perceptron with GELU: Linear -> GELU -> Linear."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0) -> None:
        super().__init__(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_out))

    def zero_last(self) -> "MLP":
        """Zero the output layer so the module starts as an exact zero map."""
        nn.init.zeros_(self[-1].weight)
        nn.init.zeros_(self[-1].bias)
        return self


def transformer_stack(d_model: int, n_heads: int, n_layers: int, dropout: float) -> nn.TransformerEncoder:
    """Pre-LN self-attention + FFN blocks (batch first)."""
    layer = nn.TransformerEncoderLayer(
        d_model, n_heads, dim_feedforward=4 * d_model, dropout=dropout,
        activation="gelu", batch_first=True, norm_first=True,
    )
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


class AttentionPool(nn.Module):
    """Reads a fixed number of vectors from a sequence with learnable queries (multi-head)."""

    def __init__(self, d_model: int, n_heads: int, n_queries: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_queries, d_model) * d_model**-0.5)
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, seq: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Seq [B,L,d], valid [B,L] bool (True = attend) -> [B,n_queries,d]."""
        q = self.queries.unsqueeze(0).expand(seq.shape[0], -1, -1)
        return self.norm(q + cross_attend(self.attn, q, seq, valid))


def masked_mean(seq: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean over the sequence axis of [B,L,d], counting only valid positions."""
    if valid is None:
        return seq.mean(dim=1)
    w = valid.to(seq.dtype).unsqueeze(-1)
    return (seq * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


class Standardize(nn.Module):
    """(x - mean) / std over the last dimension and back; identity without statistics.

    The statistics live in the model config (saved with every checkpoint), so the buffers are not
    part of the state dict.
    """

    def __init__(self, dim: int, mean=None, std=None) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean if mean is not None else [0.0] * dim, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std if std is not None else [1.0] * dim, dtype=torch.float32),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std.to(z.dtype) + self.mean.to(z.dtype)

    def scale(self, z: torch.Tensor) -> torch.Tensor:
        """Return a difference (residual) from normalised units to raw ones."""
        return z * self.std.to(z.dtype)
