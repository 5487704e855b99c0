# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The benchmark scripts' command lines: each one's ``Options`` dataclass, parsed by draccus (sigma_model.cli).

Nothing is measured here: a typical command line parses to its values, ``--help`` lists every option, a bad value is
one line and exit status 2, and a script still runs as ``python benchmarks/x.py --flag=value``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from sigma_model.cli import parse_cli
from sigma_model.testing import cli_error, cli_help

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

CASES = {  # script: (typical command line, the values it gives, a bad command line, its error)
    "bench_backbones": (["--device=cpu", "--infer=[tiny]", "--train=[tiny]", "--no_4bit=true", "--json=f.json"],
                        {"infer": ["tiny"], "train": ["tiny"], "no_4bit": True, "json": "f.json"},
                        ["--infer=[huge]"], "--infer and --train sizes must be one of tiny, real"),
    "bench_bag_replay": (["--frames=120", "--rates=[0,1,2,4]", "--storage=mcap", "--small=true"],
                         {"frames": 120, "rates": [0.0, 1.0, 2.0, 4.0], "storage": "mcap", "small": True},
                         ["--graph=threads"], "--graph must be one of inprocess, processes"),
    "bench_closed_loop": (["--ticks=30", "--replan=[2,8]", "--ros=true"], {"ticks": 30, "replan": [2, 8], "ros": True},
                          ["--replan", "1", "4"], "unrecognized arguments: 4"),
    "bench_data_loading": (["--dataset=runs/w", "--workers=[1,4]", "--batches=20"],
                           {"dataset": "runs/w", "workers": [0, 1, 4], "batches": 20},
                           ["--dataset=w", "--workers=[-1]"],
                           "--batches, --batch_size and --rounds must be positive, --workers >= 0"),
    "bench_eval": (["--samples=8", "--batch_sizes=[1,4]", "--device=cpu"],
                   {"samples": 8, "batch_sizes": [1, 4], "device": "cpu"}, ["--samples=many"], "`samples`"),
    "bench_executors": (["--load=true", "--seconds=15"], {"load": True, "seconds": 15.0},
                        ["--kinds=[fast]"], "--kinds must be one of"),
    "bench_lerobot_storage": (["--episodes=2", "--image_size=64"], {"episodes": 2, "image_size": 64},
                              ["--image-size=64"], "unrecognized arguments: --image-size=64 (--image-size is now "
                                                   "--image_size)"),
    "bench_model": (["--config=checkpoints/sigma_so101_default", "--steps=[4,1]"],
                    {"config": "checkpoints/sigma_so101_default", "steps": [4, 1]}, ["--batch=0.5"], "`batch`"),
    "bench_peers": (["--peers=[act_small]", "--iters=3"], {"peers": ["act_small"], "iters": 3},
                    ["--peers=[pi0]"], "--peers must be one of"),
    "bench_preprocess": (["--episodes=2", "--image=48x64", "--shard_size=100"],
                         {"episodes": 2, "image": "48x64", "shard_size": 100}, ["--image=64"], "--image must be HxW"),
    "bench_ros": (["--mode=composed", "--camera_hz=15", "--json=out.json"],
                  {"mode": "composed", "camera_hz": 15.0, "json": "out.json"}, ["--mode=threads"],
                  "--mode must be one of processes, composed, inprocess"),
    "bench_scaling": (["--config=c.json", "--batches=[1,8]", "--traj_lens=[16]", "--threads=2"],
                      {"config": "c.json", "batches": [1, 8], "traj_lens": [16], "threads": 2},
                      ["--image_sizes=[0,96]"], "--image_sizes must be a non-empty list of positive integers"),
    "bench_shard_checksums": (["--samples=400", "--shard_size=100"], {"samples": 400, "shard_size": 100},
                              ["--horizon"], "argument --horizon: expected one argument"),
    "bench_sim": (["--steps=60", "--json=true"], {"steps": 60, "json": True}, ["--json"],
                  "argument --json: expected one argument (a switch is written --json=true)"),
    "bench_train": (["--steps=3", "--mixed_precision=bf16", "--grad_accum=2"],
                    {"steps": 3, "mixed_precision": "bf16", "grad_accum": 2}, ["--mixed_precision=fp8"],
                    "--mixed_precision must be one of auto, no, bf16"),
}


def load(script: str):
    """Import benchmarks/<script>.py (registered in sys.modules, as dataclasses need).

    benchmarks/ goes on the path, as for a script, for the helpers the scripts share.
    """
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    if script not in sys.modules:
        spec = importlib.util.spec_from_file_location(script, BENCHMARKS / f"{script}.py")
        sys.modules[script] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[script]


def test_every_argparse_benchmark_is_covered():
    scripts = {p.stem for p in BENCHMARKS.glob("bench_*.py")}
    assert scripts == set(CASES)
    assert not [p.name for p in BENCHMARKS.glob("*.py") if "argparse" in p.read_text()]


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_command_line(script, capsys):
    module = load(script)
    argv, values, bad, message = CASES[script]
    options = parse_cli(module.Options, argv, module.PROG)
    assert {name: getattr(options, name) for name in values} == values
    text = cli_help(module.main, capsys)
    assert [f.name for f in dataclasses.fields(module.Options) if f"--{f.name} " not in text] == []
    assert module.PROG == f"python benchmarks/{script}.py"
    assert cli_error(module.main, bad, capsys).startswith(f"{module.PROG}: error: {message}")


def test_a_benchmark_runs_as_a_script_with_its_flags():
    run = subprocess.run([sys.executable, str(BENCHMARKS / "bench_preprocess.py"), "--image=64"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2 and run.stderr.splitlines() == [
        "python benchmarks/bench_preprocess.py: error: --image must be HxW, e.g. 120x160, got '64'"]
    run = subprocess.run([sys.executable, str(BENCHMARKS / "bench_preprocess.py"), "--help"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and "--shard_size int" in run.stdout


def test_scaling_benchmark_measures_each_factor_against_its_base(tmp_path, capsys):
    from sigma_model.testing import small_config

    small_config().save(tmp_path / "config.json")
    rows = load("bench_scaling").main([f"--config={tmp_path}", "--iters=1", "--train_steps=1", "--batches=[2]",
                                       "--train_batches=[2,4]", "--image_sizes=[32]", "--traj_lens=[4]"])
    table = {(r["factor"], r["value"]): r for r in rows}
    base = small_config()
    assert set(table) == {("batch", 1), ("batch", 2), ("batch", 4), ("image_size", 32), ("image_size", base.image_size),
                          ("traj_len", 4), ("traj_len", base.traj_len)}  # base values added, batch 1 for inference
    for ref in (("image_size", base.image_size), ("traj_len", base.traj_len), ("batch", 1)):
        assert table[ref]["whole_step_x"] == 1.0
    assert table[("batch", 4)]["train_x"] == 1.0 and table[("batch", 4)]["whole_step_ms"] is None  # training only
    assert table[("batch", 2)]["per_sample_ms"] == pytest.approx(table[("batch", 2)]["whole_step_ms"] / 2)
    assert all(r["train_samples_per_s"] > 0 for r in rows if r["factor"] != "batch" or r["value"] != 1)
    printed = capsys.readouterr().out
    assert printed.count("\n| ") == len(rows) + 1 and "| traj_len | 4 |" in printed
