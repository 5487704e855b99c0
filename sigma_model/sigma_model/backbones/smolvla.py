# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""SmolVLA (LeRobot 0.4.4 ``SmolVLAPolicy``, stock transformers) as a Sigma backbone.

Module layout used (``policy.model`` is LeRobot's ``VLAFlowMatching``): ``vlm_with_expert`` (a
``SmolVLMWithExpertModel``: ``vlm.model.vision_model`` + ``vlm.model.connector`` = image tokens,
``vlm.model.text_model`` = the language model, truncated to ``num_vlm_layers``, ``lm_expert`` =
the action expert), ``embed_prefix`` (images, language tokens, state -> the prefix),
``denoise_step`` (one flow-matching step of the expert on the cached prefix).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from .vla import (
    VLABackbone,
    VLAContext,
    VLAImageEncoder,
    dataset_stats,
    precomputed_image_embeddings,
)

if TYPE_CHECKING:
    from ..configuration_sigma import SigmaConfig

UNUSED_WEIGHTS = ("vlm.lm_head",)  # the VLM's text head: SmolVLA never decodes text
# small projections between Sigma-facing tensors and the policy stay in full precision under 4-bit
FULL_PRECISION = ("state_proj", "action_in_proj", "action_out_proj", "action_time_mlp", "lm_head")


def check_compatible(policy_config, config: SigmaConfig) -> None:
    """Raise ValueError naming the first mismatch between the policy and the Sigma config."""
    from lerobot.utils.constants import ACTION, OBS_STATE

    problems = []
    if not policy_config.image_features:
        problems.append("the policy has no image input")
    if policy_config.empty_cameras or policy_config.adapt_to_pi_aloha:
        problems.append("empty_cameras / adapt_to_pi_aloha (ALOHA set-ups) are not supported")
    action = policy_config.output_features.get(ACTION)
    if action is None or action.shape[0] != config.action_dim:
        problems.append(f"its action has {None if action is None else action.shape[0]} dims, Sigma's action_dim is "
                        f"{config.action_dim}")
    state = policy_config.input_features.get(OBS_STATE)
    if state is None or state.shape[0] != config.state_dim:
        problems.append(f"its state has {None if state is None else state.shape[0]} dims, Sigma's state_dim is "
                        f"{config.state_dim}")
    if policy_config.chunk_size < max(config.chunk_len, config.traj_len):
        problems.append(f"its chunk ({policy_config.chunk_size} steps) is shorter than chunk_len/traj_len")
    if problems:
        raise ValueError(f"backbone {config.backbone_path!r} does not fit this SigmaConfig: {'; '.join(problems)}")


def policy_keys(policy, file_keys) -> set[str]:
    """Return the policy's state-dict keys a ``model.safetensors`` with `file_keys` fills (SmolVLA saves its own)."""
    return set(file_keys)


class SmolVLAImageEncoder(VLAImageEncoder):
    """SmolVLA's image path (``prepare_images`` + ``embed_image``).

    Resize with padding, [-1, 1], SigLIP vision encoder, pixel-shuffle connector -> image tokens.
    """

    def __init__(self, vision_model: nn.Module, connector: nn.Module, resize: tuple[int, int] | None, dim: int) -> None:
        super().__init__()
        self.vision_model = vision_model
        self.connector = connector
        self.resize = tuple(resize) if resize else None
        self.dim = dim
        self.requires_grad_(False)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        from lerobot.policies.smolvla.modeling_smolvla import resize_with_pad

        if self.resize is not None:
            image = resize_with_pad(image, *self.resize, pad_value=0)
        pixels = (image * 2.0 - 1.0).to(self.vision_model.dtype)
        return self.connector(self.vision_model(pixel_values=pixels, patch_attention_mask=None).last_hidden_state)


def image_encoder(policy) -> SmolVLAImageEncoder:
    vwe = policy.model.vlm_with_expert
    vlm = vwe.get_vlm_model()
    return SmolVLAImageEncoder(vlm.vision_model, vlm.connector, policy.config.resize_imgs_with_padding,
                               int(vwe.config.text_config.hidden_size))


def language_backbone(policy, config: SigmaConfig) -> SmolVLABackbone:
    from lerobot.policies.smolvla.processor_smolvla import (
        make_smolvla_pre_post_processors,
    )

    vwe = policy.model.vlm_with_expert
    vlm = vwe.get_vlm_model()
    vlm.vision_model = None  # the vision workspace holds the image path (one owner per tensor)
    vlm.connector = None
    vwe.freeze_vision_encoder = False  # its train() would reach for the vision model
    vwe.vlm.lm_head = None
    pre, post = make_smolvla_pre_post_processors(policy.config, dataset_stats(config))
    return SmolVLABackbone(policy, pre, post)


class SmolVLABackbone(VLABackbone):
    def __init__(self, policy, preprocessor, postprocessor) -> None:
        super().__init__(policy, preprocessor, postprocessor)
        from lerobot.utils.constants import ACTION

        vwe = policy.model.vlm_with_expert
        self.hidden_size = int(vwe.config.text_config.hidden_size)
        self.action_horizon = int(policy.config.chunk_size)
        self.action_dim = int(policy.config.output_features[ACTION].shape[0])
        self.flow_steps = int(policy.config.num_steps)

    @property
    def decoder(self) -> nn.Module:
        return self.policy.model.vlm_with_expert.get_vlm_model().text_model

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings scaled by sqrt(hidden), as SmolVLA feeds its language tokens."""
        emb = self.policy.model.vlm_with_expert.embed_language_tokens(ids)
        return emb * math.sqrt(emb.shape[-1])

    def _run_prefix(self, text, image_tokens, robot_state) -> VLAContext:
        from lerobot.policies.smolvla.modeling_smolvla import make_att_2d_masks
        from lerobot.utils.constants import OBS_STATE

        model = self.policy.model
        state = self.policy.prepare_state({OBS_STATE: self.normalize_state(robot_state)})
        present = torch.ones(image_tokens.shape[0], dtype=torch.bool, device=image_tokens.device)
        with precomputed_image_embeddings(model.vlm_with_expert):
            embs, pad, att = model.embed_prefix([image_tokens], [present], text.ids, text.mask, state=state)
        _, cache = model.vlm_with_expert.forward(
            attention_mask=make_att_2d_masks(pad, att), position_ids=torch.cumsum(pad, dim=1) - 1,
            past_key_values=None, inputs_embeds=[embs, None], use_cache=True, fill_kv_cache=True,
        )
        return VLAContext(cache, pad)

    def forward(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, context: VLAContext | None = None
    ) -> torch.Tensor:
        """Sigma's block through the language model's layers (adapters on).

        Attending to itself and to the cached prefix; positions continue after the prefix. [B, L, hidden] after the
        final norm.
        """
        from lerobot.policies.smolvla.smolvlm_with_expert import apply_rope

        if context is None:
            raise ValueError("the smolvla backbone reads Sigma's tokens against its own prefix: pass its VLAContext")
        vwe = self.policy.model.vlm_with_expert
        text_model = self.decoder
        b, n, _ = inputs_embeds.shape
        valid = attention_mask.bool()
        prefix = context.pad_mask
        positions = prefix.sum(dim=1, keepdim=True) + torch.cumsum(valid, dim=1) - 1
        mask = torch.cat([prefix[:, None, :].expand(b, n, -1), valid[:, None, :].expand(b, n, n)], dim=2)
        head_dim = vwe.config.text_config.head_dim
        x = inputs_embeds
        for i, layer in enumerate(text_model.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x).to(attn.q_proj.weight.dtype)
            shape = (b, n, -1, attn.head_dim)
            q = apply_rope(attn.q_proj(h).view(shape), positions)
            k = apply_rope(attn.k_proj(h).view(shape), positions)
            v = attn.v_proj(h).view(shape)
            cached = context.past_key_values[i]
            out = vwe.eager_attention_forward(mask, b, head_dim, q, torch.cat([cached["key_states"], k], dim=1),
                                              torch.cat([cached["value_states"], v], dim=1))
            x = x + attn.o_proj(out.to(attn.o_proj.weight.dtype))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return text_model.norm(x)
