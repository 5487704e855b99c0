# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Any LeRobot policy in the closed loop (sigma_sim.lerobot_closed_loop).

An untrained ACT acts in `run_episode` through LeRobot's own inference path, and `sigma-closed-loop --policy_path`
refuses what it cannot run with a one-line error. (A trained ACT / Diffusion Policy: test_peers.py; the sigma policy:
lerobot_policy_sigma/tests.)
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sigma_sim.closed_loop import ClosedLoopConfig, run_episode
from sigma_sim.closed_loop_cli import main as closed_loop_main
from sigma_sim.lerobot_closed_loop import LeRobotPolicyAdapter

import sigma_sim

pytestmark = pytest.mark.skipif(sigma_sim.GL_BACKEND is None, reason="no headless OpenGL (libegl1 / libosmesa6)")


def test_an_act_policy_runs_an_episode_through_the_adapter(tiny_act_dir):
    from sigma_sim.so101_env import SimConfig, SO101PickPlaceEnv

    adapter = LeRobotPolicyAdapter.from_pretrained(tiny_act_dir)
    assert adapter.image_size == (32, 32)
    env = SO101PickPlaceEnv(SimConfig(image_width=32, image_height=32, max_episode_steps=20))
    try:
        obs, _ = env.reset(seed=1)
        adapter.reset("pick the cube and place it on the left", 1)
        action = adapter.act(obs)
        assert action.shape == (6,) and action.dtype == np.float64 and np.isfinite(action).all()
        outcome = run_episode(env, adapter, seed=1, instruction="pick the cube and place it on the left",
                              config=ClosedLoopConfig(max_steps=9), condition="act")
        assert len(adapter.policy._action_queue) == 4 - 9 % 4  # one chunk per n_action_steps ticks
        adapter.reset("pick the cube and place it on the right", 2)
        assert not adapter.policy._action_queue and adapter.instruction.endswith("right")
    finally:
        env.close()
    assert outcome.condition == "act" and outcome.steps == 9 and len(adapter.latency["policy"]) == 9
    assert np.isfinite(outcome.mean_abs_delta_command) and outcome.mean_abs_delta_command > 0


def error_of(capsys, argv: list[str]) -> str:
    """sigma-closed-loop's exit status 2 and its error line (the last line of stderr; no traceback)."""
    with pytest.raises(SystemExit) as exit_info:
        closed_loop_main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("sigma-closed-loop: error: ")
    return err[-1]


def test_policy_path_that_holds_no_usable_policy_is_a_one_line_error(capsys, tmp_path, tiny_act_dir, make_tiny_act):
    missing = tmp_path / "missing"
    a_file = tmp_path / "model.safetensors"
    a_file.write_bytes(b"")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"type": "act", "chunk_size": "many"}))
    wrong_action = make_tiny_act(tmp_path / "act7", action_dim=7)
    truncated = shutil.copytree(tiny_act_dir, tmp_path / "truncated")  # weights cut short, or of another config
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    other = shutil.copytree(wrong_action, tmp_path / "other")
    shutil.copy2(tiny_act_dir / "model.safetensors", other / "model.safetensors")
    for path, words in [(missing, "no config.json"), (a_file, "no config.json"), (tmp_path, "no config.json"),
                        (broken, "is not a LeRobot policy config"),
                        (wrong_action, "action of shape (7,) (the simulator takes 6 joint targets)"),
                        (truncated, "the policy's weights do not load"), (other, "the policy's weights do not load")]:
        line = error_of(capsys, [f"--policy_path={path}", "--episodes=1", "--quiet=true"])
        assert words in line, (path, line)
        assert len(capsys.readouterr().err) == 0
    # options of a Sigma checkpoint, and a report already there
    assert "--replan_every apply to a Sigma checkpoint" in error_of(
        capsys, [f"--policy_path={tiny_act_dir}", "--replan_every=4"])
    assert "conditions ['sigma'] evaluate a Sigma checkpoint" in error_of(
        capsys, [f"--policy_path={tiny_act_dir}", "--conditions=[sigma]"])
    assert "--conditions=[lerobot] needs --policy_path" in error_of(capsys, ["--conditions=[lerobot]"])
    out = tmp_path / "eval"
    out.mkdir()
    (out / "sigma_eval_report.json").write_text("{}")
    assert "exists already; pass --overwrite" in error_of(capsys, [f"--policy_path={tiny_act_dir}", f"--output={out}",
                                                                   "--episodes=1", "--max_steps=2", "--quiet=true"])
    assert (out / "sigma_eval_report.json").read_text() == "{}"


def test_a_lerobot_policy_runs_every_variation_on_the_same_seeds(tmp_path, tiny_act_dir):
    out = tmp_path / "eval"
    assert closed_loop_main([f"--policy_path={tiny_act_dir}", "--episodes=2", "--max_steps=3", "--seed=7",
                             "--variations=[nominal,wide_range,perturbed_view]", f"--output={out}",
                             "--quiet=true"]) == 0
    report = json.loads((out / "sigma_eval_report.json").read_text())
    table = report["closed_loop"]["lerobot_act"]["episode_success_by_variation"]
    assert list(table) == ["nominal", "wide_range", "perturbed_view"] == list(report["variations"])
    assert all(e["failed_seeds"] == [7, 8] and e["episode_success_rate_ci95"][1] < 1 for e in table.values())
    lines = (out / "sigma_eval_batches.jsonl").read_text().splitlines()
    assert [(r["variation"], r["batch"]) for r in map(json.loads, lines)] == [
        (v, i) for v in ("nominal", "wide_range", "perturbed_view") for i in (0, 1)]
    assert report["conditions"]["lerobot_act"]["episodes"] == 2  # the main columns: the nominal episodes


def test_variations_without_nominal_are_a_one_line_error(capsys, tiny_act_dir):
    line = error_of(capsys, [f"--policy_path={tiny_act_dir}", "--variations=[wide_range]"])
    assert "including 'nominal'" in line
