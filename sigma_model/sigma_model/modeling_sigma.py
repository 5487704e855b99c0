# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""SigmaModel: the three workspaces, their stage functions and the whole-model step.

The ROS nodes call the stages one by one; `forward` is exactly their composition, so offline
evaluation and the robot run one implementation. A model may hold only some workspaces (a node
loads only its own part).
"""

from __future__ import annotations

from dataclasses import dataclass
import functools
import time

import torch
from torch import nn

from .action_workspace import ActionWorkspace
from .backbones import build_backbone
from .backbones.vla import build_vla
from .configuration_sigma import WORKSPACES, SigmaConfig
from .language_workspace import LanguageIntentWorkspace
from .outputs import ActionOutput, LanguageOutput, SigmaObservation, SigmaOutput, TextTokens, VisionOutput
from .vision_workspace import CognitiveVisionWorkspace

#: The model's stage functions (``<stage>_stage``), each with the workspace that holds it.
STAGE_WORKSPACE = {"vision": "vision", "language": "language", "action": "action", "control": "action"}
STAGES = tuple(STAGE_WORKSPACE)


@dataclass
class RecurrentState:
    """What one step hands to the next: tau (modulates the next vision stage) and memory m_t."""

    tau: torch.Tensor
    memory: torch.Tensor


def check_tensor(name: str, x: torch.Tensor, shape: tuple, finite: bool = True) -> None:
    """Raise ValueError unless x has `shape` (None = any size) and, for floats, only finite values."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "[" + ",".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")
    if finite and x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf")


class SigmaModel(nn.Module):
    def __init__(self, config: SigmaConfig, workspaces: tuple[str, ...] = WORKSPACES) -> None:
        super().__init__()
        unknown = set(workspaces) - set(WORKSPACES)
        if unknown:
            raise ValueError(f"unknown workspaces {sorted(unknown)}; expected a subset of {WORKSPACES}")
        self.config = config
        self.workspaces = tuple(w for w in WORKSPACES if w in workspaces)
        image_encoder, backbone = None, None
        if config.vla_backbone and ("vision" in workspaces or "language" in workspaces):
            image_encoder, backbone = build_vla(config, "vision" in workspaces, "language" in workspaces)
        elif "language" in workspaces:
            backbone = build_backbone(config)
        self.vision = CognitiveVisionWorkspace(config, image_encoder) if "vision" in workspaces else None
        self.language = LanguageIntentWorkspace(config, backbone) if "language" in workspaces else None
        self.action = ActionWorkspace(config) if "action" in workspaces else None
        if config.backbone_lora and self.language is not None:
            from .training.lora import apply_lora

            apply_lora(self, **config.backbone_lora)

    def _need(self, workspace: str) -> nn.Module:
        module = getattr(self, workspace)
        if module is None:
            raise RuntimeError(f"this SigmaModel was built without the {workspace} workspace (has {self.workspaces})")
        return module

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ----------------------------------------------------------------- stages
    def tokenize(self, texts: list[str], truncate: bool = True) -> TextTokens:
        """Instruction strings -> token ids and mask on the model's device.

        A text longer than ``config.max_text_tokens`` loses its end, or with ``truncate`` False raises ValueError
        (a robot's instruction: its end may name the place).
        """
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ValueError("texts must be a list of strings")
        language = self._need("language")
        tokens = language.tokenize(list(texts))
        if not truncate:  # a tokenizer with its own length (a VLA's preprocessor) gives the same tokens for both
            limit = self.config.max_text_tokens
            cut = language.tokenize(list(texts), limit + 1).mask.sum(dim=1) > tokens.mask.sum(dim=1)
            if cut.any():
                text = texts[int(torch.argmax(cut.int()))]
                raise ValueError(f"instruction {text[:60]!r}... is longer than the model's {limit} tokens "
                                 "(max_text_tokens): shorten it")
        return TextTokens(tokens.ids.to(self.device), tokens.mask.to(self.device), list(texts))

    def vision_stage(self, obs: SigmaObservation, tau_prev: torch.Tensor | None = None,
                     check_values: bool = True) -> VisionOutput:
        """Cognitive vision workspace; tau_prev is the previous step's tau (zeros when None).

        Every stage checks its inputs' shapes, and with ``check_values`` that they are finite: a test that reads the
        values on the host, which a caller that checked them already turns off (a CUDA graph's capture cannot read).
        """
        c = self.config
        check = functools.partial(check_tensor, finite=check_values)
        workspace = self._need("vision")
        image = obs.image
        b = image.shape[0] if isinstance(image, torch.Tensor) and image.dim() == 4 else None
        check("image", image, (b, c.image_channels, c.image_size, c.image_size))
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        check("robot_state", obs.robot_state, (b, c.state_dim))
        audio = obs.audio
        if audio is not None:
            check("audio", audio, (b, c.audio_chunk_samples))
        depth = obs.depth
        if depth is not None:
            check("depth", depth, (b, 1, c.image_size, c.image_size))
        env_state = obs.env_state
        if c.env_state_dim:
            if env_state is None:
                raise ValueError(f"env_state [B,{c.env_state_dim}] is required by this config (env_state_dim > 0)")
            check("env_state", env_state, (b, c.env_state_dim))
            env_state = env_state.float()
        elif env_state is not None:
            raise ValueError("env_state given but this config has env_state_dim = 0")
        if tau_prev is None:
            tau_prev = image.new_zeros(b, c.d_tau)
        check("tau_prev", tau_prev, (b, c.d_tau))
        obs = SigmaObservation(
            image=image, robot_state=obs.robot_state.float(), audio=audio, depth=depth, env_state=env_state
        )
        return workspace(obs, tau_prev.float())

    def language_stage(
        self,
        text: TextTokens,
        vision_tokens: torch.Tensor,
        state_tokens: torch.Tensor,
        memory_prev: torch.Tensor | None = None,
        telepathy: bool = True,
        image_tokens: torch.Tensor | None = None,
        robot_state: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        with_actions: bool = True,
        check_values: bool = True,
    ) -> LanguageOutput:
        """Language intent workspace; memory_prev is m_{t-1} (zeros when None, e.g. a new instruction).

        Telepathy off: the language modulator sees tau = 0 (high_level_rep is the unmodulated hidden sequence).

        A VLA backbone also reads its image tokens (VisionOutput.backbone_image_tokens) and the
        robot state (radians), and (with_actions) samples its action chunk with `generator`.
        """
        c = self.config
        check = functools.partial(check_tensor, finite=check_values)
        workspace = self._need("language")
        b = text.ids.shape[0]
        check("text.ids", text.ids, (b, None))
        check("text.mask", text.mask, (b, text.ids.shape[1]))
        check("vision_tokens", vision_tokens, (b, c.n_vision_tokens, c.d_model))
        check("state_tokens", state_tokens, (b, c.n_state_tokens, c.d_model))
        if memory_prev is None:
            memory_prev = vision_tokens.new_zeros(b, c.d_model)
        check("memory_prev", memory_prev, (b, c.d_model))
        if c.vla_backbone:
            if image_tokens is None or robot_state is None:
                raise ValueError(f"the {c.backbone} backbone's prefix needs image_tokens and robot_state")
            check("image_tokens", image_tokens, (b, None, workspace.backbone.hidden_size))
            check("robot_state", robot_state, (b, c.state_dim))
        return workspace(text, vision_tokens, state_tokens, memory_prev, telepathy, image_tokens, robot_state,
                         generator, with_actions)

    def action_stage(
        self,
        high_level_rep: torch.Tensor,
        high_level_mask: torch.Tensor,
        tau: torch.Tensor,
        state_tokens: torch.Tensor,
        telepathy: bool = True,
        generator: torch.Generator | None = None,
        trajectory_target: torch.Tensor | None = None,
        backbone_actions: torch.Tensor | None = None,
        check_values: bool = True,
    ) -> ActionOutput:
        """Run the action trajectory workspace: baseline at tau = 0 plus (telepathy on) the tau residual.

        With a VLA backbone the baseline is its chunk, `backbone_actions` (LanguageOutput's).
        """
        c = self.config
        check = functools.partial(check_tensor, finite=check_values)
        workspace = self._need("action")
        b = tau.shape[0]
        check("high_level_rep", high_level_rep, (b, None, c.d_model))
        check("high_level_mask", high_level_mask, (b, high_level_rep.shape[1]))
        check("tau", tau, (b, c.d_tau))
        check("state_tokens", state_tokens, (b, c.n_state_tokens, c.d_model))
        if trajectory_target is not None:
            check("trajectory_target", trajectory_target, (b, c.traj_len, c.action_dim))
        if backbone_actions is not None:
            check("backbone_actions", backbone_actions, (b, None, c.action_dim))
            if backbone_actions.shape[1] < max(c.chunk_len, c.traj_len):
                raise ValueError(
                    f"backbone_actions has {backbone_actions.shape[1]} steps, fewer than chunk_len/traj_len"
                )
        return workspace(
            high_level_rep,
            high_level_mask.bool(),
            tau,
            state_tokens,
            telepathy,
            generator,
            trajectory_target,
            backbone_actions,
        )

    def control_stage(
        self,
        action_vector: torch.Tensor,
        action_chunk: torch.Tensor,
        action_trajectory: torch.Tensor,
        robot_state: torch.Tensor,
        step_index: int = 0,
        check_values: bool = True,
    ) -> torch.Tensor:
        """Apply action fusion phi at control tick `step_index` of a plan, then the low-level controller."""
        c = self.config
        check = functools.partial(check_tensor, finite=check_values)
        workspace = self._need("action")
        b = action_vector.shape[0]
        check("action_vector", action_vector, (b, c.action_dim))
        check("action_chunk", action_chunk, (b, c.chunk_len, c.action_dim))
        check("action_trajectory", action_trajectory, (b, c.traj_len, c.action_dim))
        check("robot_state", robot_state, (b, c.state_dim))
        if c.state_dim != c.action_dim:
            raise ValueError("the low-level controller tracks joint targets: state_dim must equal action_dim")
        u = workspace.fuse(action_vector, action_chunk, action_trajectory, step_index)
        return workspace.low_level_controller(u, robot_state.float())

    # -------------------------------------------------------------- whole step
    def forward(
        self,
        obs: SigmaObservation,
        text: TextTokens,
        tau_prev: torch.Tensor | None = None,
        memory_prev: torch.Tensor | None = None,
        telepathy: bool = True,
        generator: torch.Generator | None = None,
        trajectory_target: torch.Tensor | None = None,
        check_values: bool = True,
    ) -> SigmaOutput:
        """One Sigma step: vision -> language -> action -> control (``check_values``: see :meth:`vision_stage`).

        With telepathy off, tau = 0 everywhere: vision FiLM, language modulator and action residual (tau is still
        computed and reported, and carried as memory is).
        """
        if not telepathy:
            tau_prev = None
        vision = self.vision_stage(obs, tau_prev, check_values)
        language = self.language_stage(text, vision.vision_tokens, vision.state_tokens, memory_prev, telepathy,
                                       image_tokens=vision.backbone_image_tokens, robot_state=obs.robot_state,
                                       generator=generator, check_values=check_values)
        action = self.action_stage(
            language.high_level_rep, language.high_level_mask, language.tau, vision.state_tokens,
            telepathy, generator, trajectory_target, language.backbone_actions, check_values,
        )
        commands = self.control_stage(
            action.action_vector, action.action_chunk, action.action_trajectory, obs.robot_state,
            check_values=check_values,
        )
        return SigmaOutput(vision=vision, language=language, action=action, motor_commands=commands)

    def select_action(
        self,
        obs: SigmaObservation,
        instructions: list[str],
        recurrent: RecurrentState | None = None,
        telepathy: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[SigmaOutput, RecurrentState]:
        """Inference step for a robot loop (no gradients): returns the outputs and the state for the next step."""
        with torch.no_grad():  # a block, not a decorator: mutmut mutates undecorated functions only
            out = self(
                obs, self.tokenize(instructions),
                tau_prev=None if recurrent is None else recurrent.tau,
                memory_prev=None if recurrent is None else recurrent.memory,
                telepathy=telepathy, generator=generator,
            )
        return out, RecurrentState(tau=out.language.tau, memory=out.language.memory)

    def warm_up(self, runs: int = 2, stages: tuple[str, ...] | None = None) -> dict[str, float]:
        """Run `stages` (default: every stage held) `runs` times on zero inputs at batch 1; return first seconds.

        A stage's first calls script its kernels and allocate its buffers (up to 0.7 s in a node process); on a robot
        they would delay the first plan and lose the frames behind it. Outputs, parameters and the global RNG are
        untouched. Stages are :data:`STAGES`; one whose workspace the model does not hold is skipped. A VLA
        backbone's language stage reads the backbone's image tokens, so it is warmed only with the vision stage.
        """
        unknown = set(stages or ()) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; expected some of {STAGES}")
        run = [s for s in (STAGES if stages is None else stages) if STAGE_WORKSPACE[s] in self.workspaces]
        c, dev = self.config, self.device
        first: dict[str, float] = {}
        zeros = lambda *shape: torch.zeros(*shape, device=dev)  # noqa: E731
        obs = SigmaObservation(
            image=torch.zeros(1, c.image_channels, c.image_size, c.image_size, dtype=torch.uint8, device=dev),
            robot_state=zeros(1, c.state_dim), audio=zeros(1, c.audio_chunk_samples) if c.use_audio else None,
            depth=zeros(1, 1, c.image_size, c.image_size) if c.use_depth else None,
            env_state=zeros(1, c.env_state_dim) if c.env_state_dim else None)
        generator = torch.Generator(device=dev)
        vision_tokens, state_tokens = zeros(1, c.n_vision_tokens, c.d_model), zeros(1, c.n_state_tokens, c.d_model)
        image_tokens = None
        with torch.inference_mode():
            for _ in range(runs):
                timed = {}
                t0 = time.perf_counter()
                if "vision" in run:
                    vis = self.vision_stage(obs)
                    vision_tokens, state_tokens, image_tokens = vis.vision_tokens, vis.state_tokens, \
                        vis.backbone_image_tokens
                    timed["vision"] = time.perf_counter() - t0
                rep = torch.cat([zeros(1, 8, c.d_model), vision_tokens, state_tokens], dim=1)
                backbone_actions = zeros(1, max(c.chunk_len, c.traj_len), c.action_dim)
                if "language" in run and (not c.vla_backbone or image_tokens is not None):
                    t0 = time.perf_counter()
                    lang = self.language_stage(self.tokenize(["warm up"]), vision_tokens, state_tokens,
                                               image_tokens=image_tokens, robot_state=obs.robot_state,
                                               generator=generator.manual_seed(0))
                    rep, backbone_actions = lang.high_level_rep, lang.backbone_actions
                    timed["language"] = time.perf_counter() - t0
                plan = (zeros(1, c.action_dim), zeros(1, c.chunk_len, c.action_dim), zeros(1, c.traj_len, c.action_dim))
                if "action" in run:
                    t0 = time.perf_counter()
                    act = self.action_stage(rep, torch.ones(rep.shape[:2], dtype=torch.bool, device=dev),
                                            zeros(1, c.d_tau), state_tokens, generator=generator.manual_seed(0),
                                            backbone_actions=backbone_actions)
                    plan = (act.action_vector, act.action_chunk, act.action_trajectory)
                    timed["action"] = time.perf_counter() - t0
                if "control" in run:
                    t0 = time.perf_counter()
                    self.control_stage(*plan, obs.robot_state)
                    timed["control"] = time.perf_counter() - t0
                for stage, seconds in timed.items():
                    first.setdefault(stage, seconds)
        return first
