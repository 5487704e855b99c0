# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""CPU use of the composed Sigma graph (``sigma-graph --composition=single_process``) per executor.

For each executor kind (``SIGMA_EXECUTOR``: sigma_ros.executors.KINDS) starts the four nodes
composed in one process on seeded random weights, waits until they are active, then measures the
process's CPU time (user + system, /proc) over a window: idle (no inputs: only the controller's
30 Hz timer and the 1 Hz status timers run) and, with --load, while a probe streams joint states
at 50 Hz and camera frames at 10 Hz. 100 % = one core busy.

    python benchmarks/bench_executors.py                 # idle, 10 s per executor
    python benchmarks/bench_executors.py --load=true --seconds=15
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os
import signal
import subprocess
import sys
import time

import numpy as np
from sigma_model.cli import check_choice, parse_cli

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def measure(kind: str, seconds: float, load: bool) -> float:
    from sigma_ros.testing import GraphHarness, domain_id_for

    domain = domain_id_for(f"bench_executors_{kind}")
    env = dict(os.environ, SIGMA_EXECUTOR=kind, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1")
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    proc = subprocess.Popen([sys.executable, "-m", "sigma_ros.graph_main", "--composition=single_process",
                             "--log_level=warn"],
                            env=env, stdout=subprocess.PIPE, text=True)
    h = None
    try:
        for line in proc.stdout:  # "[sigma-graph] ... active (one process)"
            if "active (one process)" in line:
                break
        else:
            raise SystemExit(f"sigma-graph ({kind}) exited with {proc.wait()}")
        if load:
            h = GraphHarness(f"bench_executors_probe_{kind}", nodes=(), domain_id=domain)
            h.stream_joint_states(np.zeros(6))
            h.send_instruction("pick the cube")
            h.probe.create_timer(0.1, lambda: h.send_image(np.full((96, 96, 3), 60, np.uint8)))
        time.sleep(2.0)
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        return (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0)
    finally:
        if h is not None:
            h.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


PROG = "python benchmarks/bench_executors.py"


def _kinds() -> tuple[str, ...]:
    from sigma_ros.executors import KINDS

    return KINDS


@dataclass
class Options:
    seconds: float = 10.0
    load: bool = False  # stream joint states and camera frames while measuring
    kinds: list[str] = field(default_factory=lambda: list(_kinds()))  # executor kinds to measure

    def __post_init__(self) -> None:
        for kind in self.kinds:
            check_choice("--kinds", kind, _kinds())


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(Options, argv, PROG, description=__doc__)
    print(f"composed graph CPU use ({'10 Hz camera + 50 Hz joint states' if args.load else 'idle'}, "
          f"{args.seconds:g} s, {os.cpu_count()} CPUs):")
    for kind in args.kinds:
        print(f"  {kind:22s} {100 * measure(kind, args.seconds, args.load):6.1f} % of one core", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
