# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Sigma: a telepathy-aligned vision-language-action model in plain PyTorch (no ROS)."""

from .checkpoint import load_checkpoint, save_checkpoint
from .configuration_sigma import SigmaConfig
from .modeling_sigma import RecurrentState, SigmaModel
from .outputs import ActionOutput, LanguageOutput, SigmaObservation, SigmaOutput, TextTokens, VisionOutput

__all__ = [
    "ActionOutput", "LanguageOutput", "RecurrentState", "SigmaConfig", "SigmaModel", "SigmaObservation",
    "SigmaOutput", "TextTokens", "VisionOutput", "load_checkpoint", "save_checkpoint",
]
