# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""pi0.5 (LeRobot 0.4.4 ``PI05Policy``) as a Sigma backbone.

``PI05Policy`` runs only with the transformers of LeRobot's ``pi`` extra (the git branch
``fix/lerobot_openpi``, not on PyPI: adaptive RMS norms in the action expert, no image-feature
scaling in PaliGemma); with stock transformers it refuses to build.
Module layout used (``policy.model`` is LeRobot's ``PI05Pytorch``): ``paligemma_with_expert``
(``paligemma.model.vision_tower`` + ``multi_modal_projector`` = image tokens via PaliGemma's
``get_image_features``, ``paligemma.model.language_model`` = Gemma 2B, ``gemma_expert`` = the
action expert), ``embed_prefix`` (images and the prompt, whose tokens carry the discretised
state), ``denoise_step``, ``_prepare_attention_masks_4d``. The prompt comes from LeRobot's pi0.5
preprocessor (normalizer, state-into-prompt step, PaliGemma tokenizer).
"""

from __future__ import annotations

import copy
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

UNUSED_WEIGHTS = ("paligemma.lm_head",)
FULL_PRECISION = ("action_in_proj", "action_out_proj", "time_mlp", "lm_head")


def check_compatible(policy_config, config: SigmaConfig) -> None:
    """Raise ValueError naming the first mismatch between the policy and the Sigma config."""
    from lerobot.utils.constants import ACTION

    problems = []
    if not policy_config.image_features:
        problems.append("the policy has no image input")
    if policy_config.empty_cameras:
        problems.append("empty_cameras is not supported")
    action = policy_config.output_features.get(ACTION)
    if action is None or action.shape[0] != config.action_dim:
        problems.append(f"its action has {None if action is None else action.shape[0]} dims, Sigma's action_dim is "
                        f"{config.action_dim}")
    if config.state_dim > policy_config.max_state_dim:
        problems.append(f"Sigma's state_dim {config.state_dim} exceeds its max_state_dim {policy_config.max_state_dim}")
    if policy_config.chunk_size < max(config.chunk_len, config.traj_len):
        problems.append(f"its chunk ({policy_config.chunk_size} steps) is shorter than chunk_len/traj_len")
    if problems:
        raise ValueError(f"backbone {config.backbone_path!r} does not fit this SigmaConfig: {'; '.join(problems)}")


def policy_keys(policy, file_keys) -> set[str]:
    """Return the policy's state-dict keys a ``model.safetensors`` with `file_keys` fills.

    LeRobot's own mapping (``_fix_pytorch_state_dict_keys``, then the ``model.`` prefix), as its from_pretrained does.
    """
    fixed = policy._fix_pytorch_state_dict_keys(dict.fromkeys(file_keys), policy.config)
    return {k if k.startswith("model.") else f"model.{k}" for k in fixed}


class PI05ImageEncoder(VLAImageEncoder):
    """pi0.5's image path (``_preprocess_images`` + ``embed_image``).

    Resize with padding to the policy's resolution, [-1, 1], then PaliGemma's own ``get_image_features`` (SigLIP +
    projector).
    """

    def __init__(self, paligemma_model: nn.Module, resolution: tuple[int, int]) -> None:
        super().__init__()
        self.vision_tower = paligemma_model.vision_tower
        self.multi_modal_projector = paligemma_model.multi_modal_projector
        self.config = paligemma_model.config  # get_image_features reads config.text_config.hidden_size
        self._get_image_features = type(paligemma_model).get_image_features
        self.resolution = tuple(resolution)
        self.dim = int(paligemma_model.config.text_config.hidden_size)
        self.requires_grad_(False)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        from lerobot.policies.pi05.modeling_pi05 import resize_with_pad_torch

        img = image.float().permute(0, 2, 3, 1)  # LeRobot resizes channels-last
        if tuple(img.shape[1:3]) != self.resolution:
            img = resize_with_pad_torch(img, *self.resolution)
        pixels = (img * 2.0 - 1.0).permute(0, 3, 1, 2)
        return self._get_image_features(self, pixels)


def image_encoder(policy) -> PI05ImageEncoder:
    return PI05ImageEncoder(policy.model.paligemma_with_expert.paligemma.model, policy.config.image_resolution)


def language_backbone(policy, config: SigmaConfig) -> PI05Backbone:
    from lerobot.configs.types import NormalizationMode
    from lerobot.policies.pi05.processor_pi05 import make_pi05_pre_post_processors

    pwe = policy.model.paligemma_with_expert
    pwe.paligemma.model.vision_tower = None  # the vision workspace holds the image path
    pwe.paligemma.model.multi_modal_projector = None
    pwe.freeze_vision_encoder = False
    pwe.paligemma.lm_head = None
    if dataset_stats(config) is not None:  # SigmaConfig carries mean/std statistics, not pi0.5's quantiles
        policy.config.normalization_mapping.update(STATE=NormalizationMode.MEAN_STD, ACTION=NormalizationMode.MEAN_STD)
    pre, post = make_pi05_pre_post_processors(policy.config, dataset_stats(config))
    return PI05Backbone(policy, pre, post)


class PI05Backbone(VLABackbone):
    def __init__(self, policy, preprocessor, postprocessor) -> None:
        super().__init__(policy, preprocessor, postprocessor)
        from lerobot.policies.pi05.processor_pi05 import (
            Pi05PrepareStateTokenizerProcessorStep,
        )
        from lerobot.processor import TokenizerProcessorStep
        from lerobot.utils.constants import ACTION

        tokenizer = next(s for s in preprocessor.steps if isinstance(s, TokenizerProcessorStep))
        # the prompt (instruction + discretised state) of each step: normalizer, state step, tokenizer
        self._prompt_steps = [
            self._normalizer,
            next(s for s in preprocessor.steps if isinstance(s, Pi05PrepareStateTokenizerProcessorStep)),
            tokenizer,
        ]
        # Sigma's own text tokens: the plain instruction, padded to the longest (not to 200 tokens)
        self._text_steps = [TokenizerProcessorStep(tokenizer=tokenizer.input_tokenizer, max_length=tokenizer.max_length,
                                                   padding="longest", padding_side="right")]
        language_config = policy.model.paligemma_with_expert.paligemma.config.text_config
        self.hidden_size = int(language_config.hidden_size)
        self.action_horizon = int(policy.config.chunk_size)
        self.action_dim = int(policy.config.output_features[ACTION].shape[0])
        self.flow_steps = int(policy.config.num_inference_steps)

    @property
    def decoder(self) -> nn.Module:
        return self.policy.model.paligemma_with_expert.paligemma.model.language_model

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings scaled by sqrt(hidden), as pi0.5's embed_prefix feeds its prompt."""
        emb = self.policy.model.paligemma_with_expert.embed_language_tokens(ids)
        return emb * math.sqrt(emb.shape[-1])

    def prompt_tokens(self, texts: list[str], robot_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""pi0.5's prompt for this step ("Task. ..., State: <256-bin state>;\nAction: ") as its preprocessor builds it.

        Token ids and mask [B, tokenizer_max_length].
        """
        from lerobot.processor.converters import create_transition
        from lerobot.processor.core import TransitionKey
        from lerobot.utils.constants import (
            OBS_LANGUAGE_ATTENTION_MASK,
            OBS_LANGUAGE_TOKENS,
            OBS_STATE,
        )

        transition = create_transition(observation={OBS_STATE: robot_state.float()},
                                       complementary_data={"task": list(texts)})
        for step in self._prompt_steps:
            transition = step(transition)
        obs = transition[TransitionKey.OBSERVATION]
        device = robot_state.device
        return obs[OBS_LANGUAGE_TOKENS].to(device), obs[OBS_LANGUAGE_ATTENTION_MASK].bool().to(device)

    def _run_prefix(self, text, image_tokens, robot_state) -> VLAContext:
        from lerobot.policies.pi05.modeling_pi05 import make_att_2d_masks

        if text.texts is None:
            raise ValueError("the pi05 backbone re-tokenizes the instruction with the state: use model.tokenize(texts)")
        model = self.policy.model
        pwe = model.paligemma_with_expert
        tokens, masks = self.prompt_tokens(text.texts, robot_state)
        present = torch.ones(image_tokens.shape[0], dtype=torch.bool, device=image_tokens.device)
        with precomputed_image_embeddings(pwe):
            embs, pad, att = model.embed_prefix([image_tokens], [present], tokens, masks)
        pwe.paligemma.language_model.config._attn_implementation = "eager"  # as sample_actions sets it
        _, cache = pwe.forward(attention_mask=model._prepare_attention_masks_4d(make_att_2d_masks(pad, att)),
                               position_ids=torch.cumsum(pad, dim=1) - 1, past_key_values=None,
                               inputs_embeds=[embs, None], use_cache=True)
        return VLAContext(cache, pad)

    def forward(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, context: VLAContext | None = None
    ) -> torch.Tensor:
        """Sigma's block through Gemma (adapters on) on a copy of the prefix cache (the expert's stays untouched).

        Positions continue after the prefix. [B, L, hidden].
        """
        if context is None:
            raise ValueError("the pi05 backbone reads Sigma's tokens against its own prefix: pass its VLAContext")
        b, n, _ = inputs_embeds.shape
        valid = attention_mask.bool()
        prefix = context.pad_mask
        positions = prefix.sum(dim=1, keepdim=True) + torch.cumsum(valid, dim=1) - 1
        mask = torch.cat([prefix[:, None, :].expand(b, n, -1), valid[:, None, :].expand(b, n, n)], dim=2)
        out = self.decoder(inputs_embeds=inputs_embeds.to(self.decoder.embed_tokens.weight.dtype),
                           attention_mask=self.policy.model._prepare_attention_masks_4d(mask), position_ids=positions,
                           past_key_values=copy.deepcopy(context.past_key_values), use_cache=True)
        return out.last_hidden_state
