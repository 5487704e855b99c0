# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Offline replay and sigma-eval end to end: shards (ShardWriter) + a briefly trained checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from sigma_model import SigmaModel, load_checkpoint, save_checkpoint
from sigma_model.data.shards import ShardWriter
from sigma_model.evaluation import evaluate
from sigma_model.data.shards import collate_sigma_samples
from sigma_model.evaluation.check_a import INIT_HEADS_FILE, check_a, check_a_section, heads_tensors
from sigma_model.evaluation.replay import (
    ALL_CONDITIONS, ReplayConfig, episode_batches, iterate_batches, observation_from_batch, per_sample_mse, replay,
    resolve_checkpoint,
)
from sigma_model.evaluation.report import BATCH_LOG_NAME, IMPROVEMENT_PLOT_NAME, MSE_PLOT_NAME, REPORT_NAME
from sigma_model.training.batching import SyntheticWindows, collate_samples

from sigma_model.testing import small_config
from test_data_shards import corrupt_tensor_byte
from sigma_model.testing import PAPER_FIELDS
from sigma_model.testing import make_tau_matter_, randomize_


def _batches(config, n=10, batch_size=4, with_baseline=False, seed=0):
    ds = SyntheticWindows(config, n, seed=seed, with_baseline=with_baseline)
    return [collate_samples([ds[i] for i in range(s, min(n, s + batch_size))]) for s in range(0, n, batch_size)]


@pytest.fixture
def trained_like(config):
    torch.manual_seed(0)
    model = SigmaModel(config).eval()
    randomize_(model.action.residual_head, seed=5)  # a non-zero telepathy residual
    return model


def test_telepathy_off_equals_tau0_baseline_exactly(trained_like, config):
    batches = _batches(config)
    res = replay(trained_like, batches, ReplayConfig(batch_size=4))
    assert res.baseline_source == "tau0"
    by = {(r["condition"], r["batch"]): r for r in res.records}
    for b in range(len(batches)):
        off, base, on = by[("telepathy_off", b)], by[("baseline", b)], by[("sigma", b)]
        for key in ("mse_vec", "mse_chk", "mse_trj", "tau_l2", "sem_align", "num_hard"):
            assert off[key] == base[key], key
        assert on["mse_vec"] != off["mse_vec"]  # telepathy really changes the actions
        # the tau = 0 path's residual is zero, so the adapter cannot move it
        assert by[("telepathy_off_adapter", b)]["mse_trj"] == off["mse_trj"]
    # without a telepathy-off condition the tau = 0 baseline is still the telepathy-off pass: same numbers
    short = replay(trained_like, batches, ReplayConfig(batch_size=4, conditions=("sigma", "baseline")))
    assert [r for r in short.records if r["condition"] == "baseline"] == [
        r for r in res.records if r["condition"] == "baseline"
    ]


def test_dataset_baseline_and_metrics_by_hand(trained_like, config):
    batches = _batches(config, n=6, batch_size=3, with_baseline=True)
    res = replay(
        trained_like, batches, ReplayConfig(batch_size=3, hard_thresholds={"vec": 0.01, "chunk": 1e9, "traj": 1e9})
    )
    assert res.baseline_source == "dataset"
    for b, batch in enumerate(batches):
        rec = next(r for r in res.records if r["condition"] == "baseline" and r["batch"] == b)
        mse = per_sample_mse(batch["base_action_vector"], batch["gt_action_vector"])
        assert rec["mse_vec"] == pytest.approx(float(mse.mean()), rel=1e-6)
        assert rec["num_hard"] == int((mse > 0.01).sum())
        mse_t = per_sample_mse(batch["base_action_trajectory"], batch["gt_action_trajectory"])
        assert rec["mse_trj"] == pytest.approx(float(mse_t.mean()), rel=1e-6)
    adapter_recs = [r for r in res.records if r["condition"] == "sigma_adapter"]
    assert all(0.0 <= r["adapter_scale"] <= 1.0 for r in adapter_recs)


def test_separate_baseline_checkpoint(trained_like, config):
    torch.manual_seed(123)
    other = SigmaModel(config).eval()
    batches = _batches(config, n=4)
    res = replay(trained_like, batches, ReplayConfig(conditions=("sigma", "baseline")), baseline_model=other)
    assert res.baseline_source == "checkpoint"
    assert [r["condition"] for r in res.records] == ["sigma", "baseline"]
    with pytest.raises(ValueError, match="base_action"):
        replay(trained_like, batches, ReplayConfig(baseline="dataset"))


def test_check_a_matches_heads_definition(trained_like):
    heads = heads_tensors(trained_like)
    assert heads and not any(k.startswith("language.backbone.") for k in heads)
    n_backbone = sum(1 for k in trained_like.state_dict() if k.startswith("language.backbone."))
    assert len(heads) + n_backbone == len(trained_like.state_dict())
    stats = check_a(trained_like)
    values = torch.cat([t.reshape(-1).double() for t in heads.values()])
    assert stats["heads_tensors"] == len(heads)
    assert stats["mean"] == pytest.approx(float(values.mean()))
    assert stats["rms"] == pytest.approx(float(values.square().mean().sqrt()))
    assert stats["std"] ** 2 + stats["mean"] ** 2 == pytest.approx(stats["rms"] ** 2)


def test_bad_inputs_are_clear_errors(trained_like, config, tmp_path):
    batch = _batches(config, n=2)[0]
    bad = dict(batch, gt_action_chunk=batch["gt_action_chunk"][:, :2])
    with pytest.raises(ValueError, match="gt_action_chunk has per-sample shape"):
        replay(trained_like, [bad])
    with pytest.raises(ValueError, match="lacks 'gt_action_vector'"):
        replay(trained_like, [{k: v for k, v in batch.items() if k != "gt_action_vector"}])
    with pytest.raises(ValueError, match="nothing to replay"):
        replay(trained_like, [])
    with pytest.raises(FileNotFoundError, match="not a Sigma checkpoint"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="conditions"):
        ReplayConfig(conditions=("bogus",))


# ----------------------------------------------------------------------------- recurrence
def _episodes(config, lengths=(4, 3, 5), change_at=3):
    """Windows of several episodes, stored out of frame order.

    The last episode's instruction changes at its window ``change_at`` (a new instruction mid-episode).
    """
    ds = SyntheticWindows(config, sum(lengths), seed=3)
    samples, k = [], 0
    for ep, n in enumerate(lengths):
        for frame in range(n):
            item = dict(ds[k], episode_index=torch.tensor(ep), frame_index=torch.tensor(2 * frame))
            item["text"] = SyntheticWindows.INSTRUCTIONS[int(ep == len(lengths) - 1 and frame >= change_at)]
            samples.append(item)
            k += 1
    return samples[::-1]  # episodes and frames in reverse: the batches must restore frame order


def _reference(model, samples, plan, telepathy, carry_tau=True, carry_memory=True, seed=0):
    """Per-window action-vector and chunk MSEs of the model's own forward, state carried by hand.

    Tau and memory from the episode's previous window, memory reset at a new instruction.
    """
    mse, last = {}, {}
    for index, idxs in enumerate(plan):
        (i,) = idxs
        batch = collate_sigma_samples([samples[i]])
        ep, text = int(samples[i]["episode_index"]), samples[i]["text"]
        prev = last.get(ep)
        tau = prev[0] if prev is not None and carry_tau else None
        memory = prev[1] if prev is not None and carry_memory and prev[2] == text else None
        obs, _ = observation_from_batch(batch, model.config, torch.device("cpu"))
        out = model(obs, model.tokenize([text]), tau_prev=tau, memory_prev=memory, telepathy=telepathy,
                    generator=torch.Generator().manual_seed(seed * 1_000_003 + index))
        last[ep] = (out.language.tau, out.language.memory, text)
        mse[i] = (float(per_sample_mse(out.action.action_vector, batch["gt_action_vector"])),
                  float(per_sample_mse(out.action.action_chunk, batch["gt_action_chunk"])))
    return mse


@torch.no_grad()
def test_replay_carries_tau_and_memory_through_each_episode(config):
    torch.manual_seed(0)
    model = make_tau_matter_(SigmaModel(config).eval(), seed=4)  # tau_prev changes vision, tau the actions
    samples = _episodes(config)
    plan = episode_batches(samples, 1)
    order = [(int(samples[i]["episode_index"]), int(samples[i]["frame_index"])) for (i,) in plan]
    assert order == sorted(order, key=lambda k: (-k[0], k[1]))  # episodes in dataset order, frames in order
    res = replay(
        model, iterate_batches(samples, plan), ReplayConfig(batch_size=1, conditions=("sigma", "telepathy_off"))
    )
    assert res.recurrence["windows_with_carried_state"] == len(samples) - 3 and res.recurrence["episodes"] == 3
    for condition, telepathy in (("sigma", True), ("telepathy_off", False)):
        got = {plan[r["batch"]][0]: (r["mse_vec"], r["mse_chk"]) for r in res.records if r["condition"] == condition}
        want = _reference(model, samples, plan, telepathy)
        for i in want:
            assert got[i] == pytest.approx(want[i], rel=1e-5, abs=1e-7), (condition, i)
    # the test has power: dropping either carry changes the errors of the windows that have a predecessor
    want = _reference(model, samples, plan, True)
    for kw in ({"carry_tau": False}, {"carry_memory": False}):
        other = _reference(model, samples, plan, True, **kw)
        assert max(abs(other[i][0] - want[i][0]) for i in want) > 1e-4, kw
    # carry_state=False replays every window from zeros (the old behaviour)
    fresh = replay(
        model, iterate_batches(samples, plan), ReplayConfig(batch_size=1, conditions=("sigma",), carry_state=False)
    )
    zero = _reference(model, samples, plan, True, carry_tau=False, carry_memory=False)
    assert {plan[r["batch"]][0]: r["mse_vec"] for r in fresh.records} == pytest.approx(
        {i: v[0] for i, v in zero.items()}, rel=1e-5
    )
    assert fresh.recurrence["windows_with_carried_state"] == 0


@torch.no_grad()
def test_episode_lanes_batch_the_recurrence_exactly(config):
    torch.manual_seed(0)
    model = make_tau_matter_(SigmaModel(config).eval(), seed=4)
    samples = _episodes(config)
    plan = episode_batches(samples, 3)
    assert sorted(i for b in plan for i in b) == list(range(len(samples)))
    for b in plan:  # one window per episode in a batch
        assert len({int(samples[i]["episode_index"]) for i in b}) == len(b)
    cfg = ReplayConfig(conditions=("sigma", "telepathy_off"))
    one = replay(model, iterate_batches(samples, episode_batches(samples, 1)), cfg)
    three = replay(model, iterate_batches(samples, plan), cfg)
    # the deterministic branches (vector, chunk) and tau agree window for window: the same means
    for cond in ("sigma", "telepathy_off"):
        for key in ("mse_vec", "mse_chk", "tau_l2"):
            mean = [sum(r[key] * r["num_samples"] for r in res.records if r["condition"] == cond) / len(samples)
                    for res in (one, three)]
            assert mean[0] == pytest.approx(mean[1], rel=1e-5), (cond, key)
    assert episode_batches(samples, 2, max_batches=2) == episode_batches(samples, 2)[:2]
    # two windows of one episode in a batch, or frames out of order: a clear error
    same_episode = [i for i in range(len(samples)) if int(samples[i]["episode_index"]) == 0]
    with pytest.raises(ValueError, match="two windows of episode 0"):
        replay(model, iterate_batches(samples, [same_episode[:2]]), cfg)
    with pytest.raises(ValueError, match="frame order"):
        replay(model, iterate_batches(samples, [[same_episode[0]], [same_episode[1]]]), cfg)


# ----------------------------------------------------------------------------- end to end
def _write_shards(config, directory, n=24, shard_size=10, with_baseline=False, seed=0):
    ds = SyntheticWindows(config, n, seed=seed, with_baseline=with_baseline)
    writer = ShardWriter(directory, shard_size=shard_size)
    for i in range(len(ds)):
        writer.add(ds[i])
    writer.close({"source": "test"})
    return directory


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Shards written by ShardWriter and a checkpoint from a few steps of the real trainer."""
    from sigma_model.training.configuration_training import TrainingConfig
    from sigma_model.training.trainer import SigmaTrainer

    root = tmp_path_factory.mktemp("eval_e2e")
    config = small_config()
    shards = _write_shards(config, root / "shards")
    tcfg = TrainingConfig(shards_dir=str(shards), output_dir=str(root / "run"), batch_size=4, max_steps=6,
                          warmup_steps=0, learning_rate=3e-3, save_every=0, lora_r=4, lora_alpha=8, seed=0,
                          curriculum_steps=4)
    SigmaTrainer(tcfg, model_config=config).train()
    return root, config


def test_sigma_eval_end_to_end(trained_run, capsys):
    root, config = trained_run
    out = root / "eval"
    threads = torch.get_num_threads()
    try:
        rc = evaluate.main([f"--shards={root / 'shards'}", f"--checkpoint={root / 'run'}", f"--output={out}",
                            "--replay.batch_size=5", "--table_every=2", "--progress=false", "--n_bootstrap=300",
                            "--threads=1"])
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "CHECK A" in printed and "CHECK B" in printed and "samples/s" in printed
    report = json.loads((out / REPORT_NAME).read_text())
    assert set(report["conditions"]) == set(ALL_CONDITIONS)
    for name, cond in report["conditions"].items():
        for field in PAPER_FIELDS:
            assert field in cond, (name, field)
        assert cond["num_samples"] == 24 and cond["num_batches"] == 5
        assert cond["avg_mse_vector"] > 0 and cond["avg_tau_l2"] > 0
        assert -1.0 <= cond["avg_semantic_text_alignment"] <= 1.0
    for field in PAPER_FIELDS:
        assert field in report  # top level, for the primary condition (Sigma)
    assert report["primary_condition"] == "sigma"
    assert report["meta"]["baseline_source"] == "tau0"
    assert report["conditions"]["telepathy_off"]["avg_mse_traj"] == report["conditions"]["baseline"]["avg_mse_traj"]
    # the trained residual makes Sigma differ from the baseline
    assert report["conditions"]["sigma"]["avg_mse_vector"] != report["conditions"]["baseline"]["avg_mse_vector"]
    imp = report["relative_improvement"]
    assert imp["reference"] == "baseline"
    for scale in ("vector", "chunk", "traj"):
        e = imp["by_condition"]["sigma"][scale]
        assert e["ci_low"] <= e["ci_high"] and e["n_batches"] == 5 and e["estimate"] is not None
    # CHECK A agrees with the trainer's sigma_telepathy_heads.safetensors
    model_dir, heads_file = resolve_checkpoint(root / "run")
    assert heads_file is not None and heads_file.name == "sigma_telepathy_heads.safetensors"
    ca = report["check_a"]
    assert ca["experimental"]["heads_tensors"] == len(load_file(str(heads_file)))
    assert ca["experimental"]["matches_model"] is True and ca["identical"] is True
    # ... and the trained heads moved from the initialisation sigma-train recorded (every telepathy path)
    assert ca["init_heads"] == str(root / "run" / INIT_HEADS_FILE) and ca["passed"] is True, ca["status"]
    assert set(ca["telepathy_paths"]) == {"action_residual_head", "vision_tau_modulator", "language_tau_modulator"}
    assert min(ca["telepathy_paths"].values()) >= ca["min_relative_change"] and "passed" in printed
    assert all(row["condition"] in ALL_CONDITIONS for row in report["check_b"]["rows"])
    lines = (out / BATCH_LOG_NAME).read_text().splitlines()
    assert len(lines) == 5 * len(ALL_CONDITIONS)
    for name in (MSE_PLOT_NAME, IMPROVEMENT_PLOT_NAME):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_check_a_fails_for_an_untrained_model(trained_run, tmp_path, capsys):
    from sigma_model.training.configuration_training import TrainingConfig
    from sigma_model.training.trainer import SigmaTrainer

    root, config = trained_run
    tcfg = TrainingConfig(shards_dir=str(root / "shards"), output_dir=str(tmp_path / "run"), batch_size=4, max_steps=6,
                          warmup_steps=0, save_every=0, lora_r=4, lora_alpha=8, seed=0)
    SigmaTrainer(tcfg, model_config=config).save()  # the checkpoint of step 0: never trained
    argv = [f"--shards={root / 'shards'}", f"--checkpoint={tmp_path / 'run'}", f"--output={tmp_path / 'o'}",
            "--plots=false", "--progress=false", "--replay.conditions=[sigma,baseline]", "--replay.max_batches=1",
            "--n_bootstrap=20"]
    assert evaluate.main(argv) == 0
    assert "failed: the heads are (almost) their initialisation" in capsys.readouterr().out
    ca = json.loads((tmp_path / "o" / REPORT_NAME).read_text())["check_a"]
    assert ca["passed"] is False and ca["relative_change"] == 0.0 and ca["parameters_changed"] == 0
    assert ca["identical"] is True  # the paper's comparison of the groups passes all the same

    # a trained model whose telepathy residual head stayed at its initialisation fails too
    model, heads_file = resolve_checkpoint(root / "run")
    trained = load_checkpoint(model)
    init = load_file(str(root / "run" / INIT_HEADS_FILE))
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if name.startswith("action.residual_head."):
                p.copy_(init[name])
    ca = check_a_section(trained, init_heads=root / "run" / INIT_HEADS_FILE)
    assert ca["passed"] is False and ca["relative_change"] > ca["min_relative_change"]
    assert ca["telepathy_paths"]["action_residual_head"] == 0.0 and "action_residual_head" in ca["status"]
    # without an initialisation CHECK A is not run, and says so
    ca = check_a_section(trained)
    assert ca["passed"] is None and ca["status"].startswith("not run")


def test_sigma_eval_cli_errors(trained_run, tmp_path, capsys):
    root, config = trained_run
    with pytest.raises(SystemExit) as exc:
        evaluate.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--config_path", "--checkpoint", "--overwrite", "--replay.batch_size", "--replay.conditions",
                   "--adapter.min_scale", "--adapter.tau_l2_range"):
        assert option in text
    rc = evaluate.main(
        [
            f"--shards={root / 'shards'}",
            f"--checkpoint={tmp_path / 'nope'}",
            f"--output={tmp_path / 'o'}",
            "--progress=false",
        ]
    )
    assert rc == 2 and "checkpoint not found" in capsys.readouterr().err
    broken = tmp_path / "shards"
    _write_shards(config, broken, n=4, shard_size=4)
    shard = broken / "shard_00000.safetensors"
    shard.write_bytes(shard.read_bytes()[:-50])
    rc = evaluate.main(
        [f"--shards={broken}", f"--checkpoint={root / 'run'}", f"--output={tmp_path / 'o'}", "--progress=false"]
    )
    assert rc == 2 and "truncated" in capsys.readouterr().err


def test_sigma_eval_refuses_a_shard_not_matching_its_checksum(trained_run, tmp_path, capsys):
    root, config = trained_run
    shards = _write_shards(config, tmp_path / "shards", n=8, shard_size=4)
    corrupt_tensor_byte(shards / "shard_00001.safetensors")
    rc = evaluate.main([f"--shards={shards}", f"--checkpoint={root / 'run'}", f"--output={tmp_path / 'o'}",
                        "--progress=false"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1
    assert "shard_00001.safetensors does not match its checksum" in err
    assert not (tmp_path / "o").exists()


def test_sigma_eval_refuses_to_overwrite_a_report(trained_run, tmp_path, capsys):
    root, _ = trained_run
    out = tmp_path / "o"
    out.mkdir()
    (out / REPORT_NAME).write_text("{}\n")
    argv = [f"--shards={root / 'shards'}", f"--checkpoint={root / 'run'}", f"--output={out}", "--quiet=true",
            "--plots=false", "--replay.conditions=[sigma,baseline]", "--replay.max_batches=1", "--n_bootstrap=50"]
    assert evaluate.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / REPORT_NAME).read_text() == "{}\n"
    assert evaluate.main(argv + ["--overwrite=true"]) == 0
    assert json.loads((out / REPORT_NAME).read_text())["primary_condition"] == "sigma"


def test_dataset_baseline_end_to_end_quiet(trained_run, tmp_path, capsys):
    root, config = trained_run
    shards = _write_shards(config, tmp_path / "shards_base", n=8, shard_size=8, with_baseline=True)
    ckpt = tmp_path / "plain"
    torch.manual_seed(1)
    model = SigmaModel(config)
    randomize_(model.action.residual_head, seed=9)
    save_checkpoint(model, ckpt)
    rc = evaluate.main([f"--shards={shards}", f"--checkpoint={ckpt}", f"--output={tmp_path / 'o'}", "--quiet=true",
                        "--plots=false", "--ci=t", "--replay.conditions=[sigma,sigma_adapter,baseline]",
                        "--adapter.min_scale=0.2", "--adapter.tau_l2_range=[0,50]"])
    assert rc == 0
    report = json.loads((tmp_path / "o" / REPORT_NAME).read_text())
    assert report["meta"]["baseline_source"] == "dataset"
    assert report["meta"]["adapter"]["min_scale"] == 0.2
    assert report["relative_improvement"]["method"] == "t"
    scale = report["conditions"]["sigma_adapter"]["extra"]["adapter_scale"]
    assert 0.2 <= scale <= 1.0
    assert "improvement_plot" not in report["files"] and "mse_plot" not in report["files"]
    assert report["meta"]["adapter"]["tau_l2_range"] == [0.0, 50.0]


def test_sigma_eval_config_path_then_flags(trained_run, tmp_path, capsys):
    """--config_path (YAML, nested like EvalCLI) sets the run; a nested flag overrides the file."""
    root, _ = trained_run
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"shards: {root / 'shards'}\ncheckpoint: {root / 'run'}\noutput: {tmp_path / 'o'}\nquiet: true\n"
                   "plots: false\nn_bootstrap: 50\nreplay:\n  conditions: [sigma_adapter, baseline]\n  max_batches: 1\n"
                   "adapter:\n  min_scale: 0.3\n  k: 3.0\n")
    assert evaluate.main([f"--config_path={cfg}", "--adapter.min_scale=0.4"]) == 0
    report = json.loads((tmp_path / "o" / REPORT_NAME).read_text())
    assert set(report["conditions"]) == {"sigma_adapter", "baseline"}
    assert report["meta"]["adapter"]["min_scale"] == 0.4 and report["meta"]["adapter"]["k"] == 3.0


@pytest.mark.parametrize("argv, message", [
    ([], "--shards is required"),
    (["--shards=s"], "--checkpoint is required"),
    (["--shards=s", "--checkpoint=c", "--replay.batch_size=0"], "batch_size must be a positive int"),
    (["--shards=s", "--checkpoint=c", "--replay.conditions=[nope]"], "conditions must be a non-empty subset"),
    (["--shards=s", "--checkpoint=c", "--adapter.min_scale=-1"], "AdapterConfig.min_scale must be >= 0"),
    (["--shards=s", "--checkpoint=c", "--confidence=2"], "--confidence must be in (0, 1)"),
    (["--shards=s", "--checkpoint=c", "--n_bootstrap=-5"], "--n_bootstrap must be positive, got -5"),
    (["--shards=s", "--checkpoint=c", "--adapter.nonsense=1"], "unrecognized arguments: --adapter.nonsense=1"),
    (["--shards=s", "--checkpoint=c", "--threads=two"], "threads"),
])
def test_sigma_eval_bad_flags_give_one_line_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("sigma-eval: error: ") and message in err
