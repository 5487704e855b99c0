# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Files the nodes read from the temp folder are private.

Parameter override files (sigma_ros.graph.overrides_file): a fresh mkdtemp directory (0700) of the process that writes
them, a new file (0600) for every node start, nothing read from the shared temp folder, all removed when that process
exits. The random-weights cache: a folder (0700) that only this user can write.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")

from sigma_ros import graph  # noqa: E402
from sigma_ros.testing import isolated_context  # noqa: E402

CONFIG = str(graph.default_config_file())
OVERRIDES = {"dry_run": True, "status_period_s": 0.73}
PLANTED = {"dry_run": False, "status_period_s": 0.73, "max_step_rad": [3.0],
           "joint_lower_limits": [-9.0] * 6, "joint_upper_limits": [9.0] * 6}


def _params_files(args: list[str]) -> list[Path]:
    return [Path(args[i + 1]) for i, a in enumerate(args) if a == "--params-file"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_planted_overrides_file_is_not_used(tmp_path, monkeypatch):
    # where the old code looked: <temp>/sigma_ros_params/overrides_<hash of the content>.yaml, reused if present
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    text = json.dumps({"/controller_node": {"ros__parameters": OVERRIDES}}, sort_keys=True, indent=1) + "\n"
    planted = tmp_path / "sigma_ros_params" / f"overrides_{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    planted.parent.mkdir()
    planted.write_text(json.dumps({"/controller_node": {"ros__parameters": PLANTED}}))

    args = graph.ros_arguments(CONFIG, [], OVERRIDES, node_name="controller_node")
    again = graph.ros_arguments(CONFIG, [], OVERRIDES, node_name="controller_node")
    config, written = _params_files(args)
    assert str(config) == CONFIG and written != planted
    assert written.read_text() == text
    assert _mode(written.parent) == 0o700 and _mode(written) == 0o600
    assert _params_files(again)[1] != written  # never reused

    from sigma_ros.controller_node import ControllerNode

    context = isolated_context("test_ros_params_files")
    node = ControllerNode(context=context, cli_args=args)
    try:
        assert node.p.dry_run is True and node.p.status_period_s == 0.73
        assert node.p.max_step_rad == [0.15]
        assert node.p.joint_lower_limits == node.p.joint_upper_limits == []  # the config file's: by name
    finally:
        node.destroy_node()
        context.try_shutdown()


def test_override_files_are_removed_when_their_process_exits():
    code = ("from sigma_ros import graph; "
            "print(graph.ros_arguments(None, [], {'seed': 1}, node_name='sim_node')[2])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    written = Path(out.stdout.strip())
    assert written.name.startswith("overrides_") and written.parent.name.startswith("sigma_ros_params_")
    assert not written.exists() and not written.parent.exists()


def test_random_weights_cache_is_this_users_only(tmp_path, monkeypatch):
    from sigma_ros.model_loader import cache_root

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("SIGMA_RANDOM_WEIGHTS_CACHE", raising=False)
    root = cache_root()
    assert root.parent == tmp_path and _mode(root) == 0o700
    root.chmod(0o777)  # anyone could plant weights there
    with pytest.raises(RuntimeError, match="only this user can write"):
        cache_root()
    if os.getuid() == 0:  # a folder of another user's
        root.chmod(0o700)
        os.chown(root, 65534, 65534)
        with pytest.raises(RuntimeError, match="only this user can write"):
            cache_root()
