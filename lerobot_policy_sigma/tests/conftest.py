"""Fixtures of the sigma policy tests: a tiny Sigma and one lerobot-train run (on the root conftest's tiny
simulator dataset)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from lerobot.configs.types import FeatureType, PolicyFeature
from sigma_model.testing import console_script, run_offline, small_config
from sigma_model.training import LossConfig

from lerobot_policy_sigma import SigmaConfig
from sigma_model import SigmaConfig as SigmaModelConfig

# image 32x32, chunk_len 4, traj_len 5, audio on (the policy feeds silence); a deterministic DiT sample
TINY_MODEL = small_config(n_action_steps=3, diffusion_noise_scale=0.0)
CURRICULUM_STEPS = 4  # short, so that the weights at the trained step differ from step 0
TRAIN_STEPS = 3
REPO_ID = "sigma/so101_tiny"
IMAGE_KEY = "observation.images.front"


def policy_config(model: SigmaModelConfig = TINY_MODEL, **loss) -> SigmaConfig:
    """A tiny sigma policy config with the simulator's features (32x32 camera, 6 joints)."""
    config = SigmaConfig(model=model, loss=LossConfig(curriculum_steps=CURRICULUM_STEPS, **loss), device="cpu")
    config.input_features = {IMAGE_KEY: PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
                             "observation.state": PolicyFeature(FeatureType.STATE, (6,))}
    config.output_features = {"action": PolicyFeature(FeatureType.ACTION, (6,))}
    return config


def model_flags(model: SigmaModelConfig = TINY_MODEL) -> list[str]:
    """--policy.model.* flags for the fields of `model` that differ from SigmaConfig's defaults."""
    default = SigmaModelConfig()
    return [f"--policy.model.{f.name}={json.dumps(getattr(model, f.name))}" for f in dataclasses.fields(model)
            if getattr(model, f.name) != getattr(default, f.name)]


@pytest.fixture(scope="session")
def lerobot_train_run(tiny_dataset, tmp_path_factory) -> Path:
    """`lerobot-train --policy.type=sigma` (the console script, in a subprocess) on the tiny simulator
    dataset (root conftest.py): the output directory."""
    out = tmp_path_factory.mktemp("lerobot_train") / "sigma"
    cmd = [console_script("lerobot-train"), "--policy.type=sigma", f"--dataset.repo_id={REPO_ID}", f"--dataset.root={tiny_dataset}",
           f"--steps={TRAIN_STEPS}", "--batch_size=2", "--num_workers=0", "--policy.device=cpu",
           "--policy.push_to_hub=false", f"--output_dir={out}", f"--policy.loss.curriculum_steps={CURRICULUM_STEPS}",
           *model_flags()]
    run_offline(cmd)
    return out


@pytest.fixture(scope="session")
def pretrained_dir(lerobot_train_run) -> Path:
    return lerobot_train_run / "checkpoints" / "last" / "pretrained_model"
