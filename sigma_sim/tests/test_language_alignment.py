# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Language alignment on the simulator: the plan inputs recorded in closed loop are what the plans started from."""

from __future__ import annotations

import pytest
import torch

import sigma_sim
from sigma_model import SigmaModel
from sigma_model.testing import make_tau_matter_, save_tiny_bert, small_config
from sigma_model.training.language_alignment import AlignmentConfig
from sigma_sim.episode_variations import episode_instruction
from sigma_sim.instructions import instruction_target
from sigma_sim.language_alignment import align_on_simulator, collect_plan_inputs

pytestmark = pytest.mark.skipif(sigma_sim.GL_BACKEND is None, reason="no headless OpenGL (libegl1 / libosmesa6)")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    return make_tau_matter_(SigmaModel(small_config(text_encoder=str(save_tiny_bert(tmp_path_factory.mktemp("b"))))))


def test_plan_inputs_carry_each_plans_own_tau_and_memory(model):
    inputs, rollouts = collect_plan_inputs(model, episodes=2, seed=7, max_steps=10, replan_every=4)
    assert rollouts["plans"] == len(inputs) == 6 and rollouts["seeds"] == "7..8"  # ticks 0, 4, 8 of each episode
    assert [p.key for p in inputs] == [instruction_target(episode_instruction(i, 7 + i)) for i in (0, 1)
                                       for _ in range(3)]
    for p in inputs:
        assert not any(t.is_inference() for t in (p.observation.image, p.tau_prev, p.memory_prev))
    lang = None
    with torch.no_grad():
        for i, p in enumerate(inputs):
            if i % 3 == 0:  # an episode starts from zeros
                assert not p.tau_prev.any() and not p.memory_prev.any()
                text = model.tokenize([episode_instruction(i // 3, 7 + i // 3)])
            else:  # later plans start from the previous plan's tau and memory
                assert torch.allclose(p.tau_prev, lang.tau, atol=1e-6)
                assert torch.allclose(p.memory_prev, lang.memory, atol=1e-6)
            vision = model.vision_stage(p.observation, p.tau_prev)
            lang = model.language_stage(text, vision.vision_tokens, vision.state_tokens, p.memory_prev)
        assert lang.tau.abs().sum() > 0


def test_align_on_simulator_trains_the_text_projection_only(model):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = AlignmentConfig(steps=3, batch_size=2, trainable="text_projection")
    result = align_on_simulator(model, episodes=1, seed=3, config=config, max_steps=6, replan_every=4)
    assert result["rollouts"]["episodes"] == 1 and result["plan_inputs"] == 2 and result["config"]["steps"] == 3
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"language.text_projection.weight", "language.text_projection.bias"}
