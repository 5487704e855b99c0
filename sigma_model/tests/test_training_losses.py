# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""TRAF / TSAC loss terms against hand computations on small tensors, and the curriculum."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from sigma_model.training import losses as L
from sigma_model.training.configuration_training import TrainingConfig
from sigma_model.training.curriculum import Curriculum, linear_ramp


def _mse(a, b):
    a, b = [x for x in a], [x for x in b]
    return sum((x - y) ** 2 for x, y in zip(a, b)) / len(a)


def _cos(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


# ---------------------------------------------------------------- TRAF
def test_traf_matches_hand_computation():
    # B = 3 samples, A = 2, chunk T = 2, trajectory T' = 1 (flattened lists per sample for the hand side)
    vec = [[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]]
    vec_t = [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    chk = [[[0.0, 0.0], [1.0, 1.0]], [[2.0, 2.0], [0.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]]
    chk_t = [[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]]
    trj = [[[4.0, 0.0]], [[0.0, 0.0]], [[1.0, 1.0]]]
    trj_t = [[[0.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]]
    alphas, rho, lam = (1.0, 0.5, 2.0), 0.5, 0.25
    flat = lambda x: [v for row in x for v in row]  # noqa: E731
    m_vec = [_mse(vec[i], vec_t[i]) for i in range(3)]  # [2.0, 1.0, 5.0]
    m_chk = [_mse(flat(chk[i]), flat(chk_t[i])) for i in range(3)]  # [0.5, 2.0, 0.0]
    m_trj = [_mse(flat(trj[i]), flat(trj_t[i])) for i in range(3)]  # [8.0, 0.0, 1.0]
    assert (m_vec, m_chk, m_trj) == ([2.0, 1.0, 5.0], [0.5, 2.0, 0.0], [8.0, 0.0, 1.0])
    h = [m_vec[i] + m_chk[i] + m_trj[i] for i in range(3)]  # [10.5, 3.0, 6.0]
    l_act = alphas[0] * sum(m_vec) / 3 + alphas[1] * sum(m_chk) / 3 + alphas[2] * sum(m_trj) / 3
    k = math.ceil(rho * 3)  # 2 -> samples 0 and 2
    hard = [0, 2]
    l_hard = sum(a * sum(m[i] for i in hard) / k for a, m in zip(alphas, (m_vec, m_chk, m_trj)))

    t = lambda x: torch.tensor(x)  # noqa: E731
    res = L.traf_loss({"vec": t(vec), "chunk": t(chk), "traj": t(trj)},
                      {"vec": t(vec_t), "chunk": t(chk_t), "traj": t(trj_t)}, alphas, rho, lam)
    assert res.difficulty.tolist() == pytest.approx(h)
    assert res.hard_index.tolist() == hard
    assert res.l_act.item() == pytest.approx(l_act)
    assert res.l_hard.item() == pytest.approx(l_hard)
    assert res.l_act_total.item() == pytest.approx(l_act + lam * l_hard)
    assert res.hard_ratio == pytest.approx(2 / 3)
    assert {k: v.item() for k, v in res.mse.items()} == pytest.approx(
        {"vec": sum(m_vec) / 3, "chunk": sum(m_chk) / 3, "traj": sum(m_trj) / 3})


def test_hard_subset_ties_keep_batch_order():
    """Equal difficulties: the lowest batch indices enter H first.

    A stable sort: at B = 20 torch's default sort reorders ties.
    """
    b = 20
    vec = torch.tensor([[float(i % 3 == 0)] for i in range(b)])  # h_i = 1 for every third sample, else 0
    zeros = {"vec": torch.zeros(b, 1), "chunk": torch.zeros(b, 1, 1), "traj": torch.zeros(b, 1, 1)}
    res = L.traf_loss({**zeros, "vec": vec}, zeros, rho=0.5)
    h = res.difficulty.tolist()
    assert res.hard_index.tolist() == sorted(range(b), key=lambda i: (-h[i], i))[:10]


def test_hard_count_is_ceil_of_rho_b():
    assert L.hard_count(10, 0.3) == 3  # 0.3 * 10 is 3.0000000000000004 in floating point
    assert L.hard_count(7, 0.3) == 3
    assert L.hard_count(1, 0.3) == 1
    assert L.hard_count(4, 1.0) == 4
    with pytest.raises(ValueError):
        L.hard_count(4, 0.0)


def test_final_actions_use_dataset_baseline_when_present():
    residual = torch.tensor([[0.5, -0.5]])
    out = SimpleNamespace(
        action_vector=torch.tensor([[9.0, 9.0]]), residual_vector=residual,
        action_chunk=torch.ones(1, 2, 2), residual_chunk=torch.zeros(1, 2, 2),
        action_trajectory=torch.full((1, 3, 2), 2.0), residual_trajectory=torch.ones(1, 3, 2),
    )
    batch = {"base_action_vector": torch.tensor([[1.0, 2.0]])}
    actions, used = L.final_actions(out, batch)
    assert actions["vec"].tolist() == [[1.5, 1.5]]  # data baseline + residual
    assert torch.equal(actions["chunk"], out.action_chunk)  # no data baseline: the model's output
    assert used == {"vec": True, "chunk": False, "traj": False}
    actions, used = L.final_actions(out, batch, use_dataset_baseline=False)
    assert actions["vec"].tolist() == [[9.0, 9.0]] and not any(used.values())
    with pytest.raises(ValueError, match="base_action_vector"):
        L.final_actions(out, {"base_action_vector": torch.zeros(1, 3)})


# ---------------------------------------------------------------- TSAC
def test_time_consistency_loss():
    z = [[1.0, 0.0], [1.0, 1.0]]
    m = [[0.0, 2.0], [2.0, 2.0]]
    want_cos = sum(1 - _cos(a, b) for a, b in zip(z, m)) / 2  # (1 - 0 + 1 - 1) / 2 = 0.5
    assert L.time_consistency_loss(torch.tensor(z), torch.tensor(m), "cos").item() == pytest.approx(want_cos)
    want_mse = (1 + 4 + 1 + 1) / 4
    assert L.time_consistency_loss(torch.tensor(z), torch.tensor(m), "mse").item() == pytest.approx(want_mse)


def test_info_nce_matches_hand_computation():
    a = [[1.0, 0.0], [1.0, 3.0]]
    p = [[1.0, 1.0], [0.0, 2.0]]
    temp = 0.5
    logits = [[_cos(a[i], p[j]) / temp for j in range(2)] for i in range(2)]
    ce = lambda rows: sum(-rows[i][i] + math.log(sum(math.exp(x) for x in rows[i])) for i in range(2)) / 2  # noqa: E731
    cols = [[logits[j][i] for j in range(2)] for i in range(2)]
    got = L.info_nce(torch.tensor(a), torch.tensor(p), temp, symmetric=False).item()
    assert got == pytest.approx(ce(logits))
    got = L.info_nce(torch.tensor(a), torch.tensor(p), temp, symmetric=True).item()
    assert got == pytest.approx(0.5 * (ce(logits) + ce(cols)))
    assert L.info_nce(torch.randn(1, 4), torch.randn(1, 4)).item() == pytest.approx(0.0, abs=1e-7)


def test_semantic_loss_combines_time_and_mi():
    g = torch.Generator().manual_seed(0)
    z, m, f = (torch.randn(4, 3, generator=g) for _ in range(3))
    l_sem, l_time, l_mi = L.semantic_loss(z, m, f, beta_mi=0.3, temperature=0.2)
    assert l_time.item() == pytest.approx(L.time_consistency_loss(z, m).item())
    assert l_mi.item() == pytest.approx(L.info_nce(z, f, 0.2).item())
    assert l_sem.item() == pytest.approx(l_time.item() + 0.3 * l_mi.item())
    l_sem, l_time, _ = L.semantic_loss(z, m, f, beta_mi=0.3, temperature=0.2, time_kind="mse")
    assert l_time.item() == pytest.approx(L.time_consistency_loss(z, m, "mse").item())
    c_text, vision = torch.tensor([[2.0, 0.0]]), torch.tensor([[[0.0, 2.0], [0.0, 4.0]]])
    assert L.fusion_representation(c_text, vision).tolist() == [[1.0, 1.5]]


def test_intent_loss_is_negative_mean_cosine():
    zi = [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    mt = [[1.0, 0.0], [-1.0, 0.0], [3.0, 3.0]]
    want = -sum(_cos(a, b) for a, b in zip(zi, mt)) / 3
    assert L.intent_loss(torch.tensor(zi), torch.tensor(mt)).item() == pytest.approx(want)
    aligned = torch.randn(5, 8)
    assert L.intent_loss(aligned, 2 * aligned).item() == pytest.approx(-1.0)


def test_tau_loss_matches_hand_computation():
    tau = [[3.0, 4.0], [0.0, 8.0]]  # norms 5 and 8
    cond = [[4.0, 3.0], [0.0, -1.0]]  # cos 24/25 and -1
    tau_0, lam_c, eta, c2 = 7.0, 0.5, 0.2, 0.01
    terms = []
    for t, c in zip(tau, cond):
        norm = math.sqrt(sum(x * x for x in t))
        terms.append(c2 * norm**2 + lam_c * max(0.0, tau_0 - norm) ** 2 + eta * (1 - _cos(t, c)))
    want = sum(terms) / 2  # sample 0: 0.25 + 0.5 * 2^2 + 0.008; sample 1: 0.64 + 0 + 0.4
    assert want == pytest.approx((0.25 + 2.0 + 0.2 * (1 - 0.96) + 0.64 + 0.4) / 2)
    got = L.tau_loss(torch.tensor(tau), torch.tensor(cond), tau_0, lam_c, eta, c2).item()
    assert got == pytest.approx(want)


def test_tau_rms_and_total():
    tau = torch.tensor([[1.0, -1.0], [3.0, 1.0]])
    assert L.tau_rms(tau).item() == pytest.approx(math.sqrt((1 + 1 + 9 + 1) / 4))
    one = lambda v: torch.tensor(float(v))  # noqa: E731
    total = L.total_loss(one(10), one(2), one(-2), one(4), 0.5, 0.25, 0.1, l_flow=one(3), w_flow=2.0)
    assert total.item() == pytest.approx(10 + 0.5 * 2 - 0.25 * 2 + 0.1 * 4 + 2 * 3)
    assert L.total_loss(one(1), one(1), one(1), one(1), 0, 0, 0).item() == pytest.approx(1.0)


def test_cosine_terms_compare_vectors_along_the_last_dimension():
    """[B, T, d] inputs: every term equals its value on the B * T vectors of length d."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    flat = lambda t: t.reshape(6, 4)  # noqa: E731
    assert L.time_consistency_loss(x, y).item() == pytest.approx(L.time_consistency_loss(flat(x), flat(y)).item())
    assert L.intent_loss(x, y).item() == pytest.approx(L.intent_loss(flat(x), flat(y)).item())
    assert L.tau_loss(x, y).item() == pytest.approx(L.tau_loss(flat(x), flat(y)).item())


def test_info_nce_normalises_with_eps_1e_8():
    """Vectors much shorter than COS_EPS are scaled by 1 / COS_EPS, not to unit length (the module's cos eps)."""
    a = torch.tensor([[1e-10, 0.0], [0.0, 1e-10]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    logits = torch.tensor([[1e-2, 0.0], [0.0, 1e-2]]) / 0.1  # a / COS_EPS = 1e-2 along each axis
    want = torch.nn.functional.cross_entropy(logits, torch.arange(2))
    assert L.info_nce(a, p, symmetric=False).item() == pytest.approx(want.item())
    assert L.info_nce(p, a, symmetric=False).item() == pytest.approx(want.item())


def test_loss_defaults_are_the_training_config_defaults():
    """Called without their keyword arguments, the loss terms use TrainingConfig's defaults (the paper's values)."""
    cfg = TrainingConfig()
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    actions = {"vec": r(10, 2), "chunk": r(10, 3, 2), "traj": r(10, 4, 2)}
    targets = {k: r(*v.shape) for k, v in actions.items()}
    got = L.traf_loss(actions, targets)
    want = L.traf_loss(actions, targets, (cfg.alpha_vec, cfg.alpha_chunk, cfg.alpha_traj), cfg.rho_hard,
                       cfg.lambda_hard)
    assert got.hard_index.tolist() == want.hard_index.tolist() and len(want.hard_index) == 3
    assert (got.l_act.item(), got.l_act_total.item()) == pytest.approx((want.l_act.item(), want.l_act_total.item()))
    z, m, f = r(4, 3), r(4, 3), r(4, 3)
    got = L.semantic_loss(z, m, f)
    want = L.semantic_loss(z, m, f, cfg.beta_mi, cfg.nce_temperature, cfg.time_loss)
    assert [x.item() for x in got] == pytest.approx([x.item() for x in want])
    assert L.info_nce(z, f).item() == pytest.approx(L.info_nce(z, f, cfg.nce_temperature, symmetric=True).item())
    tau, cond = 0.3 * r(4, 3), r(4, 3)  # ||tau|| < tau_0: the collapse hinge counts
    want = L.tau_loss(tau, cond, cfg.tau_0, cfg.lambda_collapse, cfg.eta_var, cfg.tau_l2_weight)
    assert L.tau_loss(tau, cond).item() == pytest.approx(want.item())
    one = lambda v: torch.tensor(float(v))  # noqa: E731
    got = L.total_loss(one(1), one(1), one(1), one(1), 0.0, 0.0, 0.0, l_flow=one(2))
    assert got.item() == pytest.approx(1.0 + cfg.flow_weight * 2.0)


def test_aux_loss_is_the_mean_squared_error():
    pred, target = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    got = L.aux_loss(pred, target)
    assert got.item() == pytest.approx((0 + 4 + 4 + 0) / 4) and got.dtype == torch.float32


def test_dataset_baseline_is_read_as_float32_on_the_residual_device():
    residual = torch.tensor([[0.25, -0.25]])
    out = SimpleNamespace(
        action_vector=residual, residual_vector=residual,
        action_chunk=torch.zeros(1, 1, 2), residual_chunk=torch.zeros(1, 1, 2),
        action_trajectory=torch.zeros(1, 1, 2), residual_trajectory=torch.zeros(1, 1, 2),
    )
    base = {"base_action_vector": torch.tensor([[1.0, 2.0]], dtype=torch.float64)}
    actions, _ = L.final_actions(out, base)
    assert actions["vec"].dtype == torch.float32 and actions["vec"].tolist() == [[1.25, 1.75]]


def test_mismatched_loss_inputs_are_clear_errors():
    a, b = torch.zeros(2, 3), torch.zeros(2, 4)
    for call, message in (
        (lambda: L.per_sample_mse(a, b), "prediction shape [2, 3] does not match target shape [2, 4]"),
        (lambda: L.time_consistency_loss(a, b), "z_pool [2, 3] and m_prev [2, 4] must have the same shape"),
        (lambda: L.time_consistency_loss(a, a, "l1"), "unknown time loss 'l1'; expected 'cos' or 'mse'"),
        (lambda: L.info_nce(a, b), "info_nce needs two [B,d] tensors of one shape, got [2, 3] and [2, 4]"),
        (lambda: L.info_nce(a[0], a[0]), "info_nce needs two [B,d] tensors of one shape, got [3] and [3]"),
        (lambda: L.intent_loss(a, b), "z_intent [2, 3] and memory [2, 4] must have the same shape"),
        (lambda: L.tau_loss(a, b), "tau [2, 3] and condition_tau [2, 4] must have the same shape"),
        (lambda: L.aux_loss(a, b), "aux_target has shape [2, 4], the aux head predicts [2, 3]"),
        (lambda: L.hard_count(0, 0.5), "batch must not be empty"),
        (lambda: L.hard_count(4, 1.5), "rho must be in (0, 1], got 1.5"),
    ):
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value) == message


# ---------------------------------------------------------------- curriculum
TABLE1_WEIGHTS = {  # step: (w_sem, w_int, w_tau) from the paper's Table 1
    0: (0.100, 0.100, 0.000), 10: (0.210, 0.185, 0.004), 20: (0.320, 0.271, 0.007), 30: (0.429, 0.356, 0.011),
    40: (0.539, 0.441, 0.015), 50: (0.649, 0.527, 0.018), 60: (0.759, 0.612, 0.022), 70: (0.868, 0.698, 0.026),
    80: (0.978, 0.783, 0.029), 90: (1.000, 0.800, 0.030), 100: (1.000, 0.800, 0.030), 130: (1.000, 0.800, 0.030),
}


def test_default_curriculum_reproduces_table1():
    curriculum = Curriculum.from_config(TrainingConfig())
    for step, (w_sem, w_int, w_tau) in TABLE1_WEIGHTS.items():
        w = curriculum(step)
        assert (round(w.w_sem, 3), round(w.w_int, 3), round(w.w_tau, 3)) == (w_sem, w_int, w_tau), step


def test_curriculum_linear_then_constant():
    c = Curriculum(0.0, 1.0, 1.0, 0.0, 0.2, 0.2, steps=4)
    assert [c(s).w_sem for s in range(7)] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert [c(s).w_int for s in range(6)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0, 0.0])  # may decrease
    assert {c(s).w_tau for s in range(6)} == {0.2}
    assert linear_ramp(0, 0.1, 0.9, 0) == 0.9  # zero-length ramp: target at once
    assert [linear_ramp(s, 0.1, 0.9, 1) for s in range(3)] == [0.1, 0.9, 0.9]  # one-step ramp: start, then target
    with pytest.raises(ValueError, match=r"step must be >= 0, got -1"):
        linear_ramp(-1, 0, 1, 5)


def test_curriculum_from_config_uses_its_ramp_length():
    short = Curriculum.from_config(TrainingConfig(curriculum_steps=10))
    assert short(5).w_sem == pytest.approx(0.55) and short(10).w_sem == pytest.approx(1.0)


def test_training_config_validation():
    cfg = TrainingConfig()
    assert cfg.lora_r == 16 and cfg.lora_target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert TrainingConfig.from_dict(cfg.to_dict()) == cfg
    for bad in (dict(rho_hard=0.0), dict(rho_hard=1.5), dict(batch_size=0), dict(optimizer="lion"),
                dict(scheduler="step"), dict(lambda_hard=-1.0), dict(warmup_steps=500, max_steps=10),
                dict(mixed_precision="fp8"), dict(learning_rate=float("nan")), dict(use_lora=False, train_heads=False),
                dict(load_in_4bit=True, use_lora=False), dict(lora_target_modules=()), dict(ema_decay=1.0),
                dict(ema_decay=-0.1)):
        with pytest.raises(ValueError):
            TrainingConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        TrainingConfig.from_dict({"nope": 1})
