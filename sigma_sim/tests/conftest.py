# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the simulator tests: a tiny LeRobot ACT saved as lerobot-train saves one, a recording simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

SIZE = 32  # camera size of the tiny ACT (the tests' simulators render 32x32 too)


def save_tiny_act(out: Path, action_dim: int = 6) -> Path:
    """Return a small untrained ACT (deterministic in eval mode) for the 32x32 simulator.

    With its processors (normalisation around the home pose), saved in ``out`` as lerobot-train's ``pretrained_model``.
    """
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors
    from sigma_sim.record import ACTION_KEY, IMAGE_KEY, STATE_KEY
    from sigma_sim.so101_env import HOME_QPOS

    config = ACTConfig(device="cpu", pretrained_backbone_weights=None, chunk_size=4, n_action_steps=4, dim_model=32,
                       n_heads=2, dim_feedforward=64, n_encoder_layers=1, n_decoder_layers=1, use_vae=False)
    config.input_features = {IMAGE_KEY: PolicyFeature(FeatureType.VISUAL, (3, SIZE, SIZE)),
                             STATE_KEY: PolicyFeature(FeatureType.STATE, (6,))}
    config.output_features = {ACTION_KEY: PolicyFeature(FeatureType.ACTION, (action_dim,))}
    home = torch.as_tensor(np.asarray(HOME_QPOS, dtype=np.float32))
    stats = {STATE_KEY: {"mean": home, "std": torch.full((6,), 0.3)},
             ACTION_KEY: {"mean": home if action_dim == 6 else torch.zeros(action_dim),
                          "std": torch.full((action_dim,), 0.05)},
             IMAGE_KEY: {"mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.25)}}
    torch.manual_seed(0)
    ACTPolicy(config).save_pretrained(out)
    for pipeline in make_pre_post_processors(config, dataset_stats=stats):
        pipeline.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_act_dir(tmp_path_factory) -> Path:
    return save_tiny_act(tmp_path_factory.mktemp("tiny_act"))


@pytest.fixture
def make_tiny_act():
    """:func:`save_tiny_act` (for other shapes)."""
    return save_tiny_act


class RecordingSim:
    """A simulator that keeps each episode's first observation and the joint positions after every step of the last."""

    def __init__(self, env) -> None:
        self.env, self.first, self.states = env, [], []

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.first.append(obs)
        self.states = []
        return obs, info

    def step(self, action):
        out = self.env.step(action)
        self.states.append(out[0]["joint_positions"])
        return out


@pytest.fixture
def recording_sim():
    """:class:`RecordingSim` (wrap a simulator with it)."""
    return RecordingSim
