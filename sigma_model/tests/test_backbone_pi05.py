# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""pi0.5 (LeRobot 0.4.4's PI05Policy) as Sigma's backbone, as far as stock transformers allows.

PI05Policy refuses to build without the transformers branch of LeRobot's `pi` extra, so these
tests run a tiny random pi0.5 assembled with 0.4.4's module layout from stock transformers parts
(sigma_model.testing_vla.tiny_pi05_policy) in place of the loader; LeRobot's own pi0.5 methods and
processors run on it. Untested here: loading real weights (PI05Policy.from_pretrained) and the
expert's adaptive norms and multi-step sampling, which need the branch.
"""

from __future__ import annotations

import pytest
import torch
from sigma_model.testing import make_observation, small_config

from sigma_model import SigmaModel, save_checkpoint

pytest.importorskip("lerobot.policies.pi05.modeling_pi05")

from lerobot.configs.types import NormalizationMode
from lerobot.policies.pi05.processor_pi05 import make_pi05_pre_post_processors
from safetensors import safe_open
from safetensors.torch import save_file
from sigma_model.backbones import pi05, vla
from sigma_model.testing_vla import save_tiny_paligemma_tokenizer, tiny_pi05_policy
from sigma_model.training.lora import apply_lora

STATS = dict(state_mean=(0.1, -0.2, 0.0, 0.3, 0.0, 0.5), state_std=(0.5, 1.0, 2.0, 0.5, 1.0, 0.25),
             action_mean=(0.2, 0.0, -0.1, 0.0, 0.4, 0.1), action_std=(0.3, 0.6, 1.0, 0.5, 2.0, 0.2))
TEXTS = ["pick the cube and place it on the left", "put the red cube in the bowl"]


def pi05_config(**overrides):
    return small_config(backbone="pi05", backbone_path="lerobot/pi05_base", use_audio=False, **{**STATS, **overrides})


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """Return a SigmaModel on the tiny pi0.5.

    LeRobot's pi0.5 preprocessor finds its PaliGemma tokenizer (google/paligemma-3b-pt-224) as a local folder in the
    working directory.
    """
    root = tmp_path_factory.mktemp("paligemma")
    save_tiny_paligemma_tokenizer(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setattr(vla, "load_lerobot_policy", lambda kind, path, drop=(), policy_keys=None: tiny_pi05_policy())
        torch.manual_seed(0)
        built = SigmaModel(pi05_config()).eval()
        reference = tiny_pi05_policy()
        reference.config.normalization_mapping.update(
            STATE=NormalizationMode.MEAN_STD, ACTION=NormalizationMode.MEAN_STD
        )
        pre, post = make_pi05_pre_post_processors(reference.config, vla.dataset_stats(built.config))
    return built, (reference, pre, post)


def lerobot_batch(obs, texts):
    return {"observation.images.front": obs.image.float() / 255.0, "observation.state": obs.robot_state,
            "task": list(texts)}


def test_checkpoint_key_mapping_public_layout(tmp_path):
    """Check that LeRobot's key mapping fills every weight of pi0.5's public model.safetensors.

    That file names keys without the policy's `model.` prefix (older files also `action_time_mlp_*` and pi0's
    `state_proj`).
    """
    policy = tiny_pi05_policy()
    want = policy.state_dict()
    public = {k.removeprefix("model.").replace("time_mlp_", "action_time_mlp_"): v for k, v in want.items()}
    public["state_proj.weight"] = torch.zeros(4, 8)  # pi0's, skipped for pi0.5
    assert pi05.policy_keys(policy, public) == set(want)
    del public["paligemma_with_expert.paligemma.lm_head.weight"]  # tied to the embeddings; Sigma never decodes text
    (tmp_path / "ok").mkdir()
    save_file({k: v.contiguous() for k, v in public.items()}, str(tmp_path / "ok" / "model.safetensors"))
    vla._check_weights_loaded(policy, str(tmp_path / "ok"), pi05.UNUSED_WEIGHTS, pi05.policy_keys)
    public.pop("paligemma_with_expert.gemma_expert.model.layers.1.mlp.down_proj.weight")
    (tmp_path / "bad").mkdir()
    save_file({k: v.contiguous() for k, v in public.items()}, str(tmp_path / "bad" / "model.safetensors"))
    with pytest.raises(RuntimeError, match="lacks 1 weights"):
        vla._check_weights_loaded(policy, str(tmp_path / "bad"), pi05.UNUSED_WEIGHTS, pi05.policy_keys)


def test_loader_names_the_pi_extra(tmp_path):
    with pytest.raises(
        RuntimeError, match=r"pi0.5 needs the transformers of LeRobot's `pi` extra .*fix/lerobot_openpi"
    ):
        vla.load_lerobot_policy("pi05", str(tmp_path / "missing"))


def test_image_tokens_are_paligemma_image_features(model):
    sigma, (reference, pre, _) = model
    obs = make_observation(sigma.config, batch=2, seed=1)
    with torch.no_grad():
        vis = sigma.vision_stage(obs)
        images, _ = reference._preprocess_images(pre(lerobot_batch(obs, TEXTS)))
        want = reference.model.paligemma_with_expert.embed_image(images[0])
    torch.testing.assert_close(vis.backbone_image_tokens, want, rtol=0, atol=1e-6)


def test_prompt_carries_the_state_and_the_block_reads_the_prefix(model):
    sigma, _ = model
    c = sigma.config
    obs = make_observation(c, batch=2, seed=2)
    backbone = sigma.language.backbone
    ids, _ = backbone.prompt_tokens(TEXTS, obs.robot_state)
    moved, _ = backbone.prompt_tokens(TEXTS, obs.robot_state + 0.5)
    assert not torch.equal(ids, moved)  # the discretised state is part of pi0.5's prompt
    text = sigma.tokenize(TEXTS)
    with torch.no_grad():
        vis = sigma.vision_stage(obs)
        args = (text, vis.vision_tokens, vis.state_tokens, None)
        base = sigma.language_stage(
            *args, image_tokens=vis.backbone_image_tokens, robot_state=obs.robot_state, with_actions=False
        )
        state = sigma.language_stage(
            *args, image_tokens=vis.backbone_image_tokens, robot_state=obs.robot_state + 0.5, with_actions=False
        )
    assert (state.high_level_rep - base.high_level_rep).abs().amax(dim=(1, 2)).min() > 1e-4


def test_baseline_is_pi05_own_action_chunk(model):
    """One flow step (stock transformers extend the prefix cache at every step, see tiny_pi05_policy)."""
    sigma, (reference, pre, post) = model
    obs = make_observation(sigma.config, batch=2, seed=3)
    with torch.no_grad():
        out = sigma(obs, sigma.tokenize(TEXTS), generator=torch.Generator().manual_seed(4))
        noise = torch.randn(2, reference.config.chunk_size, reference.config.max_action_dim,
                            generator=torch.Generator().manual_seed(4))
        chunk = post(reference.predict_action_chunk(pre(lerobot_batch(obs, TEXTS)), noise=noise))
    torch.testing.assert_close(out.language.backbone_actions, chunk, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.action.action_chunk, chunk[:, :sigma.config.chunk_len], rtol=0, atol=1e-6)


def test_lora_on_gemma_and_checkpoint_without_the_vla(model, tmp_path):
    sigma, _ = model
    apply_lora(sigma, r=16)
    lora = [n for n, p in sigma.named_parameters() if ".lora_" in n]
    decoder = "language.backbone.policy.model.paligemma_with_expert.paligemma.model.language_model.layers."
    assert lora and all(n.startswith(decoder) for n in lora)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    directory = save_checkpoint(sigma, tmp_path)
    for workspace in ("vision", "language"):
        with safe_open(str(directory / f"{workspace}.safetensors"), framework="pt") as f:
            keys = list(f.keys())
        assert not [
            k for k in keys if k.startswith(("vision.image_encoder.", "language.backbone.")) and ".lora_" not in k
        ]
