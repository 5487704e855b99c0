# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Action node on real DDS.

Stamp pairing of its three inputs, the seeded diffusion sampler, the inference adapter (same object as the offline
replay) and the telepathy switch.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sigma_ros_msgs.msg")

import torch  # noqa: E402
from sigma_ros_msgs.msg import HighLevelRep, StateTokens, TelepathyFactors  # noqa: E402

from sigma_ros.conversions import tensor_from_msg, tensor_to_msg  # noqa: E402
from sigma_ros.model_loader import build_full_model  # noqa: E402
from sigma_ros.testing import GraphHarness  # noqa: E402

SEED = 99
ATOL = 2e-5


@pytest.fixture(scope="module")
def model():
    return build_full_model(seed=0)


def inputs(model, seed):
    c = model.config
    g = torch.Generator().manual_seed(seed)
    rep = torch.randn(1, 12, c.d_model, generator=g)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, -3:] = False
    tau = 2.0 * torch.randn(1, c.d_tau, generator=g)
    st = torch.randn(1, c.n_state_tokens, c.d_model, generator=g)
    return rep, mask, tau, st


def publish(h, model, seed, stamp=None, skip=()):
    rep, mask, tau, st = inputs(model, seed)
    stamp = stamp or h.now()
    hl, tf, sm = HighLevelRep(), TelepathyFactors(), StateTokens()
    for m in (hl, tf, sm):
        m.header.stamp = stamp
    tensor_to_msg(rep, hl.high_level_rep)
    hl.mask = mask.reshape(-1).tolist()
    tensor_to_msg(tau, tf.tau)
    tensor_to_msg(st, sm.state_tokens)
    tensor_to_msg(torch.zeros(1, model.config.state_dim), sm.robot_state)
    for key, m in (("state_tokens", sm), ("telepathy_factors", tf), ("high_level_rep", hl)):
        if key not in skip:
            h.pub_internal[key].publish(m)
    return (stamp.sec, stamp.nanosec), (rep, mask, tau, st)


def plan_for(h, key, timeout=10):
    return h.rec.wait_for("action_plan", 1, timeout,
                          lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) == key)[0]


def test_pairing_seed_and_adapter(model):
    from sigma_model.evaluation.adapter import RiskGatedAdapter

    with GraphHarness(
        "test_ros_action_node",
        nodes=("action_node",),
        overrides={"action_node": {"diffusion_seed": SEED, "reseed_every_plan": True, "use_adapter": True}},
    ) as h:
        h.wait_matched()
        time.sleep(0.3)
        c = model.config
        # an incomplete step (no tau) never plans; a complete later one does and discards it
        key0, _ = publish(h, model, 0, skip=("telepathy_factors",))
        time.sleep(0.3)
        assert h.rec.count("action_plan") == 0
        key, (rep, mask, tau, st) = publish(h, model, 1)
        plan = plan_for(h, key)
        assert h.by_name["action_node"].stats.drops.get("unsynced", 0) >= 1
        with torch.inference_mode():
            act = model.action_stage(rep, mask, tau, st, generator=torch.Generator().manual_seed(SEED))
        adapted = RiskGatedAdapter().adapt_output(act, tau)
        np.testing.assert_allclose(tensor_from_msg(plan.baseline_trajectory, [1, c.traj_len, c.action_dim]).numpy(),
                                   act.baseline_trajectory.numpy(), atol=ATOL)
        np.testing.assert_allclose(tensor_from_msg(plan.action_chunk, [1, c.chunk_len, c.action_dim]).numpy(),
                                   adapted.action_chunk.numpy(), atol=ATOL)
        np.testing.assert_allclose(tensor_from_msg(plan.residual_vector, [1, c.action_dim]).numpy(),
                                   act.residual_vector.numpy(), atol=ATOL)
        assert plan.adapter_enabled
        np.testing.assert_allclose(plan.adapter_scale, adapted.scale.numpy(), atol=1e-6)
        np.testing.assert_allclose(plan.risk, adapted.risk.numpy(), rtol=1e-5, atol=1e-6)
        assert list(plan.adapter_fallback) == adapted.fallback.tolist()
        assert 0.0 <= plan.adapter_scale[0] <= 1.0
        # reseed every plan: the same inputs give the same plan
        key2, _ = publish(h, model, 1)
        plan2 = plan_for(h, key2)
        assert list(plan2.action_trajectory.data) == list(plan.action_trajectory.data)
        st_ = h.status_of("action_node")
        assert "action_stage" in st_.stage_names and "adapter" in st_.stage_names


def test_telepathy_off_plans_the_baseline(model):
    with GraphHarness(
        "test_ros_action_node_off",
        nodes=("action_node",),
        overrides={"action_node": {"diffusion_seed": SEED, "reseed_every_plan": True, "telepathy": False}},
    ) as h:
        h.wait_matched()
        time.sleep(0.3)
        key, _ = publish(h, model, 2)
        plan = plan_for(h, key)
        assert not plan.telepathy and not plan.adapter_enabled
        for a, b in (("action_vector", "baseline_vector"), ("action_chunk", "baseline_chunk"),
                     ("action_trajectory", "baseline_trajectory")):
            assert list(getattr(plan, a).data) == list(getattr(plan, b).data)
        assert not np.any(np.asarray(plan.residual_chunk.data))


def test_nodes_warm_their_stages_up_when_configured(monkeypatch):
    """Each node makes its stages' slow first calls before its first input, and only for the stages it runs.

    The controller holds the action workspace but runs only its control stage.
    """
    from sigma_model import SigmaModel

    warmed = {}
    real = SigmaModel.warm_up

    def recorded(self, *a, **k):
        first = real(self, *a, **k)
        warmed[self.workspaces] = sorted(first)
        return first

    monkeypatch.setattr(SigmaModel, "warm_up", recorded)
    with GraphHarness("test_ros_warm_up", nodes=("perception_node", "language_node", "action_node")) as h:
        h.wait_matched()
        assert warmed == {("vision",): ["vision"], ("language",): ["language"], ("action",): ["action"]}
        assert all(n.model.workspaces in warmed for n in h.by_name.values())
    warmed.clear()
    with GraphHarness("test_ros_warm_up_controller", nodes=("controller_node",)):
        assert warmed == {("action",): ["control"]}
