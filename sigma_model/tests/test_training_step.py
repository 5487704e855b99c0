# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The trainer's step (SigmaTrainer.train_step, compute_losses) against hand-derived expectations."""

from __future__ import annotations

import pytest
import torch

from sigma_model.training.configuration_training import TrainingConfig
from sigma_model.training.trainer import SigmaTrainer

from sigma_model.testing import small_config


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def trainer(tmp_path, name="run", **overrides) -> SigmaTrainer:
    values = dict(synthetic_samples=12, batch_size=3, max_steps=4, warmup_steps=0, learning_rate=1e-3,
                  output_dir=str(tmp_path / name), save_every=0, curriculum_steps=2, keep_checkpoints=0)
    values.update(overrides)
    return SigmaTrainer(TrainingConfig(**values), small_config(use_audio=False))


def test_grad_accumulation_counts_every_micro_batch(tmp_path):
    """Two micro-batches of 3 per step: 6 samples per step, the step counter and the lr before the scheduler's step."""
    t = trainer(tmp_path, grad_accum_steps=2, warmup_steps=2, max_steps=4)
    m0 = t.train_step()
    assert (m0["step"], m0["samples"], t.samples_seen, t.step) == (0, 6, 6, 1)
    assert m0["lr"] == pytest.approx(0.5e-3)  # warmup: (step + 1) / warmup_steps of the peak
    m1 = t.train_step()
    assert (m1["step"], m1["samples"], t.step) == (1, 12, 2)
    assert m1["lr"] == pytest.approx(1e-3)
    assert t.last_metrics is m1
