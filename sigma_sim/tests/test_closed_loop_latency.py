# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The in-process policy with a robot graph's pipeline latency emulated (``plan_latency_ticks``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sigma_model import SigmaModel
from sigma_model.testing import small_config
from sigma_sim.closed_loop import ClosedLoopConfig, SigmaPolicy


def schedule(latency: int, ticks: int = 30):
    """Return the ticks at which plans were computed and, per tick, (plan number, step index) that ran."""
    torch.manual_seed(0)
    model = SigmaModel(small_config(image_size=32)).eval()
    policy = SigmaPolicy(model, replan_every=8, latency_ticks=latency)
    policy.reset("pick the cube and place it on the left", 0)
    computed, plan_number, ran = [], {}, []
    replan, control = policy.replan, model.control_stage

    def recorded_replan(obs):
        plan = replan(obs)
        plan_number[id(plan[0])] = len(computed)
        computed.append(tick)
        return plan

    def recorded_control(vector, *args, step_index=0):
        ran.append((plan_number[id(vector)], step_index))
        return control(vector, *args, step_index=step_index)

    policy.replan, model.control_stage = recorded_replan, recorded_control
    rng = np.random.default_rng(0)
    for tick in range(ticks):
        obs = {"image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "joint_positions": np.zeros(6)}
        assert np.isfinite(policy.act(obs)).all()
    return computed, ran


@pytest.mark.parametrize("latency", [0, 3])
def test_a_plan_is_used_from_latency_ticks_after_its_observation_at_that_step(latency):
    computed, ran = schedule(latency)
    assert computed == [0, 8, 16, 24]  # one observation every 8 ticks, as the graph's frame stride
    assert ran[:8] == [(0, k) for k in range(8)]  # the arm waits for the first plan: step 0 at once
    for n, tick in enumerate(computed[1:], start=1):
        first = next(t for t, (p, _) in enumerate(ran) if p == n)
        assert first == tick + latency and ran[first][1] == latency
        assert ran[tick:first] == [(n - 1, 8 + k) for k in range(latency)]  # the previous plan runs on meanwhile


def test_plan_latency_ticks_is_validated():
    with pytest.raises(ValueError, match="plan_latency_ticks must be an int >= 0"):
        ClosedLoopConfig(plan_latency_ticks=-1)
    assert ClosedLoopConfig(plan_latency_ticks=4).plan_latency_ticks == 4
