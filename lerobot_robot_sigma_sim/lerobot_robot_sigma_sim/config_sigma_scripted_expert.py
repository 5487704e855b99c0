# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The LeRobot teleoperator config of the simulator's scripted expert: ``--teleop.type=sigma_scripted_expert``."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.teleoperators.config import TeleoperatorConfig


@TeleoperatorConfig.register_subclass("sigma_scripted_expert")
@dataclass
class SigmaScriptedExpertConfig(TeleoperatorConfig):
    """The scripted pick-and-place expert as a teleoperator of a ``sigma_so101_sim`` robot of the same process."""

    #: ``--robot.id`` of the simulated robot to operate (None: the only connected one).
    robot_id: str | None = None
    #: Follow lerobot-record's spoken cues: "Recording episode N" sets the scene of episode N (seed
    #: ``robot.seed + N``), as an operator resets the scene between episodes.
    follow_record_cues: bool = True
