# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""sigma-bag-eval.

A recording written by the test (sqlite3 and MCAP) replays through the four ROS 2 nodes (real rclpy + DDS on a private
domain) and through the offline model stages with matching actions, and the report has the sigma_eval_report.json fields
plus latency and dropped messages.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from sigma_model import SigmaModel, SigmaObservation, load_checkpoint, save_checkpoint
from sigma_model.evaluation.report import BATCH_LOG_NAME, MSE_PLOT_NAME, REPORT_NAME
from sigma_ros.bag_robot_writer import write_synthetic_robot_bag
from sigma_ros.bag_replay import evaluate_bag, main
from sigma_ros.bag_replay_config import FRAMES_LOG_NAME, BagEvalConfig
from sigma_ros.bag_pairing import PairedFrame
from sigma_ros.bag_replay_graph import GraphRun
from sigma_ros.bag_replay_offline import FrameOutput, frame_tensor, schedule
from sigma_ros.bag_replay_scoring import batches_of, build_records

from sigma_model.testing import small_config
from sigma_model.testing import PAPER_FIELDS
from sigma_model.testing import make_tau_matter_

from test_bag_eval_faults import BEYOND, REVERSED, write_bag


def _has_ros() -> bool:
    try:
        import rclpy  # noqa: F401
        import sigma_ros_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True


needs_ros = pytest.mark.skipif(not _has_ros(), reason="rclpy / sigma_ros_msgs not importable")
INSTRUCTIONS = ((0.0, "pick up the red cube"), (0.85, "place it in the bowl"))
TOL = 1e-4  # same weights, same inputs, same seeds: the paths agree to float rounding


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = SigmaModel(small_config(max_text_tokens=32)).eval()  # room for the instructions (bytes)
    make_tau_matter_(model, seed=5)  # tau changes vision, language and action, as after training
    path = tmp_path_factory.mktemp("bag_ckpt")
    save_checkpoint(model, path)
    return str(path)


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    out = {}
    for storage, action_type in (("sqlite3", "joint_trajectory"), ("mcap", "float64_multi_array")):
        out[storage] = root / storage
        # 40x40 camera images (the model takes 32x32: resized as the perception node does), 16 frames at
        # 10 Hz, joint states and commands at 50 Hz, an instruction change (memory reset) at 0.85 s
        write_synthetic_robot_bag(out[storage], storage, n_frames=16, image_size=40, instructions=INSTRUCTIONS,
                                  action_type=action_type, seed=1)
    return out


def _check_report(report, out_dir, conditions):
    assert list(report["conditions"]) == conditions
    for field in PAPER_FIELDS:
        assert field in report, field
        for c in conditions:
            assert field in report["conditions"][c], (c, field)
    for name in (REPORT_NAME, BATCH_LOG_NAME, FRAMES_LOG_NAME):
        assert (out_dir / name).is_file(), name
    on_disk = json.loads((out_dir / REPORT_NAME).read_text())
    assert on_disk["format"] == "sigma-eval-v2" and on_disk["meta"]["source"] == "rosbag"
    return on_disk


@needs_ros
@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_lockstep_replay_through_nodes_matches_offline(checkpoint, bags, tmp_path, storage):
    out = tmp_path / "eval"
    output_type = "joint_trajectory" if storage == "sqlite3" else "float64_multi_array"
    cfg = BagEvalConfig(rate=0.0, batch_size=3, seed=1234, settle_s=0.05, output_type=output_type)
    report, details = evaluate_bag(str(bags[storage]), checkpoint, str(out), config=cfg, n_boot=200)
    _check_report(report, out, ["ros_graph", "offline"])
    assert (out / MSE_PLOT_NAME).is_file()

    steps = details["steps"]
    scored = [s.index for s in steps if s.plan and s.target is not None]
    # chunk_len 4 / traj_len 5 of the small config: two 8-frame episodes give 4 scored frames each
    assert len(scored) == 8 and sum(s.plan for s in steps) == 16
    assert report["conditions"]["ros_graph"]["num_samples"] == report["conditions"]["offline"]["num_samples"] == 8

    g = report["meta"]["ros_graph"]
    assert g["frames_published"] == 16 and g["plans_received"] == g["plans_expected"] == 16
    assert g["dropped_frames"] == 0 and g["motor_commands"] > 0
    assert all(v == 0 for d in g["node_dropped_inputs"].values() for v in (d or {}).values()), g["node_dropped_inputs"]
    assert {"vision_stage", "language_stage", "action_stage"} <= set(g["stage_latency_ms"])
    assert g["latency_e2e_ms"]["max"] > 0 and g["samples_per_s"] > 0

    c = report["meta"]["consistency"]
    assert c["frames_compared"] == 8 and c["frames_diverged"] == 0, c
    assert c["recurrence_mismatches"] == 0 and c["state_mismatches"] == 0 and c["memory_mismatches"] == 0, c
    assert c["ros_graph_vs_offline_max_abs_diff"] <= TOL
    # ... and so the two conditions report the same errors, batch by batch
    for field in ("avg_mse_vector", "avg_mse_chunk", "avg_mse_traj", "avg_tau_l2", "avg_semantic_text_alignment"):
        assert report["conditions"]["ros_graph"][field] == pytest.approx(report["conditions"]["offline"][field],
                                                                        rel=1e-4, abs=1e-6), field
    extra = report["conditions"]["ros_graph"]["extra"]
    for key in ("latency_e2e_ms", "latency_vision_stage_ms", "latency_action_stage_ms", "dropped_frames",
                "motor_cmd_mse", "max_abs_diff_vs_offline"):
        assert key in extra, key
    assert extra["dropped_frames"] == 0

    # the graph really used the recurrence: tau of the previous frame, memory reset at the new instruction
    frames = details["frames"]
    graph = details["graph"]
    assert graph.used_tau[1] == 0 and graph.used_tau[15] == 14 and graph.used_tau.get(0) is None
    assert graph.used_memory[7] == (INSTRUCTIONS[0][1], 7) and graph.used_memory[8] == (INSTRUCTIONS[1][1], 0)
    assert frames[8].instruction == INSTRUCTIONS[1][1] and steps[8].reset_memory and not steps[9].reset_memory
    # the recorded commands are the targets: vector = the frame's command
    s0 = steps[scored[0]]
    np.testing.assert_allclose(s0.target[0], frames[scored[0]].action.astype(np.float32))


@needs_ros
def test_replay_through_node_processes(checkpoint, bags, tmp_path):
    """The nodes as separate processes (as sigma-graph / ros2 launch run them), lockstep, 6 frames."""
    cfg = BagEvalConfig(rate=0.0, batch_size=2, seed=1234, settle_s=0.05, max_frames=6, graph_mode="processes")
    report, details = evaluate_bag(str(bags["sqlite3"]), checkpoint, None, config=cfg, n_boot=50)
    g = report["meta"]["ros_graph"]
    assert g["mode"] == "lockstep, node processes"
    assert g["frames_published"] == 6 and g["plans_received"] == 6 and g["dropped_frames"] == 0
    assert set(g["node_dropped_inputs"]) == {"perception_node", "language_node", "action_node", "controller_node"}
    c = report["meta"]["consistency"]
    assert c["frames_compared"] == 2 and c["ros_graph_vs_offline_max_abs_diff"] <= TOL
    assert c["recurrence_mismatches"] == 0 and c["state_mismatches"] == 0


@needs_ros
def test_recorded_rate_replay(checkpoint, bags, tmp_path):
    """Published on the recording's clock: timing, latency and drops are measured.

    All four nodes share this one Python process here, so on a loaded machine frames may be dropped: the report counts
    them (the lockstep test above checks the actions exactly).
    """
    out = tmp_path / "eval"
    cfg = BagEvalConfig(rate=1.0, batch_size=4, seed=1234, frame_timeout_s=10.0)
    report, details = evaluate_bag(str(bags["mcap"]), checkpoint, str(out), config=cfg, n_boot=100, plots=False)
    _check_report(report, out, ["ros_graph", "offline"])
    g = report["meta"]["ros_graph"]
    assert g["mode"] == "rate x1" and g["frames_published"] == 16
    assert g["plans_received"] + g["dropped_frames"] == g["plans_expected"] == 16
    assert g["joint_states_published"] > 16 * 4  # the 50 Hz stream, not one per frame
    # frames in step with the offline path (no drop or recurrence mismatch earlier in their memory segment)
    # have the offline actions; the first scored frame of each segment usually is, unless dropped, paired with
    # another joint state (the replay stamps at publication: jitter moves the nearest state) or stepped before the
    # instruction change reached the language node; the lockstep tests above check all frames exactly
    c = report["meta"]["consistency"]
    explained = c["state_mismatches"] + c["memory_mismatches"] + c["recurrence_mismatches"] + g["dropped_frames"]
    assert c["frames_compared"] >= 1 or explained > 0, (c, g)
    if c["frames_compared"]:
        assert c["ros_graph_vs_offline_max_abs_diff"] <= TOL, c
    assert c["frames_compared"] + c["frames_diverged"] <= g["plans_received"]
    lines = [json.loads(x) for x in (out / FRAMES_LOG_NAME).read_text().splitlines()]
    assert len(lines) == 16 and sum(x["plan_received"] for x in lines) == g["plans_received"]


@needs_ros
def test_lockstep_replay_of_reordered_joints_steps_the_frames_the_offline_path_steps(checkpoint, tmp_path):
    """--joint_names in another order than the SO-101's: the graph's perception node refuses the gripper beyond it.

    Each joint is judged by its own limits, by name (before, by the SO-101's in their order: the gripper by
    shoulder_pan's, so the frame was stepped); the offline path skips the same frame, so no plan is awaited in vain.
    """
    write_bag(tmp_path / "bag", REVERSED)
    cfg = BagEvalConfig(rate=0.0, batch_size=2, frame_timeout_s=10.0)
    report, details = evaluate_bag(str(tmp_path / "bag"), checkpoint, None, config=cfg, joint_names=REVERSED,
                                   n_boot=10, plots=False)
    planned = [s.index for s in details["steps"] if s.plan]
    assert BEYOND not in planned and sorted(details["graph"].outputs) == planned
    assert report["meta"]["pairing"]["invalid_joint_states"] == 1


A, B = "pick up the red cube", "place it in the bowl"
IN_STEP_MEMORY = {0: (A, 0), 1: (A, 1), 2: (A, 2), 3: (B, 0), 4: (B, 1), 5: (B, 2)}


@pytest.mark.parametrize("fault", ["late_frame", "tau_source"])
def test_consistency_compares_only_frames_the_graph_stepped_as_the_offline_path(fault):
    """Frames whose recurrence differs through no fault of the stages (a loaded machine) are left out, not compared.

    late_frame: the language node stepped frame 2 after the instruction change reached it (memory reset there), so
    frames 2..5 carry another m_t than the offline path: memory mismatches. tau_source: the perception node used the
    tau of frame 0 for frame 2 (frame 1's plan was late), so frame 2's tau differs and, through tau_prev, which a new
    instruction does not reset, so do those of frames 3..5. Frames 0 and 1 alone are in step.
    """
    frames = [PairedFrame(index=i, t_ns=i * 100_000_000, stamp_ns=i, image=np.zeros((4, 4, 3), np.uint8),
                          state=np.full(6, 0.1 * i), action=np.full(6, 0.1 * i), instruction=A if i < 3 else B,
                          instruction_seq=1 if i < 3 else 2) for i in range(6)]
    steps = schedule(frames, telepathy=True, tau_timeout_s=1.0)
    assert [s.memory_step for s in steps] == [0, 1, 2, 0, 1, 2] and [s.tau_from for s in steps] == [None, 0, 1, 2, 3, 4]
    gen = torch.Generator().manual_seed(0)
    for s in steps:
        s.target = (np.zeros(6, np.float32), np.zeros((4, 6), np.float32), np.zeros((5, 6), np.float32))
    offline = {i: FrameOutput(actions=tuple(torch.randn(1, *shape, generator=gen) for shape in ((6,), (4, 6), (5, 6))),
                              tau_l2=0.1) for i in range(6)}
    outputs = {i: FrameOutput(actions=tuple(x + (0.5 if i >= 2 else 0.0) for x in offline[i].actions), tau_l2=0.1)
               for i in range(6)}
    used_tau = {i: s.tau_from for i, s in enumerate(steps)}
    used_memory = dict(IN_STEP_MEMORY)
    if fault == "late_frame":
        used_memory.update({2: (B, 0), 3: (B, 1), 4: (B, 2), 5: (B, 3)})
    else:
        used_tau[2] = 0
    graph = GraphRun(outputs=outputs, published={i: float(i) for i in range(6)},
                     plan_times={i: i + 0.05 for i in range(6)}, used_tau=used_tau,
                     used_state={i: f.state.astype(np.float32) for i, f in enumerate(frames)}, used_memory=used_memory,
                     motor_commands=[], statuses=[], final_status={}, seconds=1.0, frames_published=6,
                     joint_states_published=6, instructions_published=2, mode="rate x1")
    _, c = build_records(batches_of(steps, 3), steps, frames, offline, graph, model=None, cfg=BagEvalConfig())
    assert c["ros_graph_vs_offline_max_abs_diff"] <= TOL and c["frames_compared"] == 2, c
    assert c["frames_diverged"] == 4, c
    assert (c["memory_mismatches"], c["recurrence_mismatches"]) == ((4, 0) if fault == "late_frame" else (0, 1)), c


@torch.no_grad()
@pytest.mark.parametrize("telepathy", [True, False])
def test_offline_path_carries_tau_and_memory(checkpoint, bags, telepathy):
    """The offline path against the model's own forward with the state carried by hand.

    Each frame's tau_prev is the previous frame's tau (telepathy off: zeros), its m_{t-1} the previous memory, reset at
    the new instruction. Dropping either carry changes the actions (tau matters in these weights).
    """
    cfg = BagEvalConfig(seed=7, telepathy=telepathy)
    _, details = evaluate_bag(str(bags["sqlite3"]), checkpoint, None, config=cfg, ros=False, n_boot=20)
    frames, steps, got = details["frames"], details["steps"], details["offline"]
    model = load_checkpoint(checkpoint).eval()
    c = model.config

    def forward(i, tau, memory):
        obs = SigmaObservation(image=frame_tensor(frames[i].image, c.image_size),
                               robot_state=torch.from_numpy(frames[i].state.astype(np.float32)).unsqueeze(0),
                               audio=torch.zeros(1, c.audio_chunk_samples))
        return model(obs, model.tokenize([frames[i].instruction]), tau_prev=tau, memory_prev=memory,
                     telepathy=telepathy, generator=torch.Generator().manual_seed(7))

    def diff(out, i):  # actions and tau (with telepathy off the memory reaches only tau)
        return max(abs(float(out.language.tau.norm()) - got[i].tau_l2), *(float((a - b).abs().max()) for a, b in zip(
            (out.action.action_vector, out.action.action_chunk, out.action.action_trajectory), got[i].actions)))

    tau = memory = text = None
    without = {"tau": [0.0], "memory": [0.0]}
    assert sum(s.plan for s in steps) == 16 and sum(s.reset_memory for s in steps) == 2
    for s in steps:
        i = s.index
        if frames[i].instruction != text:
            memory, text = None, frames[i].instruction
        out = forward(i, tau if telepathy else None, memory)
        assert diff(out, i) <= TOL, i
        if tau is not None and telepathy:
            without["tau"].append(diff(forward(i, None, memory), i))
        if memory is not None:
            without["memory"].append(diff(forward(i, tau if telepathy else None, None), i))
        tau, memory = out.language.tau, out.language.memory
    # power: the outputs depend on the carried tau and the carried memory, so dropping either fails above
    assert max(without["memory"]) > 1e-3 and (max(without["tau"]) > 1e-3 or not telepathy), without


def test_offline_command_line_and_errors(checkpoint, bags, tmp_path, capsys):
    out = tmp_path / "offline"
    assert main([f"--bag={bags['sqlite3']}", f"--checkpoint={checkpoint}", f"--output={out}", "--ros=false",
                 "--plots=false", "--batch_size=2", "--n_bootstrap=50"]) == 0
    text = capsys.readouterr().out
    assert "offline" in text and "samples/s" in text
    report = json.loads((out / REPORT_NAME).read_text())
    assert list(report["conditions"]) == ["offline"] and report["num_samples"] == 8 and report["num_batches"] == 4
    assert report["meta"]["ros_graph"] is None and report["meta"]["pairing"]["frames"] == 16

    # an existing report is replaced only with --overwrite
    again = [f"--bag={bags['sqlite3']}", f"--checkpoint={checkpoint}", f"--output={out}", "--ros=false",
             "--plots=false", "--quiet=true"]
    before = (out / REPORT_NAME).read_text()
    assert main(again) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / REPORT_NAME).read_text() == before
    assert main(again + ["--overwrite=true", "--batch_size=8"]) == 0
    capsys.readouterr()
    assert json.loads((out / REPORT_NAME).read_text())["num_batches"] == 1

    # telepathy off: the tau = 0 baseline path (tau still computed and reported)
    off = tmp_path / "off"
    assert main([f"--bag={bags['sqlite3']}", f"--checkpoint={checkpoint}", f"--output={off}", "--ros=false",
                 "--plots=false", "--telepathy=false", "--quiet=true"]) == 0
    capsys.readouterr()
    rep_off = json.loads((off / REPORT_NAME).read_text())
    assert rep_off["avg_mse_traj"] != report["avg_mse_traj"] and rep_off["avg_tau_l2"] > 0

    # a truncated recording, a joint mismatch: exit code 2 and a clear message
    broken = tmp_path / "broken"
    shutil.copytree(bags["sqlite3"], broken)
    db = next(broken.glob("*.db3"))
    db.write_bytes(db.read_bytes()[:4096])
    assert main([f"--bag={broken}", f"--checkpoint={checkpoint}", f"--output={tmp_path / 'x'}", "--ros=false",
                 "--quiet=true"]) == 2
    err = capsys.readouterr().err
    assert "sigma-bag-eval: error:" in err and str(broken) in err
    assert main([f"--bag={bags['sqlite3']}", f"--checkpoint={checkpoint}", f"--output={tmp_path / 'y'}",
                 "--ros=false", "--quiet=true", "--joint_names=[shoulder_pan,gripper]"]) == 2
    assert "2 joints" in capsys.readouterr().err
    # an instruction the model would cut: the language node refuses it, so no comparison could hold
    short = save_checkpoint(SigmaModel(small_config(max_text_tokens=16)), tmp_path / "short_text")
    assert main([f"--bag={bags['sqlite3']}", f"--checkpoint={short}", f"--output={tmp_path / 'z'}", "--ros=false",
                 "--quiet=true"]) == 2
    assert "is longer than the model's 16 tokens" in capsys.readouterr().err
