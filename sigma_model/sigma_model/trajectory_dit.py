# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Path C of the action workspace: a small DiT denoiser trained with flow matching.

Training: x_t = (1 - t) x_0 + t x_1 with x_0 ~ N(0, I) and x_1 the target trajectory; the DiT
predicts the velocity x_1 - x_0. Inference: Euler integration of the velocity field from t = 0
to t = 1 over `steps` steps, starting from seeded Gaussian noise.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import MLP, attend, attention_keys_values
from .trajectory_dit_inference import euler, plan


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of t in [0,1] (scaled by 1000) -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float().unsqueeze(-1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class DiTBlock(nn.Module):
    """adaLN-zero self-attention, cross-attention to the condition tokens, adaLN-zero MLP.

    The adaLN modulation depends only on (t, condition) and the cross-attention keys and values only
    on the context, so sampling computes both once per plan (:meth:`modulation`, :meth:`context_kv`).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, elementwise_affine=False)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm_cross = nn.LayerNorm(d_model)
        self.cross_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d_model, elementwise_affine=False)
        self.mlp = MLP(d_model, 4 * d_model, d_model, dropout)
        self.ada = nn.Linear(d_model, 6 * d_model)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def modulation(self, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Cond [..., d] -> (shift1, scale1, gate1, shift2, scale2, gate2), each [..., 1, d]."""
        return self.ada(nn.functional.silu(cond)).unsqueeze(-2).chunk(6, dim=-1)

    def context_kv(self, context: torch.Tensor, context_valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return the cross-attention's keys and values [B,heads,L,d_head] and its mask [B,1,1,L] (True = attend)."""
        return attention_keys_values(self.cross_attn, context, context_valid)

    def cross_attention(self, x: torch.Tensor, kv: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """nn.MultiheadAttention's maths on precomputed keys and values (its weights, its dropout)."""
        return attend(self.cross_attn, self.norm_cross(x), kv)

    def forward(self, x: torch.Tensor, mod: tuple[torch.Tensor, ...], kv: tuple[torch.Tensor, ...]) -> torch.Tensor:
        s1, b1, g1, s2, b2, g2 = mod
        h = self.norm1(x) * (1 + s1) + b1
        x = x + g1 * self.self_attn(h, h, h, need_weights=False)[0]
        x = x + self.cross_attention(x, kv)
        h = self.norm2(x) * (1 + s2) + b2
        return x + g2 * self.mlp(h)


class TrajectoryDiT(nn.Module):
    """Velocity model v(x_t, t | action queries, high_level_rep, action condition)."""

    def __init__(
        self, action_dim: int, traj_len: int, d_model: int, n_heads: int, n_layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.action_dim, self.traj_len, self.d_model = action_dim, traj_len, d_model
        self.in_proj = nn.Linear(action_dim, d_model)
        self.pos = nn.Parameter(torch.zeros(traj_len, d_model))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.time_mlp = MLP(d_model, d_model, d_model)
        self.cond_proj = nn.Linear(d_model, d_model)
        self.blocks = nn.ModuleList(DiTBlock(d_model, n_heads, dropout) for _ in range(n_layers))
        self.out_norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, action_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def velocity(self, x_t, t, context, context_valid, condition) -> torch.Tensor:
        """v(x_t, t | context, condition) for x_t [B,T,A], t [B], context [B,L,d], condition [B,d]."""
        mods = [block.modulation(self.step_condition(t, condition)) for block in self.blocks]
        kvs = [block.context_kv(context, context_valid) for block in self.blocks]
        return self._velocity(x_t, mods, kvs)

    def step_condition(self, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Return the DiT's condition vector: time embedding of t [...] plus the projected condition [B,d]."""
        return self.time_mlp(timestep_embedding(t, self.d_model)) + self.cond_proj(condition)

    def _velocity(self, x_t, mods, kvs) -> torch.Tensor:
        h = self.in_proj(x_t) + self.pos
        for block, mod, kv in zip(self.blocks, mods, kvs):
            h = block(h, mod, kv)
        return self.out(self.out_norm(h))

    def step_plan(self, context, context_valid, condition, steps: int):
        """Return the step size and what every Euler step of a plan shares.

        Per block: its modulation at each step's time (6 x [steps, B, 1, d]) and its cross-attention keys and values.
        """
        dt = 1.0 / steps
        # made on the device (no host copy: a CUDA graph can capture it), from doubles as i * dt in Python
        t = (torch.arange(steps, dtype=torch.float64, device=condition.device) * dt).to(condition.dtype)
        cond = self.step_condition(t[:, None].expand(steps, condition.shape[0]), condition)  # [steps, B, d]
        mods = [block.modulation(cond) for block in self.blocks]
        kvs = [block.context_kv(context, context_valid) for block in self.blocks]
        return dt, mods, kvs

    def sample(self, context, context_valid, condition, steps: int, generator: torch.Generator | None = None,
               noise_scale: float = 1.0) -> torch.Tensor:
        """Integrate with Euler steps from seeded noise times `noise_scale` (0: from the noise mean).

        Deterministic for a given generator state. What does not change from step to step (the condition of
        every step, the cross-attention keys and values) is computed once. In eval mode the steps run
        folded and scripted (:mod:`.trajectory_dit_inference`, equal up to float rounding); training mode
        keeps the modules' own path (their dropout).
        """
        b = condition.shape[0]
        x = torch.randn(b, self.traj_len, self.action_dim, generator=generator, device=condition.device)
        x = (noise_scale * x).to(condition.dtype)
        if not self.training:
            return euler(x, *plan(self, context, context_valid, condition, steps), self.blocks[0].self_attn.num_heads,
                         self.blocks[0].norm1.eps)
        dt, mods, kvs = self.step_plan(context, context_valid, condition, steps)
        for i in range(steps):
            x = x + dt * self._velocity(x, [[m[i] for m in mod] for mod in mods], kvs)
        return x

    def flow_loss(
        self, target, context, context_valid, condition, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the flow-matching MSE between predicted and true velocity at a random t.

        Also the one-step estimate of the clean trajectory x_t + (1 - t) v (a differentiable training-time output).
        """
        b = target.shape[0]
        noise = torch.randn(target.shape, generator=generator, device=target.device).to(target.dtype)
        t = torch.rand(b, generator=generator, device=target.device).to(target.dtype)[:, None, None]
        x_t = (1 - t) * noise + t * target
        pred = self.velocity(x_t, t.view(b), context, context_valid, condition)
        return nn.functional.mse_loss(pred, target - noise), x_t + (1 - t) * pred
