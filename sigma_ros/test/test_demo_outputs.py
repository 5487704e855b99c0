# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""sigma-demo's --json and --report: checked before any episode, an existing result kept unless --overwrite=true.

No ROS graph runs here: the demo's run is replaced by one that records that it ran.
"""

from __future__ import annotations

import json

import pytest

from sigma_model.evaluation.report import REPORT_NAME
from sigma_model.testing import cli_error

from sigma_ros import demo


@pytest.fixture
def runs(monkeypatch):
    """Replace the demo's run (the ROS graph) by one result; return the list of runs started."""
    started = []
    result = {"episodes": 1, "successes": 0, "episodes_detail": [
        {"seed": 10_000, "instruction": "pick the cube and place it on the left", "success": False, "step": 30,
         "time_to_success_s": None, "was_lifted": False, "mean_abs_delta_command": 0.01, "mean_sq_jerk": 0.001,
         "latency_ms": {}}], "checkpoint": "ckpt", "single_process": True}
    monkeypatch.setattr(demo, "run_demo", lambda cfg: started.append(cfg) or result)
    return started


def test_existing_results_are_kept_unless_overwrite(tmp_path, runs, capsys):
    """Before, --report and --json silently replaced an earlier run's files."""
    report_dir, out = tmp_path / "report", tmp_path / "demo.json"
    report_dir.mkdir()
    (report_dir / REPORT_NAME).write_text('{"precious": "report"}')
    out.write_text('{"precious": "json"}')
    error = cli_error(demo.main, [f"--report={report_dir}"], capsys)
    assert error == f"sigma-demo: error: {report_dir / REPORT_NAME} exists already; pass --overwrite to replace it"
    error = cli_error(demo.main, [f"--json={out}"], capsys)
    assert error == f"sigma-demo: error: {out} exists already; pass --overwrite=true to replace it"
    assert runs == [] and json.loads(out.read_text()) == {"precious": "json"}
    assert json.loads((report_dir / REPORT_NAME).read_text()) == {"precious": "report"}
    assert demo.main([f"--report={report_dir}", f"--json={out}", "--overwrite=true"]) == 0 and len(runs) == 1
    assert json.loads(out.read_text())["episodes"] == 1
    assert json.loads((report_dir / REPORT_NAME).read_text())["meta"]["mode"] == "closed_loop_ros"


def test_unwritable_outputs_are_one_line_before_any_episode(tmp_path, runs, monkeypatch, capsys):
    """Before, a --json in a missing directory or a file as --report ran every episode, then a traceback."""
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for argv, words in (([f"--report={afile}"], f"{afile} is a file, not a directory for the report"),
                        ([f"--json={tmp_path}"], f"--json {tmp_path} is a directory, not a file"),
                        ([f"--json={afile / 'out.json'}"], str(afile))):
        error = cli_error(demo.main, argv, capsys)
        assert error.startswith("sigma-demo: error: ") and words in error, error
    assert runs == [] and afile.read_text() == "mine"
    out = tmp_path / "new" / "dir" / "demo.json"  # a missing directory is made before the run
    run = demo.run_demo
    monkeypatch.setattr(demo, "run_demo", lambda cfg: run(cfg) if out.parent.is_dir() else pytest.fail("not made"))
    assert demo.main([f"--json={out}"]) == 0 and json.loads(out.read_text())["episodes"] == 1
