# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the Sigma ROS 2 graph on this machine (real rclpy + Fast DDS, own ROS domain).

Prints, in one run:
* end-to-end latency from a camera Image being published to the first motor command computed
  from it (median, p90, p99, max), matched exactly: the first command equal to
  ``control_stage(plan, state, step_index=0)`` of the plan with that frame's stamp;
* the per-stage latencies the nodes report on sigma/status;
* the controller's achieved rate and tick jitter (its own timer, from its status) and the rate and
  inter-arrival jitter of the motor commands as received;
* dropped frames;
* against the in-process model step (the same stage functions, vision -> language -> action ->
  control, no ROS) timed in the same run on the same weights and the same camera frames, and the
  ratio of the graph's camera -> motor command median to it.

    python benchmarks/bench_ros.py                       # four node processes, like ros2 launch
    python benchmarks/bench_ros.py --mode=composed       # sigma-graph --composition=single_process
    python benchmarks/bench_ros.py --mode=inprocess      # the nodes in this process (with the probe)
    python benchmarks/bench_ros.py --duration=30 --camera_hz=15 --json=out.json

A plan's first command is matched at any step of the plan (plans start at the tick of their
camera frame's stamp, so a plan that took longer than half a control period starts at step 1 or
later): the latency includes the wait for the controller's next 30 Hz tick (up to 33 ms).

The controller's safety limits are widened in this run (latency is measured on exact command
matches; the safety filter is tested separately).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sigma_model.cli import check_choice, parse_cli

ROOT = Path(__file__).resolve().parent.parent

Q0 = np.array([0.05, -0.3, 0.4, 0.1, 0.0, 0.3])
INSTRUCTION = "pick up the cube and put it in the box"


def pct(values, q):
    return float(np.percentile(values, q)) if len(values) else float("nan")


def summary_ms(values) -> str:
    v = 1e3 * np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return "n/a"
    return (f"median {np.median(v):7.1f}  p90 {pct(v, 90):7.1f}  p99 {pct(v, 99):7.1f}  "
            f"max {v.max():7.1f} ms  (n={v.size})")


def frames(n: int, size: int) -> list[np.ndarray]:
    """Return the camera frames of a run (the graph and the in-process timing see the same ones)."""
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def time_inprocess(checkpoint: str, seed: int, iters: int, threads: int):
    import torch

    if threads:
        torch.set_num_threads(threads)
    from sigma_model.checkpoint import load_checkpoint
    from sigma_model.outputs import SigmaObservation

    model = load_checkpoint(checkpoint).eval()
    c = model.config
    images = frames(iters + 3, c.image_size)
    text = model.tokenize([INSTRUCTION])
    stages = {"vision_stage": [], "language_stage": [], "action_stage": [], "control_stage": [], "step": []}
    with torch.inference_mode():
        for i in range(iters + 3):
            obs = SigmaObservation(image=torch.from_numpy(images[i]).permute(2, 0, 1)[None].float() / 255,
                                   robot_state=torch.tensor(Q0, dtype=torch.float32)[None],
                                   audio=torch.zeros(1, c.audio_chunk_samples))
            t0 = time.perf_counter()
            vis = model.vision_stage(obs)
            t1 = time.perf_counter()
            lang = model.language_stage(text, vis.vision_tokens, vis.state_tokens)
            t2 = time.perf_counter()
            act = model.action_stage(lang.high_level_rep, lang.high_level_mask, lang.tau, vis.state_tokens,
                                     generator=torch.Generator().manual_seed(seed))
            t3 = time.perf_counter()
            model.control_stage(act.action_vector, act.action_chunk, act.action_trajectory, obs.robot_state, 0)
            t4 = time.perf_counter()
            if i >= 3:  # warm-up
                for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                    stages[k].append(v)
    return model, stages


def write_params(base: Path, out: Path) -> None:
    import yaml

    data = yaml.safe_load(base.read_text())
    ctrl = data["controller_node"]["ros__parameters"]
    ctrl["joint_lower_limits"] = [-100.0] * 6
    ctrl["joint_upper_limits"] = [100.0] * 6
    ctrl["max_step_rad"] = [100.0]
    ctrl["plan_timeout_s"] = 2.0
    ctrl["joint_state_timeout_s"] = 2.0
    out.write_text(yaml.safe_dump(data, sort_keys=False))


PROG = "python benchmarks/bench_ros.py"


@dataclass
class Options:
    mode: str = "processes"  # processes, composed or inprocess
    duration: float = 20.0  # seconds of camera streaming
    camera_hz: float = 10.0
    iters: int = 30  # in-process model steps to time
    seed: int = 0  # model seed (random weights) and diffusion seed
    checkpoint: str = ""  # Sigma checkpoint (default: seeded random weights)
    torch_threads: int = 1  # torch threads of the in-process timing (1 = as each node of config/sigma.yaml)
    json: str = ""  # also write the results to this JSON file

    def __post_init__(self) -> None:
        check_choice("--mode", self.mode, ("processes", "composed", "inprocess"))


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(Options, argv, PROG, description=__doc__)

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import torch

    from sigma_ros.model_loader import random_checkpoint
    from sigma_ros.testing import GraphHarness, domain_id_for

    checkpoint = args.checkpoint or str(random_checkpoint(args.seed))
    print(f"[bench_ros] checkpoint {checkpoint}; timing the in-process model step ({args.iters} iters)...", flush=True)
    model, inproc = time_inprocess(checkpoint, args.seed, args.iters, args.torch_threads)
    c = model.config

    tmp = Path(tempfile.mkdtemp(prefix="sigma_bench_ros_"))
    params = tmp / "sigma_bench.yaml"
    write_params(ROOT / "sigma_ros" / "config" / "sigma.yaml", params)
    domain = domain_id_for(f"bench_ros_{os.getpid()}")
    graph_proc = None
    overrides = {"action_node": {"diffusion_seed": args.seed}}  # (commands are matched on the published plan)
    if args.mode in ("processes", "composed"):
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
        graph_proc = subprocess.Popen([sys.executable, "-m", "sigma_ros.graph_main", f"--config_file={params}",
                                       f"--checkpoint={checkpoint}", "--log_level=warn"]
                                      + (["--composition=single_process"] if args.mode == "composed" else []),
                                      env=env)
        h = GraphHarness("bench_probe", nodes=(), domain_id=domain)
    else:
        h = GraphHarness("bench_inprocess", checkpoint=checkpoint, params_file=str(params), overrides=overrides,
                         domain_id=domain)
    try:
        deadline = time.monotonic() + 90
        while (h.pub_image.get_subscription_count() < 1 or h.pub_instruction.get_subscription_count() < 1
               or h.pub_joint.get_subscription_count() < 2):
            if graph_proc is not None and graph_proc.poll() is not None:
                raise SystemExit("sigma-graph exited during start-up")
            if time.monotonic() > deadline:
                raise SystemExit("graph did not come up in 90 s")
            time.sleep(0.2)
        h.stream_joint_states(Q0)
        h.send_instruction(INSTRUCTION)
        time.sleep(2.0)  # internal topics discovered, instruction delivered
        rng = np.random.default_rng(1)
        images = iter(frames(int(args.duration * args.camera_hz) + 10, c.image_size))
        sent: dict[tuple, float] = {}
        period = 1.0 / args.camera_hz
        t_end = time.monotonic() + args.duration
        next_t = time.monotonic()
        h.rec.clear()
        print(
            f"[bench_ros] streaming camera at {args.camera_hz:g} Hz for {args.duration:g} s ({args.mode})...",
            flush=True,
        )
        while time.monotonic() < t_end:
            h.send_audio((0.1 * rng.standard_normal(c.audio_chunk_samples)).astype(np.float32), c.audio_sample_rate)
            img = next(images)
            t_pub = time.perf_counter()
            msg = h.send_image(img)
            sent[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = t_pub
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))
        time.sleep(1.5)
        statuses = {}
        for name in ("perception_node", "language_node", "action_node", "controller_node"):
            try:
                statuses[name] = h.status_of(name, timeout=3.0)
            except TimeoutError:
                pass
        plans = h.rec.get("action_plan")
        plan_times = h.rec.times["action_plan"][: len(plans)]
        cmds = h.rec.get("motor_commands")
        cmd_times = np.asarray(h.rec.times["motor_commands"][: len(cmds)])
        cmd_vals = np.array([m.points[0].positions for m in cmds]) if cmds else np.zeros((0, 6))
    finally:
        h.close()
        if graph_proc is not None:
            graph_proc.send_signal(signal.SIGINT)
            try:
                graph_proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                graph_proc.kill()

    from sigma_ros.conversions import plan_from_msg

    # in-process again after the graph run: the machine's load during the run shows in both
    _, inproc_after = time_inprocess(checkpoint, args.seed, args.iters, args.torch_threads)
    for k, v in inproc_after.items():
        inproc[k] = inproc[k] + v

    latencies, plan_lat, unmatched = [], [], 0
    q = torch.tensor(Q0, dtype=torch.float32)[None]
    for plan, t_plan in zip(plans, plan_times):
        key = (plan.header.stamp.sec, plan.header.stamp.nanosec)
        if key not in sent:
            continue
        plan_lat.append(t_plan - sent[key])
        act, _, _ = plan_from_msg(plan, c)
        with torch.inference_mode():
            want = [model.control_stage(act.action_vector, act.action_chunk, act.action_trajectory, q, k)[0]
                    .double().numpy() for k in range(c.traj_len)]
        idx = np.nonzero(cmd_times >= t_plan - 0.005)[0]
        hit = next((i for i in idx[:10] if any(np.allclose(cmd_vals[i], w, atol=1e-5) for w in want)), None)
        if hit is None:
            unmatched += 1
            continue
        latencies.append(cmd_times[hit] - sent[key])

    ctrl = statuses.get("controller_node")
    cm = dict(zip(ctrl.metric_names, ctrl.metric_values)) if ctrl else {}
    cr = dict(zip(ctrl.rate_names, ctrl.rates_hz)) if ctrl else {}
    iv = np.diff(cmd_times[cmd_times > cmd_times[0] + 1.0]) if len(cmd_times) > 40 else np.zeros(0)
    results = {
        "mode": args.mode,
        "camera_hz": args.camera_hz,
        "duration_s": args.duration,
        "frames_sent": len(sent),
        "plans": len(plans),
        "commanded": len(latencies),
        "superseded": unmatched,
        "e2e_latency_ms": {
            "median": 1e3 * float(np.median(latencies)) if latencies else None,
            "p99": 1e3 * pct(latencies, 99) if latencies else None,
        },
        "camera_to_plan_ms": {
            "median": 1e3 * float(np.median(plan_lat)) if plan_lat else None,
            "p99": 1e3 * pct(plan_lat, 99) if plan_lat else None,
        },
        "controller": {
            "rate_hz_node": cr.get("control_achieved"),
            "jitter_std_ms_node": cm.get("control_jitter_std_ms"),
            "jitter_p99_ms_node": cm.get("control_jitter_p99_ms"),
            "rate_hz_received": float(1.0 / iv.mean()) if iv.size else None,
            "interarrival_std_ms": 1e3 * float(iv.std()) if iv.size else None,
        },
        "inprocess_ms": {k: {"median": 1e3 * float(np.median(v)), "p99": 1e3 * pct(v, 99)} for k, v in inproc.items()},
        "node_stage_latency_ms": {
            n: dict(zip(s.stage_names, [round(x, 2) for x in s.stage_latency_mean_ms])) for n, s in statuses.items()
        },
        "dropped_inputs": {n: dict(zip(s.drop_names, [int(x) for x in s.drop_counts])) for n, s in statuses.items()},
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }

    print()
    print(f"Sigma ROS 2 graph benchmark ({args.mode}, camera {args.camera_hz:g} Hz, {args.duration:g} s, "
          f"{os.cpu_count()} CPUs, default SigmaConfig d_model={c.d_model})")
    print(f"  frames sent {len(sent)}, plans {len(plans)} ({len(sent) - len(plans)} frames not planned: "
          f"skipped under load or in flight), plans commanded {len(latencies)} "
          f"({unmatched} superseded by a newer plan before a control tick)")
    print(f"  camera -> motor command  {summary_ms(latencies)}")
    print(f"  camera -> action plan    {summary_ms(plan_lat)}")
    step, pipeline = np.median(inproc["step"]), np.median(inproc["step"]) - np.median(inproc["control_stage"])
    if latencies:
        results["ratio_command_to_inprocess_step"] = float(np.median(latencies) / step)
        print(
            f"  ratio camera -> motor command / in-process model step (medians): "
            f"{results['ratio_command_to_inprocess_step']:.2f} (goal 1.2; includes the wait for the next control tick)"
        )
    if plan_lat:
        results["ratio_plan_to_inprocess_stages"] = float(np.median(plan_lat) / pipeline)
        print(f"  ratio camera -> action plan / in-process vision+language+action (medians): "
              f"{results['ratio_plan_to_inprocess_stages']:.2f}")
    print(f"  in-process model (same weights, no ROS, torch threads {torch.get_num_threads()}, "
          f"{args.iters} steps before + {args.iters} after the graph run):")
    for k, v in inproc.items():
        print(f"    {k:15s} {summary_ms(v)}")
    rate_node = cr.get("control_achieved")
    print(
        f"  controller (target {30.0:g} Hz): node timer {rate_node if rate_node is None else round(rate_node, 2)} Hz, "
        f"tick jitter std {cm.get('control_jitter_std_ms', float('nan')):.2f} ms, "
        f"p99 |dt - T| {cm.get('control_jitter_p99_ms', float('nan')):.2f} ms"
    )
    if iv.size:
        print(f"  motor commands received: {1.0 / iv.mean():.2f} Hz, inter-arrival std {1e3 * iv.std():.2f} ms, "
              f"p99 {1e3 * pct(iv, 99):.1f} ms")
    for n, s in statuses.items():
        lat = ", ".join(f"{a} {b:.1f}" for a, b in zip(s.stage_names, s.stage_latency_mean_ms))
        print(f"  {n:16s} mode {s.mode:8s} mean stage ms: {lat}; dropped inputs {s.dropped_inputs}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if latencies else 1


if __name__ == "__main__":
    raise SystemExit(main())
