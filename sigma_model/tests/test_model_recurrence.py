# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The memory and tau recurrence: SigmaModel.select_action with telepathy off, the language modulator's equation."""

from __future__ import annotations

import torch

from sigma_model.testing import make_tau_matter_, randomize_

TEXT = ["pick up the red cube", "place it in the bin"]


def test_select_action_with_telepathy_off_is_the_off_forward_and_still_reports_tau(model, obs):
    """select_action(telepathy=False) passes the flag on: the same step as forward(telepathy=False), tau_prev ignored.

    The carried state is still the step's tau and memory (reported and carried, as the paper's off path keeps them).
    """
    make_tau_matter_(model, seed=2)
    _, state = model.select_action(obs, TEXT, generator=torch.Generator().manual_seed(0))
    off, off_state = model.select_action(obs, TEXT, state, telepathy=False, generator=torch.Generator().manual_seed(1))
    on, _ = model.select_action(obs, TEXT, state, generator=torch.Generator().manual_seed(1))
    tokens = model.tokenize(TEXT)
    with torch.no_grad():
        want = model(obs, tokens, memory_prev=state.memory, telepathy=False, generator=torch.Generator().manual_seed(1))
    assert torch.equal(off.motor_commands, want.motor_commands)
    assert torch.equal(off_state.tau, want.language.tau) and torch.equal(off_state.memory, want.language.memory)
    assert not torch.allclose(on.motor_commands, off.motor_commands)


def test_language_modulator_matches_its_equation(model, config):
    """H + exp(theta_lang) sigmoid(W_g tau + b_g) (W_b tau), with a non-zero log scale and random weights."""
    mod = model.language.modulator
    randomize_(mod, seed=7)
    with torch.no_grad():
        mod.log_scale.fill_(0.4)
        hidden = torch.randn(2, 5, config.d_model, generator=torch.Generator().manual_seed(1))
        tau = torch.randn(2, config.d_tau, generator=torch.Generator().manual_seed(2))
        out, gate = mod(hidden, tau)
        want_gate = torch.sigmoid(tau @ mod.channel_gate.weight.T + mod.channel_gate.bias)
        shift = torch.exp(torch.tensor(0.4)) * want_gate * (tau @ mod.bias.weight.T)
    torch.testing.assert_close(gate, want_gate)
    torch.testing.assert_close(out, hidden + shift[:, None, :])
