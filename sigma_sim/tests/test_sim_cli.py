# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""sigma_sim's command lines, generated from their configs (draccus).

sigma-sim-record, ``python -m sigma_sim.expert``, sigma-closed-loop, sigma-make-default, ``python -m sigma_sim.peers``.

What each command does with its values: test_sim_record.py, test_default_closed_loop.py, test_closed_loop_lerobot.py,
test_default_make_default.py, test_peers.py.
"""

from __future__ import annotations

import json

import pytest

from sigma_model.cli import parse_cli
from sigma_model.testing import cli_error, cli_help

from sigma_sim import closed_loop_cli, default_model, expert, peers, record


def test_help_lists_the_config_fields(capsys):
    text = cli_help(record.main, capsys)
    for flag in ("--root", "--episodes", "--seed", "--repo_id", "--fps", "--image_size", "--env_state",
                 "--keep_failed", "--overwrite", "--workers", "--lead_checkpoint", "--lead_max_steps", "--video",
                 "--quiet"):
        assert f"{flag} " in text
    text = cli_help(expert.main, capsys)
    assert all(f"{flag} " in text for flag in ("--episodes", "--seed", "--fps"))
    text = cli_help(closed_loop_cli.main, capsys)
    assert [f for f in ("--checkpoint", "--policy_path", "--device", "--baseline_checkpoint", "--episodes", "--seed",
                        "--conditions", "--variations", "--replan_every", "--diffusion_steps", "--max_steps",
                        "--threads", "--adapter_config", "--carry_memory", "--expert_reference", "--init_heads",
                        "--output", "--overwrite", "--quiet") if f"{f} " not in text] == []
    text = cli_help(default_model.main, capsys)
    assert [f for f in ("--out", "--work_dir", "--stages", "--expert_set", "--lead_checkpoint", "--record_workers",
                        "--language_augmentation", "--aux_cube_pose", "--model_set", "--train_set", "--eval_variations",
                        "--model_dir", "--notes_file") if f"{f} " not in text] == []
    text = cli_help(peers.main, capsys)
    assert [f for f in ("--peer", "--root", "--output_dir", "--steps", "--batch_size", "--num_workers", "--seed",
                        "--save_freq", "--dry_run") if f"{f} " not in text] == []


def test_typical_command_lines_parse_to_their_values():
    cli = parse_cli(closed_loop_cli.ClosedLoopCLI, ["--checkpoint=ckpt", "--episodes=5", "--conditions=[sigma]",
                                                    "--variations=[nominal]", "--carry_memory=false", "--output",
                                                    "out"], "p")
    cfg = cli.closed_loop_config()
    assert (cli.checkpoint, cli.output, cfg.episodes, cfg.conditions, cfg.variations, cfg.carry_memory) == (
        "ckpt", "out", 5, ("sigma",), ("nominal",), False)
    assert type(cfg) is closed_loop_cli.ClosedLoopConfig  # the report records the evaluation's options only
    assert parse_cli(closed_loop_cli.ClosedLoopCLI, [], "p").conditions == ("sigma", "telepathy_off", "sigma_adapter")
    assert parse_cli(closed_loop_cli.ClosedLoopCLI, ["--policy_path=p"], "p").conditions == ("lerobot",)
    cfg = parse_cli(default_model.MakeDefaultConfig, [
        "--stages=[train,eval]", "--train_set={seed: 5, batch_size: 4}", "--model_set={text_encoder: enc}",
        "--aux_cube_pose=false", "--language_augmentation=true", "--eval_variations=[nominal]"], "p")
    assert (cfg.stages, cfg.train_set, cfg.model_set, cfg.aux_cube_pose, cfg.language_augmentation,
            cfg.eval_variations) == (["train", "eval"], {"seed": 5, "batch_size": 4}, {"text_encoder": "enc"},
                                     False, True, ["nominal"])
    command = default_model.reproducing_command(["--stages=[train]", "--work_dir", "w", "--quiet=true", "--episodes=2",
                                                 "--model_set={a: 1}"])
    assert command == "sigma-make-default --episodes=2 '--model_set={a: 1}'"
    cfg = parse_cli(peers.PeersCLI, ["--peer=act_small", "--root=d", "--output_dir=o", "--steps=3"], "p")
    assert (cfg.peer, cfg.root, cfg.output_dir, cfg.steps, cfg.dry_run) == ("act_small", "d", "o", 3, False)


def test_peers_dry_run_prints_the_lerobot_train_command(capsys):
    assert peers.main(["--peer=act_small", "--root=data", "--output_dir=out", "--steps=7", "--dry_run=true"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.endswith(" ".join(peers.train_command("act_small", "data", "out", steps=7)[1:]))


@pytest.mark.parametrize("main, argv, message", [
    (record.main, ["--episodes=3"], "sigma-sim-record: error: --root is required"),
    (record.main, ["--root=x", "--episodes=0"], "sigma-sim-record: error: --episodes, --fps, --image_size and"),
    (record.main, ["--root=x", "--image-size=32"], "sigma-sim-record: error: unrecognized arguments: --image-size=32"),
    (record.main, ["--root=x", "--workers=two"], "sigma-sim-record: error: `workers`: Couldn't parse 'two'"),
    (record.main, ["--root=x", "--lead_max_steps=-1"], "sigma-sim-record: error: --lead_max_steps must be positive"),
    (record.main, ["--root=x", "--seed=-3"], "sigma-sim-record: error: --seed must be >= 0"),
    (expert.main, ["--episodes=-1"], "python -m sigma_sim.expert: error: --episodes and --fps must be positive"),
    (expert.main, ["--fps=fast"], "python -m sigma_sim.expert: error: `fps`: Couldn't parse 'fast'"),
    (closed_loop_cli.main, ["--episodes=0"], "sigma-closed-loop: error: ClosedLoopConfig.episodes must be a positive"),
    (closed_loop_cli.main, ["--conditions=[fast]"], "sigma-closed-loop: error: conditions must be a non-empty subset"),
    (closed_loop_cli.main, ["--variations=[wide_range]"], "sigma-closed-loop: error: variations must be distinct"),
    (closed_loop_cli.main, ["--conditions=[lerobot]"], "sigma-closed-loop: error: --conditions=[lerobot] needs"),
    (closed_loop_cli.main, ["--policy_path=p", "--carry_memory=false"],
     "sigma-closed-loop: error: --carry_memory apply to a Sigma checkpoint, not to --policy_path"),
    (closed_loop_cli.main, ["--policy-path", "p"], "sigma-closed-loop: error: unrecognized arguments: --policy-path p "
                                                   "(--policy-path is now --policy_path)"),
    (closed_loop_cli.main, ["-o", "out"], "sigma-closed-loop: error: unrecognized arguments: -o out (-o is now "
                                          "--output)"),
    (closed_loop_cli.main, ["--no-memory"], "sigma-closed-loop: error: unrecognized arguments: --no-memory "
                                            "(--no-memory is now --carry_memory=false)"),
    (closed_loop_cli.main, ["--quiet"], "sigma-closed-loop: error: argument --quiet: expected one argument "
                                        "(a switch is written --quiet=true)"),
    (default_model.main, ["--stages=[record,bogus]"], "sigma-make-default: error: --stages must be one of record"),
    (default_model.main, ["--conditions=[x]"], "sigma-make-default: error: --conditions must be one of"),
    (default_model.main, ["--eval_variations=[upside_down]"], "sigma-make-default: error: --eval_variations must be"),
    (default_model.main, ["--episodes=0"], "sigma-make-default: error: --episodes, --record_workers, --eval_episodes"),
    (default_model.main, ["--train_set=seed=5"], "sigma-make-default: error: `train_set`"),
    (default_model.main, ["--stages", "record", "preprocess"], "sigma-make-default: error: unrecognized arguments: "
                                                               "preprocess (no positional arguments"),
    (default_model.main, ["--no-aux-cube-pose"],
     "sigma-make-default: error: unrecognized arguments: --no-aux-cube-pose (--no-aux-cube-pose is now "
     "--aux_cube_pose=false)"),
    (default_model.main, ["--language-augmentation"], "sigma-make-default: error: unrecognized arguments: "
                         "--language-augmentation (--language-augmentation is now --language_augmentation=true)"),
    (peers.main, ["--peer=act_large"], "python -m sigma_sim.peers: error: --peer must be one of act, act_small"),
    (peers.main, ["--peer=act"], "python -m sigma_sim.peers: error: training a peer needs --root and --output_dir"),
    (peers.main, ["--peer=act", "--root=d", "--output_dir=o", "--steps=0"],
     "python -m sigma_sim.peers: error: --steps"),
    (peers.main, ["act_small", "--root=d"], "python -m sigma_sim.peers: error: unrecognized arguments: act_small "
                                            "(no positional arguments"),
])
def test_bad_values_are_one_line_and_exit_2(main, argv, message, capsys):
    assert cli_error(main, argv, capsys).startswith(message)


def test_expert_command_measures_the_given_seeds(capsys):
    from sigma_sim.so101_env import SO101PickPlaceEnv

    assert expert.main(["--episodes=1", "--seed", "3", "--fps=20"]) == 0
    printed = json.loads(capsys.readouterr().out)
    env = SO101PickPlaceEnv(render_observations=False, control_hz=20.0)
    try:
        direct, seed_0 = expert.evaluate_expert(1, 3, env), expert.evaluate_expert(1, 0, env)
    finally:
        env.close()
    assert direct["mean_steps"] != seed_0["mean_steps"]  # the seed shows (seed 7 would not: same steps as 0)
    assert printed["control_hz"] == 20.0 and printed["episodes"] == 1
    for key in ("successes", "failed_seeds", "mean_time_to_success_s", "mean_steps", "retries"):
        assert printed[key] == direct[key], key
