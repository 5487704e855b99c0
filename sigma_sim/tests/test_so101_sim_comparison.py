# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""benchmarks/so101_sim_comparison.py (issue 15's fair comparison) end to end on tiny budgets.

One recorded dataset (2 episodes); Sigma, Sigma without telepathy and LeRobot's ACT (act_small) trained 2 steps each
with a checkpoint every step; every checkpoint evaluated on 1 held-out and 1 selection episode of at most 10 ticks.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sigma_sim
from sigma_sim.so101_env import episode_cube_pose

pytestmark = pytest.mark.skipif(sigma_sim.GL_BACKEND is None, reason="no headless OpenGL (libegl1 / libosmesa6)")
ROOT = Path(__file__).resolve().parents[2]
METHODS = ("sigma", "sigma_no_telepathy", "act")


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """Return (the script's module, dataset dir, work dir, output JSON, options) with the three runs trained."""
    from sigma_sim.default_model import main as make_default

    sys.path.insert(0, str(ROOT / "benchmarks"))  # spawned evaluation workers inherit it
    try:
        module = importlib.import_module("so101_sim_comparison")
        tmp = tmp_path_factory.mktemp("comparison")
        data, work, out = tmp / "data", tmp / "work", tmp / "results" / "comparison.json"
        assert make_default([f"--work_dir={data}", "--stages=[record,preprocess]", "--episodes=2",
                             "--record_workers=1", "--quiet=true"]) == 0
        options = [f"--dataset={data}", f"--work_dir={work}", f"--methods=[{','.join(METHODS)}]", "--seeds=[0]",
                   "--steps=2", "--batch_size=4", "--save_every=1", "--peer_num_workers=0", "--eval_episodes=1",
                   "--eval_max_steps=10", "--select_episodes=1", f"--output={out}"]
        assert module.main(["--stages=[train]", *options]) == 0
        yield module, data, work, out, options
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def checkpoint_dirs(work: Path, method: str) -> dict[int, Path]:
    run = work / "runs" / method / "seed0"
    dirs = (run / "train" / "checkpoints").glob("step_*") if method.startswith("sigma") else (
        run / "lerobot" / "checkpoints").glob("[0-9]*")
    return {int(d.name.removeprefix("step_")): d for d in dirs}


def cache_of(checkpoint: Path, variations: str = "") -> Path:
    """Return a checkpoint's held-out evaluation, or with ``variations`` ("_wide_range_...") its generalisation one."""
    (path,) = [p for p in checkpoint.glob("comparison_eval_*_seeds20000x1_10ticks.json")
               if re.fullmatch(f"comparison_eval_(sigma|telepathy_off|lerobot){variations}_seeds20000x1_10ticks.json",
                               p.name)]
    return path


def test_train_evaluate_report_resumable_with_cached_evaluations(comparison, monkeypatch, capsys):
    cmp, data, work, out, options = comparison
    with monkeypatch.context() as m:  # finished runs are not trained again
        m.setattr(cmp.subprocess, "run", lambda *a, **k: pytest.fail(f"trained again: {a}"))
        assert cmp.main(["--stages=[train]", *options]) == 0
    for method in METHODS:
        assert sorted(checkpoint_dirs(work, method)) == [1, 2], method  # a checkpoint every step
        assert "started_utc" in (work / "runs" / method / "seed0" / "comparison_train.json").read_text()
    capsys.readouterr()

    assert cmp.main(["--stages=[evaluate]", "--workers=2", *options]) == 0  # in 2 worker processes
    err = capsys.readouterr().err
    assert "0 checkpoint evaluation(s) cached, 12 to run" in err
    assert "3 chosen checkpoint(s) to run with the variations wide_range, perturbed_view, paraphrase" in err
    caches = {(m, step): json.loads(cache_of(d).read_text()) for m in METHODS
              for step, d in checkpoint_dirs(work, m).items()}
    assert {c["condition"] for c in caches.values()} == {"sigma", "telepathy_off", "lerobot_act"}
    assert all(c["episodes"] == 1 and c["seed"] == 20000 and c["max_steps"] == 10 for c in caches.values())

    calls = []
    real = cmp.evaluate_one
    monkeypatch.setattr(cmp, "evaluate_one", lambda *job: calls.append(job) or real(*job))
    assert cmp.main(["--stages=[evaluate]", *options]) == 0
    assert calls == [] and "12 checkpoint evaluation(s) cached, 0 to run" in capsys.readouterr().err

    # an interrupted run resumes from its newest checkpoint; only the new checkpoint is evaluated again
    shutil.rmtree(checkpoint_dirs(work, "sigma")[2])
    assert cmp.main(["--stages=[train,evaluate]", *options]) == 0
    record = json.loads((work / "runs" / "sigma" / "seed0" / "comparison_train.json").read_text())
    assert len(record["segments"]) == 2 and record["segments"][1]["command"].endswith("--resume=true")
    assert all(s["returncode"] == 0 and s["wall_s"] > 0 for s in record["segments"])
    assert [Path(job[2]).parent.name for job in calls] == ["step_00000002"] * 3 and calls[0][1] == "sigma"
    assert sorted(job[4]["seed"] for job in calls[:2]) == [10000, 20000]  # its held-out and selection episodes
    # then, chosen again (selection ties go to the later step), with the variations
    assert calls[2][4]["variations"] == ["nominal", "wide_range", "perturbed_view", "paraphrase"]

    # the report reads the cached results: plant a success in sigma's last checkpoint
    final = cache_of(checkpoint_dirs(work, "sigma")[2])
    final.write_text(json.dumps({**json.loads(final.read_text()), "successes": 1, "success_rate": 1.0,
                                 "failed_seeds": []}))
    # ... and a selection success in its first checkpoint: the chosen one (the others tie: the later step)
    (chosen,) = checkpoint_dirs(work, "sigma")[1].glob("comparison_eval_*_seeds10000x1_10ticks.json")
    chosen.write_text(json.dumps({**json.loads(chosen.read_text()), "successes": 1, "success_rate": 1.0,
                                  "failed_seeds": []}))
    capsys.readouterr()
    with pytest.raises(SystemExit):  # the chosen checkpoint changed: its variations are not evaluated yet
        cmp.main(["--stages=[report]", *options])
    assert "not evaluated yet" in capsys.readouterr().err and not out.exists()
    calls.clear()
    assert cmp.main(["--stages=[evaluate]", *options]) == 0
    assert [(job[1], Path(job[2]).parent.name, len(job[4]["variations"])) for job in calls] == [
        ("sigma", "step_00000001", 4)]
    capsys.readouterr()
    assert cmp.main(["--stages=[report]", *options]) == 0
    printed = capsys.readouterr()
    assert "not deterministic" not in printed.err  # each chosen checkpoint's nominal episodes repeated
    results = json.loads(out.read_text())
    assert set(results["methods"]) == set(METHODS)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert results["commit"] == commit and len(commit) == 40
    assert results["seeds"]["training"] == [0] and results["seeds"]["held_out"] == "20000..20000"
    assert results["selection"]["seed"] == 10000 and results["selection"]["episodes"] == 1
    assert results["seeds"]["demonstrations"]["episodes"] == 2
    bins = results["pose_bins"]
    assert bins["bins"] == ["yaw_low", "yaw_mid", "yaw_high", "x_near", "x_far"]
    assert bins["yaw_deg"] == pytest.approx([-20.05, -6.68, 6.68, 20.05], abs=0.01)
    assert bins["x_m"] == pytest.approx([0.17, 0.21, 0.25])
    for method, m in results["methods"].items():
        rates = {str(step): caches[method, step]["success_rate"] for step in (1, 2)}
        if method == "sigma":
            rates["2"] = 1.0
        assert m["checkpoints"] == {"0": rates}, method
        assert m["success"] == [rates["2"]] and m["mean"] == rates["2"] and m["second_half_min"] == min(rates.values())
        assert m["samples"] == [8] and m["train_wall_s"][0] > 0 and m["device"].startswith("cpu")
        assert m["ci_method"] == "Wilson on 1 pooled episodes" and m["scaled_down"] == (method == "act")
        step = 1 if method == "sigma" else 2
        assert m["selected"]["0"]["step"] == step and m["selected"]["0"]["success"] == rates[str(step)], method
        assert m["selected_summary"]["mean"] == rates[str(step)]
        assert m["reach_80"][0]["step"] == next((s for s in (1, 2) if rates[str(s)] >= 0.8), None), method
        # held-out successes by the cube's start pose: episode 20000 of both checkpoints, in its yaw and its x bin
        x, _, yaw = episode_cube_pose(20000)
        yaw_bin = ("yaw_low", "yaw_mid", "yaw_high")[sum(math.degrees(yaw) >= e for e in bins["yaw_deg"][1:3])]
        x_bin = "x_near" if x < bins["x_m"][1] else "x_far"
        wins = round(sum(rates.values()))
        assert m["by_pose"] == {"0": {b: [wins, 2] if b in (yaw_bin, x_bin) else [0, 0] for b in bins["bins"]}}, method
        # generalisation: the chosen checkpoint's held-out episode with each variation, as its cache holds them
        cached = json.loads(cache_of(checkpoint_dirs(work, method)[step], "_wide_range_perturbed_view_paraphrase")
                            .read_text())
        gen = m["generalisation"]["0"]
        assert gen["step"] == step and list(gen["by_variation"]) == results["generalisation"]["variations"], method
        assert {v: e["successes"] for v, e in gen["by_variation"].items()} == {
            v: e["successes"] for v, e in cached["by_variation"].items()}
        assert cached["by_variation"]["paraphrase"]["episodes"] == 1 and cached["seed"] == 20000
        assert m["generalisation_summary"]["wide_range"]["mean"] == gen["by_variation"]["wide_range"]["successes"]
    sigma_reach = results["methods"]["sigma"]["reach_80"][0]
    assert sigma_reach["wall_s_est"] == pytest.approx(results["methods"]["sigma"]["train_wall_s"][0])
    assert results["methods"]["sigma"]["ci95"][1] == 1.0 and results["methods"]["sigma"]["ci95"][0] > 0.1
    assert results["methods"]["sigma"]["train_wall_s"][0] == pytest.approx(sum(s["wall_s"] for s in record["segments"]))
    assert results["methods"]["sigma_no_telepathy"]["recipe"]["telepathy_in_training"] is False
    assert results["methods"]["act"]["recipe"]["peer"] == "act_small"
    table = out.with_suffix(".md").read_text()
    assert table == printed.out.rstrip("\n") + "\n"
    # the main table, the one by cube pose, the generalisation one
    for part in re.split("Held-out success by the cube's start pose|Generalisation:", table):
        assert [line.split("|")[1].strip() for line in part.splitlines() if line.startswith("| ")][1:] == list(METHODS)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    picked = results["methods"]["sigma"]["selected"]["0"]
    assert "checkpoint chosen on episodes 10000..10000" in table and f"| 1 ({100 * picked['success']:.0f}%) |" in table
    assert "| method | seed | yaw -20 to -7 deg | yaw -7 to 7 deg | yaw 7 to 20 deg | x < 0.21 m (near) |" in table
    assert "| method | chosen step per seed | nominal | wide_range | perturbed_view | paraphrase |" in table
    assert [line.split("|")[1:3] for line in table.split("Generalisation:")[1].splitlines() if line.startswith("| ")][
        1:] == [[" sigma ", " 1 "], [" sigma_no_telepathy ", " 2 "], [" act ", " 2 "]]

    written = out.read_bytes()
    with pytest.raises(SystemExit) as refused:  # never overwritten without --force
        cmp.main(["--stages=[report]", *options])
    assert refused.value.code == 2 and "--force" in capsys.readouterr().err.strip().splitlines()[-1]
    assert out.read_bytes() == written
    assert cmp.main(["--stages=[report]", "--force=true", *options]) == 0


def test_runs_trained_elsewhere_are_linked_and_checked(comparison, tmp_path, monkeypatch, capsys):
    cmp, data, work, _, options = comparison
    act, no_telepathy = work / "runs" / "act" / "seed0" / "lerobot", work / "runs" / "sigma_no_telepathy" / "seed0"
    other_data = tmp_path / "other_data"
    (other_data / "demos" / "meta").mkdir(parents=True)
    (other_data / "shards").mkdir()
    for name in ("info.json", "stats.json"):
        shutil.copy(data / "demos" / "meta" / name, other_data / "demos" / "meta")
    stats = other_data / "demos" / "meta" / "stats.json"
    stats.write_text(stats.read_text().replace("1", "2", 1))  # other demonstrations of the same shape
    monkeypatch.setattr(cmp.subprocess, "run", lambda *a, **k: pytest.fail(f"trained: {a}"))

    def run(*args: str, work_dir: Path = tmp_path / "work") -> str:
        argv = [*options, "--stages=[train]", f"--work_dir={work_dir}", *args]
        with pytest.raises(SystemExit) as failed:
            cmp.main(argv)
        lines = capsys.readouterr().err.strip().splitlines()
        assert failed.value.code == 2, lines
        return lines[-1]

    def runs(*specs: str) -> str:
        return f"--runs={json.dumps(specs)}"

    assert "trained with seed 0" in run("--methods=[act]", "--seeds=[1]", runs(f"act:1={act}"))
    assert "is not the act recipe: act chunk_size=16 (recipe 100)" in run(
        "--methods=[act]", "--act_recipe=act", runs(f"act:0={act}"), work_dir=tmp_path / "w2")
    assert "was trained with telepathy=False" in run("--methods=[sigma]", runs(f"sigma:0={no_telepathy}"),
                                                     work_dir=tmp_path / "w3")
    for linked, name in [(act, "w4"), (act.parent, "w5")]:  # by path; by the contents this script recorded
        assert "not on the comparison's" in run("--methods=[act]", f"--dataset={other_data}",
                                                runs(f"act:0={linked}"), work_dir=tmp_path / name)
    assert "expected METHOD:SEED=DIR" in run(runs(f"act0={act}"))
    capsys.readouterr()
    assert cmp.main([*options, "--stages=[train]", f"--work_dir={tmp_path / 'ok'}", "--methods=[act]",
                     runs(f"act:0={act}")]) == 0  # linked, complete: not trained again
    assert (tmp_path / "ok" / "runs" / "act" / "seed0").resolve() == act.resolve()
    moved = tmp_path / "moved_data"  # the same demonstrations elsewhere (a run trained on another machine)
    shutil.copytree(data / "demos" / "meta", moved / "demos" / "meta")
    (moved / "shards").mkdir()
    assert cmp.main([*options, "--stages=[train]", f"--work_dir={tmp_path / 'moved'}", "--methods=[act]",
                     f"--dataset={moved}", runs(f"act:0={act.parent}")]) == 0
    assert "holds another run" in run("--methods=[act]", runs(f"act:0={no_telepathy}"), work_dir=tmp_path / "ok")


def test_bad_options_are_one_line_errors(comparison, tmp_path, capsys):
    cmp, data, _, _, options = comparison
    for args, words in [(["--sigma_args=--seed=3"], "the comparison sets these itself"),
                        (["--sigma_args='--train_set={batch_size: 2, lr: 0.001}'"], "the comparison sets these itself"),
                        (["--sigma_args=--train_set={batch_size:2}"], "--train_set must be a mapping"),
                        (["--sigma_args=--language-augmentation"], "write each option as --field=value"),
                        (["--save_every=3"], "--save_every must be at most --steps"),
                        (["--select_seed=19999", "--select_episodes=2"], "overlap the held-out ones"),
                        (["--methods=[act,pi0]"], "--methods must be one of"),
                        (["--stage", "report"], "(a list is written --stages=[a,b])"),  # --stage: an abbreviation
                        ([f"--dataset={tmp_path}"], "no demos/ and shards/")]:
        with pytest.raises(SystemExit) as failed:
            cmp.main([*options, "--stages=[report]", *args])
        assert failed.value.code == 2 and words in capsys.readouterr().err.strip().splitlines()[-1]


def test_time_to_reach_is_the_first_evaluated_checkpoint_at_the_threshold():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        report = importlib.import_module("so101_sim_comparison_report")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    rates = {"4000": 0.5, "5000": 0.8, "6000": 0.96, "7000": 0.3, "8000": 0.9}
    reach = report.time_to_reach(rates, 8000, 3600.0)
    assert reach == {"threshold": 0.8, "step": 5000, "at_first_evaluated": False, "wall_s_est": 2250.0}
    assert report.reach_cell(reach) == "5000 (37.5)"
    first = report.time_to_reach({"8000": 0.9, "4000": 0.85}, 8000, None)  # keys in any order; no wall time
    assert first["step"] == 4000 and first["at_first_evaluated"] and first["wall_s_est"] is None
    assert report.reach_cell(first) == "<= 4000 (-)"
    never = report.time_to_reach(rates, 8000, 3600.0, threshold=0.97)
    assert never["step"] is None and report.reach_cell(never) == "not reached"


def test_confidence_interval_is_t_over_seeds_or_wilson_on_pooled_episodes(comparison):
    report = importlib.import_module("so101_sim_comparison_report")
    three = report.summary([0.8, 0.9, 1.0], [40, 45, 50], 50)
    assert three["mean"] == pytest.approx(0.9) and three["ci_method"].startswith("t over 3 seeds")
    assert three["ci95"] == pytest.approx([0.9 - 4.303 * 0.1 / 3**0.5, 1.0])  # upper end clipped to 1
    one = report.summary([0.92], [46], 50)
    assert one["ci_method"] == "Wilson on 50 pooled episodes"
    assert one["ci95"] == pytest.approx([0.8116, 0.9685], abs=1e-4)
    assert report.t_quantile_975(30) == 2.042 and report.t_quantile_975(31) == pytest.approx(2.040, abs=1e-3)
    assert report.t_quantile_975(120) == pytest.approx(1.980, abs=1e-3)
