# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The evaluation report: confidence intervals on known numbers, aggregation, files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sigma_model.evaluation import report as R
from sigma_model.testing import PAPER_FIELDS



@pytest.mark.parametrize("p,df,expected", [(0.975, 1, 12.7062047362), (0.975, 2, 4.30265272975),
                                            (0.975, 9, 2.26215716280), (0.975, 30, 2.04227245630),
                                            (0.95, 5, 2.01504837333), (0.025, 9, -2.26215716280)])
def test_student_t_quantiles(p, df, expected):
    assert R.student_t_ppf(p, df) == pytest.approx(expected, abs=1e-8)


def test_t_interval_on_known_numbers():
    out = R.relative_improvement([1.0, 1.0, 1.0], [0.9, 0.8, 0.7], method="t")
    # per-batch improvements 0.1, 0.2, 0.3: mean 0.2, sd 0.1, half width t(0.975, 2) * 0.1 / sqrt(3)
    half = 4.30265272975 * 0.1 / math.sqrt(3)
    assert out["estimate"] == pytest.approx(0.2)
    assert out["mean_batch_improvement"] == pytest.approx(0.2)
    assert out["ci_low"] == pytest.approx(0.2 - half, abs=1e-9)
    assert out["ci_high"] == pytest.approx(0.2 + half, abs=1e-9)
    assert out["reference_mse"] == pytest.approx(1.0) and out["candidate_mse"] == pytest.approx(0.8)


def test_bootstrap_interval():
    # a constant ratio has a degenerate interval at the estimate
    out = R.relative_improvement([1.0, 2.0, 4.0, 3.0], [0.8, 1.6, 3.2, 2.4], weights=[4, 4, 4, 3])
    assert out["estimate"] == pytest.approx(0.2)
    assert out["ci_low"] == pytest.approx(0.2) and out["ci_high"] == pytest.approx(0.2)
    # noisy data: the interval brackets the estimate, is reproducible, and narrows with more batches
    rng = np.random.default_rng(0)
    ref = rng.uniform(1, 2, 40)
    cand = ref * rng.uniform(0.7, 0.9, 40)
    a = R.relative_improvement(ref, cand, seed=3)
    b = R.relative_improvement(ref, cand, seed=3)
    assert a == b
    assert a["ci_low"] < a["estimate"] < a["ci_high"]
    assert 0.1 < a["ci_low"] and a["ci_high"] < 0.3
    short = R.relative_improvement(ref[:5], cand[:5], seed=3)
    assert short["ci_high"] - short["ci_low"] > a["ci_high"] - a["ci_low"]
    single = R.relative_improvement([1.0], [0.5])
    assert single["estimate"] == pytest.approx(0.5) and single["ci_low"] is None
    with pytest.raises(ValueError, match="n_boot must be positive, got -5"):
        R.relative_improvement(ref, cand, n_boot=-5)


def _records():
    recs = []
    for b, n in enumerate([4, 4, 2]):
        for cond, factor in (("sigma", 0.5), ("baseline", 1.0)):
            recs.append(
                {
                    "condition": cond,
                    "batch": b,
                    "num_samples": n,
                    "mse_vec": factor * (b + 1),
                    "mse_chk": factor * 2 * (b + 1),
                    "mse_trj": factor * 3 * (b + 1),
                    "tau_l2": 2.0,
                    "sem_align": 0.1,
                    "num_hard": 1 if b else 0,
                    "hard_mse_vec": None if b == 0 else 10.0 * (b + 1),
                    "hard_mse_chk": None if b == 0 else 1.0,
                    "hard_mse_trj": None if b == 0 else 1.0,
                    "num_within_thresholds": n - 1,
                    "latency_ms": 5.0 * (b + 1),
                }
            )
    return recs


def test_build_report_fields_and_hand_aggregation():
    rep = R.build_report(_records(), check_a={"heads_tensors": 3}, table_every=2, ci_method="t")
    for field in PAPER_FIELDS:
        assert field in rep, field
        for cond in ("sigma", "baseline"):
            assert field in rep["conditions"][cond], (cond, field)
    s = rep["conditions"]["sigma"]
    assert s["num_samples"] == 10 and s["num_batches"] == 3
    assert s["avg_mse_vector"] == pytest.approx(0.5 * (4 * 1 + 4 * 2 + 2 * 3) / 10)
    assert s["total_hard_samples"] == 2 and s["hard_sample_fraction"] == pytest.approx(0.2)
    assert s["avg_hard_mse_vector"] == pytest.approx((20.0 + 30.0) / 2)
    # offline records count windows within the success thresholds: window_success_rate, nothing else
    assert s["window_success_rate"] == pytest.approx(7 / 10) and s["total_success_windows"] == 7
    assert "success_rate" not in s and "episode_success_rate" not in s and "success_thresholds" in rep
    assert s["not_applicable"] == {}  # every paper field measured
    assert s["hard_thresholds"] == {"vec": 0.1, "chunk": 0.2, "traj": 0.2}
    assert s["extra"]["latency_ms"] == pytest.approx((4 * 5 + 4 * 10 + 2 * 15) / 10)
    assert rep["num_samples"] == 10 and rep["avg_mse_vector"] == s["avg_mse_vector"]  # top level = primary (sigma)
    imp = rep["relative_improvement"]["by_condition"]["sigma"]
    for scale in ("vector", "chunk", "traj"):
        assert imp[scale]["estimate"] == pytest.approx(0.5)
    assert [r["batch"] for r in rep["check_b"]["rows"]] == [0, 2, 0, 2]
    assert rep["check_a"] == {"heads_tensors": 3}


def test_missing_metrics_are_null_with_a_reason():
    recs = [{"condition": "ros", "batch": i, "num_samples": 1, "mse_vec": 0.5, "num_hard": 0} for i in range(3)]
    recs += [{"condition": "expert", "batch": i, "num_samples": 0, "episode_success": i % 2} for i in range(3)]
    rep = R.build_report(recs, reference="none", not_applicable={"expert": {"avg_mse_vector": "the reference itself"}})
    c = rep["conditions"]["ros"]
    assert c["avg_mse_vector"] == pytest.approx(0.5)
    for cond in rep["conditions"].values():  # every paper field is there; null exactly when a reason says why
        assert set(PAPER_FIELDS) <= set(cond)
        assert {f for f in PAPER_FIELDS if cond[f] is None} == set(cond["not_applicable"])
    assert c["avg_mse_chunk"] is None and "mse_chk" in c["not_applicable"]["avg_mse_chunk"]
    assert "tau" in c["not_applicable"]["avg_tau_l2"]
    assert c["total_hard_samples"] == 0 and "no hard samples" in c["not_applicable"]["avg_hard_mse_vector"]
    e = rep["conditions"]["expert"]
    assert e["not_applicable"]["avg_mse_vector"] == "the reference itself"  # the caller's reason wins
    # closed-loop records carry episode success: episode_success_rate, never a window rate
    assert e["episode_success_rate"] == pytest.approx(1 / 3) and e["episodes"] == 3 and e["successful_episodes"] == 1
    assert "window_success_rate" not in e and "success_thresholds" not in rep
    with pytest.raises(ValueError, match="no batch records"):
        R.build_report([])


def test_success_rate_of_reads_old_and_new_reports():
    assert R.success_rate_of({"episode_success_rate": 0.9, "success_rate": 0.1}) == 0.9
    assert R.success_rate_of({"success_rate": 0.92}) == 0.92  # a sigma-eval-v1 report
    assert R.success_rate_of({"window_success_rate": 0.5}, "window") == 0.5
    assert R.success_rate_of({"window_success_rate": 0.5}) is None
    with pytest.raises(ValueError, match="kind"):
        R.success_rate_of({}, "plan")


def test_write_report_files(tmp_path):
    recs = _records()
    rep = R.build_report(recs)
    paths = R.write_report(rep, recs, tmp_path, labels={"sigma": "Sigma", "baseline": "baseline (tau0)"})
    loaded = json.loads((tmp_path / R.REPORT_NAME).read_text())
    assert loaded["files"]["batch_log"] == R.BATCH_LOG_NAME
    assert R.read_batch_log(paths["batch_log"]) == json.loads(json.dumps(recs))
    for key in ("mse_plot", "improvement_plot"):
        data = paths[key].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
