# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Typed, validated configuration of a Sigma fine-tuning run (saved with every training checkpoint).

Every hyper-parameter of paper section 4.2 lives here: LoRA (r = 16 with dropout on the q/k/v/o
projections of the backbone, optional 4-bit), the optimiser and schedule, mixed precision and
gradient accumulation, the TRAF weights (alpha_a/b/c, rho, lambda_hard), the TSAC terms
(beta_mi, tau_0, lambda_collapse, eta_var) and the curriculum.

The curriculum defaults reproduce the w_sem / w_int / w_tau columns of the paper's Table 1 exactly
(to the printed three decimals): w_sem 0.1 -> 1.0, w_int 0.1 -> 0.8, w_tau 0.0 -> 0.03, linear over
82 optimiser steps, then constant. With the default batch of 10 and rho = 0.3 the hard subset is
k = ceil(0.3 * 10) = 3 samples, i.e. Table 1's hard_ratio = 0.300.

`TrainingConfig` (sigma-train) is a `FinetuneConfig` (what trains) and a `LossConfig` (the
objective); the LeRobot policy (`lerobot_policy_sigma`) holds the same two for `lerobot-train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config_io import DictConfig

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "linear", "constant")
MIXED_PRECISION = ("auto", "no", "bf16")
DEVICES = ("auto", "cpu", "cuda")
TIME_LOSSES = ("cos", "mse")
MEMORY_MODES = ("two_pass", "zeros")


def _check_int(config, name: str, allow_zero: bool = False) -> None:
    v = getattr(config, name)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0 or (v == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{type(config).__name__}.{name} must be a {kind} int, got {v!r}")


def _check_number(config, name: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> None:
    """Return a finite number within [lo, hi] (lo excluded when lo_open), stored as float."""
    v = getattr(config, name)
    where = f"{type(config).__name__}.{name}"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where} must be a number, got {v!r}")
    v = float(v)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{where} must be finite, got {v}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{where} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{where} must be <= {hi}, got {v}")
    setattr(config, name, v)


def _check_choice(config, name: str, options: tuple[str, ...]) -> None:
    if getattr(config, name) not in options:
        raise ValueError(f"{type(config).__name__}.{name} must be one of {options}, got {getattr(config, name)!r}")


@dataclass
class FinetuneConfig:
    """What trains: LoRA adapters on the backbone (peft) and/or every non-backbone Sigma parameter."""

    use_lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    train_heads: bool = True  # train every non-backbone Sigma parameter (the "telepathy heads")

    def __post_init__(self) -> None:
        _check_int(self, "lora_r")
        _check_int(self, "lora_alpha")
        _check_number(self, "lora_dropout", 0.0, 0.999)
        if isinstance(self.lora_target_modules, str):
            self.lora_target_modules = (self.lora_target_modules,)
        self.lora_target_modules = tuple(self.lora_target_modules)
        if not self.lora_target_modules or not all(isinstance(m, str) and m for m in self.lora_target_modules):
            raise ValueError(f"lora_target_modules must be non-empty module names, got {self.lora_target_modules}")
        if not self.use_lora and not self.train_heads:
            raise ValueError("nothing to train: use_lora and train_heads are both False")


@dataclass
class LossConfig:
    """The objective of paper 4.2 (what `trainer.compute_losses` and `Curriculum` read).

    The TRAF weights, the TSAC terms, the curriculum, and whether the model runs with telepathy.
    """

    # ------------------------------------------------------------------ TRAF
    alpha_vec: float = 1.0  # alpha_a
    alpha_chunk: float = 1.0  # alpha_b
    alpha_traj: float = 1.0  # alpha_c
    rho_hard: float = 0.3  # proportion of the batch in the hard subset H (k = ceil(rho * B))
    lambda_hard: float = 1.0
    use_dataset_baseline: bool = True  # residual over base_action_* when the batch carries them
    flow_weight: float = 1.0  # weight of the DiT flow-matching loss (ActionOutput.trajectory_loss)
    aux_weight: float = 1.0  # weight of the auxiliary-head MSE when batches carry aux_target

    # ------------------------------------------------------------------ TSAC
    time_loss: str = "cos"  # L_time: "cos" = 1 - cos(z_pool, m_prev); "mse" = mean squared error
    beta_mi: float = 0.1
    nce_temperature: float = 0.1
    memory_mode: str = "two_pass"  # how m_prev is obtained (see trainer.py)
    use_previous_window: bool = True  # two_pass on the preceding window of the episode when known
    tau_l2_weight: float = 0.01  # the paper's fixed 0.01 ||tau||^2
    tau_0: float = 1.0  # minimum expected ||tau||_2 (collapse hinge)
    lambda_collapse: float = 0.1
    eta_var: float = 0.1

    # ------------------------------------------------------------ curriculum
    w_sem_start: float = 0.1
    w_sem_target: float = 1.0
    w_int_start: float = 0.1
    w_int_target: float = 0.8
    w_tau_start: float = 0.0
    w_tau_target: float = 0.03
    curriculum_steps: int = 82

    telepathy: bool = True
    # chance that a training batch runs with telepathy off (tau = 0 everywhere), drawn from the trainer's generator;
    # trains the tau = 0 path as a policy of its own beside the telepathy one (0: never; needs telepathy = true)
    telepathy_dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_int(self, "curriculum_steps", allow_zero=True)
        _check_choice(self, "time_loss", TIME_LOSSES)
        _check_choice(self, "memory_mode", MEMORY_MODES)
        _check_number(self, "rho_hard", 0.0, 1.0, lo_open=True)
        _check_number(self, "nce_temperature", 0.0, lo_open=True)
        _check_number(self, "telepathy_dropout", 0.0, 1.0)
        if self.telepathy_dropout > 0 and not self.telepathy:
            raise ValueError("telepathy_dropout needs telepathy = true (with telepathy off every batch is at tau = 0)")
        for name in ("alpha_vec", "alpha_chunk", "alpha_traj", "lambda_hard", "flow_weight", "aux_weight",
                     "beta_mi", "tau_l2_weight", "tau_0", "lambda_collapse", "eta_var",
                     "w_sem_start", "w_sem_target", "w_int_start", "w_int_target", "w_tau_start", "w_tau_target"):
            _check_number(self, name, 0.0)
        if self.alpha_vec + self.alpha_chunk + self.alpha_traj <= 0:
            raise ValueError("at least one of alpha_vec, alpha_chunk, alpha_traj must be > 0")


@dataclass
class TrainingConfig(DictConfig, FinetuneConfig, LossConfig):
    """One fine-tuning run.

    The LoRA/heads choice (FinetuneConfig) and the objective (LossConfig), plus data, model start, optimisation and run
    settings.
    """

    # ---------------------------------------------------------------- data
    shards_dir: str | None = None  # directory of sigma_model.data shards (None: synthetic data)
    synthetic_samples: int = 0  # > 0: train on this many deterministic synthetic windows instead
    batch_size: int = 10
    shuffle: bool = True
    drop_last: bool = True
    cache_all_shards: bool = True  # keep every shard in memory (shuffled reads would reload shards)
    num_workers: int = 0  # loader processes that prepare the next batches while the model trains (0: in-process)

    # ------------------------------------------------------------ model start
    init_checkpoint: str | None = None  # sigma_model checkpoint dir to start from (else fresh init)
    load_in_4bit: bool = False  # bitsandbytes NF4 backbone (CUDA only)

    # --------------------------------------------------------- optimisation
    optimizer: str = "adamw"
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    momentum: float = 0.9  # sgd only
    scheduler: str = "cosine"
    warmup_steps: int = 10
    min_lr_ratio: float = 0.0  # cosine/linear decay floor as a fraction of learning_rate
    max_steps: int = 200  # optimiser steps
    grad_accum_steps: int = 1
    max_grad_norm: float = 1.0  # <= 0 disables clipping
    ema_decay: float = 0.0  # > 0: checkpoints export an exponential moving average of the weights (e.g. 0.999)
    mixed_precision: str = "auto"  # auto: bf16 autocast on CUDA, off on CPU
    device: str = "auto"
    num_threads: int = 0  # torch intra-op CPU threads (0: leave torch's default)

    # ------------------------------------------------------------------- run
    output_dir: str = "runs/sigma"
    seed: int = 0
    log_every: int = 1
    save_every: int = 50  # optimiser steps between checkpoints (0: only at the end)
    keep_checkpoints: int = 3  # newest checkpoints kept (0: keep all)
    tensorboard: bool = False
    save_merged_model: bool = True  # write the deployable merged model/ directory in checkpoints

    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        FinetuneConfig.__post_init__(self)
        LossConfig.__post_init__(self)
        for name in ("batch_size", "max_steps", "grad_accum_steps", "log_every"):
            _check_int(self, name)
        for name in ("synthetic_samples", "warmup_steps", "save_every", "keep_checkpoints", "seed", "num_threads",
                     "num_workers"):
            _check_int(self, name, allow_zero=True)
        _check_choice(self, "optimizer", OPTIMIZERS)
        _check_choice(self, "scheduler", SCHEDULERS)
        _check_choice(self, "mixed_precision", MIXED_PRECISION)
        _check_choice(self, "device", DEVICES)
        _check_number(self, "learning_rate", 0.0, lo_open=True)
        _check_number(self, "min_lr_ratio", 0.0, 1.0)
        _check_number(self, "momentum", 0.0, 1.0)
        _check_number(self, "adam_eps", 0.0, lo_open=True)
        _check_number(self, "ema_decay", 0.0)
        if self.ema_decay >= 1.0:
            raise ValueError(f"TrainingConfig.ema_decay must be < 1 (0 disables it), got {self.ema_decay}")
        _check_number(self, "weight_decay", 0.0)
        _check_number(self, "max_grad_norm")
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must not exceed max_steps ({self.max_steps})")
        if self.load_in_4bit and not self.use_lora:
            raise ValueError(
                "load_in_4bit needs use_lora=True (a quantised backbone can only be tuned through adapters)"
            )
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise ValueError("output_dir must be a non-empty path")
