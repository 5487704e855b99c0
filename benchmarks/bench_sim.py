# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Simulation speed of the MuJoCo SO-101 pick-and-place env (sigma_sim), CPU.

    python benchmarks/bench_sim.py [--steps=600] [--image_size=96] [--fps=30] [--json=true]

One "step" is one control period (1/fps s of simulated time: all physics
substeps plus, when rendering, one camera image). Rows:

* physics only         - env.step() with render_observations=False
* physics + rendering  - env.step() rendering the front camera every step
* render only          - env.render() alone (offscreen GL, backend shown)
* expert + physics     - the scripted expert (IK every step) driving the env

"x real time" is simulated seconds per wall second: above 1 means the
simulation can keep up with a real 30 Hz SO-101 control loop.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import platform
import time

import numpy as np

import sigma_sim
from sigma_sim.expert import ScriptedExpert
from sigma_sim.so101_env import HOME_QPOS, SimConfig, SO101PickPlaceEnv
from sigma_model.cli import parse_cli


def _targets(n: int, seed: int = 0) -> np.ndarray:
    """Return a smooth joint-target sweep around the home pose."""
    t = np.arange(n)[:, None] / 30.0
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, size=6)
    return HOME_QPOS + 0.4 * np.sin(0.5 * 2 * np.pi * t + phase)


def bench_steps(env: SO101PickPlaceEnv, steps: int) -> float:
    env.reset(seed=0)
    targets = _targets(steps)
    for a in targets[:10]:  # warm-up (GL context, caches)
        env.step(a)
    env.reset(seed=0)
    t0 = time.perf_counter()
    for a in targets:
        env.step(a)
    return steps / (time.perf_counter() - t0)


def bench_render(env: SO101PickPlaceEnv, steps: int) -> float:
    env.reset(seed=0)
    env.render()
    t0 = time.perf_counter()
    for _ in range(steps):
        env.render()
    return steps / (time.perf_counter() - t0)


def bench_expert(env: SO101PickPlaceEnv, steps: int) -> float:
    expert = ScriptedExpert(env)
    done = 0
    seed = 0
    t0 = time.perf_counter()
    while done < steps:
        env.reset(seed=seed)
        expert.reset()
        while not expert.done and done < steps:
            env.step(expert.act())
            done += 1
        seed += 1
    return done / (time.perf_counter() - t0)


PROG = "python benchmarks/bench_sim.py"


@dataclass
class Options:
    steps: int = 600  # control steps per measurement
    image_size: int = 96
    fps: float = 30.0  # control rate (Hz)
    json: bool = False  # print the results as JSON only


def main(argv: list[str] | None = None) -> dict:
    args = parse_cli(Options, argv, PROG, description=__doc__)

    base = SimConfig(control_hz=args.fps, image_width=args.image_size, image_height=args.image_size)
    results: dict = {
        "control_hz": args.fps,
        "image_size": args.image_size,
        "gl_backend": sigma_sim.GL_BACKEND,
        "cpu": platform.processor() or platform.machine(),
    }
    env = SO101PickPlaceEnv(base, render_observations=False)
    results["n_substeps"] = env.n_substeps
    results["physics_dt_s"] = env.physics_dt
    results["physics_only_steps_per_s"] = bench_steps(env, args.steps)
    results["expert_physics_steps_per_s"] = bench_expert(env, args.steps)
    env.close()
    try:
        env = SO101PickPlaceEnv(base, render_observations=True)
        results["physics_render_steps_per_s"] = bench_steps(env, args.steps)
        results["render_only_frames_per_s"] = bench_render(env, args.steps)
        env.close()
    except Exception as exc:  # no GL backend: report physics only
        results["render_error"] = f"{type(exc).__name__}: {exc}"

    if args.json:
        print(json.dumps(results, indent=2))
        return results
    hz = args.fps
    print(f"sigma_sim SO-101 pick-and-place, control {hz:g} Hz = {results['n_substeps']} substeps x "
          f"{results['physics_dt_s'] * 1e3:.3f} ms, image {args.image_size}x{args.image_size}, "
          f"GL backend {results['gl_backend']}")
    rows = [
        ("physics only", "physics_only_steps_per_s"),
        ("physics + rendering", "physics_render_steps_per_s"),
        ("render only (frames/s)", "render_only_frames_per_s"),
        ("expert + physics", "expert_physics_steps_per_s"),
    ]
    for label, key in rows:
        if key in results:
            value = results[key]
            print(f"  {label:<24s} {value:9.1f} steps/s   {value / hz:6.1f} x real time")
    if "render_error" in results:
        print(f"  rendering unavailable: {results['render_error']}")
    return results


if __name__ == "__main__":
    main()
