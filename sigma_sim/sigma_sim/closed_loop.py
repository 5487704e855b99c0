# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""In-process closed-loop evaluation of Sigma in the simulated SO-101 (no ROS).

Each episode: ``SO101PickPlaceEnv.reset(seed)`` with a randomised cube pose and an instruction
(left/right, alternating, wording drawn from the seed); every ``replan_every`` control ticks the
model runs its stages on the current camera frame and joint positions (vision -> language ->
action, carrying tau and the semantic memory from plan to plan like the ROS nodes do), and every
tick ``model.control_stage(..., step_index=k)`` turns tick ``k`` of the newest plan into a joint
target, which goes through the shared :class:`sigma_model.safety.SafetyFilter` (per-tick step
limit, joint limits) before ``env.step``. An episode succeeds when the task is solved (cube
carried, released and resting in the instructed region) for ``success_hold_steps`` consecutive
ticks; it stops there or after ``max_steps`` ticks.

Conditions (same names as the offline evaluation, :mod:`sigma_model.evaluation.replay`):

    sigma                  telepathy on,  adapter off
    sigma_adapter          telepathy on,  risk-gated adapter on (paper 4.3)
    telepathy_off          telepathy off (tau = 0 path), adapter off
    telepathy_off_adapter  telepathy off, adapter on
    baseline               a separate baseline checkpoint (telepathy off) when given, else the
                           model's tau = 0 path
    expert                 the scripted expert (privileged simulator state): the task's ceiling
    lerobot                a LeRobot policy checkpoint of any type (``--policy-path``), reported as
                           ``lerobot_<type>`` (:mod:`sigma_sim.lerobot_closed_loop`)

:class:`EvalEpisode` (seeded reset, safety filter, success held for ``success_hold_steps`` ticks) is
the evaluation's side of an episode, shared with the LeRobot env of :mod:`sigma_sim.lerobot_env`.

Every condition sees the same episode seeds (cube pose, target region) and diffusion noise seeds, under each
of ``variations`` (:mod:`sigma_sim.episode_variations`: nominal, wide_range, perturbed_view, paraphrase,
paraphrase_selection), which vary the episode, not the policy; each variation of episode ``i`` keeps seed
``seed + i``, so it is paired with the nominal run.
Per episode it records success, time to success, action smoothness (mean |delta command| per
tick and the mean squared third difference of the commands, "jerk"), per-stage latency and the
safety filter's interventions (step-limited ticks; targets it rejected, non-finite or mis-sized, while the
arm held). Every plan of a Sigma condition is also scored as the paper scores a replayed window
(:class:`ExpertReference`): its action vector, chunk and trajectory against the scripted expert's actions
from the same simulator state (a physics-only copy takes over and runs the horizon; the episode itself is
untouched), with tau L2, the semantic-text alignment and the hard plans. :func:`build_closed_loop_report`
aggregates them with ``sigma_model.evaluation.report.build_report`` into ``sigma_eval_report.json`` (format
``sigma-eval-v2``): a *sample* is a plan and a *batch* an episode, so ``num_samples`` counts plans and
``avg_mse_*`` are means over plans; ``episode_success_rate`` is the fraction of episodes solved (no
window success rate here); fields that do not apply (the expert condition is the reference itself)
are null with the reason under ``not_applicable``. CHECK A compares the checkpoint's heads with the
initialisation its training run recorded. A ``closed_loop`` section adds Wilson confidence intervals. The
report's paper fields, ``conditions`` and ``closed_loop`` describe the nominal episodes; each condition's
``episode_success_by_variation`` has every variation's success rate (Wilson 95% CI) and its discordant pairs
with the nominal episodes and its ``safety_rejected_targets`` the policy targets the safety filter rejected, per
variation (a policy emitting NaN shows there and in the printed summary); ``variations`` says what each variation
changed.

Command line::

    sigma-closed-loop --checkpoint checkpoints/sigma_so101_default --episodes 50
    sigma-closed-loop --policy-path outputs/train/act/checkpoints/last/pretrained_model --episodes 50
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sigma_model.safety import SafetyConfig, SafetyFilter
from sigma_sim.episode_variations import (
    check_variations,
    describe_variations,
    episode_instruction,
    format_variation_table,
    reset_options,
    success_by_variation,
    success_entry,
)

CONDITIONS: dict[str, tuple[bool, bool]] = {
    "sigma": (True, False),
    "sigma_adapter": (True, True),
    "telepathy_off": (False, False),
    "telepathy_off_adapter": (False, True),
}
ALL_CONDITIONS = (*CONDITIONS, "baseline", "expert", "lerobot")
LABELS = {
    "sigma": "Sigma (telepathy on)",
    "sigma_adapter": "Sigma + adapter",
    "telepathy_off": "telepathy off (tau = 0)",
    "telepathy_off_adapter": "telepathy off + adapter",
    "baseline": "baseline",
    "expert": "scripted expert (privileged state)",
    "lerobot": "LeRobot policy",
}
STAGES = ("vision", "language", "action", "adapter", "control")


@dataclass
class ClosedLoopConfig:
    """Options of a closed-loop evaluation run."""

    episodes: int = 50  # episodes per condition and variation
    seed: int = 10_000  # episode i uses env seed seed + i (never a training seed with the default recipe)
    conditions: tuple[str, ...] = ("sigma", "telepathy_off", "sigma_adapter")
    variations: tuple[str, ...] = ("nominal",)  # episode variations (sigma_sim.episode_variations.VARIATIONS)
    replan_every: int | None = None  # control ticks between plans (None: the model's n_action_steps)
    # the pipeline latency of a robot graph, emulated: a plan is ready this many ticks after its observation and
    # starts at that step, the previous plan running meanwhile (0: the arm waits for every plan)
    plan_latency_ticks: int = 0
    diffusion_steps: int | None = None  # the DiT's integration steps per plan (None: the checkpoint's)
    max_steps: int = 450  # 15 s at 30 Hz
    success_hold_steps: int = 5  # ticks the cube must stay in the target region to count as a success
    max_step_rad: float = 0.15  # safety filter: max change per tick relative to the measured position
    silent_audio: bool = True  # feed a zero audio chunk (what the sim node publishes) when the model uses audio
    carry_memory: bool = True  # carry tau / semantic memory from plan to plan (as the ROS graph does)
    expert_reference: bool = True  # score every plan against the scripted expert's actions from the same state
    # MSE above which a plan counts as hard (against the expert), per target: {vec: 0.1, chunk: 0.2, traj: 0.2}
    hard_thresholds: dict[str, float] = field(default_factory=lambda: {"vec": 0.1, "chunk": 0.2, "traj": 0.2})
    threads: int = 1  # torch CPU threads
    control_hz: float = 30.0  # control rate of the simulated arm

    def __post_init__(self) -> None:
        self.conditions = tuple(self.conditions)
        unknown = [c for c in self.conditions if c not in ALL_CONDITIONS]
        if unknown or not self.conditions:
            raise ValueError(f"conditions must be a non-empty subset of {ALL_CONDITIONS}, got {self.conditions}")
        self.variations = check_variations(self.variations)
        for name in ("episodes", "replan_every", "diffusion_steps", "max_steps", "success_hold_steps"):
            v = getattr(self, name)
            if name in ("replan_every", "diffusion_steps") and v is None:
                continue
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"ClosedLoopConfig.{name} must be a positive int, got {v!r}")
        if not isinstance(self.plan_latency_ticks, int) or self.plan_latency_ticks < 0:
            raise ValueError(f"ClosedLoopConfig.plan_latency_ticks must be an int >= 0, "
                             f"got {self.plan_latency_ticks!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"ClosedLoopConfig.seed must be an int >= 0, got {self.seed!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads <= 0:
            raise ValueError(f"ClosedLoopConfig.threads must be a positive int, got {self.threads!r}")
        for name in ("max_step_rad", "control_hz"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"ClosedLoopConfig.{name} must be a finite number > 0, got {getattr(self, name)!r}")


#: ``SigmaConfig.notes["env_state"]`` of models trained on :func:`cube_env_state` features.
ENV_STATE_ENCODING = "cube_pose_normalized_v1"


def cube_env_state(cube_pos, cube_quat, encoding: str | None = ENV_STATE_ENCODING) -> np.ndarray:
    """PRIVILEGED simulator state for models with ``env_state_dim = 7``: the cube pose.

    ``cube_pose_normalized_v1``: ((x - 0.21) / 0.05, y / 0.05, (z - 0.02) / 0.05, qw, qx / 0.2, qy / 0.2,
    qz / 0.2), i.e. unit scale over the workspace; ``None``: the raw pose (x, y, z, qw, qx, qy, qz).
    """
    pos = np.asarray(cube_pos, dtype=np.float64).reshape(3)
    quat = np.asarray(cube_quat, dtype=np.float64).reshape(4)
    if encoding is None or encoding == "raw":
        return np.concatenate([pos, quat]).astype(np.float32)
    if encoding != ENV_STATE_ENCODING:
        raise ValueError(f"unknown env_state encoding {encoding!r}")
    return np.array([(pos[0] - 0.21) / 0.05, pos[1] / 0.05, (pos[2] - 0.02) / 0.05,
                     quat[0], quat[1] / 0.2, quat[2] / 0.2, quat[3] / 0.2], dtype=np.float32)


def env_state_encoding(config) -> str | None:
    return (config.notes or {}).get("env_state")


# ---------------------------------------------------------------------------------- policies
class SigmaPolicy:
    """Sigma in a control loop.

    Plans every ``replan_every`` ticks (default: the model's ``n_action_steps``), fuses + C_low every tick.
    With ``latency_ticks`` = d > 0 a plan (after the first, which the arm waits for) is used from d ticks after its
    observation, starting at step d, as a robot graph's controller aligns a plan to its camera frame; the previous
    plan runs on meanwhile.
    """

    def __init__(self, model, telepathy: bool = True, adapter=None, replan_every: int | None = None,
                 silent_audio: bool = True, carry_memory: bool = True, reference=None, latency_ticks: int = 0) -> None:
        self.model = model.eval()
        self.reference = reference  # ExpertReference: each plan is scored against the expert's actions
        self.config = model.config
        self.telepathy = telepathy
        self.adapter = adapter
        self.replan_every = model.config.n_action_steps if replan_every is None else replan_every
        self.latency_ticks = latency_ticks
        self.silent_audio = silent_audio and self.config.use_audio
        self.carry_memory = carry_memory
        self.latency: dict[str, list[float]] = {s: [] for s in STAGES}
        self.diagnostics: dict[str, list[float]] = {"tau_l2": [], "sem_align": [], "adapter_scale": [],
                                                    "adapter_fallback": []}
        self._text_cache: dict[str, Any] = {}
        self.reset("pick the cube", 0)

    def reset(self, instruction: str, seed: int) -> None:
        from sigma_model.evaluation.replay import text_embedding

        self.instruction = instruction
        if instruction not in self._text_cache:
            tokens = self.model.tokenize([instruction])
            with torch.inference_mode():
                self._text_cache[instruction] = (tokens, text_embedding(self.model, tokens))
        self.tokens, self.text_embedding = self._text_cache[instruction]
        self.scores: list[tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]] = []  # (plan, expert) per plan
        self.tau = None
        self.memory = None
        self.plan = None
        self.pending: tuple[tuple[torch.Tensor, ...], int] | None = None  # (plan, tick it is ready)
        self.tick = 0
        self.tick_in_plan = 0
        self.generator = torch.Generator().manual_seed(int(seed))
        self.plans = 0

    def observation(self, obs: dict[str, np.ndarray]):
        from sigma_model import SigmaObservation

        c = self.config
        image = torch.from_numpy(np.ascontiguousarray(obs["image"])).permute(2, 0, 1).unsqueeze(0)
        if image.shape[-1] != c.image_size or image.shape[-2] != c.image_size:
            image = torch.nn.functional.interpolate(image.float() / 255.0, size=(c.image_size, c.image_size),
                                                    mode="bilinear", align_corners=False, antialias=True)
        state = torch.from_numpy(np.asarray(obs["joint_positions"], dtype=np.float32)).unsqueeze(0)
        audio = torch.zeros(1, c.audio_chunk_samples) if self.silent_audio else None
        env_state = None
        if c.env_state_dim:
            pose = cube_env_state(obs["cube_pos"], obs["cube_quat"], env_state_encoding(c))[: c.env_state_dim]
            env_state = torch.from_numpy(pose).unsqueeze(0)
        return SigmaObservation(image=image, robot_state=state, audio=audio, env_state=env_state)

    def replan(self, obs: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
        """Return a plan (vector, chunk, trajectory) from the simulator's ``obs``, carrying tau and the memory on."""
        return self.plan_observation(self.observation(obs))

    @torch.inference_mode()
    def plan_observation(self, sobs) -> tuple[torch.Tensor, ...]:
        """Return a plan from a :class:`~sigma_model.SigmaObservation`, carrying tau and the memory on."""
        m = self.model
        t0 = time.perf_counter()
        vis = m.vision_stage(sobs, self.tau if self.telepathy else None)
        t1 = time.perf_counter()
        lang = m.language_stage(self.tokens, vis.vision_tokens, vis.state_tokens, self.memory, self.telepathy,
                                image_tokens=vis.backbone_image_tokens, robot_state=sobs.robot_state,
                                generator=self.generator)
        t2 = time.perf_counter()
        act = m.action_stage(lang.high_level_rep, lang.high_level_mask, lang.tau, vis.state_tokens,
                             telepathy=self.telepathy, generator=self.generator, backbone_actions=lang.backbone_actions)
        t3 = time.perf_counter()
        plan = (act.action_vector, act.action_chunk, act.action_trajectory)
        if self.adapter is not None:
            res = self.adapter.adapt_output(act, lang.tau)
            plan = (res.action_vector, res.action_chunk, res.action_trajectory)
            self.diagnostics["adapter_scale"].append(float(res.scale.mean()))
            self.diagnostics["adapter_fallback"].append(float(res.fallback.float().mean()))
        t4 = time.perf_counter()
        self.latency["vision"].append(t1 - t0)
        self.latency["language"].append(t2 - t1)
        self.latency["action"].append(t3 - t2)
        if self.adapter is not None:
            self.latency["adapter"].append(t4 - t3)
        self.diagnostics["tau_l2"].append(float(lang.tau.norm(dim=-1).mean()))
        self.diagnostics["sem_align"].append(float(torch.nn.functional.cosine_similarity(
            lang.z_sem_pool.float(), self.text_embedding, dim=-1).mean()))
        if self.reference is not None:
            c = self.config
            ref = torch.from_numpy(self.reference(max(c.chunk_len, c.traj_len))).float()
            self.scores.append((tuple(t[0].float() for t in plan), (ref[0], ref[:c.chunk_len], ref[:c.traj_len])))
        if self.carry_memory:
            self.tau, self.memory = lang.tau, lang.memory
        self.plans += 1
        return plan

    @torch.inference_mode()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self.plan is None:
            self.plan, self.tick_in_plan = self.replan(obs), 0
        elif self.pending is None and self.tick_in_plan >= self.replan_every:
            self.pending = (self.replan(obs), self.tick + self.latency_ticks)
        if self.pending is not None and self.tick >= self.pending[1]:
            self.plan, self.tick_in_plan = self.pending[0], self.latency_ticks
            self.pending = None
        self.tick += 1
        state = torch.from_numpy(np.asarray(obs["joint_positions"], dtype=np.float32)).unsqueeze(0)
        t0 = time.perf_counter()
        cmd = self.model.control_stage(*self.plan, state, step_index=self.tick_in_plan)
        self.latency["control"].append(time.perf_counter() - t0)
        self.tick_in_plan += 1
        return cmd[0].double().numpy()


class ExpertReference:
    """The scripted expert's actions from the current simulator state, the reference of a plan's MSEs.

    A physics-only copy of the scene takes the state over (``ScriptedExpert.reset``, as the expert takes over from a
    lead policy in sigma-sim-record) and runs ``horizon`` ticks; ``env`` is untouched.
    """

    def __init__(self, env) -> None:
        from sigma_sim.expert import ScriptedExpert
        from sigma_sim.so101_env import SO101PickPlaceEnv

        self.env = env
        self.shadow = SO101PickPlaceEnv(replace(env.config, render_observations=False))
        self.expert = ScriptedExpert(self.shadow)

    def __call__(self, horizon: int) -> np.ndarray:
        """[horizon, 6] joint targets."""
        self.shadow.copy_state_from(self.env)
        self.expert.reset()
        actions = []
        for _ in range(horizon):
            actions.append(np.asarray(self.expert.act(), dtype=np.float64))
            self.shadow.step(actions[-1])
        return np.stack(actions)


class ExpertPolicy:
    """The scripted expert (reads the simulator state): the reference ceiling of the task."""

    def __init__(self, env) -> None:
        from sigma_sim.expert import ScriptedExpert

        self.expert = ScriptedExpert(env)
        self.latency: dict[str, list[float]] = {}
        self.diagnostics: dict[str, list[float]] = {}
        self.plans = 0

    def reset(self, instruction: str, seed: int) -> None:
        self.expert.reset()

    def act(self, obs) -> np.ndarray:
        return np.asarray(self.expert.act(), dtype=np.float64)


# ---------------------------------------------------------------------------------- episodes
@dataclass
class EpisodeOutcome:
    condition: str
    episode: int
    seed: int
    instruction: str
    success: bool
    steps: int
    time_to_success_s: float | None
    was_lifted: bool
    mean_abs_delta_command: float
    mean_sq_jerk: float
    safety_step_limited_fraction: float
    plans: int
    latency_ms: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    plan_errors: dict[str, Any] = field(default_factory=dict)  # plan_errors(): the plans' MSEs against the expert
    variation: str = "nominal"
    rejected_targets: int = 0  # policy targets the safety filter rejected (non-finite or mis-sized): the arm held

    def record(self) -> dict[str, Any]:
        """Return a per-episode record for sigma_model.evaluation.report.build_report.

        batch = episode, sample = plan: tau, alignment and the errors are means over the episode's plans.
        """
        rec: dict[str, Any] = {
            "condition": self.condition, "variation": self.variation, "batch": self.episode, "num_samples": self.plans,
            "episode_success": int(self.success), **self.plan_errors,
            "time_to_success_s": self.time_to_success_s, "episode_steps": self.steps,
            "lifted": float(self.was_lifted), "mean_abs_delta_command": self.mean_abs_delta_command,
            "mean_sq_jerk": self.mean_sq_jerk, "safety_step_limited_fraction": self.safety_step_limited_fraction,
            "safety_rejected_targets": self.rejected_targets, "plans": self.plans, "wall_s": self.wall_s,
        }
        rec.update(self.diagnostics)
        for k, v in self.latency_ms.items():
            rec[f"latency_ms_{k}"] = v
        return rec


def plan_errors(policy, config: ClosedLoopConfig) -> dict[str, Any]:
    """Return the paper's per-sample fields over the episode's scored plans; {} when none was scored.

    Fields: vector / chunk / trajectory MSE against the expert's actions from the same state, hard plans and their MSEs.
    """
    from sigma_model.evaluation.replay import batch_record

    scores = getattr(policy, "scores", None)
    if not scores:
        return {}
    plans = [torch.stack([s[0][k] for s in scores]) for k in range(3)]
    expert = [torch.stack([s[1][k] for s in scores]) for k in range(3)]
    rec = batch_record("", 0, plans, expert, None, None, config.hard_thresholds)
    return {k: v for k, v in rec.items() if k not in ("condition", "batch", "num_samples", "tau_l2", "sem_align")}


def smoothness(commands: np.ndarray) -> tuple[float, float]:
    """(mean |delta command| per tick in rad, mean squared third difference in (rad/tick^3)^2)."""
    if len(commands) < 2:
        return 0.0, 0.0
    d1 = np.diff(commands, axis=0)
    jerk = np.diff(commands, n=3, axis=0) if len(commands) >= 4 else np.zeros((1, commands.shape[1]))
    return float(np.abs(d1).mean()), float((jerk**2).mean())


def episode_safety_filter(config: ClosedLoopConfig) -> SafetyFilter:
    """Return the per-episode safety filter (step and joint limits; plans never time out in-process)."""
    return SafetyFilter(SafetyConfig(max_step=config.max_step_rad, plan_timeout_s=1e9))


def filtered_command(safety: SafetyFilter, target, joint_positions, now: float) -> tuple[np.ndarray, bool]:
    """Return the command the filter lets through for a policy target and whether it limited the step.

    On a hold the command is the measured position.
    """
    safety.feed_plan(now)
    decision = safety.step(target, joint_positions, now)
    command = decision.command if decision.command is not None else np.asarray(joint_positions, float)
    return command, bool(decision.clamped_step)


class EvalEpisode:
    """The evaluation's side of one closed-loop episode.

    Shared by :func:`run_episode` and the LeRobot env (:mod:`sigma_sim.lerobot_env`): ``reset(seed, instruction,
    variation)`` starts it; ``step(target)`` passes the policy's joint target through the episode's safety filter to
    the simulator and counts the ticks the task stays solved; it succeeds once solved for ``success_hold_steps``
    consecutive ticks and is ``done`` then or after ``max_steps`` ticks.
    """

    def __init__(self, env, config: ClosedLoopConfig) -> None:
        self.env, self.config = env, config
        self.instruction, self.seed, self.variation = "", 0, "nominal"

    def reset(self, seed: int, instruction: str, variation: str = "nominal"
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self.obs, self.info = self.env.reset(seed=seed, instruction=instruction, options=reset_options(variation))
        self.seed, self.instruction, self.variation = seed, instruction, variation
        self.safety = episode_safety_filter(self.config)
        self.commands: list[np.ndarray] = []
        self.steps = self.streak = self.step_limited = 0
        self.first_success_step: int | None = None
        self.success = False
        return self.obs, self.info

    @property
    def done(self) -> bool:
        return self.success or self.steps >= self.config.max_steps

    @property
    def rejected_targets(self) -> int:
        """Targets of this episode the safety filter rejected (non-finite or mis-sized; the arm held)."""
        return self.safety.rejected_targets

    def step(self, target) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.done:
            raise RuntimeError("the episode is over: reset it first")
        self.steps += 1
        command, clamped = filtered_command(self.safety, target, self.obs["joint_positions"],
                                            self.steps * self.env.control_dt)
        self.step_limited += int(clamped)
        self.commands.append(command)
        self.obs, _, _, _, self.info = self.env.step(command)
        if self.info["success"]:
            if self.streak == 0:
                self.first_success_step = self.steps
            self.streak += 1
            self.success = self.streak >= self.config.success_hold_steps
        else:
            self.streak = 0
        return self.obs, self.info


def run_episode(env, policy, seed: int, instruction: str, config: ClosedLoopConfig, condition: str = "sigma",
                episode: int = 0, variation: str = "nominal") -> EpisodeOutcome:
    """One closed-loop episode of ``policy`` (``reset(instruction, seed)`` / ``act(obs)``) under ``variation``."""
    t_wall = time.perf_counter()
    run = EvalEpisode(env, config)
    obs, _ = run.reset(seed, instruction, variation)
    policy.reset(instruction, seed)
    for values in policy.latency.values():
        values.clear()
    for values in policy.diagnostics.values():
        values.clear()
    while not run.done:
        obs, _ = run.step(policy.act(obs))
    d_cmd, jerk = smoothness(np.asarray(run.commands))
    latency = {k: 1e3 * float(np.mean(v)) for k, v in policy.latency.items() if v}
    diagnostics = {k: float(np.mean(v)) for k, v in policy.diagnostics.items() if v}
    return EpisodeOutcome(
        condition=condition, episode=episode, seed=seed, instruction=instruction, success=run.success, steps=run.steps,
        time_to_success_s=run.first_success_step * env.control_dt if run.success else None,
        was_lifted=bool(run.info.get("was_lifted", False)), mean_abs_delta_command=d_cmd, mean_sq_jerk=jerk,
        safety_step_limited_fraction=run.step_limited / max(1, run.steps), plans=policy.plans, latency_ms=latency,
        diagnostics=diagnostics, wall_s=time.perf_counter() - t_wall, plan_errors=plan_errors(policy, config),
        variation=variation, rejected_targets=run.rejected_targets,
    )


def run_conditions(
    env, policies: dict[str, Any], config: ClosedLoopConfig, progress: bool = False
) -> list[EpisodeOutcome]:
    """Every policy (condition name -> policy) over the same episodes, under each of ``config.variations``.

    Episode ``i`` of every variation has seed ``config.seed + i`` and the instruction :func:`episode_instruction`
    ``(i, seed, variation)``.
    """
    outcomes: list[EpisodeOutcome] = []
    t0 = time.perf_counter()
    for name, policy in policies.items():
        for variation in config.variations:
            wins = 0
            for i in range(config.episodes):
                seed = config.seed + i
                out = run_episode(env, policy, seed, episode_instruction(i, seed, variation), config, condition=name,
                                  episode=i, variation=variation)
                outcomes.append(out)
                wins += out.success
                if progress:
                    print(f"[closed-loop] {name:<22} {variation:<14} ep {i + 1:>3}/{config.episodes} seed {seed} "
                          f"{'ok  ' if out.success else 'FAIL'} steps {out.steps:>3} "
                          f"({wins}/{i + 1} ok, {time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
    return outcomes


# -------------------------------------------------------------------------------- evaluation
def rejected_by_variation(outcomes: list[EpisodeOutcome]) -> dict[str, int]:
    """{variation: policy targets the safety filter rejected over its episodes}."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.variation] = counts.get(o.variation, 0) + o.rejected_targets
    return counts


def build_closed_loop_report(outcomes: list[EpisodeOutcome], config: ClosedLoopConfig,
                             condition_info: dict[str, dict[str, Any]] | None = None,
                             meta: dict[str, Any] | None = None,
                             check_a: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(report dict in the sigma-eval-v2 format, per-episode records of every variation).

    Everything but ``episode_success_by_variation`` and ``variations`` describes the nominal episodes.
    """
    from sigma_model.evaluation.report import build_report

    records = [o.record() for o in outcomes]
    nominal = [o for o in outcomes if o.variation == "nominal"]
    info = {}
    for name in dict.fromkeys(o.condition for o in outcomes):
        tel, ada = CONDITIONS.get(name, (False, False))
        info[name] = {"telepathy": tel, "adapter": ada, "label": LABELS.get(name, name)}
        info[name].update((condition_info or {}).get(name, {}))
    closed = {}
    for name in info:
        outs = [o for o in nominal if o.condition == name]
        times = [o.time_to_success_s for o in outs if o.time_to_success_s is not None]
        closed[name] = {
            **success_entry(outs), "mean_time_to_success_s": float(np.mean(times)) if times else None,
            "median_time_to_success_s": float(np.median(times)) if times else None,
            "mean_abs_delta_command": float(np.mean([o.mean_abs_delta_command for o in outs])),
            "mean_sq_jerk": float(np.mean([o.mean_sq_jerk for o in outs])),
            "lift_rate": float(np.mean([o.was_lifted for o in outs])),
            "failed_seeds": [o.seed for o in outs if not o.success],
            "instructions": list(dict.fromkeys(o.instruction for o in outs)),  # distinct, in episode order
            "episode_success_by_variation": success_by_variation([o for o in outcomes if o.condition == name]),
            "safety_rejected_targets": rejected_by_variation([o for o in outcomes if o.condition == name]),
        }
    expert = "the scripted expert is the reference of the plan errors"
    not_applicable = {
        "expert": {
            **{
                f: expert
                for f in (
                    "avg_mse_vector",
                    "avg_mse_chunk",
                    "avg_mse_traj",
                    "avg_hard_mse_vector",
                    "avg_hard_mse_chunk",
                    "avg_hard_mse_traj",
                    "hard_sample_fraction",
                    "total_hard_samples",
                )
            },
            "avg_tau_l2": "the scripted expert has no telepathy factors",
            "avg_semantic_text_alignment": "the scripted expert has no semantic factors",
        }
    }
    report = build_report(
        [r for r in records if r["variation"] == "nominal"],
        reference="__none__",
        condition_info=info,
        hard_thresholds=config.hard_thresholds,
        not_applicable=not_applicable,
        check_a=check_a,
        table_every=10,
        meta={
            "mode": "closed_loop_in_process",
            "episodes": config.episodes,
            "seeds": [config.seed, config.seed + config.episodes - 1],
            "replan_every": config.replan_every,
            "plan_latency_ticks": config.plan_latency_ticks,
            "control_hz": config.control_hz,
            "max_steps": config.max_steps,
            "success_hold_steps": config.success_hold_steps,
            "safety_max_step_rad": config.max_step_rad,
            "units": "a sample is a plan, a batch an episode; MSEs in rad^2 against the scripted expert's "
            "actions from the plan's simulator state",
            "config": asdict(config),
            **(meta or {}),
        },
    )
    report["closed_loop"] = closed
    report["variations"] = describe_variations(dict.fromkeys(o.variation for o in outcomes))
    return report, records


def evaluation_env(config: ClosedLoopConfig, image_width: int = 96, image_height: int = 96):
    """Return the simulator an evaluation runs in.

    ``config.control_hz``, camera of the policy's image size, room for ``config.max_steps`` ticks.
    """
    from sigma_sim.so101_env import SimConfig, SO101PickPlaceEnv

    return SO101PickPlaceEnv(SimConfig(control_hz=config.control_hz, image_width=image_width,
                                       image_height=image_height, max_episode_steps=config.max_steps + 1))


def evaluate(model, config: ClosedLoopConfig | None = None, adapter_config=None, baseline_model=None,
             progress: bool = False, env=None, init_heads: str | Path | None = None
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run every condition over the same seeded episodes; returns (report, per-episode records).

    CHECK A compares ``model``'s heads with ``init_heads`` (not run without).
    """
    from sigma_model.evaluation.adapter import RiskGatedAdapter
    from sigma_model.evaluation.check_a import check_a_section

    cfg = config or ClosedLoopConfig()
    if "lerobot" in cfg.conditions:
        raise ValueError("the 'lerobot' condition evaluates a LeRobot policy: use "
                         "sigma_sim.lerobot_closed_loop.evaluate_lerobot_policy (sigma-closed-loop --policy-path)")
    if cfg.replan_every is None and model is not None:
        cfg = replace(cfg, replan_every=model.config.n_action_steps)
    torch.set_num_threads(cfg.threads)
    own_env = env is None
    if env is None:
        size = model.config.image_size if model is not None else 96
        env = evaluation_env(cfg, size, size)
    adapter = RiskGatedAdapter(adapter_config)
    reference = ExpertReference(env) if cfg.expert_reference else None
    policies: dict[str, Any] = {}
    info: dict[str, dict[str, Any]] = {}
    for name in cfg.conditions:
        if name == "expert":
            policies[name] = ExpertPolicy(env)
        elif name == "baseline":
            base = baseline_model if baseline_model is not None else model
            policies[name] = SigmaPolicy(base, telepathy=False, replan_every=cfg.replan_every,
                                         silent_audio=cfg.silent_audio, carry_memory=cfg.carry_memory,
                                         reference=reference, latency_ticks=cfg.plan_latency_ticks)
            info[name] = {"source": "checkpoint" if baseline_model is not None else "tau0",
                          "description": "separate baseline checkpoint, telepathy off" if baseline_model is not None
                          else "the model's tau = 0 path (no separate baseline checkpoint given)"}
        else:
            tel, ada = CONDITIONS[name]
            policies[name] = SigmaPolicy(model, telepathy=tel, adapter=adapter if ada else None,
                                         replan_every=cfg.replan_every, silent_audio=cfg.silent_audio,
                                         carry_memory=cfg.carry_memory, reference=reference,
                                         latency_ticks=cfg.plan_latency_ticks)
    t0 = time.perf_counter()
    try:
        outcomes = run_conditions(env, policies, cfg, progress)
    finally:
        if own_env:
            env.close()
    meta = {
        "seconds": time.perf_counter() - t0,
        "adapter_config": adapter.config.to_dict(),
        "threads": torch.get_num_threads(),
    }
    check = (check_a_section(model, init_heads=init_heads, control_model=baseline_model) if model is not None
             else {"passed": None, "status": "not run: no model (expert only)"})
    return build_closed_loop_report(outcomes, cfg, info, meta, check)


def prepare_report_dir(out_dir: str | Path, overwrite: bool) -> None:
    """Before any episode: refuse a report already in ``out_dir`` (unless ``overwrite``), create ``out_dir``.

    Raises:
        OSError: One line: a report there, ``out_dir`` not a directory or not writable.
    """
    from sigma_model.evaluation.report import refuse_existing_report

    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file, not a directory for the report")
    refuse_existing_report(path, overwrite)
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{path} is not writable")


def write_closed_loop_report(report: dict[str, Any], records: list[dict[str, Any]], out_dir: str | Path) -> Path:
    from sigma_model.evaluation.report import write_report

    paths = write_report(report, records, out_dir, plots=False)
    return paths["report"]


def evaluate_checkpoint(
    checkpoint: str | Path,
    config: ClosedLoopConfig | None = None,
    out_dir: str | Path | None = None,
    adapter_config=None,
    baseline_checkpoint: str | Path | None = None,
    progress: bool = False,
    init_heads: str | Path | None = None,
) -> dict[str, Any]:
    """Load a checkpoint (a sigma_model checkpoint dir), evaluate it, optionally write the report.

    CHECK A uses ``init_heads``, by default the training run's initialisation file when found.
    """
    from sigma_model import load_checkpoint

    from sigma_model.evaluation.check_a import find_init_heads

    model = load_checkpoint(checkpoint)
    baseline = load_checkpoint(baseline_checkpoint) if baseline_checkpoint else None
    if config is not None and config.diffusion_steps is not None:
        for m in (model, baseline):
            if m is not None:
                m.config.diffusion_steps = config.diffusion_steps
    report, records = evaluate(model, config, adapter_config=adapter_config, baseline_model=baseline, progress=progress,
                               init_heads=init_heads if init_heads is not None else find_init_heads(checkpoint))
    report["meta"]["checkpoint"] = str(checkpoint)
    if out_dir is not None:
        write_closed_loop_report(report, records, out_dir)
    return report


def format_summary(report: dict[str, Any]) -> str:
    from sigma_model.evaluation.evaluate import format_check_a

    lines = [f"{'condition':<36}{'success':>9}{'95% CI':>15}{'t_success(s)':>14}{'|dcmd|':>9}{'jerk':>11}"
             f"{'mse vec/chk/trj vs expert':>30}"]
    closed = report.get("closed_loop", {})
    labels = {name: report.get("conditions", {}).get(name, {}).get("label") or LABELS.get(name, name)
              for name in closed}
    for name, c in closed.items():
        label = labels[name]
        lo, hi = c["episode_success_rate_ci95"]
        ci = "-" if lo is None else f"[{lo:.2f},{hi:.2f}]"
        t = c["mean_time_to_success_s"]
        cond = report.get("conditions", {}).get(name, {})
        mse = [cond.get(f) for f in ("avg_mse_vector", "avg_mse_chunk", "avg_mse_traj")]
        mse_s = "-" if mse[0] is None else "/".join(f"{v:.4f}" for v in mse)
        lines.append(
            f"{label:<36}{c['successes']:>4}/{c['episodes']:<4}{ci:>15}"
            f"{'-' if t is None else f'{t:.2f}':>14}{c['mean_abs_delta_command']:>9.4f}{c['mean_sq_jerk']:>11.2e}"
            f"{mse_s:>30}"
        )
    for name, c in closed.items():
        rejected = {v: n for v, n in c.get("safety_rejected_targets", {}).items() if n}
        if rejected:
            lines.append(f"WARNING {labels[name]}: the safety filter rejected policy targets (non-finite or "
                         f"mis-sized; the arm held): {', '.join(f'{v} {n}' for v, n in rejected.items())}")
    lines += format_variation_table(report, LABELS)
    if report.get("check_a"):
        lines.append(format_check_a(report["check_a"]))
    return "\n".join(lines)
