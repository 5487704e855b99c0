# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Action trajectory workspace (paper section 3.3).

c_act = P_act(r_high, tau); q = LN(Ref(Attn(Q_0, W_s S, W_s S) + b(c_act)));
baseline at tau = 0: a_base = (H_A(q_base), H_B(q_base), D_traj(q_base, r_high, c_base));
telepathy residual [da_vec, da_chunk, da_traj] = g([tau_high, tau]); a_tau = a_base + da;
u_t = phi(a_vec, a_chunk, a_traj); motor commands = C_low(u_t).
With action statistics in the config the heads and the DiT work in (a - mean) / std; outputs are radians.
With a VLA backbone the baseline is the backbone's own action chunk instead (its action expert, run
in the language stage on the VLA's prefix, tau-independent): a_chunk^base and a_traj^base are its
first chunk_len / traj_len steps and a_vec^base its first step; Sigma's heads H_A, H_B and the DiT
are not built, and the residual head g corrects the backbone, as TRAF corrects pi0.5 in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration_sigma import SigmaConfig
from .layers import MLP, AttentionPool, Standardize, cross_attend, transformer_stack
from .outputs import ActionOutput
from .trajectory_dit import TrajectoryDiT


class ActionConditionProjector(nn.Module):
    """P_act(r_high, tau): MLP over [attention-pooled high_level_rep; tau] -> c_act [B,d].

    Learned queries read the sequence (a mean would blur a small object's place into the rest).
    tau may carry leading dimensions ([K,B,d_tau] -> [K,B,d]): the sequence is pooled once for all K.
    """

    def __init__(self, d_model: int, d_tau: int, n_heads: int, n_queries: int, dropout: float) -> None:
        super().__init__()
        self.pool = AttentionPool(d_model, n_heads, n_queries, dropout)
        self.mlp = MLP(n_queries * d_model + d_tau, 2 * d_model, d_model, dropout)

    def forward(self, high_level_rep, high_level_mask, tau) -> torch.Tensor:
        pooled = self.pool(high_level_rep, high_level_mask).flatten(1)
        return self.mlp(torch.cat([pooled.expand(*tau.shape[:-1], -1), tau], dim=-1))


class ActionQueryGenerator(nn.Module):
    """Cross-attention of learnable query seeds to projected state tokens, biased by c_act, refined.

    With ``query_context = "state+rep"`` the queries also attend to high_level_rep (so paths A and B
    read where things are, as the DiT of path C does), not only through the pooled c_act.
    The condition may carry leading dimensions ([K,B,d] -> [K,B,queries,d]): the attention to the
    state tokens, the same for all K, runs once.
    """

    def __init__(self, config: SigmaConfig) -> None:
        super().__init__()
        c = config
        self.seeds = nn.Parameter(torch.randn(c.n_action_queries, c.d_model) * c.d_model**-0.5)
        self.state_proj = nn.Linear(c.d_model, c.d_model)
        self.attn = nn.MultiheadAttention(c.d_model, c.n_heads, dropout=c.dropout, batch_first=True)
        self.condition_bias = nn.Linear(c.d_model, c.d_model)
        self.refine = transformer_stack(c.d_model, c.n_heads, c.action_refine_layers, c.dropout)
        self.norm = nn.LayerNorm(c.d_model)

    def forward(self, condition: torch.Tensor, state_tokens: torch.Tensor, rep: torch.Tensor | None = None,
                rep_mask: torch.Tensor | None = None) -> torch.Tensor:
        q0 = self.seeds.unsqueeze(0).expand(state_tokens.shape[0], -1, -1)
        s = self.state_proj(state_tokens)
        valid = None
        if rep is not None:
            valid = torch.cat([rep_mask.new_ones(s.shape[:2]), rep_mask], dim=1)
            s = torch.cat([s, rep], dim=1)
        q1 = cross_attend(self.attn, q0, s, valid) + self.condition_bias(condition).unsqueeze(-2)
        q = self.norm(self.refine(q1.reshape(-1, *q1.shape[-2:])))
        return q.view(q1.shape)


class ActionWorkspace(nn.Module):
    def __init__(self, config: SigmaConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        a = c.action_dim
        self.condition_projector = ActionConditionProjector(
            c.d_model, c.d_tau, c.n_heads, c.n_condition_queries, c.dropout
        )
        self.query_generator = ActionQueryGenerator(c)
        self.backbone_baseline = c.vla_backbone  # the baseline is the VLA's chunk, not Sigma's heads
        own = not self.backbone_baseline
        self.action_token_head = nn.Linear(c.d_model, c.action_token_dim) if own else None  # path A: tokens
        self.action_tokenizer = (
            nn.Linear(c.n_action_queries * c.action_token_dim, a) if own else None
        )  # tokens -> vector
        self.chunk_head = nn.Linear(c.d_model, c.chunk_len * a) if own else None  # path B: pooling + linear
        self.trajectory_dit = (
            TrajectoryDiT(a, c.traj_len, c.d_model, c.n_heads, c.dit_layers, c.dropout) if own else None
        )
        self.residual_head = MLP(c.d_model + c.d_tau, 2 * c.d_model, a * (1 + c.chunk_len + c.traj_len)).zero_last()
        self.condition_to_tau = nn.Linear(c.d_model, c.d_tau, bias=False)
        # from config.json like the normalisation statistics: not in the state dict (see _load_from_state_dict)
        self.register_buffer("fusion_weights", torch.tensor(c.fusion_weights, dtype=torch.float32), persistent=False)
        self.action_norm = Standardize(a, c.action_mean, c.action_std)  # heads and DiT work in normalised units

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Checkpoints written before the fusion weights left the state dict hold a copy: config.json's decide."""
        state_dict.pop(prefix + "fusion_weights", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def branches(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Paths A and B: action vector [B,A] and action chunk [B,chunk,A]."""
        b = queries.shape[0]
        vector = self.action_tokenizer(self.action_token_head(queries).reshape(b, -1))
        chunk = self.chunk_head(queries.mean(dim=1)).view(b, self.config.chunk_len, self.config.action_dim)
        return self.action_norm.inverse(vector), self.action_norm.inverse(chunk)

    def forward(
        self,
        high_level_rep: torch.Tensor,
        high_level_mask: torch.Tensor,
        tau: torch.Tensor,
        state_tokens: torch.Tensor,
        telepathy: bool = True,
        generator: torch.Generator | None = None,
        trajectory_target: torch.Tensor | None = None,
        backbone_actions: torch.Tensor | None = None,
    ) -> ActionOutput:
        c = self.config
        b = tau.shape[0]
        reads = (high_level_rep, high_level_mask) if c.query_context == "state+rep" else (None, None)
        traj_loss = None
        if self.backbone_baseline:
            if backbone_actions is None:
                raise ValueError(f"the {c.backbone} backbone's action chunk (LanguageOutput.backbone_actions) is this "
                                 "workspace's baseline: pass it as backbone_actions")
            base_vec, base_chunk, base_traj = (
                backbone_actions[:, 0],
                backbone_actions[:, : c.chunk_len],
                backbone_actions[:, : c.traj_len],
            )
            c_act = self.condition_projector(high_level_rep, high_level_mask, tau)
            if telepathy:
                q_tau = self.query_generator(c_act, state_tokens, *reads)
        else:
            # the baseline's c_base (tau = 0) and c_act, then their queries, each pair in one pass (also with
            # telepathy off, so that the baseline is bit for bit the same either way)
            c_base, c_act = self.condition_projector(high_level_rep, high_level_mask,
                                                     torch.stack([torch.zeros_like(tau), tau])).unbind(0)
            q_base, q_tau = self.query_generator(torch.stack([c_base, c_act]), state_tokens, *reads).unbind(0)
            base_vec, base_chunk, base_traj, traj_loss = self.own_baseline(
                high_level_rep, high_level_mask, c_base, q_base, generator, trajectory_target
            )
        if telepathy:
            tau_high = q_tau.mean(dim=1)
            delta = self.residual_head(torch.cat([tau_high, tau], dim=-1))
            delta = self.action_norm.scale(delta.view(b, -1, c.action_dim)).reshape(b, -1)
            d_vec, d_chunk, d_traj = delta.split(
                [c.action_dim, c.chunk_len * c.action_dim, c.traj_len * c.action_dim], -1
            )
            d_chunk = d_chunk.view(b, c.chunk_len, c.action_dim)
            d_traj = d_traj.view(b, c.traj_len, c.action_dim)
        else:
            d_vec, d_chunk, d_traj = (
                torch.zeros_like(base_vec),
                torch.zeros_like(base_chunk),
                torch.zeros_like(base_traj),
            )
        return ActionOutput(
            action_vector=base_vec + d_vec,
            action_chunk=base_chunk + d_chunk,
            action_trajectory=base_traj + d_traj,
            baseline_vector=base_vec,
            baseline_chunk=base_chunk,
            baseline_trajectory=base_traj,
            residual_vector=d_vec,
            residual_chunk=d_chunk,
            residual_trajectory=d_traj,
            action_condition=c_act,
            condition_tau=self.condition_to_tau(c_act),
            trajectory_loss=traj_loss,
        )

    def own_baseline(self, high_level_rep, high_level_mask, c_base, q_base, generator, trajectory_target):
        """Compute Sigma's own tau = 0 baseline (paths A, B, C) from its condition c_base and queries q_base.

        Also returns the DiT's flow loss when training.
        """
        c = self.config
        b = c_base.shape[0]
        base_vec, base_chunk = self.branches(q_base)
        context = torch.cat([q_base, high_level_rep], dim=1)
        context_valid = torch.cat([high_level_mask.new_ones(b, q_base.shape[1]), high_level_mask], dim=1)
        traj_loss = None
        if trajectory_target is not None:  # training: one DiT pass gives the loss and a trajectory estimate
            traj_loss, base_traj = self.trajectory_dit.flow_loss(
                self.action_norm(trajectory_target), context, context_valid, c_base, generator
            )
        else:
            base_traj = self.trajectory_dit.sample(context, context_valid, c_base, c.diffusion_steps, generator,
                                                   c.diffusion_noise_scale)
        return base_vec, base_chunk, self.action_norm.inverse(base_traj), traj_loss

    def fuse(
        self, vector: torch.Tensor, chunk: torch.Tensor, trajectory: torch.Tensor, step_index: int
    ) -> torch.Tensor:
        """phi: weighted mix of the three branches at control tick `step_index` of the plan.

        The action vector is a one-step prediction, so past tick 0 only chunk and trajectory mix
        (their weights renormalised); ticks past the plan's end reuse its last step.
        """
        if step_index < 0:
            raise ValueError(f"step_index must be >= 0, got {step_index}")
        w = self.fusion_weights
        k_chunk = min(step_index, chunk.shape[1] - 1)
        k_traj = min(step_index, trajectory.shape[1] - 1)
        if step_index == 0:
            return (w[0] * vector + w[1] * chunk[:, k_chunk] + w[2] * trajectory[:, k_traj]) / w.sum()
        return (w[1] * chunk[:, k_chunk] + w[2] * trajectory[:, k_traj]) / (w[1] + w[2])

    def low_level_controller(self, u: torch.Tensor, robot_state: torch.Tensor) -> torch.Tensor:
        """C_low: first-order tracking of the fused target, state + gain (u - state)."""
        return robot_state + self.config.controller_gain * (u - robot_state)
