# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Options and names of a bag evaluation (``sigma-bag-eval``): conditions, stages, nodes, BagEvalConfig."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sigma_model.evaluation.adapter import AdapterConfig

CONDITION_ROS = "ros_graph"
CONDITION_OFFLINE = "offline"
FRAMES_LOG_NAME = "sigma_bag_frames.jsonl"
STAGES = ("decode", "vision_stage", "language_stage", "action_stage", "adapter", "control_stage")
NODES = ("perception_node", "language_node", "action_node", "controller_node")
THRESHOLD_KEYS = ("vec", "chunk", "traj")  # the action vector, chunk and trajectory


@dataclass
class BagEvalConfig:
    """Options of one bag evaluation."""

    batch_size: int = 4  # consecutive scored frames per report batch
    seed: int = 0  # the action node's diffusion_seed and the offline generator seed
    telepathy: bool = True  # false: the tau = 0 baseline path
    adapter: bool = False  # apply the risk-gated adapter (paper 4.3; the action node's use_adapter)
    adapter_config: AdapterConfig = field(default_factory=AdapterConfig)  # the adapter's settings
    rate: float = 1.0  # publish at this multiple of the recorded speed; 0: lockstep (each frame after the last plan)
    action_align: str = "latest"  # a frame's recorded command: latest (at/before it) or next (at/after it)
    max_age_s: float = 1.0  # joint-state (and command) freshness = perception joint_state_timeout_s
    tau_timeout_s: float = 2.0  # perception tau_timeout_s
    gap_s: float | None = None  # episode split gap (None: 5 camera periods, >= 0.5 s)
    max_frames: int | None = None  # replay at most this many camera frames
    output_type: str = "joint_trajectory"  # motor command type: joint_trajectory or float64_multi_array
    frame_timeout_s: float = 30.0  # lockstep: longest wait for one frame's plan
    settle_s: float = 0.02  # lockstep: pause after a joint state / instruction before the frame
    device: str = "cpu"  # torch device of the model
    domain_id: int | None = None  # ROS_DOMAIN_ID of the replay (default: a private one)
    graph_mode: str = "inprocess"  # inprocess: the nodes in this process; processes: one process per node
    startup_timeout_s: float = 60.0  # seconds the nodes may take to become active
    # MSE above which a sample counts as hard, per target: {vec: 0.1, chunk: 0.2, traj: 0.2}
    hard_thresholds: dict[str, float] = field(default_factory=lambda: {"vec": 0.1, "chunk": 0.2, "traj": 0.2})
    # a window succeeds when its MSEs are all within these
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
        for name in ("hard_thresholds", "success_thresholds"):
            given = getattr(self, name)
            if set(given) != set(THRESHOLD_KEYS) or not all(v > 0 for v in given.values()):
                raise ValueError(f"{name} must give a positive value for each of {THRESHOLD_KEYS}, got {given}")
