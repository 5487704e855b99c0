# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Typed inputs and outputs of the Sigma stages (what the ROS messages carry)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SigmaObservation:
    """One sensor snapshot, batch first.

    image: [B,C,H,W] uint8 or float in [0,1]; robot_state: [B,state_dim] joint positions;
    audio: [B,audio_chunk_samples] float in [-1,1] or None; depth: [B,1,H,W] metres or None;
    env_state: [B,env_state_dim] privileged simulator state, only for configs with env_state_dim > 0.
    """

    image: torch.Tensor
    robot_state: torch.Tensor
    audio: torch.Tensor | None = None
    depth: torch.Tensor | None = None
    env_state: torch.Tensor | None = None


@dataclass
class TextTokens:
    """Token ids [B,L], their validity mask [B,L] (True = real token) and, from ``tokenize``.

    The instruction strings (a VLA backbone whose prompt depends on the state re-tokenizes them). ``embeds``: the
    language workspace's ``embed_text`` of these tokens, made beforehand (a CUDA graph's step reads them from a
    buffer; the text encoder's cache reads the ids on the host).
    """

    ids: torch.Tensor
    mask: torch.Tensor
    texts: list[str] | None = None
    embeds: torch.Tensor | None = None


@dataclass
class VisionOutput:
    vision_tokens: torch.Tensor  # [B,N_v,d] telepathy-modulated and refined
    state_tokens: torch.Tensor  # [B,N_s,d]
    vision_tokens_base: torch.Tensor  # [B,N_v,d] resampler output before modulation
    backbone_image_tokens: torch.Tensor | None = None  # [B,N_img,d_backbone] a VLA backbone's image tokens


@dataclass
class LanguageOutput:
    tau: torch.Tensor  # [B,d_tau] telepathy factors
    memory: torch.Tensor  # [B,d] semantic memory m_t
    z_intent: torch.Tensor  # [B,d]
    z_sem: torch.Tensor  # [B,K,d] semantic factors
    z_sem_pool: torch.Tensor  # [B,d]
    c_env: torch.Tensor  # [B,d]
    c_beh: torch.Tensor  # [B,d]
    c_text: torch.Tensor  # [B,d]
    high_level_rep: torch.Tensor  # [B,L_h,d]
    high_level_mask: torch.Tensor  # [B,L_h] bool
    memory_gate: torch.Tensor  # [B,d] lambda of the memory recurrence
    gates: torch.Tensor  # [3] exp(theta_lang), mean language channel gate, mean memory gate lambda
    backbone_actions: torch.Tensor | None = None  # [B,horizon,A] a VLA backbone's own chunk (radians): the baseline


@dataclass
class ActionOutput:
    action_vector: torch.Tensor  # [B,A]
    action_chunk: torch.Tensor  # [B,chunk_len,A]
    action_trajectory: torch.Tensor  # [B,traj_len,A]
    baseline_vector: torch.Tensor
    baseline_chunk: torch.Tensor
    baseline_trajectory: torch.Tensor
    residual_vector: torch.Tensor
    residual_chunk: torch.Tensor
    residual_trajectory: torch.Tensor
    action_condition: torch.Tensor  # [B,d] c_act with tau
    condition_tau: torch.Tensor  # [B,d_tau] c_act mapped into tau space (for cos(tau, c_act))
    trajectory_loss: torch.Tensor | None = None  # diffusion objective when a target was given


@dataclass
class SigmaOutput:
    vision: VisionOutput
    language: LanguageOutput
    action: ActionOutput
    motor_commands: torch.Tensor  # [B,A]

