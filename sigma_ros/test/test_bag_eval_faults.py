# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""sigma-bag-eval's offline path refuses the joint states the nodes refuse (bag_pairing's plausibility check)."""

from __future__ import annotations

import numpy as np
from sigma_model.safety import SO101_UPPER_LIMITS, JointLimits

from sigma_ros.bag_pairing import read_paired_frames
from sigma_ros.bag_robot_writer import RobotBagWriter

T0 = 1_700_000_000 * 10**9
MS = 10**6


def test_pairing_refuses_joint_states_beyond_the_nodes_limits_and_counts_them(tmp_path):
    q = np.linspace(-0.5, 0.5, 6)
    within, beyond = q.copy(), q.copy()
    within[0], beyond[0] = SO101_UPPER_LIMITS[0] + 0.09, SO101_UPPER_LIMITS[0] + 0.11  # tolerance 0.1 rad
    with RobotBagWriter(tmp_path / "bag", "sqlite3") as w:
        w.instruction(T0, "pick the cube")
        for k, state in enumerate((q, np.degrees(q), within, beyond, q)):  # degrees: what a LeRobot robot reads
            w.joint_state(T0 + (20 * k + 5) * MS, state)
            w.action(T0 + (20 * k + 5) * MS, q)
            w.image(T0 + (20 * k + 10) * MS, np.full((8, 8, 3), 100, np.uint8))
    frames, stats, _ = read_paired_frames(tmp_path / "bag")
    assert stats.invalid_joint_states == 2 and "implausible joint state" in stats.errors[0]
    assert [f.state is not None for f in frames] == [True, False, True, False, True]
    assert stats.joint_limits["tolerance"] == [0.1] * 6
    # limits given instead of the nodes' defaults
    wide = JointLimits(-30.0, 30.0, 0.0)
    frames, stats, _ = read_paired_frames(tmp_path / "bag", joint_limits=wide)
    assert stats.invalid_joint_states == 0 and all(f.state is not None for f in frames)
