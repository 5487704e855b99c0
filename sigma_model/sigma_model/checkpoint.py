# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Checkpoints: config.json plus one safetensors file per workspace (keys prefixed by workspace).

A ROS node loads only its own workspace: `load_checkpoint(dir, workspaces=("action",))`.
Weights of modules marked `external_weights` (a VLA backbone's, loaded from
`config.backbone_path`) are never written: the checkpoint references them by that path and
holds only their LoRA adapters (re-applied at load from `config.backbone_lora`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .configuration_sigma import WORKSPACES, SigmaConfig
from .data._io import replacing_directory
from .modeling_sigma import SigmaModel

CONFIG_NAME = "config.json"


def workspace_file(directory: str | Path, workspace: str) -> Path:
    return Path(directory) / f"{workspace}.safetensors"


def external_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the modules whose weights live outside Sigma checkpoints."""
    return tuple(name + "." for name, m in model.named_modules() if getattr(m, "external_weights", False))


def persistent_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Return what a checkpoint holds: every tensor but the external weights (their LoRA adapters stay)."""
    if not isinstance(model, torch.nn.Module):  # a view that already is the checkpoint's content
        return model.state_dict()
    external = external_prefixes(model)
    return {k: v for k, v in model.state_dict().items() if ".lora_" in k or not k.startswith(external)}


def save_checkpoint(model: SigmaModel, directory: str | Path) -> Path:
    """Write config.json and <workspace>.safetensors for each workspace the model holds.

    The checkpoint is written into a new directory beside ``directory`` (holding links to the other files already
    there, such as a PROVENANCE.md), which then takes its place: an interrupted save leaves the checkpoint before
    whole, never a mix of old and new files or a truncated one.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"cannot save a checkpoint at {directory}: it is a file")
    with replacing_directory(directory) as staging:
        if directory.is_dir():
            shutil.copytree(directory, staging, copy_function=_link_or_copy)
        staging.mkdir(parents=True, exist_ok=True)
        state = persistent_state_dict(model)
        for workspace in model.workspaces:
            tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if k.startswith(workspace + ".")}
            target = workspace_file(staging, workspace)
            target.unlink(missing_ok=True)  # a link to the old file: never write through it
            save_file(tensors, str(target), metadata={"workspace": workspace, "format": "sigma-v1"})
        (staging / CONFIG_NAME).unlink(missing_ok=True)
        model.config.save(staging / CONFIG_NAME)
    return directory


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link ``src`` to ``dst`` (nothing copied), or copy it where the file system has no links."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class CheckpointError(ValueError):
    """A checkpoint that is corrupt or does not match its config.

    The message (one line) names the file and what is wrong.
    """


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint directory, its config.json or one of its workspace files is missing."""


def load_checkpoint(
    directory: str | Path, workspaces: tuple[str, ...] = WORKSPACES, map_location: str | torch.device = "cpu"
) -> SigmaModel:
    """Build a SigmaModel holding `workspaces` and load their weights (strict, tensor-only files).

    Raises CheckpointError (CheckpointNotFoundError for missing files) naming the file at fault.
    """
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise CheckpointNotFoundError(f"no Sigma checkpoint at {directory} (no such directory)")
    if not config_path.is_file():
        raise CheckpointNotFoundError(f"no Sigma checkpoint at {directory} (missing {CONFIG_NAME})")
    try:
        config = SigmaConfig.load(config_path)
    except (OSError, ValueError, TypeError) as err:
        raise CheckpointError(f"corrupt checkpoint config: {err}") from err
    try:  # e.g. a text encoder the config names that is not installed
        model = SigmaModel(config, workspaces=workspaces)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {directory}: cannot build the model {CONFIG_NAME} describes: {err}") from err
    expected = persistent_state_dict(model)
    state: dict[str, torch.Tensor] = {}
    for workspace in model.workspaces:
        state.update(_load_workspace(workspace_file(directory, workspace), workspace, expected, map_location))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k in expected]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {directory} does not match its config: "
                              f"missing={missing[:5]} unexpected={unexpected[:5]}")
    return model.to(map_location)


def _load_workspace(path: Path, workspace: str, expected: dict[str, torch.Tensor],
                    map_location) -> dict[str, torch.Tensor]:
    """Return the tensors of one workspace file, their shapes checked against the model built from config.json."""
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint {path.parent} has no {path.name} for the {workspace} workspace")
    try:
        tensors = load_file(str(path), device=str(map_location))
    except Exception as err:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"corrupt checkpoint file {path}: {err}") from err
    wrong = [f"{k} {list(t.shape)} != {list(expected[k].shape)}" for k, t in tensors.items()
             if k in expected and t.shape != expected[k].shape]
    if wrong:
        raise CheckpointError(f"checkpoint file {path} does not match {CONFIG_NAME}: {len(wrong)} tensors of "
                              f"another shape ({wrong[0]}, ...)")
    return tensors
