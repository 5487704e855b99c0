# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""LoRA on the Sigma backbone with peft (paper 4.2: r = 16 with dropout on q/k/v/o projections).

The adapters are injected into the backbone's decoder only (`model.language.backbone.decoder`;
for a VLA its VLM's language model), so Sigma's own attention layers (nn.MultiheadAttention,
out_proj) are never touched. Every other backbone weight is frozen, a VLA's image encoder
included; the non-backbone Sigma parameters (vision workspace, language heads, action
workspace: the "telepathy heads") stay trainable unless the run says otherwise.

Optional 4-bit (bitsandbytes NF4) needs CUDA; on a CPU-only machine
`sigma_model.backbones.quantization.require_4bit` raises a clear RuntimeError before anything is loaded.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

# peft imports bitsandbytes, whose CPU backend warns on every import that an optional 4-bit CPU
# kernel package is missing; 4-bit runs on CUDA only here, so that warning is noise.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

BACKBONE_PREFIX = "language.backbone."
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_NAME = "default"


def backbone_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of backbone weights.

    The language backbone and every module with external weights (a VLA's image encoder).
    """
    from ..checkpoint import external_prefixes

    return (BACKBONE_PREFIX,) + external_prefixes(model)


def backbone_decoder(model: nn.Module) -> nn.Module:
    """Return the transformer decoder inside the Sigma backbone (where q/k/v/o projections live)."""
    language = getattr(model, "language", None)
    if language is None:
        raise RuntimeError("LoRA needs a SigmaModel with the language workspace (it holds the backbone)")
    backbone = language.backbone
    return getattr(backbone, "decoder", backbone)


def make_lora_config(r: int = 16, alpha: int = 32, dropout: float = 0.05,
                     target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")):
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules), bias="none")


def apply_lora(model: nn.Module, r: int = 16, alpha: int = 32, dropout: float = 0.05,
               target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")):
    """Inject LoRA adapters into the backbone decoder and freeze every other backbone weight.

    Returns the peft LoraConfig. Raises ValueError when no module of the decoder matches.
    """
    from peft import inject_adapter_in_model

    decoder = backbone_decoder(model)
    names = {name.rsplit(".", 1)[-1] for name, m in decoder.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in target_modules if t not in names]
    if missing:
        raise ValueError(
            f"the backbone has no linear layers named {missing} (LoRA targets); it has {sorted(names)[:20]}"
        )
    config = make_lora_config(r, alpha, dropout, target_modules)
    inject_adapter_in_model(config, decoder, adapter_name=ADAPTER_NAME)
    freeze_backbone(model, keep_lora=True)
    return config


def prepare_finetuning(model: nn.Module, config):
    """Make the parameters a `FinetuneConfig` names trainable.

    LoRA adapters on the backbone (or a frozen backbone without them) and the non-backbone heads. Returns the peft
    LoraConfig or None.
    """
    lora_config = None
    if config.use_lora and has_lora(model):  # a VLA backbone's, applied at build from config.backbone_lora
        lora_config = make_lora_config(**model.config.backbone_lora)
        freeze_backbone(model, keep_lora=True)
    elif config.use_lora:
        lora_config = apply_lora(
            model, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules
        )
    else:
        freeze_backbone(model, keep_lora=False)
    set_heads_trainable(model, config.train_heads)
    return lora_config


def freeze_backbone(model: nn.Module, keep_lora: bool = True) -> None:
    """requires_grad = False on every backbone parameter except (keep_lora) the LoRA adapters."""
    prefixes = backbone_prefixes(model)
    for name, param in model.named_parameters():
        if name.startswith(prefixes):
            param.requires_grad_(keep_lora and is_lora_name(name))


def set_heads_trainable(model: nn.Module, trainable: bool) -> None:
    prefixes = backbone_prefixes(model)
    for name, param in model.named_parameters():
        if not name.startswith(prefixes):
            param.requires_grad_(trainable)


def is_lora_name(name: str) -> bool:
    return ".lora_" in name


def has_lora(model: nn.Module) -> bool:
    return any(is_lora_name(n) for n, _ in model.named_parameters())


def lora_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if is_lora_name(n))


def expected_lora_parameter_count(model_before_lora: nn.Module, r: int,
                                  target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")) -> int:
    """Sum over targeted nn.Linear layers of r * (in_features + out_features) (A is r x in, B is out x r)."""
    total = 0
    for name, module in backbone_decoder(model_before_lora).named_modules():
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in target_modules:
            total += r * (module.in_features + module.out_features)
    return total


def trainable_summary(model: nn.Module) -> dict[str, int]:
    """Trainable / total parameter counts, split into LoRA, other backbone, and heads."""
    out = {"total": 0, "trainable": 0, "lora": 0, "backbone_trainable": 0, "heads_trainable": 0}
    prefixes = backbone_prefixes(model)
    for name, p in model.named_parameters():
        out["total"] += p.numel()
        if not p.requires_grad:
            continue
        out["trainable"] += p.numel()
        if is_lora_name(name):
            out["lora"] += p.numel()
        elif name.startswith(prefixes):
            out["backbone_trainable"] += p.numel()
        else:
            out["heads_trainable"] += p.numel()
    return out


# ------------------------------------------------------------ state dicts
def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapter weights in peft's file layout (keys relative to the decoder, no adapter name)."""
    from peft import get_peft_model_state_dict

    return {
        k: v.detach().cpu().contiguous()
        for k, v in get_peft_model_state_dict(backbone_decoder(model), adapter_name=ADAPTER_NAME).items()
    }


def load_lora_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(backbone_decoder(model), state, adapter_name=ADAPTER_NAME)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [k for k in (getattr(result, "missing_keys", []) or []) if is_lora_name(k)]
    if unexpected or missing:
        raise ValueError(f"LoRA adapter does not match the model: missing={missing[:5]} unexpected={unexpected[:5]}")


def save_adapter(model: nn.Module, lora_config, directory: str | Path) -> Path:
    """adapter_model.safetensors + adapter_config.json (peft's layout; tensor-only)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (ADAPTER_WEIGHTS + ".tmp")
    save_file(lora_state_dict(model), str(tmp), metadata={"format": "pt"})
    os.replace(tmp, directory / ADAPTER_WEIGHTS)
    cfg = lora_config.to_dict()
    cfg = json.loads(json.dumps(cfg, default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else str(o)))
    tmp = directory / (ADAPTER_CONFIG + ".tmp")
    tmp.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, directory / ADAPTER_CONFIG)
    return directory


def load_adapter(model: nn.Module, directory: str | Path) -> None:
    from safetensors.torch import load_file

    path = Path(directory) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no LoRA adapter at {path}")
    load_lora_state_dict(model, load_file(str(path)))


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return the model's state dict with every LoRA delta merged into its base weight.

    The peft wrapper keys are removed.

    Exactly the key set of a plain SigmaModel (for save_checkpoint).
    """
    from peft.tuners.lora import LoraLayer
    from peft.utils.integrations import dequantize_module_weight

    merged: dict[str, torch.Tensor] = {}
    lora_modules = {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    for key, value in model.state_dict().items():
        if is_lora_name(key):
            continue
        merged[key.replace(".base_layer.", ".")] = value.detach()
    for name, module in lora_modules.items():
        if ADAPTER_NAME not in module.lora_A:
            continue
        base = module.get_base_layer()
        weight = dequantize_module_weight(base).detach().float()
        delta = module.get_delta_weight(ADAPTER_NAME).detach().float()
        merged[f"{name}.weight"] = (weight + delta).to(
            torch.float32 if base.weight.dtype == torch.uint8 else base.weight.dtype
        )
    return merged
