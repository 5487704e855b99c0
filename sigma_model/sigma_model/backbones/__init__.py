# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Backbones behind one interface: text ids + vision tokens + state tokens -> hidden sequence."""

from .base import SigmaBackbone, build_backbone

__all__ = ["SigmaBackbone", "build_backbone"]
