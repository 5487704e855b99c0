# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The Sigma fine-tuning loop (paper 4.2): LoRA + TRAF + TSAC with a curriculum.

One optimiser step = `grad_accum_steps` micro-batches of `batch_size` windows. For each batch:

1. m_prev and tau_prev (memory_mode = "two_pass", the default). The shards hold single windows,
   not recurrent sequences, so the previous moment's memory is produced by a first pass through
   the vision and language stages without telepathy and with zero memory (the paper's "visual
   forward pass without telepathy is executed first"), under no_grad. It runs on the preceding
   window of the same episode when the data says which one that is (shards carry episode_index
   and frame_index; PreviousWindowDataset adds prev_vision_inputs / prev_robot_state), and on the
   batch's own observation for an episode's first window or data without that structure (then
   m_prev is "the model's memory from a previous forward on the same batch"). The logged
   `prev_window` column is the fraction of the batch that had a real preceding window. The first
   pass's tau is fed back to the vision stage and its memory is m_prev, both detached (targets,
   not gradient paths).
   memory_mode = "zeros" skips the first pass (m_prev = 0, tau_prev = 0); L_time then compares
   against the zero vector (1 - cos = 1, constant), so only use it for ablations.
2. The full Sigma step with the ground-truth trajectory as the DiT flow-matching target; with telepathy off
   for the whole batch (tau = 0 everywhere) at the chance `telepathy_dropout` (training mode only).
3. TRAF (residual over dataset baselines when present, else over the model's own tau = 0
   baseline) + flow loss + curriculum-weighted TSAC terms (see losses.py).

Weight averaging: with ema_decay > 0 the trainer keeps an exponential moving average of the
trainable weights (ema.py); checkpoints export it as their deployable model/.
Mixed precision: bf16 autocast on CUDA ("auto"), off on CPU unless mixed_precision = "bf16".
Reproducibility: parameters are seeded, the data order depends only on (seed, epoch), each item's
augmentation only on (seed, epoch, index) whichever loader worker draws it (batching.BatchStream), the
diffusion noise comes from a trainer-owned generator, and a checkpoint stores every RNG state and
the data position, so a resumed run produces bit-identical weights to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..checkpoint import load_checkpoint
from ..configuration_sigma import SigmaConfig
from ..modeling_sigma import SigmaModel
from . import losses as L
from .batching import (
    BatchStream,
    DataPosition,
    PreviousWindowDataset,
    SyntheticWindows,
    check_batch,
    observation_from_batch,
    targets_from_batch,
)
from .checkpointing import (
    INIT_HEADS_FILE, latest_checkpoint, load_training_checkpoint, prune_checkpoints, read_checkpoint_configs,
    save_init_heads, save_training_checkpoint,
)
from .configuration_training import TrainingConfig
from .curriculum import Curriculum
from .ema import WeightEMA
from ..backbones.quantization import require_4bit
from .lora import prepare_finetuning, trainable_summary
from .metrics import CSV_NAME, JSONL_NAME, MetricsLogger

log = logging.getLogger(__name__)

CHECKPOINT_SUBDIR = "checkpoints"
RUN_FILES = (CHECKPOINT_SUBDIR, INIT_HEADS_FILE, CSV_NAME, JSONL_NAME)  # what a fresh run replaces (overwrite)


# ------------------------------------------------------------------ setup
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA GPU is available")
    return torch.device(name)


def autocast_dtype(mixed_precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 when requested (or "auto" on CUDA); None = full fp32."""
    if mixed_precision == "bf16" or (mixed_precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def lr_lambda_factory(warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0,
                      kind: str = "cosine") -> Callable[[int], float]:
    """Linear warmup to the peak over warmup_steps.

    Then cosine / linear decay to min_lr_ratio at total_steps ("constant": no decay). sigma-train and the LeRobot
    policy's scheduler use it.
    """

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if kind == "cosine":
            return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - progress)

    return factor


def build_optimizer(params: list[torch.nn.Parameter], config: TrainingConfig) -> torch.optim.Optimizer:
    """Torch's default implementation choice.

    One kernel per op for all parameters (foreach) on a GPU, a loop over the parameters on the CPU.
    """
    if not params:
        raise ValueError("no trainable parameters (check use_lora / train_heads)")
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.learning_rate, betas=config.adam_betas, eps=config.adam_eps,
                                 weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate, betas=config.adam_betas, eps=config.adam_eps,
                                weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay)


def build_dataset(config: TrainingConfig, model_config: SigmaConfig):
    """Synthetic windows (synthetic_samples > 0) or the sigma_model.data shards in shards_dir."""
    if config.synthetic_samples > 0:
        return SyntheticWindows(model_config, config.synthetic_samples, seed=config.seed)
    if not config.shards_dir:
        raise ValueError("no training data: set shards_dir (sigma-preprocess output) or synthetic_samples > 0")
    shards = Path(config.shards_dir)
    if not shards.is_dir():
        raise FileNotFoundError(f"shards_dir {shards} does not exist (run sigma-preprocess first)")
    try:
        from ..data import ShardDataset
    except ImportError as err:
        raise RuntimeError(f"sigma_model.data.ShardDataset is not available: {err}") from err
    dataset = ShardDataset(shards)
    if config.cache_all_shards and hasattr(dataset, "cache_shards") and hasattr(dataset, "paths"):
        dataset.cache_shards = max(dataset.cache_shards, len(dataset.paths))
    return dataset


def build_model(config: TrainingConfig, model_config: SigmaConfig, load_init: bool = True) -> tuple[SigmaModel, Any]:
    """Seeded SigmaModel (fresh, or from config.init_checkpoint when load_init) with LoRA applied.

    Returns (model, peft LoraConfig or None). With init_checkpoint the checkpoint's own
    SigmaConfig is used and `model_config` is ignored.
    """
    torch.manual_seed(config.seed)
    use_init = bool(config.init_checkpoint) and load_init
    if config.load_in_4bit:
        require_4bit()
        if use_init:
            raise ValueError(
                "init_checkpoint cannot be combined with load_in_4bit "
                "(the checkpoint holds full-precision backbone weights)"
            )
        if not model_config.backbone_4bit:
            model_config = SigmaConfig.from_dict({**model_config.to_dict(), "backbone_4bit": True})
    lora = dict(r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                target_modules=tuple(config.lora_target_modules))
    if config.use_lora and model_config.vla_backbone and not use_init:
        # a VLA's weights stay external: SigmaModel applies the LoRA itself, at every load too
        model_config = SigmaConfig.from_dict({**model_config.to_dict(), "backbone_lora": lora})
    if use_init:
        model = load_checkpoint(config.init_checkpoint)
    else:
        model = SigmaModel(model_config)
    if model.language is None or model.action is None or model.vision is None:
        raise ValueError("training needs all three workspaces")
    return model, prepare_finetuning(model, config)


# ------------------------------------------------------------------- step
@dataclass
class StepResult:
    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def telepathy_dropped(model: SigmaModel, config: TrainingConfig, generator: torch.Generator | None) -> bool:
    """Whether this training batch runs with telepathy off (``config.telepathy_dropout``; never in eval mode)."""
    if not (model.training and config.telepathy_dropout > 0):  # the config refuses dropout with telepathy off
        return False  # no draw: runs without dropout keep their noise sequence
    device = generator.device if generator is not None else model.device
    return bool(torch.rand((), generator=generator, device=device) < config.telepathy_dropout)


def compute_losses(
    model: SigmaModel, batch: dict, config: TrainingConfig, weights, generator: torch.Generator | None,
    autocast: torch.dtype | None = None,
) -> StepResult:
    """Return the full TRAF + TSAC objective for one batch (see the module docstring for m_prev)."""
    check_batch(batch)
    c, device = model.config, model.device
    obs = observation_from_batch(batch, c, device)
    text = model.tokenize(batch["text"])
    targets = targets_from_batch(batch, c, device)
    amp = torch.autocast(device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()

    tau_prev = m_prev = None
    if config.memory_mode == "two_pass":
        prev_obs = observation_from_batch(batch, c, device, prefix="prev_") if "prev_vision_inputs" in batch else obs
        with torch.no_grad(), amp:
            v0 = model.vision_stage(prev_obs, None)
            l0 = model.language_stage(text, v0.vision_tokens, v0.state_tokens, None,
                                      image_tokens=v0.backbone_image_tokens, robot_state=prev_obs.robot_state,
                                      with_actions=False)
        tau_prev, m_prev = l0.tau.float().detach(), l0.memory.float().detach()
    telepathy = config.telepathy and not telepathy_dropped(model, config, generator)
    with amp:
        out = model(obs, text, tau_prev=tau_prev, memory_prev=m_prev, telepathy=telepathy,
                    generator=generator, trajectory_target=targets["traj"])
    lang, act = out.language, out.action
    if m_prev is None:
        m_prev = torch.zeros_like(lang.memory, dtype=torch.float32)

    actions, used = L.final_actions(act, batch, config.use_dataset_baseline)
    std = model.action.action_norm.std  # the action MSEs count in normalised units (1 without statistics)
    traf = L.traf_loss({k: a / std for k, a in actions.items()}, {k: t / std for k, t in targets.items()},
                       (config.alpha_vec, config.alpha_chunk, config.alpha_traj),
                       config.rho_hard, config.lambda_hard)
    fusion = L.fusion_representation(lang.c_text, out.vision.vision_tokens)
    l_sem, l_time, l_mi = L.semantic_loss(
        lang.z_sem_pool, m_prev, fusion, config.beta_mi, config.nce_temperature, config.time_loss
    )
    l_int = L.intent_loss(lang.z_intent, lang.memory)
    l_tau = L.tau_loss(
        lang.tau, act.condition_tau, config.tau_0, config.lambda_collapse, config.eta_var, config.tau_l2_weight
    )
    l_flow = act.trajectory_loss.float() if act.trajectory_loss is not None else None
    loss = L.total_loss(traf.l_act_total, l_sem, l_int, l_tau, weights.w_sem, weights.w_int, weights.w_tau,
                        l_flow, config.flow_weight)
    l_aux = None
    if model.vision.aux_head is not None and "aux_target" in batch:  # training-only: the step never runs the head
        with amp:
            aux_prediction = model.vision.aux_head(out.vision.vision_tokens)
        l_aux = L.aux_loss(aux_prediction, batch["aux_target"].to(device))
        loss = loss + config.aux_weight * l_aux
    metrics = {
        "loss": loss.item(), "L_act": traf.l_act_total.item(), "L_sem": l_sem.item(), "L_int": l_int.item(),
        "L_tau": l_tau.item(), "L_act_hard": traf.l_hard.item(), "w_sem": weights.w_sem, "w_int": weights.w_int,
        "w_tau": weights.w_tau, "hard_ratio": traf.hard_ratio, "tau_rms": L.tau_rms(lang.tau).item(),
        "L_act_base": traf.l_act.item(), "L_flow": 0.0 if l_flow is None else l_flow.item(),
        "L_aux": 0.0 if l_aux is None else l_aux.item(),
        "L_time": l_time.item(), "L_mi": l_mi.item(), "mse_vec": traf.mse["vec"].item(),
        "mse_chk": traf.mse["chunk"].item(), "mse_trj": traf.mse["traj"].item(),
        "baseline_from_data": float(sum(used.values())) / 3.0,
        "prev_window": float(batch["has_previous"].float().mean()) if "has_previous" in batch else 0.0,
        "telepathy": float(telepathy),
    }
    return StepResult(loss=loss, metrics=metrics)


# ---------------------------------------------------------------- trainer
class SigmaTrainer:
    """Builds (or resumes) a run in `config.output_dir` and trains it.

    resume: None/False = fresh run (refuses to overwrite an existing run's checkpoints unless
    `overwrite`), True/"auto" = continue from the latest checkpoint in output_dir when there is
    one, or a path to a specific checkpoint directory. An overwritten run is set aside only once the new
    one is built, deleted after the new run's first step and moved back if the new run fails before.
    """

    def __init__(
        self,
        config: TrainingConfig,
        model_config: SigmaConfig | None = None,
        dataset=None,
        resume: bool | str | Path | None = None,
        overwrite: bool = False,
    ) -> None:
        self.output_dir = Path(config.output_dir)
        self.checkpoint_root = self.output_dir / CHECKPOINT_SUBDIR
        resume_path = self._resume_path(resume)
        replace_old_run = resume_path is None and latest_checkpoint(self.checkpoint_root) is not None
        if replace_old_run and not overwrite:
            raise FileExistsError(
                f"{self.output_dir} already holds checkpoints; "
                "pass resume (--resume=auto) to continue it or overwrite (--overwrite=true)"
            )
        self._old_run: Path | None = None
        if resume_path is not None:
            saved_config, saved_model_config = read_checkpoint_configs(resume_path)
            changed = {k for k, v in config.to_dict().items() if saved_config.to_dict().get(k) != v}
            allowed = {
                "max_steps",
                "save_every",
                "log_every",
                "keep_checkpoints",
                "tensorboard",
                "output_dir",
                "device",
                "shards_dir",
                "notes",
                "num_threads",
            }
            if changed - allowed:
                raise ValueError(
                    f"resuming with changed settings {sorted(changed - allowed)}; only {sorted(allowed)} may change"
                )
            model_config = saved_model_config
        self.config = config
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        self.device = resolve_device(config.device)
        self.autocast = autocast_dtype(config.mixed_precision, self.device)
        # a resumed run rebuilds the architecture from the checkpoint and loads its weights there
        self.model, self.lora_config = build_model(config, model_config or SigmaConfig(), load_init=resume_path is None)
        self.model.to(self.device).train()
        self.model_config = self.model.config
        self.param_names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(params, config)
        self.ema = None
        if config.ema_decay > 0:
            named = dict(self.model.named_parameters())
            self.ema = WeightEMA({n: named[n] for n in self.param_names}, config.ema_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lr_lambda_factory(config.warmup_steps, config.max_steps, config.min_lr_ratio, config.scheduler),
        )
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed + 1)
        self.curriculum = Curriculum.from_config(config)
        self.dataset = dataset if dataset is not None else build_dataset(config, self.model_config)
        if (
            config.memory_mode == "two_pass"
            and config.use_previous_window
            and not isinstance(self.dataset, PreviousWindowDataset)
            and PreviousWindowDataset.supports(self.dataset)
        ):
            self.dataset = PreviousWindowDataset(self.dataset)
        self.step = 0
        self.samples_seen = 0
        position = DataPosition()
        if resume_path is not None:
            loaded = load_training_checkpoint(resume_path, self.model, self.optimizer, self.scheduler, self.generator,
                                              self.param_names, ema=self.ema)
            state = loaded.trainer_state
            self.step, self.samples_seen = state["step"], state["samples_seen"]
            position = DataPosition(state["data_epoch"], state["data_batch_index"])
            log.info("resumed %s at step %d", resume_path, self.step)
        self.resumed_from = resume_path
        self.stream = BatchStream(
            self.dataset, config.batch_size, config.seed, config.shuffle, config.drop_last, position,
            num_workers=config.num_workers, pin_memory=self.device.type == "cuda",
        )
        if replace_old_run:  # only now that the inputs are known to be good
            self._set_aside_old_run()
        if resume_path is None:  # the heads this run starts from, for CHECK A
            save_init_heads(self.model, self.output_dir)
        self.last_saved_step = self.step if resume_path is not None else -1
        self.last_metrics: dict[str, float] = {}

    def _set_aside_old_run(self) -> None:
        """Move the old run's RUN_FILES into a hidden directory: a fresh run must not mix with them."""
        self._old_run = Path(tempfile.mkdtemp(prefix=".replaced_run.", dir=self.output_dir))
        for name in RUN_FILES:
            if (self.output_dir / name).exists():
                os.replace(self.output_dir / name, self._old_run / name)

    def _finish_replacing(self, succeeded: bool) -> None:
        """Delete the set-aside old run (the new one trained a step), or put it back in place of the new run's files."""
        old, self._old_run = self._old_run, None
        if old is None:
            return
        if not succeeded:
            for name in RUN_FILES:
                new = self.output_dir / name
                if new.is_dir():
                    shutil.rmtree(new)
                new.unlink(missing_ok=True)
                if (old / name).exists():
                    os.replace(old / name, new)
            log.warning("the new run failed before its first step: %s holds the old run again", self.output_dir)
        shutil.rmtree(old)

    def _resume_path(self, resume) -> Path | None:
        if resume in (None, False):
            return None
        if resume is True or resume == "auto":
            return latest_checkpoint(self.checkpoint_root)
        path = Path(resume)
        if not path.is_dir():
            raise FileNotFoundError(f"resume checkpoint {path} does not exist")
        return path

    # ------------------------------------------------------------ training
    def summary(self) -> dict[str, int]:
        return trainable_summary(self.model)

    @torch.no_grad()
    def evaluate(self, batch: dict, seed: int = 0, weights_step: int | None = None) -> dict[str, float]:
        """Return the objective on one batch in eval mode (no dropout) with its own noise generator.

        Touches neither the weights nor any training RNG. weights_step picks the curriculum step (default: the current
        one).
        """
        was_training = self.model.training
        self.model.eval()
        try:
            generator = torch.Generator(device=self.device).manual_seed(seed)
            weights = self.curriculum(self.step if weights_step is None else weights_step)
            return compute_losses(self.model, batch, self.config, weights, generator, self.autocast).metrics
        finally:
            self.model.train(was_training)

    def train_step(self) -> dict[str, float]:
        """One optimiser step over grad_accum_steps micro-batches; returns the step's metrics."""
        cfg = self.config
        t0 = time.perf_counter()
        pos = self.stream.position
        self._step_start = (
            DataPosition(pos.epoch, pos.batch_index), torch.get_rng_state(), self.generator.get_state(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        )
        self._updating = False
        weights = self.curriculum(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        n_samples = 0
        for _ in range(cfg.grad_accum_steps):
            batch = self.stream.next_batch()
            result = compute_losses(self.model, batch, cfg, weights, self.generator, self.autocast)
            if not torch.isfinite(result.loss):
                raise FloatingPointError(f"non-finite loss at step {self.step}: {result.metrics}")
            (result.loss / cfg.grad_accum_steps).backward()
            for k, v in result.metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            n_samples += len(batch["text"])
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.max_grad_norm > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
        else:
            grad_norm = float(
                torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params if p.grad is not None]))
            )
        lr = self.optimizer.param_groups[0]["lr"]
        self._updating = True  # an interrupt from here on may leave a half-applied update
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update()
        metrics = {k: v / cfg.grad_accum_steps for k, v in sums.items()}
        self.samples_seen += n_samples
        metrics.update(step=self.step, lr=lr, grad_norm=grad_norm, epoch=self.stream.position.epoch,
                       samples=self.samples_seen, samples_per_s=n_samples / max(time.perf_counter() - t0, 1e-9))
        self.step += 1
        self.last_metrics = metrics
        self._step_start, self._updating = None, False
        return metrics

    def _rewind_partial_step(self) -> bool:
        """After an interrupt inside train_step.

        Put the data position and RNG back to the start of the unfinished step (its gradients are discarded). False when
        the weights may already have been partly updated (then no checkpoint should be written).
        """
        snapshot = getattr(self, "_step_start", None)
        if snapshot is None:
            return True
        if getattr(self, "_updating", False):
            return False
        position, cpu_rng, gen_rng, cuda_rng = snapshot
        self.stream.position = position
        torch.set_rng_state(cpu_rng)
        self.generator.set_state(gen_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        self.optimizer.zero_grad(set_to_none=True)
        self._step_start = None
        return True

    def save(self) -> Path:
        cfg = self.config
        state = {
            "samples_seen": self.samples_seen,
            "data_epoch": self.stream.position.epoch,
            "data_batch_index": self.stream.position.batch_index,
            "last_metrics": self.last_metrics,
            "trainable": self.summary(),
        }
        path = save_training_checkpoint(
            self.checkpoint_root, self.step, self.model, cfg, self.optimizer, self.scheduler, state,
            generator=self.generator, lora_config=self.lora_config, param_names=self.param_names,
            save_merged_model=cfg.save_merged_model and (not cfg.load_in_4bit or self.model_config.vla_backbone),
            save_frozen_backbone=not cfg.load_in_4bit, ema=self.ema,
        )
        prune_checkpoints(self.checkpoint_root, cfg.keep_checkpoints)
        self.last_saved_step = self.step
        return path

    def train(self, until_step: int | None = None, progress: bool = False) -> dict[str, Any]:
        """Train to max_steps (or stop early at `until_step`, e.g. to test resuming).

        Checkpoint every save_every steps and at the end. Ctrl-C saves a checkpoint before re-raising.
        """
        cfg = self.config
        stop = cfg.max_steps if until_step is None else min(until_step, cfg.max_steps)
        # a fresh run starts new logs; a resumed (or continued) one drops rows past its last step
        continuing = self.resumed_from is not None or self.step > 0
        logger = MetricsLogger(self.output_dir, resume_step=self.step - 1 if continuing else None,
                               tensorboard=cfg.tensorboard)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, desc="sigma-train", unit="step", dynamic_ncols=True)
        first_loss, completed = None, False
        try:
            while self.step < stop:
                metrics = self.train_step()
                self._finish_replacing(succeeded=True)
                first_loss = metrics["loss"] if first_loss is None else first_loss
                if metrics["step"] % cfg.log_every == 0 or self.step == stop:
                    logger.log(metrics)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{metrics['loss']:.4f}",
                        L_act=f"{metrics['L_act']:.4f}",
                        tau_rms=f"{metrics['tau_rms']:.3f}",
                    )
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save()
            completed = True
        except KeyboardInterrupt:
            if not self._rewind_partial_step():
                log.warning("interrupted during the optimiser update: not saving; resume from the last checkpoint")
            elif self.step > self.last_saved_step and self.step > 0:
                log.warning("interrupted: saving a checkpoint at step %d", self.step)
                self.save()
            raise
        finally:
            self.stream.close()
            logger.close()
            if bar is not None:
                bar.close()
            self._finish_replacing(succeeded=completed)  # a no-op once the new run trained a step
        if self.step > self.last_saved_step:
            self.save()
        return {
            "step": self.step, "first_loss": first_loss, "last_metrics": self.last_metrics,
            "checkpoint": str(latest_checkpoint(self.checkpoint_root)), "output_dir": str(self.output_dir),
        }
