# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""4-bit (bitsandbytes NF4) loading of frozen backbone weights: CUDA only, never silently skipped."""

from __future__ import annotations

import torch
from torch import nn


def require_4bit() -> None:
    """Raise RuntimeError unless 4-bit weights can work here (a CUDA GPU and bitsandbytes)."""
    if not torch.cuda.is_available():
        raise RuntimeError("4-bit loading needs a CUDA GPU (bitsandbytes NF4 kernels) and this machine has none: "
                           "set backbone_4bit=False (train without --load-in-4bit) on the CPU")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise RuntimeError(
            "4-bit loading needs bitsandbytes (in requirements-base.txt): pip install bitsandbytes"
        ) from err


def quantize_linears_4bit(module: nn.Module, skip: tuple[str, ...] = ()) -> int:
    """Replace every nn.Linear of `module` by a frozen NF4 bitsandbytes Linear4bit computing in bf16.

    Layers whose name contains a `skip` fragment stay; `module` moves to the GPU (where the weights are quantised). The
    packed weights are stored as bf16, so code that casts its inputs to ``layer.weight.dtype`` (LeRobot's policies do)
    feeds them bf16. Returns the number replaced.
    """
    import bitsandbytes as bnb

    require_4bit()
    targets = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear) and not any(s in n for s in skip)]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        quantized = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                      compute_dtype=torch.bfloat16, quant_type="nf4", quant_storage=torch.bfloat16)
        quantized.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, quant_type="nf4",
                                             quant_storage=torch.bfloat16)
        if linear.bias is not None:
            quantized.bias = nn.Parameter(linear.bias.data, requires_grad=False)
        setattr(parent, child, quantized)
    module.cuda()
    return len(targets)
