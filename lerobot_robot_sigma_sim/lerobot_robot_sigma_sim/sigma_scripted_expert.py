# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The simulator's scripted expert as a LeRobot teleoperator: ``--teleop.type=sigma_scripted_expert``.

It stands in for a person with a leader arm, so that ``lerobot-record`` records demonstrations on
``sigma_so101_sim`` exactly as it records a real SO-101 teleoperated with ``so101_leader``: each
``get_action`` is the expert's next joint target (:class:`sigma_sim.expert.ScriptedExpert`) in the
robot's units (degrees or -100..100 for the arm, 0..100 for the gripper, as the leader arm reads).

The expert is privileged: it plans from the simulator's state (cube pose), so it must act on the
very simulator the robot steps. ``lerobot-record`` builds the robot and the teleoperator
separately from their configs (``make_robot_from_config``, ``make_teleoperator_from_config``) in
one process and connects the robot first; the one link is a name, so ``connect`` looks the robot
up by its ``--robot.id`` among the connected simulators of the process
(:func:`~lerobot_robot_sigma_sim.sigma_so101_sim.connected_sim`). A second simulator kept in step
would be a copy to synchronise; a robot config naming its teleoperator would tie the robot to it.

Episodes: the operator of ``lerobot-record`` resets the scene when it says "Reset the
environment" and starts when it says "Recording episode N" (``log_say``: logged, and spoken with
``--play_sounds``). With ``follow_record_cues`` this teleoperator listens to that log line and
resets the simulator to episode N's scene (seed ``robot.seed + N``, the robot's instruction) before
the episode's first observation, so a re-recorded episode gets the same scene. Any reset of the
robot (:meth:`SigmaSO101Sim.reset_episode`) makes the expert plan again from the new scene.
"""

from __future__ import annotations

import logging
import re
from functools import cached_property
from typing import Any

from lerobot.teleoperators.teleoperator import Teleoperator

from lerobot_robot_sigma_sim.config_sigma_scripted_expert import SigmaScriptedExpertConfig
from lerobot_robot_sigma_sim.sigma_so101_sim import SigmaSO101Sim, connected_sim


class _RecordCues(logging.Handler):
    """Calls ``teleop.start_episode(N)`` when lerobot-record logs "Recording episode N" (its ``log_say``)."""

    EPISODE = re.compile(r"Recording episode (\d+)")

    def __init__(self, teleop: "SigmaScriptedExpert") -> None:
        super().__init__(logging.INFO)
        self.teleop = teleop

    def emit(self, record: logging.LogRecord) -> None:
        match = self.EPISODE.fullmatch(record.getMessage())
        if match:
            self.teleop.start_episode(int(match.group(1)))


class SigmaScriptedExpert(Teleoperator):
    """See the module docstring."""

    config_class = SigmaScriptedExpertConfig
    name = "sigma_scripted_expert"

    def __init__(self, config: SigmaScriptedExpertConfig) -> None:
        # Teleoperator.__init__ would make a calibration folder; a script needs no calibration.
        self.config = config
        self.id = config.id
        self.calibration_dir, self.calibration_fpath, self.calibration = config.calibration_dir, None, {}
        self.robot: SigmaSO101Sim | None = None
        self.expert = None
        self._episode = 0
        self._cues: _RecordCues | None = None

    @cached_property
    def action_features(self) -> dict[str, type]:
        from sigma_sim.so101_env import JOINT_NAMES

        return {f"{j}.pos": float for j in JOINT_NAMES}

    @property
    def feedback_features(self) -> dict[str, type]:
        return {}

    @property
    def is_connected(self) -> bool:
        return self.robot is not None

    def connect(self, calibrate: bool = True) -> None:
        """Attach to the connected simulator named by ``robot_id``.

        Raises:
            DeviceAlreadyConnectedError: If connected already.
            LookupError: If no such simulator is connected in this process.
            ValueError: If the robot has no instruction (the expert would not know where to place the cube).
        """
        if self.is_connected:
            from lerobot.utils.errors import DeviceAlreadyConnectedError

            raise DeviceAlreadyConnectedError(f"{self} already connected")
        robot = connected_sim(self.config.robot_id)
        if not robot.config.instruction:
            raise ValueError("the scripted expert places the cube where the robot's instruction says: set "
                             "--robot.instruction (the text of --dataset.single_task)")
        from sigma_sim.expert import ScriptedExpert

        self.robot, self.expert, self._episode = robot, ScriptedExpert(robot.env), robot.episodes_started
        if self.config.follow_record_cues:
            self._cues = _RecordCues(self)
            logging.getLogger().addHandler(self._cues)

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        """Nothing to calibrate."""

    def configure(self) -> None:
        """Nothing to configure."""

    def _check_connected(self) -> None:
        if not self.is_connected:
            from lerobot.utils.errors import DeviceNotConnectedError

            raise DeviceNotConnectedError(f"{self} is not connected")

    def start_episode(self, index: int) -> None:
        """Set the scene of episode ``index``: the robot's seed + ``index``, its instruction."""
        self._check_connected()
        self.robot.reset_episode(self.robot.config.seed + int(index), self.robot.config.instruction)

    def get_action(self) -> dict[str, float]:
        """Return the expert's next joint targets in the robot's units (``<joint>.pos``)."""
        self._check_connected()
        robot = self.robot
        if robot.episodes_started != self._episode:  # the scene was reset: plan from the new one
            self.expert.reset()
            self._episode = robot.episodes_started
        return robot.units.from_radians(self.expert.act())

    def send_feedback(self, feedback: dict[str, Any]) -> None:
        """Nothing to feed back (no feedback features)."""

    def disconnect(self) -> None:
        if self._cues is not None:
            logging.getLogger().removeHandler(self._cues)
            self._cues = None
        self.robot = self.expert = None
