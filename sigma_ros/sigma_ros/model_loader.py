# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Load the part of the Sigma model a node needs (no ROS imports).

* With a checkpoint directory (``sigma_model.checkpoint`` layout: config.json + one safetensors
  file per workspace) a node loads only its workspaces.
* Without one, the weights are the full model built from a seeded ``SigmaConfig`` (default, or
  a config JSON): :func:`build_full_model`. So that every node of the graph gets identical
  weights without each building the whole model (the language backbone alone takes seconds to
  import), the first node materialises them once as a checkpoint in a cache folder keyed by
  seed, config and the sigma_model sources (under a file lock); every node then loads only its
  workspaces from there.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import torch

from sigma_model.checkpoint import CONFIG_NAME, load_checkpoint, save_checkpoint
from sigma_model.configuration_sigma import WORKSPACES, SigmaConfig
from sigma_model.modeling_sigma import SigmaModel


def _config(config_path: str | None) -> SigmaConfig:
    if config_path:
        path = Path(config_path)
        if path.is_dir():
            path = path / CONFIG_NAME
        return SigmaConfig.load(path)
    return SigmaConfig()


def build_full_model(seed: int = 0, config_path: str | None = None) -> SigmaModel:
    """Return the full model with seeded random weights (what nodes use when no checkpoint is given)."""
    config = _config(config_path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = SigmaModel(config)
    return model.eval()


def _sources_digest() -> str:
    """Hash of the sigma_model sources that define the architecture and its initialisation."""
    import sigma_model

    root = Path(sigma_model.__file__).resolve().parent
    h = hashlib.sha256()
    files = sorted(list(root.glob("*.py")) + list(root.glob("backbones/*.py")))
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    """Return the cache of random weights ($SIGMA_RANDOM_WEIGHTS_CACHE, else this user's folder in the temp folder).

    Made with mode 0700. It must be a directory of this user's that no one else can write: weights another user placed
    there would be loaded by every node.
    """
    default = Path(tempfile.gettempdir()) / f"sigma_ros_random_weights_{os.getuid()}"
    root = Path(os.environ.get("SIGMA_RANDOM_WEIGHTS_CACHE", default))
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = root.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise RuntimeError(f"random-weights cache {root} is not a directory of this user's that only this user can "
                           "write; remove it or set SIGMA_RANDOM_WEIGHTS_CACHE")
    return root


def random_checkpoint(seed: int = 0, config_path: str | None = None) -> Path:
    """Checkpoint dir holding :func:`build_full_model` (seed, config) weights, built once."""
    config = _config(config_path)
    key = hashlib.sha256(json.dumps({"seed": int(seed), "config": config.to_dict(), "src": _sources_digest()},
                                    sort_keys=True).encode()).hexdigest()[:20]
    root = cache_root()
    target = root / f"seed{int(seed)}_{key}"
    if (target / CONFIG_NAME).is_file():
        return target
    with open(root / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent nodes: one builds, the others wait and load
        if not (target / CONFIG_NAME).is_file():
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
            try:
                save_checkpoint(build_full_model(seed, config_path), tmp)
                if target.exists():
                    shutil.rmtree(target)
                os.replace(tmp, target)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_sigma_model(checkpoint: str | None, workspaces: tuple[str, ...], seed: int = 0,
                     config_path: str | None = None, device: str = "cpu") -> SigmaModel:
    """Return a SigmaModel in eval mode holding ``workspaces`` (the rest is None)."""
    unknown = set(workspaces) - set(WORKSPACES)
    if unknown:
        raise ValueError(f"unknown workspaces {sorted(unknown)}")
    if not checkpoint:
        checkpoint = str(random_checkpoint(seed, config_path))
    model = load_checkpoint(checkpoint, workspaces=tuple(workspaces), map_location=device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
