# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Sigma: a telepathy-aligned vision-language-action model in plain PyTorch (no ROS).

The names below are imported on first use (PEP 562), so ``import sigma_model.cli`` (every command's
argument parsing) does not import torch.
"""

from __future__ import annotations

import importlib

_MODULE_OF = {
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint", "SigmaConfig": "configuration_sigma",
    "RecurrentState": "modeling_sigma", "SigmaModel": "modeling_sigma", "ActionOutput": "outputs",
    "LanguageOutput": "outputs", "SigmaObservation": "outputs", "SigmaOutput": "outputs", "TextTokens": "outputs",
    "VisionOutput": "outputs",
}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
