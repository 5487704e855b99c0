# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Resumable training checkpoints: tensor-only files (safetensors + JSON), written atomically.

Layout of one checkpoint directory `<output_dir>/checkpoints/step_00000100/`:

    model/                              deployable merged model (sigma_model.checkpoint.save_checkpoint:
                                        config.json + <workspace>.safetensors; LoRA merged into
                                        the backbone weights; `load_checkpoint(model/)` works as is;
                                        the weight average when the run keeps one)
    ema.safetensors                     the exponential moving average of the trainable weights
                                        (only when TrainingConfig.ema_decay > 0)
    adapter/adapter_model.safetensors   LoRA adapters in peft's layout (+ adapter_config.json)
    sigma_telepathy_heads.safetensors   every non-backbone Sigma parameter and buffer (vision
                                        workspace, language heads, action workspace)
    backbone_frozen.safetensors         the frozen (unmerged) backbone weights, so a resumed run
                                        restarts from exactly the same base (omitted for 4-bit)
    optimizer.safetensors + optimizer.json   optimiser tensors / param groups and scalar state
    scheduler.json                      LR scheduler state
    rng.safetensors + rng.json          torch CPU/CUDA RNG, the trainer's generator, python/numpy RNG
    trainer_state.json                  step, data position, samples seen, last metrics, versions
    training_config.json, sigma_config.json

A fresh run also writes `<output_dir>/sigma_telepathy_heads_init.safetensors`, the heads it starts
from (the seeded initialisation or init_checkpoint's heads): CHECK A compares a checkpoint with it.

Nothing is pickled: every tensor goes through safetensors and everything else through JSON. The
directory is assembled under a temporary name and renamed into place; `<checkpoints>/latest`
(a one-line text file) then names the newest complete checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..checkpoint import external_prefixes, persistent_state_dict, save_checkpoint
from ..config_io import read_json_object
from ..configuration_sigma import SigmaConfig
from .configuration_training import TrainingConfig
from .ema import WeightEMA
from .lora import backbone_prefixes, has_lora, is_lora_name, load_adapter, merged_state_dict, save_adapter

log = logging.getLogger(__name__)

HEADS_FILE = "sigma_telepathy_heads.safetensors"
INIT_HEADS_FILE = "sigma_telepathy_heads_init.safetensors"
BACKBONE_FILE = "backbone_frozen.safetensors"
OPTIMIZER_TENSORS, OPTIMIZER_META = "optimizer.safetensors", "optimizer.json"
OPTIMIZER_KEYS = ("class", "param_groups", "param_names", "scalar_state")
SCHEDULER_FILE = "scheduler.json"
RNG_TENSORS, RNG_META = "rng.safetensors", "rng.json"
EMA_FILE = "ema.safetensors"
TRAINER_STATE = "trainer_state.json"
TRAINING_CONFIG, SIGMA_CONFIG = "training_config.json", "sigma_config.json"
TRAINER_STATE_KEYS = ("step", "samples_seen", "data_epoch", "data_batch_index")  # non-negative ints
LATEST = "latest"
STEP_DIR = re.compile(r"^step_(\d{8})$")
FORMAT = "sigma-train-v1"


# ---------------------------------------------------------------- helpers
def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _read_json(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"training checkpoint file missing: {path}")
    return read_json_object(path, required)


def read_trainer_state(path: Path) -> dict[str, Any]:
    """Return trainer_state.json, checked: TRAINER_STATE_KEYS hold non-negative ints."""
    state = _read_json(path, TRAINER_STATE_KEYS)
    bad = [k for k in TRAINER_STATE_KEYS if type(state[k]) is not int or state[k] < 0]
    if bad:
        raise ValueError(f"{path}: {bad} must be non-negative integers")
    return state


@contextlib.contextmanager
def _restoring(*paths: Path):
    """Turn an error while restoring state from ``paths`` (content that does not fit) into one naming them."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
        detail = f"missing {err}" if isinstance(err, KeyError) else err
        raise ValueError(f"cannot restore {' + '.join(map(str, paths))}: {detail}") from err


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], kind: str) -> None:
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
        str(path),
        metadata={"format": FORMAT, "kind": kind},
    )


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Return a safetensors file's tensors; FileNotFoundError / ValueError naming the file when missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training checkpoint file missing: {path}")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises several types on corrupt files
        raise ValueError(f"corrupt checkpoint file {path}: {err}") from err


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def plain_key(key: str) -> str:
    """Return a state-dict key without peft's wrapper level (`q_proj.base_layer.weight` -> `q_proj.weight`)."""
    return key.replace(".base_layer.", ".")


# ------------------------------------------------------------- model parts
def heads_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every non-backbone parameter and buffer of a SigmaModel (the telepathy heads file)."""
    prefixes = backbone_prefixes(model)
    return {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}


def backbone_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return the backbone's own (non-LoRA) weights under plain key names.

    None of a backbone whose weights are external (a VLA: its checkpoint is referenced, never copied).
    """
    prefixes, external = backbone_prefixes(model), external_prefixes(model)
    return {plain_key(k): v for k, v in model.state_dict().items()
            if k.startswith(prefixes) and not k.startswith(external) and not is_lora_name(k)}


def _load_partial(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    current = model.state_dict()
    own = {plain_key(k): k for k in current}
    unknown = [k for k in state if k not in own]
    if unknown:
        raise ValueError(f"{what} does not match the model: unexpected keys {unknown[:5]}")
    reshaped = [k for k, v in state.items() if v.shape != current[own[k]].shape]
    if reshaped:
        raise ValueError(f"{what} does not match the model: other shapes for {reshaped[:5]}")
    result = model.load_state_dict({own[k]: v for k, v in state.items()}, strict=False)
    expected = set(own[k] for k in state)
    wrong = [k for k in result.missing_keys if k in expected]
    if wrong:
        raise ValueError(f"{what} could not be loaded: {wrong[:5]}")


def save_heads(model: nn.Module, path: str | Path) -> Path:
    path = Path(path)
    _save_tensors(path, heads_state_dict(model), "telepathy_heads")
    return path


def save_init_heads(model: nn.Module, output_dir: str | Path) -> Path:
    """Return the heads a run starts from, `<output_dir>/sigma_telepathy_heads_init.safetensors` (atomic)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{INIT_HEADS_FILE}.{os.getpid()}.tmp"
    save_heads(model, tmp)
    os.replace(tmp, out / INIT_HEADS_FILE)
    return out / INIT_HEADS_FILE


def load_heads(model: nn.Module, path: str | Path) -> None:
    """Load sigma_telepathy_heads.safetensors into a model (every non-backbone key must be there)."""
    state = load_tensors(path)
    need = set(heads_state_dict(model))
    missing = sorted(need - set(state))
    if missing:
        raise ValueError(f"{path} lacks heads parameters {missing[:5]}")
    _load_partial(model, state, str(path))


class _MergedView:
    """What save_checkpoint needs of a model (config, workspaces, state_dict), with LoRA merged."""

    def __init__(self, model: nn.Module, config: SigmaConfig | None = None) -> None:
        self.config, self.workspaces = config or model.config, model.workspaces
        if has_lora(model) and not model.config.backbone_lora:  # adapters of an own (not external) backbone
            external = external_prefixes(model)
            self._state = {k: v for k, v in merged_state_dict(model).items() if not k.startswith(external)}
        else:  # adapters re-applied at load from config.backbone_lora stay unmerged
            self._state = persistent_state_dict(model)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._state


def export_merged_model(model: nn.Module, directory: str | Path, config: SigmaConfig | None = None) -> Path:
    """Return a plain sigma_model checkpoint (LoRA merged) that `sigma_model.load_checkpoint` reads.

    `config` replaces the model's (same architecture, e.g. with normalisation statistics added). A backbone with
    external weights cannot be merged without copying it: its adapters stay unmerged (re-applied at load from
    config.backbone_lora).
    """
    return save_checkpoint(_MergedView(model, config), directory)


# -------------------------------------------------------------- optimizer
def optimizer_to_tensors(
    optimizer: torch.optim.Optimizer, param_names: list[str]
) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    meta = {"param_groups": sd["param_groups"], "scalar_state": scalars, "param_names": param_names,
            "class": type(optimizer).__name__}
    return tensors, meta


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict,
                           param_names: list[str]) -> None:
    if meta.get("class") != type(optimizer).__name__:
        raise ValueError(f"checkpoint optimizer is {meta.get('class')}, this run uses {type(optimizer).__name__}")
    if meta["param_names"] != param_names:
        raise ValueError("checkpoint optimizer was built for a different set of trainable parameters")
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, values in meta["scalar_state"].items():
        state.setdefault(int(idx), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if "betas" in group and isinstance(group["betas"], list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# -------------------------------------------------------------------- RNG
def capture_rng(generator: torch.Generator | None) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    if generator is not None:
        tensors["trainer_generator"] = generator.get_state()
    meta: dict[str, Any] = {
        "python": _jsonable(random.getstate()),
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
    }
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        meta["numpy"] = [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    except ImportError:
        pass
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict, generator: torch.Generator | None) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[f"torch_cuda_{i}"] for i in range(meta.get("cuda_devices", 0)) if f"torch_cuda_{i}" in tensors]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if generator is not None and "trainer_generator" in tensors:
        try:
            generator.set_state(tensors["trainer_generator"])
        except (RuntimeError, TypeError, ValueError):  # the checkpoint's generator lived on another device
            log.warning("the checkpoint's diffusion-noise generator belongs to another device; keeping a fresh "
                        "seed (the resumed run is no longer bit-identical to an uninterrupted one)")
    random.setstate(_tupled(meta["python"]))
    if "numpy" in meta:
        import numpy as np

        name, keys, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _jsonable(obj):
    return [_jsonable(x) for x in obj] if isinstance(obj, (tuple, list)) else obj


def _tupled(obj):
    return tuple(_tupled(x) for x in obj) if isinstance(obj, list) else obj


# ---------------------------------------------------------- whole checkpoint
@dataclass
class LoadedCheckpoint:
    path: Path
    trainer_state: dict
    training_config: TrainingConfig
    sigma_config: SigmaConfig


def save_training_checkpoint(
    root: str | Path,
    step: int,
    model: nn.Module,
    training_config: TrainingConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer_state: dict,
    generator: torch.Generator | None = None,
    lora_config: Any = None,
    param_names: list[str] | None = None,
    save_merged_model: bool = True,
    save_frozen_backbone: bool = True,
    ema: WeightEMA | None = None,
) -> Path:
    """Write `<root>/step_<step>/` atomically and point `<root>/latest` at it.

    Returns the path. With `ema`, model/ holds the averaged weights and ema.safetensors the average itself.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".{final.name}.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        if save_merged_model:
            with ema.applied() if ema is not None else contextlib.nullcontext():
                export_merged_model(model, tmp / "model")
        if ema is not None:
            _save_tensors(tmp / EMA_FILE, ema.state_dict(), "ema")
        if lora_config is not None and has_lora(model):
            save_adapter(model, lora_config, tmp / "adapter")
        save_heads(model, tmp / HEADS_FILE)
        frozen = (
            backbone_state_dict(model) if save_frozen_backbone and getattr(model, "language", None) is not None else {}
        )
        if frozen:
            _save_tensors(tmp / BACKBONE_FILE, frozen, "backbone_frozen")
        names = param_names if param_names is not None else []
        tensors, meta = optimizer_to_tensors(optimizer, names)
        _save_tensors(tmp / OPTIMIZER_TENSORS, tensors, "optimizer")
        _write_json(tmp / OPTIMIZER_META, meta)
        sched = {k: v for k, v in scheduler.state_dict().items()}
        sched["lr_lambdas"] = [None] * len(sched.get("lr_lambdas", []) or [])
        _write_json(tmp / SCHEDULER_FILE, sched)
        rng_tensors, rng_meta = capture_rng(generator)
        _save_tensors(tmp / RNG_TENSORS, rng_tensors, "rng")
        _write_json(tmp / RNG_META, rng_meta)
        state = dict(trainer_state)
        state.update(step=step, format=FORMAT, torch_version=torch.__version__)
        _write_json(tmp / TRAINER_STATE, state)
        training_config.save(tmp / TRAINING_CONFIG)
        model.config.save(tmp / SIGMA_CONFIG)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if final.exists():
            old = root / f".{final.name}.{os.getpid()}.old"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _atomic_text(root / LATEST, final.name + "\n")
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name)), key=lambda p: p.name)


def latest_checkpoint(root: str | Path) -> Path | None:
    """Return the checkpoint `<root>/latest` names (or the highest step directory), None when there is none."""
    root = Path(root)
    pointer = root / LATEST
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8", errors="replace").strip()
        if STEP_DIR.match(name) and (root / name / TRAINER_STATE).is_file():
            return root / name
        log.warning("%s does not name a complete checkpoint; using the highest complete step", pointer)
    complete = [p for p in list_checkpoints(root) if (p / TRAINER_STATE).is_file()]
    return complete[-1] if complete else None


def prune_checkpoints(root: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` step directories (keep = 0: keep all). Returns the removed."""
    if keep <= 0:
        return []
    removed = list_checkpoints(root)[:-keep]
    for p in removed:
        shutil.rmtree(p)
    return removed


def read_checkpoint_configs(path: str | Path) -> tuple[TrainingConfig, SigmaConfig]:
    path = Path(path)
    if not (path / TRAINER_STATE).is_file():
        raise FileNotFoundError(f"{path} is not a Sigma training checkpoint (no {TRAINER_STATE})")
    for name in (TRAINING_CONFIG, SIGMA_CONFIG):
        if not (path / name).is_file():
            raise FileNotFoundError(f"training checkpoint file missing: {path / name}")
    return TrainingConfig.load(path / TRAINING_CONFIG), SigmaConfig.load(path / SIGMA_CONFIG)


def load_model_state(path: str | Path, model: nn.Module) -> None:
    """Frozen backbone (when saved).

    Heads and LoRA adapters of a checkpoint into `model` (built from the checkpoint's sigma_config, with LoRA already
    applied when the run used it).
    """
    path = Path(path)
    if (path / BACKBONE_FILE).is_file():
        _load_partial(model, load_tensors(path / BACKBONE_FILE), str(path / BACKBONE_FILE))
    load_heads(model, path / HEADS_FILE)
    if has_lora(model):
        load_adapter(model, path / "adapter")


def _check_scheduler_state(state: dict, step: int, groups: int) -> None:
    """Check a scheduler state: stepped once per optimiser step, one base LR per parameter group."""
    if state["last_epoch"] != step:
        raise ValueError(f"last_epoch {state['last_epoch']!r} is not the checkpoint's step {step}")
    lrs = state["base_lrs"]
    if not (isinstance(lrs, list) and len(lrs) == groups and all(isinstance(x, (int, float)) for x in lrs)):
        raise ValueError(f"base_lrs {lrs!r} is not {groups} learning rate(s)")


def load_training_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: torch.Generator | None = None,
    param_names: list[str] | None = None,
    ema: WeightEMA | None = None,
) -> LoadedCheckpoint:
    """Restore model weights, optimiser, scheduler, RNG state and the weight average (when `ema`) in place.

    Return the trainer state. A missing, corrupt or unfitting file is an error naming it.
    """
    path = Path(path)
    training_config, sigma_config = read_checkpoint_configs(path)
    trainer_state = read_trainer_state(path / TRAINER_STATE)
    load_model_state(path, model)
    if ema is not None:
        with _restoring(path / EMA_FILE):
            ema.load_state_dict(load_tensors(path / EMA_FILE))
    tensors, meta = load_tensors(path / OPTIMIZER_TENSORS), _read_json(path / OPTIMIZER_META, OPTIMIZER_KEYS)
    with _restoring(path / OPTIMIZER_TENSORS, path / OPTIMIZER_META):
        optimizer_from_tensors(optimizer, tensors, meta, param_names if param_names is not None else [])
    sched = _read_json(path / SCHEDULER_FILE, ("base_lrs", "last_epoch", "lr_lambdas"))
    with _restoring(path / SCHEDULER_FILE):
        _check_scheduler_state(sched, trainer_state["step"], len(optimizer.param_groups))
        scheduler.load_state_dict(sched)
    tensors, meta = load_tensors(path / RNG_TENSORS), _read_json(path / RNG_META, ("python",))
    with _restoring(path / RNG_TENSORS, path / RNG_META):
        restore_rng(tensors, meta, generator)
    return LoadedCheckpoint(path, trainer_state, training_config, sigma_config)


def non_tensor_only_files(directory: str | Path) -> list[Path]:
    """Files under `directory` that are not plain safetensors or JSON (pickles, torch.save zips, ...).

    A checkpoint written by this module has none; the check parses each file rather than trusting
    its name.
    """
    from safetensors import safe_open

    bad = []
    for f in sorted(Path(directory).rglob("*")):
        if not f.is_file():
            continue
        try:
            if f.suffix == ".safetensors":
                with safe_open(str(f), framework="pt") as handle:
                    list(handle.keys())
                continue
            if f.suffix == ".json":
                json.loads(f.read_text(encoding="utf-8"))
                continue
        except Exception:
            pass
        bad.append(f)
    return bad
