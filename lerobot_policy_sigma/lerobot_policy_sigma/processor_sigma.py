# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Pre- and post-processors of the sigma policy (LeRobot's processor pipeline).

Pre: rename (none by default), batch dimension, device, normalisation with the dataset's statistics
(`normalization_mapping`: states and actions MEAN_STD, images as they are, in [0, 1]).
Post: actions back to the dataset's units, then to the CPU.

The task text is not tokenised here: it reaches the policy as `batch["task"]` and the model tokenises
it (`SigmaModel.tokenize`), with the tokenizer that belongs to its backbone (byte-level for the
offline tiny backbone, which has no Hugging Face tokenizer a `TokenizerProcessorStep` could load; the
backbone's own for "hf" / "pi05" / "smolvla"). sigma-train, the closed-loop evaluation and the ROS
language node tokenise the same way, so there is one tokenisation path for every runtime.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from lerobot.processor import (
    AddBatchDimensionProcessorStep,
    DeviceProcessorStep,
    NormalizerProcessorStep,
    PolicyAction,
    PolicyProcessorPipeline,
    RenameObservationsProcessorStep,
    UnnormalizerProcessorStep,
)
from lerobot.processor.converters import (
    policy_action_to_transition,
    transition_to_policy_action,
)
from lerobot.utils.constants import (
    POLICY_POSTPROCESSOR_DEFAULT_NAME,
    POLICY_PREPROCESSOR_DEFAULT_NAME,
)

from .configuration_sigma import SigmaConfig


def make_sigma_pre_post_processors(
    config: SigmaConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]], PolicyProcessorPipeline[PolicyAction, PolicyAction]
]:
    """Return the sigma policy's (preprocessor, postprocessor); LeRobot's factory finds this by name."""
    features = {**config.input_features, **config.output_features}
    pre = [
        RenameObservationsProcessorStep(rename_map={}),
        AddBatchDimensionProcessorStep(),
        DeviceProcessorStep(device=config.device),
        NormalizerProcessorStep(features=features, norm_map=config.normalization_mapping, stats=dataset_stats),
    ]
    post = [
        UnnormalizerProcessorStep(features=config.output_features, norm_map=config.normalization_mapping,
                                  stats=dataset_stats),
        DeviceProcessorStep(device="cpu"),
    ]
    return (
        PolicyProcessorPipeline[dict[str, Any], dict[str, Any]](steps=pre, name=POLICY_PREPROCESSOR_DEFAULT_NAME),
        PolicyProcessorPipeline[PolicyAction, PolicyAction](
            steps=post, name=POLICY_POSTPROCESSOR_DEFAULT_NAME,
            to_transition=policy_action_to_transition, to_output=transition_to_policy_action,
        ),
    )


def check_saved_processors(directory: str | Path) -> None:
    """Check that the files the processors saved in `directory` reference (their statistics) are there.

    FileNotFoundError naming the missing file (LeRobot would take the directory for a Hub repo id and report that);
    ValueError for a processor json that is not JSON. Processors not saved there are not checked.
    """
    directory = Path(directory)
    for name in (POLICY_PREPROCESSOR_DEFAULT_NAME, POLICY_POSTPROCESSOR_DEFAULT_NAME):
        config = directory / f"{name}.json"
        if not config.is_file():
            continue
        try:
            steps = json.loads(config.read_text()).get("steps", [])
        except (ValueError, AttributeError) as err:
            raise ValueError(f"{config} is not a saved processor pipeline ({err})") from None
        for state_file in (step.get("state_file") for step in steps if isinstance(step, dict)):
            if state_file and not (directory / state_file).is_file():
                raise FileNotFoundError(f"{directory / state_file} is missing ({config.name} references it)")
