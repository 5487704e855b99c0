"""Checkpoints: config.json plus one safetensors file per workspace (keys prefixed by workspace).

A ROS node loads only its own workspace: `load_checkpoint(dir, workspaces=("action",))`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .configuration_sigma import WORKSPACES, SigmaConfig
from .modeling_sigma import SigmaModel

CONFIG_NAME = "config.json"


def workspace_file(directory: str | Path, workspace: str) -> Path:
    return Path(directory) / f"{workspace}.safetensors"


def save_checkpoint(model: SigmaModel, directory: str | Path) -> Path:
    """Write config.json and <workspace>.safetensors for each workspace the model holds.

    Each file is written to a temporary name and renamed, so an interrupted save never leaves a
    truncated checkpoint behind.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    for workspace in model.workspaces:
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if k.startswith(workspace + ".")}
        target = workspace_file(directory, workspace)
        tmp = target.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata={"workspace": workspace, "format": "sigma-v1"})
        os.replace(tmp, target)
    tmp = directory / (CONFIG_NAME + ".tmp")
    model.config.save(tmp)
    os.replace(tmp, directory / CONFIG_NAME)
    return directory


def load_checkpoint(
    directory: str | Path, workspaces: tuple[str, ...] = WORKSPACES, map_location: str | torch.device = "cpu"
) -> SigmaModel:
    """Build a SigmaModel holding `workspaces` and load their weights (strict, tensor-only files)."""
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"no Sigma checkpoint at {directory} (missing {CONFIG_NAME})")
    model = SigmaModel(SigmaConfig.load(config_path), workspaces=workspaces)
    state: dict[str, torch.Tensor] = {}
    for workspace in model.workspaces:
        path = workspace_file(directory, workspace)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {directory} has no {path.name} for the {workspace} workspace")
        try:
            state.update(load_file(str(path), device=str(map_location)))
        except Exception as err:  # safetensors raises several types for corrupt files
            raise ValueError(f"corrupt checkpoint file {path}: {err}") from err
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {directory} does not match its config: missing={missing[:5]} unexpected={unexpected[:5]}")
    return model.to(map_location)
