# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Cognitive vision workspace (paper section 3.1).

camera/depth/audio -> patch tokens (+ optional spatial-softmax keypoint tokens) -> projector -> perceiver resampler
(V_base) -> FiLM by the telepathy factor tau with log-scale gates (V_mod) -> modulated vision block. With a VLA backbone
the camera's tokens are the VLA's image tokens (its frozen vision encoder + connector, linearly projected to d_model)
instead of Sigma's own patch embedding; Sigma's resampler, FiLM and block stay on top, and the image tokens are also
returned for the VLA's own prefix in the language stage. robot_state -> standardisation (config statistics) -> state
encoder -> token expander (state tokens). Optional auxiliary head: vision tokens -> a training-only target (e.g. the
object pose in simulation), which teaches the encoder to localise what the actions depend on; the model never reads it,
and only the training loss runs it (`training.trainer.compute_losses`), so inference does not pay for it.
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration_sigma import SigmaConfig
from .layers import MLP, AttentionPool, Standardize, cross_attend, transformer_stack
from .outputs import SigmaObservation, VisionOutput


class PatchEmbed(nn.Module):
    """Non-overlapping conv patches of an image -> [B, N_patches, d] with learned positions."""

    def __init__(self, channels: int, image_size: int, patch_size: int, d_model: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, d_model, kernel_size=patch_size, stride=patch_size)
        self.pos = nn.Parameter(torch.zeros((image_size // patch_size) ** 2, d_model))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.proj(image).flatten(2).transpose(1, 2) + self.pos


class KeypointEmbed(nn.Module):
    """Conv stem + spatial softmax: image -> K expected (x, y) feature locations -> K tokens.

    Each of the K output channels, standardised over positions and scaled by a learned
    temperature, is a softmax over image positions whose expected coordinates (in [-1, 1]) become
    one token; a small object moves its keypoints however few pixels it covers, from the start.
    """

    def __init__(self, channels: int, n_keypoints: int, d_model: int, width: int = 32, stride: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(  # stride 4 overall: a 96x96 image gives 24x24 maps (stride 2: 48x48)
            nn.Conv2d(channels, width // 2, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv2d(width // 2, width, 3, stride=stride // 2, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, n_keypoints, 1),
        )
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.to_token = MLP(2, d_model, d_model)
        self.keypoint_embed = nn.Parameter(torch.zeros(n_keypoints, d_model))
        nn.init.trunc_normal_(self.keypoint_embed, std=0.02)

    def keypoints(self, image: torch.Tensor) -> torch.Tensor:
        """[B,C,H,W] -> [B,K,2] expected (x, y) in [-1, 1]."""
        maps = self.stem(image)
        b, k, h, w = maps.shape
        flat = maps.flatten(2)
        z = (flat - flat.mean(-1, keepdim=True)) / (flat.std(-1, keepdim=True) + 1e-5)
        prob = torch.softmax(z * torch.exp(self.log_temperature), dim=-1).view(b, k, h, w)
        xs = torch.linspace(-1.0, 1.0, w, device=image.device, dtype=prob.dtype)
        ys = torch.linspace(-1.0, 1.0, h, device=image.device, dtype=prob.dtype)
        return torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], dim=-1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.to_token(self.keypoints(image)) + self.keypoint_embed


class AudioPatchEmbed(nn.Module):
    """Non-overlapping 1-D conv patches of a mono waveform -> [B, N_audio, d]."""

    def __init__(self, chunk_samples: int, patch_samples: int, d_model: int) -> None:
        super().__init__()
        self.proj = nn.Conv1d(1, d_model, kernel_size=patch_samples, stride=patch_samples)
        self.pos = nn.Parameter(torch.zeros(chunk_samples // patch_samples, d_model))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.proj(audio.unsqueeze(1)).transpose(1, 2) + self.pos


class PerceiverResampler(nn.Module):
    """V_base = FFN(LN(Q + softmax(Q W_Q (F W_K)^T / sqrt d) F W_V)), N_v learnable queries."""

    def __init__(self, d_model: int, n_heads: int, n_queries: int, dropout: float) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_queries, d_model) * d_model**-0.5)
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = MLP(d_model, 4 * d_model, d_model, dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        q = self.queries.unsqueeze(0).expand(features.shape[0], -1, -1)
        h = cross_attend(self.attn, q, features)
        return self.ffn(self.norm(q + h))


class StateEncoder(nn.Module):
    """MLP over robot_state, then a token expander to N_s state tokens."""

    def __init__(self, state_dim: int, d_model: int, n_tokens: int) -> None:
        super().__init__()
        self.encoder = MLP(state_dim, d_model, d_model)
        self.token_expander = nn.Linear(d_model, n_tokens * d_model)
        self.token_embed = nn.Parameter(torch.zeros(n_tokens, d_model))
        self.n_tokens = n_tokens

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        z = self.encoder(state)
        tokens = self.token_expander(z).view(state.shape[0], self.n_tokens, -1)
        return tokens + self.token_embed


class VisionModulator(nn.Module):
    """tau' = exp(theta_t) tau.

    [gamma, beta] = W2 GELU(W1 tau' + b1) + b2; V_film = (1 + gamma) V_base + beta; V_mod = V_base + exp(theta_mod)
    (V_film - V_base).
    """

    def __init__(self, d_tau: int, d_model: int, tau_log_scale: float, mod_log_scale: float) -> None:
        super().__init__()
        self.tau_log_scale = nn.Parameter(torch.tensor(float(tau_log_scale)))
        self.mod_log_scale = nn.Parameter(torch.tensor(float(mod_log_scale)))
        self.film = MLP(d_tau, d_model, 2 * d_model).zero_last()

    def forward(self, v_base: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(torch.exp(self.tau_log_scale) * tau).unsqueeze(1).chunk(2, dim=-1)
        v_film = (1.0 + gamma) * v_base + beta
        return v_base + torch.exp(self.mod_log_scale) * (v_film - v_base)


class AuxiliaryHead(nn.Module):
    """Attention-pooled vision tokens -> an auxiliary regression target [B, out_dim]."""

    def __init__(self, d_model: int, n_heads: int, out_dim: int) -> None:
        super().__init__()
        self.pool = AttentionPool(d_model, n_heads, 1)
        self.mlp = MLP(d_model, d_model, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.pool(tokens).squeeze(1))


class CognitiveVisionWorkspace(nn.Module):
    def __init__(self, config: SigmaConfig, image_encoder: nn.Module | None = None) -> None:
        super().__init__()
        c = config
        self.config = c
        if c.vla_backbone and image_encoder is None:
            raise ValueError(
                f"the {c.backbone} backbone's vision workspace needs its image encoder (backbones.vla.build_vla)"
            )
        self.image_encoder = image_encoder  # frozen VLA vision encoder + connector (external weights)
        self.image_proj = nn.Linear(image_encoder.dim, c.d_model) if image_encoder is not None else None
        self.patch_embed = (
            None if image_encoder is not None else PatchEmbed(c.image_channels, c.image_size, c.patch_size, c.d_model)
        )
        self.keypoint_embed = (KeypointEmbed(c.image_channels, c.image_keypoints, c.d_model, stride=c.keypoint_stride)
                               if c.image_keypoints else None)
        self.depth_embed = PatchEmbed(1, c.image_size, c.patch_size, c.d_model) if c.use_depth else None
        self.audio_embed = (
            AudioPatchEmbed(c.audio_chunk_samples, c.audio_patch_samples, c.d_model) if c.use_audio else None
        )
        self.projector = MLP(c.d_model, 2 * c.d_model, c.d_model, c.dropout)
        self.resampler = PerceiverResampler(c.d_model, c.n_heads, c.n_vision_tokens, c.dropout)
        self.state_norm = Standardize(c.state_dim, c.state_mean, c.state_std)
        self.state_encoder = StateEncoder(c.state_dim + c.env_state_dim, c.d_model, c.n_state_tokens)
        self.modulator = VisionModulator(c.d_tau, c.d_model, c.tau_log_scale_init, c.mod_log_scale_init)
        self.block = transformer_stack(c.d_model, c.n_heads, c.vision_block_layers, c.dropout)
        self.aux_head = AuxiliaryHead(c.d_model, c.n_heads, c.aux_target_dim) if c.aux_target_dim else None

    def features(self, obs: SigmaObservation, image_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Concatenated projected vision features F [B, N_f, d] (image_tokens: the VLA's, if any)."""
        parts = [self.patch_embed(obs.image) if image_tokens is None else self.image_proj(image_tokens)]
        if self.keypoint_embed is not None:
            parts.append(self.keypoint_embed(obs.image))
        if self.depth_embed is not None and obs.depth is not None:
            parts.append(self.depth_embed(obs.depth))
        if self.audio_embed is not None and obs.audio is not None:
            parts.append(self.audio_embed(obs.audio))
        return self.projector(torch.cat(parts, dim=1))

    def forward(self, obs: SigmaObservation, tau: torch.Tensor) -> VisionOutput:
        image_tokens = None if self.image_encoder is None else self.image_encoder(obs.image)
        v_base = self.resampler(self.features(obs, image_tokens))
        v_mod = self.modulator(v_base, tau)
        vision_tokens = self.block(v_mod)
        state = self.state_norm(obs.robot_state)
        return VisionOutput(
            vision_tokens=vision_tokens,
            state_tokens=self.state_encoder(
                state if obs.env_state is None else torch.cat([state, obs.env_state], dim=-1)
            ),
            vision_tokens_base=v_base,
            backbone_image_tokens=image_tokens,
        )
