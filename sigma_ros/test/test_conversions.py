# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Message conversions on inputs that do not fit: joint names, image layouts, instructions, plans (no graph)."""

from __future__ import annotations

import array

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")
pytest.importorskip("sigma_ros_msgs.msg")

from sensor_msgs.msg import Image, JointState  # noqa: E402

from sigma_model.configuration_sigma import SigmaConfig  # noqa: E402
from sigma_ros.conversions import (  # noqa: E402
    ConversionError, array_to_image, clean_instruction, image_to_tensor, joint_state_to_vector, plan_from_msg,
    tensor_to_msg,
)
from sigma_ros.testing import JOINTS  # noqa: E402

Q = np.arange(6) / 10.0


def joint_state(names, positions):
    return JointState(name=list(names), position=[float(p) for p in positions])


def test_joint_states_are_mapped_by_name():
    order = [3, 0, 5, 1, 4, 2]
    permuted = joint_state([JOINTS[i] for i in order], Q[order])
    np.testing.assert_array_equal(joint_state_to_vector(permuted, JOINTS), Q)
    extra = joint_state(["camera_tilt", *JOINTS], [9.0, *Q])  # a 7th joint of another device
    np.testing.assert_array_equal(joint_state_to_vector(extra, JOINTS), Q)


@pytest.mark.parametrize("names, positions, reason", [
    ([*JOINTS[:5], JOINTS[0]], Q, "duplicate joint names"),
    (JOINTS, [], "6 names but 0 positions"),
    ([*JOINTS, "camera_tilt"], Q, "7 names but 6 positions"),
    (JOINTS[:5], Q[:5], r"missing joints \['gripper'\]"),
    ([], Q[:5], "expected 6 positions"),
])
def test_joint_states_that_do_not_fit_are_refused(names, positions, reason):
    with pytest.raises(ConversionError, match=reason):
        joint_state_to_vector(joint_state(names, positions), JOINTS)


RGB = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)


def image(data: np.ndarray, encoding: str, step_pad: int = 0) -> Image:
    h, w = data.shape[:2]
    rows = data.reshape(h, -1)
    rows = np.concatenate([rows, np.full((h, step_pad), 77, np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, step=rows.shape[1], data=array.array("B", rows.tobytes()))


def as_rgb(t):
    return (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.mark.parametrize("encoding, data", [
    ("rgb8", RGB), ("bgr8", RGB[:, :, ::-1]),
    ("rgba8", np.concatenate([RGB, np.zeros((4, 5, 1), np.uint8)], 2)),
    ("bgra8", np.concatenate([RGB[:, :, ::-1], np.zeros((4, 5, 1), np.uint8)], 2)),
])
@pytest.mark.parametrize("step_pad", [0, 3])
def test_colour_encodings_and_padded_rows_decode_to_the_same_rgb(encoding, data, step_pad):
    msg = image(np.ascontiguousarray(data), encoding, step_pad)  # 5 wide, 4 high
    np.testing.assert_array_equal(as_rgb(image_to_tensor(msg, 5, resize=True)[..., :4, :]).shape, (4, 5, 3))
    square = np.ascontiguousarray(np.concatenate([data, data[:1]], 0))  # 5x5: the model's size
    np.testing.assert_array_equal(as_rgb(image_to_tensor(image(square, encoding, step_pad), 5)),
                                  np.concatenate([RGB, RGB[:1]], 0))


def test_mono_is_grey_rgb_and_another_size_is_resized_or_refused():
    grey = RGB[:, :4, 0]  # 4x4
    np.testing.assert_array_equal(as_rgb(image_to_tensor(image(grey, "mono8"), 4)), np.repeat(grey[..., None], 3, 2))
    big = array_to_image(np.zeros((8, 8, 3), np.uint8))
    assert image_to_tensor(big, 4, resize=True).shape == (1, 3, 4, 4)
    with pytest.raises(ConversionError, match=r"size 8x8 != model input 4x4 \(set resize_images"):
        image_to_tensor(big, 4)


def bad_images():
    depth = Image(height=4, width=4, encoding="16UC1", step=8, data=array.array("B", bytes(32)))
    zero = Image(height=0, width=4, encoding="rgb8", step=12)
    short = image(RGB[:, :4], "rgb8")
    short.data = short.data[:-1]
    return [(depth, "unsupported encoding '16UC1'"), (zero, "empty image 4x0"),
            (short, "expected step\\*height = 48")]


@pytest.mark.parametrize("msg, reason", bad_images())
def test_images_that_do_not_fit_are_refused(msg, reason):
    with pytest.raises(ConversionError, match=reason):
        image_to_tensor(msg, 4, resize=True)


def test_instructions():
    assert clean_instruction("  prends le cube rouge,\tpuis pose-le \u00e0 gauche \u2192 \u7bb1\n", 100) == \
        "prends le cube rouge, puis pose-le \u00e0 gauche \u2192 \u7bb1"
    with pytest.raises(ConversionError, match="100000 characters exceed max_instruction_chars=2000"):
        clean_instruction("\x00" * 100_000, 2000)  # the length is judged first, nothing is scanned
    for text, reason in [(" \n\t\u3000", "empty"), ("pick\x1b[2J", "U\\+001B"), ("pick\x7f", "U\\+007F"),
                         ("\ue000\u200b\ufeff", "no printable text")]:  # private use, zero width space, BOM
        with pytest.raises(ConversionError, match=reason):
            clean_instruction(text, 2000)


def plan_msg(config, **overrides):
    from sigma_ros_msgs.msg import ActionPlan

    from sigma_ros.conversions import plan_shapes

    msg = ActionPlan()
    for name, shape in plan_shapes(config, 1).items():
        setattr(msg, name, tensor_to_msg(np.zeros(overrides.get(name, shape), np.float32)))
    return msg


def test_plans_that_do_not_fit_are_refused():
    c = SigmaConfig()
    act, scale, risk = plan_from_msg(plan_msg(c), c)
    assert act.action_chunk.shape == (1, c.chunk_len, c.action_dim) and scale.tolist() == [1.0] and risk.tolist() == [0]
    nan = plan_msg(c)
    nan.action_trajectory.data[3] = float("nan")
    cases = [(plan_msg(c, action_vector=(1, c.action_dim + 1)), "action_vector: expected shape"),
             (plan_msg(c, action_chunk=(2, c.chunk_len, c.action_dim)), "action_chunk: expected shape"),
             (nan, "action_trajectory: contains NaN or Inf")]
    inf_risk = plan_msg(c)
    inf_risk.risk = [float("inf")]
    cases.append((inf_risk, "risk: contains NaN or Inf"))
    for msg, reason in cases:
        with pytest.raises(ConversionError, match=reason):
            plan_from_msg(msg, c)


@pytest.mark.parametrize("dims, data, match", [
    ([0, 4294967295, 2147483648], [], "exceed the limit"),  # zero elements, but no array can have that shape
    ([3], [1.0, 2.0], "need 3 values"),
    ([2], [1.0, float("nan")], "NaN"),
])
def test_a_malformed_tensor_message_is_a_conversion_error(dims, data, match):
    from sigma_ros_msgs.msg import Tensor

    from sigma_ros.conversions import tensor_from_msg

    with pytest.raises(ConversionError, match=match):
        tensor_from_msg(Tensor(dims=dims, data=data), name="t")
