# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Measure the forward latency of each Sigma stage and of the whole step.

Also the parameters per workspace, and the DiT's sampling against its reference runs in the same process.

    python benchmarks/bench_model.py [--config=checkpoints/sigma_so101_default] [--batch=1] [--threads=2]
                                     [--iters=50] [--steps=[10,4,2,1]] [--device=cpu|cuda]

Figures are medians over `iters` runs after warm-up; the load average is printed before and after.
A checkpoint directory's weights are loaded (a config file gets random weights: the latency does not
depend on them). The comparisons run their candidates in turn (round robin), so a busy machine slows
all of them alike; their ratios are the robust figures:
* the action stage and the whole step with the DiT's inference sampler (eval mode: planned, scripted
  Euler steps, `sigma_model/trajectory_dit_inference.py`) against the modules' own path (the DiT in
  training mode, the sampler before it; the same maths with dropout 0);
* the DiT's sampling: inference sampler, modules' path (per-plan cache of step conditions and
  cross-attention keys and values) and Euler integration of its per-step velocity, which recomputes them;
* the action stage and the whole step at each of `--steps` integration steps, against the config's own;
* the whole step with the cross-attentions (pools, resampler, action queries) through `layers.cross_attend` against
  nn.MultiheadAttention's own call, the same maths with its per-call checks (the path before cross_attend);
* the whole step replayed from a CUDA graph (`sigma_model/cuda_graph.py`, on CUDA) against the eager step, with the
  largest difference of their outputs;
* the whole step on 1 thread against `--threads` threads (what a node's `torch_threads` chooses);
* the whole step against the sum of its stages (a ratio near 1 means no hidden overhead).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
import statistics
import sys
import time
from pathlib import Path

import torch

from sigma_model import SigmaConfig, SigmaModel, SigmaObservation, load_checkpoint
from sigma_model import layers
from sigma_model.cli import parse_cli
from sigma_model.cuda_graph import GraphedStep


def medians_ms(fns: dict, iters: int, device: torch.device) -> dict[str, float]:
    """Median wall time (ms) of each function, called round robin after 3 warm-up rounds."""
    times = {name: [] for name in fns}
    for i in range(iters + 3):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 3:
                times[name].append((time.perf_counter() - t0) * 1000.0)
    return {name: statistics.median(t) for name, t in times.items()}


def load_model(path: str | None) -> SigmaModel:
    """Return a checkpoint directory's model with its weights, else a config file's (or SigmaConfig()'s), random."""
    if path and Path(path).is_dir():
        return load_checkpoint(path)
    return SigmaModel(SigmaConfig.load(path) if path else SigmaConfig())


def modules_path(dit, fn):
    """Run fn with the DiT in training mode: its modules' own sampler, the path before the inference sampler."""
    def run():
        dit.train()
        out = fn()
        dit.eval()
        return out
    return run


def per_step_sampling(dit, context, context_valid, condition, steps: int, noise_scale: float, generator):
    """Integrate dit.velocity with Euler steps: the reference.

    It recomputes the condition, the adaLN modulation and the cross-attention keys and values at every step.
    """
    b = condition.shape[0]
    x = noise_scale * torch.randn(b, dit.traj_len, dit.action_dim, generator=generator, device=condition.device)
    for i in range(steps):
        t = torch.full((b,), i / steps, device=condition.device)
        x = x + dit.velocity(x, t, context, context_valid, condition) / steps
    return x


def through_multihead_attention(fn):
    """Run fn with every `cross_attend` call made through nn.MultiheadAttention itself: the reference."""
    def own(attn, query, context, valid=None):
        return attn(query, context, context, key_padding_mask=None if valid is None else ~valid, need_weights=False)[0]

    users = [m for name, m in list(sys.modules.items())  # every sigma_model module that calls it by name
             if name.startswith("sigma_model.") and getattr(m, "cross_attend", None) is layers.cross_attend]

    def run():
        saved = [module.cross_attend for module in users]
        for module in users:
            module.cross_attend = own
        try:
            return fn()
        finally:
            for module, f in zip(users, saved):
                module.cross_attend = f

    return run


PROG = "python benchmarks/bench_model.py"


@dataclass
class Options:
    config: str | None = None  # SigmaConfig JSON or checkpoint dir (default: SigmaConfig())
    batch: int = 1
    threads: int = 2  # torch intra-op threads (0: torch's default)
    iters: int = 50
    steps: list[int] = field(default_factory=lambda: [10, 4, 2, 1])  # integration steps to compare with the config's
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")


def main(argv: list[str] | None = None) -> None:
    args = parse_cli(Options, argv, PROG, description=__doc__)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    model = load_model(args.config).eval().to(device)
    config = model.config
    b = args.batch
    obs = SigmaObservation(
        image=torch.randint(0, 256, (b, 3, config.image_size, config.image_size), dtype=torch.uint8, device=device),
        robot_state=torch.randn(b, config.state_dim, device=device),
        audio=0.1 * torch.randn(b, config.audio_chunk_samples, device=device),
    )
    text = model.tokenize(["pick the cube and place it on the left"] * b)
    gen = torch.Generator(device=device)
    own_steps = config.diffusion_steps

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
            "whole step": lambda: model(obs, text, lang.tau, lang.memory, generator=gen.manual_seed(0)),
        }
        results = medians_ms(stages, args.iters, device)

        dit = model.action.trajectory_dit
        context = torch.randn(b, config.n_action_queries + lang.high_level_rep.shape[1], config.d_model, device=device)
        valid = torch.ones(context.shape[:2], dtype=torch.bool, device=device)
        cond = torch.randn(b, config.d_model, device=device)
        noise = config.diffusion_noise_scale
        sample = lambda: dit.sample(context, valid, cond, own_steps, gen.manual_seed(0), noise)  # noqa: E731
        sampling = medians_ms({
            "per step": lambda: per_step_sampling(dit, context, valid, cond, own_steps, noise, gen.manual_seed(0)),
            "modules": modules_path(dit, sample),
            "inference": sample,
        }, args.iters, device)
        paths = medians_ms({(name, path): fn for name in ("action_stage", "whole step")
                            for path, fn in (("modules", modules_path(dit, stages[name])),
                                             ("inference", stages[name]))}, args.iters, device)

        def at_steps(n: int, fn):
            def run():
                model.config.diffusion_steps = n
                fn()
                model.config.diffusion_steps = own_steps
            return run

        graphed = GraphedStep(model)
        graph_runs = {"eager": lambda: model(obs, text, lang.tau, lang.memory),
                      "graphed": lambda: graphed(obs, text, lang.tau, lang.memory)}
        outputs = {name: fn() for name, fn in graph_runs.items()}  # graphed: its first call records the graph
        outputs["graphed"] = graph_runs["graphed"]()  # a replay
        graph = medians_ms(graph_runs, args.iters, device)

        threads = torch.get_num_threads()

        def on_threads(n: int):
            def run():
                torch.set_num_threads(n)
                stages["whole step"]()
                torch.set_num_threads(threads)
            return run

        attention = medians_ms({"cross_attend": stages["whole step"],
                                "MultiheadAttention": through_multihead_attention(stages["whole step"])},
                               args.iters, device)
        by_threads = medians_ms({n: on_threads(n) for n in dict.fromkeys([threads, 1])}, args.iters, device)
        steps = list(dict.fromkeys([own_steps, *args.steps]))
        by_steps = medians_ms({(n, name): at_steps(n, stages[name]) for n in steps
                               for name in ("action_stage", "whole step")}, args.iters, device)

    print(f"Sigma {'config ' + args.config if args.config else 'default config'} on {device} (batch {b}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, diffusion_steps {own_steps}); load average "
          f"(1/5/15 min) before {'/'.join(f'{x:.1f}' for x in load_before)}, after "
          f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())}")
    for name, ms in results.items():
        print(f"  {name:<15} {ms:8.2f} ms" + (f"  ({1000.0 / ms:.1f} Hz)" if name == "whole step" else ""))
    print("parameters per workspace:")
    for ws in model.workspaces:
        print(f"  {ws:<15} {sum(p.numel() for p in getattr(model, ws).parameters()):>10,}")
    print(f"  {'total':<15} {sum(p.numel() for p in model.parameters()):>10,}")
    whole = results.pop("whole step")
    print(f"whole step / sum of stages = {whole / sum(results.values()):.2f}")
    print(f"DiT sampling, {own_steps} steps: per-step velocity {sampling['per step']:.2f} ms, modules' path "
          f"{sampling['modules']:.2f} ms, inference sampler {sampling['inference']:.2f} ms: inference / modules = "
          f"{sampling['inference'] / sampling['modules']:.2f}, modules / per step = "
          f"{sampling['modules'] / sampling['per step']:.2f}"
          + ("" if config.dropout == 0 else f" (dropout {config.dropout}: the modules' path also drops out)"))
    for name in ("action_stage", "whole step"):
        new, old = paths[(name, "inference")], paths[(name, "modules")]
        print(f"{name} with the inference sampler {new:.2f} ms, with the modules' path {old:.2f} ms: "
              f"inference / modules = {new / old:.2f}")
    new, old = attention["cross_attend"], attention["MultiheadAttention"]
    print(f"whole step with cross_attend {new:.2f} ms, through nn.MultiheadAttention's own call {old:.2f} ms: "
          f"cross_attend / MultiheadAttention = {new / old:.2f}")
    new, old = graph["graphed"], graph["eager"]
    part = lambda out, name: functools.reduce(getattr, name.split("."), out)  # noqa: E731
    differences = ", ".join(f"{name} {(part(outputs['graphed'], name) - part(outputs['eager'], name)).abs().max():.2e}"
                            for name in ("motor_commands", "action.action_trajectory", "language.tau"))
    print(f"whole step replayed by GraphedStep {new:.2f} ms, eager {old:.2f} ms: graphed / eager = {new / old:.2f}"
          + ("" if graphed.use_graphs else " (not CUDA: its buffers run eagerly, no graph)")
          + (f"; max |graphed - eager|: {differences}" if config.diffusion_noise_scale == 0
             else " (noise scale > 0: the draws differ, outputs not compared)"))
    print(f"whole step on 1 thread {by_threads[1]:.2f} ms, on {threads} threads {by_threads[threads]:.2f} ms: "
          f"{threads} threads / 1 thread = {by_threads[threads] / by_threads[1]:.2f}")
    print("integration steps (ratios against the config's own steps in the same rounds):")
    for n in steps:
        a, w = by_steps[(n, "action_stage")], by_steps[(n, "whole step")]
        print(f"  steps {n:>3}: action stage {a:8.2f} ms ({a / by_steps[(own_steps, 'action_stage')]:.2f}x)  "
              f"whole step {w:8.2f} ms ({w / by_steps[(own_steps, 'whole step')]:.2f}x)")


if __name__ == "__main__":
    main()
