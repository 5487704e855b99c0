# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Language alignment: other wordings of an instruction act as its anchor wordings do.

A trained model (the teacher, frozen) is run on plan inputs recorded in closed loop with anchor instructions
(e.g. the demonstration templates). A copy (the student) is trained so that, on the same inputs, any training
wording with the same meaning gives the teacher's plan for an anchor wording: its tau, semantic memory, action
vector, chunk and trajectory; and so that the anchor wordings themselves keep the teacher's plan. Only the
language path the wording enters by trains (``trainable``): the projection of a pretrained text encoder's token
states, or the whole language workspace. Vision and action workspaces stay as they are.

Needs no demonstrations: the targets are the teacher's own outputs on states it visits.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from ..modeling_sigma import SigmaModel
from ..outputs import SigmaObservation

TRAINABLE = ("text_projection", "language")
#: plan outputs matched, each as a mean squared error relative to the teacher's mean square
MATCHED = ("tau", "memory", "action_vector", "action_chunk", "action_trajectory")
OBSERVATION_FIELDS = tuple(f.name for f in fields(SigmaObservation))


@dataclass
class PlanInput:
    """What one plan of a closed-loop step starts from (batch of 1), and which wordings mean its instruction."""

    observation: SigmaObservation
    tau_prev: torch.Tensor  # [1, d_tau] the previous plan's tau (zeros at the start of an episode)
    memory_prev: torch.Tensor  # [1, d_model] m_{t-1} (zeros at the start)
    key: str  # the meaning of its instruction (e.g. the placement region): indexes `wordings` and `anchors`


@dataclass
class AlignmentConfig:
    """Defaults: the setting chosen for the shipped default on the simulator's selection seeds (its PROVENANCE)."""

    steps: int = 1500  # optimiser steps
    batch_size: int = 16  # plan inputs per step (each with one other wording and one anchor wording)
    lr: float = 3e-4
    seed: int = 0  # batches and wordings
    trainable: str = "language"  # one of TRAINABLE
    keep_weight: float = 1.0  # weight of "anchor wordings keep the teacher's plan"

    def __post_init__(self) -> None:
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {TRAINABLE}, got {self.trainable!r}")
        if min(self.steps, self.batch_size) <= 0 or self.lr <= 0 or self.keep_weight < 0:
            raise ValueError("steps, batch_size and lr must be positive and keep_weight non-negative")


def trainable_parameters(model: SigmaModel, trainable: str) -> list[torch.nn.Parameter]:
    """Return the parameters alignment trains (everything else is frozen); ValueError if there are none."""
    language = model._need("language")
    if trainable == "text_projection":
        if language.text_projection is None:
            raise ValueError("trainable='text_projection' needs a model with a text encoder (SigmaConfig.text_encoder)")
        return list(language.text_projection.parameters())
    frozen = {id(p) for p in language.text_encoder.parameters()} if language.text_encoder is not None else set()
    return [p for p in language.parameters() if id(p) not in frozen]


def _stack(inputs: list[PlanInput]) -> tuple[SigmaObservation, torch.Tensor, torch.Tensor]:
    def cat(values):
        return None if values[0] is None else torch.cat(values)

    obs = [p.observation for p in inputs]
    observation = SigmaObservation(*(cat([getattr(o, f) for o in obs]) for f in OBSERVATION_FIELDS))
    return observation, torch.cat([p.tau_prev for p in inputs]), torch.cat([p.memory_prev for p in inputs])


def plan_outputs(model: SigmaModel, texts: list[str], vision, robot_state: torch.Tensor,
                 memory_prev: torch.Tensor) -> dict[str, torch.Tensor]:
    """Return the matched outputs (MATCHED) of one plan per row: language then action stage, telepathy on."""
    lang = model.language_stage(model.tokenize(texts), vision.vision_tokens, vision.state_tokens, memory_prev, True,
                                image_tokens=vision.backbone_image_tokens, robot_state=robot_state,
                                generator=torch.Generator(device=model.device).manual_seed(0))
    act = model.action_stage(lang.high_level_rep, lang.high_level_mask, lang.tau, vision.state_tokens, True,
                             torch.Generator(device=model.device).manual_seed(0),
                             backbone_actions=lang.backbone_actions)
    return {"tau": lang.tau, "memory": lang.memory, "action_vector": act.action_vector,
            "action_chunk": act.action_chunk, "action_trajectory": act.action_trajectory}


def plan_mismatch(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over MATCHED of the mean squared error relative to the teacher's mean square."""
    return sum(torch.mean((student[k] - teacher[k]) ** 2) / (torch.mean(teacher[k] ** 2) + 1e-6) for k in MATCHED)


def align_language(
    model: SigmaModel,
    plan_inputs: list[PlanInput],
    wordings: dict[str, tuple[str, ...]],
    anchors: dict[str, tuple[str, ...]],
    config: AlignmentConfig | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, float]:
    """Train ``model`` in place (see the module docstring); return the loss at the start and end and the time.

    ``wordings[key]`` are the other wordings a plan input with that key may be given (never held-out ones: the
    caller's choice), ``anchors[key]`` the wordings whose plans they should reproduce.
    """
    config = config or AlignmentConfig()
    keys = {p.key for p in plan_inputs}
    if not plan_inputs or not keys <= set(wordings) or not keys <= set(anchors):
        raise ValueError(f"every plan input's key needs wordings and anchors; keys {sorted(keys)}, wordings "
                         f"{sorted(wordings)}, anchors {sorted(anchors)}")
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    params = trainable_parameters(model, config.trainable)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    model.eval().requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    rng = torch.Generator().manual_seed(int(config.seed))

    def draw(texts: tuple[str, ...]) -> str:
        return texts[int(torch.randint(len(texts), (1,), generator=rng))]

    losses, t0 = [], time.perf_counter()
    for step in range(config.steps):
        rows = torch.randint(len(plan_inputs), (min(config.batch_size, len(plan_inputs)),), generator=rng).tolist()
        batch = [plan_inputs[i] for i in rows]
        obs, tau_prev, memory_prev = _stack(batch)
        anchor_texts = [draw(anchors[p.key]) for p in batch]
        other_texts = [draw(wordings[p.key]) for p in batch]
        with torch.no_grad():
            vision = teacher.vision_stage(obs, tau_prev)
            target = plan_outputs(teacher, anchor_texts, vision, obs.robot_state, memory_prev)
        other = plan_outputs(model, other_texts, vision, obs.robot_state, memory_prev)
        loss = plan_mismatch(other, target)
        if config.keep_weight > 0:
            loss = loss + config.keep_weight * plan_mismatch(
                plan_outputs(model, anchor_texts, vision, obs.robot_state, memory_prev), target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.detach().item())
        if progress is not None:
            progress(step + 1, losses[-1])
    for name, p in model.named_parameters():  # as they were (a frozen text encoder stays frozen)
        p.requires_grad_(flags[name])
    window = max(1, min(50, len(losses) // 10))
    return {"loss_start": sum(losses[:window]) / window, "loss_end": sum(losses[-window:]) / window,
            "steps": config.steps, "plan_inputs": len(plan_inputs), "seconds": time.perf_counter() - t0}
