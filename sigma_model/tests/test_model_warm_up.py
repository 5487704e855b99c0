# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""SigmaModel.warm_up: every stage the model holds runs once before the robot's first frame, changing nothing."""

from __future__ import annotations

import pytest
import torch

from sigma_model import SigmaModel
from sigma_model.testing import TEXT, make_observation, randomize_, small_config


def step(model, obs, text):
    with torch.inference_mode():
        return model(obs, text, generator=torch.Generator().manual_seed(3)).motor_commands


def test_warm_up_runs_each_stage_and_changes_nothing():
    torch.manual_seed(0)
    model = SigmaModel(small_config()).eval()
    randomize_(model)
    obs, text = make_observation(model.config, batch=2), model.tokenize(TEXT)
    before = step(model, obs, text)
    params = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    calls = []
    for stage in ("vision_stage", "language_stage", "action_stage", "control_stage"):
        real = getattr(model, stage)
        setattr(model, stage, lambda *a, _real=real, _stage=stage, **k: calls.append(_stage) or _real(*a, **k))
    first = model.warm_up(runs=2)
    assert set(first) == {"vision", "language", "action", "control"} and all(s > 0 for s in first.values())
    assert calls == ["vision_stage", "language_stage", "action_stage", "control_stage"] * 2
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    assert torch.equal(step(model, obs, text), before)


@pytest.mark.parametrize("workspaces, stages", [(("vision",), {"vision"}), (("language",), {"language"}),
                                                (("action",), {"action", "control"}),
                                                (("language", "action"), {"language", "action", "control"})])
def test_a_node_model_warms_up_the_stages_it_holds(workspaces, stages):
    model = SigmaModel(small_config(), workspaces).eval()
    assert set(model.warm_up(runs=1)) == stages


def test_warm_up_runs_only_the_stages_asked_for():
    model = SigmaModel(small_config(), ("action",)).eval()
    calls = []
    for stage in ("action_stage", "control_stage"):
        real = getattr(model, stage)
        setattr(model, stage, lambda *a, _real=real, _stage=stage, **k: calls.append(_stage) or _real(*a, **k))
    assert set(model.warm_up(runs=1, stages=("control",))) == {"control"}
    assert calls == ["control_stage"]
    assert model.warm_up(runs=1, stages=()) == {}
    with pytest.raises(ValueError, match="unknown stages"):
        model.warm_up(stages=("planning",))
