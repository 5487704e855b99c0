# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""A LeRobot-trained sigma policy as a plain Sigma checkpoint (`sigma-from-lerobot`).

The preprocessor's normalisation of states and actions is folded into the checkpoint's SigmaConfig
(state_mean/state_std, action_mean/action_std: the model's own standardisation then does the same
arithmetic) and LoRA is merged into the backbone, so the result runs wherever Sigma checkpoints
run: the ROS 2 graph (`sigma-graph --checkpoint=DIR`), `sigma-closed-loop`, `sigma-eval`, and
`sigma-train --train.init_checkpoint=DIR`.

    sigma-from-lerobot --pretrained=outputs/train/sigma/checkpoints/last/pretrained_model \
        --output=checkpoints/my_sigma

(ExportConfig's fields as ``--field=value``: draccus, :mod:`sigma_model.cli`.)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from draccus.utils import ParsingError
from lerobot.configs.types import FeatureType, NormalizationMode
from lerobot.processor import NormalizerProcessorStep, PolicyProcessorPipeline
from lerobot.utils.constants import ACTION, OBS_STATE, POLICY_PREPROCESSOR_DEFAULT_NAME
from sigma_model.cli import fail, parse_cli
from sigma_model.config_io import read_json_object
from sigma_model.configuration_sigma import SigmaConfig as SigmaModelConfig
from sigma_model.training.checkpointing import export_merged_model


def folded_statistics(normalizer: NormalizerProcessorStep) -> dict[str, tuple[float, ...]]:
    """Return the normaliser's state/action transforms as SigmaConfig statistics.

    MEAN_STD is (x - mean) / (std + eps); MIN_MAX, 2 (x - min) / (max - min) - 1, is (x - centre) / half-range.
    """
    stats, out = normalizer.state_dict(), {}
    for key, prefix, kind in ((OBS_STATE, "state", FeatureType.STATE), (ACTION, "action", FeatureType.ACTION)):
        mode = normalizer.norm_map.get(kind, NormalizationMode.IDENTITY)
        if mode is NormalizationMode.IDENTITY:
            continue
        if mode is NormalizationMode.MEAN_STD:
            mean, scale = stats[f"{key}.mean"], stats[f"{key}.std"] + normalizer.eps
        elif mode is NormalizationMode.MIN_MAX:
            low, high = stats[f"{key}.min"], stats[f"{key}.max"]
            half = (high - low).masked_fill(high == low, normalizer.eps) / 2
            mean, scale = low + half, half
        else:
            raise ValueError(f"sigma-from-lerobot: {mode.value} normalisation of {key} has no Sigma equivalent "
                             "(IDENTITY, MEAN_STD and MIN_MAX do)")
        out[f"{prefix}_mean"], out[f"{prefix}_std"] = tuple(mean.tolist()), tuple(scale.tolist())
    return out


def export_sigma_checkpoint(policy, preprocessor: PolicyProcessorPipeline, directory: str | Path) -> Path:
    """Write `policy` (a SigmaPolicy) with `preprocessor`'s normalisation as a Sigma checkpoint."""
    normalizers = [s for s in preprocessor.steps if isinstance(s, NormalizerProcessorStep)]
    if len(normalizers) != 1:
        raise ValueError(
            f"sigma-from-lerobot: expected one normaliser step in the preprocessor, found {len(normalizers)}"
        )
    model = policy.model
    config = SigmaModelConfig.from_dict({**model.config.to_dict(), **folded_statistics(normalizers[0])})
    return export_merged_model(model, directory, config=config)


PROG = "sigma-from-lerobot"


def check_lerobot_config(directory: Path) -> None:
    """Raise a one-line error unless ``directory`` holds a LeRobot policy's config.json (with its policy ``type``).

    A plain Sigma checkpoint is named as one: it needs no conversion.
    """
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a saved LeRobot policy (no config.json)")
    if "type" in read_json_object(path):
        return
    try:
        SigmaModelConfig.load(path)
    except ValueError:
        raise ValueError(f"{directory} is not a saved LeRobot policy (its config.json names no policy type)") from None
    raise ValueError(f"{directory} is a plain Sigma checkpoint, not a saved LeRobot policy: it needs no conversion, "
                     f"use it directly (e.g. sigma-closed-loop --checkpoint={directory})")


@dataclass
class ExportConfig:
    """sigma-from-lerobot's command line."""

    pretrained: str | None = None  # a sigma policy saved by lerobot-train (.../pretrained_model); required
    output: str | None = None  # directory for the Sigma checkpoint (must not exist); required

    def __post_init__(self) -> None:
        if not (self.pretrained and self.output):
            raise ValueError("--pretrained and --output are required")


def main(argv: list[str] | None = None) -> int:
    cfg = parse_cli(ExportConfig, argv, PROG, description=__doc__)
    out = Path(cfg.output)
    if out.exists():
        fail(PROG, f"{out} exists; choose a new directory")
    from lerobot.configs.policies import PreTrainedConfig

    from .configuration_sigma import SigmaConfig
    from .modeling_sigma import SigmaPolicy

    try:
        check_lerobot_config(Path(cfg.pretrained))
        try:
            config = PreTrainedConfig.from_pretrained(cfg.pretrained)
        except ParsingError as err:  # an unknown policy type, fields it does not have
            raise ValueError(f"{cfg.pretrained}/config.json is not a LeRobot policy config: {err}") from err
        if not isinstance(config, SigmaConfig):
            raise ValueError(f"{cfg.pretrained} holds a {config.type!r} policy, not sigma")
        policy = SigmaPolicy.from_pretrained(cfg.pretrained, config=config)
        preprocessor = PolicyProcessorPipeline.from_pretrained(
            cfg.pretrained, config_filename=f"{POLICY_PREPROCESSOR_DEFAULT_NAME}.json")
        export_sigma_checkpoint(policy, preprocessor, out)
    except (OSError, ValueError) as err:
        fail(PROG, err)
    print(f"{PROG}: wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
