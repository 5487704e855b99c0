# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Sigma's simulated SO-101 as a LeRobot robot plugin (``--robot.type=sigma_so101_sim``).

Its scripted expert as a LeRobot teleoperator (``--teleop.type=sigma_scripted_expert``), which
``lerobot-record`` uses as it uses a leader arm.

An emulated Feetech STS3215 servo bus (:mod:`.feetech_emulator`) for LeRobot's Feetech robots.

LeRobot imports this package (found by its distribution name ``lerobot_robot_sigma_sim``) in
``register_third_party_plugins()``, which registers the config types.
"""

from lerobot_robot_sigma_sim.config_sigma_scripted_expert import SigmaScriptedExpertConfig
from lerobot_robot_sigma_sim.config_sigma_so101_sim import SigmaSO101SimConfig
from lerobot_robot_sigma_sim.sigma_scripted_expert import SigmaScriptedExpert
from lerobot_robot_sigma_sim.sigma_so101_sim import SigmaSO101Sim

__all__ = ["SigmaSO101Sim", "SigmaSO101SimConfig", "SigmaScriptedExpert", "SigmaScriptedExpertConfig"]
