# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""A LeRobot robot behind Sigma's joint interface (no ROS): radians in and out, with safety.

:class:`RobotBridge` drives any LeRobot ``Robot`` (``so101_follower``, a ``lerobot_robot_*``
plugin, the simulated SO-101) the way the ``sigma-robot`` node and the simulator node do:

* :meth:`RobotBridge.connect` connects without LeRobot's interactive calibration: motors that
  match the robot's calibration file are used as they are; a file that differs from the motors is
  written to them (what LeRobot's calibrate does when you press ENTER to use the file); no file is
  an error naming the ``lerobot-calibrate`` command. Then it reads the arm once: the first command
  is the measured position (the arm holds where it is);
* joint values are converted between the robot's units and radians (:mod:`sigma_model.robot_units`);
* every target goes through :class:`sigma_model.safety.SafetyFilter`: within the joint limits
  intersected with the calibrated range, within ``max_step`` of the previous target and of the
  measurement; with no command for ``command_timeout_s`` it holds the previous target;
  LeRobot's own ``max_relative_target`` (against the present position the robot reads itself) is
  set as a second line where the robot config has it and the user has not set it;
* :meth:`RobotBridge.tick` sends the filtered target (``robot.send_action``) and then reads the
  observation (``robot.get_observation``): joint radians and the camera frames that are new;
* :meth:`RobotBridge.close` holds at the last measured position and disconnects. Torque policy
  (``torque_on_exit``): ``hold`` (default) leaves the motors' torque on, so the arm stays where it
  is after the bridge exits or while it restarts (switch the arm off, or support it and run with
  ``release``, to let it go limp); ``release`` disables it (LeRobot's default: the arm falls under
  gravity). It is applied through the robot config's ``disable_torque_on_disconnect``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from sigma_model.robot_units import RANGES, RobotUnits, units_of_robot
from sigma_model.safety import SafetyConfig, SafetyDecision, SafetyFilter, limits_by_name

log = logging.getLogger(__name__)

TORQUE_POLICIES = ("hold", "release")


class BridgeError(RuntimeError):
    """The robot cannot be bridged as configured (one line, for the user)."""


@dataclass
class Observation:
    """One read of the robot.

    Joint radians, the new camera frames (key -> RGB array) and their age when read (s), and when the read started
    (``time.monotonic``).
    """

    positions: np.ndarray
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    frame_ages: dict[str, float] = field(default_factory=dict)
    t_read: float = 0.0


@dataclass
class Tick:
    decision: SafetyDecision
    sent: np.ndarray | None  # radians the robot reports having sent (after its own limits)
    observation: Observation | None
    error: str = ""


def _registries(stop_at: str | None = None) -> list[str]:
    """Import LeRobot's cameras.

    The ``lerobot_robot_*`` plugins and LeRobot's robot packages (which registers their configs; those whose
    dependencies are missing are left out), robots until ``stop_at`` is known; returns the known robot types.
    """
    import importlib
    import pkgutil

    import lerobot.cameras
    import lerobot.robots
    from lerobot.robots import RobotConfig
    from lerobot.utils.import_utils import register_third_party_plugins

    def packages(parent):
        return [f"{parent.__name__}.{m.name}" for m in pkgutil.iter_modules(parent.__path__) if m.ispkg]

    register_third_party_plugins()
    for name in packages(lerobot.cameras) + packages(lerobot.robots):
        if stop_at is not None and stop_at in RobotConfig.get_known_choices():
            break
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - an optional dependency missing
            log.debug("skipping %s: %s", name, err)
    return sorted(RobotConfig.get_known_choices())


def robot_types() -> list[str]:
    """Every LeRobot robot type: LeRobot's own robots and the installed ``lerobot_robot_*`` plugins."""
    return _registries()


def make_robot(robot_type: str, fields: dict[str, Any] | None = None) -> Any:
    """Return the LeRobot robot of ``robot_type`` with its config ``fields`` (what ``--robot.<field>=`` sets).

    Raises:
        BridgeError: An unknown type or a bad config (one line).
    """
    import draccus
    from lerobot.robots import RobotConfig, make_robot_from_config

    from .cli import error_line

    known = _registries(stop_at=robot_type)
    if robot_type not in known:
        raise BridgeError(f"unknown robot type {robot_type!r}; robot types: {', '.join(robot_types())}")
    try:
        config = draccus.decode(RobotConfig, {"type": robot_type, **(fields or {})})
    except Exception as err:  # noqa: BLE001 - draccus' DecodingError and the configs' own checks
        raise BridgeError(f"robot config of {robot_type}: {error_line(err)}") from err
    return make_robot_from_config(config)


def camera_keys(robot: Any) -> list[str]:
    """Observation keys of the robot's cameras (features shaped (H, W, 3))."""
    return [k for k, v in robot.observation_features.items() if isinstance(v, tuple) and len(v) == 3]


class RobotBridge:
    """See the module docstring.

    ``lower``/``upper`` (joint limits) and ``range_lower``/``range_upper`` (the joint angles at the ends of a motor's
    normalised range) are in ``joint_names`` order, or None: each joint's built-in ones by name
    (:func:`sigma_model.safety.limits_by_name`). ``max_step`` (rad per tick, scalar or per joint) and
    ``max_relative_target`` (rad, LeRobot's check, ``None``: not set) are in radians.
    """

    def __init__(self, robot: Any, joint_names: Sequence[str], lower: Sequence[float] | None = None,
                 upper: Sequence[float] | None = None, range_lower: Sequence[float] | None = None,
                 range_upper: Sequence[float] | None = None, max_step: Sequence[float] | float = 0.2,
                 command_timeout_s: float = 0.5, measurement_tolerance: float = 0.1,
                 max_relative_target: Sequence[float] | float | None = 0.25, motor_units: str = "auto",
                 torque_on_exit: str = "hold", robot_type: str | None = None) -> None:
        if torque_on_exit not in TORQUE_POLICIES:
            raise ValueError(f"torque_on_exit must be one of {TORQUE_POLICIES}, got {torque_on_exit!r}")
        self.robot = robot
        self.robot_type = robot_type or getattr(getattr(robot, "config", None), "type", robot.name)
        self.joint_names = tuple(joint_names)
        self._check_features()
        lower, upper = limits_by_name(self.joint_names, lower, upper)
        self.lower, self.upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
        self.range_lower, self.range_upper = limits_by_name(self.joint_names, range_lower, range_upper, RANGES)
        self.max_step = np.broadcast_to(np.asarray(max_step, dtype=np.float64), (len(self.joint_names),)).copy()
        self.command_timeout_s = float(command_timeout_s)
        self.measurement_tolerance = float(measurement_tolerance)
        self.max_relative_target = max_relative_target
        self.motor_units = motor_units
        self.torque_on_exit = torque_on_exit
        config = getattr(robot, "config", None)
        if config is not None and hasattr(config, "disable_torque_on_disconnect"):
            config.disable_torque_on_disconnect = torque_on_exit == "release"
        self.units: RobotUnits | None = None
        self.safety: SafetyFilter | None = None
        self.target: np.ndarray | None = None
        self.measured: np.ndarray | None = None
        self.cameras = camera_keys(robot)
        self._last_frames: dict[str, Any] = {}
        self.commands_in = 0
        self.read_errors = 0
        self.send_errors = 0

    def _check_features(self) -> None:
        want = {f"{j}.pos" for j in self.joint_names}
        got = set(self.robot.action_features)
        if got != want:
            raise BridgeError(f"robot {self.robot_type!r} takes actions {sorted(got)}, not the joints "
                              f"{list(self.joint_names)} (set joint_names to its joints)")

    # ---------------------------------------------------------------- connect
    #: Connection attempts: a servo that misses one status packet at connect (a USB or bus hiccup) is retried.
    CONNECT_ATTEMPTS = 3

    def connect(self, read: bool = True) -> Observation | None:
        """Connect, load the calibration, set up units, limits and safety, and (``read``) read the arm once.

        Without a read the first tick holds nothing until a read succeeded. LeRobot's errors for a missed status
        packet (ConnectionError; RuntimeError from its motor check) are retried, CONNECT_ATTEMPTS attempts in all,
        after a disconnect, before the last one is raised.
        """
        for attempt in range(1, self.CONNECT_ATTEMPTS + 1):
            try:
                return self._connect(read)
            except (ConnectionError, RuntimeError) as err:
                if isinstance(err, BridgeError) or attempt == self.CONNECT_ATTEMPTS:  # ours: not a bus hiccup
                    raise
                log.warning("connecting the robot failed (attempt %d of %d): %s; retrying", attempt,
                            self.CONNECT_ATTEMPTS, err)
                if getattr(self.robot, "is_connected", False):
                    try:
                        self.robot.disconnect()
                    except Exception:  # noqa: BLE001 - the next attempt reconnects
                        pass
                time.sleep(0.5)
        return None

    def _connect(self, read: bool) -> Observation | None:
        robot = self.robot
        robot.connect(calibrate=False)
        if not robot.is_calibrated:
            bus = getattr(robot, "bus", None)
            if not getattr(robot, "calibration", None) or bus is None:
                path = getattr(robot, "calibration_fpath", "its calibration file")
                robot.disconnect()
                raise BridgeError(
                    f"robot {self.robot_type} (id {robot.id!r}) is not calibrated and {path} does not exist: run "
                    f"`lerobot-calibrate --robot.type={self.robot_type} --robot.port=<port> --robot.id={robot.id}` "
                    "first")
            log.info("writing the calibration file %s to the motors", robot.calibration_fpath)
            with bus.torque_disabled():
                bus.write_calibration(robot.calibration)
        self.units = units_of_robot(robot, self.joint_names, self.range_lower, self.range_upper, self.motor_units)
        try:
            lo, hi = self.units.limits(self.lower, self.upper)
        except ValueError as err:
            robot.disconnect()
            raise BridgeError(f"robot {robot.name}: {err}") from err
        tolerance = np.minimum(self.measurement_tolerance, self.max_step)
        self.safety = SafetyFilter(SafetyConfig(lower=lo, upper=hi, max_step=self.max_step,
                                                measurement_tolerance=tolerance,
                                                plan_timeout_s=self.command_timeout_s, joint_names=self.joint_names))
        config = getattr(robot, "config", None)
        if self.max_relative_target is not None and getattr(config, "max_relative_target", 0) is None:
            config.max_relative_target = self.units.steps(self.max_relative_target)
        return self.read() if read else None

    @property
    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        """The joint limits every target is kept in (rad): ``lower``/``upper`` and the calibrated range."""
        return self.safety.config.lower.copy(), self.safety.config.upper.copy()

    # ------------------------------------------------------------------- loop
    def read(self) -> Observation:
        t_read = time.monotonic()
        values = self.robot.get_observation()
        obs = Observation(self.units.to_radians(values), t_read=t_read)
        cams = getattr(self.robot, "cameras", None) or {}
        for key in self.cameras:
            frame = values.get(key)
            if frame is None or frame is self._last_frames.get(key):
                continue  # no new frame since the last read
            self._last_frames[key] = frame
            obs.frames[key] = np.asarray(frame)
            stamp = getattr(cams.get(key), "latest_timestamp", None)  # perf_counter of the capture
            obs.frame_ages[key] = max(0.0, time.perf_counter() - stamp) if stamp else 0.0
        self.measured = obs.positions
        return obs

    def command(self, positions: Sequence[float], now: float) -> None:
        """Return a new joint target (rad, ``joint_names`` order) received at ``now`` (monotonic s)."""
        q = np.asarray(positions, dtype=np.float64).reshape(-1)
        if q.shape != (len(self.joint_names),) or not np.isfinite(q).all():
            raise ValueError(f"target must be {len(self.joint_names)} finite values, got {list(q)}")
        self.target = q
        self.safety.feed_plan(now)
        self.commands_in += 1

    def forget(self) -> None:
        """Drop the target, the previous command and the measurement (the robot was moved by other means).

        After a simulator reset, say: the next tick sends nothing and reads, and the commands after it start from that
        reading, never from the position before the move.
        """
        self.target = None
        self.measured = None
        self.safety.reset()

    def tick(self, now: float, send: bool = True) -> Tick:
        """Filter the target (a hold without a fresh one), send it (unless ``send`` is False), read."""
        decision = self.safety.step(self.target, self.measured, now)
        sent, error = None, ""
        if send and decision.command is not None and decision.publish:
            try:
                action = self.units.from_radians(decision.command)
                sent = self.units.to_radians({**action, **(self.robot.send_action(action) or {})})
                # the next targets stay within max_step of what the motors may hold: the goal written (LeRobot may
                # cap it); a report that cannot be a goal (NaN, beyond the limits) raises and counts as a failure
                self.safety.delivered(sent)
            except Exception as err:  # noqa: BLE001 - a bus error must not stop the loop
                sent = None  # the goal the motors hold is unknown: both the goal before and this one
                self.safety.delivered(None)
                self.send_errors += 1
                error = f"send_action failed: {type(err).__name__}: {err}"
        try:
            obs = self.read()
        except Exception as err:  # noqa: BLE001
            self.read_errors += 1
            self.measured = None  # the filter holds (or sends nothing) until a read succeeds
            return Tick(decision, sent, None, error or f"get_observation failed: {type(err).__name__}: {err}")
        return Tick(decision, sent, obs, error)

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        """Hold at the last measured position, then disconnect (torque per ``torque_on_exit``)."""
        robot = self.robot
        if not robot.is_connected:
            return
        try:
            if self.measured is not None and self.safety is not None:
                self.target = None
                self.safety.reset()  # a hold at the measured position, not at the last target
                decision = self.safety.step(None, self.measured, time.monotonic())
                if decision.command is not None:
                    robot.send_action(self.units.from_radians(decision.command))
        except Exception as err:  # noqa: BLE001 - disconnect anyway
            log.warning("final hold failed: %s", err)
        try:
            robot.disconnect()
        except Exception as err:  # noqa: BLE001 - a port already gone: the caller's own shutdown must still run
            log.warning("disconnect failed: %s", err)
