# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Forward latency of each Sigma stage and of the whole step, and parameters per workspace.

    python benchmarks/bench_model.py [--batch 1] [--iters 50] [--device cpu|cuda]

Figures are medians over `iters` runs after warm-up, in the same process; the last line gives
the whole step against the sum of its stages (a ratio near 1 means no hidden overhead).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sigma_model import SigmaConfig, SigmaModel, SigmaObservation


def median_ms(fn, iters: int, device: torch.device) -> float:
    times = []
    for i in range(iters + 3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = SigmaConfig()
    model = SigmaModel(config).eval().to(device)
    b = args.batch
    obs = SigmaObservation(
        image=torch.randint(0, 256, (b, 3, config.image_size, config.image_size), dtype=torch.uint8, device=device),
        robot_state=torch.randn(b, config.state_dim, device=device),
        audio=0.1 * torch.randn(b, config.audio_chunk_samples, device=device),
    )
    text = model.tokenize(["pick the cube and place it on the left"] * b)
    gen = torch.Generator(device=device)

    with torch.inference_mode():
        vis = model.vision_stage(obs)
        lang = model.language_stage(text, vis.vision_tokens, vis.state_tokens)
        act = model.action_stage(lang.high_level_rep, lang.high_level_mask, lang.tau, vis.state_tokens, generator=gen)
        stages = {
            "vision_stage": lambda: model.vision_stage(obs, lang.tau),
            "language_stage": lambda: model.language_stage(text, vis.vision_tokens, vis.state_tokens, lang.memory),
            "action_stage": lambda: model.action_stage(
                lang.high_level_rep, lang.high_level_mask, lang.tau, vis.state_tokens, generator=gen.manual_seed(0)),
            "control_stage": lambda: model.control_stage(
                act.action_vector, act.action_chunk, act.action_trajectory, obs.robot_state, 0),
        }
        results = {name: median_ms(fn, args.iters, device) for name, fn in stages.items()}
        whole = median_ms(
            lambda: model(obs, text, lang.tau, lang.memory, generator=gen.manual_seed(0)), args.iters, device
        )

    print(f"Sigma default config on {device} (batch {b}, torch {torch.__version__}, {torch.get_num_threads()} threads)")
    for name, ms in results.items():
        print(f"  {name:<15} {ms:8.2f} ms")
    print(f"  {'whole step':<15} {whole:8.2f} ms  ({1000.0 / whole:.1f} Hz)")
    print("parameters per workspace:")
    for ws in model.workspaces:
        print(f"  {ws:<15} {sum(p.numel() for p in getattr(model, ws).parameters()):>10,}")
    print(f"  {'total':<15} {sum(p.numel() for p in model.parameters()):>10,}")
    print(f"whole step / sum of stages = {whole / sum(results.values()):.2f}")


if __name__ == "__main__":
    main()
