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

``LeRobotPolicyAdapter`` lets any LeRobot policy (a ``select_action`` on LeRobot observations, with
its processors) act in the same ``run_episode``.

Every condition sees the same episode seeds (cube pose, instruction) and diffusion noise seeds.
Per episode it records success, time to success, action smoothness (mean |delta command| per
tick and the mean squared third difference of the commands, "jerk"), per-stage latency and the
safety filter's interventions; :func:`build_closed_loop_report` aggregates them with
``sigma_model.evaluation.report.build_report`` into ``sigma_eval_report.json`` (format
``sigma-eval-v1``; success_rate per condition, the per-episode values under ``extra``, plus a
``closed_loop`` section with Wilson confidence intervals).

Command line::

    python -m sigma_sim.closed_loop --checkpoint checkpoints/sigma_so101_default --episodes 50
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sigma_model.safety import SafetyConfig, SafetyFilter

CONDITIONS: dict[str, tuple[bool, bool]] = {
    "sigma": (True, False),
    "sigma_adapter": (True, True),
    "telepathy_off": (False, False),
    "telepathy_off_adapter": (False, True),
}
ALL_CONDITIONS = (*CONDITIONS, "baseline", "expert")
LABELS = {
    "sigma": "Sigma (telepathy on)",
    "sigma_adapter": "Sigma + adapter",
    "telepathy_off": "telepathy off (tau = 0)",
    "telepathy_off_adapter": "telepathy off + adapter",
    "baseline": "baseline",
    "expert": "scripted expert (privileged state)",
}
STAGES = ("vision", "language", "action", "adapter", "control")


@dataclass
class ClosedLoopConfig:
    """Options of a closed-loop evaluation run."""

    episodes: int = 50
    seed: int = 10_000  # episode i uses env seed seed + i (never a training seed with the default recipe)
    conditions: tuple[str, ...] = ("sigma", "telepathy_off", "sigma_adapter")
    replan_every: int | None = None  # control ticks between plans (None: the model's n_action_steps)
    diffusion_steps: int | None = None  # the DiT's integration steps per plan (None: the checkpoint's)
    max_steps: int = 450  # 15 s at 30 Hz
    success_hold_steps: int = 5
    max_step_rad: float = 0.15  # safety filter: max change per tick relative to the measured position
    silent_audio: bool = True  # feed a zero audio chunk (what the sim node publishes) when the model uses audio
    carry_memory: bool = True  # carry tau / semantic memory from plan to plan (as the ROS graph does)
    threads: int = 1
    control_hz: float = 30.0

    def __post_init__(self) -> None:
        self.conditions = tuple(self.conditions)
        unknown = [c for c in self.conditions if c not in ALL_CONDITIONS]
        if unknown or not self.conditions:
            raise ValueError(f"conditions must be a non-empty subset of {ALL_CONDITIONS}, got {self.conditions}")
        for name in ("episodes", "replan_every", "diffusion_steps", "max_steps", "success_hold_steps"):
            v = getattr(self, name)
            if name in ("replan_every", "diffusion_steps") and v is None:
                continue
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"ClosedLoopConfig.{name} must be a positive int, got {v!r}")
        if not self.max_step_rad > 0:
            raise ValueError("max_step_rad must be > 0")


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


def episode_instruction(index: int, seed: int) -> str:
    """Instruction of evaluation episode ``index`` (regions alternate, wording from the seed)."""
    from sigma_sim.record import instruction_for_episode

    return instruction_for_episode(index, seed)


# ---------------------------------------------------------------------------------- policies
class SigmaPolicy:
    """Sigma in a control loop: plans every ``replan_every`` ticks (default: the model's
    ``n_action_steps``), fuses + C_low every tick."""

    def __init__(self, model, telepathy: bool = True, adapter=None, replan_every: int | None = None,
                 silent_audio: bool = True, carry_memory: bool = True) -> None:
        self.model = model.eval()
        self.config = model.config
        self.telepathy = telepathy
        self.adapter = adapter
        self.replan_every = model.config.n_action_steps if replan_every is None else replan_every
        self.silent_audio = silent_audio and self.config.use_audio
        self.carry_memory = carry_memory
        self.latency: dict[str, list[float]] = {s: [] for s in STAGES}
        self.diagnostics: dict[str, list[float]] = {"tau_l2": [], "adapter_scale": [], "adapter_fallback": []}
        self._text_cache: dict[str, Any] = {}
        self.reset("pick the cube", 0)

    def reset(self, instruction: str, seed: int) -> None:
        self.instruction = instruction
        if instruction not in self._text_cache:
            self._text_cache[instruction] = self.model.tokenize([instruction])
        self.tokens = self._text_cache[instruction]
        self.tau = None
        self.memory = None
        self.plan = None
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

    @torch.inference_mode()
    def replan(self, obs: dict[str, np.ndarray]) -> None:
        m = self.model
        sobs = self.observation(obs)
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
        if self.carry_memory:
            self.tau, self.memory = lang.tau, lang.memory
        self.plan = plan
        self.tick_in_plan = 0
        self.plans += 1

    @torch.inference_mode()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self.plan is None or self.tick_in_plan >= self.replan_every:
            self.replan(obs)
        state = torch.from_numpy(np.asarray(obs["joint_positions"], dtype=np.float32)).unsqueeze(0)
        t0 = time.perf_counter()
        cmd = self.model.control_stage(*self.plan, state, step_index=self.tick_in_plan)
        self.latency["control"].append(time.perf_counter() - t0)
        self.tick_in_plan += 1
        return cmd[0].double().numpy()


class LeRobotPolicyAdapter:
    """Any LeRobot policy in the closed loop (Sigma's, ACT, Diffusion Policy, ...).

    Each tick the simulator's observation becomes the frame sigma-sim-record stores
    (``observation.images.front``, ``observation.state``) and goes through LeRobot's own single-step
    inference, ``lerobot.utils.control_utils.predict_action`` (preprocessor -> ``select_action`` ->
    postprocessor), as ``lerobot-record`` runs a policy on a robot; the episode's instruction is the
    task. ``reset`` resets the policy and its processors and seeds torch's global generator with the
    episode seed (policies that sample draw from it).
    """

    def __init__(self, policy, preprocessor, postprocessor) -> None:
        self.policy, self.preprocessor, self.postprocessor = policy, preprocessor, postprocessor
        self.device = torch.device(policy.config.device or "cpu")
        self.latency: dict[str, list[float]] = {"policy": []}
        self.diagnostics: dict[str, list[float]] = {}
        self.plans = 0  # not observable for a generic policy
        self.instruction = ""

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> LeRobotPolicyAdapter:
        """A policy saved by lerobot-train (``.../pretrained_model``) with its saved processors."""
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors
        from lerobot.utils.import_utils import register_third_party_plugins

        register_third_party_plugins()  # plugin policy types (lerobot_policy_*) register themselves
        config = PreTrainedConfig.from_pretrained(path)
        config.device = device
        policy = get_policy_class(config.type).from_pretrained(path, config=config)
        pre, post = make_pre_post_processors(config, pretrained_path=str(path),
                                             preprocessor_overrides={"device_processor": {"device": device}})
        return cls(policy, pre, post)

    def reset(self, instruction: str, seed: int) -> None:
        self.policy.reset()
        self.preprocessor.reset()
        self.postprocessor.reset()
        torch.manual_seed(int(seed))
        self.instruction = instruction

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        from lerobot.utils.control_utils import predict_action

        from sigma_sim.record import ROBOT_TYPE, to_lerobot_frame

        t0 = time.perf_counter()
        action = predict_action(to_lerobot_frame(obs), self.policy, self.device, self.preprocessor, self.postprocessor,
                                use_amp=False, task=self.instruction, robot_type=ROBOT_TYPE)
        self.latency["policy"].append(time.perf_counter() - t0)
        return action.reshape(-1).double().cpu().numpy()


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

    def record(self) -> dict[str, Any]:
        """A per-episode record for sigma_model.evaluation.report.build_report (batch = episode)."""
        rec: dict[str, Any] = {
            "condition": self.condition, "batch": self.episode, "num_samples": 1, "num_success": int(self.success),
            "time_to_success_s": self.time_to_success_s, "episode_steps": self.steps,
            "lifted": float(self.was_lifted), "mean_abs_delta_command": self.mean_abs_delta_command,
            "mean_sq_jerk": self.mean_sq_jerk, "safety_step_limited_fraction": self.safety_step_limited_fraction,
            "plans": self.plans, "wall_s": self.wall_s,
        }
        if "tau_l2" in self.diagnostics:
            rec["tau_l2"] = self.diagnostics["tau_l2"]
        for k, v in self.diagnostics.items():
            if k != "tau_l2":
                rec[k] = v
        for k, v in self.latency_ms.items():
            rec[f"latency_ms_{k}"] = v
        return rec


def smoothness(commands: np.ndarray) -> tuple[float, float]:
    """(mean |delta command| per tick in rad, mean squared third difference in (rad/tick^3)^2)."""
    if len(commands) < 2:
        return 0.0, 0.0
    d1 = np.diff(commands, axis=0)
    jerk = np.diff(commands, n=3, axis=0) if len(commands) >= 4 else np.zeros((1, commands.shape[1]))
    return float(np.abs(d1).mean()), float((jerk**2).mean())


def episode_safety_filter(config: ClosedLoopConfig) -> SafetyFilter:
    """The per-episode safety filter (step and joint limits; plans never time out in-process)."""
    return SafetyFilter(SafetyConfig(max_step=config.max_step_rad, plan_timeout_s=1e9))


def filtered_command(safety: SafetyFilter, target, joint_positions, now: float) -> tuple[np.ndarray, bool]:
    """The command the filter lets through for a policy target (the measured position on a hold)
    and whether it limited the step."""
    safety.feed_plan(now)
    decision = safety.step(target, joint_positions, now)
    command = decision.command if decision.command is not None else np.asarray(joint_positions, float)
    return command, bool(decision.clamped_step)


def run_episode(env, policy, seed: int, instruction: str, config: ClosedLoopConfig, condition: str = "sigma",
                episode: int = 0) -> EpisodeOutcome:
    """One closed-loop episode of ``policy`` (``reset(instruction, seed)`` / ``act(obs)``)."""
    t_wall = time.perf_counter()
    obs, info = env.reset(seed=seed, instruction=instruction)
    policy.reset(instruction, seed)
    for values in policy.latency.values():
        values.clear()
    for values in policy.diagnostics.values():
        values.clear()
    safety = episode_safety_filter(config)
    commands = []
    streak, first_success_step = 0, None
    step_limited = 0
    success = False
    steps = 0
    for steps in range(1, config.max_steps + 1):
        target = policy.act(obs)
        command, clamped = filtered_command(safety, target, obs["joint_positions"], steps * env.control_dt)
        step_limited += int(clamped)
        commands.append(command)
        obs, _, _, _, info = env.step(command)
        if info["success"]:
            if streak == 0:
                first_success_step = steps
            streak += 1
            if streak >= config.success_hold_steps:
                success = True
                break
        else:
            streak = 0
    cmds = np.asarray(commands)
    d_cmd, jerk = smoothness(cmds)
    latency = {k: 1e3 * float(np.mean(v)) for k, v in policy.latency.items() if v}
    diagnostics = {k: float(np.mean(v)) for k, v in policy.diagnostics.items() if v}
    return EpisodeOutcome(
        condition=condition, episode=episode, seed=seed, instruction=instruction, success=success, steps=steps,
        time_to_success_s=first_success_step * env.control_dt if success else None,
        was_lifted=bool(info.get("was_lifted", False)), mean_abs_delta_command=d_cmd, mean_sq_jerk=jerk,
        safety_step_limited_fraction=step_limited / max(1, steps), plans=policy.plans, latency_ms=latency,
        diagnostics=diagnostics, wall_s=time.perf_counter() - t_wall,
    )


# -------------------------------------------------------------------------------- evaluation
def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float | None, float | None]:
    if n <= 0:
        return None, None
    z = {0.9: 1.6448536, 0.95: 1.959964, 0.99: 2.5758293}.get(round(confidence, 2), 1.959964)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def build_closed_loop_report(outcomes: list[EpisodeOutcome], config: ClosedLoopConfig,
                             condition_info: dict[str, dict[str, Any]] | None = None,
                             meta: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(report dict in the sigma-eval-v1 format, per-episode records)."""
    from sigma_model.evaluation.report import build_report

    records = [o.record() for o in outcomes]
    info = {}
    for name in dict.fromkeys(o.condition for o in outcomes):
        tel, ada = CONDITIONS.get(name, (False, False))
        info[name] = {"telepathy": tel, "adapter": ada, "label": LABELS.get(name, name)}
        info[name].update((condition_info or {}).get(name, {}))
    closed = {}
    for name in info:
        outs = [o for o in outcomes if o.condition == name]
        k = sum(o.success for o in outs)
        lo, hi = wilson_interval(k, len(outs))
        times = [o.time_to_success_s for o in outs if o.time_to_success_s is not None]
        closed[name] = {
            "episodes": len(outs), "successes": k, "success_rate": k / max(1, len(outs)),
            "success_rate_ci95": [lo, hi], "mean_time_to_success_s": float(np.mean(times)) if times else None,
            "median_time_to_success_s": float(np.median(times)) if times else None,
            "mean_abs_delta_command": float(np.mean([o.mean_abs_delta_command for o in outs])),
            "mean_sq_jerk": float(np.mean([o.mean_sq_jerk for o in outs])),
            "lift_rate": float(np.mean([o.was_lifted for o in outs])),
            "failed_seeds": [o.seed for o in outs if not o.success],
        }
    report = build_report(
        records, reference="__none__", condition_info=info, table_every=10,
        meta={"mode": "closed_loop_in_process", "episodes": config.episodes, "seeds": [config.seed, config.seed + config.episodes - 1],
              "replan_every": config.replan_every, "control_hz": config.control_hz, "max_steps": config.max_steps,
              "success_hold_steps": config.success_hold_steps, "safety_max_step_rad": config.max_step_rad,
              "config": asdict(config), **(meta or {})},
    )
    report["closed_loop"] = closed
    return report, records


def evaluate(model, config: ClosedLoopConfig | None = None, adapter_config=None, baseline_model=None,
             progress: bool = False, env=None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run every condition over the same seeded episodes; returns (report, per-episode records)."""
    from sigma_model.evaluation.adapter import RiskGatedAdapter
    from sigma_sim.so101_env import SimConfig, SO101PickPlaceEnv

    cfg = config or ClosedLoopConfig()
    if cfg.replan_every is None and model is not None:
        cfg = replace(cfg, replan_every=model.config.n_action_steps)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    own_env = env is None
    if env is None:
        size = model.config.image_size if model is not None else 96
        env = SO101PickPlaceEnv(SimConfig(control_hz=cfg.control_hz, image_width=size, image_height=size,
                                          max_episode_steps=cfg.max_steps + 1))
    adapter = RiskGatedAdapter(adapter_config)
    outcomes: list[EpisodeOutcome] = []
    info: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    try:
        for name in cfg.conditions:
            if name == "expert":
                policy = ExpertPolicy(env)
            elif name == "baseline":
                base = baseline_model if baseline_model is not None else model
                policy = SigmaPolicy(base, telepathy=False, replan_every=cfg.replan_every,
                                     silent_audio=cfg.silent_audio, carry_memory=cfg.carry_memory)
                info[name] = {"source": "checkpoint" if baseline_model is not None else "tau0",
                              "description": "separate baseline checkpoint, telepathy off" if baseline_model is not None
                              else "the model's tau = 0 path (no separate baseline checkpoint given)"}
            else:
                tel, ada = CONDITIONS[name]
                policy = SigmaPolicy(model, telepathy=tel, adapter=adapter if ada else None,
                                     replan_every=cfg.replan_every, silent_audio=cfg.silent_audio,
                                     carry_memory=cfg.carry_memory)
            wins = 0
            for i in range(cfg.episodes):
                seed = cfg.seed + i
                out = run_episode(env, policy, seed, episode_instruction(i, seed), cfg, condition=name, episode=i)
                outcomes.append(out)
                wins += out.success
                if progress:
                    print(f"[closed-loop] {name:<22} ep {i + 1:>3}/{cfg.episodes} seed {seed} "
                          f"{'ok  ' if out.success else 'FAIL'} steps {out.steps:>3} "
                          f"({wins}/{i + 1} ok, {time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
    finally:
        if own_env:
            env.close()
    meta = {"seconds": time.perf_counter() - t0, "adapter_config": adapter.config.to_dict(), "threads": torch.get_num_threads()}
    return build_closed_loop_report(outcomes, cfg, info, meta)


def write_closed_loop_report(report: dict[str, Any], records: list[dict[str, Any]], out_dir: str | Path) -> Path:
    from sigma_model.evaluation.report import write_report

    paths = write_report(report, records, out_dir, plots=False)
    return paths["report"]


def evaluate_checkpoint(checkpoint: str | Path, config: ClosedLoopConfig | None = None, out_dir: str | Path | None = None,
                        adapter_config=None, baseline_checkpoint: str | Path | None = None,
                        progress: bool = False) -> dict[str, Any]:
    """Load a checkpoint (a sigma_model checkpoint dir), evaluate it, optionally write the report."""
    from sigma_model import load_checkpoint

    model = load_checkpoint(checkpoint)
    baseline = load_checkpoint(baseline_checkpoint) if baseline_checkpoint else None
    if config is not None and config.diffusion_steps is not None:
        for m in (model, baseline):
            if m is not None:
                m.config.diffusion_steps = config.diffusion_steps
    report, records = evaluate(model, config, adapter_config=adapter_config, baseline_model=baseline, progress=progress)
    report["meta"]["checkpoint"] = str(checkpoint)
    if out_dir is not None:
        write_closed_loop_report(report, records, out_dir)
    return report


def format_summary(report: dict[str, Any]) -> str:
    lines = [f"{'condition':<36}{'success':>9}{'95% CI':>15}{'t_success(s)':>14}{'|dcmd|':>9}{'jerk':>11}"]
    for name, c in report.get("closed_loop", {}).items():
        lo, hi = c["success_rate_ci95"]
        ci = "-" if lo is None else f"[{lo:.2f},{hi:.2f}]"
        t = c["mean_time_to_success_s"]
        lines.append(f"{LABELS.get(name, name):<36}{c['successes']:>4}/{c['episodes']:<4}{ci:>15}"
                     f"{'-' if t is None else f'{t:.2f}':>14}{c['mean_abs_delta_command']:>9.4f}{c['mean_sq_jerk']:>11.2e}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sigma-closed-loop", description="In-process closed-loop evaluation of Sigma "
                                "in the simulated SO-101 (success rate, time to success, smoothness).")
    p.add_argument("--checkpoint", default="checkpoints/sigma_so101_default", help="Sigma checkpoint directory")
    p.add_argument("--baseline-checkpoint", default=None, help="separate baseline policy checkpoint (telepathy off)")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=10_000, help="first episode seed (default 10000)")
    p.add_argument("--conditions", nargs="+", default=["sigma", "telepathy_off", "sigma_adapter"], choices=ALL_CONDITIONS)
    p.add_argument("--replan-every", type=int, default=None,
                   help="control ticks between plans (default: the checkpoint's n_action_steps)")
    p.add_argument("--diffusion-steps", type=int, default=None,
                   help="the DiT's integration steps per plan (default: the checkpoint's diffusion_steps)")
    p.add_argument("--max-steps", type=int, default=450)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--adapter-config", default=None, help="AdapterConfig JSON")
    p.add_argument("--no-memory", action="store_true", help="reset tau / memory at every plan")
    p.add_argument("--output", "-o", default=None, help="write sigma_eval_report.json (+ batch log) here")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sigma_model.evaluation.adapter import AdapterConfig

    cfg = ClosedLoopConfig(episodes=args.episodes, seed=args.seed, conditions=tuple(args.conditions),
                           replan_every=args.replan_every, diffusion_steps=args.diffusion_steps, max_steps=args.max_steps, threads=args.threads,
                           carry_memory=not args.no_memory)
    adapter_config = AdapterConfig.load(args.adapter_config) if args.adapter_config else None
    report = evaluate_checkpoint(args.checkpoint, cfg, args.output, adapter_config=adapter_config,
                                 baseline_checkpoint=args.baseline_checkpoint, progress=not args.quiet)
    print(format_summary(report))
    if args.output:
        print(f"report: {Path(args.output) / 'sigma_eval_report.json'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
