# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""What only a CUDA GPU can check.

bf16 training on the GPU, checkpoints that move between GPU and CPU, bit-identical resume on the GPU, and 4-bit
(bitsandbytes NF4) QLoRA training.

Skipped without CUDA (CI has none); on a GPU machine run `python -m pytest test/test_cuda.py`.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

# cuBLAS reads this before its first handle is made: needed for deterministic algorithms
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

from sigma_model import SigmaObservation, load_checkpoint  # noqa: E402
from sigma_model.training.batching import SyntheticWindows, collate_samples  # noqa: E402
from sigma_model.training.checkpointing import BACKBONE_FILE, latest_checkpoint  # noqa: E402
from sigma_model.training.configuration_training import TrainingConfig  # noqa: E402
from sigma_model.training.trainer import SigmaTrainer  # noqa: E402

from sigma_model.testing import make_observation, small_config  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def cuda_config(tmp_path, name="run", **overrides) -> TrainingConfig:
    values = dict(synthetic_samples=32, batch_size=8, max_steps=25, warmup_steps=2, learning_rate=3e-3,
                  curriculum_steps=0, output_dir=str(tmp_path / name), save_every=0, keep_checkpoints=0, device="cuda")
    values.update(overrides)
    return TrainingConfig(**values)


def on(obs: SigmaObservation, device: str) -> SigmaObservation:
    return SigmaObservation(
        image=obs.image.to(device), robot_state=obs.robot_state.to(device), audio=obs.audio.to(device)
    )


def test_bf16_training_on_cuda_and_the_checkpoint_runs_on_cpu(tmp_path):
    mc = small_config(use_audio=True)
    trainer = SigmaTrainer(cuda_config(tmp_path), mc)
    assert trainer.device.type == "cuda" and trainer.autocast == torch.bfloat16
    data = SyntheticWindows(mc, 8, seed=123)
    batch = collate_samples([data[i] for i in range(8)])
    before = trainer.evaluate(batch)["L_act"]
    trainer.train()
    after = trainer.evaluate(batch)["L_act"]
    assert after < before
    assert all(p.is_cuda and p.dtype == torch.float32 for p in trainer.model.parameters())  # fp32 master weights

    model_dir = latest_checkpoint(tmp_path / "run" / "checkpoints") / "model"
    cpu, gpu = load_checkpoint(model_dir).eval(), load_checkpoint(model_dir).eval().to("cuda")
    obs = make_observation(mc, batch=3)
    text = ["pick the cube and place it on the left"] * 3
    with torch.no_grad():
        lc = cpu.language_stage(cpu.tokenize(text), *_vision(cpu, obs))
        lg = gpu.language_stage(gpu.tokenize(text), *_vision(gpu, on(obs, "cuda")))
    torch.testing.assert_close(lg.tau.cpu(), lc.tau, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(lg.memory.cpu(), lc.memory, rtol=2e-3, atol=2e-3)


def _vision(model, obs):
    v = model.vision_stage(obs)
    return v.vision_tokens, v.state_tokens


def test_resume_on_cuda_is_bit_identical_with_deterministic_algorithms(tmp_path):
    mc = small_config(use_audio=False, dropout=0.1)
    overrides = dict(grad_accum_steps=2, max_steps=6, batch_size=6, synthetic_samples=24, ema_decay=0.9)
    torch.use_deterministic_algorithms(True)
    try:
        full = SigmaTrainer(cuda_config(tmp_path, "full", **overrides), mc)
        full.train()
        first = SigmaTrainer(cuda_config(tmp_path, "split", **overrides), mc)
        first.train(until_step=3)
        del first
        second = SigmaTrainer(cuda_config(tmp_path, "split", **overrides), mc, resume=True)
        second.train()
    finally:
        torch.use_deterministic_algorithms(False)
    a, b = full.model.state_dict(), second.model.state_dict()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    assert all(torch.equal(full.ema.shadow[k], second.ema.shadow[k]) for k in full.ema.shadow)


def test_4bit_qlora_trains_saves_and_resumes(tmp_path, hf_dir):
    bnb = pytest.importorskip("bitsandbytes")
    mc = small_config(use_audio=False, backbone="hf", backbone_path=str(hf_dir))
    cfg = cuda_config(tmp_path, max_steps=8, load_in_4bit=True)
    trainer = SigmaTrainer(cfg, mc)
    quantised = [m for m in trainer.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantised, "the backbone was not loaded in 4-bit"
    assert not any(m.weight.requires_grad for m in quantised)
    result = trainer.train()
    assert math.isfinite(result["last_metrics"]["loss"])
    assert trainer.summary()["lora"] > 0
    ckpt = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert (ckpt / "adapter").is_dir()
    assert not (ckpt / "model").exists() and not (ckpt / BACKBONE_FILE).exists()  # no fp weights of a 4-bit base
    again = SigmaTrainer(cfg.replace(max_steps=10), mc, resume=True)
    assert again.step == 8
    assert again.train()["step"] == 10


def test_smolvla_4bit_lora_trains_and_its_checkpoint_loads(tmp_path, smolvla_dir):
    """The tiny SmolVLA in NF4 (its image encoder, VLM and expert linears) with LoRA on the VLM's language model.

    Trains on the GPU, and the exported checkpoint (heads + adapters, the VLA referenced) loads 4-bit again and gives
    the same plan.
    """
    bnb = pytest.importorskip("bitsandbytes")
    mc = small_config(use_audio=False, backbone="smolvla", backbone_path=str(smolvla_dir))
    trainer = SigmaTrainer(cuda_config(tmp_path, max_steps=6, load_in_4bit=True), mc)
    model = trainer.model
    quantised = {n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert any(n.startswith("vision.image_encoder.") for n in quantised)
    assert any(".lm_expert." in n for n in quantised) and any(".text_model.layers." in n for n in quantised)
    result = trainer.train()
    assert math.isfinite(result["last_metrics"]["loss"]) and trainer.summary()["lora"] > 0
    model_dir = latest_checkpoint(tmp_path / "run" / "checkpoints") / "model"
    loaded = load_checkpoint(model_dir, map_location="cuda").eval()
    assert loaded.config.backbone_4bit and any(isinstance(m, bnb.nn.Linear4bit) for m in loaded.modules())
    obs = on(make_observation(mc, batch=2), "cuda")
    obs.audio = None
    text = ["pick the cube and place it on the left"] * 2
    with torch.no_grad():
        a = model.eval()(obs, model.tokenize(text), generator=torch.Generator("cuda").manual_seed(0))
        b = loaded(obs, loaded.tokenize(text), generator=torch.Generator("cuda").manual_seed(0))
    torch.testing.assert_close(a.action.action_chunk, b.action.action_chunk, rtol=1e-4, atol=1e-4)
