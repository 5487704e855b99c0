# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Action node: the action trajectory workspace (paper 3.3) and the inference adapter (4.3).

Subscribes to HighLevelRep, TelepathyFactors and StateTokens, pairs them by header stamp (the source camera frame), runs
``model.action_stage`` (baseline at tau = 0 - with a VLA backbone its own chunk, carried by the HighLevelRep - plus the
telepathy residual; the trajectory diffusion sampler uses a ``torch.Generator`` seeded from the ``diffusion_seed``
parameter), optionally the adapter, and publishes an ActionPlan.
"""

from __future__ import annotations

import numpy as np
import torch

from sigma_ros import qos
from sigma_ros.adapter_bridge import AdapterBridge
from sigma_ros.conversions import ConversionError, plan_to_msg, tensor_from_msg
from sigma_ros.node_base import Param, SigmaNode, run_node, stamp_key, topic
from sigma_ros.stats import StampSync, Timer


class ActionNode(SigmaNode):
    WORKSPACES = ("action",)
    STAGES = ("action",)
    PARAMS = (
        Param("diffusion_seed", 0, "Seed of the diffusion sampler's torch.Generator (-1: unseeded)",
              min=-1, max=2**63 - 1),
        Param("reseed_every_plan", False, "Reseed the generator with diffusion_seed for every plan "
              "(reproducible plans for replay checks; false: one stream since start, fresh noise per plan, as "
              "the closed-loop evaluation samples - the same noise for every plan biases the trajectory)"),
        Param("use_adapter", False, "Apply the risk-gated inference adapter (paper 4.3) to the actions"),
        Param("adapter_config", "", "AdapterConfig JSON of the adapter (empty = its defaults)"),
        Param("sync_queue_size", 8, "Stamps kept per input while pairing high-level rep, tau and state tokens",
              min=1, max=1000),
    )

    def __init__(self, **kwargs) -> None:
        super().__init__("action_node", **kwargs)

    def configure(self) -> None:
        from sigma_ros_msgs.msg import ActionPlan, HighLevelRep, SemanticMemory, StateTokens, TelepathyFactors

        self._ActionPlan = ActionPlan
        self.sync = StampSync(("high_level_rep", "telepathy_factors", "state_tokens"), self.p.sync_queue_size)
        self.generator = self._new_generator()
        self.plans = 0
        self.adapter = AdapterBridge(self.p.adapter_config, self.get_logger()) if self.p.use_adapter else None
        if self.adapter is not None and not self.adapter.available:
            raise ValueError(f"use_adapter is set but the adapter cannot be built: {self.adapter.error}")
        self.plan_pub = self.make_publisher(ActionPlan, topic("action_plan"), qos.PIPELINE)
        self.subscribe(HighLevelRep, topic("high_level_rep"), "high_level_rep", self.on_hlr, qos.PIPELINE)
        self.subscribe(TelepathyFactors, topic("telepathy_factors"), "telepathy_factors", self.on_tau, qos.PIPELINE)
        self.subscribe(StateTokens, topic("state_tokens"), "state_tokens", self.on_state_tokens, qos.PIPELINE)
        # Memory keeper: the language node's latched memory lives in its own process; re-latching
        # it here lets a crashed and restarted language node restore m_{t-1}.
        self.memory_keeper_pub = self.make_publisher(SemanticMemory, topic("semantic_memory_kept"), qos.LATCHED)
        self.subscribe(SemanticMemory, topic("semantic_memory"), "semantic_memory", self.memory_keeper_pub.publish,
                       qos.LATCHED)

    def activate(self) -> None:
        """Activate; inputs paired before (or while) inactive are dropped."""
        self.sync.clear()
        self.set_mode("waiting", "no high-level representation yet")

    def _new_generator(self) -> torch.Generator | None:
        if self.p.diffusion_seed < 0:
            return None
        return torch.Generator(device=self.p.device).manual_seed(int(self.p.diffusion_seed))

    def reset_episode(self) -> None:
        """Drop inputs waiting for their partners; the diffusion sampler starts again from its seed."""
        self.sync.clear()
        self.generator = self._new_generator()

    # --------------------------------------------------------------- inputs
    def on_hlr(self, msg) -> None:
        c = self.config
        rep = tensor_from_msg(msg.high_level_rep, [None, None, c.d_model], "high_level_rep.high_level_rep")
        b, length = rep.shape[0], rep.shape[1]
        if b < 1 or length < 1:
            raise ConversionError(f"high_level_rep: empty shape {list(rep.shape)}")
        if len(msg.mask) != b * length:
            raise ConversionError(f"high_level_rep.mask: {len(msg.mask)} values for shape [{b},{length}]")
        mask = torch.tensor(np.asarray(msg.mask, dtype=bool).reshape(b, length))
        if not mask.any(dim=1).all():
            raise ConversionError("high_level_rep.mask: a batch item has no valid token")
        actions = None
        if c.vla_backbone:  # the baseline: the VLA's own chunk, computed in the language stage
            actions = tensor_from_msg(msg.backbone_actions, [b, None, c.action_dim], "high_level_rep.backbone_actions")
        self._add("high_level_rep", msg.header, (rep, mask, actions))

    def on_tau(self, msg) -> None:
        tau = tensor_from_msg(msg.tau, [None, self.config.d_tau], "telepathy_factors.tau")
        self._add("telepathy_factors", msg.header, tau)

    def on_state_tokens(self, msg) -> None:
        c = self.config
        st = tensor_from_msg(msg.state_tokens, [None, c.n_state_tokens, c.d_model], "state_tokens.state_tokens")
        self._add("state_tokens", msg.header, st)

    def _add(self, key: str, header, item) -> None:
        if self.skip_before_reset(key, stamp_key(header)):
            return
        before = self.sync.discarded
        ready = self.sync.add(key, stamp_key(header), item)
        for _ in range(self.sync.discarded - before):
            self.stats.drop("unsynced")  # an input whose partners never arrived (normal under load)
        if ready is not None:
            self.plan(header, ready)

    # ----------------------------------------------------------------- plan
    def plan(self, header, ready: dict) -> None:
        rep, mask, backbone_actions = ready["high_level_rep"]
        tau = ready["telepathy_factors"]
        st = ready["state_tokens"]
        if not (rep.shape[0] == tau.shape[0] == st.shape[0]):
            raise ConversionError(f"batch sizes differ: high_level_rep {rep.shape[0]}, tau {tau.shape[0]}, "
                                  f"state_tokens {st.shape[0]}")
        if self.p.reseed_every_plan:
            self.generator = self._new_generator()
        telepathy = bool(self.p.telepathy)
        with Timer() as t_model, torch.inference_mode():
            act = self.model.action_stage(rep, mask, tau, st, telepathy=telepathy, generator=self.generator,
                                          backbone_actions=backbone_actions)
        self.stats.latency("action_stage", t_model.seconds)
        b = tau.shape[0]
        scale, risk, fallback, adapted = np.ones(b), np.zeros(b), np.zeros(b, bool), False
        if self.adapter is not None:
            with Timer() as t_ad:
                act, scale, risk, fallback = self.adapter.apply(act, tau)
            self.stats.latency("adapter", t_ad.seconds)
            adapted = True
            if fallback.any():
                self.stats.event("adapter_fallbacks")
        for name in ("action_vector", "action_chunk", "action_trajectory"):
            if not torch.isfinite(getattr(act, name)).all():
                raise ConversionError(f"action stage produced non-finite {name}: plan dropped (controller holds)")
        msg = self._ActionPlan()
        msg.header = header
        self.plans += 1
        msg.plan_id = self.plans
        msg.telepathy = telepathy
        msg.diffusion_seed = int(self.p.diffusion_seed)
        msg.joint_names = list(self.p.joint_names)
        plan_to_msg(act, msg)
        msg.adapter_enabled = adapted
        msg.adapter_scale = [float(v) for v in np.asarray(scale, dtype=np.float64).reshape(-1)]
        msg.risk = [float(v) for v in np.asarray(risk, dtype=np.float64).reshape(-1)]
        msg.adapter_fallback = [bool(v) for v in fallback]
        self.plan_pub.publish(msg)
        self.stats.event("plans_out")
        self.set_mode("running")


def main(args=None) -> int:
    return run_node(ActionNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
