# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""TSAC curriculum: w_sem(t), w_int(t), w_tau(t) rise linearly from start to target, then stay.

w(t) = start + (target - start) * min(1, t / steps) for optimiser step t >= 0 (steps = 0: target
from the first step). The TrainingConfig defaults (0.1 -> 1.0, 0.1 -> 0.8, 0.0 -> 0.03 over 82
steps) reproduce the weight columns of the paper's Table 1.
"""

from __future__ import annotations

from dataclasses import dataclass


def linear_ramp(step: int, start: float, target: float, steps: int) -> float:
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if steps <= 0:
        return float(target)
    frac = min(1.0, step / steps)
    return float(start + (target - start) * frac)


@dataclass(frozen=True)
class CurriculumWeights:
    w_sem: float
    w_int: float
    w_tau: float


@dataclass(frozen=True)
class Curriculum:
    w_sem_start: float = 0.1
    w_sem_target: float = 1.0
    w_int_start: float = 0.1
    w_int_target: float = 0.8
    w_tau_start: float = 0.0
    w_tau_target: float = 0.03
    steps: int = 82

    @classmethod
    def from_config(cls, config) -> "Curriculum":
        return cls(
            config.w_sem_start, config.w_sem_target, config.w_int_start, config.w_int_target,
            config.w_tau_start, config.w_tau_target, config.curriculum_steps,
        )

    def __call__(self, step: int) -> CurriculumWeights:
        return CurriculumWeights(
            w_sem=linear_ramp(step, self.w_sem_start, self.w_sem_target, self.steps),
            w_int=linear_ramp(step, self.w_int_start, self.w_int_target, self.steps),
            w_tau=linear_ramp(step, self.w_tau_start, self.w_tau_target, self.steps),
        )
