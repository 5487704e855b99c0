# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Exponential moving average of the trainable weights (Polyak averaging).

Behaviour-cloned policies swing a lot from one checkpoint to the next in closed loop; the average
of the recent weights is a steadier policy. The trainer updates the average after each optimiser
step and exports it as the deployable `model/` of a checkpoint, while the raw weights stay in the
training files so that a resumed run continues exactly.

The effective decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, so the average is
not dominated by the random initial weights of a fresh run.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


class WeightEMA:
    """fp32 shadow copies of named parameters, updated in place with `update()`."""

    def __init__(self, named_parameters: dict[str, torch.nn.Parameter], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.params = dict(named_parameters)
        self.shadow = {n: p.detach().float().clone() for n, p in self.params.items()}
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        d = self.current_decay()
        for name, p in self.params.items():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - d)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the parameters hold the averaged weights; restored exactly afterwards."""
        saved = {n: p.detach().clone() for n, p in self.params.items()}
        try:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(self.shadow[name])
            yield
        finally:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(saved[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**self.shadow, "__updates__": torch.tensor(self.updates, dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        unknown = sorted(set(state) - set(self.shadow) - {"__updates__"})
        if missing or unknown or "__updates__" not in state:
            raise ValueError(
                f"EMA state does not match the trainable parameters (missing {missing[:5]}, unknown {unknown[:5]})"
            )
        for name in self.shadow:
            self.shadow[name].copy_(state[name])
        self.updates = int(state["__updates__"])
