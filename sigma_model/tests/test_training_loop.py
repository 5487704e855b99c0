# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The fine-tuning loop.

Learning on synthetic windows and on real shards, bit-identical resume, tensor-only atomic checkpoints, the deployable
merged model, metrics logging.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from sigma_model import load_checkpoint
from sigma_model.training.batching import PreviousWindowDataset, SyntheticWindows, collate_samples
from sigma_model.training.checkpointing import (
    HEADS_FILE, latest_checkpoint, list_checkpoints, non_tensor_only_files,
)
from sigma_model.training.configuration_training import TrainingConfig
from sigma_model.training.metrics import TABLE1_COLUMNS, read_metrics
from sigma_model.training.trainer import SigmaTrainer

from sigma_model.testing import small_config


pytestmark = pytest.mark.usefixtures("one_thread")


def model_config(**overrides):
    return small_config(use_audio=False, **overrides)


def train_config(tmp_path, name="run", **overrides) -> TrainingConfig:
    values = dict(
        synthetic_samples=24, batch_size=6, max_steps=6, warmup_steps=1, learning_rate=3e-3,
        output_dir=str(tmp_path / name), save_every=0, curriculum_steps=4, keep_checkpoints=0,
    )
    values.update(overrides)
    return TrainingConfig(**values)


def fixed_batch(config, n=8, seed=123, **kw):
    data = SyntheticWindows(config, n, seed=seed, **kw)
    return collate_samples([data[i] for i in range(n)])


def test_short_training_lowers_the_loss(tmp_path):
    mc = model_config()
    cfg = train_config(tmp_path, synthetic_samples=32, batch_size=8, max_steps=25, curriculum_steps=0, warmup_steps=2)
    trainer = SigmaTrainer(cfg, mc)
    batch = fixed_batch(mc)
    before = trainer.evaluate(batch)
    result = trainer.train()
    after = trainer.evaluate(batch)
    assert result["step"] == 25
    assert after["loss"] < 0.8 * before["loss"], (before, after)
    assert after["L_act"] < 0.8 * before["L_act"], (before, after)
    rows = read_metrics(cfg.output_dir)
    assert [r["step"] for r in rows] == list(range(25))
    for column in TABLE1_COLUMNS:
        assert all(isinstance(r[column], float) for r in rows), column
    assert rows[0]["hard_ratio"] == pytest.approx(3 / 8)  # ceil(0.3 * 8) = 3
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[: 1 + len(TABLE1_COLUMNS)] == ["step", *TABLE1_COLUMNS]


def test_training_on_preprocessed_shards(tmp_path):
    pytest.importorskip("lerobot.datasets.lerobot_dataset")
    from sigma_model.data.preprocess import preprocess_dataset
    from sigma_model.data.shards import ShardDataset
    from sigma_model.data.synthetic import write_synthetic_dataset
    from sigma_model.data.windows import WindowConfig

    root = write_synthetic_dataset(tmp_path / "lerobot", [(2, 14), (0, 12)], fps=10, image_hw=(24, 32))
    wcfg = WindowConfig(horizon_T=5, chunk_len=4, min_action_norm=0.3, image_size=(32, 32))
    meta = preprocess_dataset(root, tmp_path / "shards", wcfg, shard_size=8, progress=False)
    assert meta["num_samples"] >= 16
    mc = model_config()  # chunk_len 4, traj_len 5 = horizon_T
    cfg = train_config(tmp_path, shards_dir=str(tmp_path / "shards"), synthetic_samples=0, batch_size=8,
                       max_steps=20, curriculum_steps=0, warmup_steps=2)
    trainer = SigmaTrainer(cfg, mc)
    assert isinstance(trainer.dataset, PreviousWindowDataset)  # the shards' episode/frame structure is used
    data = ShardDataset(tmp_path / "shards")
    batch = collate_samples([PreviousWindowDataset(data)[i] for i in range(8)])
    before = trainer.evaluate(batch)
    trainer.train()
    after = trainer.evaluate(batch)
    assert after["L_act"] < 0.8 * before["L_act"], (before, after)
    rows = read_metrics(cfg.output_dir)
    assert max(r["prev_window"] for r in rows) > 0.5  # most windows had a preceding window


def _state(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resumed_training_is_bit_identical(tmp_path, ema_decay):
    # dropout on (model + LoRA) so the global RNG matters; 4 batches per epoch and 2 micro-batches
    # per step, so the interruption falls mid-epoch and the data order crosses epochs
    mc = model_config(dropout=0.1)
    overrides = dict(grad_accum_steps=2, max_steps=6, ema_decay=ema_decay)
    full = SigmaTrainer(train_config(tmp_path, "full", **overrides), mc)
    full.train()

    first = SigmaTrainer(train_config(tmp_path, "split", **overrides), mc)
    first.train(until_step=3)
    assert latest_checkpoint(tmp_path / "split" / "checkpoints").name == "step_00000003"
    del first
    torch.manual_seed(999)  # a different global RNG state must not matter
    second = SigmaTrainer(train_config(tmp_path, "split", **overrides), mc, resume=True)
    assert second.step == 3
    second.train()

    a, b = _state(full), _state(second)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    opt_a, opt_b = full.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert opt_a.keys() == opt_b.keys()
    assert all(torch.equal(opt_a[i][k], opt_b[i][k]) for i in opt_a for k in opt_a[i])
    rows_full, rows_split = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "split")
    assert [r["step"] for r in rows_split] == list(range(6))
    assert [r["loss"] for r in rows_full] == [r["loss"] for r in rows_split]
    if ema_decay:
        assert second.ema.updates == full.ema.updates == 6
        assert all(torch.equal(full.ema.shadow[k], second.ema.shadow[k]) for k in full.ema.shadow)


class AugmentedWindows(SyntheticWindows):
    """Synthetic windows whose joint state gets noise from the seed the trainer's batch stream gives each item."""

    def sample(self, index: int, seed: int) -> dict:
        item = super().__getitem__(index)
        noise = torch.randn(item["robot_state"].shape, generator=torch.Generator().manual_seed(seed))
        item["robot_state"] = item["robot_state"] + 0.1 * noise
        return item


def test_resume_with_loader_workers_and_augmentation_is_bit_identical(tmp_path):
    mc = model_config()
    full = SigmaTrainer(train_config(tmp_path, "full"), mc, dataset=AugmentedWindows(mc, 24))
    full.train()
    split = train_config(tmp_path, "split", num_workers=2)
    first = SigmaTrainer(split, mc, dataset=AugmentedWindows(mc, 24))
    first.train(until_step=3)
    del first
    second = SigmaTrainer(split, mc, dataset=AugmentedWindows(mc, 24), resume=True)
    assert second.stream.num_workers == 2
    second.train()
    a, b = _state(full), _state(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = SigmaTrainer(train_config(tmp_path, "plain"), mc, dataset=SyntheticWindows(mc, 24))
    plain.train()
    assert not all(torch.equal(a[k], v) for k, v in _state(plain).items())  # the augmentation reached the model


def test_checkpoints_export_the_weight_average(tmp_path):
    trainer = SigmaTrainer(train_config(tmp_path, ema_decay=0.5, max_steps=4), model_config())
    name = next(n for n in trainer.param_names if n.startswith("action."))
    param = dict(trainer.model.named_parameters())[name]
    expected = param.detach().clone()
    for n in range(4):
        trainer.train_step()
        decay = min(0.5, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * param.detach()
    raw = param.detach().clone()
    path = trainer.save()
    exported = load_checkpoint(path / "model").state_dict()[name]
    torch.testing.assert_close(exported, expected)
    assert not torch.allclose(exported, raw, atol=1e-6)
    assert torch.equal(param.detach(), raw)  # exporting the average leaves the training weights alone
    assert torch.equal(load_file(str(path / HEADS_FILE))[name], raw)  # the raw weights resume the run
    assert not non_tensor_only_files(path)


def test_interrupt_saves_a_checkpoint_and_resume_continues(tmp_path):
    mc = model_config()

    class Interrupting(SyntheticWindows):
        calls = 0

        def __getitem__(self, i):
            Interrupting.calls += 1
            if Interrupting.calls == 6 * 3 + 1:  # the 4th batch
                raise KeyboardInterrupt
            return super().__getitem__(i)

    cfg = train_config(tmp_path)
    trainer = SigmaTrainer(cfg, mc, dataset=Interrupting(mc, 24, seed=cfg.seed))
    Interrupting.calls = 0
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step_00000003"
    with pytest.raises(FileExistsError, match="resume"):
        SigmaTrainer(cfg, mc)
    resumed = SigmaTrainer(cfg, mc, resume="auto")
    assert resumed.step == 3 and resumed.stream.position.batch_index == 3
    assert resumed.train()["step"] == 6
    full = SigmaTrainer(train_config(tmp_path, "full"), mc)
    full.train()
    a, b = _state(full), _state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the interrupted step was replayed exactly
    with pytest.raises(ValueError, match="learning_rate"):
        SigmaTrainer(cfg.replace(learning_rate=1.0), mc, resume=True)


def test_checkpoint_is_tensor_only_and_holds_every_part(tmp_path):
    mc = model_config()
    cfg = train_config(tmp_path, max_steps=4, save_every=2, keep_checkpoints=1)
    trainer = SigmaTrainer(cfg, mc)
    trainer.train()
    root = tmp_path / "run" / "checkpoints"
    assert [p.name for p in list_checkpoints(root)] == ["step_00000004"]  # older ones pruned
    ckpt = latest_checkpoint(root)
    assert not list(root.glob(".*tmp"))  # no leftovers of the atomic write
    assert non_tensor_only_files(ckpt) == []
    assert all(p.suffix in (".json", ".safetensors") for p in ckpt.rglob("*") if p.is_file())
    names = {p.relative_to(ckpt).as_posix() for p in ckpt.rglob("*") if p.is_file()}
    for needed in (HEADS_FILE, "adapter/adapter_model.safetensors", "adapter/adapter_config.json",
                   "model/config.json", "model/language.safetensors", "optimizer.safetensors", "optimizer.json",
                   "scheduler.json", "rng.safetensors", "training_config.json", "sigma_config.json",
                   "trainer_state.json", "backbone_frozen.safetensors"):
        assert needed in names, needed
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == 4
    assert TrainingConfig.load(ckpt / "training_config.json") == cfg

    from safetensors.torch import load_file

    heads = load_file(str(ckpt / HEADS_FILE))
    assert heads and not any(k.startswith("language.backbone.") for k in heads)
    assert any(k.startswith("vision.") for k in heads) and any(k.startswith("action.") for k in heads)

    # the merged model is a plain sigma_model checkpoint with the same behaviour as the LoRA model
    plain = load_checkpoint(ckpt / "model").eval()
    trainer.model.eval()
    batch = fixed_batch(mc, n=3)
    from sigma_model.training.batching import observation_from_batch

    obs = observation_from_batch(batch, mc, torch.device("cpu"))
    with torch.no_grad():
        out_lora = trainer.model(obs, trainer.model.tokenize(batch["text"]), generator=torch.Generator().manual_seed(1))
        out_plain = plain(obs, plain.tokenize(batch["text"]), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out_plain.action.action_chunk, out_lora.action.action_chunk, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_plain.language.tau, out_lora.language.tau, atol=1e-5, rtol=1e-5)


def test_dataset_baselines_are_used_for_residual_learning(tmp_path):
    mc = model_config()
    data = SyntheticWindows(mc, 12, with_baseline=True)
    cfg = train_config(tmp_path, batch_size=4, max_steps=2)
    trainer = SigmaTrainer(cfg, mc, dataset=data)
    metrics = trainer.train_step()
    assert metrics["baseline_from_data"] == 1.0
    # at initialisation the residual head is zero, so the final action is exactly the data baseline
    fresh = SigmaTrainer(train_config(tmp_path, "fresh", batch_size=4), mc, dataset=data)
    batch = collate_samples([data[i] for i in range(4)])
    m = fresh.evaluate(batch)
    gt, base = batch["gt_action_vector"], batch["base_action_vector"]
    assert m["mse_vec"] == pytest.approx(float((gt - base).pow(2).mean()), rel=1e-5)


def test_bf16_autocast_on_cpu_and_grad_accumulation(tmp_path):
    mc = model_config()
    cfg = train_config(tmp_path, mixed_precision="bf16", grad_accum_steps=2, batch_size=4, max_steps=2)
    trainer = SigmaTrainer(cfg, mc)
    assert trainer.autocast == torch.bfloat16
    m = trainer.train_step()
    assert torch.isfinite(torch.tensor(m["loss"])) and m["samples"] == 8
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights stay fp32


def test_clear_errors(tmp_path):
    mc = model_config()
    with pytest.raises(ValueError, match="no training data"):
        SigmaTrainer(train_config(tmp_path, synthetic_samples=0), mc)
    with pytest.raises(FileNotFoundError, match="sigma-preprocess"):
        SigmaTrainer(train_config(tmp_path, synthetic_samples=0, shards_dir=str(tmp_path / "none")), mc)
    with pytest.raises(ValueError, match="chunk_len"):
        SigmaTrainer(
            train_config(tmp_path, "b"), model_config(chunk_len=3), dataset=SyntheticWindows(mc, 12)
        ).train_step()


def test_tensorboard_logging_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    trainer = SigmaTrainer(train_config(tmp_path, max_steps=2, tensorboard=True), model_config())
    trainer.train()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_continuing_the_same_trainer_keeps_its_log(tmp_path):
    trainer = SigmaTrainer(train_config(tmp_path, max_steps=4), model_config())
    trainer.train(until_step=2)
    trainer.train()
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [0, 1, 2, 3]
    # --overwrite starts afresh: old checkpoints and logs are gone
    again = SigmaTrainer(train_config(tmp_path, max_steps=1), model_config(), overwrite=True)
    again.train()
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step_00000001"]
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [0]


def test_init_checkpoint_starts_from_a_saved_model(tmp_path):
    first = SigmaTrainer(train_config(tmp_path, "a", max_steps=2), model_config())
    first.train()
    model_dir = latest_checkpoint(tmp_path / "a" / "checkpoints") / "model"
    second = SigmaTrainer(train_config(tmp_path, "b", max_steps=1, init_checkpoint=str(model_dir)), None)
    plain = load_checkpoint(model_dir).state_dict()
    merged_start = second.model.state_dict()
    heads = [k for k in plain if not k.startswith("language.backbone.")]
    assert all(torch.equal(plain[k], merged_start[k]) for k in heads)
    q = "language.backbone.decoder.layers.0.self_attn.q_proj"
    assert torch.equal(plain[q + ".weight"], merged_start[q + ".base_layer.weight"])  # LoRA sits on the merged weights
    assert second.model_config == load_checkpoint(model_dir).config


def test_auxiliary_target_is_learned_from_the_image_only(tmp_path):
    """Check that aux_target trains the vision workspace's auxiliary head.

    aux_target is here the mean image brightness, which SyntheticWindows ties to the state; L_aux falls and is 0 for
    batches without a target.
    """
    mc = model_config(aux_target_dim=1, image_keypoints=2)

    class WithTarget(SyntheticWindows):
        def __getitem__(self, index):
            sample = super().__getitem__(index)
            sample["aux_target"] = sample["vision_inputs"].float().mean().reshape(1) / 255.0
            return sample

    cfg = train_config(tmp_path, synthetic_samples=0, batch_size=8, max_steps=30, curriculum_steps=0,
                       warmup_steps=2, aux_weight=5.0)
    data = WithTarget(mc, 32, seed=3)
    trainer = SigmaTrainer(cfg, mc, dataset=data)
    batch = collate_samples([data[i] for i in range(8)])
    before = trainer.evaluate(batch)["L_aux"]
    trainer.train()
    after = trainer.evaluate(batch)["L_aux"]
    assert 0.0 < after < 0.5 * before, (before, after)
    plain = collate_samples([SyntheticWindows(mc, 8, seed=3)[i] for i in range(8)])
    assert trainer.evaluate(plain)["L_aux"] == 0.0
    with pytest.raises(ValueError, match="aux_weight"):
        train_config(tmp_path, aux_weight=-1.0)


def test_action_losses_count_in_normalised_units(tmp_path):
    """A model with state/action statistics, given raw radians.

    Has exactly the losses of the same weights without statistics given pre-standardised data: TRAF and the flow loss
    are normalised.
    """
    s_mean, s_std = torch.tensor([0.1, -0.2, 0.3, 1.4, 0.0, 0.4]), torch.tensor([0.5, 0.3, 0.3, 0.2, 0.5, 0.6])
    a_mean, a_std = torch.tensor([0.2, -0.1, 0.3, 1.2, 0.1, 0.5]), torch.tensor([0.4, 0.2, 0.3, 0.1, 0.5, 2.0])
    stats = dict(state_mean=s_mean.tolist(), state_std=s_std.tolist(), action_mean=a_mean.tolist(),
                 action_std=a_std.tolist())
    plain_mc, norm_mc = model_config(), model_config(**stats)
    norm = SigmaTrainer(train_config(tmp_path, "norm"), norm_mc)
    plain = SigmaTrainer(train_config(tmp_path, "plain"), plain_mc)
    raw = fixed_batch(plain_mc)
    standardised = dict(raw)
    for key in ("robot_state", "prev_robot_state"):
        if key in raw:
            standardised[key] = (raw[key] - s_mean) / s_std
    for key in ("gt_action_vector", "gt_action_chunk", "gt_action_trajectory"):
        standardised[key] = (raw[key] - a_mean) / a_std
    got, want = norm.evaluate(raw, seed=4), plain.evaluate(standardised, seed=4)
    for name in ("mse_vec", "mse_chk", "mse_trj", "L_flow", "L_act", "loss"):
        assert got[name] == pytest.approx(want[name], rel=1e-4, abs=1e-6), name
    assert plain.evaluate(raw, seed=4)["mse_trj"] != pytest.approx(got["mse_trj"], rel=1e-2)


def test_the_trainer_applies_the_curriculum_step_by_step(tmp_path):
    """Check that each optimiser step minimises a loss with the TSAC weights of its own step, not those of step 0.

    The weights ramp linearly over curriculum_steps.
    """
    cfg = train_config(tmp_path, max_steps=6, curriculum_steps=4, w_sem_start=0.2, w_sem_target=1.0,
                       w_int_start=0.1, w_int_target=0.5, w_tau_start=0.0, w_tau_target=0.4)
    trainer = SigmaTrainer(cfg, model_config())
    for step in range(6):
        m = trainer.train_step()
        frac = min(1.0, step / 4)
        assert m["step"] == step
        assert (m["w_sem"], m["w_int"], m["w_tau"]) == pytest.approx((0.2 + 0.8 * frac, 0.1 + 0.4 * frac, 0.4 * frac))
        assert m["loss"] == pytest.approx(m["L_act"] + cfg.flow_weight * m["L_flow"] + m["w_sem"] * m["L_sem"]
                                          + m["w_int"] * m["L_int"] + m["w_tau"] * m["L_tau"], rel=1e-5, abs=1e-6)
