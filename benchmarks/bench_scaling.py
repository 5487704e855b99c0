# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""How inference latency and training throughput grow with batch size, image size and trajectory length.

    python benchmarks/bench_scaling.py [--config=checkpoints/sigma_so101_default] [--iters=20] [--train_steps=4]
        [--batches=[1,4,16]] [--train_batches=[8,32,64]] [--image_sizes=[64,96,128]] [--traj_lens=[8,16,32]]
        [--threads=1] [--device=cpu|cuda]

One factor at a time from the base config (a checkpoint directory's config.json or a config file, random
weights: latency does not depend on them). Inference: the whole step (vision, language, action, control
stages), median ms at each inference batch. Training: samples/s of `SigmaTrainer` steps (LoRA, TRAF +
TSAC, DiT flow loss, AdamW) on synthetic windows of the variant's shapes, at each training batch. Every
variant runs round robin with the base in the same process, so a busy machine slows all alike; the ratios
against the base are the robust figures. Prints a Markdown table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import os
import tempfile
from pathlib import Path

import torch

from sigma_model import SigmaConfig, SigmaModel, SigmaObservation
from sigma_model.cli import parse_cli
from sigma_model.training.configuration_training import TrainingConfig
from sigma_model.training.trainer import SigmaTrainer

from bench_model import medians_ms  # benchmarks/ is the script's directory

PROG = "python benchmarks/bench_scaling.py"


@dataclass
class Options:
    config: str = "checkpoints/sigma_so101_default"  # a checkpoint directory (its config.json) or a config file
    iters: int = 20  # timed inference rounds (medians) after 3 warm-up rounds
    train_steps: int = 4  # timed training rounds (medians) after 3 warm-up rounds
    batches: list[int] = field(default_factory=lambda: [1, 4, 16])  # inference batch sizes
    train_batches: list[int] = field(default_factory=lambda: [8, 32, 64])  # training batch sizes
    image_sizes: list[int] = field(default_factory=lambda: [64, 96, 128])
    traj_lens: list[int] = field(default_factory=lambda: [8, 16, 32])
    threads: int = 1  # torch threads (1: as every node of config/sigma.yaml)
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("batches", "train_batches", "image_sizes", "traj_lens"):
            values = getattr(self, name)
            if not values or min(values) < 1:
                raise ValueError(f"--{name} must be a non-empty list of positive integers, got {values}")


def base_config(path: str) -> SigmaConfig:
    p = Path(path)
    return SigmaConfig.load(p / "config.json" if p.is_dir() else p)


def variants(base: SigmaConfig, args: Options) -> dict[tuple[str, int], SigmaConfig]:
    """(factor, value) -> model config; batch variants keep the base config."""
    out = {("image_size", s): replace(base, image_size=s) for s in args.image_sizes}
    for n in args.traj_lens:  # the plan runs at most n ticks and the chunk is never longer than the trajectory
        out[("traj_len", n)] = replace(base, traj_len=n, chunk_len=min(base.chunk_len, n),
                                       n_action_steps=min(base.n_action_steps, n))
    return out


def step_fn(config: SigmaConfig, batch: int, device: torch.device):
    """One whole Sigma step (with its carried tau and memory) of a random model at `batch`."""
    torch.manual_seed(0)
    model = SigmaModel(config).eval().to(device)
    obs = SigmaObservation(
        image=torch.randint(0, 256, (batch, 3, config.image_size, config.image_size), dtype=torch.uint8, device=device),
        robot_state=torch.randn(batch, config.state_dim, device=device),
        audio=torch.zeros(batch, config.audio_chunk_samples, device=device),
    )
    text = model.tokenize(["pick the cube and place it on the left"] * batch)
    gen = torch.Generator(device=device)
    with torch.inference_mode():
        out = model(obs, text, None, None, generator=gen.manual_seed(0))

    def run():
        with torch.inference_mode():
            model(obs, text, out.language.tau, out.language.memory, generator=gen.manual_seed(0))
    return run


def train_fn(config: SigmaConfig, batch: int, device: torch.device, tmp: str, rounds: int):
    training = TrainingConfig(synthetic_samples=batch * (rounds + 3), batch_size=batch, max_steps=rounds + 3,
                              warmup_steps=1, device=device.type, output_dir=tmp, save_every=0)
    trainer = SigmaTrainer(training, config)
    return trainer.train_step


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_cli(Options, argv, PROG, description=__doc__)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    base = base_config(args.config)
    load = os.getloadavg()
    # each factor's values, with the base value (the reference of its ratios) always among them
    mid = args.train_batches[len(args.train_batches) // 2]
    refs = {"batch": (1, mid), "image_size": (base.image_size,) * 2, "traj_len": (base.traj_len,) * 2}
    models = variants(base, replace(args, image_sizes=sorted({*args.image_sizes, base.image_size}),
                                    traj_lens=sorted({*args.traj_lens, base.traj_len})))
    infer = {("batch", b): step_fn(base, b, device) for b in sorted({*args.batches, 1})}
    infer.update({k: step_fn(c, 1, device) for k, c in models.items()})
    latency = {k: ms / 1e3 for k, ms in medians_ms(infer, args.iters, device).items()}
    with tempfile.TemporaryDirectory() as tmp:
        train = {("batch", b): (b, train_fn(base, b, device, f"{tmp}/b{b}", args.train_steps))
                 for b in sorted({*args.train_batches})}
        train.update({k: (mid, train_fn(c, mid, device, f"{tmp}/{k[0]}{k[1]}", args.train_steps))
                      for k, c in models.items()})
        step_s = {k: ms / 1e3 for k, ms in medians_ms({k: fn for k, (_, fn) in train.items()}, args.train_steps,
                                                      device).items()}
    throughput = {k: train[k][0] / s for k, s in step_s.items()}
    print(f"Sigma scaling from {args.config} (d_model {base.d_model}, image {base.image_size}, traj_len "
          f"{base.traj_len}, {base.diffusion_steps} DiT steps) on {device}, {torch.get_num_threads()} thread(s), torch "
          f"{torch.__version__}; load average before {'/'.join(f'{x:.1f}' for x in load)}, after "
          f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"Whole step at batch 1 and training at batch {mid} unless the factor is the batch; x base: against the "
          "factor's base value (batch 1 / %d), measured round robin in this process.\n" % mid)
    print("| factor | value | whole step (ms) | x base | per sample (ms) | training (samples/s) | x base |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for factor, (infer_ref, train_ref) in refs.items():
        for v in sorted({v for f, v in [*latency, *throughput] if f == factor}):
            ms, sps = latency.get((factor, v)), throughput.get((factor, v))
            per_sample = None if ms is None else ms / (v if factor == "batch" else 1)
            rows.append({"factor": factor, "value": v, "whole_step_ms": None if ms is None else 1e3 * ms,
                         "whole_step_x": None if ms is None else ms / latency[(factor, infer_ref)],
                         "per_sample_ms": None if per_sample is None else 1e3 * per_sample,
                         "train_samples_per_s": sps,
                         "train_x": None if sps is None else sps / throughput[(factor, train_ref)]})
            r = rows[-1]
            cells = [f"{r[k]:.2f}" if r[k] is not None else "-"
                     for k in ("whole_step_ms", "whole_step_x", "per_sample_ms", "train_samples_per_s", "train_x")]
            print(f"| {factor} | {v} | " + " | ".join(cells) + " |")
    return rows


if __name__ == "__main__":
    main()
