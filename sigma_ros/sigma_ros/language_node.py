# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Language-intent node: backbone + language intent workspace (paper 3.2).

Subscribes to ``/instruction`` (std_msgs/String) and the vision/state tokens; for each token
message runs ``model.language_stage`` with the semantic memory m_{t-1} it keeps across steps and
publishes TelepathyFactors, SemanticMemory (latched) and HighLevelRep with the source frame's
header. With a VLA backbone each step also runs the VLA's own prefix (the image tokens and joint
positions of the VisionTokens message) and publishes its action expert's chunk with the
HighLevelRep (``backbone_actions``: the action node's baseline).

Memory: reset to zero on a *different* instruction (``ros2 topic pub`` repeats the same text at
1 Hz, which must not reset it). On start the node subscribes to its own latched memory topic and
to the action node's re-latched copy (``sigma/semantic_memory_kept``, which outlives a crash of
this node): if a SemanticMemory message is held there before the first step, the node restores
the memory, its instruction and the step count from it.
"""

from __future__ import annotations

import math

import torch

from sigma_ros import qos
from sigma_ros.conversions import ConversionError, clean_instruction, tensor_from_msg, tensor_to_msg
from sigma_ros.node_base import Param, SigmaNode, run_node, stamp_key, topic
from sigma_ros.stats import Timer

# LanguageOutput.gates of sigma_model: exp(theta_lang) of the language modulator, the mean of its
# gate, and the mean of the memory gate lambda. sigma_model may name them (outputs.GATE_NAMES).
DEFAULT_GATE_NAMES = ("lang_scale", "lang_gate_mean", "memory_gate_mean")


def gate_names(n: int) -> list[str]:
    from sigma_model import outputs

    names = tuple(getattr(outputs, "GATE_NAMES", DEFAULT_GATE_NAMES))
    if len(names) != n:
        names = tuple(f"gate{i}" for i in range(n))
    return list(names)


class LanguageNode(SigmaNode):
    WORKSPACES = ("language",)
    STAGES = ("language",)
    PARAMS = (
        Param("instruction", "", "Instruction used until one arrives on /instruction (empty: wait for one)"),
        Param("max_instruction_chars", 2000, "Longer instructions are rejected", min=1, max=1_000_000),
        Param("restore_memory", True, "Restore memory, instruction and step from a latched SemanticMemory "
              "received before the first step"),
    )

    # the instruction, resets and the latched memory are kept while inactive (no step runs)
    INACTIVE_INPUTS = ("reset", "instruction", "semantic_memory", "semantic_memory_kept")

    def __init__(self, **kwargs) -> None:
        super().__init__("language_node", **kwargs)

    def configure(self) -> None:
        from std_msgs.msg import String
        from sigma_ros_msgs.msg import HighLevelRep, SemanticMemory, TelepathyFactors, VisionTokens

        self._HighLevelRep, self._SemanticMemory, self._TelepathyFactors = (
            HighLevelRep,
            SemanticMemory,
            TelepathyFactors,
        )
        self.instruction: str | None = None
        self.text = None  # TextTokens of the instruction
        self.memory: torch.Tensor | None = None
        self.step_index = 0
        self.restored = False
        self.steps_since_start = 0
        if self.p.instruction:
            self.set_instruction(clean_instruction(self.p.instruction, self.p.max_instruction_chars))

        self.tau_pub = self.make_publisher(TelepathyFactors, topic("telepathy_factors"), qos.PIPELINE)
        self.memory_pub = self.make_publisher(SemanticMemory, topic("semantic_memory"), qos.LATCHED)
        self.hlr_pub = self.make_publisher(HighLevelRep, topic("high_level_rep"), qos.PIPELINE)
        self.subscribe(String, topic("instruction"), "instruction", self.on_instruction, qos.INSTRUCTION)
        self.subscribe(VisionTokens, topic("vision_tokens"), "vision_tokens", self.on_tokens, qos.PIPELINE)
        self._restore_subs = []
        if self.p.restore_memory:
            self._restore_subs = [self.subscribe(SemanticMemory, topic(key), key, self.on_memory_restore, qos.LATCHED)
                                  for key in ("semantic_memory", "semantic_memory_kept")]

    def activate(self) -> None:
        self.set_mode("waiting", "no instruction" if self.instruction is None else "no tokens")

    # --------------------------------------------------------------- inputs
    def set_instruction(self, text: str) -> None:
        with torch.inference_mode():
            self.text = self.model.tokenize([text], truncate=False)  # too long: refused, the instruction stays
        self.instruction = text
        self.memory = None
        self.step_index = 0

    def reset_episode(self) -> None:
        """Reset the episode: same instruction, fresh semantic memory (m_{t-1} = 0)."""
        self.memory = None
        self.step_index = 0

    def on_instruction(self, msg) -> None:
        text = clean_instruction(msg.data, self.p.max_instruction_chars)
        if text == self.instruction:
            return  # repeated publication of the same instruction: keep the memory
        self.set_instruction(text)
        self.stats.event("instructions")
        self.get_logger().info(f"new instruction ({len(text)} chars): {text[:80]!r}; semantic memory reset")

    def on_memory_restore(self, msg) -> None:
        if self.steps_since_start > 0 or self.restored:
            return  # only a memory held from before this instance's first step is a restore
        d = self.config.d_model
        memory = tensor_from_msg(msg.memory, [1, d], "semantic_memory.memory")
        text = msg.instruction
        if self.instruction is not None and text != self.instruction:
            self.get_logger().info("latched semantic memory belongs to another instruction: not restored")
            return
        if self.instruction is None:
            self.set_instruction(clean_instruction(text, self.p.max_instruction_chars))
        self.memory = memory
        self.step_index = int(msg.step_index) + 1
        self.restored = True
        self.get_logger().info(f"restored semantic memory of step {msg.step_index} for {self.instruction[:60]!r}")
        for sub in self._restore_subs:
            self.destroy_subscription(sub)
        self._restore_subs = []

    def on_tokens(self, msg) -> None:
        c = self.config
        vt = tensor_from_msg(msg.vision_tokens, [None, c.n_vision_tokens, c.d_model], "vision_tokens.vision_tokens")
        st = tensor_from_msg(msg.state_tokens, [vt.shape[0], c.n_state_tokens, c.d_model], "vision_tokens.state_tokens")
        if vt.shape[0] < 1:
            raise ConversionError("vision_tokens: empty batch")
        image_tokens = robot_state = None
        if c.vla_backbone:  # the VLA's own prefix: its image tokens and the joint positions
            image_tokens = tensor_from_msg(
                msg.backbone_image_tokens,
                [vt.shape[0], None, self.model.language.backbone.hidden_size],
                "vision_tokens.backbone_image_tokens",
            )
            robot_state = tensor_from_msg(msg.robot_state, [vt.shape[0], c.state_dim], "vision_tokens.robot_state")
        if self.skip_before_reset("vision_tokens", stamp_key(msg.header)):
            return
        if self.instruction is None:
            self.set_mode("waiting", "no instruction")
            self.stats.event("skipped_no_instruction")
            return
        b = vt.shape[0]
        text = self.text
        if text.ids.shape[0] != b:
            text = type(text)(text.ids.expand(b, -1), text.mask.expand(b, -1), text.texts and text.texts * b)
        memory = self.memory if (self.memory is not None and self.memory.shape[0] == b) else None
        with Timer() as t_model, torch.inference_mode():
            lang = self.model.language_stage(text, vt, st, memory, bool(self.p.telepathy),
                                             image_tokens=image_tokens, robot_state=robot_state)
        self.stats.latency("language_stage", t_model.seconds)
        if not (torch.isfinite(lang.tau).all() and torch.isfinite(lang.memory).all()):
            self.memory = None
            raise ConversionError("language stage produced non-finite tau/memory: memory reset, step dropped")
        self.memory = lang.memory
        self.steps_since_start += 1
        self.publish_outputs(msg.header, lang)
        self.step_index += 1
        self.set_mode("running")

    # -------------------------------------------------------------- outputs
    def publish_outputs(self, header, lang) -> None:
        tf = self._TelepathyFactors()
        tf.header = header
        tf.step_index = self.step_index
        tensor_to_msg(lang.tau, tf.tau)
        tf.tau_l2 = [float(v) for v in lang.tau.norm(dim=-1)]
        gates = [float(g) for g in lang.gates.reshape(-1)]
        tf.gate_names = gate_names(len(gates))
        tf.gate_values = [g if math.isfinite(g) else 0.0 for g in gates]
        tf.telepathy = bool(self.p.telepathy)

        hlr = self._HighLevelRep()
        hlr.header = header
        hlr.step_index = self.step_index
        tensor_to_msg(lang.high_level_rep, hlr.high_level_rep)
        hlr.mask = [bool(v) for v in lang.high_level_mask.reshape(-1)]
        if lang.backbone_actions is not None:  # the action stage's baseline: the VLA's own chunk
            tensor_to_msg(lang.backbone_actions, hlr.backbone_actions)

        mem = self._SemanticMemory()
        mem.header = header
        mem.step_index = self.step_index
        mem.instruction = self.instruction
        tensor_to_msg(lang.memory, mem.memory)
        tensor_to_msg(lang.z_intent, mem.z_intent)
        tensor_to_msg(lang.z_sem_pool, mem.z_sem_pool)

        # The action node pairs high-level rep and tau by stamp; the perception node reads tau.
        self.hlr_pub.publish(hlr)
        self.tau_pub.publish(tf)
        self.memory_pub.publish(mem)
        self.stats.event("steps_out")


def main(args=None) -> int:
    return run_node(LanguageNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
