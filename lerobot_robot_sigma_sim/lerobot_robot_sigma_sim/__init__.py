"""Sigma's simulated SO-101 as a LeRobot robot plugin (``--robot.type=sigma_so101_sim``), and an
emulated Feetech STS3215 servo bus (:mod:`.feetech_emulator`) for LeRobot's Feetech robots.

LeRobot imports this package (found by its distribution name ``lerobot_robot_sigma_sim``) in
``register_third_party_plugins()``, which registers the config type.
"""

from lerobot_robot_sigma_sim.config_sigma_so101_sim import SigmaSO101SimConfig
from lerobot_robot_sigma_sim.sigma_so101_sim import SigmaSO101Sim

__all__ = ["SigmaSO101Sim", "SigmaSO101SimConfig"]
