# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""``python -m lerobot_robot_sigma_sim.feetech_emulator``: EmulatorConfig's flags reach the served bus."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

pytest.importorskip("scservo_sdk")

from lerobot_robot_sigma_sim import feetech_emulator  # noqa: E402
from sigma_model.testing import cli_error, cli_help  # noqa: E402

PROG = "python -m lerobot_robot_sigma_sim.feetech_emulator"


def test_served_bus_has_the_given_ids_and_positions(tmp_path):
    log = tmp_path / "bus.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "lerobot_robot_sigma_sim.feetech_emulator", "--ids=[3,7]",
                             "--positions=[100,3000]", "--speed", "500", f"--log={log}"], stdout=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("port /dev/"), line
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    final = json.loads(log.read_text().splitlines()[-1])["final"]
    assert final["Present_Position"] == {"3": 100, "7": 3000} and final["Torque_Enable"] == {"3": 0, "7": 0}


def test_help_and_bad_values(capsys):
    text = cli_help(feetech_emulator.main, capsys)
    assert all(f"{flag} " in text for flag in ("--ids", "--positions", "--speed", "--log"))
    assert cli_error(feetech_emulator.main, ["--positions=[1,2]"], capsys) == \
        f"{PROG}: error: --positions needs one position per servo id (6), got [1.0, 2.0]"
    assert cli_error(feetech_emulator.main, ["--ids=[1,300]"], capsys).startswith(f"{PROG}: error: --ids must be")
    assert cli_error(feetech_emulator.main, ["--positions", "1,2,3,4,5,6"], capsys).startswith(
        f"{PROG}: error: `positions`")
