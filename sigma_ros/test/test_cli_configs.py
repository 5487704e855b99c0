# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The sigma_ros command lines, generated from their config dataclasses (draccus, ``sigma_model.cli``).

``--help`` lists the config fields; a bad value, a missing required field or a failed validation is one
``prog: error: ...`` line on stderr and exit status 2, before anything starts. What each command does with its
values is tested with the command: test_default_ros.py (sigma-demo), test_bag_replay.py (sigma-bag-eval),
test_bag_convert.py (sigma-bag-to-lerobot, sigma-lerobot-to-bag), test_ros_graph_cli.py (sigma-graph,
sigma-instruct), test_ros_launch.py (sigma-graph's values against the launch file's).
"""

from __future__ import annotations

import pytest

from sigma_model.cli import parse_cli
from sigma_model.testing import cli_error, cli_help

from sigma_ros import bag_convert, bag_replay, demo, graph, graph_main, instruct

MAINS = {
    "sigma-demo": demo.main,
    "sigma-bag-eval": bag_replay.main,
    "sigma-bag-to-lerobot": bag_convert.bag_to_lerobot_main,
    "sigma-lerobot-to-bag": bag_convert.lerobot_to_bag_main,
    "sigma-instruct": instruct.main,
    "sigma-graph": graph_main.main,
}


@pytest.mark.parametrize("prog, fields", [
    ("sigma-demo", ["--checkpoint", "--episodes", "--seed", "--instruction", "--telepathy", "--adapter",
                    "--max_episode_s", "--real_time_factor", "--step_mode", "--composition", "--domain_id", "--gui",
                    "--json", "--conditions", "--report"]),
    ("sigma-bag-eval", ["--bag", "--checkpoint", "--output", "--overwrite", "--rate", "--batch_size", "--telepathy",
                        "--adapter", "--adapter_config.k", "--graph_mode", "--ros", "--offline", "--topics.camera",
                        "--topics.action", "--joint_names", "--hard_thresholds", "--ci", "--n_bootstrap", "--plots"]),
    ("sigma-bag-to-lerobot", ["--bag", "--output", "--repo_id", "--fps", "--gap_s", "--max_age_s", "--action_align",
                              "--default_task", "--image_size", "--timestamps", "--topics.joint_states",
                              "--joint_names", "--backend", "--overwrite"]),
    ("sigma-lerobot-to-bag", ["--dataset", "--bag", "--storage", "--action_type", "--image_key", "--start_ns",
                              "--episode_gap_s", "--episodes", "--topics.instruction", "--overwrite"]),
    ("sigma-instruct", ["--text", "--reset", "--max_chars", "--topic", "--wait", "--repeat"]),
    ("sigma-graph", ["--config_file", "--checkpoint", "--dry_run", "--remap", "--robot", "--port", "--robot_id",
                     "--nodes", "--composition", "--startup_timeout", "--respawn", "--respawn_delay", "--log_level",
                     "--list_params", *(f"--{key}_topic" for key in graph.EXTERNAL_TOPICS)]),
])
def test_help_lists_the_config_fields(prog, fields, capsys):
    text = cli_help(MAINS[prog], capsys)
    assert f"usage: {prog} " in text and "--config_path" in text
    assert [f for f in fields if f"{f} " not in text] == []
    if prog == "sigma-bag-eval":  # the comments of both bases, BagEvalConfig and ReportOptions
        text = " ".join(text.split())
        assert "publish at this multiple of the recorded speed" in text and "confidence interval over batches" in text


@pytest.mark.parametrize("prog, argv, message", [
    ("sigma-demo", ["--episodes=0"], "--episodes, --real_time_factor, --max_episode_s and --startup_timeout must"),
    ("sigma-demo", ["--seed=-1"], "--seed must be in 0..2147483645 for 3 episodes, got -1"),
    ("sigma-demo", ["--seed=2147483646"], "--seed must be in 0..2147483645 for 3 episodes, got 2147483646"),
    ("sigma-demo", ["--episodes=x"], "`episodes`: Couldn't parse 'x' into an int"),
    ("sigma-demo", ["--conditions=[sigma,fast]"], "--conditions must be a non-empty list of"),
    ("sigma-demo", ["--step_mode=fast"], "--step_mode must be one of"),
    ("sigma-demo", ["--composition=threads"], "composition must be one of"),
    ("sigma-demo", ["--single-process"], "unrecognized arguments: --single-process"),
    ("sigma-bag-eval", [], "--bag is required"),
    ("sigma-bag-eval", ["--bag=b", "--rate=-1"], "rate must be >= 0"),
    ("sigma-bag-eval", ["--bag=b", "--graph_mode=threads"], "graph_mode must be 'inprocess' or 'processes'"),
    ("sigma-bag-eval", ["--bag=b", "--hard_thresholds={vec: 0.1}"], "hard_thresholds must give a positive value"),
    ("sigma-bag-eval", ["--bag=b", "--ros=false", "--offline=false"], "leave nothing to evaluate"),
    ("sigma-bag-eval", ["--bag=b", "--backend=zip"], "--backend must be one of"),
    ("sigma-bag-eval", ["--bag=b", "--confidence=1"], "--confidence must be in (0, 1)"),
    ("sigma-bag-eval", ["--bag=b", "--adapter_config.k=-1"], "AdapterConfig.k must be >= 0"),
    ("sigma-bag-to-lerobot", ["--bag=b"], "--bag and --output are required"),
    ("sigma-bag-to-lerobot", ["--bag=b", "--output=o", "--timestamps=wall"],
     "--timestamps must be one of fps, recorded"),
    ("sigma-bag-to-lerobot", ["--bag=b", "--output=o", "--image_size=[8]"], "`image_size`"),
    ("sigma-lerobot-to-bag", ["--dataset=d"], "--dataset and --bag are required"),
    ("sigma-lerobot-to-bag", ["--dataset=d", "--bag=b", "--storage=zip"], "--storage must be one of sqlite3, mcap"),
    ("sigma-lerobot-to-bag", ["--dataset=d", "--bag=b", "--action_type=twist"], "--action_type must be one of"),
    ("sigma-bag-to-lerobot", ["--bag=b", "--output=o", "--gap_s=-1"], "--gap_s must be > 0, got -1.0"),
    ("sigma-bag-to-lerobot", ["--bag=b", "--output=o", "--gap_s=nan"], "--gap_s must be > 0, got nan"),
    ("sigma-bag-to-lerobot", ["--bag=b", "--output=o", "--max_age_s=-1"], "--max_age_s must be >= 0 (0: no limit)"),
    ("sigma-bag-to-lerobot", ["--bag=b", "--output=o", "--max_frames=0"], "--min_episode_frames and --max_frames must"),
    ("sigma-bag-to-lerobot", ["--bag=b", "--output=o", "--min_episode_frames=-1"], "--min_episode_frames and"),
    ("sigma-lerobot-to-bag", ["--dataset=d", "--bag=b", "--episode_gap_s=-1"], "--episode_gap_s must be > 0, got -1.0"),
    ("sigma-lerobot-to-bag", ["--dataset=d", "--bag=b", "--episode_gap_s=nan"], "--episode_gap_s must be > 0, got nan"),
    ("sigma-lerobot-to-bag", ["--dataset=d", "--bag=b", "--start_ns=-5"], "--start_ns must be >= 0 (ns since the"),
    ("sigma-instruct", [], "give an instruction (--text=...), --reset=true, or both"),
    ("sigma-instruct", ["--text=hi", "--repeat=0"], "--repeat must be >= 1"),
    ("sigma-instruct", ["--text=   "], "instruction: empty"),
    ("sigma-graph", ["--composition=threads"], "composition must be one of"),
    ("sigma-graph", ["--respawn_delay=-1"], "--respawn_delay must be >= 0"),
    ("sigma-graph", ["--remap=[camera]"], "bad --remap rules ['camera'] (expected FROM:=TO)"),
    ("sigma-graph", ["--nodes=[action_node,bogus]"], "unknown nodes ['bogus']"),
    ("sigma-graph", ["--nodes=[]"], "--nodes=[] starts nothing"),
    ("sigma-graph", ["--config_file=/no/such/sigma.yaml"], "parameter file not found: /no/such/sigma.yaml"),
    ("sigma-graph", ["--dry_run=maybe"], "Couldn't parse 'maybe' into a bool"),
])
def test_bad_values_are_one_line_and_exit_2(prog, argv, message, capsys):
    line = cli_error(MAINS[prog], argv, capsys)
    assert line.startswith(f"{prog}: error: ") and message in line, line


def test_the_launch_files_sigma_graph_arguments_parse_to_its_values(tmp_path):
    """composition:=single_process runs sigma-graph with graph.single_process_arguments: every value arrives."""
    topics = {key: f"/robot/{key}" for key in graph.EXTERNAL_TOPICS}
    robot = {"type": "so101_follower", "port": "/dev/ttyACM0", "id": "arm: one"}
    argv = graph.single_process_arguments(str(tmp_path / "p.yaml"), str(tmp_path / "ckpt"), False, topics, "warn",
                                          robot)
    cfg = parse_cli(graph.GraphConfig, argv, "sigma-graph")
    assert (cfg.composition, cfg.config_file, cfg.checkpoint, cfg.dry_run, cfg.log_level) == \
        ("single_process", str(tmp_path / "p.yaml"), str(tmp_path / "ckpt"), False, "warn")
    assert {key: getattr(cfg, f"{key}_topic") for key in graph.EXTERNAL_TOPICS} == topics
    assert graph_main.robot_fields(cfg) == robot
    default = parse_cli(graph.GraphConfig, graph.single_process_arguments("p.yaml", "", None, {}, ""), "sigma-graph")
    assert default.dry_run is None and default.checkpoint == "" and default.camera_topic == ""


def test_the_demos_report_carries_its_config(tmp_path):
    """sigma-demo --report: the closed-loop report of the runs, with DemoConfig's values (no ROS needed)."""
    cfg = parse_cli(demo.DemoConfig, ["--episodes=2", "--seed=500", "--max_episode_s=4", "--real_time_factor=0.5",
                                      "--step_mode=on_command", "--conditions=[sigma,telepathy_off]"], "sigma-demo")
    episode = {"seed": 500, "instruction": "pick the cube and place it on the left", "success": True, "step": 60,
               "time_to_success_s": 2.0, "was_lifted": True, "mean_abs_delta_command": 0.01, "mean_sq_jerk": 0.001,
               "latency_ms": {"action_node": {"action_stage": 12.0, "rate:plan": 5.0}}}
    runs = {name: {"checkpoint": "ckpt", "single_process": False,
                   "episodes_detail": [episode, dict(episode, seed=501, success=False, time_to_success_s=None)]}
            for name in cfg.conditions}
    report, records = demo.ros_report(runs, cfg)
    meta = report["meta"]
    assert (meta["mode"], meta["real_time_factor"], meta["step_mode"], meta["single_process"]) == \
        ("closed_loop_ros", 0.5, "on_command", False)
    assert set(report["closed_loop"]) == {"sigma", "telepathy_off"} and len(records) == 4
    assert report["closed_loop"]["sigma"]["failed_seeds"] == [501]
