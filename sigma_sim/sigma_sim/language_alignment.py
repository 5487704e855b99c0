# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Language alignment on the simulated SO-101 (:mod:`sigma_model.training.language_alignment`).

The model runs closed-loop episodes with the template instructions on their own seeds; every plan's inputs are
kept, keyed by the episode's placement region. Alignment then trains the model so that every training wording
of a region (:data:`sigma_sim.instructions.TRAINING_WORDINGS`, never a selection or held-out paraphrase) gives
the plan a template of that region gives.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from sigma_model import SigmaObservation
from sigma_model.training.language_alignment import OBSERVATION_FIELDS, AlignmentConfig, PlanInput, align_language
from sigma_sim.closed_loop import ClosedLoopConfig, SigmaPolicy, evaluation_env, run_conditions
from sigma_sim.default_model import seed_range
from sigma_sim.instructions import INSTRUCTIONS, TRAINING_WORDINGS, instruction_target


class RecordingSigmaPolicy(SigmaPolicy):
    """A :class:`SigmaPolicy` (telepathy on) that keeps what each of its plans starts from."""

    def __init__(self, model, **kwargs) -> None:
        self.records: list[tuple[Any, torch.Tensor | None, torch.Tensor | None, str]] = []
        super().__init__(model, **kwargs)

    def plan_observation(self, sobs: SigmaObservation) -> tuple[torch.Tensor, ...]:
        self.records.append((sobs, self.tau, self.memory, instruction_target(self.instruction)))
        return super().plan_observation(sobs)


def collect_plan_inputs(model, episodes: int, seed: int, max_steps: int = 450, replan_every: int | None = None,
                        progress: bool = False) -> tuple[list[PlanInput], dict[str, Any]]:
    """Plan inputs of ``episodes`` closed-loop template episodes (seeds ``seed``..), and how those episodes went."""
    config = ClosedLoopConfig(episodes=episodes, seed=seed, conditions=("sigma",), variations=("nominal",),
                              max_steps=max_steps, replan_every=replan_every or model.config.n_action_steps,
                              expert_reference=False)
    env = evaluation_env(config, model.config.image_size, model.config.image_size)
    policy = RecordingSigmaPolicy(model, replan_every=config.replan_every)
    try:
        outcomes = run_conditions(env, {"sigma": policy}, config, progress)
    finally:
        env.close()
    c = model.config

    def carried(value: torch.Tensor | None, width: int = 0) -> torch.Tensor | None:  # normal, not inference tensors
        return (torch.zeros(1, width) if width else None) if value is None else value.detach().cpu().clone()

    inputs = [PlanInput(SigmaObservation(*(carried(getattr(obs, f)) for f in OBSERVATION_FIELDS)),
                        carried(tau, c.d_tau).float(), carried(memory, c.d_model).float(), key)
              for obs, tau, memory, key in policy.records]
    return inputs, {"episodes": episodes, "seeds": seed_range(seed, episodes),
                    "successes": sum(o.success for o in outcomes), "plans": len(inputs)}


def align_on_simulator(model, episodes: int = 40, seed: int = 40_000, config: AlignmentConfig | None = None,
                       max_steps: int = 450, replan_every: int | None = None, progress: bool = False
                       ) -> dict[str, Any]:
    """Collect plan inputs with the templates, then align every training wording to them (``model`` in place)."""
    inputs, rollouts = collect_plan_inputs(model, episodes, seed, max_steps, replan_every, progress)
    config = config or AlignmentConfig()

    def report(step: int, loss: float) -> None:
        if progress and step % 50 == 0:
            print(f"[align] step {step}/{config.steps} loss {loss:.4f}", file=sys.stderr, flush=True)

    metrics = align_language(model, inputs, {r: TRAINING_WORDINGS[r] for r in INSTRUCTIONS}, INSTRUCTIONS, config,
                             progress=report)
    return {"rollouts": rollouts, "config": vars(config), **metrics}
