# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The TrajectoryDiT's inference sampler: its Euler steps as one TorchScript call.

At batch 1 and d_model 64 a DiT step is some 50 tiny tensor ops, and a Python call per op (module
dispatch, argument parsing) costs about as much as the op. :func:`plan` computes, once per plan, what
does not change between Euler steps (each step's adaLN modulation, the cross-attention's keys and
values, the output layer scaled by the step size) and :func:`euler` runs all steps in TorchScript
on plain tensors: the modules' maths written with ``torch.nn.functional``, equal up to float rounding
(``nn.MultiheadAttention`` computes the same scaled dot-product attention; tested against it). Folding
the adaLN scale or the cross-attention's query/output projections into per-step weights was measured
too and was slower: these ops are small enough that their arithmetic matters.

TorchScript is deprecated since torch 2.5 but works; ``torch.compile`` did not finish compiling the
sampler in 9 minutes on a 2-core machine.
"""

from __future__ import annotations

import functools
import warnings
from typing import List, Optional

import torch
import torch.nn.functional as F


def plan(dit, context: torch.Tensor, context_valid: torch.Tensor, condition: torch.Tensor, steps: int):
    """Return :func:`euler`'s per-step, per-block and head tensors and its mask (None: all keys valid, on the CPU)."""
    b = condition.shape[0]
    dt, mods, kvs = dit.step_plan(context, context_valid, condition, steps)
    per_step: list[list[torch.Tensor]] = [[] for _ in range(steps)]
    per_block: list[list[torch.Tensor]] = []
    for block, (s1, b1, g1, s2, b2, g2), (k, v, _) in zip(dit.blocks, mods, kvs):  # modulation: [steps, B, 1, d]
        for i, mod in enumerate(zip((1 + s1).unbind(), b1.unbind(), g1.unbind(), (1 + s2).unbind(), b2.unbind(),
                                    g2.unbind())):
            per_step[i].extend(mod)
        sa, ca, norm, mlp = block.self_attn, block.cross_attn, block.norm_cross, block.mlp
        per_block.append([sa.in_proj_weight, sa.in_proj_bias, sa.out_proj.weight, sa.out_proj.bias,
                          norm.weight, norm.bias, ca.in_proj_weight[: ca.embed_dim], ca.in_proj_bias[: ca.embed_dim],
                          k, v, ca.out_proj.weight, ca.out_proj.bias,
                          mlp[0].weight, mlp[0].bias, mlp[3].weight, mlp[3].bias])
    head = [dit.in_proj.weight.t().expand(b, -1, -1), (dit.in_proj.bias + dit.pos).expand(b, -1, -1),
            dit.out_norm.weight, dit.out_norm.bias, dt * dit.out.weight, dt * dit.out.bias]
    # reading a CPU mask is free; off the CPU the test would stall the stream (and break a CUDA graph's capture)
    all_valid = context_valid.device.type == "cpu" and bool(context_valid.all())
    mask = None if all_valid else context_valid[:, None, None, :]
    return per_step, per_block, head, mask


def _euler(x: torch.Tensor, per_step: List[List[torch.Tensor]], per_block: List[List[torch.Tensor]],
           head: List[torch.Tensor], mask: Optional[torch.Tensor], n_heads: int, eps: float) -> torch.Tensor:
    """Integrate from x over the planned steps: DiTBlock.forward's maths, TrajectoryDiT._velocity's layers."""
    b, t_len, d = x.shape[0], x.shape[1], head[1].shape[-1]
    for step in per_step:
        h = torch.baddbmm(head[1], x, head[0])  # in_proj(x) + pos
        for layer in range(len(per_block)):
            s1, b1, g1, s2, b2, g2 = step[6 * layer: 6 * layer + 6]
            w = per_block[layer]
            y = torch.addcmul(b1, F.layer_norm(h, [d], None, None, eps), s1)
            qkv = F.linear(y, w[0], w[1]).view(b, t_len, 3, n_heads, d // n_heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(b, t_len, d)
            h = torch.addcmul(h, g1, F.linear(a, w[2], w[3]))
            q = F.linear(F.layer_norm(h, [d], w[4], w[5], eps), w[6], w[7]).view(b, t_len, n_heads, -1)
            a = F.scaled_dot_product_attention(q.transpose(1, 2), w[8], w[9], mask).transpose(1, 2).reshape(b, t_len, d)
            h = h + F.linear(a, w[10], w[11])
            y = torch.addcmul(b2, F.layer_norm(h, [d], None, None, eps), s2)
            h = torch.addcmul(h, g2, F.linear(F.gelu(F.linear(y, w[12], w[13])), w[14], w[15]))
        x = x + F.linear(F.layer_norm(h, [d], head[2], head[3], eps), head[4], head[5])
    return x


@functools.cache
def scripted_euler():
    """Return :func:`_euler` compiled by TorchScript (once per process, at the first plan)."""
    with warnings.catch_warnings():  # TorchScript's deprecation notice (see the module docstring)
        warnings.simplefilter("ignore")
        return torch.jit.script(_euler)


def euler(x: torch.Tensor, per_step, per_block, head, mask, n_heads: int, eps: float) -> torch.Tensor:
    """Integrate from x [B,T,A] over the planned steps (:func:`plan`) in one TorchScript call."""
    return scripted_euler()(x, per_step, per_block, head, mask, n_heads, eps)
