# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Sigma's simulated SO-101 (MuJoCo): pick-and-place env, scripted expert, recorder.

No ROS imports. Importing this package picks a headless OpenGL backend for
MuJoCo (``MUJOCO_GL=egl``, else ``osmesa``) unless ``MUJOCO_GL`` is already set
(see :mod:`sigma_sim._gl`). The public names below are imported lazily.

Main entry points::

    from sigma_sim import SO101PickPlaceEnv, SimConfig, ScriptedExpert
    from sigma_sim.record import record_dataset      # LeRobot v3.0 dataset of expert demos
"""

from __future__ import annotations

import importlib
from typing import Any

from sigma_sim._gl import select_gl_backend

GL_BACKEND = select_gl_backend()

_LAZY = {
    "GRIPPER_CLOSED": "sigma_sim.so101_env",
    "GRIPPER_OPEN": "sigma_sim.so101_env",
    "HOME_QPOS": "sigma_sim.so101_env",
    "INSTRUCTIONS": "sigma_sim.instructions",
    "JOINT_NAMES": "sigma_sim.so101_env",
    "SimConfig": "sigma_sim.so101_env",
    "SO101PickPlaceEnv": "sigma_sim.so101_env",
    "instruction_target": "sigma_sim.instructions",
    "TRAINING_WORDINGS": "sigma_sim.instructions",
    "HELD_OUT_PARAPHRASES": "sigma_sim.instructions",
    "SELECTION_PARAPHRASES": "sigma_sim.instructions",
    "Region": "sigma_sim.scene",
    "ExpertConfig": "sigma_sim.expert",
    "EpisodeResult": "sigma_sim.expert",
    "ScriptedExpert": "sigma_sim.expert",
    "evaluate_expert": "sigma_sim.expert",
    "expert_episode": "sigma_sim.expert",
    "run_expert_episode": "sigma_sim.expert",
    "record_dataset": "sigma_sim.record",
    "to_lerobot_frame": "sigma_sim.record",
}

__all__ = ["GL_BACKEND", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sigma_sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
