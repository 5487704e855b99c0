# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Offline replay's parts and results against hand-computed values: records, observations, episode state, replay()."""

from __future__ import annotations

import re
import time

import pytest
import torch

from sigma_model import SigmaModel
from sigma_model.evaluation.adapter import AdapterConfig, RiskGatedAdapter
from sigma_model.evaluation.replay import (
    EpisodeState, ReplayConfig, batch_record, episode_batches, iterate_batches, observation_from_batch, per_sample_mse,
    replay, text_embedding,
)
from sigma_model.evaluation.report import DEFAULT_THRESHOLDS
from sigma_model.testing import make_tau_matter_, small_config
from sigma_model.training.batching import SyntheticWindows, collate_samples, prepare_image
from test_eval_replay import _episodes


def test_batch_record_by_hand():
    """Three samples; per-sample MSEs vec (0, 1, 4), chunk (1, 0, 0), traj (0, 0, 9) against zero targets."""
    vec = torch.tensor([[0.0, 0.0], [1.0, -1.0], [2.0, 2.0]])
    chunk = torch.tensor([[[1.0, 1.0]], [[0.0, 0.0]], [[0.0, 0.0]]])
    traj = torch.tensor([[[0.0, 0.0]], [[0.0, 0.0]], [[3.0, -3.0]]])
    acts = (vec, chunk, traj)
    targets = tuple(torch.zeros_like(a) for a in acts)
    rec = batch_record("sigma", 7, acts, targets, torch.tensor([1.0, 2.0, 6.0]), torch.tensor([0.5, 0.0, 1.0]),
                       {"vec": 1.0, "chunk": 0.5, "traj": 8.0}, {"vec": 1.0, "chunk": 0.0, "traj": 9.0})
    # hard: vec > 1 (sample 2), chunk > 0.5 (sample 0), traj > 8 (sample 2) -> samples 0 and 2
    # within thresholds: vec <= 1 (0, 1), chunk <= 0 (1, 2), traj <= 9 (all) -> sample 1
    assert rec == {
        "condition": "sigma", "batch": 7, "num_samples": 3,
        "mse_vec": pytest.approx(5 / 3), "mse_chk": pytest.approx(1 / 3), "mse_trj": pytest.approx(3.0),
        "tau_l2": pytest.approx(3.0), "sem_align": pytest.approx(0.5), "num_hard": 2,
        "hard_mse_vec": pytest.approx(2.0), "hard_mse_chk": pytest.approx(0.5), "hard_mse_trj": pytest.approx(4.5),
        "num_within_thresholds": 1,
    }


def test_batch_record_without_tau_alignment_success_or_hard_samples():
    acts = (torch.ones(2, 2), torch.ones(2, 1, 2), torch.ones(2, 1, 2))
    rec = batch_record("baseline", 0, acts, acts, None, None, {"vec": 0.0, "chunk": 0.0, "traj": 0.0})
    assert rec["tau_l2"] is None and rec["sem_align"] is None
    assert rec["num_hard"] == 0  # every MSE is 0, and a hard sample needs MSE > threshold
    assert rec["hard_mse_vec"] is None and rec["hard_mse_chk"] is None and rec["hard_mse_trj"] is None
    assert "num_within_thresholds" not in rec


def test_observation_from_batch_by_hand(config):
    """The first frame of a window, images as the trainer prepares them, robot_state padded or cut to state_dim."""
    s = config.state_dim
    image = torch.full((2, 2, config.image_channels, 16, 16), 51, dtype=torch.uint8)  # [B,T,C,H,W], 16 px
    image[:, 1] = 255  # the second frame is not the observation
    state = torch.arange(2 * 2 * (s - 2), dtype=torch.float64).reshape(2, 2, s - 2)  # [B,T,S-2]
    audio = torch.ones(2, config.audio_chunk_samples, dtype=torch.float64)
    obs, corrected = observation_from_batch({"vision_inputs": image, "robot_state": state, "audio": audio},
                                            config, torch.device("cpu"))
    assert corrected
    assert obs.image.shape == (2, config.image_channels, config.image_size, config.image_size)
    torch.testing.assert_close(obs.image, torch.full_like(obs.image, 0.2))  # 51 / 255, resized, constant
    assert obs.robot_state.dtype == torch.float32
    assert torch.equal(obs.robot_state, torch.cat([state[:, 0].float(), torch.zeros(2, 2)], dim=1))
    assert obs.audio.dtype == torch.float32 and torch.equal(obs.audio, torch.ones(2, config.audio_chunk_samples))
    # the trainer's own reading of an image batch is the same
    trainer_image = prepare_image(image, config)
    assert torch.equal(obs.image, trainer_image)
    # longer states are cut (corrected), exact ones kept (not corrected), no audio is None
    long_state = torch.arange(2 * (s + 3), dtype=torch.float32).reshape(2, s + 3)
    obs, corrected = observation_from_batch({"vision_inputs": image[:, 0], "robot_state": long_state}, config,
                                            torch.device("cpu"))
    assert corrected and torch.equal(obs.robot_state, long_state[:, :s]) and obs.audio is None
    obs, corrected = observation_from_batch({"vision_inputs": image[:, 0], "robot_state": long_state[:, :s]},
                                            config, torch.device("cpu"))
    assert not corrected and torch.equal(obs.robot_state, long_state[:, :s])
    with pytest.raises(ValueError, match=re.escape(f"robot_state must be [B,S] (or [B,T,S]), got [2, 1, 1, {s}]")):
        observation_from_batch({"vision_inputs": image[:, 0], "robot_state": long_state[:, None, None, :s]},
                               config, torch.device("cpu"))


def test_episode_state_carries_each_episode_and_checks_the_order():
    st = EpisodeState(d_tau=2, d_model=3)
    assert EpisodeState.keys({"episode_index": torch.tensor([0])}) is None  # no frame_index: nothing to carry
    assert EpisodeState.keys({"frame_index": torch.tensor([0])}) is None
    assert EpisodeState.keys({"episode_index": torch.tensor([[4], [5]]), "frame_index": torch.tensor([1, 2])}) == [
        (4, 1), (5, 2)]
    keys, texts = [(0, 0), (1, 0)], ["a", "b"]
    tau, memory, carried = st.previous(keys, texts, "cpu")
    assert carried == 0 and torch.equal(tau, torch.zeros(2, 2)) and torch.equal(memory, torch.zeros(2, 3))
    st.update(keys, texts, torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]))
    # episode 1 changes its instruction: its tau is carried, its memory starts from zero
    tau, memory, carried = st.previous([(2, 0), (1, 3), (0, 1)], ["c", "new", "a"], "cpu")
    assert carried == 2
    assert torch.equal(tau, torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 2.0]]))
    assert torch.equal(memory, torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match=re.escape(
            "episode 0: window at frame 0 replayed after frame 0; the windows of an episode must come in frame order")):
        st.previous([(0, 0)], ["a"], "cpu")  # the same frame again is out of order too
    with pytest.raises(ValueError, match=re.escape(
            "a batch holds two windows of episode 1: batch the windows with episode_batches so each window follows "
            "its predecessor")):
        st.previous([(1, 5), (1, 6)], ["b", "b"], "cpu")


# ----------------------------------------------------------------------------- replay()
def _batches(config, sizes=(4, 4, 2), seed=0, **kw):
    ds = SyntheticWindows(config, sum(sizes), seed=seed, **kw)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [collate_samples([ds[i] for i in range(s, s + n)]) for s, n in zip(starts, sizes)]


@torch.no_grad()
def test_replay_result_counts_labels_and_time(model, config):
    batches = _batches(config)
    seen: list[int] = []
    t0 = time.perf_counter()
    res = replay(model, batches, ReplayConfig(conditions=("sigma", "baseline")), progress=seen.append)
    elapsed = time.perf_counter() - t0
    assert (res.num_samples, res.num_batches, seen) == (10, 3, [4, 4, 2])
    assert 0 < res.seconds <= elapsed
    assert res.baseline_source == "tau0" and res.state_dim_corrected is False
    assert [(r["condition"], r["batch"], r["num_samples"]) for r in res.records] == [
        ("sigma", 0, 4), ("baseline", 0, 4), ("sigma", 1, 4), ("baseline", 1, 4), ("sigma", 2, 2), ("baseline", 2, 2)]
    assert res.condition_info == {
        "sigma": {"telepathy": True, "adapter": False, "label": "Sigma (telepathy on)"},
        "baseline": {"telepathy": False, "adapter": False, "label": "baseline (tau0)", "source": "tau0",
                     "description": "the model with telepathy off: tau = 0 in vision, language and action"},
    }
    assert res.recurrence["carry_state"] is True
    assert res.recurrence["rule"] == ("tau_prev and m_{t-1} from the episode's previous window; zero at its first "
                                      "window, m_{t-1} also at a new instruction; telepathy off: tau_prev = 0")
    assert (res.recurrence["episodes"], res.recurrence["windows_with_carried_state"]) == (0, 0)  # no episode keys
    # the baseline first: every condition after it is still recorded
    first = replay(model, batches[:1], ReplayConfig(conditions=("baseline", "sigma")))
    assert first.records == [res.records[1], res.records[0]]
    # the telepathy-off adapter alone still gets its tau = 0 pass
    full = replay(model, batches[:1], ReplayConfig(conditions=("sigma", "telepathy_off_adapter")))
    alone = replay(model, batches[:1], ReplayConfig(conditions=("telepathy_off_adapter",)))
    assert alone.records == full.records[1:]
    short = replay(model, batches, ReplayConfig(conditions=("sigma",), max_batches=2))
    assert (short.num_samples, short.num_batches) == (8, 2)
    assert short.records == res.records[0:1] + res.records[2:3]
    # a robot_state shorter than the model's is padded, and the result says so (one batch is enough)
    cut = [dict(batches[0], robot_state=batches[0]["robot_state"][..., :-1]), *batches[1:]]
    assert replay(model, cut, ReplayConfig(conditions=("sigma",))).state_dim_corrected is True


def test_replay_refuses_a_batch_without_the_baseline_the_first_ones_had(model, config):
    first, second = _batches(config, sizes=(2, 2), with_baseline=True)
    second = {k: v for k, v in second.items() if not k.startswith("base_action_")}
    with pytest.raises(ValueError, match=re.escape(
            "batch 1 lacks ['base_action_vector', 'base_action_chunk', 'base_action_trajectory'] but earlier batches "
            "had them")):
        replay(model, [first, second], ReplayConfig(conditions=("sigma", "baseline")))


def test_replay_refuses_a_model_without_every_workspace(config):
    vision_only = SigmaModel(config, workspaces=("vision",))
    with pytest.raises(ValueError, match=re.escape(
            "replay needs a model with all workspaces; this one lacks ['language', 'action']")):
        replay(vision_only, _batches(config))
    with pytest.raises(ValueError, match="^nothing to replay: the dataset gave no batches$"):
        replay(SigmaModel(config), [])


@torch.no_grad()
def test_replay_records_by_hand(config):
    """Batch i samples its trajectory with torch.Generator().manual_seed(seed * 1_000_003 + i).

    tau_l2 is the mean L2 norm of the step's tau, sem_align the mean cosine of z_sem_pool with the instruction's
    embedding.
    """
    torch.manual_seed(0)
    model = make_tau_matter_(SigmaModel(config).eval(), seed=1)
    batches = _batches(config)
    res = replay(model, batches, ReplayConfig(conditions=("sigma",), seed=2))
    for index, batch in enumerate(batches):
        obs, _ = observation_from_batch(batch, config, torch.device("cpu"))
        tokens = model.tokenize(list(batch["text"]))
        out = model(obs, tokens, generator=torch.Generator().manual_seed(2 * 1_000_003 + index))
        rec = res.records[index]
        want = float(per_sample_mse(out.action.action_trajectory, batch["gt_action_trajectory"]).mean())
        assert rec["mse_trj"] == pytest.approx(want, rel=1e-6), index
        tau = out.language.tau
        assert rec["tau_l2"] == pytest.approx(float(tau.square().sum(1).sqrt().mean()), rel=1e-5)
        cos = torch.nn.functional.cosine_similarity(out.language.z_sem_pool, text_embedding(model, tokens), dim=1)
        assert rec["sem_align"] == pytest.approx(float(cos.mean()), rel=1e-5)
        within = torch.ones(len(batch["text"]), dtype=torch.bool)
        a = out.action
        for key, name, pred in (("vec", "vector", a.action_vector), ("chunk", "chunk", a.action_chunk),
                                ("traj", "trajectory", a.action_trajectory)):
            within &= per_sample_mse(pred, batch[f"gt_action_{name}"]) <= DEFAULT_THRESHOLDS[key]
        assert rec["num_within_thresholds"] == int(within.sum())
    other = replay(model, batches, ReplayConfig(conditions=("sigma",), seed=3))
    assert other.records[0]["mse_trj"] != pytest.approx(res.records[0]["mse_trj"], rel=1e-6)


@torch.no_grad()
def test_baseline_checkpoint_records_by_hand(config):
    """The separate baseline's tau_l2 / sem_align are its own telepathy-off step's; a shape mismatch is refused."""
    torch.manual_seed(0)
    model = SigmaModel(config).eval()
    torch.manual_seed(1)
    other = make_tau_matter_(SigmaModel(config).eval(), seed=6)
    batches = _batches(config, sizes=(3,))
    res = replay(model, batches, ReplayConfig(conditions=("baseline",), seed=1), baseline_model=other)
    obs, _ = observation_from_batch(batches[0], config, torch.device("cpu"))
    tokens = other.tokenize(list(batches[0]["text"]))
    out = other(obs, tokens, telepathy=False, generator=torch.Generator().manual_seed(1_000_003))
    (rec,) = res.records
    assert res.condition_info["baseline"]["description"] == "separate baseline checkpoint, telepathy off"
    assert rec["mse_trj"] == pytest.approx(
        float(per_sample_mse(out.action.action_trajectory, batches[0]["gt_action_trajectory"]).mean()), rel=1e-6)
    assert rec["tau_l2"] == pytest.approx(float(out.language.tau.square().sum(1).sqrt().mean()), rel=1e-5)
    cos = torch.nn.functional.cosine_similarity(out.language.z_sem_pool, text_embedding(other, tokens), dim=1)
    assert rec["sem_align"] == pytest.approx(float(cos.mean()), rel=1e-5)
    short = SigmaModel(small_config(chunk_len=config.chunk_len - 1)).eval()
    a = config.action_dim
    with pytest.raises(ValueError, match=re.escape(
            f"baseline model predicts gt_action_chunk [3, {config.chunk_len - 1}, {a}], "
            f"the data has [3, {config.chunk_len}, {a}]")):
        replay(model, batches, ReplayConfig(conditions=("baseline",)), baseline_model=short)


@torch.no_grad()
def test_baseline_checkpoint_carries_its_own_state_through_episodes(config):
    """A separate baseline model runs telepathy off with its own carried tau and memory, exactly as it would alone."""
    torch.manual_seed(0)
    model = make_tau_matter_(SigmaModel(config).eval(), seed=4)
    torch.manual_seed(1)
    other = make_tau_matter_(SigmaModel(config).eval(), seed=6)
    samples = _episodes(config)
    plan = episode_batches(samples, 2)
    with_base = replay(model, iterate_batches(samples, plan), ReplayConfig(conditions=("baseline",)),
                       baseline_model=other)
    alone = replay(other, iterate_batches(samples, plan), ReplayConfig(conditions=("telepathy_off",)))
    assert with_base.baseline_source == "checkpoint"
    keys = ("mse_vec", "mse_chk", "mse_trj", "num_hard")  # tau_l2 / sem_align: the off pass's vs the on pass's
    assert [[r[k] for k in keys] for r in with_base.records] == [[r[k] for k in keys] for r in alone.records]
    assert with_base.recurrence["windows_with_carried_state"] == len(samples) - 3
    # its tau_l2 is that of its own telepathy-off step with the episode's memory (tau reads m_t), by hand
    plan = episode_batches(samples, 1)
    res = replay(model, iterate_batches(samples, plan), ReplayConfig(conditions=("baseline",), seed=1),
                 baseline_model=other)
    memory: dict[int, tuple[str, torch.Tensor]] = {}
    moved = 0.0  # the test has power: the carried memory changes tau
    for index, ((i,),) in enumerate(zip(plan)):
        batch = collate_samples([samples[i]])
        episode, text = int(samples[i]["episode_index"]), samples[i]["text"]
        prev = memory.get(episode)
        obs, _ = observation_from_batch(batch, config, torch.device("cpu"))
        out = other(obs, other.tokenize([text]), memory_prev=prev[1] if prev and prev[0] == text else None,
                    telepathy=False, generator=torch.Generator().manual_seed(1_000_003 + index))
        memory[episode] = (text, out.language.memory)
        assert res.records[index]["tau_l2"] == pytest.approx(float(out.language.tau.norm()), rel=1e-5), index
        fresh = other(obs, other.tokenize([text]), telepathy=False, generator=torch.Generator().manual_seed(0))
        moved = max(moved, abs(float(fresh.language.tau.norm()) - res.records[index]["tau_l2"]))
    assert moved > 1e-3


@torch.no_grad()
def test_adapter_records_by_hand(config):
    """The adapter blends the step's actions toward the baseline, and its means are recorded.

    The baseline: the data's, the tau = 0 pass's, or without that pass the action branch's own; the record holds the
    mean scale, risk, fallback fraction and residual ratio.
    """
    torch.manual_seed(0)
    model = make_tau_matter_(SigmaModel(config).eval(), seed=1)
    adapter = RiskGatedAdapter(AdapterConfig(k=0.3))
    (data_batch,) = _batches(config, sizes=(3,), with_baseline=True)
    plain = {k: v for k, v in data_batch.items() if not k.startswith("base_action_")}
    obs, _ = observation_from_batch(data_batch, config, torch.device("cpu"))
    tokens = model.tokenize(list(data_batch["text"]))
    on = model(obs, tokens, generator=torch.Generator().manual_seed(0))
    off = model(obs, tokens, telepathy=False, generator=torch.Generator().manual_seed(0))
    branches = ("vector", "chunk", "trajectory")
    cases = [  # (batch, conditions, baseline actions)
        (data_batch, ("sigma_adapter",), tuple(data_batch[f"base_action_{b}"] for b in branches)),
        (plain, ("sigma_adapter", "telepathy_off"), tuple(getattr(off.action, f"action_{b}") for b in branches)),
        (plain, ("sigma_adapter",), tuple(getattr(on.action, f"baseline_{b}") for b in branches)),
    ]
    for batch, conditions, base in cases:
        res = replay(model, [batch], ReplayConfig(conditions=conditions), adapter=adapter)
        (rec,) = [r for r in res.records if r["condition"] == "sigma_adapter"]
        a = on.action
        got = adapter(a.action_vector, a.action_chunk, a.action_trajectory, *base, on.language.tau, a.condition_tau)
        assert rec["mse_vec"] == pytest.approx(
            float(per_sample_mse(got.action_vector, batch["gt_action_vector"]).mean()), rel=1e-6), conditions
        assert rec["mse_trj"] == pytest.approx(
            float(per_sample_mse(got.action_trajectory, batch["gt_action_trajectory"]).mean()), rel=1e-6), conditions
        assert (rec["adapter_scale"], rec["adapter_risk"], rec["adapter_fallback_fraction"],
                rec["adapter_residual_ratio"]) == pytest.approx(
            (float(got.scale.mean()), float(got.risk.mean()), float(got.fallback.float().mean()),
             float(got.residual_ratio.mean())), rel=1e-6), conditions
    data = replay(model, [data_batch], ReplayConfig(conditions=("baseline",)))
    assert data.condition_info["baseline"] == {
        "telepathy": False, "adapter": False, "label": "baseline (dataset)", "source": "dataset",
        "description": "offline base policy actions from the shards (base_action_*)"}
    # the adapter given is the one used: a tiny max_risk sends every sample back to the baseline
    strict = replay(model, [data_batch], ReplayConfig(conditions=("sigma_adapter", "baseline")),
                    adapter=RiskGatedAdapter(AdapterConfig(max_risk=1e-9)))
    adapted, baseline = strict.records
    assert adapted["adapter_fallback_fraction"] == 1.0 and adapted["adapter_scale"] == 0.0
    assert adapted["mse_vec"] == pytest.approx(baseline["mse_vec"], rel=1e-6)


@torch.no_grad()
def test_adapter_record_of_a_runaway_residual_stays_finite(config):
    """A residual of 1e19 per joint is finite but its norm overflows: the ratio is +inf, so is the risk.

    The adapter falls back to the baseline; the record shows the risk as max_risk and the ratio as 0 (finite means).
    Against a baseline as large, the ratio is inf / inf = NaN, also recorded as 0.
    """
    torch.manual_seed(0)
    model = make_tau_matter_(SigmaModel(config).eval(), seed=1)
    last = [m for m in model.action.residual_head.modules() if isinstance(m, torch.nn.Linear)][-1]
    last.bias.fill_(1e19)
    (batch,) = _batches(config, sizes=(3,), with_baseline=True)
    huge = dict(batch, **{k: v * 1e19 for k, v in batch.items() if k.startswith("base_action_")})
    for data in (batch, huge):
        adapted, baseline = replay(model, [data], ReplayConfig(conditions=("sigma_adapter", "baseline"))).records
        assert adapted["adapter_fallback_fraction"] == 1.0 and adapted["adapter_scale"] == 0.0
        assert adapted["adapter_residual_ratio"] == 0.0
        assert adapted["mse_vec"] == baseline["mse_vec"]
    adapted, _ = replay(model, [batch], ReplayConfig(conditions=("sigma_adapter", "baseline")),
                        adapter=RiskGatedAdapter(AdapterConfig(max_risk=7.0))).records
    assert adapted["adapter_risk"] == 7.0
