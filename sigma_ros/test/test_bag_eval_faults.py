# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""sigma-bag-eval's offline path refuses the joint states the nodes refuse.

bag_pairing's plausibility check: each joint's built-in limits by name, or the limits of the replayed graph.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from sigma_model import SigmaModel
from sigma_model.safety import KNOWN_JOINT_LIMITS, SO101_JOINT_NAMES, SO101_UPPER_LIMITS, JointLimits
from sigma_model.testing import small_config

from sigma_ros.bag_pairing import read_paired_frames
from sigma_ros.bag_replay import evaluate_bag
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


BEYOND = 4  # the frame whose joint state is beyond the limits
GRIPPER_BEYOND = 1.95  # beyond the gripper's limit by more than the 0.1 rad tolerance, within shoulder_pan's
REVERSED = list(reversed(SO101_JOINT_NAMES))
RENAMED = [f"j{i}" for i in range(6)]


def write_bag(path, joint_names) -> None:
    """Write 14 frames at 10 Hz; the joint state before frame BEYOND reads GRIPPER_BEYOND for the gripper.

    (The last joint when none is named gripper.)
    """
    gripper = joint_names.index("gripper") if "gripper" in joint_names else 5
    with RobotBagWriter(path, "sqlite3", joint_names=joint_names) as w:
        w.instruction(T0, "pick the cube")
        for k in range(14):
            state = np.full(6, 0.1)
            state[gripper] = GRIPPER_BEYOND if k == BEYOND else 0.1
            w.joint_state(T0 + (100 * k + 5) * MS, state)
            w.action(T0 + (100 * k + 5) * MS, np.full(6, 0.1))
            w.image(T0 + (100 * k + 10) * MS, np.full((32, 32, 3), 100, np.uint8))


def offline_eval(path, joint_names=None):
    torch.manual_seed(0)
    model = SigmaModel(small_config(max_text_tokens=32)).eval()
    return evaluate_bag(str(path), None, joint_names=joint_names, ros=False, model=model, n_boot=10, plots=False)


@pytest.mark.parametrize("recorded,given", [(REVERSED, REVERSED), (REVERSED, None), (SO101_JOINT_NAMES, REVERSED)],
                         ids=["given_order", "reordered", "so101_given_reversed"])
def test_offline_eval_runs_no_frame_whose_joint_state_the_perception_node_refuses(tmp_path, recorded, given):
    """Whatever the order of the joints, each is judged by its own limits (the pairing counts the frame).

    As the replayed graph's perception node judges it (test_bag_replay.py). given_order, so101_given_reversed:
    --joint_names in another order than the SO-101's (before, the SO-101's limits applied in their order: the gripper
    was judged by shoulder_pan's); reordered: the pairing maps the recording's joints to the SO-101's order.
    """
    write_bag(tmp_path / "bag", list(recorded))
    report, details = offline_eval(tmp_path / "bag", given)
    assert [s.index for s in details["steps"] if not s.vision] == [BEYOND]
    pairing = report["meta"]["pairing"]
    assert pairing["invalid_joint_states"] == 1 and "gripper = 1.95 rad" in pairing["errors"][0]
    names = pairing["joint_names"]
    assert dict(zip(names, pairing["joint_limits"]["upper"])) == {j: KNOWN_JOINT_LIMITS[j][1] for j in names}


def test_offline_eval_of_joints_without_built_in_limits_is_the_graphs_one_line_error(tmp_path):
    """Another robot's joints (j0..j5), no limits in the graph's parameter file: the graph's error, in one line.

    The perception node cannot configure; the evaluation says the same instead of skipping the check.
    """
    write_bag(tmp_path / "bag", RENAMED)
    with pytest.raises(ValueError) as err:
        offline_eval(tmp_path / "bag")
    assert str(err.value).startswith(f"no built-in limits for joint(s) {RENAMED}") and "\n" not in str(err.value)
    with pytest.raises(ValueError, match=re.escape(str(err.value))):
        JointLimits(joint_names=RENAMED)  # what the perception node raises at configure


def test_offline_eval_judges_joint_states_by_the_graphs_parameter_file(tmp_path, monkeypatch):
    """Explicit limits in the parameter file the graph reads (SIGMA_CONFIG): the pairing uses them.

    In joint_names order, for joints without built-in limits.
    """
    import yaml

    from sigma_ros import graph

    config = yaml.safe_load(graph.default_config_file().read_text())
    common = config["/**"]["ros__parameters"]
    common["joint_lower_limits"], common["joint_upper_limits"] = [-1.0] * 6, [1.0, 1.0, 1.0, 1.0, 1.0, 1.5]
    (tmp_path / "sigma.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("SIGMA_CONFIG", str(tmp_path / "sigma.yaml"))
    write_bag(tmp_path / "bag", RENAMED)
    report, details = offline_eval(tmp_path / "bag")
    assert [s.index for s in details["steps"] if not s.vision] == [BEYOND]  # j5 at 1.95: beyond 1.5 + 0.1
    limits = report["meta"]["pairing"]["joint_limits"]
    assert limits["lower"] == [-1.0] * 6 and limits["upper"][5] == 1.5
