# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Replay's per-batch records, observations and episode state against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from sigma_model.evaluation.replay import batch_record


def test_batch_record_by_hand():
    """Three samples; per-sample MSEs vec (0, 1, 4), chunk (1, 0, 0), traj (0, 0, 9) against zero targets."""
    vec = torch.tensor([[0.0, 0.0], [1.0, -1.0], [2.0, 2.0]])
    chunk = torch.tensor([[[1.0, 1.0]], [[0.0, 0.0]], [[0.0, 0.0]]])
    traj = torch.tensor([[[0.0, 0.0]], [[0.0, 0.0]], [[3.0, -3.0]]])
    acts = (vec, chunk, traj)
    targets = tuple(torch.zeros_like(a) for a in acts)
    rec = batch_record("sigma", 7, acts, targets, torch.tensor([1.0, 2.0, 6.0]), torch.tensor([0.5, 0.0, 1.0]),
                       {"vec": 1.0, "chunk": 0.5, "traj": 8.0}, {"vec": 1.0, "chunk": 0.0, "traj": 9.0})
    # hard: vec > 1 (sample 2), chunk > 0.5 (sample 0), traj > 8 (sample 2) -> samples 0 and 2
    # within thresholds: vec <= 1 (0, 1), chunk <= 0 (1, 2), traj <= 9 (all) -> sample 1
    assert rec == {
        "condition": "sigma", "batch": 7, "num_samples": 3,
        "mse_vec": pytest.approx(5 / 3), "mse_chk": pytest.approx(1 / 3), "mse_trj": pytest.approx(3.0),
        "tau_l2": pytest.approx(3.0), "sem_align": pytest.approx(0.5), "num_hard": 2,
        "hard_mse_vec": pytest.approx(2.0), "hard_mse_chk": pytest.approx(0.5), "hard_mse_trj": pytest.approx(4.5),
        "num_within_thresholds": 1,
    }
