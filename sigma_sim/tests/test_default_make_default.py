# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""sigma-make-default end to end on a tiny budget: record -> preprocess -> train -> select -> eval -> ship."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sigma_sim  # noqa: F401
from sigma_model import load_checkpoint
from sigma_sim.default_model import main

pytestmark = pytest.mark.skipif(sigma_sim.GL_BACKEND is None, reason="no headless OpenGL (libegl1 / libosmesa6)")


def test_make_default_tiny_pipeline(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    rc = main([f"--out={out}", "--work_dir", str(work), "--episodes=2", "--max_steps=3",
               "--eval_episodes=1", "--eval_max_steps=8", "--conditions=[sigma,telepathy_off]", "--quiet=true",
               "--eval_variations=[nominal]", "--select_episodes=1",
               "--train_set={batch_size: 8}", "--aux_cube_pose=true", "--normalize=true", "--record_workers=1"])
    assert rc == 0
    for name in ("config.json", "vision.safetensors", "language.safetensors", "action.safetensors",
                 "PROVENANCE.md", "provenance.json", "sigma_eval_report.json"):
        assert (out / name).is_file(), name
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["record"]["episodes"] == 2 and prov["train"]["steps"] == 3
    assert prov["select"]["successes"].keys() == {"3"} and prov["select"]["model"] == prov["train"]["model"]
    assert prov["align"]["model"] == prov["train"]["model"] and "no text encoder" in prov["align"]["skipped"]
    assert prov["train"]["last_metrics"]["L_aux"] > 0.0  # the cube pose is a training target...
    assert prov["preprocess"]["windows"] > 0
    # the default recipe keeps a weight average, and the checkpoints export it as their model/
    last = work / "train" / "checkpoints" / "step_00000003"
    assert json.loads((last / "training_config.json").read_text())["ema_decay"] == 0.9995
    assert (last / "ema.safetensors").is_file()
    assert set(prov["eval"]["report"]["closed_loop"]) == {"sigma", "telepathy_off"}
    # the shipped model carries the heads its training started from; its report ran CHECK A against them
    assert (out / "sigma_telepathy_heads_init.safetensors").is_file()
    check = json.loads((out / "sigma_eval_report.json").read_text())["check_a"]
    assert check["init_heads"].endswith("sigma_telepathy_heads_init.safetensors") and check["passed"] is not None
    assert prov["command"].startswith("sigma-make-default --out=") and "--episodes=2" in prov["command"]
    assert not [word for word in ("--work_dir", str(work), "--quiet", "--record_workers") if word in prov["command"]]
    text = (out / "PROVENANCE.md").read_text()
    assert "Closed-loop evaluation" in text and "telepathy off" in text
    model = load_checkpoint(out)
    assert model.config.d_model == 64
    assert model.config.aux_target_dim == 7 and model.config.env_state_dim == 0  # ...never an input
    stats = json.loads((work / "demos" / "meta" / "stats.json").read_text())
    assert model.config.action_mean == pytest.approx(stats["action"]["mean"])
    assert model.config.state_std == pytest.approx([max(v, 1e-3) for v in stats["observation.state"]["std"]])


def test_select_stage_ships_the_best_checkpoint_on_the_selection_seeds(tmp_path, monkeypatch):
    from sigma_sim import closed_loop, default_model

    out, work = tmp_path / "out", tmp_path / "work"
    common = [f"--work_dir={work}", "--quiet=true", "--eval_episodes=1", "--eval_max_steps=8", "--select_episodes=2",
              "--conditions=[sigma]", "--eval_variations=[nominal]"]
    assert main([*common, "--episodes=2", "--max_steps=4", "--stages=[record,preprocess,train]", "--record_workers=1",
                 "--train_set={batch_size: 4, save_every: 1}"]) == 0
    # plant a success for step 2 in the selection's per-checkpoint record (8 ticks never succeed for real)
    settings = {"condition": "sigma", "episodes": 2, "seed": 10000, "max_steps": 8, "replan_every": None}
    (work / "select").mkdir()
    (work / "select" / "step_00000002.json").write_text(json.dumps({"settings": settings, "successes": 1}))
    evaluated = []
    real = closed_loop.evaluate_checkpoint
    monkeypatch.setattr(closed_loop, "evaluate_checkpoint", lambda path, *a, **k: evaluated.append(str(path)) or
                        real(path, *a, **k))
    assert main([*common, f"--out={out}", "--stages=[select,eval,ship]"]) == 0
    prov = json.loads((out / "provenance.json").read_text())
    sel = prov["select"]
    assert sel["successes"] == {"2": 1, "3": 0, "4": 0} and sel["chosen_step"] == 2  # the first half (step 1) skipped
    assert sel["seeds"] == "10000..10001" and sel["condition"] == "sigma"
    assert sel["model"].endswith("step_00000002/model") and prov["eval"]["report"]["meta"]["checkpoint"] == sel["model"]
    assert [p.split("/")[-2] for p in evaluated] == ["step_00000003", "step_00000004", "step_00000002"]  # + eval
    assert "## Checkpoint selection" in (out / "PROVENANCE.md").read_text()
    assert "| 2 | 1/2 |" in (out / "PROVENANCE.md").read_text()
    evaluated.clear()  # the same selection again: every checkpoint's result is reused
    assert main([*common, "--stages=[select]"]) == 0 and evaluated == []
    evaluated.clear()  # other selection seeds: evaluated again
    assert main([*common, "--stages=[select]", "--select_seed=30000"]) == 0 and len(evaluated) == 3
    assert default_model.choose_checkpoint({4: 3, 5: 3, 6: 2}) == 5  # a tie goes to the later step


def test_selection_alignment_and_evaluation_seeds_must_not_overlap(capsys):
    from sigma_model.testing import cli_error

    error = cli_error(main, ["--select_seed=19990", "--select_episodes=20"], capsys)
    assert "overlap the --eval_seed episodes (seeds 20000..20049)" in error and "19990..20009" in error
    assert cli_error(main, ["--select_seed=20050", "--select_episodes=20", "--eval_episodes=51"], capsys)
    error = cli_error(main, ["--align_seed=10040"], capsys)
    assert "--align_seed episodes (seeds 10040..10079) overlap the --select_seed episodes" in error
    assert "overlap the --eval_seed" in cli_error(main, ["--align_seed=20049", "--align_episodes=1"], capsys)
    assert "overlap" in cli_error(main, ["--align_seed=10000", "--select_seed=30000", "--eval_seed=10030"], capsys)
    assert "--align_set" in cli_error(main, ["--align_set={stepz: 3}"], capsys)
    assert "trainable must be one of" in cli_error(main, ["--align_set={trainable: vision}"], capsys)
    assert "must be positive" in cli_error(main, ["--align_episodes=0"], capsys)


def test_privileged_and_auxiliary_cube_pose_read_the_poses_once(tmp_path, monkeypatch):
    """Also: --train_set={seed: S} is the whole training seed (the augmentation's too); demonstrations keep --seed."""
    from sigma_sim import default_model

    reads, windows = [], []
    original = default_model.load_env_state_table
    monkeypatch.setattr(default_model, "load_env_state_table", lambda *a: reads.append(a) or original(*a))
    real_windows = default_model.SimTrainingWindows
    monkeypatch.setattr(default_model, "SimTrainingWindows", lambda *a, **k: windows.append(k["seed"]) or
                        real_windows(*a, **k))
    work = tmp_path / "work"
    rc = main([f"--work_dir={work}", "--episodes=1", "--max_steps=1", "--stages=[record,preprocess,train]",
               "--quiet=true", "--train_set={batch_size: 4, seed: 5}", "--privileged_cube_pose=true",
               "--record_workers=1"])
    assert rc == 0 and len(reads) == 1
    prov = json.loads((work / "provenance_partial.json").read_text())
    assert windows == [5] and prov["seeds"]["training"] == 5 and prov["train"]["training_config"]["seed"] == 5
    model = load_checkpoint(prov["train"]["model"])
    assert model.config.env_state_dim == 7 and model.config.aux_target_dim == 7


def test_make_default_with_a_text_encoder_and_language_augmentation(tmp_path):
    from safetensors import safe_open

    from sigma_model.testing import save_tiny_bert

    bert = save_tiny_bert(tmp_path / "bert")
    out, work = tmp_path / "out", tmp_path / "work"
    rc = main([f"--out={out}", f"--work_dir={work}", "--episodes=2", "--max_steps=3",
               "--eval_episodes=2", "--eval_max_steps=8", "--conditions=[sigma]", "--quiet=true",
               "--eval_variations=[nominal,paraphrase]", "--select_episodes=1",
               "--train_set={batch_size: 8}", "--aux_cube_pose=false", "--record_workers=1",
               "--align_episodes=1", "--align_set={steps: 2, batch_size: 2}",
               "--language_augmentation=true", f"--model_set={json.dumps({'text_encoder': str(bert)})}"])
    assert rc == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["train"]["augmentation"]["language_wordings_per_region"] == {"left": 1280, "right": 1280}
    # the align stage: its rollouts, both candidates on the selection episodes, the one kept is the one shipped
    align = prov["align"]
    assert align["rollouts"]["seeds"] == "40000..40000" and align["config"]["steps"] == 2
    assert set(align["selection"]["successes"]) == {"before", "aligned"}
    assert align["selection"]["variations"] == ["nominal", "paraphrase_selection"]
    assert align["source"] == prov["select"]["model"]
    assert align["model"] == (align["aligned_model"] if align["kept"] else align["source"])
    assert (out / "language.safetensors").read_bytes() == (Path(align["model"]) / "language.safetensors").read_bytes()
    columns = prov["eval"]["report"]["closed_loop"]["sigma"]["episode_success_by_variation"]
    assert list(columns) == ["nominal", "paraphrase"]
    assert columns["paraphrase"]["instructions"] != columns["nominal"]["instructions"]
    assert "Generalisation" in (out / "PROVENANCE.md").read_text()
    with safe_open(str(out / "language.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert "language.text_projection.weight" in keys and not [k for k in keys if "text_encoder" in k]
    model = load_checkpoint(out)
    assert model.config.text_encoder == str(bert) and model.language.text_encoder is not None
    assert prov["parameters"] == sum(p.numel() for n, p in model.named_parameters() if "text_encoder" not in n)


@pytest.mark.parametrize("before, aligned, kept", [((40, 34), (41, 34), True), ((40, 34), (34, 40), True),
                                                   ((40, 34), (43, 30), False)])
def test_align_stage_keeps_the_aligned_model_only_if_it_solves_at_least_as_many(tmp_path, monkeypatch, before,
                                                                                  aligned, kept):
    from sigma_model import SigmaModel, save_checkpoint
    from sigma_model.testing import save_tiny_bert, small_config
    from sigma_sim import closed_loop

    source, work = tmp_path / "source", tmp_path / "work"
    save_checkpoint(SigmaModel(small_config(text_encoder=str(save_tiny_bert(tmp_path / "bert")))), source)
    planted = {str(source): before, str(work / "align" / "model"): aligned}  # selection successes by candidate
    evaluated = []

    def evaluate(path, cfg, **_):
        evaluated.append((str(path), cfg.seed, cfg.episodes, cfg.variations))
        counts = dict(zip(cfg.variations, planted[str(path)]))
        return {"closed_loop": {"sigma": {"episode_success_by_variation": {v: {"successes": n}
                                                                           for v, n in counts.items()}}}}

    monkeypatch.setattr(closed_loop, "evaluate_checkpoint", evaluate)
    assert main([f"--work_dir={work}", "--quiet=true", "--stages=[align]", f"--model_dir={source}",
                 "--align_episodes=1", "--align_set={steps: 1, batch_size: 2}", "--select_episodes=50",
                 "--eval_max_steps=4"]) == 0
    align = json.loads((work / "provenance_partial.json").read_text())["align"]
    variations = ("nominal", "paraphrase_selection")
    assert evaluated == [(str(source), 10000, 50, variations), (str(work / "align" / "model"), 10000, 50, variations)]
    assert align["selection"]["successes"] == {"before": dict(zip(variations, before)),
                                               "aligned": dict(zip(variations, aligned))}
    assert align["kept"] is kept and align["model"] == str(work / "align" / "model" if kept else source)
