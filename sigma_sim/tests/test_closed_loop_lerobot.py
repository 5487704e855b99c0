"""Any LeRobot policy in the closed loop (sigma_sim.closed_loop.LeRobotPolicyAdapter): an untrained ACT
acts in `run_episode` through LeRobot's own inference path. (The sigma policy's run is tested in
lerobot_policy_sigma/tests.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sigma_sim.closed_loop import ClosedLoopConfig, LeRobotPolicyAdapter, run_episode
from sigma_sim.record import ACTION_KEY, IMAGE_KEY, STATE_KEY

import sigma_sim

pytestmark = pytest.mark.skipif(sigma_sim.GL_BACKEND is None, reason="no headless OpenGL (libegl1 / libosmesa6)")


def test_an_act_policy_runs_an_episode_through_the_adapter():
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors
    from sigma_sim.so101_env import HOME_QPOS, SimConfig, SO101PickPlaceEnv

    config = ACTConfig(device="cpu", pretrained_backbone_weights=None, chunk_size=4, n_action_steps=4, dim_model=32,
                       n_heads=2, dim_feedforward=64, n_encoder_layers=1, n_decoder_layers=1, use_vae=False)
    config.input_features = {IMAGE_KEY: PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
                             STATE_KEY: PolicyFeature(FeatureType.STATE, (6,))}
    config.output_features = {ACTION_KEY: PolicyFeature(FeatureType.ACTION, (6,))}
    home = torch.as_tensor(np.asarray(HOME_QPOS, dtype=np.float32)[:6])
    stats = {STATE_KEY: {"mean": home, "std": torch.full((6,), 0.3)},
             ACTION_KEY: {"mean": home, "std": torch.full((6,), 0.01)},
             IMAGE_KEY: {"mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.25)}}
    torch.manual_seed(0)
    pre, post = make_pre_post_processors(config, dataset_stats=stats)
    adapter = LeRobotPolicyAdapter(ACTPolicy(config), pre, post)
    env = SO101PickPlaceEnv(SimConfig(image_width=32, image_height=32, max_episode_steps=20))
    try:
        outcome = run_episode(env, adapter, seed=1, instruction="pick the cube and place it on the left",
                              config=ClosedLoopConfig(max_steps=9), condition="act")
        assert len(adapter.policy._action_queue) == 4 - 9 % 4  # one chunk per n_action_steps ticks
        adapter.reset("pick the cube and place it on the right", 2)
        assert not adapter.policy._action_queue and adapter.instruction.endswith("right")
    finally:
        env.close()
    assert outcome.condition == "act" and outcome.steps == 9 and len(adapter.latency["policy"]) == 9
    assert np.isfinite(outcome.mean_abs_delta_command) and outcome.mean_abs_delta_command > 0
