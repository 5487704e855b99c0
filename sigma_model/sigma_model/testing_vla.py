# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Tiny offline VLA backbones for tests (no hub).

A random SmolVLA in the public checkpoint layout, and a random pi0.5 with LeRobot 0.4.4's module layout built from stock
transformers parts.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

TINY_VLA_WORDS = [
    "pick",
    "the",
    "cube",
    "and",
    "place",
    "it",
    "on",
    "left",
    "right",
    "up",
    "down",
    "a",
    "of",
    "to",
    "in",
    "red",
    "blue",
    "bowl",
    "put",
    "move",
]


# SmolVLM sizes: the tiny test model (vocab_size None: the tokenizer's)
TINY_SMOLVLM = dict(
    vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=64,
                patch_size=16),
    text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, max_position_embeddings=256, vocab_size=None),
    scale_factor=2,
)
TINY_SMOLVLA = dict(num_vlm_layers=2, chunk_size=8, n_action_steps=8, max_state_dim=8, max_action_dim=8, num_steps=2)


def save_smolvlm(root: Path, sizes: dict = TINY_SMOLVLM) -> Path:
    """Save a SmolVLM of the given sizes in ``root``: what SmolVLA's ``vlm_model_name`` must name.

    Random weights come from its config; a word-level tokenizer has SmolVLA's image special tokens; image/video
    processors are saved beside them (config, tokenizer, processor).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        SmolVLMConfig,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    special = ["<pad>", "<unk>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<global-img>",
               "<image>"]
    rows = [f"<row_{r}_col_{c}>" for r in (1, 2) for c in (1, 2)]  # the processor's tile tokens
    vocab = {t: i for i, t in enumerate(special + rows + list(TINY_VLA_WORDS) + [str(i) for i in range(10)])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", bos_token="<|im_start|>",
        eos_token="<end_of_utterance>", additional_special_tokens=special[2:],
        extra_special_tokens={"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
                              "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"})
    image = sizes["vision"]["image_size"]
    size = {"longest_edge": image}
    patches = (image // sizes["vision"]["patch_size"]) ** 2 // sizes["scale_factor"] ** 2
    SmolVLMProcessor(image_processor=SmolVLMImageProcessor(do_image_splitting=False, size=size, max_image_size=size),
                     tokenizer=tokenizer, video_processor=SmolVLMVideoProcessor(size=size, max_image_size=size),
                     image_seq_len=patches).save_pretrained(root)
    text = dict(sizes["text"], model_type="llama")
    text["vocab_size"] = text["vocab_size"] or len(vocab)
    SmolVLMConfig(vision_config=dict(sizes["vision"]), text_config=text, scale_factor=sizes["scale_factor"],
                  image_token_id=vocab["<image>"], pad_token_id=0).save_pretrained(root)
    return root


def save_smolvla(root: Path, action_dim: int = 6, seed: int = 0, sizes: dict = TINY_SMOLVLM,
                 policy: dict = TINY_SMOLVLA) -> Path:
    """Save a random SmolVLA (LeRobot's SmolVLAPolicy) in ``root/policy``; return the policy directory.

    ``policy``: SmolVLAConfig fields, the rest are ``lerobot/smolvla_base``'s; public checkpoint layout (``config.json``
    + ``model.safetensors``), one camera; its VLM (``sizes``) in ``root/vlm`` (no hub).
    """
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    root = Path(root)
    vlm = save_smolvlm(root / "vlm", sizes)
    image = sizes["vision"]["image_size"]
    config = SmolVLAConfig(
        vlm_model_name=str(vlm), load_vlm_weights=False, resize_imgs_with_padding=(image, image), device="cpu",
        push_to_hub=False, **policy,
        input_features={"observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, image, image)),
                        "observation.state": PolicyFeature(FeatureType.STATE, (action_dim,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (action_dim,))},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        built = SmolVLAPolicy(config)
    built.save_pretrained(root / "policy")
    return root / "policy"


def save_tiny_smolvla(root: Path, action_dim: int = 6, seed: int = 0) -> Path:
    """Return a tiny random SmolVLA (the architecture of ``lerobot/smolvla_base`` at small sizes): see save_smolvla."""
    return save_smolvla(root, action_dim, seed)


PALIGEMMA_TOKENIZER = "google/paligemma-3b-pt-224"  # the name LeRobot's pi0.5 preprocessor loads


def save_tiny_paligemma_tokenizer(root: Path) -> Path:
    """Return a word-level stand-in for PaliGemma's tokenizer at ``root/google/paligemma-3b-pt-224``.

    With ``root`` as the working directory, ``AutoTokenizer.from_pretrained`` of LeRobot's pi0.5 preprocessor finds it
    as a local folder (no hub). Returns the folder.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<bos>", "<eos>", "Task", "State", "Action", ":", ",", ";"] + list(TINY_VLA_WORDS)
    vocab = {w: i for i, w in enumerate(words + [str(i) for i in range(256)])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    folder = Path(root) / PALIGEMMA_TOKENIZER
    PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>",
                            eos_token="<eos>").save_pretrained(folder)
    return folder


def tiny_pi05_policy(action_dim: int = 6, chunk_size: int = 8, vocab_size: int = 300, seed: int = 0):
    """Return a random pi0.5 with LeRobot 0.4.4's module layout.

    A ``PI05Policy`` whose ``model`` is a ``PI05Pytorch`` holding a ``PaliGemmaWithExpertModel`` (PaliGemma + Gemma
    expert) and the action projections, all built small from stock transformers classes. ``PI05Policy.__init__`` itself
    refuses stock transformers (it needs the `pi` extra's branch), so the objects are assembled here; LeRobot's own
    methods (embed_prefix, denoise_step, predict_action_chunk, ...) then run. On stock transformers the expert's
    adaptive RMS norms are plain RMS norms (no time conditioning) and each denoising step appends to the prefix cache,
    so only one step (num_inference_steps=1) reproduces: the wiring is pi0.5's, the numbers are not.
    """
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.pi05.configuration_pi05 import PI05Config
    from lerobot.policies.pi05.modeling_pi05 import (
        PaliGemmaWithExpertModel,
        PI05Policy,
        PI05Pytorch,
    )
    from transformers import (
        GemmaConfig,
        GemmaForCausalLM,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
    )

    config = PI05Config(
        chunk_size=chunk_size, n_action_steps=chunk_size, max_state_dim=8, max_action_dim=8, num_inference_steps=1,
        image_resolution=(32, 32), tokenizer_max_length=48, device="cpu", push_to_hub=False,
        input_features={"observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
                        "observation.state": PolicyFeature(FeatureType.STATE, (action_dim,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (action_dim,))},
    )
    vlm = PaliGemmaConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16, projection_dim=64),
        text_config=dict(model_type="gemma", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=8, num_key_value_heads=1, head_dim=8, vocab_size=vocab_size),
        projection_dim=64, image_token_index=vocab_size - 1, vocab_size=vocab_size)
    # stock Gemma norms are plain RMS norms (pi0.5's expert: adaptive ones, use_adarms): declared as such,
    # so that LeRobot's key mapping keeps their weights
    expert = GemmaConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=8,
                         num_key_value_heads=1, head_dim=8, vocab_size=vocab_size, use_adarms=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pwe = PaliGemmaWithExpertModel.__new__(PaliGemmaWithExpertModel)
        nn.Module.__init__(pwe)
        pwe.freeze_vision_encoder, pwe.train_expert_only = False, False
        pwe.paligemma = PaliGemmaForConditionalGeneration(vlm)
        pwe.gemma_expert = GemmaForCausalLM(expert)
        pwe.gemma_expert.model.embed_tokens = None
        model = PI05Pytorch.__new__(PI05Pytorch)
        nn.Module.__init__(model)
        model.config, model.rtc_processor, model.gradient_checkpointing_enabled = config, None, False
        model.paligemma_with_expert = pwe
        model.action_in_proj, model.action_out_proj = nn.Linear(8, 48), nn.Linear(48, 8)
        model.time_mlp_in, model.time_mlp_out = nn.Linear(48, 48), nn.Linear(48, 48)
    policy = PI05Policy.__new__(PI05Policy)
    nn.Module.__init__(policy)
    policy.config, policy.rtc_processor, policy.model = config, None, model
    policy.reset()
    return policy.eval()
