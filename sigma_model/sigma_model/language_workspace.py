# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Language intent workspace (paper section 3.2).

[text; vision; state] -> backbone -> hidden_sequence_base -> semantic factors Z_sem ->
gated semantic memory m_t -> env/behaviour/text summaries -> intent -> telepathy projector (tau)
-> language modulator (double gating) -> high_level_rep.
With a VLA backbone (backbones/vla.py) the step first runs the VLA's own prefix (its image
tokens, the instruction, the robot state; adapters off); Sigma's [text; vision; state] block
attends to it, and the VLA's action expert samples its chunk from it (``backbone_actions``, the
action workspace's baseline).
With ``SigmaConfig.text_encoder`` the text part is a frozen pretrained encoder's per-token hidden
states of the instruction, projected to the backbone width (backbones/text_encoder.py).
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import SigmaBackbone
from .backbones.text_encoder import PretrainedTextEncoder
from .backbones.vla import VLABackbone
from .configuration_sigma import SigmaConfig
from .layers import MLP, AttentionPool
from .outputs import LanguageOutput, TextTokens


class SemanticMemory(nn.Module):
    """u = GELU(W_u z + b_u); lambda = sigmoid(W_l [m_prev; z] + b_l); m_t = lambda m_prev + (1-lambda) u."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.update = nn.Linear(d_model, d_model)
        self.gate = nn.Linear(2 * d_model, d_model)

    def forward(self, z_pool: torch.Tensor, m_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = nn.functional.gelu(self.update(z_pool))
        lam = torch.sigmoid(self.gate(torch.cat([m_prev, z_pool], dim=-1)))
        return lam * m_prev + (1.0 - lam) * u, lam


class LanguageModulator(nn.Module):
    """Double gating: H + exp(theta_lang) * sigmoid(W_g tau + b_g) * (W_b tau); identity at tau = 0."""

    def __init__(self, d_tau: int, d_model: int, log_scale: float) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(float(log_scale)))
        self.channel_gate = nn.Linear(d_tau, d_model)
        self.bias = nn.Linear(d_tau, d_model, bias=False)

    def forward(self, hidden: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate = torch.sigmoid(self.channel_gate(tau))
        shift = torch.exp(self.log_scale) * gate * self.bias(tau)
        return hidden + shift.unsqueeze(1), gate


class LanguageIntentWorkspace(nn.Module):
    def __init__(self, config: SigmaConfig, backbone: SigmaBackbone) -> None:
        super().__init__()
        c = config
        self.config = c
        self.backbone = backbone
        h = backbone.hidden_size
        self.to_backbone = nn.Identity() if h == c.d_model else nn.Linear(c.d_model, h)
        self.from_backbone = nn.Identity() if h == c.d_model else nn.Linear(h, c.d_model)
        self.text_encoder = PretrainedTextEncoder(c.text_encoder) if c.text_encoder else None
        self.text_projection = nn.Linear(self.text_encoder.hidden_size, h) if self.text_encoder else None
        self.semantic_factor_head = AttentionPool(c.d_model, c.n_heads, c.n_semantic_factors, c.dropout)
        self.memory = SemanticMemory(c.d_model)
        self.env_head = AttentionPool(c.d_model, c.n_heads, 1, c.dropout)
        self.behaviour_head = AttentionPool(c.d_model, c.n_heads, 1, c.dropout)
        self.text_head = AttentionPool(c.d_model, c.n_heads, 1, c.dropout)
        self.intent_head = MLP(3 * c.d_model, c.d_model, c.d_model, c.dropout)
        self.telepathy_projector = MLP(6 * c.d_model, 2 * c.d_model, c.d_tau, c.dropout)
        self.modulator = LanguageModulator(c.d_tau, c.d_model, c.lang_log_scale_init)

    def tokenize(self, texts: list[str], max_length: int | None = None) -> TextTokens:
        """Instruction strings -> token ids and mask (the text encoder's tokenizer when there is one).

        At most ``max_length`` (default ``config.max_text_tokens``) tokens each.
        """
        return (self.text_encoder or self.backbone).tokenize(texts, max_length or self.config.max_text_tokens)

    def embed_text(self, text: TextTokens) -> torch.Tensor:
        """[B, L, backbone width]: the projected text-encoder states, else the backbone's embeddings.

        ``text.embeds`` when the tokens carry them (made by this function beforehand).
        """
        if text.embeds is not None:
            return text.embeds
        if self.text_encoder is None:
            return self.backbone.embed_text(text.ids)
        return self.text_projection(self.text_encoder(text.ids, text.mask).to(self.text_projection.weight.dtype))

    def hidden_sequence(
        self, text: TextTokens, vision_tokens: torch.Tensor, state_tokens: torch.Tensor, context=None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """hidden_sequence_base [B,L,d], its validity mask, and a segment id per position (0 text, 1 vision, 2 state).

        `context`: a VLA backbone's prefix.
        """
        b = text.ids.shape[0]
        text_emb = self.embed_text(text)
        perceptual = self.to_backbone(torch.cat([vision_tokens, state_tokens], dim=1)).to(text_emb.dtype)
        embeds = torch.cat([text_emb, perceptual], dim=1)
        valid = torch.cat([text.mask, text.mask.new_ones(b, perceptual.shape[1])], dim=1)
        hidden = self.from_backbone(self.backbone(embeds, valid, context).to(vision_tokens.dtype))
        sizes = (text.ids.shape[1], vision_tokens.shape[1], state_tokens.shape[1])
        segment = torch.cat([torch.full((n,), i, dtype=torch.long, device=hidden.device) for i, n in enumerate(sizes)])
        return hidden, valid, segment

    def forward(
        self, text: TextTokens, vision_tokens: torch.Tensor, state_tokens: torch.Tensor, memory_prev: torch.Tensor,
        telepathy: bool = True, image_tokens: torch.Tensor | None = None, robot_state: torch.Tensor | None = None,
        generator: torch.Generator | None = None, with_actions: bool = True,
    ) -> LanguageOutput:
        """With telepathy off the modulator sees tau = 0.

        So high_level_rep is hidden_sequence_base exactly (tau is still computed and reported).
        """
        vla = isinstance(self.backbone, VLABackbone)
        context = self.backbone.prefix(text, image_tokens, robot_state) if vla else None
        hidden, valid, segment = self.hidden_sequence(text, vision_tokens, state_tokens, context)
        actions = None
        if vla and with_actions:  # after Sigma's block: the expert may extend the prefix cache in place
            actions = self.backbone.sample_actions(context, generator, self.config.diffusion_noise_scale)
        z_sem = self.semantic_factor_head(hidden, valid)
        z_pool = z_sem.mean(dim=1)
        memory, lam = self.memory(z_pool, memory_prev)
        c_env = self.env_head(hidden, valid & (segment == 1)).squeeze(1)
        c_beh = self.behaviour_head(hidden, valid & (segment == 2)).squeeze(1)
        c_text = self.text_head(hidden, valid & (segment == 0)).squeeze(1)
        z_intent = self.intent_head(torch.cat([memory, c_env, c_beh], dim=-1))
        tau = self.telepathy_projector(torch.cat([memory, z_intent, c_env, c_beh, z_pool, c_text], dim=-1))
        high_level_rep, gate = self.modulator(hidden, tau if telepathy else torch.zeros_like(tau))
        return LanguageOutput(
            tau=tau, memory=memory, z_intent=z_intent, z_sem=z_sem, z_sem_pool=z_pool,
            c_env=c_env, c_beh=c_beh, c_text=c_text,
            high_level_rep=high_level_rep, high_level_mask=valid, memory_gate=lam,
            gates=torch.stack([torch.exp(self.modulator.log_scale), gate.mean(), lam.mean()]).detach(),
            backbone_actions=actions,
        )
