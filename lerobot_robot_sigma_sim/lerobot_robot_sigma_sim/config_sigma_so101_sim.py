# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The LeRobot robot config of Sigma's simulated SO-101: ``--robot.type=sigma_so101_sim``."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from lerobot.robots.config import RobotConfig


def _positive(value, name: str) -> float:
    """Return ``value`` as a float; ValueError unless it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@RobotConfig.register_subclass("sigma_so101_sim")
@dataclass
class SigmaSO101SimConfig(RobotConfig):
    """The MuJoCo SO-101 pick-and-place scene (``sigma_sim.so101_env``) behind the interface of ``so101_follower``.

    The same action and observation names and units.
    """

    #: Physics time (1 / control_hz s) each ``send_action`` advances: call it at this rate for real time.
    control_hz: float = 30.0
    #: Observation key of the front camera ("" = no camera), its size, and its frame rate in
    #: observations: a new frame every round(control_hz / camera_fps) ``get_observation`` calls.
    camera: str = "front"
    image_width: int = 96
    image_height: int = 96
    camera_fps: float = 30.0
    #: The first episode (cube pose; instruction drawn from the seed when empty).
    seed: int = 0
    instruction: str = ""
    #: Episode status: success once the task has stayed solved this long; done on success or after max_episode_s.
    success_hold_s: float = 0.17
    max_episode_s: float = 15.0
    #: As so101_follower: arm joints in degrees (else -100..100); the gripper is 0..100 either way.
    use_degrees: bool = True
    #: As so101_follower: per-step cap on |goal - present| in the robot's units (None: off), one number or
    #: ``{joint: cap}`` for every joint.
    max_relative_target: float | dict[str, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("control_hz", "camera_fps", "max_episode_s"):
            _positive(getattr(self, name), name)
        if not (math.isfinite(self.success_hold_s) and self.success_hold_s >= 0):
            raise ValueError(f"success_hold_s must be a finite number >= 0, got {self.success_hold_s!r}")
        if self.image_width <= 0 or self.image_height <= 0:
            raise ValueError("image_width and image_height must be > 0")
        cap = self.max_relative_target
        if isinstance(cap, dict):
            from sigma_sim.scene import JOINT_NAMES

            if set(cap) != set(JOINT_NAMES):
                raise ValueError(f"max_relative_target must give a cap for each joint of {list(JOINT_NAMES)} and no "
                                 f"other, got {list(cap)}")
            self.max_relative_target = {j: _positive(cap[j], f"max_relative_target[{j}]") for j in JOINT_NAMES}
        elif cap is not None:
            self.max_relative_target = _positive(cap, "max_relative_target")
