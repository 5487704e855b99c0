# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""``benchmarks/gpu_checks.sh``, the one prepared run of every GPU measurement, in its CPU smoke mode.

A lent GPU machine gives a session about 15 minutes, so the script must work the first time it runs there: here it
runs every check, tiny, on the CPU, with the same steps (install, config, each check under its limit, logs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_checks.sh"
CHECKS = ("env", "test_cuda", "bench_model", "bench_train_b2", "bench_scaling")


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_gpu_checks_run_every_check_and_keep_each_log(tmp_path):
    out = tmp_path / "out"
    result = run_script("run", str(out), env={"SIGMA_GPU_CHECKS_SMOKE": "1", "PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"every check passed (logs in {out})" in result.stdout
    for name in CHECKS:
        assert f"== {name}: exit 0" in result.stdout, (name, result.stdout[-3000:])
        assert (out / f"{name}.log").stat().st_size > 0, name
    # the shipped config without its text encoder (cached per instruction, not part of a step)
    bench_model = (out / "bench_model.log").read_text()
    assert "whole step" in bench_model
    config = json.loads(Path(bench_model.split("Sigma config ", 1)[1].split()[0]).read_text())
    assert config["text_encoder"] is None and config["image_size"] == 96
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.log" for name in CHECKS)
    assert "samples/s" in (out / "bench_train_b2.log").read_text()
    assert "| image_size | 64 |" in (out / "bench_scaling.log").read_text()
    assert "skipped" in (out / "test_cuda.log").read_text()  # no GPU here: the CUDA tests skip, they do not fail


def test_gpu_checks_report_a_failing_check_and_go_on(tmp_path):
    """A check that fails is reported with its exit status, the checks after it still run, and the run says which."""
    out = tmp_path / "out"
    result = run_script("run", str(out), env={"SIGMA_GPU_CHECKS_SMOKE": "1", "PYTHON": sys.executable,
                                              "SIGMA_GPU_CHECKS_ONLY": "env,bench_model,bench_train",
                                              "SIGMA_GPU_CHECKS_DEVICE": "cuda", "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 1, result.stdout + result.stderr
    for line in ("== env: exit 0", "== bench_model: exit 1", "== bench_train_b2: exit 1",
                 f"failed: bench_model bench_train_b2 (logs in {out})"):
        assert line in result.stdout, (line, result.stdout[-3000:])
    assert "NVIDIA" in (out / "bench_model.log").read_text()  # the benchmark's own error (no GPU), kept in its log
    assert "test_cuda" not in result.stdout and "bench_scaling" not in result.stdout  # not among the checks asked for


def test_gpu_checks_usage():
    result = run_script()
    assert result.returncode == 2 and "usage: bash benchmarks/gpu_checks.sh wheels | run OUTDIR" in result.stderr
