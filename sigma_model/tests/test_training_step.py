# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The trainer's step (SigmaTrainer.train_step, compute_losses) against hand-derived expectations."""

from __future__ import annotations

import time

import pytest
import torch

from sigma_model import SigmaModel
from sigma_model.testing import make_observation, make_tau_matter_, small_config
from sigma_model.training import losses as L
from sigma_model.training.batching import SyntheticWindows, collate_samples, observation_from_batch
from sigma_model.training.checkpointing import list_checkpoints
from sigma_model.training.configuration_training import TrainingConfig
from sigma_model.training.curriculum import Curriculum
from sigma_model.training.trainer import SigmaTrainer, compute_losses


def trainer(tmp_path, name="run", **overrides) -> SigmaTrainer:
    values = dict(synthetic_samples=12, batch_size=3, max_steps=4, warmup_steps=0, learning_rate=1e-3,
                  output_dir=str(tmp_path / name), save_every=0, curriculum_steps=2, keep_checkpoints=0)
    values.update(overrides)
    return SigmaTrainer(TrainingConfig(**values), small_config(use_audio=False))


def test_grad_accumulation_counts_every_micro_batch(tmp_path):
    """Two micro-batches of 3 per step: 6 samples per step, the step counter and the lr before the scheduler's step.

    The metrics are the micro-batches' mean (the curriculum weights and the hard ratio are the same in both).
    """
    t = trainer(tmp_path, grad_accum_steps=2, warmup_steps=2, max_steps=4, rho_hard=0.3, w_sem_start=0.25)
    t0 = time.perf_counter()
    m0 = t.train_step()
    elapsed = time.perf_counter() - t0
    assert (m0["step"], m0["samples"], t.samples_seen, t.step) == (0, 6, 6, 1)
    assert m0["lr"] == pytest.approx(0.5e-3)  # warmup: (step + 1) / warmup_steps of the peak
    assert m0["samples_per_s"] >= 6 / elapsed  # the step's own time is within the call's
    weights = t.curriculum(0)
    assert (m0["w_sem"], m0["w_int"], m0["w_tau"]) == pytest.approx((weights.w_sem, weights.w_int, weights.w_tau))
    assert m0["w_sem"] == pytest.approx(0.25)
    assert m0["hard_ratio"] == pytest.approx(1 / 3)  # ceil(0.3 * 3) = 1 of 3 in each micro-batch
    m1 = t.train_step()
    assert (m1["step"], m1["samples"], t.step) == (1, 12, 2)
    assert m1["lr"] == pytest.approx(1e-3)
    assert t.last_metrics is m1
    m2 = t.train_step()
    assert (m0["epoch"], m1["epoch"], m2["epoch"]) == (0, 0, 1)  # 12 samples per epoch: the third step starts epoch 1


def grad_norm(model) -> float:
    norms = [p.grad.norm() for p in model.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms)))


def test_grad_norm_is_the_norm_before_clipping(tmp_path):
    """Without clipping the step's gradients have the reported norm; with clipping they are cut to max_grad_norm."""
    free = trainer(tmp_path, "free", max_grad_norm=0.0)
    m = free.train_step()
    assert m["grad_norm"] == pytest.approx(grad_norm(free.model), rel=1e-5)
    clipped = trainer(tmp_path, "clipped", max_grad_norm=1e-3)
    m = clipped.train_step()
    assert m["grad_norm"] > 1e-2
    assert grad_norm(clipped.model) == pytest.approx(1e-3, rel=1e-3)


def test_a_non_finite_loss_stops_the_step(tmp_path):
    """Targets of 1e30 overflow the float32 action MSE to inf: the step raises before any update."""
    mc = small_config(use_audio=False)
    data = SyntheticWindows(mc, 6)
    samples = [dict(data[i], gt_action_vector=data[i]["gt_action_vector"] * 1e30) for i in range(6)]
    cfg = TrainingConfig(batch_size=3, max_steps=2, warmup_steps=0, output_dir=str(tmp_path / "run"), save_every=0)
    t = SigmaTrainer(cfg, mc, dataset=samples)
    before = [p.detach().clone() for p in t.model.parameters()]
    with pytest.raises(FloatingPointError, match=r"^non-finite loss at step 0: \{'loss': inf"):
        t.train_step()
    assert t.step == 0 and all(torch.equal(a, p) for a, p in zip(before, t.model.parameters()))


METRICS = {"loss", "L_act", "L_sem", "L_int", "L_tau", "L_act_hard", "w_sem", "w_int", "w_tau", "hard_ratio", "tau_rms",
           "L_act_base", "L_flow", "L_aux", "L_time", "L_mi", "mse_vec", "mse_chk", "mse_trj", "baseline_from_data",
           "prev_window", "telepathy"}


def batch_of(mc, n=6, **kw):
    data = SyntheticWindows(mc, n, seed=5, **kw)
    return collate_samples([data[i] for i in range(n)])


def step_config(tmp_path, **overrides) -> TrainingConfig:
    values = dict(output_dir=str(tmp_path / "run"), alpha_vec=1.0, alpha_chunk=2.0, alpha_traj=3.0, rho_hard=0.5,
                  lambda_hard=0.7, beta_mi=0.3, flow_weight=0.4)
    values.update(overrides)
    return TrainingConfig(**values)


@torch.no_grad()
def test_compute_losses_metrics_by_hand(tmp_path):
    """An untrained model's residual is zero, so over a dataset baseline (0.8 x the target) every action MSE is known.

    TRAF with alphas (1, 2, 3), rho 0.5 (3 hard of 6), lambda_hard 0.7; the total with the step's weights.
    """
    mc = small_config(use_audio=False)
    torch.manual_seed(0)
    model = SigmaModel(mc).eval()
    batch = batch_of(mc, with_baseline=True, with_previous=True)
    batch["has_previous"] = torch.tensor([True, False, True, True, False, False])
    weights = Curriculum.from_config(step_config(tmp_path, curriculum_steps=4))(1)
    m = compute_losses(model, batch, step_config(tmp_path, curriculum_steps=4), weights,
                       torch.Generator().manual_seed(0)).metrics
    assert set(m) == METRICS
    per = [(0.2 * batch[k]).square().flatten(1).mean(1) for k in ("gt_action_vector", "gt_action_chunk",
                                                                  "gt_action_trajectory")]
    assert [m["mse_vec"], m["mse_chk"], m["mse_trj"]] == pytest.approx([float(p.mean()) for p in per], rel=1e-5)
    base = m["mse_vec"] + 2 * m["mse_chk"] + 3 * m["mse_trj"]
    hard = (per[0] + per[1] + per[2]).topk(3).indices
    l_hard = float(per[0][hard].mean() + 2 * per[1][hard].mean() + 3 * per[2][hard].mean())
    assert (m["L_act_base"], m["L_act_hard"], m["L_act"]) == pytest.approx((base, l_hard, base + 0.7 * l_hard),
                                                                           rel=1e-5)
    assert (m["hard_ratio"], m["baseline_from_data"], m["prev_window"], m["L_aux"], m["telepathy"]) == \
        (0.5, 1.0, 0.5, 0.0, 1.0)
    assert (m["w_sem"], m["w_int"], m["w_tau"]) == (weights.w_sem, weights.w_int, weights.w_tau)
    assert m["L_sem"] == pytest.approx(m["L_time"] + 0.3 * m["L_mi"], rel=1e-5)
    assert m["loss"] == pytest.approx(m["L_act"] + 0.4 * m["L_flow"] + m["w_sem"] * m["L_sem"] + m["w_int"] * m["L_int"]
                                      + m["w_tau"] * m["L_tau"], rel=1e-5)
    assert m["L_flow"] > 0 and m["tau_rms"] > 0 and m["L_mi"] > 0
    # without the dataset baseline the model's own actions count: other errors, no data baseline
    own = compute_losses(model, batch, step_config(tmp_path, use_dataset_baseline=False), weights,
                         torch.Generator().manual_seed(0)).metrics
    # telepathy off: the residual is exactly zero even where tau matters, so the actions are the data baseline's
    make_tau_matter_(model, seed=3)
    off = compute_losses(model, batch, step_config(tmp_path, telepathy=False), weights, None).metrics
    on = compute_losses(model, batch, step_config(tmp_path), weights, None).metrics
    assert off["mse_vec"] == pytest.approx(m["mse_vec"], rel=1e-6) and on["mse_vec"] != pytest.approx(m["mse_vec"])
    assert own["baseline_from_data"] == 0.0 and own["mse_vec"] != pytest.approx(m["mse_vec"], rel=1e-3)
    no_prev = {k: v for k, v in batch.items() if k != "has_previous"}
    assert compute_losses(model, no_prev, step_config(tmp_path), weights, None).metrics["prev_window"] == 0.0


@torch.no_grad()
def test_compute_losses_first_pass_gives_tau_prev_and_m_prev(tmp_path):
    """two_pass: the previous window's tau (vision) and memory (L_time's m_prev) feed the step; zeros: m_prev = 0.

    L_time = 1 - cos(z_pool, m_prev) is exactly 1 against m_prev = 0.
    """
    mc = small_config(use_audio=False)
    torch.manual_seed(0)
    model = make_tau_matter_(SigmaModel(mc).eval(), seed=3)
    batch = batch_of(mc)  # previous windows far from the current ones: other samples'
    batch.update(prev_vision_inputs=batch["vision_inputs"].flip(0), prev_robot_state=batch["robot_state"].flip(0))
    weights = Curriculum.from_config(step_config(tmp_path))(0)
    cfg = step_config(tmp_path, tau_0=0.7, lambda_collapse=0.3, eta_var=0.2, tau_l2_weight=0.05)
    m = compute_losses(model, batch, cfg, weights, torch.Generator().manual_seed(0)).metrics
    obs = observation_from_batch(batch, mc, torch.device("cpu"))
    prev = observation_from_batch(batch, mc, torch.device("cpu"), prefix="prev_")
    text = model.tokenize(batch["text"])
    v0 = model.vision_stage(prev, None)
    l0 = model.language_stage(text, v0.vision_tokens, v0.state_tokens, None, robot_state=prev.robot_state,
                              with_actions=False)
    out = model(obs, text, tau_prev=l0.tau, memory_prev=l0.memory, generator=torch.Generator().manual_seed(0),
                trajectory_target=batch["gt_action_trajectory"])
    assert m["tau_rms"] == pytest.approx(float(L.tau_rms(out.language.tau)), rel=1e-6)
    assert m["L_time"] == pytest.approx(float(L.time_consistency_loss(out.language.z_sem_pool, l0.memory)), rel=1e-5)
    assert m["L_int"] == pytest.approx(float(L.intent_loss(out.language.z_intent, out.language.memory)), rel=1e-5)
    l_tau = L.tau_loss(out.language.tau, out.action.condition_tau, 0.7, 0.3, 0.2, 0.05)
    assert m["L_tau"] == pytest.approx(float(l_tau), rel=1e-5)
    # the same batch without the previous window runs the first pass on the window itself
    same = dict(batch, prev_vision_inputs=batch["vision_inputs"], prev_robot_state=batch["robot_state"])
    own = {k: v for k, v in batch.items() if not k.startswith("prev_")}
    assert compute_losses(model, own, cfg, weights, None).metrics["L_time"] == pytest.approx(
        compute_losses(model, same, cfg, weights, None).metrics["L_time"], rel=1e-6)
    assert compute_losses(model, own, cfg, weights, None).metrics["L_time"] != pytest.approx(m["L_time"], rel=1e-3)
    mse = compute_losses(model, batch, step_config(tmp_path, time_loss="mse"), weights,
                         torch.Generator().manual_seed(0)).metrics
    assert mse["L_time"] == pytest.approx(float(L.time_consistency_loss(out.language.z_sem_pool, l0.memory, "mse")),
                                          rel=1e-5)
    zeros = compute_losses(model, batch, step_config(tmp_path, memory_mode="zeros"), weights, None).metrics
    assert zeros["L_time"] == pytest.approx(1.0, abs=1e-6)
    assert zeros["tau_rms"] != pytest.approx(m["tau_rms"], rel=1e-4)  # no tau_prev: another vision step


@torch.no_grad()
def test_compute_losses_first_pass_reads_the_previous_window_prefix_of_a_vla(smolvla_dir, tmp_path):
    """With a VLA backbone the first pass reads the previous window's image tokens and robot state (its prefix)."""
    mc = small_config(backbone="smolvla", backbone_path=str(smolvla_dir), use_audio=False)
    torch.manual_seed(0)
    model = make_tau_matter_(SigmaModel(mc).eval(), seed=3)
    batch = batch_of(mc, n=2)
    batch.update(prev_vision_inputs=batch["vision_inputs"].flip(0), prev_robot_state=batch["robot_state"].flip(0) + 1)
    cfg = step_config(tmp_path)
    weights = Curriculum.from_config(cfg)(0)
    rng = torch.get_rng_state()
    m = compute_losses(model, batch, cfg, weights, torch.Generator().manual_seed(0)).metrics
    assert torch.equal(torch.get_rng_state(), rng)  # the first pass samples no chunk (with_actions=False)
    obs = observation_from_batch(batch, mc, torch.device("cpu"))
    prev = observation_from_batch(batch, mc, torch.device("cpu"), prefix="prev_")
    text = model.tokenize(batch["text"])
    v0 = model.vision_stage(prev, None)
    l0 = model.language_stage(text, v0.vision_tokens, v0.state_tokens, None, image_tokens=v0.backbone_image_tokens,
                              robot_state=prev.robot_state, with_actions=False)
    out = model(obs, text, tau_prev=l0.tau, memory_prev=l0.memory, generator=torch.Generator().manual_seed(0),
                trajectory_target=batch["gt_action_trajectory"])
    assert m["L_time"] == pytest.approx(float(L.time_consistency_loss(out.language.z_sem_pool, l0.memory)), rel=1e-5)
    assert m["tau_rms"] == pytest.approx(float(L.tau_rms(out.language.tau)), rel=1e-5)
    assert m["L_flow"] == 0.0  # the VLA's chunk is the baseline: no DiT, no flow loss
    # the VLA samples its chunk (the baseline) with the step's generator
    assert m["mse_vec"] == pytest.approx(float(L.per_sample_mse(out.action.action_vector,
                                                                batch["gt_action_vector"]).mean()), rel=1e-5)
    own_state = dict(batch, prev_robot_state=batch["robot_state"].flip(0))
    assert compute_losses(model, own_state, cfg, weights, None).metrics["L_time"] != pytest.approx(m["L_time"],
                                                                                                  rel=1e-4)


def test_grad_accumulation_averages_the_micro_batch_gradients(tmp_path):
    """Two identical micro-batches give the gradient of one (not twice or four times it).

    A nearly deterministic step: one batch of 3 samples repeated (no shuffle), no flow loss, no trajectory MSE, every
    sample hard (rho = 1), no dropout (the diffusion noise still differs between the micro-batches: 2e-4 of the norm);
    the norm is read before clipping.
    """
    mc = small_config(use_audio=False)
    kw = dict(synthetic_samples=3, batch_size=3, shuffle=False, drop_last=False, flow_weight=0.0, alpha_traj=0.0,
              rho_hard=1.0, max_grad_norm=1e-6, warmup_steps=0)
    torch.manual_seed(0)
    one = SigmaTrainer(TrainingConfig(output_dir=str(tmp_path / "one"), **kw), mc).train_step()
    torch.manual_seed(0)
    two = SigmaTrainer(TrainingConfig(output_dir=str(tmp_path / "two"), grad_accum_steps=2, **kw), mc).train_step()
    assert two["samples"] == 6
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-3)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-3)


def test_the_step_draws_its_noise_from_the_trainer_generator(tmp_path):
    """The diffusion noise of a step comes from the trainer's generator (saved in checkpoints), not the global RNG."""
    t = trainer(tmp_path)
    before = t.generator.get_state().clone()
    t.train_step()
    assert not torch.equal(t.generator.get_state(), before)


def test_bf16_autocast_runs_the_step_in_bf16(tmp_path):
    """mixed_precision=bf16 runs the step under CPU autocast: the same weights and data give a (slightly) other loss."""
    torch.manual_seed(0)
    fp32 = trainer(tmp_path, "fp32", mixed_precision="no").train_step()
    torch.manual_seed(0)
    bf16 = trainer(tmp_path, "bf16", mixed_precision="bf16").train_step()
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.1)
    assert bf16["loss"] != pytest.approx(fp32["loss"], rel=1e-5)


def test_an_interrupt_during_the_update_writes_no_checkpoint(tmp_path, caplog):
    """Ctrl-C right after the optimiser changed the weights: the step is half applied, so no checkpoint is saved.

    One finished, unsaved step first: an interrupt anywhere else would save it.
    """
    t = trainer(tmp_path)
    t.train_step()

    def interrupt(optimizer, args, kwargs):
        raise KeyboardInterrupt

    t.optimizer.register_step_post_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        t.train()
    assert list_checkpoints(t.checkpoint_root) == [] and t.step == 1
    assert "interrupted during the optimiser update: not saving" in caplog.text

def test_a_head_without_a_loss_in_a_step_is_not_moved(tmp_path):
    """A step whose batch has no aux_target leaves the auxiliary head as the previous step left it.

    Its gradients are freed (None) at each step, so AdamW skips it; zeroed gradients would let momentum and weight decay
    move it. The head is training-only: only the loss runs it (once per step with a target: not in the two-pass
    memory's first pass), and an inference step (`select_action`) never does.
    """
    mc = small_config(use_audio=False, aux_target_dim=1)
    data = SyntheticWindows(mc, 6)
    samples = [dict(data[i], aux_target=torch.tensor([0.5])) if i < 3 else data[i] for i in range(6)]
    cfg = TrainingConfig(batch_size=3, max_steps=2, warmup_steps=0, shuffle=False, drop_last=False, weight_decay=0.1,
                         output_dir=str(tmp_path / "run"), save_every=0)
    t = SigmaTrainer(cfg, mc, dataset=samples)
    head = dict(t.model.vision.aux_head.named_parameters())
    calls = []
    t.model.vision.aux_head.register_forward_hook(lambda *_: calls.append(1))
    before = {n: p.detach().clone() for n, p in head.items()}
    assert t.train_step()["L_aux"] > 0 and len(calls) == 1
    after_first = {n: p.detach().clone() for n, p in head.items()}
    assert any(not torch.equal(before[n], after_first[n]) for n in head)  # the first step trains it
    assert t.train_step()["L_aux"] == 0.0 and len(calls) == 1
    assert all(torch.equal(after_first[n], p) for n, p in head.items())
    t.model.eval().select_action(make_observation(mc, 1), ["pick"])
    assert len(calls) == 1


@torch.no_grad()
def test_telepathy_dropout_runs_whole_batches_at_tau_zero_in_training_only(tmp_path):
    """A dropped batch is the telepathy-off step (tau = 0 everywhere); eval mode and dropout 0 never drop nor draw."""
    mc = small_config(use_audio=False)
    torch.manual_seed(0)
    model = make_tau_matter_(SigmaModel(mc), seed=3)
    batch = batch_of(mc, with_previous=True)
    weights = Curriculum.from_config(step_config(tmp_path))(1)

    def losses(train: bool, seed: int = 0, skip: int = 0, **overrides):
        model.train(train)
        generator = torch.Generator().manual_seed(seed)
        torch.rand(skip, generator=generator)
        return compute_losses(model, batch, step_config(tmp_path, **overrides), weights, generator).metrics

    on, off = losses(False), losses(False, telepathy=False)
    assert on["mse_trj"] != pytest.approx(off["mse_trj"], rel=1e-3)  # tau matters in this model
    dropped = losses(True, telepathy_dropout=1.0)
    assert dropped == losses(True, skip=1, telepathy=False) and dropped["telepathy"] == 0.0  # after its one draw
    assert losses(False, telepathy_dropout=1.0) == on  # eval mode: no dropout
    # p = 0 leaves the noise sequence alone; p > 0 draws once per batch from the trainer's generator, first
    states = []
    for train in (True, False):
        model.train(train)
        generator = torch.Generator().manual_seed(0)
        compute_losses(model, batch, step_config(tmp_path), weights, generator)
        states.append(generator.get_state())
    assert torch.equal(*states) and losses(True)["telepathy"] == 1.0
    draws = [losses(True, seed=s, telepathy_dropout=0.5)["telepathy"] for s in range(40)]
    assert draws == [float(torch.rand((), generator=torch.Generator().manual_seed(s)) >= 0.5) for s in range(40)]
    assert 10 < sum(draws) < 30


@pytest.mark.parametrize("bad", [{"telepathy_dropout": -0.1}, {"telepathy_dropout": 1.5},
                                 {"telepathy_dropout": float("nan")},
                                 {"telepathy_dropout": 0.5, "telepathy": False}])
def test_telepathy_dropout_is_checked(tmp_path, bad):
    with pytest.raises(ValueError, match="telepathy_dropout"):
        step_config(tmp_path, **bad)
