# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The "sigma" policy type of LeRobot: `SigmaConfig`, and sigma-train's learning-rate schedule.

`lerobot-train --policy.type=sigma` parses it from the command line. It nests the settings sigma-train
uses, so each is defined once: `--policy.model.*` (sigma_model.SigmaConfig: the architecture),
`--policy.loss.*` (LossConfig: TRAF, TSAC, curriculum) and `--policy.finetune.*` (FinetuneConfig:
LoRA and the heads). The LeRobot side: features, normalisation (the processors do it, with the
dataset's statistics), the optimiser and schedule presets, and the dataset windows:

    observation_delta_indices  [-1, 0] with the two-pass memory on the preceding frame (the window
                               before it in the shards), else None (the current frame only)
    action_delta_indices       0 .. traj_len - 1: the shard window's actions (vector = step 0,
                               chunk = steps 0 .. chunk_len - 1, trajectory = all of them)
    drop_n_last_frames         traj_len - 1: lerobot-train samples only frames whose whole window
                               lies in the episode, as sigma-preprocess's windows do
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import NormalizationMode
from lerobot.optim.optimizers import AdamWConfig
from lerobot.optim.schedulers import LRSchedulerConfig
from lerobot.utils.constants import OBS_IMAGES
from sigma_model.configuration_sigma import SigmaConfig as SigmaModelConfig
from sigma_model.training.configuration_training import (
    SCHEDULERS,
    FinetuneConfig,
    LossConfig,
    TrainingConfig,
)

_RUN = TrainingConfig()  # sigma-train's optimiser and schedule defaults
DEFAULT_IMAGE_KEY = f"{OBS_IMAGES}.front"


@LRSchedulerConfig.register_subclass("sigma_warmup_decay")
@dataclass
class SigmaSchedulerConfig(LRSchedulerConfig):
    """sigma-train's schedule: linear warmup, then cosine / linear decay (or constant) to min_lr_ratio."""

    num_warmup_steps: int = _RUN.warmup_steps
    decay: str = _RUN.scheduler
    min_lr_ratio: float = _RUN.min_lr_ratio

    def __post_init__(self) -> None:
        if self.decay not in SCHEDULERS:
            raise ValueError(f"scheduler decay must be one of {SCHEDULERS}, got {self.decay!r}")

    def build(self, optimizer, num_training_steps: int):
        from sigma_model.training.trainer import lr_lambda_factory
        from torch.optim.lr_scheduler import LambdaLR

        return LambdaLR(
            optimizer, lr_lambda_factory(self.num_warmup_steps, num_training_steps, self.min_lr_ratio, self.decay)
        )


@PreTrainedConfig.register_subclass("sigma")
@dataclass
class SigmaConfig(PreTrainedConfig):
    """Sigma as a LeRobot policy (see the module docstring)."""

    model: SigmaModelConfig = field(default_factory=SigmaModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    # the camera the model sees (default: observation.images.front when present, else the first camera)
    image_key: str | None = None

    # Sigma reads images in [0, 1]; states and actions are standardised by the processors
    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.MEAN_STD,
        }
    )

    # training presets (sigma-train's defaults)
    optimizer_lr: float = _RUN.learning_rate
    optimizer_betas: tuple[float, float] = _RUN.adam_betas
    optimizer_eps: float = _RUN.adam_eps
    optimizer_weight_decay: float = _RUN.weight_decay
    optimizer_grad_clip_norm: float = _RUN.max_grad_norm
    scheduler_warmup_steps: int = _RUN.warmup_steps
    scheduler_decay: str = _RUN.scheduler
    scheduler_min_lr_ratio: float = _RUN.min_lr_ratio

    def __post_init__(self) -> None:
        super().__post_init__()
        m = self.model
        if m.controller_gain != 1.0:
            raise ValueError(
                "sigma policy: model.controller_gain must be 1 (the robot's own controller tracks the targets)"
            )
        if m.env_state_dim:
            raise ValueError("sigma policy: model.env_state_dim > 0 (privileged simulator state) is not supported")
        if m.chunk_len > m.traj_len:
            raise ValueError(f"sigma policy: model.chunk_len ({m.chunk_len}) must not exceed model.traj_len "
                             f"({m.traj_len}): both are read from one window of traj_len actions")
        normalised = [k for k in ("STATE", "ACTION") if self.normalization_mapping.get(k, NormalizationMode.IDENTITY)
                      is not NormalizationMode.IDENTITY]
        if m.state_mean is not None and normalised:
            raise ValueError(
                f"sigma policy: model.state_mean/action_mean are set and the processors normalise {normalised} "
                "as well; set normalization_mapping to IDENTITY for them or drop the model's statistics"
            )
        if self.scheduler_decay not in SCHEDULERS:
            raise ValueError(f"sigma policy: scheduler_decay must be one of {SCHEDULERS}, got {self.scheduler_decay!r}")

    # ------------------------------------------------------------- LeRobot's names
    @property
    def chunk_size(self) -> int:
        return self.model.traj_len

    @property
    def n_action_steps(self) -> int:
        return self.model.n_action_steps

    @property
    def drop_n_last_frames(self) -> int:
        return self.model.traj_len - 1

    @property
    def uses_previous_frame(self) -> bool:
        return self.loss.memory_mode == "two_pass" and self.loss.use_previous_window

    @property
    def observation_delta_indices(self) -> list[int] | None:
        return [-1, 0] if self.uses_previous_frame else None

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.model.traj_len))

    @property
    def reward_delta_indices(self) -> None:
        return None

    @property
    def camera_key(self) -> str:
        """The image feature the model sees."""
        if self.image_key is not None:
            return self.image_key
        cameras = list(self.image_features)
        return DEFAULT_IMAGE_KEY if DEFAULT_IMAGE_KEY in cameras else cameras[0]

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(lr=self.optimizer_lr, betas=self.optimizer_betas, eps=self.optimizer_eps,
                           weight_decay=self.optimizer_weight_decay, grad_clip_norm=self.optimizer_grad_clip_norm)

    def get_scheduler_preset(self) -> SigmaSchedulerConfig:
        return SigmaSchedulerConfig(num_warmup_steps=self.scheduler_warmup_steps, decay=self.scheduler_decay,
                                    min_lr_ratio=self.scheduler_min_lr_ratio)

    def validate_features(self) -> None:
        """Needs a camera, observation.state and action; the model's state/action sizes follow them."""
        if not self.image_features:
            raise ValueError("sigma policy needs a camera image among the input features (observation.images.*)")
        if self.image_key is not None and self.image_key not in self.image_features:
            raise ValueError(f"sigma policy: image_key {self.image_key!r} is not an input feature; cameras: "
                             f"{sorted(self.image_features)}")
        state, action = self.robot_state_feature, self.action_feature
        if state is None or action is None:
            raise ValueError("sigma policy needs observation.state among the inputs and action among the outputs")
        channels = self.image_features[self.camera_key].shape[0]
        if channels != self.model.image_channels:
            raise ValueError(f"sigma policy: camera {self.camera_key} has {channels} channels, "
                             f"model.image_channels is {self.model.image_channels}")
        if state.shape[0] != action.shape[0]:
            raise ValueError(f"sigma policy: observation.state {tuple(state.shape)} and action {tuple(action.shape)} "
                             "differ in size (Sigma's controller tracks joint-position targets)")
        dims = {"state_dim": state.shape[0], "action_dim": action.shape[0]}
        if any(getattr(self.model, k) != v for k, v in dims.items()):
            self.model = dataclasses.replace(self.model, **dims)

