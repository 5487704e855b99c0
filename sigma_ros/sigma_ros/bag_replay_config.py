# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Options and names of a bag evaluation (``sigma-bag-eval``): conditions, stages, nodes, BagEvalConfig."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any




log = logging.getLogger(__name__)


CONDITION_ROS = "ros_graph"
CONDITION_OFFLINE = "offline"
FRAMES_LOG_NAME = "sigma_bag_frames.jsonl"
STAGES = ("decode", "vision_stage", "language_stage", "action_stage", "adapter", "control_stage")
NODES = ("perception_node", "language_node", "action_node", "controller_node")


@dataclass
class BagEvalConfig:
    """Options of one bag evaluation."""

    batch_size: int = 4
    seed: int = 0  # the action node's diffusion_seed and the offline generator seed
    telepathy: bool = True
    adapter: bool = False
    adapter_config: Any = None  # sigma_model.evaluation.AdapterConfig (None: defaults)
    rate: float = 1.0  # >0: x recorded speed; 0: lockstep
    action_align: str = "latest"
    max_age_s: float = 1.0  # joint-state (and command) freshness = perception joint_state_timeout_s
    tau_timeout_s: float = 2.0  # perception tau_timeout_s
    gap_s: float | None = None  # episode split gap (None: 5 camera periods, >= 0.5 s)
    max_frames: int | None = None
    output_type: str = "joint_trajectory"
    frame_timeout_s: float = 30.0  # lockstep: longest wait for one frame's plan
    settle_s: float = 0.02  # lockstep: pause after a joint state / instruction before the frame
    device: str = "cpu"
    domain_id: int | None = None
    graph_mode: str = "inprocess"  # inprocess: the nodes in this process; processes: one process per node
    startup_timeout_s: float = 60.0
    hard_thresholds: dict[str, float] = field(default_factory=lambda: {"vec": 0.1, "chunk": 0.2, "traj": 0.2})
    success_thresholds: dict[str, float] = field(default_factory=lambda: {"vec": 0.1, "chunk": 0.2, "traj": 0.2})

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if not (isinstance(self.rate, (int, float)) and math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError(f"rate must be >= 0 (0 = lockstep), got {self.rate!r}")
        if self.action_align not in ("latest", "next"):
            raise ValueError(f"action_align must be 'latest' or 'next', got {self.action_align!r}")
        if self.graph_mode not in ("inprocess", "processes"):
            raise ValueError(f"graph_mode must be 'inprocess' or 'processes', got {self.graph_mode!r}")
        if self.output_type not in ("joint_trajectory", "float64_multi_array"):
            raise ValueError(f"output_type must be joint_trajectory or float64_multi_array, got {self.output_type!r}")
        for name in ("max_age_s", "tau_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
