# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Training throughput (samples/s) and peak memory of `sigma-train` for the default configuration.

    python benchmarks/bench_train.py [--steps=10] [--warmup=2] [--batch_size=10] [--device=cpu|cuda]
                                     [--threads=N] [--mixed_precision=auto|no|bf16] [--grad_accum=1]

Default SigmaConfig() and TrainingConfig() (LoRA r=16 on q/k/v/o, TRAF + TSAC, two-pass memory,
DiT flow loss, AdamW), on deterministic synthetic windows of the default shape (so it needs no
shards). Timed optimiser steps follow `--warmup` untimed ones; the checkpoint save is timed once.
Peak memory: CPU = the process's peak resident set size (resource.getrusage ru_maxrss; torch's
allocations are not visible to tracemalloc), also shown as growth over the RSS before training;
CUDA = torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import os
import resource
import sys
import tempfile
import time

import torch

from sigma_model import SigmaConfig
from sigma_model.training.configuration_training import TrainingConfig
from sigma_model.training.trainer import SigmaTrainer
from sigma_model.cli import check_choice, parse_cli


def rss_mib() -> float:
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


PROG = "python benchmarks/bench_train.py"


@dataclass
class Options:
    steps: int = 10
    warmup: int = 2
    batch_size: int = field(default_factory=lambda: TrainingConfig().batch_size)
    grad_accum: int = 1
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    threads: int | None = None  # torch.set_num_threads (CPU)
    mixed_precision: str = "auto"  # auto, no or bf16
    json: bool = False  # print one JSON line instead of text

    def __post_init__(self) -> None:
        check_choice("--mixed_precision", self.mixed_precision, ("auto", "no", "bf16"))


def main(argv: list[str] | None = None) -> dict:
    args = parse_cli(Options, argv, PROG, description=__doc__)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model_config = SigmaConfig()
    steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainingConfig(
            synthetic_samples=args.batch_size * args.grad_accum * steps, batch_size=args.batch_size,
            grad_accum_steps=args.grad_accum, max_steps=steps, warmup_steps=min(TrainingConfig().warmup_steps, steps),
            device=device.type, mixed_precision=args.mixed_precision, output_dir=tmp, save_every=0,
        )
        rss_before = rss_mib()
        trainer = SigmaTrainer(config, model_config)
        rss_model = rss_mib()
        for _ in range(args.warmup):
            trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        t1 = time.perf_counter()
        trainer.save()
        save_s = time.perf_counter() - t1
        counts = trainer.summary()
    samples = args.steps * args.batch_size * args.grad_accum
    result = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(), "batch_size": args.batch_size, "grad_accum": args.grad_accum,
        "mixed_precision": args.mixed_precision, "timed_steps": args.steps,
        "samples_per_s": samples / elapsed, "s_per_step": elapsed / args.steps, "checkpoint_save_s": save_s,
        "params_total": counts["total"], "params_trainable": counts["trainable"], "params_lora": counts["lora"],
    }
    if device.type == "cuda":
        result["peak_cuda_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    result["peak_rss_mib"] = peak_rss_mib()
    result["rss_growth_mib"] = result["peak_rss_mib"] - rss_before
    result["rss_after_model_mib"] = rss_model
    if args.json:
        print(json.dumps(result))
    else:
        print(f"sigma-train benchmark on {result['device']} ({result['threads']} threads), default SigmaConfig "
              f"({counts['total']:,} params, {counts['trainable']:,} trainable, LoRA {counts['lora']:,})")
        print(f"  batch {args.batch_size} x accum {args.grad_accum}, mixed precision {args.mixed_precision}: "
              f"{result['samples_per_s']:.1f} samples/s, {1000 * result['s_per_step']:.0f} ms/step "
              f"over {args.steps} steps; checkpoint save {1000 * save_s:.0f} ms")
        if "peak_cuda_allocated_mib" in result:
            print(f"  peak CUDA memory allocated: {result['peak_cuda_allocated_mib']:.1f} MiB")
        print(
            f"  peak RSS {result['peak_rss_mib']:.0f} MiB "
            f"(+{result['rss_growth_mib']:.0f} MiB over the process before the model)"
        )
    return result


if __name__ == "__main__":
    main()
