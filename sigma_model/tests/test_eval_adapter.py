# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The risk-gated inference adapter (paper 4.3): bounds, fallback, a hand-computed case."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sigma_model.evaluation.adapter import AdapterConfig, RiskGatedAdapter

from sigma_model.testing import TEXT, randomize_


def _inputs(b=5, a=3, tc=4, tt=6, d_tau=8, seed=0, residual_scale=0.3, tau_scale=2.0):
    g = torch.Generator().manual_seed(seed)
    base = [torch.randn(b, a, generator=g), torch.randn(b, tc, a, generator=g), torch.randn(b, tt, a, generator=g)]
    pred = [x + residual_scale * torch.randn(x.shape, generator=g) for x in base]
    tau = tau_scale * torch.randn(b, d_tau, generator=g)
    cond = tau + torch.randn(b, d_tau, generator=g)
    return pred, base, tau, cond


def test_scale_stays_within_bounds_over_random_inputs():
    adapter = RiskGatedAdapter(AdapterConfig(min_scale=0.2, max_scale=1.5, k=0.7, tau_l2_range=(0.5, 6.0)))
    normal = 0
    for seed in range(60):
        g = torch.Generator().manual_seed(1000 + seed)
        residual_scale = float(10 ** (torch.rand(1, generator=g) * 4 - 3))  # 1e-3 .. 10
        tau_scale = float(10 ** (torch.rand(1, generator=g) * 4 - 2))
        pred, base, tau, cond = _inputs(seed=seed, residual_scale=residual_scale, tau_scale=tau_scale)
        out = adapter(*pred, *base, tau, cond)
        ok = ~out.fallback
        normal += int(ok.sum())
        assert torch.all(out.scale[ok] >= 0.2) and torch.all(out.scale[ok] <= 1.5)
        assert torch.all(out.scale[out.fallback] == 0)
        for adapted, p, q in zip((out.action_vector, out.action_chunk, out.action_trajectory), pred, base):
            s = out.scale.view(-1, *([1] * (q.dim() - 1)))
            torch.testing.assert_close(adapted, q + s * (p - q))
            assert torch.isfinite(adapted).all()
    assert normal > 100  # most items are ordinary, so the bound check is not vacuous


def test_zero_risk_gives_max_scale_and_huge_risk_min_scale():
    adapter = RiskGatedAdapter(AdapterConfig(min_scale=0.25, max_scale=1.25, max_risk=1e9, max_residual_ratio=1e9))
    assert float(adapter.scale_from_risk(torch.tensor(0.0))) == pytest.approx(1.25)
    assert float(adapter.scale_from_risk(torch.tensor(1e6))) == pytest.approx(0.25)


@pytest.mark.parametrize("inject", ["huge", "nan", "inf", "nan_tau", "nan_condition"])
def test_abnormal_residual_falls_back_to_baseline(inject):
    adapter = RiskGatedAdapter(AdapterConfig(min_scale=0.1, max_scale=1.0))
    pred, base, tau, cond = _inputs(b=4, tau_scale=1.0)
    pred = [p.clone() for p in pred]
    tau, cond = tau.clone(), cond.clone()
    if inject == "huge":
        pred[1][2] = base[1][2] + 1e6
    elif inject == "nan":
        pred[2][2, 0, 0] = float("nan")
    elif inject == "inf":
        pred[0][2, 1] = float("inf")
    elif inject == "nan_tau":
        tau[2, 3] = float("nan")
    else:
        cond[2, 0] = float("nan")
    out = adapter(*pred, *base, tau, cond)
    assert out.fallback.tolist() == [False, False, True, False]
    assert float(out.scale[2]) == 0.0
    if inject != "huge":
        assert float(out.risk[2]) == math.inf  # non-finite inputs: infinite risk, not NaN
    for adapted, q in zip((out.action_vector, out.action_chunk, out.action_trajectory), base):
        assert torch.equal(adapted[2], q[2])  # exactly the baseline
        assert torch.isfinite(adapted).all()
    assert torch.all(out.scale[[0, 1, 3]] >= 0.1)


def test_risk_and_scale_by_hand():
    cfg = AdapterConfig(min_scale=0.1, max_scale=1.1, k=1.5, w_residual=2.0, w_tau=1.0, w_align=0.5,
                        tau_l2_range=(1.0, 4.0))
    base_vec, res_vec = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.6, 0.8]])  # ratio 1/5 = 0.2
    base_chunk, res_chunk = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 0.1]]])  # ratio 0.1
    base_traj, res_traj = torch.tensor([[[0.0, 2.0]]]), torch.zeros(1, 1, 2)  # ratio 0
    tau, cond = torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 3.0]])  # |tau| = 5 > 4; cos = 24/25
    out = RiskGatedAdapter(cfg)(base_vec + res_vec, base_chunk + res_chunk, base_traj + res_traj,
                                base_vec, base_chunk, base_traj, tau, cond)
    risk_res, risk_tau, risk_align = 2.0 * 0.2, (5.0 - 4.0) / 4.0, 0.5 * (1 - 24 / 25)
    risk = risk_res + risk_tau + risk_align  # 0.67
    scale = 0.1 + 1.0 * math.exp(-1.5 * risk)
    assert float(out.residual_ratio) == pytest.approx(0.2, rel=1e-6)
    assert float(out.tau_l2) == pytest.approx(5.0)
    assert float(out.tau_cos) == pytest.approx(0.96, rel=1e-6)
    assert float(out.risk_residual) == pytest.approx(risk_res, rel=1e-6)
    assert float(out.risk_tau) == pytest.approx(risk_tau, rel=1e-6)
    assert float(out.risk_align) == pytest.approx(risk_align, rel=1e-5)
    assert float(out.risk) == pytest.approx(0.67, rel=1e-5)
    assert float(out.scale) == pytest.approx(scale, rel=1e-5)
    assert not bool(out.fallback)
    torch.testing.assert_close(out.action_vector, base_vec + scale * res_vec)
    torch.testing.assert_close(out.action_chunk, base_chunk + scale * res_chunk)
    torch.testing.assert_close(out.action_trajectory, base_traj)
    # below the tau range: relative shortfall (lo - |tau|) / lo
    low = RiskGatedAdapter(cfg)(base_vec, base_chunk, base_traj, base_vec, base_chunk, base_traj,
                                torch.tensor([[0.3, 0.4]]), torch.tensor([[0.3, 0.4]]))
    assert float(low.risk_tau) == pytest.approx(0.5, rel=1e-6)
    assert float(low.risk_align) == pytest.approx(0.0, abs=1e-6)


def test_adapt_output_on_model_actions(model, obs):
    randomize_(model.action.residual_head, seed=3)
    with torch.no_grad():
        out = model(obs, model.tokenize(TEXT), generator=torch.Generator().manual_seed(0))
    adapter = RiskGatedAdapter(AdapterConfig(tau_l2_range=(0.0, 1e3), max_residual_ratio=1e3, max_risk=1e3))
    res = adapter.adapt_output(out.action, out.language.tau)
    a = out.action
    s = res.scale.view(-1, 1)
    torch.testing.assert_close(res.action_vector, a.baseline_vector + s * a.residual_vector)
    assert res.scale.shape == (obs.image.shape[0],) and not res.fallback.any()
    assert set(res.terms()) == {"scale", "risk", "risk_residual", "risk_tau", "risk_align", "residual_ratio", "tau_l2",
                                "tau_cos", "fallback"}
    # an external baseline (an offline base policy) replaces the tau = 0 path
    ext = (a.baseline_vector + 1.0, a.baseline_chunk + 1.0, a.baseline_trajectory + 1.0)
    res2 = adapter.adapt_output(a, out.language.tau, baseline=ext)
    torch.testing.assert_close(res2.action_vector, ext[0] + res2.scale.view(-1, 1) * (a.action_vector - ext[0]))


def test_config_validation_and_round_trip(tmp_path):
    with pytest.raises(ValueError, match="min_scale"):
        AdapterConfig(min_scale=2.0, max_scale=1.0)
    with pytest.raises(ValueError, match="tau_l2_range"):
        AdapterConfig(tau_l2_range=(5.0, 1.0))
    with pytest.raises(ValueError, match="finite"):
        AdapterConfig(k=float("nan"))
    with pytest.raises(ValueError, match="unknown"):
        AdapterConfig.from_dict({"bogus": 1})
    cfg = AdapterConfig(min_scale=0.1, max_scale=1.3, tau_l2_range=(0.5, 9.0))
    cfg.save(tmp_path / "a.json")
    assert AdapterConfig.load(tmp_path / "a.json") == cfg


def test_shape_mismatch_is_a_clear_error():
    pred, base, tau, cond = _inputs()
    with pytest.raises(ValueError, match="differ in shape"):
        RiskGatedAdapter()(pred[0], pred[1][:, :2], pred[2], *base, tau, cond)
    with pytest.raises(ValueError, match="condition_tau"):
        RiskGatedAdapter()(*pred, *base, tau, cond[:, :3])


def test_fallbacks_switch_exactly_at_their_thresholds():
    """Risk > max_risk and residual ratio > max_residual_ratio each revert to the baseline on their own.

    Just above the threshold and not just below it.
    """
    base = [torch.ones(2, 2), torch.ones(2, 1, 2), torch.ones(2, 1, 2)]
    # risk from tau alone: |tau| above hi = 4 gives (|tau| - 4) / 4; no residual, tau aligned with c
    cfg = AdapterConfig(tau_l2_range=(1.0, 4.0), max_risk=2.0, max_residual_ratio=1e9)
    tau = torch.tensor([[4.0 * 2.95, 0.0], [4.0 * 3.05, 0.0]])  # risk 1.95 and 2.05
    out = RiskGatedAdapter(cfg)(*base, *base, tau, tau.clone())
    assert out.risk.tolist() == pytest.approx([1.95, 2.05])
    assert out.fallback.tolist() == [False, True] and float(out.scale[1]) == 0.0 and float(out.scale[0]) > 0
    # residual ratio alone: ||da|| / ||a_base|| of 9.9 and 10.1 with the risk gate out of the way
    cfg = AdapterConfig(tau_l2_range=(0.0, 1e9), w_residual=0.0, max_risk=1e9, max_residual_ratio=10.0)
    tau = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    pred = [b + torch.tensor([9.9, 10.1]).view(2, *([1] * (b.dim() - 1))) * b for b in base]
    out = RiskGatedAdapter(cfg)(*pred, *base, tau, tau.clone())
    assert out.residual_ratio.tolist() == pytest.approx([9.9, 10.1])
    assert out.fallback.tolist() == [False, True]
    assert torch.equal(out.action_trajectory[1], base[2][1]) and not torch.equal(out.action_trajectory[0], base[2][0])


def test_default_config_is_the_one_the_shipped_model_was_evaluated_with():
    """AdapterConfig() (the ROS adapter node's default) is the config in the shipped model's evaluation report."""
    root = next(p for p in Path(__file__).resolve().parents if (p / "checkpoints" / "sigma_so101_default").is_dir())
    report = json.loads((root / "checkpoints" / "sigma_so101_default" / "sigma_eval_report.json").read_text())
    assert AdapterConfig().to_dict() == AdapterConfig.from_dict(report["meta"]["adapter_config"]).to_dict()
    assert repr(RiskGatedAdapter()) == f"RiskGatedAdapter({AdapterConfig()})"


@pytest.mark.parametrize("kw, message", [
    (dict(k=True), "AdapterConfig.k must be a finite number, got True"),
    (dict(k="1"), "AdapterConfig.k must be a finite number, got '1'"),
    (dict(w_tau=math.inf), "AdapterConfig.w_tau must be a finite number, got inf"),
    (dict(w_align=-0.5), "AdapterConfig.w_align must be >= 0, got -0.5"),
    (dict(min_scale=2.0, max_scale=1.0), "AdapterConfig.min_scale (2.0) must be <= max_scale (1.0)"),
    (dict(norm_floor=0.0), "AdapterConfig.norm_floor must be > 0"),
    (dict(max_risk=0.0), "AdapterConfig.max_residual_ratio and max_risk must be > 0"),
    (dict(max_residual_ratio=0.0), "AdapterConfig.max_residual_ratio and max_risk must be > 0"),
    (dict(tau_l2_range=(1.0, 2.0, 3.0)),
     "AdapterConfig.tau_l2_range must be (lo, hi) with 0 <= lo <= hi, hi > 0; got (1.0, 2.0, 3.0)"),
    (dict(tau_l2_range=(-1.0, 2.0)),
     "AdapterConfig.tau_l2_range must be (lo, hi) with 0 <= lo <= hi, hi > 0; got (-1.0, 2.0)"),
    (dict(tau_l2_range=(0.0, 0.0)),
     "AdapterConfig.tau_l2_range must be (lo, hi) with 0 <= lo <= hi, hi > 0; got (0.0, 0.0)"),
    (dict(tau_l2_range=(1.0, math.inf)),
     "AdapterConfig.tau_l2_range must be (lo, hi) with 0 <= lo <= hi, hi > 0; got (1.0, inf)"),
])
def test_bad_config_is_a_clear_error(kw, message):
    with pytest.raises(ValueError) as err:
        AdapterConfig(**kw)
    assert str(err.value) == message


def test_config_numbers_are_stored_as_floats():
    cfg = AdapterConfig(min_scale=0, max_scale=2, k=3, tau_l2_range=[1, 4])
    assert all(type(v) is float for v in (cfg.min_scale, cfg.max_scale, cfg.k, *cfg.tau_l2_range))
    assert cfg.tau_l2_range == (1.0, 4.0)


def test_free_residual_ratio_and_the_norm_floor():
    """Ratios up to residual_ratio_free carry no risk; a zero baseline is measured against norm_floor."""
    cfg = AdapterConfig(w_residual=2.0, residual_ratio_free=0.5, tau_l2_range=(0.0, 1e9), norm_floor=0.01,
                        max_residual_ratio=1e9, max_risk=1e9)
    base = [torch.tensor([[4.0, 0.0], [4.0, 0.0], [0.0, 0.0]]), torch.zeros(3, 1, 2), torch.zeros(3, 1, 2)]
    base[1][:2] = 1.0
    base[2][:2] = 1.0
    res = torch.tensor([[1.0, 0.0], [4.0, 0.0], [0.0, 0.02]])  # ratios 0.25, 1.0 and 0.02 / 0.01 = 2
    pred = [base[0] + res, base[1], base[2]]
    tau = torch.ones(3, 2)
    out = RiskGatedAdapter(cfg)(*pred, *base, tau, tau.clone())
    assert out.residual_ratio.tolist() == pytest.approx([0.25, 1.0, 2.0])
    assert out.risk_residual.tolist() == pytest.approx([0.0, 2.0 * 0.5, 2.0 * 1.5])
    assert out.scale[0].item() == pytest.approx(1.0)


def test_float64_actions_stay_float64():
    pred, base, tau, cond = _inputs(b=2)
    out = RiskGatedAdapter()(*(p.double() for p in pred), *(q.double() for q in base), tau.double(), cond.double())
    assert out.action_vector.dtype == torch.float64 and out.risk.dtype == torch.float64
    want = base[1].double() + out.scale.view(-1, 1, 1) * (pred[1].double() - base[1].double())
    torch.testing.assert_close(out.action_chunk, want)


def test_batch_and_tau_mismatches_are_clear_errors():
    pred, base, tau, cond = _inputs(b=3)
    adapter = RiskGatedAdapter()
    for args, message in (
        ((*pred[:2], pred[2][:2], *base[:2], base[2][:2], tau, cond),
         "adapter: trajectory batch 2 != action_vector batch 3"),
        ((*pred, *base[:2], base[2][:, :2], tau, cond),
         "adapter: predicted trajectory [3, 6, 3] and baseline [3, 2, 3] differ in shape"),
        ((*pred, *base, tau[0], cond[0]), "adapter: tau [8] and condition_tau [8] must both be [3, d_tau]"),
        ((*pred, *base, tau[:2], cond[:2]), "adapter: tau [2, 8] and condition_tau [2, 8] must both be [3, d_tau]"),
    ):
        with pytest.raises(ValueError) as err:
            adapter(*args)
        assert str(err.value) == message


def test_edge_configs_are_valid():
    """Equal scales, a fixed tau norm, and thresholds below 1 are allowed."""
    for kw in (dict(min_scale=0.5, max_scale=0.5), dict(tau_l2_range=(2.0, 2.0)), dict(tau_l2_range=(0.0, 0.5)),
               dict(max_residual_ratio=0.5, max_risk=0.5)):
        AdapterConfig(**kw)


def test_scale_from_risk_is_clamped_to_its_bounds():
    adapter = RiskGatedAdapter(AdapterConfig(min_scale=0.2, max_scale=0.8))
    assert adapter.scale_from_risk(torch.tensor([-1.0, 0.0, 50.0])).tolist() == pytest.approx([0.8, 0.8, 0.2])


def test_tau_below_range_is_relative_to_lo_and_thresholds_are_inclusive():
    """R_tau = (lo - |tau|) / lo below the range; risk == max_risk and ratio == max_residual_ratio still adapt."""
    one = [torch.tensor([[1.0, 0.0]]), torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[1.0, 0.0]]])]
    cfg = AdapterConfig(tau_l2_range=(2.0, 4.0), w_align=0.0, w_residual=0.0)
    out = RiskGatedAdapter(cfg)(*one, *one, torch.tensor([[0.5, 0.0]]), torch.tensor([[0.5, 0.0]]))
    assert float(out.risk_tau) == pytest.approx(0.75)
    cfg = AdapterConfig(tau_l2_range=(1.0, 4.0), w_align=0.0, w_residual=0.0, max_risk=1.0)
    out = RiskGatedAdapter(cfg)(*one, *one, torch.tensor([[8.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
    assert float(out.risk) == 1.0 and not bool(out.fallback)
    cfg = AdapterConfig(tau_l2_range=(0.0, 4.0), w_align=0.0, w_residual=0.0, max_residual_ratio=2.0)
    pred = [one[0] * 3.0, one[1], one[2]]  # ||da|| / ||a_base|| = 2 exactly
    out = RiskGatedAdapter(cfg)(*pred, *one, torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
    assert float(out.residual_ratio) == 2.0 and not bool(out.fallback)


def test_half_precision_inputs_are_computed_in_float32():
    pred, base, tau, cond = _inputs(b=3)
    half = [x.half() for x in (*pred, *base, tau, cond)]
    out = RiskGatedAdapter()(*half)
    ref = RiskGatedAdapter()(*(x.float() for x in half))
    for name, value in {**out.terms(), "action_vector": out.action_vector, "action_chunk": out.action_chunk,
                        "action_trajectory": out.action_trajectory}.items():
        assert value.dtype == getattr(ref, name).dtype and torch.equal(value, getattr(ref, name)), name
    assert out.action_chunk.dtype == torch.float32


def test_a_nan_risk_from_finite_inputs_falls_back():
    """||tau|| overflows to inf; with w_tau = 0 the risk is 0 * inf = NaN: the baseline, not max_scale."""
    one = [torch.tensor([[1.0, 0.0]]), torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[1.0, 0.0]]])]
    tau = torch.tensor([[3e38, 3e38]])
    out = RiskGatedAdapter(AdapterConfig(w_tau=0.0, max_risk=1e9))(*[x * 2 for x in one], *one, tau, tau)
    assert math.isnan(float(out.risk)) and bool(out.fallback) and float(out.scale) == 0.0
    torch.testing.assert_close(out.action_vector, one[0])
