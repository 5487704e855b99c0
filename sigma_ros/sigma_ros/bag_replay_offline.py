# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The frame schedule of a bag replay and its offline path.

The checkpoint's stage functions run frame by frame in this process, following the nodes' rules (see
``sigma_ros.bag_replay``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from sigma_ros.bag_pairing import PairedFrame


from sigma_ros.bag_replay_config import BagEvalConfig

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- frame schedule
@dataclass
class Step:
    """What the nodes do with one camera frame.

    The offline path follows it; the graph is checked against it.
    """

    index: int
    vision: bool  # the perception node runs the vision stage (image decodes, valid fresh joint state)
    plan: bool  # ... and the language/action nodes produce a plan (an instruction is in force)
    tau_from: int | None = None  # frame whose tau is tau_prev (None: zeros)
    reset_memory: bool = False  # m_{t-1} = 0 (first plan or a new instruction)
    memory_step: int = 0  # plans since the memory was reset (the language node's step_index)
    target: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # recorded vector, chunk, trajectory


def schedule(frames: Sequence[PairedFrame], telepathy: bool, tau_timeout_s: float) -> list[Step]:
    steps: list[Step] = []
    tau_t = tau_idx = None
    seq = None
    memory_step = 0
    limit = int(tau_timeout_s * 1e9)
    for f in frames:
        if f.image is None or f.state is None:
            steps.append(Step(f.index, False, False))
            continue
        tau_from = tau_idx if (telepathy and tau_idx is not None and f.t_ns - tau_t <= limit) else None
        if f.instruction is None:
            steps.append(Step(f.index, True, False, tau_from))
            continue
        reset = f.instruction_seq != seq
        seq = f.instruction_seq
        memory_step = 0 if reset else memory_step + 1
        steps.append(Step(f.index, True, True, tau_from, reset, memory_step))
        tau_t, tau_idx = f.t_ns, f.index
    return steps


def attach_targets(frames: Sequence[PairedFrame], steps: Sequence[Step], chunk_len: int, traj_len: int) -> None:
    """Attach the recorded command windows (vector, chunk, trajectory) to the frames whose window is complete."""
    horizon = max(chunk_len, traj_len, 1)
    by_episode: dict[int, list[int]] = {}
    for i, f in enumerate(frames):
        by_episode.setdefault(f.episode, []).append(i)
    for idxs in by_episode.values():
        for pos, i in enumerate(idxs):
            window = idxs[pos:pos + horizon]
            if len(window) < horizon or any(frames[j].action is None for j in window):
                continue
            acts = np.stack([frames[j].action for j in window]).astype(np.float32)
            steps[i].target = (acts[0], acts[:chunk_len], acts[:traj_len])


def frame_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """HxWx3 uint8 -> [1,3,S,S] float in [0,1].

    Exactly as the perception node's image_to_tensor with resize_images=true.
    """
    from sigma_ros.conversions import _resize, rgb_array_to_tensor

    t = rgb_array_to_tensor(image)
    if image.shape[:2] != (size, size):
        t = _resize(t, size, "bilinear").clamp_(0.0, 1.0)
    return t


# ----------------------------------------------------------------------------- offline path
@dataclass
class FrameOutput:
    """Actions and diagnostics of one frame's plan (either path)."""

    actions: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # [1,A], [1,C,A], [1,T,A]
    tau_l2: float
    z_sem_pool: torch.Tensor | None = None  # [1, d]
    adapter_scale: float | None = None
    adapter_fallback: bool | None = None
    latency_ms: float | None = None


@torch.no_grad()
def run_offline(model, frames: Sequence[PairedFrame], steps: Sequence[Step], cfg: BagEvalConfig
                ) -> tuple[dict[int, FrameOutput], float]:
    """Return the offline path (module docstring); returns {frame index: output} and the seconds it took."""
    from sigma_model.outputs import SigmaObservation

    adapter = None
    if cfg.adapter:
        from sigma_model.evaluation.adapter import RiskGatedAdapter

        adapter = RiskGatedAdapter(cfg.adapter_config)
    c = model.config
    device = next(model.parameters()).device
    audio = torch.zeros(1, c.audio_chunk_samples, device=device) if c.use_audio else None
    taus: dict[int, torch.Tensor] = {}
    memory = None
    text = None
    outputs: dict[int, FrameOutput] = {}
    start = time.perf_counter()
    for step in steps:
        if not step.vision:
            continue
        t0 = time.perf_counter()
        f = frames[step.index]
        obs = SigmaObservation(image=frame_tensor(f.image, c.image_size).to(device),
                               robot_state=torch.from_numpy(f.state.astype(np.float32)).unsqueeze(0).to(device),
                               audio=audio)
        tau_prev = taus.get(step.tau_from) if step.tau_from is not None else None
        vis = model.vision_stage(obs, tau_prev)
        if not step.plan:
            continue
        if step.reset_memory or text is None:
            memory = None
            text = model.tokenize([f.instruction])
        gen = torch.Generator(device=device).manual_seed(int(cfg.seed))
        lang = model.language_stage(text, vis.vision_tokens, vis.state_tokens, memory, cfg.telepathy,
                                    image_tokens=vis.backbone_image_tokens, robot_state=obs.robot_state,
                                    generator=gen)
        memory = lang.memory
        taus[step.index] = lang.tau
        act = model.action_stage(lang.high_level_rep, lang.high_level_mask, lang.tau, vis.state_tokens,
                                 telepathy=cfg.telepathy, generator=gen, backbone_actions=lang.backbone_actions)
        actions = (act.action_vector, act.action_chunk, act.action_trajectory)
        scale = fallback = None
        if adapter is not None:
            res = adapter.adapt_output(act, lang.tau)
            actions = (res.action_vector.to(act.action_vector.dtype), res.action_chunk.to(act.action_chunk.dtype),
                       res.action_trajectory.to(act.action_trajectory.dtype))
            scale, fallback = float(res.scale[0]), bool(res.fallback[0])
        outputs[step.index] = FrameOutput(
            actions=tuple(a.detach().float().cpu() for a in actions), tau_l2=float(lang.tau.float().norm()),
            z_sem_pool=lang.z_sem_pool.detach().float().cpu(), adapter_scale=scale, adapter_fallback=fallback,
            latency_ms=1e3 * (time.perf_counter() - t0))
    return outputs, time.perf_counter() - start
