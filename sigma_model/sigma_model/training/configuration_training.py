"""Typed, validated configuration of a Sigma fine-tuning run (saved with every training checkpoint).

Every hyper-parameter of paper section 4.2 lives here: LoRA (r = 16 with dropout on the q/k/v/o
projections of the backbone, optional 4-bit), the optimiser and schedule, mixed precision and
gradient accumulation, the TRAF weights (alpha_a/b/c, rho, lambda_hard), the TSAC terms
(beta_mi, tau_0, lambda_collapse, eta_var) and the curriculum.

The curriculum defaults reproduce the w_sem / w_int / w_tau columns of the paper's Table 1 exactly
(to the printed three decimals): w_sem 0.1 -> 1.0, w_int 0.1 -> 0.8, w_tau 0.0 -> 0.03, linear over
82 optimiser steps, then constant. With the default batch of 10 and rho = 0.3 the hard subset is
k = ceil(0.3 * 10) = 3 samples, i.e. Table 1's hard_ratio = 0.300.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "linear", "constant")
MIXED_PRECISION = ("auto", "no", "bf16")
DEVICES = ("auto", "cpu", "cuda")
TIME_LOSSES = ("cos", "mse")
MEMORY_MODES = ("two_pass", "zeros")


@dataclass
class TrainingConfig:
    """One fine-tuning run. Field groups: data, LoRA, optimisation, TRAF, TSAC, curriculum, run."""

    # ---------------------------------------------------------------- data
    shards_dir: str | None = None  # directory of sigma_model.data shards (None: synthetic data)
    synthetic_samples: int = 0  # > 0: train on this many deterministic synthetic windows instead
    batch_size: int = 10
    shuffle: bool = True
    drop_last: bool = True
    cache_all_shards: bool = True  # keep every shard in memory (shuffled reads would reload shards)

    # ------------------------------------------------------- model and LoRA
    init_checkpoint: str | None = None  # sigma_model checkpoint dir to start from (else fresh init)
    use_lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    load_in_4bit: bool = False  # bitsandbytes NF4 backbone (CUDA only)
    train_heads: bool = True  # train every non-backbone Sigma parameter (the "telepathy heads")

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

    # ------------------------------------------------------------------- run
    output_dir: str = "runs/sigma"
    seed: int = 0
    telepathy: bool = True
    log_every: int = 1
    save_every: int = 50  # optimiser steps between checkpoints (0: only at the end)
    keep_checkpoints: int = 3  # newest checkpoints kept (0: keep all)
    tensorboard: bool = False
    save_merged_model: bool = True  # write the deployable merged model/ directory in checkpoints

    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def positive_int(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0 or (v == 0 and not allow_zero):
                kind = "non-negative" if allow_zero else "positive"
                raise ValueError(f"TrainingConfig.{name} must be a {kind} int, got {v!r}")

        def number(name: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"TrainingConfig.{name} must be a number, got {v!r}")
            v = float(v)
            if v != v or v in (float("inf"), float("-inf")):
                raise ValueError(f"TrainingConfig.{name} must be finite, got {v}")
            if lo is not None and (v < lo or (lo_open and v == lo)):
                raise ValueError(f"TrainingConfig.{name} must be {'>' if lo_open else '>='} {lo}, got {v}")
            if hi is not None and v > hi:
                raise ValueError(f"TrainingConfig.{name} must be <= {hi}, got {v}")
            setattr(self, name, v)

        def choice(name: str, options: tuple[str, ...]) -> None:
            if getattr(self, name) not in options:
                raise ValueError(f"TrainingConfig.{name} must be one of {options}, got {getattr(self, name)!r}")

        for name in ("batch_size", "lora_r", "lora_alpha", "max_steps", "grad_accum_steps", "log_every"):
            positive_int(name)
        for name in ("synthetic_samples", "warmup_steps", "curriculum_steps", "save_every", "keep_checkpoints", "seed",
                     "num_threads"):
            positive_int(name, allow_zero=True)
        choice("optimizer", OPTIMIZERS)
        choice("scheduler", SCHEDULERS)
        choice("mixed_precision", MIXED_PRECISION)
        choice("device", DEVICES)
        choice("time_loss", TIME_LOSSES)
        choice("memory_mode", MEMORY_MODES)
        number("learning_rate", 0.0, lo_open=True)
        number("lora_dropout", 0.0, 0.999)
        number("min_lr_ratio", 0.0, 1.0)
        number("rho_hard", 0.0, 1.0, lo_open=True)
        number("nce_temperature", 0.0, lo_open=True)
        number("momentum", 0.0, 1.0)
        number("adam_eps", 0.0, lo_open=True)
        number("ema_decay", 0.0)
        if self.ema_decay >= 1.0:
            raise ValueError(f"TrainingConfig.ema_decay must be < 1 (0 disables it), got {self.ema_decay}")
        for name in ("weight_decay", "alpha_vec", "alpha_chunk", "alpha_traj", "lambda_hard", "flow_weight", "aux_weight",
                     "beta_mi", "tau_l2_weight", "tau_0", "lambda_collapse", "eta_var",
                     "w_sem_start", "w_sem_target", "w_int_start", "w_int_target", "w_tau_start", "w_tau_target"):
            number(name, 0.0)
        number("max_grad_norm")
        if self.alpha_vec + self.alpha_chunk + self.alpha_traj <= 0:
            raise ValueError("at least one of alpha_vec, alpha_chunk, alpha_traj must be > 0")
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        if isinstance(self.lora_target_modules, str):
            self.lora_target_modules = (self.lora_target_modules,)
        self.lora_target_modules = tuple(self.lora_target_modules)
        if not self.lora_target_modules or not all(isinstance(m, str) and m for m in self.lora_target_modules):
            raise ValueError(f"lora_target_modules must be non-empty module names, got {self.lora_target_modules}")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must not exceed max_steps ({self.max_steps})")
        if self.load_in_4bit and not self.use_lora:
            raise ValueError("load_in_4bit needs use_lora=True (a quantised backbone can only be tuned through adapters)")
        if not self.use_lora and not self.train_heads:
            raise ValueError("nothing to train: use_lora and train_heads are both False")
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise ValueError("output_dir must be a non-empty path")

    # --------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainingConfig fields: {unknown}")
        return cls(**data)

    def replace(self, **changes: Any) -> "TrainingConfig":
        """A validated copy with some fields changed."""
        return self.from_dict({**self.to_dict(), **changes})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TrainingConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
