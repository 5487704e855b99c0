"""Language node: semantic memory across steps, reset on a new instruction (not on a repeated
one), and restore from the latched SemanticMemory after a restart."""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")

import torch  # noqa: E402
from sigma_ros_msgs.msg import VisionTokens  # noqa: E402

from sigma_ros import graph  # noqa: E402
from sigma_ros.conversions import tensor_from_msg, tensor_to_msg  # noqa: E402
from sigma_ros.graph_main import node_cli_args  # noqa: E402
from sigma_ros.model_loader import build_full_model  # noqa: E402
from sigma_ros.testing import GraphHarness  # noqa: E402

ATOL = 2e-5


@pytest.fixture(scope="module")
def model():
    return build_full_model(seed=0)


@pytest.fixture(scope="module")
def h():
    with GraphHarness("test_ros_language_memory", nodes=("language_node",)) as harness:
        harness.wait_matched()
        yield harness


def tokens(h, model, seed):
    c = model.config
    g = torch.Generator().manual_seed(seed)
    vt = torch.randn(1, c.n_vision_tokens, c.d_model, generator=g)
    st = torch.randn(1, c.n_state_tokens, c.d_model, generator=g)
    msg = VisionTokens()
    msg.header.stamp = h.now()
    tensor_to_msg(vt, msg.vision_tokens)
    tensor_to_msg(st, msg.state_tokens)
    tensor_to_msg(torch.zeros(1, c.state_dim), msg.robot_state)
    return msg, vt, st


def step(h, model, seed, text, memory_prev):
    """Publish tokens, wait for the memory message of that stamp, compare with the offline stage."""
    msg, vt, st = tokens(h, model, seed)
    stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
    h.pub_internal["vision_tokens"].publish(msg)
    mem = h.rec.wait_for("semantic_memory", 1, 10,
                         lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) == stamp)[0]
    with torch.inference_mode():
        lang = model.language_stage(model.tokenize([text]), vt, st, memory_prev)
    got = tensor_from_msg(mem.memory, [1, model.config.d_model])
    np.testing.assert_allclose(got.numpy(), lang.memory.numpy(), atol=ATOL)
    return mem, lang.memory


def test_memory_carries_over_and_resets(h, model):
    text = "open the drawer"
    h.send_instruction(text)
    time.sleep(0.3)
    mem, m1 = step(h, model, 1, text, None)
    assert mem.step_index == 0 and mem.instruction == text
    mem, m2 = step(h, model, 2, text, m1)
    assert mem.step_index == 1
    h.send_instruction(text)  # repeated (ros2 topic pub at 1 Hz): memory kept
    time.sleep(0.3)
    mem, m3 = step(h, model, 3, text, m2)
    assert mem.step_index == 2
    h.send_instruction("close the drawer")  # a new instruction: reset
    time.sleep(0.3)
    mem, _ = step(h, model, 4, "close the drawer", None)
    assert mem.step_index == 0 and mem.instruction == "close the drawer"


def test_reset_starts_a_new_episode_with_the_same_instruction(h, model):
    """sigma/reset: the same words again, but m_{t-1} = 0 and the step count restarts."""
    from std_msgs.msg import Empty

    from sigma_ros import qos

    text = "fold the towel"
    h.send_instruction(text)
    time.sleep(0.3)
    _, m1 = step(h, model, 20, text, None)
    mem, _ = step(h, model, 21, text, m1)
    assert mem.step_index == 1
    reset = h.probe.create_publisher(Empty, graph.TOPIC_BY_KEY["reset"].name, qos.INSTRUCTION)
    deadline = time.monotonic() + 5
    while reset.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    reset.publish(Empty())
    deadline = time.monotonic() + 5
    while h.by_name["language_node"].step_index != 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    mem, _ = step(h, model, 22, text, None)  # compared with the offline stage from a zero memory
    assert mem.step_index == 0 and mem.instruction == text
    h.probe.destroy_publisher(reset)


def test_restarted_node_restores_latched_memory(h, model):
    text = "wipe the table"
    h.send_instruction(text)
    time.sleep(0.3)
    _, m1 = step(h, model, 10, text, None)
    last, m2 = step(h, model, 11, text, m1)
    old = h.by_name["language_node"]
    # a new instance (hand-over/restart) comes up while the latched message is still held
    spec = graph.NODE_BY_NAME["language_node"]
    from sigma_ros.language_node import LanguageNode

    args = node_cli_args(spec, h.params_file, [], "", None) + ["-r", "__node:=language_node_restarted"]
    new = LanguageNode(context=h.context, cli_args=args)
    h.add_node(new)
    deadline = time.monotonic() + 5
    while not new.restored and time.monotonic() < deadline:
        time.sleep(0.02)
    assert new.restored and new.instruction == text and new.step_index == last.step_index + 1
    np.testing.assert_allclose(new.memory.numpy(), m2.numpy(), atol=ATOL)
    # the old instance goes away; the new one continues the memory
    h.executor.remove_node(old)
    old.destroy_node()
    mem, _ = step(h, model, 12, text, m2)
    assert mem.step_index == last.step_index + 1
    h.executor.remove_node(new)
    new.destroy_node()
