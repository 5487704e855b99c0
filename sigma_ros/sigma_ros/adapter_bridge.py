# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The inference adapter of paper section 4.3 in the action node.

The adapter is ``sigma_model.evaluation.adapter.RiskGatedAdapter`` (the same object the offline
replay uses); this bridge builds it from a JSON ``AdapterConfig`` (or the defaults) and maps its
output onto the ActionPlan fields: adapted action vector/chunk/trajectory, the per-item scale and
risk. Residuals and baselines stay those of the model (before adaptation).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch


class AdapterBridge:
    def __init__(self, config_path: str = "", logger=None) -> None:
        self.available = False
        self.error = ""
        self.adapter = None
        try:
            from sigma_model.evaluation.adapter import AdapterConfig, RiskGatedAdapter
        except ImportError as err:
            self.error = f"sigma_model.evaluation.adapter: {err}"
            return
        try:
            config = AdapterConfig.load(config_path) if config_path else AdapterConfig()
        except (OSError, ValueError, TypeError) as err:
            self.error = f"adapter config {config_path!r}: {err}"
            return
        self.adapter = RiskGatedAdapter(config)
        self.available = True
        if logger is not None:
            logger.info(f"inference adapter on: {self.adapter}")

    def apply(self, act, tau: torch.Tensor):
        """-> (ActionOutput with adapted actions, scale [B], risk [B], fallback [B])."""
        out = self.adapter.adapt_output(act, tau)
        adapted = replace(act, action_vector=out.action_vector.to(act.action_vector.dtype),
                          action_chunk=out.action_chunk.to(act.action_chunk.dtype),
                          action_trajectory=out.action_trajectory.to(act.action_trajectory.dtype))
        return (adapted, _vec(out.scale), np.nan_to_num(_vec(out.risk), nan=1e30, posinf=1e30),
                _vec(out.fallback).astype(bool))


def _vec(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)
