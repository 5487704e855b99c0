# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Bad actions and reset options in the evaluation paths: refused clearly, or counted and reported."""

from __future__ import annotations

import numpy as np
import pytest

import sigma_sim
from sigma_sim.closed_loop import (
    ClosedLoopConfig, ExpertPolicy, build_closed_loop_report, evaluation_env, format_summary, run_conditions,
)
from sigma_sim.lerobot_env import SO101LeRobotGymEnv

pytestmark = pytest.mark.skipif(sigma_sim.GL_BACKEND is None, reason="no headless OpenGL (libegl1 / libosmesa6)")


class NaNPolicy:
    """A policy whose every target is NaN."""

    latency: dict = {}
    diagnostics: dict = {}
    plans = 0

    def reset(self, instruction: str, seed: int) -> None:
        pass

    def act(self, obs) -> np.ndarray:
        return np.full(6, np.nan)


def test_the_lerobot_env_refuses_misshaped_actions_and_options_and_counts_non_finite_actions():
    env = SO101LeRobotGymEnv(image_size=32, episode_length=5)
    try:
        obs, _ = env.reset(seed=10_000, options={})
        for bad in (np.zeros(7), obs["agent_pos"][None], "abc", None):
            with pytest.raises(ValueError, match=r"action must be 6 joint targets .* shape \(6,\)"):
                env.step(bad)
        _, reward, terminated, truncated, info = env.step(np.full(6, np.nan))
        assert info["rejected_actions"] == 1 and reward == 0.0 and not (terminated or truncated)
        assert env.step(obs["agent_pos"])[4]["rejected_actions"] == 1  # a valid action is not counted
        for options in ({"bogus": 1}, {"instruction": "put it right"}, [1, 2]):
            with pytest.raises(ValueError, match="reset options are not supported"):
                env.reset(seed=10_000, options=options)
    finally:
        env.close()


def test_a_policy_emitting_nan_shows_in_the_closed_loop_report_and_summary():
    cfg = ClosedLoopConfig(episodes=1, max_steps=3, conditions=("lerobot", "expert"), expert_reference=False)
    env = evaluation_env(cfg, 32, 32)
    try:
        outcomes = run_conditions(env, {"lerobot": NaNPolicy(), "expert": ExpertPolicy(env)}, cfg)
    finally:
        env.close()
    report, records = build_closed_loop_report(outcomes, cfg)
    assert [r["safety_rejected_targets"] for r in records] == [3, 0]
    assert report["closed_loop"]["lerobot"]["safety_rejected_targets"] == {"nominal": 3}
    assert report["closed_loop"]["expert"]["safety_rejected_targets"] == {"nominal": 0}
    warnings = [line for line in format_summary(report).splitlines() if "rejected" in line]
    assert len(warnings) == 1 and "LeRobot policy" in warnings[0] and "nominal 3" in warnings[0]
