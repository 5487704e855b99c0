# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""`lerobot-eval --env.type=sigma_so101` runs the lerobot-train result in the simulated SO-101.

The console script reports its success rate; sigma-closed-loop --policy_path reports the same episodes in Sigma's
format.
"""

from __future__ import annotations

import json

from sigma_model.testing import console_script, run_offline
from sigma_sim.closed_loop_cli import main as closed_loop_main

STEPS, EPISODES, FIRST_SEED = 8, 2, 10_000


def test_lerobot_eval_runs_the_trained_policy_in_the_simulator(pretrained_dir, tmp_path):
    out = tmp_path / "eval"
    run_offline([console_script("lerobot-eval"), "--env.type=sigma_so101", "--env.image_size=32",
                 f"--env.episode_length={STEPS}", f"--policy.path={pretrained_dir}", "--policy.device=cpu",
                 f"--eval.n_episodes={EPISODES}", "--eval.batch_size=1", f"--seed={FIRST_SEED}", f"--output_dir={out}"])
    info = json.loads((out / "eval_info.json").read_text())
    overall = info["overall"]
    assert overall["n_episodes"] == EPISODES
    assert overall["pc_success"] == 0.0  # a 3-step policy does not solve the task in 8 ticks
    episodes = info["per_task"][0]["metrics"]
    assert episodes["successes"] == [False] * EPISODES and len(episodes["sum_rewards"]) == EPISODES
    assert info["per_group"]["sigma_so101"]["n_episodes"] == EPISODES
    assert len(list((out / "videos").rglob("*.mp4"))) == EPISODES  # lerobot-eval renders the env's camera

    report_dir = tmp_path / "closed_loop"
    assert closed_loop_main([f"--policy_path={pretrained_dir}", f"--episodes={EPISODES}", f"--max_steps={STEPS}",
                             f"--seed={FIRST_SEED}", f"--output={report_dir}", "--quiet=true"]) == 0
    report = json.loads((report_dir / "sigma_eval_report.json").read_text())
    closed = report["closed_loop"]["lerobot_sigma"]
    assert closed["episodes"] == EPISODES and closed["successes"] == 0
    assert closed["failed_seeds"] == [FIRST_SEED, FIRST_SEED + 1]
