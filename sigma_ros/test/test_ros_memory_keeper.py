"""A crashed language node restores its semantic memory from the action node's re-latched copy."""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")

from sigma_ros import graph  # noqa: E402
from sigma_ros.graph_main import node_cli_args  # noqa: E402
from sigma_ros.testing import GraphHarness  # noqa: E402

from test_ros_language_memory import ATOL, model, step  # noqa: E402,F401  (model is a fixture)


@pytest.fixture(scope="module")
def h():
    with GraphHarness("test_ros_memory_keeper", nodes=("language_node", "action_node")) as harness:
        harness.wait_matched()
        yield harness


def test_crashed_language_node_restores_memory_from_keeper(h, model):
    text = "stack the red cube"
    h.send_instruction(text)
    time.sleep(0.3)
    _, m1 = step(h, model, 20, text, None)
    last, m2 = step(h, model, 21, text, m1)
    old = h.by_name["language_node"]
    h.executor.remove_node(old)
    old.destroy_node()  # the crash: its latched publisher is gone with it
    time.sleep(0.3)
    from sigma_ros.language_node import LanguageNode

    spec = graph.NODE_BY_NAME["language_node"]
    args = node_cli_args(spec, h.params_file, [], "", None)
    new = LanguageNode(context=h.context, cli_args=args)
    h.add_node(new)
    h.by_name["language_node"] = new
    deadline = time.monotonic() + 5
    while not new.restored and time.monotonic() < deadline:
        time.sleep(0.02)
    assert new.restored and new.instruction == text and new.step_index == last.step_index + 1
    np.testing.assert_allclose(new.memory.numpy(), m2.numpy(), atol=ATOL)
    mem, _ = step(h, model, 22, text, m2)
    assert mem.step_index == last.step_index + 1
