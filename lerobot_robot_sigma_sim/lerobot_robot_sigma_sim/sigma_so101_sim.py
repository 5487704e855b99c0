# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Sigma's simulated SO-101 as a LeRobot robot: ``--robot.type=sigma_so101_sim``.

The MuJoCo pick-and-place scene of :mod:`sigma_sim.so101_env` behind the interface of LeRobot's
``so101_follower``: actions and observations are ``<joint>.pos`` in the same units (degrees for
the arm joints, or -100..100 without ``use_degrees``; 0..100 for the gripper, closed at 0; see
:mod:`sigma_model.robot_units`), plus the front camera image (``camera``, ``(H, W, 3)`` uint8).
So ``sigma-robot``, ``lerobot-record`` or any LeRobot script drives it as it drives the real arm.

Time: each :meth:`SigmaSO101Sim.send_action` holds the goal for one control period (1 /
``control_hz`` s of physics); the caller's loop rate sets the speed (``sigma-robot`` at
``rate_hz = control_hz`` runs in real time). The camera renders a new frame every
``round(control_hz / camera_fps)`` observations (the same array is returned in between, as a real
camera's latest frame), and on the first observation of an episode.

Episodes: :meth:`SigmaSO101Sim.reset_episode` starts one (seeded cube pose, instruction);
:meth:`SigmaSO101Sim.episode_status` reports the task (success after it holds ``success_hold_s``,
done on success or after ``max_episode_s``).

A connected simulator is findable by its robot id (:func:`connected_sim`): LeRobot scripts build the
robot and the teleoperator separately from their configs, and the scripted teleoperator
(:mod:`.sigma_scripted_expert`) must act on this robot's physics.
"""

from __future__ import annotations

import math
import time
from functools import cached_property
from typing import Any

import numpy as np
from lerobot.motors import MotorNormMode
from lerobot.robots.robot import Robot
from lerobot.robots.utils import ensure_safe_goal_position

from lerobot_robot_sigma_sim.config_sigma_so101_sim import SigmaSO101SimConfig
from sigma_model.robot_units import JointUnits, RobotUnits


class SimCamera:
    """The simulated front camera as ``robot.cameras`` holds it: ``latest_timestamp`` is the last render's perf_counter.

    (``lerobot-record`` sizes its image writer by ``len(robot.cameras)``; ``RobotBridge`` ages frames by this stamp.)
    """

    def __init__(self) -> None:
        self.latest_timestamp: float | None = None


#: The connected simulators of this process, oldest first (see :func:`connected_sim`).
_CONNECTED: list["SigmaSO101Sim"] = []


def connected_sim(robot_id: str | None = None) -> "SigmaSO101Sim":
    """Return the connected ``sigma_so101_sim`` of this process with ``--robot.id=robot_id`` (None: the only one).

    Raises:
        LookupError: If there is none, or several and ``robot_id`` does not pick one.
    """
    found = [r for r in _CONNECTED if robot_id is None or r.id == robot_id]
    if len(found) == 1:
        return found[0]
    ids = [r.id for r in _CONNECTED]
    if not found:
        raise LookupError(f"no connected sigma_so101_sim robot{'' if robot_id is None else f' with id {robot_id!r}'} "
                          f"in this process (connected ids: {ids}); connect it first, e.g. lerobot-record "
                          "--robot.type=sigma_so101_sim")
    raise LookupError(f"{len(found)} connected sigma_so101_sim robots (ids {ids}): name one with its robot id")


class SigmaSO101Sim(Robot):
    """See the module docstring. ``env``: an ``SO101PickPlaceEnv`` to use (default: made on connect)."""

    config_class = SigmaSO101SimConfig
    name = "sigma_so101_sim"

    def __init__(self, config: SigmaSO101SimConfig, env: Any = None) -> None:
        # Robot.__init__ would make a calibration folder; the simulated joints need no calibration.
        from sigma_sim.so101_env import JOINT_NAMES

        self.config = config
        self.robot_type, self.id = self.name, config.id
        self.calibration_dir, self.calibration_fpath, self.calibration = config.calibration_dir, None, {}
        self.joint_names = tuple(JOINT_NAMES)
        arm = MotorNormMode.DEGREES if config.use_degrees else MotorNormMode.RANGE_M100_100
        #: The unit of each joint, as ``bus.motors[joint].norm_mode`` of the real arm.
        self.norm_modes = {j: (MotorNormMode.RANGE_0_100 if j == "gripper" else arm) for j in self.joint_names}
        self.env = env
        self._connected = False
        self.units: RobotUnits | None = None
        self.camera_every = max(1, int(round(config.control_hz / config.camera_fps)))
        self.success_hold = max(1, int(math.ceil(config.success_hold_s * config.control_hz - 1e-9)))
        self.max_steps = max(1, int(round(config.max_episode_s * config.control_hz)))
        self._frame = None
        self._reads_since_frame = 0
        self.cameras = {config.camera: SimCamera()} if config.camera else {}
        self.episode_steps = 0
        #: Episodes started (``reset_episode`` calls): a controller sees from it that the scene was reset.
        self.episodes_started = 0
        self.streak = 0
        self.first_success_step: int | None = None
        self.success = False
        #: Wall time (s) and count of physics steps and camera renders, for the demo's report.
        self.wall = {"physics_step": [0.0, 0], "render": [0.0, 0]}

    def timing(self) -> dict[str, float]:
        """Mean wall time (ms) of a physics step (one control period) and of a camera render."""
        return {f"{k}_ms": 1e3 * t / n for k, (t, n) in self.wall.items() if n}

    def _timed(self, key: str, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        acc = self.wall[key]
        acc[0] += time.perf_counter() - t0
        acc[1] += 1
        return out

    # ------------------------------------------------------------- features
    @cached_property
    def observation_features(self) -> dict[str, type | tuple]:
        features: dict[str, type | tuple] = {f"{j}.pos": float for j in self.joint_names}
        if self.config.camera:
            features[self.config.camera] = (self.config.image_height, self.config.image_width, 3)
        return features

    @cached_property
    def action_features(self) -> dict[str, type]:
        return {f"{j}.pos": float for j in self.joint_names}

    # ----------------------------------------------------------- connection
    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self, calibrate: bool = True) -> None:
        if self._connected:
            from lerobot.utils.errors import DeviceAlreadyConnectedError

            raise DeviceAlreadyConnectedError(f"{self} already connected")
        if self.env is None:
            from sigma_sim.so101_env import SimConfig, SO101PickPlaceEnv

            cfg = self.config
            self.env = SO101PickPlaceEnv(SimConfig(control_hz=cfg.control_hz, image_width=cfg.image_width,
                                                   image_height=cfg.image_height, render_observations=False,
                                                   max_episode_steps=10**9))
        env = self.env
        self.units = RobotUnits(self.joint_names, [JointUnits(str(self.norm_modes[j].value), float(lo), float(hi))
                                                   for j, lo, hi in zip(self.joint_names, env.ctrl_low, env.ctrl_high)])
        self._connected = True
        _CONNECTED.append(self)
        self.reset_episode(self.config.seed, self.config.instruction or None)

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        """Nothing to calibrate: the simulated joints are exact."""

    def configure(self) -> None:
        """Nothing to configure."""

    def disconnect(self) -> None:
        if self.env is not None:
            self.env.close()
        self._connected = False
        if self in _CONNECTED:
            _CONNECTED.remove(self)

    def _check_connected(self) -> None:
        if not self._connected:
            from lerobot.utils.errors import DeviceNotConnectedError

            raise DeviceNotConnectedError(f"{self} is not connected")

    # -------------------------------------------------------------- episodes
    def reset_episode(self, seed: int | None = None, instruction: str | None = None) -> dict[str, Any]:
        """Start an episode (cube pose from ``seed``; instruction drawn from it when None)."""
        self._check_connected()
        self.env.reset(seed=seed, instruction=instruction)
        self.episodes_started += 1
        self.episode_steps = 0
        self.streak = 0
        self.first_success_step = None
        self.success = False
        self._frame = None  # the next observation renders
        return self.episode_status()

    @property
    def control_dt(self) -> float:
        return 1.0 / self.config.control_hz

    def episode_status(self) -> dict[str, Any]:
        """Return the task now: time, success (held ``success_hold_s``), done (success, or ``max_episode_s`` passed)."""
        env = self.env
        dt = self.control_dt
        return {
            "instruction": env.instruction, "target": env.target, "step": self.episode_steps,
            "time": self.episode_steps * dt, "success": self.success,
            "done": self.success or self.episode_steps >= self.max_steps,
            "time_to_success_s": self.first_success_step * dt if self.success else None,
            "was_lifted": bool(env.was_lifted), "cube_pos": [round(float(v), 4) for v in env.cube_pos],
        }

    # ---------------------------------------------------------------- I / O
    def get_observation(self) -> dict[str, Any]:
        self._check_connected()
        obs: dict[str, Any] = self.units.from_radians(self.env.joint_positions)
        if self.config.camera:
            self._reads_since_frame += 1
            if self._frame is None or self._reads_since_frame >= self.camera_every:
                self._frame = self._timed("render", self.env.render)
                self.cameras[self.config.camera].latest_timestamp = time.perf_counter()
                self._reads_since_frame = 0
            obs[self.config.camera] = self._frame
        return obs

    def send_action(self, action: dict[str, Any]) -> dict[str, Any]:
        """Hold the goal for one control period; returns the goal held (after ``max_relative_target`` and the ranges).

        Raises:
            ValueError: If ``action`` lacks a joint (one line naming them); nothing is sent then.
        """
        self._check_connected()
        missing = [k for k in self.action_features if k not in action]
        if missing:
            raise ValueError(f"action lacks {missing}; sigma_so101_sim needs {list(self.action_features)}")
        goal = {k: float(action[k]) for k in self.action_features}
        if self.config.max_relative_target is not None:
            present = self.units.from_radians(self.env.joint_positions)
            cap = self.config.max_relative_target
            if isinstance(cap, dict):
                cap = {f"{j}.pos": v for j, v in cap.items()}
            goal = ensure_safe_goal_position({k: (g, present[k]) for k, g in goal.items()}, cap)
        success = self._timed("physics_step", self.env.step, self.units.to_radians(goal))[-1]["success"]
        held = self.units.from_radians(self.env.last_action)  # what lerobot-record records: the goal sent
        self.episode_steps += 1
        if success and not self.success:
            if self.streak == 0:
                self.first_success_step = self.episode_steps
            self.streak += 1
            self.success = self.streak >= self.success_hold
        elif not self.success:
            self.streak = 0
        return held

    def applied_goal(self) -> np.ndarray:
        """Return the joint targets (rad) the physics holds now (after the joint ranges)."""
        return np.asarray(self.env.last_action, dtype=np.float64)
