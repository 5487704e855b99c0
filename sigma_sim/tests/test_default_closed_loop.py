"""In-process closed-loop evaluation (sigma_sim.closed_loop) and the shipped default checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import sigma_sim  # noqa: F401  (headless GL backend before mujoco loads)
from sigma_model import SigmaConfig, SigmaModel, load_checkpoint
from sigma_sim.closed_loop import (
    ClosedLoopConfig, evaluate, format_summary, smoothness, wilson_interval, write_closed_loop_report,
)
from sigma_sim.default_model import DEFAULT_MODEL_CONFIG

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "checkpoints" / "sigma_so101_default"

pytestmark = pytest.mark.skipif(sigma_sim.GL_BACKEND is None, reason="no headless OpenGL (libegl1 / libosmesa6)")


def test_smoothness_and_wilson():
    line = np.outer(np.arange(10, dtype=float), np.ones(6)) * 0.1
    d, jerk = smoothness(line)
    assert d == pytest.approx(0.1) and jerk == pytest.approx(0.0)
    lo, hi = wilson_interval(8, 10)
    assert 0.0 < lo < 0.8 < hi <= 1.0
    assert wilson_interval(0, 0) == (None, None)


def test_closed_loop_report_format(tmp_path):
    torch.manual_seed(0)
    model = SigmaModel(SigmaConfig(**DEFAULT_MODEL_CONFIG))
    cfg = ClosedLoopConfig(episodes=2, max_steps=12, replan_every=4,
                           conditions=("sigma", "telepathy_off", "sigma_adapter", "expert"))
    report, records = evaluate(model, cfg)
    assert report["format"] == "sigma-eval-v1"
    assert set(report["conditions"]) == {"sigma", "telepathy_off", "sigma_adapter", "expert"}
    assert len(records) == 8 and all(r["num_samples"] == 1 for r in records)
    for name, c in report["closed_loop"].items():
        assert c["episodes"] == 2 and 0.0 <= c["success_rate"] <= 1.0
        assert c["mean_abs_delta_command"] >= 0.0
    sigma = report["conditions"]["sigma"]
    assert sigma["telepathy"] is True and sigma["adapter"] is False
    assert report["conditions"]["telepathy_off"]["telepathy"] is False
    for key in ("latency_ms_vision", "latency_ms_language", "latency_ms_action", "latency_ms_control"):
        assert sigma["extra"][key] > 0, key
    # tau is computed and reported under both conditions (the paper's avg_tau_l2), from per-plan values
    assert sigma["avg_tau_l2"] > 0 and report["conditions"]["telepathy_off"]["avg_tau_l2"] > 0
    assert sigma["avg_tau_l2"] == pytest.approx(np.mean([r["tau_l2"] for r in records if r["condition"] == "sigma"]))
    assert "adapter_scale" in report["conditions"]["sigma_adapter"]["extra"]
    # each plan covers replan_every ticks: 12 ticks -> 3 plans
    assert all(r["plans"] == 3 for r in records if r["condition"] != "expert")
    path = write_closed_loop_report(report, records, tmp_path)
    data = json.loads(path.read_text())
    assert data["closed_loop"]["sigma"]["episodes"] == 2
    assert "Sigma (telepathy on)" in format_summary(report)


def test_plan_length_defaults_to_the_models_n_action_steps():
    torch.manual_seed(0)
    model = SigmaModel(SigmaConfig(**{**DEFAULT_MODEL_CONFIG, "n_action_steps": 6}))
    report, records = evaluate(model, ClosedLoopConfig(episodes=1, max_steps=12, conditions=("sigma",)))
    assert report["meta"]["replan_every"] == 6
    assert [r["plans"] for r in records] == [2]  # 12 ticks, a plan every 6
    with pytest.raises(ValueError, match="n_action_steps"):
        SigmaConfig(n_action_steps=0)


def test_expert_condition_solves_an_episode():
    cfg = ClosedLoopConfig(episodes=1, conditions=("expert",))
    report, _ = evaluate(None, cfg)
    assert report["closed_loop"]["expert"]["successes"] == 1


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no shipped checkpoint")
def test_shipped_checkpoint_small_documented_and_acting():
    files = list(SHIPPED.glob("*.safetensors"))
    assert {f.name for f in files} == {"vision.safetensors", "language.safetensors", "action.safetensors"}
    assert sum(f.stat().st_size for f in files) < 10e6
    prov = json.loads((SHIPPED / "provenance.json").read_text())
    assert prov["command"].startswith("sigma-make-default")
    assert (SHIPPED / "PROVENANCE.md").is_file()
    closed = prov["eval"]["report"]["closed_loop"]
    assert closed["sigma"]["episodes"] == 50 and {"sigma", "telepathy_off"} <= set(closed)
    for c in closed.values():
        assert 0.0 <= c["success_rate"] <= 1.0
    # the shipped report is the one in provenance.json
    report_file = json.loads((SHIPPED / "sigma_eval_report.json").read_text())
    assert report_file["closed_loop"]["sigma"]["successes"] == closed["sigma"]["successes"]
    model = load_checkpoint(SHIPPED)
    # a short seeded closed-loop run of the shipped model (safety filter on): it acts and stays finite
    report, records = evaluate(model, ClosedLoopConfig(episodes=1, max_steps=90, conditions=("sigma",)))
    assert records[0]["plans"] > 0 and records[0]["mean_abs_delta_command"] > 0.0


def test_diffusion_steps_flag_overrides_the_checkpoints(tmp_path, monkeypatch):
    from sigma_model import save_checkpoint
    from sigma_model.trajectory_dit import TrajectoryDiT
    from sigma_sim.closed_loop import main

    torch.manual_seed(0)
    save_checkpoint(SigmaModel(SigmaConfig(**{**DEFAULT_MODEL_CONFIG, "diffusion_steps": 10})), tmp_path / "ckpt")
    used, sample = [], TrajectoryDiT.sample
    monkeypatch.setattr(TrajectoryDiT, "sample", lambda self, *a, **k: used.append(a[3]) or sample(self, *a, **k))
    common = ["--checkpoint", str(tmp_path / "ckpt"), "--episodes", "1", "--max-steps", "8", "--conditions", "sigma",
              "--replan-every", "4", "--quiet"]
    assert main(common + ["--output", str(tmp_path / "two"), "--diffusion-steps", "2"]) == 0
    assert main(common) == 0
    assert used == [2, 2, 10, 10]  # two plans each: the flag's steps, then the checkpoint's own
    report = json.loads((tmp_path / "two" / "sigma_eval_report.json").read_text())
    assert report["meta"]["config"]["diffusion_steps"] == 2
    with pytest.raises(ValueError, match="diffusion_steps"):
        ClosedLoopConfig(diffusion_steps=0)
