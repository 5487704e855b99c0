# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The four Sigma nodes on real DDS with a SmolVLA backbone (a tiny random SmolVLA, offline).

One camera frame in, one action plan out, equal to the offline model. The perception node sends the VLA's image tokens
with the VisionTokens, the language node runs the VLA's prefix and sends its action chunk (the baseline) with the
HighLevelRep, the action node adds the telepathy residual.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")
pytest.importorskip("lerobot.policies.smolvla.modeling_smolvla")

import torch  # noqa: E402
from sigma_model.outputs import SigmaObservation  # noqa: E402
from sigma_model.testing import small_config  # noqa: E402
from sigma_ros.conversions import rgb_array_to_tensor, tensor_from_msg  # noqa: E402
from sigma_ros.testing import GraphHarness  # noqa: E402

from sigma_model import SigmaModel, load_checkpoint, save_checkpoint  # noqa: E402

INSTRUCTION = "pick the cube and place it on the left"
Q0 = np.array([0.10, -0.20, 0.30, 0.05, 0.50, 0.20])
WIDE = {"joint_lower_limits": [-100.0] * 6, "joint_upper_limits": [100.0] * 6, "max_step_rad": [100.0]}


@pytest.fixture(scope="module")
def checkpoint(smolvla_dir, tmp_path_factory):
    # noise scale 0: the VLA's expert flows from the noise mean, so the nodes' plan is reproducible offline
    config = small_config(
        backbone="smolvla", backbone_path=str(smolvla_dir), use_audio=False, diffusion_noise_scale=0.0
    )
    torch.manual_seed(0)
    model = SigmaModel(config)
    torch.nn.init.normal_(model.action.residual_head[-1].weight, std=0.5)  # a non-zero telepathy residual
    return str(save_checkpoint(model, tmp_path_factory.mktemp("sigma_vla_ckpt")))


def test_one_frame_in_one_plan_out(checkpoint):
    offline = load_checkpoint(checkpoint).eval()
    c = offline.config
    overrides = {"controller_node": dict(WIDE, plan_timeout_s=30.0, joint_state_timeout_s=30.0),
                 "perception_node": {"use_audio": False, "joint_state_timeout_s": 30.0}}
    with GraphHarness("test_ros_vla_backbone", checkpoint=checkpoint, overrides=overrides) as h:
        h.wait_matched()
        h.stream_joint_states(Q0)
        h.send_instruction(INSTRUCTION)
        h.rec.wait_for("status", 1, 20)
        perception, language = h.by_name["perception_node"], h.by_name["language_node"]
        deadline = time.monotonic() + 20
        while (perception.states.newest_stamp is None or language.instruction is None) and time.monotonic() < deadline:
            time.sleep(0.05)  # the frame needs a joint state and the instruction on the other side
        img = np.random.default_rng(0).integers(0, 256, (c.image_size, c.image_size, 3), dtype=np.uint8)
        msg = h.send_image(img)
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)

        def same(m):
            return (m.header.stamp.sec, m.header.stamp.nanosec) == stamp

        vt = h.rec.wait_for("vision_tokens", 1, 30, same)[0]
        hlr = h.rec.wait_for("high_level_rep", 1, 30, same)[0]
        plan = h.rec.wait_for("action_plan", 1, 30, same)[0]

    obs = SigmaObservation(image=rgb_array_to_tensor(img), robot_state=torch.tensor(Q0, dtype=torch.float32)[None])
    with torch.inference_mode():
        out = offline(obs, offline.tokenize([INSTRUCTION]))
    backbone = offline.language.backbone
    image_tokens = tensor_from_msg(vt.backbone_image_tokens, [1, None, backbone.hidden_size])
    chunk = tensor_from_msg(hlr.backbone_actions, [1, backbone.action_horizon, c.action_dim])
    torch.testing.assert_close(image_tokens, out.vision.backbone_image_tokens, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(chunk, out.language.backbone_actions, atol=2e-5, rtol=1e-5)
    for name, length in (("action_chunk", c.chunk_len), ("baseline_chunk", c.chunk_len),
                         ("residual_chunk", c.chunk_len), ("action_trajectory", c.traj_len)):
        got = tensor_from_msg(getattr(plan, name), [1, length, c.action_dim])
        torch.testing.assert_close(got, getattr(out.action, name), atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(tensor_from_msg(plan.baseline_chunk, [1, c.chunk_len, c.action_dim]),
                               chunk[:, :c.chunk_len], atol=2e-5, rtol=1e-5)
    assert out.action.residual_chunk.abs().min() > 0
