# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Offline closed-loop replay (paper sections 5 and 6).

Recorded windows (shards written by `sigma_model.data.ShardWriter`) are replayed in batches through
one Sigma checkpoint under four conditions, telepathy on/off x adapter on/off, plus the baseline:

    sigma                  telepathy on,  adapter off   (the experimental group)
    sigma_adapter          telepathy on,  adapter on
    telepathy_off          telepathy off, adapter off   (== the model's tau = 0 path)
    telepathy_off_adapter  telepathy off, adapter on
    baseline               the control group: a separate untuned policy when one exists
                           (--baseline-checkpoint, run with telepathy off; or the shards'
                           base_action_* from an offline base policy), else the tau = 0 path

Every condition of a batch sees the same observations, instruction tokens and diffusion noise
(one torch.Generator seed per batch), so differences come only from the condition. The windows of an
episode are replayed in frame order and carry the recurrent state as the robot carries it from plan
to plan (:class:`EpisodeState`): tau of the previous window is the next window's tau_prev (vision
FiLM) and its semantic memory m_t the next m_{t-1} (language stage); both start from zero at an
episode's first window, the memory also at a new instruction. Each condition carries its own state
(telepathy off: memory only, tau_prev = 0). :func:`episode_batches` runs ``batch_size`` episodes side
by side, one window of each per batch. Samples without ``episode_index`` (or ``carry_state=False``)
are replayed independently from a zero state.
A dataset or tau = 0 baseline reports the model's own tau L2 and semantic alignment (the paper's
Tables 2 and 3 show the same values for both groups); a baseline checkpoint reports its own.

Per batch and condition it records the MSE of action vector / chunk / trajectory, the mean tau L2
norm, the cosine alignment of the semantic factors (z_sem_pool) with the instruction's text embedding
(masked mean of the backbone's token embeddings, projected into d_model), success / hard sample
counts against per-scale thresholds and the hard samples' MSE; adapter conditions add the mean
scale, risk and fallback fraction. CHECK A (:mod:`.check_a`) compares the telepathy heads with their
initialisation and between the experimental and control groups.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CONFIG_NAME, load_checkpoint
from ..configuration_sigma import SigmaConfig
from ..layers import masked_mean
from ..modeling_sigma import SigmaModel
from ..outputs import SigmaObservation
from ..training.batching import prepare_image
from .adapter import AdapterConfig, RiskGatedAdapter
from .check_a import HEADS_FILE, check_a_section, find_init_heads
from .report import DEFAULT_THRESHOLDS

log = logging.getLogger(__name__)

BASE_KEYS = ("base_action_vector", "base_action_chunk", "base_action_trajectory")
GT_KEYS = ("gt_action_vector", "gt_action_chunk", "gt_action_trajectory")

# name -> (telepathy, adapter); "baseline" is separate
CONDITIONS: dict[str, tuple[bool, bool]] = {
    "sigma": (True, False),
    "sigma_adapter": (True, True),
    "telepathy_off": (False, False),
    "telepathy_off_adapter": (False, True),
}
ALL_CONDITIONS = (*CONDITIONS, "baseline")
LABELS = {
    "sigma": "Sigma (telepathy on)",
    "sigma_adapter": "Sigma + adapter",
    "telepathy_off": "telepathy off (tau = 0)",
    "telepathy_off_adapter": "telepathy off + adapter",
    "baseline": "baseline",
}
BASELINE_SOURCES = ("auto", "checkpoint", "dataset", "tau0")


@dataclass
class ReplayConfig:
    """Options of one replay run."""

    batch_size: int = 4  # the paper: 723 windows in 181 batches
    max_batches: int | None = None  # None: the whole dataset
    seed: int = 0  # diffusion noise: batch i uses torch.Generator().manual_seed(seed * 1_000_003 + i)
    conditions: tuple[str, ...] = ALL_CONDITIONS
    baseline: str = "auto"  # auto | checkpoint | dataset | tau0
    carry_state: bool = True  # tau and memory from window to window of an episode (False: each window from zeros)
    hard_thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    success_thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if self.max_batches is not None and (not isinstance(self.max_batches, int) or self.max_batches <= 0):
            raise ValueError(f"max_batches must be a positive int or None, got {self.max_batches!r}")
        self.conditions = tuple(self.conditions)
        unknown = [c for c in self.conditions if c not in ALL_CONDITIONS]
        if unknown or not self.conditions:
            raise ValueError(f"conditions must be a non-empty subset of {ALL_CONDITIONS}, got {self.conditions}")
        if self.baseline not in BASELINE_SOURCES:
            raise ValueError(f"baseline must be one of {BASELINE_SOURCES}, got {self.baseline!r}")
        for name in ("hard_thresholds", "success_thresholds"):
            th = {k: float(v) for k, v in dict(getattr(self, name)).items()}
            if set(th) != set(DEFAULT_THRESHOLDS) or not all(math.isfinite(v) and v >= 0 for v in th.values()):
                raise ValueError(f"{name} must give finite non-negative vec, chunk, traj values, got {th}")
            setattr(self, name, th)


# ----------------------------------------------------------------------------- loading
def resolve_checkpoint(path: str | Path) -> tuple[Path, Path | None]:
    """(model directory for `load_checkpoint`, telepathy heads file or None).

    Accepts a plain sigma_model checkpoint (config.json + <workspace>.safetensors), a training
    checkpoint step directory (model/ + sigma_telepathy_heads.safetensors), or a training output /
    checkpoints root (its `latest` step is used).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    if (p / CONFIG_NAME).is_file():
        heads = p / HEADS_FILE if (p / HEADS_FILE).is_file() else None
        if heads is None and (p.parent / HEADS_FILE).is_file() and p.name == "model":
            heads = p.parent / HEADS_FILE
        return p, heads
    if (p / "model" / CONFIG_NAME).is_file():
        return p / "model", (p / HEADS_FILE if (p / HEADS_FILE).is_file() else None)
    for root in (p, p / "checkpoints"):
        if root.is_dir():
            try:
                from ..training.checkpointing import latest_checkpoint
            except ImportError:  # pragma: no cover - training package absent
                break
            latest = latest_checkpoint(root)
            if latest is not None:
                return resolve_checkpoint(latest)
    raise FileNotFoundError(
        f"{p} is not a Sigma checkpoint: expected {CONFIG_NAME} (model checkpoint), model/{CONFIG_NAME} "
        "(training checkpoint) or a training output directory with checkpoints"
    )


def load_model(
    path: str | Path, device: str | torch.device = "cpu", heads: str | Path | None = None
) -> tuple[SigmaModel, Path | None]:
    """Load a checkpoint for evaluation (eval mode); `heads` overrides its telepathy heads."""
    model_dir, found = resolve_checkpoint(path)
    model = load_checkpoint(model_dir, map_location="cpu")
    if heads is not None:
        from ..training.checkpointing import load_heads

        load_heads(model, heads)
        found = Path(heads)
    return model.to(device).eval(), found


# ----------------------------------------------------------------------------- data
def _shard_dataset(shards_dir: str | Path, lanes: int = 1):
    """Return the shards, caching enough of them for ``lanes`` episodes replayed side by side."""
    from ..data.shards import ShardDataset

    return ShardDataset(shards_dir, cache_shards=lanes + 2)


def episode_batches(dataset, batch_size: int, max_batches: int | None = None) -> list[list[int]]:
    """Sample indices of each batch.

    ``batch_size`` lanes, each replaying one episode's windows in frame order and taking the next episode (in dataset
    order) when its own ends, so a batch holds at most one window per episode and a window's predecessor is in the batch
    before. Samples without ``episode_index``: consecutive samples.
    """
    n = len(dataset)
    if n == 0 or "episode_index" not in dataset[0]:
        plan = [list(range(s, min(n, s + batch_size))) for s in range(0, n, batch_size)]
        return plan if max_batches is None else plan[:max_batches]
    episodes: dict[int, list[tuple[int, int]]] = {}
    for i in range(n):
        item = dataset[i]
        episodes.setdefault(int(item["episode_index"]), []).append((int(item["frame_index"]), i))
    queue = deque(episodes.values())
    lanes: list[deque[int]] = [deque() for _ in range(batch_size)]
    plan = []
    while max_batches is None or len(plan) < max_batches:
        batch = []
        for lane in lanes:
            if not lane and queue:
                lane.extend(i for _, i in sorted(queue.popleft()))
            if lane:
                batch.append(lane.popleft())
        if not batch:
            break
        plan.append(batch)
    return plan


def iterate_batches(dataset, plan: Iterable[Sequence[int]]) -> Iterator[dict[str, Any]]:
    """Yield the collated batches of a plan (lists of sample indices, e.g. :func:`episode_batches`)."""
    from ..data.shards import collate_sigma_samples

    for idxs in plan:
        yield collate_sigma_samples([dataset[i] for i in idxs])


class EpisodeState:
    """tau and semantic memory carried from window to window of each episode.

    As the robot carries them from plan to plan: the previous window's tau is tau_prev (vision stage), its memory
    m_{t-1} (language stage); both are zero at an episode's first window, the memory also at a new instruction (the
    language node's rule; the perception node keeps tau).
    """

    def __init__(self, d_tau: int, d_model: int) -> None:
        self.d_tau, self.d_model = d_tau, d_model
        self._last: dict[int, tuple[int, str, torch.Tensor, torch.Tensor]] = {}  # episode -> frame, text, tau, m

    @staticmethod
    def keys(batch: Mapping[str, Any]) -> list[tuple[int, int]] | None:
        """(episode, frame) per row, None when the batch has no episode_index."""
        if "episode_index" not in batch or "frame_index" not in batch:
            return None
        return list(zip(torch.as_tensor(batch["episode_index"]).reshape(-1).tolist(),
                        torch.as_tensor(batch["frame_index"]).reshape(-1).tolist()))

    def previous(
        self, keys: Sequence[tuple[int, int]], texts: Sequence[str], device
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(tau_prev [B, d_tau], memory_prev [B, d], rows that carry a previous window's state)."""
        tau = torch.zeros(len(keys), self.d_tau, device=device)
        memory = torch.zeros(len(keys), self.d_model, device=device)
        seen: set[int] = set()
        carried = 0
        for row, ((episode, frame), text) in enumerate(zip(keys, texts)):
            if episode in seen:
                raise ValueError(f"a batch holds two windows of episode {episode}: batch the windows with "
                                 "episode_batches so each window follows its predecessor")
            seen.add(episode)
            last = self._last.get(episode)
            if last is None:
                continue
            if frame <= last[0]:
                raise ValueError(f"episode {episode}: window at frame {frame} replayed after frame {last[0]}; "
                                 "the windows of an episode must come in frame order")
            tau[row] = last[2]
            if text == last[1]:
                memory[row] = last[3]
            carried += 1
        return tau, memory, carried

    def update(
        self, keys: Sequence[tuple[int, int]], texts: Sequence[str], tau: torch.Tensor, memory: torch.Tensor
    ) -> None:
        for row, ((episode, frame), text) in enumerate(zip(keys, texts)):
            self._last[episode] = (frame, text, tau[row].detach(), memory[row].detach())


def _first(x: torch.Tensor, per_sample_dims: int) -> torch.Tensor:
    """[B,T,...] window of frames -> the first frame (the window's observation)."""
    return x[:, 0] if x.dim() == per_sample_dims + 2 else x


def observation_from_batch(
    batch: Mapping[str, Any], config: SigmaConfig, device: torch.device
) -> tuple[SigmaObservation, bool]:
    """(observation, state_dim_corrected).

    Image resized to the model's size (the trainer's ``prepare_image``), robot_state padded with zeros or truncated to
    config.state_dim (the paper's robot_state dimension correction).
    """
    images = prepare_image(batch["vision_inputs"], config)
    state = _first(batch["robot_state"], 1).float()
    if state.dim() != 2:
        raise ValueError(f"robot_state must be [B,S] (or [B,T,S]), got {list(state.shape)}")
    corrected = state.shape[1] != config.state_dim
    if state.shape[1] < config.state_dim:
        state = torch.nn.functional.pad(state, (0, config.state_dim - state.shape[1]))
    elif state.shape[1] > config.state_dim:
        state = state[:, : config.state_dim]
    audio = batch.get("audio")
    audio = audio.to(device, torch.float32) if isinstance(audio, torch.Tensor) else None
    return SigmaObservation(image=images.to(device), robot_state=state.to(device), audio=audio), corrected


def _targets(
    batch: Mapping[str, Any], keys: Sequence[str], config: SigmaConfig, device: torch.device
) -> tuple[torch.Tensor, ...]:
    c = config
    shapes = ((c.action_dim,), (c.chunk_len, c.action_dim), (c.traj_len, c.action_dim))
    out = []
    for key, shape in zip(keys, shapes):
        t = batch[key]
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"batch[{key!r}] must be a tensor")
        if tuple(t.shape[1:]) != shape:
            raise ValueError(
                f"{key} has per-sample shape {list(t.shape[1:])} but the model predicts {list(shape)} "
                "(the checkpoint's chunk_len / traj_len / action_dim must match the shards)"
            )
        t = t.to(device, torch.float32)
        if not torch.isfinite(t).all():
            raise ValueError(f"batch[{key!r}] contains NaN or Inf")
        out.append(t)
    return tuple(out)


# ----------------------------------------------------------------------------- metrics
def text_embedding(model: SigmaModel, tokens) -> torch.Tensor:
    """Return the instruction's embedding in d_model: masked mean of the token embeddings the language stage reads.

    Those of the frozen text encoder (projected) when the model has one, else the backbone's.
    """
    language = model.language
    emb = language.embed_text(tokens)
    pooled = masked_mean(emb.float(), tokens.mask)
    return language.from_backbone(pooled.to(emb.dtype)).float()


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred.float() - target.float()).square().reshape(pred.shape[0], -1).mean(dim=-1)


def batch_record(
    condition: str,
    batch_index: int,
    actions: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    tau_l2: torch.Tensor | None,
    sem_align: torch.Tensor | None,
    hard_thresholds: Mapping[str, float],
    success_thresholds: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """One per-batch record (the keys `sigma_model.evaluation.report` aggregates).

    With ``success_thresholds`` it counts the samples whose MSEs are all within them.
    """
    mses = [per_sample_mse(a, t) for a, t in zip(actions, targets)]
    names = ("mse_vec", "mse_chk", "mse_trj")
    thr_keys = ("vec", "chunk", "traj")
    n = int(mses[0].shape[0])
    hard = torch.zeros(n, dtype=torch.bool, device=mses[0].device)
    success = torch.ones(n, dtype=torch.bool, device=mses[0].device)
    for m, k in zip(mses, thr_keys):
        hard |= m > hard_thresholds[k]
        if success_thresholds is not None:
            success &= m <= success_thresholds[k]
    rec: dict[str, Any] = {"condition": condition, "batch": batch_index, "num_samples": n}
    for name, m in zip(names, mses):
        rec[name] = float(m.mean())
    rec["tau_l2"] = None if tau_l2 is None else float(tau_l2.float().mean())
    rec["sem_align"] = None if sem_align is None else float(sem_align.float().mean())
    rec["num_hard"] = int(hard.sum())
    for name, m in zip(names, mses):
        rec["hard_" + name] = float(m[hard].mean()) if hard.any() else None
    if success_thresholds is not None:
        rec["num_within_thresholds"] = int(success.sum())
    return rec


# ----------------------------------------------------------------------------- replay
@dataclass
class ReplayResult:
    records: list[dict[str, Any]]
    num_samples: int
    num_batches: int
    seconds: float
    baseline_source: str
    state_dim_corrected: bool
    condition_info: dict[str, dict[str, Any]]
    recurrence: dict[str, Any] = field(default_factory=dict)

    @property
    def samples_per_s(self) -> float:
        return self.num_samples / self.seconds if self.seconds > 0 else float("inf")


def choose_baseline(requested: str, has_checkpoint: bool, has_dataset: bool) -> str:
    if requested == "auto":
        return "checkpoint" if has_checkpoint else ("dataset" if has_dataset else "tau0")
    if requested == "checkpoint" and not has_checkpoint:
        raise ValueError("baseline 'checkpoint' needs a baseline model (--baseline-checkpoint)")
    if requested == "dataset" and not has_dataset:
        raise ValueError(f"baseline 'dataset' needs {list(BASE_KEYS)} in the shards")
    return requested


def replay(
    model: SigmaModel,
    batches: Iterable[Mapping[str, Any]],
    config: ReplayConfig | None = None,
    adapter: RiskGatedAdapter | None = None,
    baseline_model: SigmaModel | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Replay batches (shard sample keys, collated) under the configured conditions."""
    with torch.no_grad():  # a block, not a decorator: mutmut mutates undecorated functions only
        cfg = config or ReplayConfig()
        adapter = adapter or RiskGatedAdapter()
        missing_ws = [w for w in ("vision", "language", "action") if w not in model.workspaces]
        if missing_ws:
            raise ValueError(f"replay needs a model with all workspaces; this one lacks {missing_ws}")
        model.eval()
        if baseline_model is not None:
            baseline_model.eval()
        device = next(model.parameters()).device
        mc = model.config
        records: list[dict[str, Any]] = []
        source: str | None = None
        corrected_any = False
        n_samples = 0
        n_batches = 0
        start = time.perf_counter()
        want = set(cfg.conditions)
        states = {"on": EpisodeState(mc.d_tau, mc.d_model), "off": EpisodeState(mc.d_tau, mc.d_model)}
        if baseline_model is not None:
            states["baseline"] = EpisodeState(baseline_model.config.d_tau, baseline_model.config.d_model)
        carried = 0
        seen: set[int] = set()

        def run(stream: str, net: SigmaModel, keys, texts, obs, tokens, telepathy: bool, seed: int, dev):
            """One condition's pass, fed and feeding its own carried state (zeros without keys)."""
            tau_prev = memory_prev = None
            n_carried = 0
            if keys is not None:
                tau_prev, memory_prev, n_carried = states[stream].previous(keys, texts, dev)
            out = net(obs, tokens, tau_prev=tau_prev, memory_prev=memory_prev, telepathy=telepathy,
                      generator=torch.Generator(device=dev).manual_seed(seed))
            if keys is not None:
                states[stream].update(keys, texts, out.language.tau, out.language.memory)
            return out, n_carried

        for index, batch in enumerate(batches):
            if cfg.max_batches is not None and index >= cfg.max_batches:
                break
            for key in (*GT_KEYS, "vision_inputs", "robot_state", "text"):
                if key not in batch:
                    raise ValueError(f"batch {index} lacks {key!r} (has {sorted(batch)})")
            texts = list(batch["text"])
            has_base = all(k in batch for k in BASE_KEYS)
            if source is None:
                source = choose_baseline(cfg.baseline, baseline_model is not None, has_base)
            elif source == "dataset" and not has_base:
                raise ValueError(f"batch {index} lacks {list(BASE_KEYS)} but earlier batches had them")
            obs, corrected = observation_from_batch(batch, mc, device)
            corrected_any |= corrected
            targets = _targets(batch, GT_KEYS, mc, device)
            tokens = model.tokenize(texts)
            seed = cfg.seed * 1_000_003 + index
            keys = EpisodeState.keys(batch) if cfg.carry_state else None
            if keys is not None:
                seen.update(e for e, _ in keys)

            out_on, n_carried = run("on", model, keys, texts, obs, tokens, True, seed, device)
            carried += n_carried
            lang = out_on.language
            tau_l2 = lang.tau.float().norm(dim=-1)
            sem = torch.nn.functional.cosine_similarity(
                lang.z_sem_pool.float(), text_embedding(model, tokens), dim=-1
            )
            need_off = bool(want & {"telepathy_off", "telepathy_off_adapter"}) or (
                source == "tau0" and "baseline" in want
            )
            out_off = None
            if need_off:  # tau = 0 everywhere: vision FiLM, language modulator, action residual
                out_off, _ = run("off", model, keys, texts, obs, tokens, False, seed, device)

            if source == "checkpoint":
                b_tokens = baseline_model.tokenize(texts)
                b_obs, _ = observation_from_batch(
                    batch, baseline_model.config, next(baseline_model.parameters()).device
                )
                b_out, _ = run("baseline", baseline_model, keys, texts, b_obs, b_tokens, False, seed,
                               next(baseline_model.parameters()).device)
                base = tuple(
                    t.to(device)
                    for t in (b_out.action.action_vector, b_out.action.action_chunk, b_out.action.action_trajectory)
                )
                for t, name in zip(base, GT_KEYS):
                    if t.shape != targets[GT_KEYS.index(name)].shape:
                        raise ValueError(
                            f"baseline model predicts {name} {list(t.shape)}, "
                            f"the data has {list(targets[GT_KEYS.index(name)].shape)}"
                        )
                b_tau = b_out.language.tau.float().norm(dim=-1)
                b_sem = torch.nn.functional.cosine_similarity(
                    b_out.language.z_sem_pool.float(),
                    text_embedding(baseline_model, b_tokens),
                    dim=-1,
                )
            elif source == "dataset":
                base = _targets(batch, BASE_KEYS, mc, device)
                b_tau, b_sem = tau_l2, sem
            else:  # the model's tau = 0 path (the telepathy-off pass); adapters without it use the action branch's
                act_base = out_off.action if out_off is not None else out_on.action
                base = (
                    (act_base.action_vector, act_base.action_chunk, act_base.action_trajectory)
                    if out_off is not None
                    else (act_base.baseline_vector, act_base.baseline_chunk, act_base.baseline_trajectory)
                )
                b_tau, b_sem = tau_l2, sem

            def record(name: str, actions, extra: Mapping[str, Any] | None = None, tau=tau_l2, align=sem) -> None:
                rec = batch_record(
                    name, index, actions, targets, tau, align, cfg.hard_thresholds, cfg.success_thresholds
                )
                if extra:
                    rec.update(extra)
                records.append(rec)

            def adapted(out) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
                a = out.action
                res = adapter(
                    a.action_vector, a.action_chunk, a.action_trajectory, *base, out.language.tau, a.condition_tau
                )
                extra = {
                    "adapter_scale": float(res.scale.mean()),
                    "adapter_risk": float(torch.nan_to_num(res.risk, posinf=adapter.config.max_risk).mean()),
                    "adapter_fallback_fraction": float(res.fallback.float().mean()),
                    "adapter_residual_ratio": float(torch.nan_to_num(res.residual_ratio, nan=0.0, posinf=0.0).mean()),
                }
                return (res.action_vector, res.action_chunk, res.action_trajectory), extra

            for name in cfg.conditions:
                if name == "baseline":
                    record(name, base, tau=b_tau, align=b_sem)
                    continue
                telepathy, use_adapter = CONDITIONS[name]
                out = out_on if telepathy else out_off
                if use_adapter:
                    acts, extra = adapted(out)
                    record(name, acts, extra)
                else:
                    record(name, (out.action.action_vector, out.action.action_chunk, out.action.action_trajectory))
            n_samples += len(texts)
            n_batches += 1
            if progress is not None:
                progress(len(texts))
        seconds = time.perf_counter() - start
        if n_batches == 0:
            raise ValueError("nothing to replay: the dataset gave no batches")
        info = {name: {"telepathy": CONDITIONS[name][0], "adapter": CONDITIONS[name][1], "label": LABELS[name]}
                for name in cfg.conditions if name in CONDITIONS}
        if "baseline" in cfg.conditions:
            desc = {"checkpoint": "separate baseline checkpoint, telepathy off",
                    "dataset": "offline base policy actions from the shards (base_action_*)",
                    "tau0": "the model with telepathy off: tau = 0 in vision, language and action"}[source]
            info["baseline"] = {"telepathy": False, "adapter": False, "label": f"baseline ({source})", "source": source,
                                "description": desc}
        return ReplayResult(
            records=records, num_samples=n_samples, num_batches=n_batches, seconds=seconds,
            baseline_source=source,
            state_dim_corrected=corrected_any, condition_info=info,
            recurrence={"carry_state": cfg.carry_state, "episodes": len(seen), "windows_with_carried_state": carried,
                        "rule": "tau_prev and m_{t-1} from the episode's previous window; zero at its first window, "
                                "m_{t-1} also at a new instruction; telepathy off: tau_prev = 0"},
        )


def run_replay(
    shards: str | Path,
    checkpoint: str | Path,
    out_dir: str | Path | None = None,
    *,
    config: ReplayConfig | None = None,
    adapter_config: AdapterConfig | None = None,
    baseline_checkpoint: str | Path | None = None,
    heads: str | Path | None = None,
    init_heads: str | Path | None = None,
    ci_method: str = "bootstrap",
    confidence: float = 0.95,
    n_boot: int = 2000,
    table_every: int = 20,
    plots: bool = True,
    progress: Callable[[int], None] | None = None,
    dataset=None,
    plan: Sequence[Sequence[int]] | None = None,
) -> tuple[dict[str, Any], ReplayResult]:
    """Load shards + checkpoint, replay (``plan``. The batches' sample indices, default :func:`episode_batches`).

    Build the report and (out_dir given) write its files. CHECK A compares with ``init_heads`` (default: the run's
    initialisation file next to the checkpoint, when found).
    """
    from .report import build_report, write_report

    cfg = config or ReplayConfig()
    device = torch.device(cfg.device)
    model, heads_file = load_model(checkpoint, device, heads)
    init_heads = init_heads if init_heads is not None else find_init_heads(resolve_checkpoint(checkpoint)[0])
    baseline_model = b_heads = None
    if baseline_checkpoint is not None:
        baseline_model, b_heads = load_model(baseline_checkpoint, device)
    ds = dataset if dataset is not None else _shard_dataset(shards, cfg.batch_size)
    if len(ds) == 0:
        raise ValueError(f"no samples in {shards}")
    plan = plan if plan is not None else episode_batches(ds, cfg.batch_size, cfg.max_batches)
    result = replay(model, iterate_batches(ds, plan), cfg, RiskGatedAdapter(adapter_config), baseline_model, progress)
    check = check_a_section(model, heads_file, init_heads, baseline_model, b_heads)
    reference = (
        "baseline" if "baseline" in cfg.conditions else ("telepathy_off" if "telepathy_off" in cfg.conditions else "")
    )
    meta = {
        "checkpoint": str(checkpoint),
        "shards": str(shards),
        "baseline_checkpoint": None if baseline_checkpoint is None else str(baseline_checkpoint),
        "baseline_source": result.baseline_source,
        "heads_file": None if heads_file is None else str(heads_file),
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "device": str(device),
        "adapter": (adapter_config or AdapterConfig()).to_dict(),
        "state_dim_corrected": result.state_dim_corrected,
        "recurrence": result.recurrence,
        "timing": {"seconds": result.seconds, "samples_per_s": result.samples_per_s,
                   "conditions": len(cfg.conditions)},
        "sigma_config": model.config.to_dict(),
        "torch_version": torch.__version__,
    }
    report = build_report(
        result.records, hard_thresholds=cfg.hard_thresholds, success_thresholds=cfg.success_thresholds,
        reference=reference, condition_info=result.condition_info, check_a=check, ci_method=ci_method,
        confidence=confidence, n_boot=n_boot, seed=cfg.seed, table_every=table_every, meta=meta,
    )
    if out_dir is not None:
        labels = {k: v.get("label", k) for k, v in result.condition_info.items()}
        paths = write_report(report, result.records, out_dir, plots=plots, labels=labels)
        report["files"] = {k: str(p) for k, p in paths.items()}
    return report, result
