# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The simulator as a LeRobot env (sigma_sim.lerobot_env, env type "sigma_so101").

LeRobot's make_env builds it, and what LeRobot's rollout sees (observations, tasks, seeds, success, the policy's
actions) is what the closed-loop evaluation sees. (lerobot-eval itself runs in
lerobot_policy_sigma/tests/test_lerobot_eval_env.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.envs.factory import make_env, make_env_pre_post_processors
from lerobot.envs.utils import add_envs_task, preprocess_observation
from lerobot.policies.utils import prepare_observation_for_inference
from lerobot.scripts.lerobot_eval import eval_policy
from sigma_sim.closed_loop import ClosedLoopConfig, ExpertPolicy, evaluation_env, run_episode
from sigma_sim.episode_variations import episode_instruction, reset_options
from sigma_sim.lerobot_closed_loop import LeRobotPolicyAdapter
from sigma_sim.lerobot_env import ENV_TYPE, SigmaSO101Env
from sigma_sim.record import ACTION_KEY, IMAGE_KEY, STATE_KEY, to_lerobot_frame

import sigma_sim

pytestmark = pytest.mark.skipif(sigma_sim.GL_BACKEND is None, reason="no headless OpenGL (libegl1 / libosmesa6)")
SIZE = 32  # the tiny ACT's camera size (conftest.py)


def lerobot_env(**options):
    """Return the vector env lerobot-eval builds for `--env.type=sigma_so101` (batch size 1)."""
    config = EnvConfig.get_choice_class(ENV_TYPE)(image_size=SIZE, **options)
    envs = make_env(config, n_envs=1)
    return config, envs[ENV_TYPE][0]


def test_the_env_type_is_registered_with_the_simulators_features():
    assert EnvConfig.get_choice_class(ENV_TYPE) is SigmaSO101Env
    from lerobot.envs.utils import env_to_policy_features

    features = env_to_policy_features(SigmaSO101Env(image_size=SIZE))
    assert features == {ACTION_KEY: PolicyFeature(FeatureType.ACTION, (6,)),
                        STATE_KEY: PolicyFeature(FeatureType.STATE, (6,)),
                        IMAGE_KEY: PolicyFeature(FeatureType.VISUAL, (3, SIZE, SIZE))}


def test_first_observation_and_task_equal_the_closed_loop_evaluations_for_the_same_seed():
    config, vec = lerobot_env()
    sim = evaluation_env(ClosedLoopConfig(), SIZE, SIZE)
    try:
        for episode in (0, 3):
            seed = config.first_seed + episode
            obs, _ = vec.reset(seed=[seed])
            ours = add_envs_task(vec, preprocess_observation(obs))  # what LeRobot's rollout hands the preprocessor
            instruction = episode_instruction(episode, seed)
            theirs_raw, _ = sim.reset(seed=seed, instruction=instruction)
            theirs = prepare_observation_for_inference(to_lerobot_frame(theirs_raw), torch.device("cpu"), instruction)
            assert ours["task"] == [instruction]
            np.testing.assert_array_equal(obs["pixels"]["front"][0], theirs_raw["image"])
            np.testing.assert_array_equal(obs["agent_pos"][0], theirs_raw["joint_positions"])
            for key in (IMAGE_KEY, STATE_KEY):
                assert torch.equal(ours[key], theirs[key]), key
    finally:
        vec.close()
        sim.close()


def test_the_env_variation_is_the_closed_loop_evaluations_variation_of_the_same_seed():
    seed = SigmaSO101Env().first_seed + 1
    (_, perturbed), (_, nominal), (_, paraphrase) = (lerobot_env(variation=v) for v in
                                                     ("perturbed_view", "nominal", "paraphrase"))
    sim = evaluation_env(ClosedLoopConfig(), SIZE, SIZE)
    try:
        ours = perturbed.reset(seed=[seed])[0]["pixels"]["front"][0]
        theirs, _ = sim.reset(seed=seed, instruction=episode_instruction(1, seed),
                              options=reset_options("perturbed_view"))
        assert np.array_equal(ours, theirs["image"])
        assert not np.array_equal(ours, nominal.reset(seed=[seed])[0]["pixels"]["front"][0])
        paraphrase.reset(seed=[seed])
        assert paraphrase.call("task_description") == (episode_instruction(1, seed, "paraphrase"),)
    finally:
        for vec in (perturbed, nominal, paraphrase):
            vec.close()
        sim.close()
    with pytest.raises(ValueError, match="variation must be one of"):
        SigmaSO101Env(variation="sideways")


def test_success_ends_the_episode_when_the_closed_loop_evaluation_counts_it():
    """The scripted expert through the gym env.

    Terminated with is_success at the tick where run_episode's expert succeeds (the task solved for success_hold_steps
    ticks), not at the first solved tick.
    """
    seed = 10_001
    _, vec = lerobot_env()
    gym_env = vec.envs[0]
    cfg = ClosedLoopConfig()
    sim = evaluation_env(cfg, SIZE, SIZE)
    try:
        reference = run_episode(sim, ExpertPolicy(sim), seed, episode_instruction(1, seed), cfg, condition="expert")
        assert reference.success
        gym_env.reset(seed=seed)
        expert = ExpertPolicy(gym_env.sim)
        expert.reset("", seed)
        rewards, steps, terminated, truncated, info = [], 0, False, False, {}
        while not (terminated or truncated):
            _, reward, terminated, truncated, info = gym_env.step(expert.act(None))
            rewards.append(reward)
            steps += 1
    finally:
        vec.close()
        sim.close()
    assert terminated and not truncated and info["is_success"]
    assert steps == reference.steps
    assert rewards[-cfg.success_hold_steps:] == [1.0] * cfg.success_hold_steps and 0.0 in rewards


def test_an_episode_without_success_is_truncated_at_episode_length():
    _, vec = lerobot_env(episode_length=6)
    try:
        obs, _ = vec.reset(seed=[5])
        for _ in range(6):
            obs, reward, terminated, truncated, info = vec.step(obs["agent_pos"])  # hold still
        assert truncated[0] and not terminated[0] and reward[0] == 0.0
        assert not info["final_info"]["is_success"][0]
        assert vec.call("_max_episode_steps") == (6,)
    finally:
        vec.close()


def test_lerobots_rollout_in_the_env_moves_the_arm_as_the_closed_loop_evaluation_does(tiny_act_dir, recording_sim):
    """LeRobot's own eval_policy (what lerobot-eval runs) in the env.

    run_episode with the same policy through LeRobotPolicyAdapter: the same actions and the same joint trajectories,
    episode by episode.
    """
    steps, episodes = 10, 2
    adapter = LeRobotPolicyAdapter.from_pretrained(tiny_act_dir)
    config, vec = lerobot_env(episode_length=steps)
    env_pre, env_post = make_env_pre_post_processors(config, adapter.policy.config)
    try:
        info = eval_policy(vec, adapter.policy, env_pre, env_post, adapter.preprocessor, adapter.postprocessor,
                           n_episodes=episodes, return_episode_data=True, start_seed=config.first_seed)
    finally:
        vec.close()
    data = info["episodes"]
    assert [e["seed"] for e in info["per_episode"]] == [config.first_seed, config.first_seed + 1]
    cfg = ClosedLoopConfig(max_steps=steps)
    sim = recording_sim(evaluation_env(cfg, SIZE, SIZE))
    try:
        for episode in range(episodes):
            seed = config.first_seed + episode
            outcome = run_episode(sim, adapter, seed, episode_instruction(episode, seed), cfg, condition="act")
            rows = (data["episode_index"] == episode).nonzero().flatten()
            # rollout rows: the observation before each step, then the next episode's first (autoreset)
            lerobot_states = data[STATE_KEY][rows][1:steps].numpy()
            assert outcome.steps == steps and len(rows) == steps + 1
            np.testing.assert_array_equal(np.asarray(sim.states[:-1]), lerobot_states)
            assert np.abs(np.diff(lerobot_states, axis=0)).max() > 1e-3  # the arm moved
    finally:
        sim.close()
