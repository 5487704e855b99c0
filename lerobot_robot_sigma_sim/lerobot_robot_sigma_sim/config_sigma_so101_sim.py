"""The LeRobot robot config of Sigma's simulated SO-101: ``--robot.type=sigma_so101_sim``."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.robots.config import RobotConfig


@RobotConfig.register_subclass("sigma_so101_sim")
@dataclass
class SigmaSO101SimConfig(RobotConfig):
    """The MuJoCo SO-101 pick-and-place scene (``sigma_sim.so101_env``) behind the interface of
    ``so101_follower``: the same action and observation names and units."""

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
    #: As so101_follower: per-step cap on |goal - present| in the robot's units (None: off).
    max_relative_target: float | dict[str, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.control_hz > 0 and self.camera_fps > 0):
            raise ValueError("control_hz and camera_fps must be > 0")
        if self.image_width <= 0 or self.image_height <= 0:
            raise ValueError("image_width and image_height must be > 0")
