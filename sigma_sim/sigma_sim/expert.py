# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Scripted pick-and-place expert that outputs SO-101 joint position targets.

The expert reads the simulator state (cube pose, joint angles, the instructed
region) and plans with damped-least-squares IK on the MuJoCo model
(:class:`sigma_sim.kinematics.ArmKinematics`):

1. ``APPROACH`` - joint-space move (minimum-jerk profile) from wherever the arm
   is to a top-down pose above the cube, jaws across two opposite cube faces;
2. ``DESCEND``  - straight down until the fingertips straddle the cube;
3. ``CLOSE``    - close the gripper (rate limited) and let it settle;
4. ``LIFT``     - straight up; if the cube did not come along, open and retry;
5. ``CARRY``    - over the instructed region, cube centred on it;
6. ``LOWER``    - down until the cube is just above the table;
7. ``RELEASE``  - open the gripper;
8. ``RETREAT``  - straight up, then ``DONE`` (hold).

Cartesian phases move a set-point along a straight line with a trapezoidal
speed profile; every control step the set-point goes through IK (seeded with
the previous solution, so the arm stays on one branch) and a gravity
feed-forward term (``bias / kp``) is added so the proportional servos hold the
planned angles. The output is the 6-dim absolute joint target the environment
expects - the same interface a learned policy uses.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from sigma_sim.kinematics import ArmKinematics
from sigma_sim.so101_env import GRIPPER_CLOSED, GRIPPER_OPEN, SO101PickPlaceEnv

__all__ = [
    "EpisodeResult",
    "ExpertConfig",
    "Phase",
    "ScriptedExpert",
    "evaluate_expert",
    "expert_episode",
    "run_expert_episode",
]


class Phase(enum.Enum):
    APPROACH = "approach"
    DESCEND = "descend"
    CLOSE = "close"
    LIFT = "lift"
    CARRY = "carry"
    LOWER = "lower"
    RELEASE = "release"
    RETREAT = "retreat"
    DONE = "done"


@dataclass(frozen=True)
class ExpertConfig:
    """Tuning of :class:`ScriptedExpert` (metres, seconds, radians)."""

    #: Grasp-point height (world z) when hovering above the cube / region.
    hover_z: float = 0.07
    #: Grasp point this far above the cube centre when closing the jaws.
    grasp_above_center: float = 0.012
    #: Grasp-point height while carrying.
    carry_z: float = 0.075
    #: Cube bottom this far above the table when the jaws open.
    release_clearance: float = 0.004
    free_speed: float = 0.18
    careful_speed: float = 0.07
    accel: float = 0.6
    #: Joint speed limit for the APPROACH move (rad/s).
    joint_speed: float = 1.2
    gripper_open: float = GRIPPER_OPEN
    gripper_closed: float = GRIPPER_CLOSED
    gripper_speed: float = 3.0
    close_settle_s: float = 0.1
    open_settle_s: float = 0.05
    #: A moving phase ends when the set-point has arrived and the measured
    #: grasp point is within this distance (or after ``settle_timeout_s``).
    position_tolerance: float = 0.004
    settle_timeout_s: float = 1.0
    #: A lift counts as a grasp if the cube rose at least this much.
    min_lift: float = 0.02
    max_attempts: int = 3
    gravity_compensation: bool = True


class ScriptedExpert:
    """Solves :class:`SO101PickPlaceEnv` from simulator state; outputs joint targets.

    Usage::

        obs, info = env.reset(seed=3, instruction="pick the cube and place it on the right")
        expert = ScriptedExpert(env)
        while not expert.done:
            obs, reward, terminated, truncated, info = env.step(expert.act())
    """

    def __init__(self, env: SO101PickPlaceEnv, config: ExpertConfig | None = None):
        self.env = env
        self.config = config or ExpertConfig()
        self.kin = ArmKinematics(env.model)
        self.reset()

    # ---------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget the previous episode; call after every ``env.reset``."""
        env = self.env
        self.phase = Phase.APPROACH
        self.attempts = 0
        self._t_phase = 0.0
        # Plan from the measured arm angles (the last command may carry a
        # gravity offset).
        self._q_arm = env.joint_positions[:5].astype(float).copy()
        self._gripper = float(env.last_action[5])
        self._setpoint: np.ndarray | None = None
        self._velocity = 0.0
        self._rot: np.ndarray | None = None
        self._approach: tuple[np.ndarray, np.ndarray, float] | None = None
        self._settle = 0.0
        self._grasp_offset_xy = np.zeros(2)
        self._lift_start_z = 0.0
        self._lift_reference_z: float | None = None
        self._take_over()

    def _take_over(self) -> None:
        """Continue from the state another controller left (no-op right after ``env.reset``).

        A solved task is done; a cube pinched by the closing jaws is gripped, lifted and carried, not dropped.
        """
        env, cfg = self.env, self.config
        if env.is_success():
            self._enter(Phase.DONE)
        elif env.robot_touches_cube() and self._gripper < 0.5 * (cfg.gripper_open + cfg.gripper_closed):
            self._setpoint, self._rot = self.kin.grasp_frame(self._q_arm)
            self._lift_reference_z = env.cube_half_size  # the cube may be in the air already
            self._enter(Phase.CLOSE)

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def _enter(self, phase: Phase) -> None:
        self.phase = phase
        self._t_phase = 0.0
        self._settle = 0.0
        self._velocity = 0.0

    # ------------------------------------------------------------- planning
    def _jaw_rotation(self) -> np.ndarray:
        """Top-down rotation with the jaws across the pair of cube faces needing least roll."""
        quat = self.env.cube_quat
        w, x, y, z = quat
        yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
        best, best_cost = None, np.inf
        target = self._hover_point()
        for k in range(4):
            a = yaw + k * math.pi / 2
            rot = self.kin.top_down_rotation(np.array([-math.sin(a), math.cos(a), 0.0]))
            q, err = self.kin.solve(target, rot, self._q_arm, iterations=60)
            cost = abs(q[4] - self._q_arm[4]) + 100.0 * err
            if cost < best_cost:
                best, best_cost = rot, cost
        return best

    def _hover_point(self) -> np.ndarray:
        c = self.env.cube_pos
        return np.array([c[0], c[1], self.config.hover_z])

    def _move(self, goal: np.ndarray, speed: float) -> bool:
        """Advance the Cartesian set-point towards ``goal``; True once it is there."""
        dt = self.env.control_dt
        if self._setpoint is None:
            self._setpoint, _ = self.kin.grasp_frame(self._q_arm)
        delta = goal - self._setpoint
        dist = float(np.linalg.norm(delta))
        if dist < 1e-6:
            self._velocity = 0.0
            self._setpoint = goal.copy()
            return True
        a = self.config.accel
        v = min(speed, math.sqrt(2 * a * dist), self._velocity + a * dt)
        self._velocity = v
        step = v * dt
        if step >= dist:
            self._setpoint = goal.copy()
            self._velocity = 0.0
            return True
        self._setpoint = self._setpoint + delta / dist * step
        return False

    def _arrived(self, at_setpoint: bool) -> bool:
        """Set-point reached and the real grasp point close to it (or timed out)."""
        if not at_setpoint:
            return False
        self._settle += self.env.control_dt
        measured = self.kin.grasp_point(self.env.data)
        close = np.linalg.norm(measured - self._setpoint) < self.config.position_tolerance
        return bool(close or self._settle >= self.config.settle_timeout_s)

    def _ramp_gripper(self, target: float) -> bool:
        step = self.config.gripper_speed * self.env.control_dt
        self._gripper += float(np.clip(target - self._gripper, -step, step))
        return abs(self._gripper - target) < 1e-6

    # -------------------------------------------------------------- control
    def act(self) -> np.ndarray:
        """Joint targets (float32[6], rad) for the next control step."""
        cfg, env = self.config, self.env
        dt = env.control_dt
        self._t_phase += dt
        cube = env.cube_pos
        rest_z = env.cube_half_size

        if self.phase is Phase.APPROACH:
            self._ramp_gripper(cfg.gripper_open)
            if self._approach is None:
                self._rot = self._jaw_rotation()
                goal_q, _ = self.kin.solve(self._hover_point(), self._rot, self._q_arm, iterations=100)
                start = self._q_arm.copy()
                duration = max(0.5, float(np.max(np.abs(goal_q - start))) / cfg.joint_speed * 1.875)
                self._approach = (start, goal_q, duration)
                self._t_phase = dt
            start, goal_q, duration = self._approach
            s = min(1.0, self._t_phase / duration)
            s = s**3 * (10 - 15 * s + 6 * s * s)  # minimum-jerk
            self._q_arm = start + s * (goal_q - start)
            if self._t_phase >= duration:
                self._setpoint = None
                measured = self.kin.grasp_point(env.data)
                self._settle += dt
                if (
                    np.linalg.norm(measured - self._hover_point()) < 2 * cfg.position_tolerance
                    or self._settle > cfg.settle_timeout_s
                ):
                    self._approach = None
                    self._enter(Phase.DESCEND)
            return self._command()

        if self.phase is Phase.DESCEND:
            self._ramp_gripper(cfg.gripper_open)
            goal = np.array([cube[0], cube[1], cube[2] + cfg.grasp_above_center])
            if self._arrived(self._move(goal, cfg.careful_speed)):
                self._enter(Phase.CLOSE)
        elif self.phase is Phase.CLOSE:
            if self._ramp_gripper(cfg.gripper_closed):
                self._settle += dt
                if self._settle >= cfg.close_settle_s:
                    self._lift_start_z = float(cube[2]) if self._lift_reference_z is None else self._lift_reference_z
                    self._lift_reference_z = None
                    self._enter(Phase.LIFT)
        elif self.phase is Phase.LIFT:
            sp = self._setpoint
            goal = np.array([sp[0], sp[1], cfg.carry_z])
            if self._arrived(self._move(goal, cfg.careful_speed)):
                if cube[2] - self._lift_start_z >= cfg.min_lift:
                    measured = self.kin.grasp_point(env.data)
                    self._grasp_offset_xy = measured[:2] - cube[:2]
                    self._enter(Phase.CARRY)
                else:
                    self._retry()
        elif self.phase is Phase.CARRY:
            if cube[2] < rest_z + 0.5 * cfg.min_lift:
                self._retry()
            else:
                region = np.asarray(env.target_region.center)
                xy = region + self._grasp_offset_xy
                goal = np.array([xy[0], xy[1], cfg.carry_z])
                if self._arrived(self._move(goal, cfg.free_speed)):
                    self._enter(Phase.LOWER)
        elif self.phase is Phase.LOWER:
            # Closed loop on the cube height: stop with its bottom just above the table.
            sp = self._setpoint
            drop = cube[2] - (rest_z + cfg.release_clearance)
            goal = np.array([sp[0], sp[1], sp[2] - drop])
            if drop < 0.002 or self._t_phase > 3.0:
                self._setpoint = goal if drop > 0 else sp
                self._enter(Phase.RELEASE)
            else:
                self._move(goal, cfg.careful_speed)
        elif self.phase is Phase.RELEASE:
            if self._ramp_gripper(cfg.gripper_open):
                self._settle += dt
                if self._settle >= cfg.open_settle_s:
                    self._enter(Phase.RETREAT)
        elif self.phase is Phase.RETREAT:
            sp = self._setpoint
            goal = np.array([sp[0], sp[1], cfg.hover_z])
            if self._arrived(self._move(goal, cfg.careful_speed)):
                self._enter(Phase.DONE)

        if self._setpoint is not None and self._rot is not None:
            q, _ = self.kin.solve(self._setpoint, self._rot, self._q_arm, iterations=20)
            self._q_arm = q
        return self._command()

    def _retry(self) -> None:
        """Grasp failed or cube dropped: open, and start over from above the cube."""
        self.attempts += 1
        if self.attempts >= self.config.max_attempts:
            self._enter(Phase.DONE)
            return
        self._gripper = max(self._gripper, self.config.gripper_open * 0.5)
        self._setpoint = None
        self._approach = None
        self._enter(Phase.APPROACH)

    def _command(self) -> np.ndarray:
        q = self._q_arm.copy()
        if self.config.gravity_compensation:
            q = q + self.kin.gravity_offset(self._q_arm, self._gripper)
        return np.concatenate([q, [self._gripper]]).astype(np.float32)


# ----------------------------------------------------------------- episodes
@dataclass
class EpisodeResult:
    """Outcome of one expert episode."""

    seed: int | None
    instruction: str
    success: bool
    steps: int
    time_to_success: float | None
    attempts: int
    final_phase: str


def expert_episode(
    env: SO101PickPlaceEnv,
    seed: int | None = None,
    instruction: str | None = None,
    expert: ScriptedExpert | None = None,
    max_steps: int | None = None,
    extra_steps_after_success: int = 10,
    options: dict[str, Any] | None = None,
    action_noise: float = 0.0,
    lead: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None,
    lead_steps: int = 0,
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]]:
    """Run one expert episode, yielding ``(observation, action, info_after)`` per step.

    ``observation`` is what the policy would see *before* acting, ``action`` the
    expert's joint targets and ``info_after`` the env info after the step. The
    generator returns an :class:`EpisodeResult` (``StopIteration.value``). It
    stops ``extra_steps_after_success`` steps after the expert has finished and
    the task is solved, when the expert gives up, 30 steps after it finished
    without success, or after ``max_steps``.

    ``action_noise`` > 0 injects DART-style noise: the arm executes the expert's
    targets plus Gaussian noise (rad, five arm joints, seeded from ``seed``) while
    the yielded ``action`` stays the clean target, so demonstrations show how to
    return to the plan from small deviations.

    ``lead`` (a policy: observation -> joint targets) acts for the first ``lead_steps`` ticks, which
    are not yielded; then the expert takes over from wherever the arm and cube are (DAgger-style
    demonstrations from the states a learned policy reaches).
    """
    obs, info = env.reset(seed=seed, options=options, instruction=instruction)
    for _ in range(lead_steps if lead is not None else 0):
        obs, _, _, _, info = env.step(lead(obs))
    expert = expert or ScriptedExpert(env)
    expert.reset()
    max_steps = max_steps or env.config.max_episode_steps
    rng = np.random.default_rng(None if seed is None else seed + 7_777_777) if action_noise > 0 else None
    t_success = None
    tail = 0
    steps = 0
    for steps in range(1, max_steps + 1):
        action = expert.act()
        executed = action
        if rng is not None:
            executed = np.asarray(action, dtype=np.float64).copy()
            executed[:5] += rng.normal(0.0, action_noise, 5)
        next_obs, _, _, _, info = env.step(executed)
        yield obs, action, info
        obs = next_obs
        if info["success"] and t_success is None:
            t_success = info["time"]
        if not info["success"]:
            t_success = None
        if expert.done:
            tail += 1
            if ((info["success"] and tail >= extra_steps_after_success)
                    or expert.attempts >= expert.config.max_attempts or tail > 30):
                break
    return EpisodeResult(
        seed=seed,
        instruction=env.instruction,
        success=bool(info["success"]),
        steps=steps,
        time_to_success=t_success,
        attempts=expert.attempts + 1,
        final_phase=expert.phase.value,
    )


def run_expert_episode(
    env: SO101PickPlaceEnv,
    seed: int | None = None,
    instruction: str | None = None,
    on_step: Callable[[dict[str, np.ndarray], np.ndarray, dict[str, Any]], None] | None = None,
    **kwargs: Any,
) -> EpisodeResult:
    """Run :func:`expert_episode` to completion and return its :class:`EpisodeResult`."""
    gen = expert_episode(env, seed=seed, instruction=instruction, **kwargs)
    while True:
        try:
            step = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_step is not None:
            on_step(*step)


def evaluate_expert(
    num_episodes: int = 50,
    seed: int = 0,
    env: SO101PickPlaceEnv | None = None,
    instructions: list[str] | None = None,
) -> dict[str, Any]:
    """Success rate of the expert over seeds ``seed .. seed + num_episodes - 1``.

    Instructions alternate over ``instructions`` (default: the first wording of
    each region in :data:`INSTRUCTIONS`, i.e. left/right alternating).
    """
    from sigma_sim.so101_env import INSTRUCTIONS

    env = env or SO101PickPlaceEnv(render_observations=False)
    instructions = instructions or [texts[0] for texts in INSTRUCTIONS.values()]
    expert = ScriptedExpert(env)
    results = []
    import time as _time

    t0 = _time.perf_counter()
    for i in range(num_episodes):
        results.append(
            run_expert_episode(env, seed=seed + i, instruction=instructions[i % len(instructions)], expert=expert)
        )
    wall = _time.perf_counter() - t0
    successes = [r for r in results if r.success]
    times = [r.time_to_success for r in successes if r.time_to_success is not None]
    steps = sum(r.steps for r in results)
    return {
        "episodes": num_episodes,
        "successes": len(successes),
        "success_rate": len(successes) / max(1, num_episodes),
        "failed_seeds": [r.seed for r in results if not r.success],
        "mean_time_to_success_s": float(np.mean(times)) if times else None,
        "mean_steps": steps / max(1, num_episodes),
        "retries": sum(r.attempts - 1 for r in results),
        "control_hz": env.config.control_hz,
        "steps_per_second": steps / wall if wall > 0 else None,
    }


@dataclass
class ExpertEvalConfig:
    """``python -m sigma_sim.expert``: the scripted expert's success rate over seeds seed .. seed + episodes - 1."""

    episodes: int = 50
    seed: int = 0  # seed of the first episode
    fps: float = 30.0  # control rate (Hz)

    def __post_init__(self) -> None:
        if self.episodes <= 0 or not self.fps > 0:
            raise ValueError("--episodes and --fps must be positive")


def main(argv: list[str] | None = None) -> int:
    """``python -m sigma_sim.expert --episodes=50 --seed=0``: print the expert's success rate (JSON)."""
    import json

    from sigma_model.cli import parse_cli

    cfg = parse_cli(ExpertEvalConfig, argv, "python -m sigma_sim.expert", description=ExpertEvalConfig.__doc__)
    env = SO101PickPlaceEnv(render_observations=False, control_hz=cfg.fps)
    print(json.dumps(evaluate_expert(cfg.episodes, cfg.seed, env), indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
