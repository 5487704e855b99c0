# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Language alignment: other wordings learn to give their anchor wordings' plans; nothing else moves."""

from __future__ import annotations

import copy

import pytest
import torch

from sigma_model import SigmaModel
from sigma_model.testing import make_observation, make_tau_matter_, randomize_, save_tiny_bert, small_config
from sigma_model.training.language_alignment import (
    AlignmentConfig, PlanInput, align_language, plan_mismatch, plan_outputs, trainable_parameters,
)

ANCHORS = {"left": ("move the cube to the left",), "right": ("move the cube to the right",)}
WORDINGS = {"left": ("carry the block over to the left side", "the red cube goes on the green square"),
            "right": ("carry the block over to the right side", "the red cube goes on the blue square")}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert"))


def _model(bert_dir, **overrides) -> SigmaModel:
    torch.manual_seed(0)
    model = SigmaModel(small_config(text_encoder=str(bert_dir), **overrides)).eval()
    randomize_(model.language.text_projection)
    return make_tau_matter_(model)


def _plan_inputs(config, n: int = 8) -> list[PlanInput]:
    inputs = []
    for i in range(n):
        obs = make_observation(config, batch=1, seed=i)
        g = torch.Generator().manual_seed(100 + i)
        inputs.append(PlanInput(obs, 0.3 * torch.randn(1, config.d_tau, generator=g),
                                0.3 * torch.randn(1, config.d_model, generator=g), ("left", "right")[i % 2]))
    return inputs


def _mismatch(model, teacher, inputs, texts_of) -> float:
    """Mean plan mismatch of `model` given texts_of(key) against `teacher` given the anchors."""
    total = 0.0
    with torch.no_grad():
        for p in inputs:
            vision = teacher.vision_stage(p.observation, p.tau_prev)
            target = plan_outputs(teacher, [ANCHORS[p.key][0]], vision, p.observation.robot_state, p.memory_prev)
            for text in texts_of(p.key):
                total += float(plan_mismatch(plan_outputs(model, [text], vision, p.observation.robot_state,
                                                          p.memory_prev), target))
    return total / len(inputs)


@pytest.mark.parametrize("trainable", ["text_projection", "language"])
def test_other_wordings_learn_the_anchor_plan_and_nothing_else_moves(bert_dir, trainable):
    model = _model(bert_dir)
    teacher = copy.deepcopy(model)
    inputs = _plan_inputs(model.config)
    before_other = _mismatch(model, teacher, inputs, lambda k: WORDINGS[k])
    # the side matters to this model: the other side's anchor is far from this side's plan
    assert _mismatch(model, teacher, inputs, lambda k: ANCHORS["right" if k == "left" else "left"]) > 1e-3
    metrics = align_language(model, inputs, WORDINGS, ANCHORS,
                             AlignmentConfig(steps=60, batch_size=4, lr=3e-3, trainable=trainable))
    after_other = _mismatch(model, teacher, inputs, lambda k: WORDINGS[k])
    assert after_other < 0.3 * before_other, (before_other, after_other)
    assert _mismatch(model, teacher, inputs, lambda k: ANCHORS[k]) < 0.3 * before_other  # the anchors keep theirs
    assert metrics["loss_end"] < metrics["loss_start"] and metrics["plan_inputs"] == len(inputs)
    trained = {id(p) for p in trainable_parameters(model, trainable)}
    old = dict(teacher.named_parameters())
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, old[n])}
    assert changed and all(id(dict(model.named_parameters())[n]) in trained for n in changed)
    assert not [n for n in changed if not n.startswith("language.") or "text_encoder" in n]
    if trainable == "text_projection":
        assert changed == {"language.text_projection.weight", "language.text_projection.bias"}
    # requires_grad as before: the frozen encoder stays frozen, the rest stays trainable
    assert all(p.requires_grad == ("text_encoder" not in n) for n, p in model.named_parameters())
    assert not model.training


def test_bad_alignment_requests_are_one_line_errors(bert_dir):
    model = _model(bert_dir)
    inputs = _plan_inputs(model.config, 2)
    with pytest.raises(ValueError, match="needs wordings and anchors"):
        align_language(model, inputs, {"left": WORDINGS["left"]}, ANCHORS, AlignmentConfig(steps=1))
    with pytest.raises(ValueError, match="trainable must be one of"):
        AlignmentConfig(trainable="vision")
    with pytest.raises(ValueError, match="positive"):
        AlignmentConfig(steps=0)
    with pytest.raises(ValueError, match="needs a model with a text encoder"):
        trainable_parameters(SigmaModel(small_config()), "text_projection")
