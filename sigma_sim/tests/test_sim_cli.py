# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""sigma-sim-record and ``python -m sigma_sim.expert``: command lines generated from their configs (draccus).

What sigma-sim-record records with its values: test_sim_record.py.
"""

from __future__ import annotations

import json

import pytest

from sigma_model.testing import cli_error, cli_help

from sigma_sim import expert, record


def test_help_lists_the_config_fields(capsys):
    text = cli_help(record.main, capsys)
    for flag in ("--root", "--episodes", "--seed", "--repo_id", "--fps", "--image_size", "--env_state",
                 "--keep_failed", "--overwrite", "--workers", "--lead_checkpoint", "--lead_max_steps", "--video",
                 "--quiet"):
        assert f"{flag} " in text
    text = cli_help(expert.main, capsys)
    assert all(f"{flag} " in text for flag in ("--episodes", "--seed", "--fps"))


@pytest.mark.parametrize("main, argv, message", [
    (record.main, ["--episodes=3"], "sigma-sim-record: error: --root is required"),
    (record.main, ["--root=x", "--episodes=0"], "sigma-sim-record: error: --episodes, --fps, --image_size and"),
    (record.main, ["--root=x", "--image-size=32"], "sigma-sim-record: error: unrecognized arguments: --image-size=32"),
    (record.main, ["--root=x", "--workers=two"], "sigma-sim-record: error: `workers`: Couldn't parse 'two'"),
    (expert.main, ["--episodes=-1"], "python -m sigma_sim.expert: error: --episodes and --fps must be positive"),
    (expert.main, ["--fps=fast"], "python -m sigma_sim.expert: error: `fps`: Couldn't parse 'fast'"),
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
