"""Fixtures of the sigma policy tests: a tiny Sigma, a tiny simulator dataset, one lerobot-train run."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lerobot.configs.types import FeatureType, PolicyFeature
from sigma_model.testing import small_config
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
def tiny_dataset(tmp_path_factory) -> Path:
    """Two 40-frame simulator episodes (32x32 camera) as a LeRobot v3 dataset, by sigma-sim-record's code."""
    import sigma_sim
    from sigma_sim import _gl

    if sigma_sim.GL_BACKEND is None or not _gl.probe_gl_backend(sigma_sim.GL_BACKEND):
        pytest.skip("recording renders camera images: no working headless GL backend (install libegl1 or libosmesa6)")
    from sigma_sim.record import record_dataset
    from sigma_sim.so101_env import SimConfig

    root = tmp_path_factory.mktemp("sim") / "so101_tiny"
    record_dataset(root, 2, seed=10, repo_id=REPO_ID, keep_failed=True,
                   sim_config=SimConfig(image_width=32, image_height=32, max_episode_steps=40))
    return root


@pytest.fixture(scope="session")
def lerobot_train_run(tiny_dataset, tmp_path_factory) -> Path:
    """`lerobot-train --policy.type=sigma` (the console script, in a subprocess): the output directory."""
    script = shutil.which("lerobot-train", path=str(Path(sys.executable).parent))
    assert script, f"lerobot-train is not installed next to {sys.executable} (scripts/setup.sh installs LeRobot)"
    out = tmp_path_factory.mktemp("lerobot_train") / "sigma"
    cmd = [script, "--policy.type=sigma", f"--dataset.repo_id={REPO_ID}", f"--dataset.root={tiny_dataset}",
           f"--steps={TRAIN_STEPS}", "--batch_size=2", "--num_workers=0", "--policy.device=cpu",
           "--policy.push_to_hub=false", f"--output_dir={out}", f"--policy.loss.curriculum_steps={CURRICULUM_STEPS}",
           *model_flags()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"lerobot-train failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return out


@pytest.fixture(scope="session")
def pretrained_dir(lerobot_train_run) -> Path:
    return lerobot_train_run / "checkpoints" / "last" / "pretrained_model"
