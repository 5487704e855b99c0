# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The DiT's inference sampler (eval mode: planned, scripted) against the modules' own path (training mode)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sigma_model import load_checkpoint
from sigma_model.testing import randomize_
from sigma_model.trajectory_dit import TrajectoryDiT

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "sigma_so101_default"


def sample_both(dit, ctx, valid, cond, steps, noise_scale=0.7):
    """Return the trajectory sampled in eval mode and in training mode (dropout 0: the same maths), same seed."""
    out = []
    with torch.no_grad():
        for training in (False, True):
            dit.train(training)
            out.append(dit.sample(ctx, valid, cond, steps, torch.Generator().manual_seed(9), noise_scale))
    dit.eval()
    return out


@pytest.mark.parametrize("steps", [1, 3, 10])
@pytest.mark.parametrize("padded", [False, True])
def test_inference_sampler_equals_the_modules_path(steps, padded):
    """Batch 2, 2 blocks, 2 heads; a padded context (a key mask) and a full one (no mask)."""
    dit = TrajectoryDiT(action_dim=3, traj_len=5, d_model=16, n_heads=2, n_layers=2, dropout=0.0)
    randomize_(dit, seed=4)
    g = torch.Generator().manual_seed(5)
    ctx, cond = torch.randn(2, 6, 16, generator=g), torch.randn(2, 16, generator=g)
    valid = torch.ones(2, 6, dtype=torch.bool)
    if padded:
        valid[1, [3, 5]] = False
    fast, reference = sample_both(dit, ctx, valid, cond, steps)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(reference, 0.7 * torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(9)),
                              atol=1e-3)  # the velocity field moved the trajectory


def test_inference_sampler_ignores_padded_keys():
    """Changing the context under a padded key changes neither path; changing a valid key changes both."""
    dit = TrajectoryDiT(action_dim=2, traj_len=4, d_model=16, n_heads=4, n_layers=1, dropout=0.0).eval()
    randomize_(dit, seed=1)
    ctx, cond = torch.randn(1, 5, 16), torch.randn(1, 16)
    valid = torch.tensor([[True, True, False, True, False]])
    base = sample_both(dit, ctx, valid, cond, 4)
    for key, moves in ((2, False), (1, True)):
        other = ctx.clone()
        other[0, key] += 3.0
        for a, b in zip(base, sample_both(dit, other, valid, cond, 4)):
            assert torch.allclose(a, b, atol=1e-6) != moves, key


def test_shipped_checkpoint_action_stage_equals_the_modules_path():
    """The shipped weights (d_model 64, 10 steps): the action stage's trajectory in eval mode equals training mode's."""
    model = load_checkpoint(SHIPPED, workspaces=("action",))
    c = model.config
    g = torch.Generator().manual_seed(0)
    rep, tau = torch.randn(1, 30, c.d_model, generator=g), torch.randn(1, c.d_tau, generator=g)
    state = torch.randn(1, c.n_state_tokens, c.d_model, generator=g)
    mask = torch.ones(1, 30, dtype=torch.bool)
    out = {}
    with torch.no_grad():
        for training in (False, True):
            model.train(training)
            out[training] = model.action_stage(rep, mask, tau, state, generator=torch.Generator().manual_seed(1))
    assert c.dropout == 0.0 and c.diffusion_steps == 10
    torch.testing.assert_close(out[False].action_trajectory, out[True].action_trajectory, rtol=1e-5, atol=1e-5)
    assert out[False].action_trajectory.abs().max() > 0.1
