# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Closed-loop control rate of Sigma on the simulated SO-101 (CPU).

    python benchmarks/bench_closed_loop.py [--checkpoint=checkpoints/sigma_so101_default] [--ticks=300]
                                           [--replan=[1,4,8]] [--threads=1] [--ros=true] [--json=true]

Rows:

* sim physics only / physics + rendering - env.step() steps/s without and with the camera image
* in-process closed loop, replan every k  - ticks/s of the full loop: camera render, Sigma stages
  (vision -> language -> action every k ticks), control_stage + safety filter + physics every tick;
  "x real time" = achieved rate / 30 Hz (>= 1: the model can drive a real 30 Hz SO-101 from this CPU)
* ROS graph (--ros)                        - one sigma-demo episode: the controller node's achieved
  rate and the per-stage latency every node reports (the sim runs in real time at 30 Hz)
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import torch

from sigma_model.safety import SafetyConfig, SafetyFilter
from sigma_sim.closed_loop import SigmaPolicy
from sigma_sim.episode_variations import episode_instruction
from sigma_sim.so101_env import HOME_QPOS, SimConfig, SO101PickPlaceEnv
from sigma_model.cli import parse_cli

REPO = Path(__file__).resolve().parents[1]


def sim_rate(render: bool, ticks: int) -> float:
    env = SO101PickPlaceEnv(SimConfig(render_observations=render))
    env.reset(seed=0)
    for _ in range(5):
        env.step(HOME_QPOS)
    t0 = time.perf_counter()
    for i in range(ticks):
        env.step(HOME_QPOS + 0.2 * np.sin(i / 15.0))
    rate = ticks / (time.perf_counter() - t0)
    env.close()
    return rate


def closed_loop_rate(model, replan_every: int, ticks: int) -> dict[str, float]:
    env = SO101PickPlaceEnv(SimConfig(image_width=model.config.image_size, image_height=model.config.image_size))
    policy = SigmaPolicy(model, replan_every=replan_every)
    seed = 10_000
    instruction = episode_instruction(0, seed)
    obs, _ = env.reset(seed=seed, instruction=instruction)
    policy.reset(instruction, seed)
    safety = SafetyFilter(SafetyConfig(plan_timeout_s=1e9))
    for _ in range(3):  # warm-up
        obs, *_ = env.step(policy.act(obs))
    for v in policy.latency.values():
        v.clear()
    t0 = time.perf_counter()
    for i in range(ticks):
        target = policy.act(obs)
        safety.feed_plan(i)
        decision = safety.step(target, obs["joint_positions"], i)
        obs, _, _, _, info = env.step(decision.command)
        if info["success"]:
            obs, _ = env.reset(seed=seed, instruction=instruction)
            policy.reset(instruction, seed)
    rate = ticks / (time.perf_counter() - t0)
    env.close()
    out = {"ticks_per_s": rate, "x_real_time": rate / 30.0}
    out.update({f"{k}_ms": 1e3 * float(np.mean(v)) for k, v in policy.latency.items() if v})
    return out


def ros_rate(checkpoint: str) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo.json"
        cmd = [sys.executable, "-m", "sigma_ros.demo", f"--checkpoint={checkpoint}", "--episodes=1",
               "--max_episode_s=8", f"--json={out}"]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not out.is_file():
            print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
            return None
        return json.loads(out.read_text())


PROG = "python benchmarks/bench_closed_loop.py"


@dataclass
class Options:
    checkpoint: str = str(REPO / "checkpoints" / "sigma_so101_default")
    ticks: int = 300
    replan: list[int] = field(default_factory=lambda: [1, 4, 8])  # control ticks between plans, each measured
    threads: int = 1
    ros: bool = False  # also run one episode through the ROS 2 graph
    json: bool = False  # print the results as JSON


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(Options, argv, PROG, description=__doc__)
    torch.set_num_threads(args.threads)
    from sigma_model import load_checkpoint

    model = load_checkpoint(args.checkpoint)
    results: dict = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                     "torch_threads": torch.get_num_threads(), "checkpoint": args.checkpoint}
    results["sim_physics_steps_per_s"] = sim_rate(False, args.ticks)
    results["sim_physics_render_steps_per_s"] = sim_rate(True, args.ticks)
    results["closed_loop"] = {k: closed_loop_rate(model, k, args.ticks) for k in args.replan}
    if args.ros:
        results["ros"] = ros_rate(args.checkpoint)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
        return 0
    print(f"sim physics only           {results['sim_physics_steps_per_s']:8.1f} steps/s "
          f"({results['sim_physics_steps_per_s'] / 30:.1f}x real time at 30 Hz)")
    print(f"sim physics + rendering    {results['sim_physics_render_steps_per_s']:8.1f} steps/s "
          f"({results['sim_physics_render_steps_per_s'] / 30:.1f}x real time)")
    for k, r in results["closed_loop"].items():
        stages = ", ".join(f"{n[:-3]} {v:.2f} ms" for n, v in r.items() if n.endswith("_ms"))
        print(f"closed loop, replan every {k:<2} {r['ticks_per_s']:8.1f} ticks/s ({r['x_real_time']:.1f}x real time; "
              f"{stages})")
    ros = results.get("ros")
    if args.ros:
        if ros is None:
            print("ROS graph: failed (see stderr)")
        else:
            lat = ros.get("latency_ms", {})
            rate = lat.get("controller_node", {}).get("rate:control_achieved")
            print(f"ROS graph controller       {rate if rate is None else f'{rate:8.2f}'} Hz achieved (target 30 Hz)")
            for node, stages in lat.items():
                vals = ", ".join(f"{s} {v:.2f} ms" for s, v in stages.items() if not s.startswith(("rate:", "mode:")))
                if vals:
                    print(f"  {node:<16} {vals}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
