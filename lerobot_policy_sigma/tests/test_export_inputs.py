# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""sigma-from-lerobot given something that is no saved LeRobot policy: one line naming what it is, exit 2."""

from __future__ import annotations

import json

from sigma_model import SigmaModel, save_checkpoint
from sigma_model.testing import cli_error, small_config

from lerobot_policy_sigma.export import main as export_main


def test_a_plain_sigma_checkpoint_is_named_as_one(tmp_path, capsys):
    """Before, its config.json (no LeRobot 'type') ended in a draccus ParsingError traceback."""
    checkpoint = save_checkpoint(SigmaModel(small_config()), tmp_path / "sigma")
    error = cli_error(export_main, [f"--pretrained={checkpoint}", f"--output={tmp_path / 'out'}"], capsys)
    assert error == (f"sigma-from-lerobot: error: {checkpoint} is a plain Sigma checkpoint, not a saved LeRobot "
                     f"policy: it needs no conversion, use it directly (e.g. sigma-closed-loop "
                     f"--checkpoint={checkpoint})")
    assert not (tmp_path / "out").exists()


def test_other_configs_are_one_line(tmp_path, capsys):
    directory = tmp_path / "policy"
    directory.mkdir()
    for config, words in (({"d_model": "wide"}, "is not a saved LeRobot policy (its config.json names no policy type)"),
                          ({"type": "no_such_policy"}, "config.json is not a LeRobot policy config: "),
                          ({"type": "act", "no_such_field": 3}, "config.json is not a LeRobot policy config: ")):
        (directory / "config.json").write_text(json.dumps(config))
        error = cli_error(export_main, [f"--pretrained={directory}", f"--output={tmp_path / 'out'}"], capsys)
        assert error.startswith(f"sigma-from-lerobot: error: {directory}") and words in error, error
    assert not (tmp_path / "out").exists()
