# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""A bad parameter file is one line and exit status 2, never a traceback or a restart loop.

sigma-graph checks the file's YAML and its node sections before any node starts; a node refuses a parameter it does not
declare (a misspelt safety limit would otherwise fall back to its default) and a parameter file rcl cannot parse; the
single-process graph reports a node's configuration error as the node processes do.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")

from sigma_model.cli import parse_cli  # noqa: E402

from sigma_ros import graph, graph_main  # noqa: E402
from sigma_ros.graph import GraphConfig  # noqa: E402
from sigma_ros.node_base import NodeConfigError  # noqa: E402
from sigma_ros.testing import domain_id_for, isolated_context  # noqa: E402

TRUNCATED = '/**:\n  ros__parameters:\n    checkpoint: "\n'
MISSPELT_PARAMETER = "controller_node:\n  ros__parameters:\n    max_step_rd: [0.05]\n"


def _file(tmp_path, text: str) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, error", [
    (TRUNCATED, "not valid YAML at line 4, column 1: found unexpected end of stream"),
    ("", "the file is not a mapping of node sections"),
    ("controler_node:\n  ros__parameters:\n    rate_hz: 30.0\n",
     "unknown node section 'controler_node' (did you mean controller_node?)"),
    ("/ns/controler_node:\n  ros__parameters: {}\n", "unknown node section '/ns/controler_node'"),
    ("controller_node:\n  rate_hz: 30.0\n", "section 'controller_node/rate_hz' is not a mapping of node sections"),
    ("controller_node:\n  ros__parameters:\n", "controller_node.ros__parameters must be a mapping of parameters"),
])
def test_sigma_graph_refuses_a_bad_parameter_file_before_starting(tmp_path, text, error):
    """resolve(): a ValueError, which main() prints as one line with exit status 2."""
    path = _file(tmp_path, text)
    with pytest.raises(ValueError) as err:
        graph_main.resolve(parse_cli(GraphConfig, [f"--config_file={path}"], "sigma-graph"))
    assert str(err.value).startswith(f"parameter file {path}: ") and error in str(err.value), err.value


def test_sigma_graph_accepts_the_shipped_file_and_namespaced_sections(tmp_path):
    names = [s.name for s in graph.graph_nodes(robot="any")]
    graph_main.check_params_file(str(graph.default_config_file()), names)
    graph_main.check_params_file(_file(tmp_path, "/**:\n  ros__parameters: {device: cpu}\n"
                                                 "/controller_node:\n  ros__parameters: {rate_hz: 30.0}\n"
                                                 "/**/action_node:\n  ros__parameters: {}\n"
                                                 "ns:\n  language_node:\n    ros__parameters: {}\n"), names)


def _node_process(tmp_path, text: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sigma_ros.controller_node", "--ros-args", "--params-file",
                           _file(tmp_path, text)], capture_output=True, text=True, timeout=120)


def test_a_node_refuses_a_misspelt_parameter(tmp_path):
    run = _node_process(tmp_path, MISSPELT_PARAMETER)
    assert run.returncode == 2, run.stderr
    assert ("controller_node: cannot start: unknown parameter 'max_step_rd' (did you mean 'max_step_rad'?)"
            in run.stderr)
    assert "Traceback" not in run.stderr


def test_a_node_given_an_unparsable_parameter_file_exits_2_without_a_traceback(tmp_path):
    run = _node_process(tmp_path, TRUNCATED)
    assert run.returncode == 2, run.stderr
    assert "controller_node: cannot start: failed to initialize rcl: Couldn't parse params file" in run.stderr
    assert "Traceback" not in run.stderr and "parse.c" not in run.stderr


def test_create_nodes_names_the_node_of_a_configuration_error(tmp_path):
    context = isolated_context("test_ros_param_errors", domain_id_for("test_ros_param_errors"))
    spec = graph.NODE_BY_NAME["controller_node"]
    try:
        for text, error in [(TRUNCATED, "Couldn't parse params file"),
                            (MISSPELT_PARAMETER, "unknown parameter 'max_step_rd'")]:
            with pytest.raises(NodeConfigError, match=f"^controller_node: cannot start: .*{error}"):
                graph_main.create_nodes([spec], _file(tmp_path, text), [], context=context)
    finally:
        context.try_shutdown()


def test_sigma_graph_single_process_with_a_mistyped_parameter_is_one_line_and_exit_code_2(tmp_path):
    path = _file(tmp_path, 'controller_node:\n  ros__parameters:\n    rate_hz: "fast"\n')
    run = subprocess.run([sys.executable, "-m", "sigma_ros.graph_main", "--composition=single_process",
                          "--nodes=[controller_node]", f"--config_file={path}"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2, run.stderr
    assert "sigma-graph: controller_node: cannot start: parameter rate_hz:" in run.stderr
    assert "Traceback" not in run.stderr
