# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""CHECK A (paper section 6): the telepathy heads, against their initialisation and between groups.

The paper's CHECK A lists the heads' tensor count, mean, std and rms for the experimental and the
control group and confirms they are equal (the same heads file). Read from one checkpoint that
cannot fail, so CHECK A here also compares the trained heads with the heads the run started from,
``sigma_telepathy_heads_init.safetensors`` (sigma-train writes it into its output directory when a
fresh run starts: the seeded initialisation, or the heads of ``init_checkpoint``). For the trainable
parameters among the heads (buffers such as normalisation statistics are not learned) it reports the
relative change ``||W - W0|| / max(||W||, ||W0||)`` (0: unchanged, 1: e.g. trained away from a zero
initialisation) overall and for each telepathy path: the action residual head, the vision tau
modulator (FiLM) and the language tau modulator. CHECK A passes when the heads as a whole and every
telepathy path moved by at least ``min_relative_change``: an untrained model, or one whose telepathy
paths never trained (tau then has no effect), fails. Without an initialisation file it is not run
(``passed`` null, ``status`` says why).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..training.checkpointing import HEADS_FILE, INIT_HEADS_FILE, heads_state_dict, load_tensors

MIN_RELATIVE_CHANGE = 1e-3
TELEPATHY_PATHS = {"action_residual_head": "action.residual_head.", "vision_tau_modulator": "vision.modulator.",
                   "language_tau_modulator": "language.modulator."}

__all__ = ["HEADS_FILE", "INIT_HEADS_FILE", "MIN_RELATIVE_CHANGE", "check_a", "check_a_section", "check_a_stats",
           "compare_with_init", "find_init_heads", "heads_tensors"]


def heads_tensors(model) -> dict[str, torch.Tensor]:
    """Every non-backbone parameter and buffer: the content of sigma_telepathy_heads.safetensors."""
    return heads_state_dict(model)


def check_a_stats(tensors: Mapping[str, torch.Tensor], source: str = "model") -> dict[str, Any]:
    """Return the paper's statistics: number of heads tensors and the mean / std / rms over all their values."""
    floats = [tensors[k].detach().reshape(-1).double().cpu() for k in sorted(tensors) if tensors[k].is_floating_point()]
    if not floats:
        return {
            "heads_tensors": len(tensors),
            "num_values": 0,
            "mean": None,
            "std": None,
            "rms": None,
            "source": source,
        }
    values = torch.cat(floats)
    return {
        "heads_tensors": len(tensors),
        "num_values": int(values.numel()),
        "mean": float(values.mean()),
        "std": float(values.std(unbiased=False)),
        "rms": float(values.square().mean().sqrt()),
        "source": source,
    }


def check_a(model, heads_file: str | Path | None = None) -> dict[str, Any]:
    """Return the statistics from the heads file when given (and checked against the model), else from the model."""
    own = heads_tensors(model)
    if heads_file is None:
        return check_a_stats(own, "model")
    saved = load_tensors(heads_file)
    stats = check_a_stats(saved, str(heads_file))
    stats["matches_model"] = set(saved) == set(own) and all(
        torch.equal(saved[k], own[k].detach().cpu()) for k in saved)
    return stats


def _relative_change(current: list[torch.Tensor], initial: list[torch.Tensor]) -> float:
    if not current:
        return 0.0
    c = torch.cat([t.detach().reshape(-1).double().cpu() for t in current])
    i = torch.cat([t.detach().reshape(-1).double().cpu() for t in initial])
    scale = max(float(c.norm()), float(i.norm()))
    return float((c - i).norm()) / scale if scale > 0 else 0.0


def compare_with_init(current: Mapping[str, torch.Tensor], initial: Mapping[str, torch.Tensor],
                      names: list[str], min_relative_change: float = MIN_RELATIVE_CHANGE) -> dict[str, Any]:
    """Relative change of the parameters ``names`` (overall, per telepathy path) and whether CHECK A passes."""
    missing = [n for n in names if n not in initial]
    wrong = [n for n in names if n in initial and initial[n].shape != current[n].shape]
    if missing or wrong:
        return {"passed": False, "status": f"failed: the initialisation does not match this model "
                                           f"(missing {missing[:3]}, other shapes {wrong[:3]})"}
    changed = sum(not torch.equal(current[n].detach().cpu(), initial[n].cpu()) for n in names)
    overall = _relative_change([current[n] for n in names], [initial[n] for n in names])
    paths = {}
    for label, prefix in TELEPATHY_PATHS.items():
        group = [n for n in names if n.startswith(prefix)]
        if group:
            paths[label] = _relative_change([current[n] for n in group], [initial[n] for n in group])
    still = [label for label, v in paths.items() if v < min_relative_change]
    passed = overall >= min_relative_change and not still
    if passed:
        status = "passed: the heads and every telepathy path moved from their initialisation"
    elif overall < min_relative_change:
        status = f"failed: the heads are (almost) their initialisation (relative change {overall:.3g})"
    else:
        status = f"failed: telepathy paths still at their initialisation: {still}"
    return {"passed": passed, "status": status, "relative_change": overall, "telepathy_paths": paths,
            "parameters": len(names), "parameters_changed": changed, "min_relative_change": min_relative_change}


def find_init_heads(checkpoint: str | Path) -> Path | None:
    """Return the run's sigma_telepathy_heads_init.safetensors for a checkpoint.

    In the directory itself (a shipped model) or the training output directory above a step's model/
    (``<out>/checkpoints/step_N/model``).
    """
    p = Path(checkpoint).resolve()
    for d in (p, *list(p.parents)[:3]):
        if (d / INIT_HEADS_FILE).is_file():
            return d / INIT_HEADS_FILE
    return None


def check_a_section(model, heads_file: str | Path | None = None, init_heads: str | Path | None = None,
                    control_model=None, control_heads: str | Path | None = None,
                    min_relative_change: float = MIN_RELATIVE_CHANGE) -> dict[str, Any]:
    """Return the report's ``check_a``.

    The paper's statistics of the experimental and control groups (the control is the experimental model when no
    separate one is given) and the comparison of the experimental heads with ``init_heads``.
    """
    experimental = check_a(model, heads_file)
    control = check_a(control_model, control_heads) if control_model is not None else experimental
    drop = ("source", "matches_model")
    out: dict[str, Any] = {
        "experimental": experimental,
        "control": control,
        "identical": {k: v for k, v in experimental.items() if k not in drop}
        == {k: v for k, v in control.items() if k not in drop},
        "init_heads": None if init_heads is None else str(init_heads),
    }
    if init_heads is None:
        out.update(passed=None, status="not run: no initialisation recorded (sigma-train writes "
                                       f"{INIT_HEADS_FILE} into its output directory; pass it with --init-heads)")
        return out
    current = heads_tensors(model)
    if heads_file is not None:
        current = {**current, **load_tensors(heads_file)}
    params = {n for n, _ in model.named_parameters()}
    names = sorted(n for n in current if n in params and current[n].is_floating_point())
    out.update(compare_with_init(current, load_tensors(init_heads), names, min_relative_change))
    return out
