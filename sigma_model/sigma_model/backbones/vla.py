# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""LeRobot vision-language-action policies (SmolVLA, pi0.5) as Sigma backbones.

A VLA serves all three workspaces, and the weights stay the policy's own (frozen, referenced by
``SigmaConfig.backbone_path``, never written into a Sigma checkpoint):

* vision: the VLM's vision encoder + connector turn the camera image into the VLA's image tokens
  (:class:`VLAImageEncoder`); Sigma's projector and resampler read them (``vision_workspace``).
* language: the VLA's own prefix (image tokens, instruction, state, exactly as the policy builds
  it) runs once through the VLM's language model with the LoRA adapters off (:meth:`prefix`).
  Its key/value cache serves two readers: the action expert, whose flow-matching chunk is the
  tau = 0 baseline (:meth:`sample_actions`, the policy's own ``predict_action_chunk``), and
  Sigma's [text; vision; state] block, which runs through the same layers with the adapters on
  and attends to the cached prefix (:meth:`forward`): its output is hidden_sequence_base.
* action: the baseline chunk plus the telepathy residual (``action_workspace``).

LeRobot's processors do what the policy's own pipeline does: the language tokens (tokenizer
step), the state normalisation and the actions' unnormalisation (statistics: SigmaConfig's
state/action mean and std, LeRobot's MEAN_STD).
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..outputs import TextTokens
from .base import SigmaBackbone
from .quantization import quantize_linears_4bit, require_4bit

if TYPE_CHECKING:
    from ..configuration_sigma import SigmaConfig

POLICY_CLASSES = {
    "pi05": ("lerobot.policies.pi05.modeling_pi05", "PI05Policy"),
    "smolvla": ("lerobot.policies.smolvla.modeling_smolvla", "SmolVLAPolicy"),
}
INSTALL_HINT = {
    "smolvla": "pip install --no-deps -r requirements-lerobot.txt (scripts/setup.sh does)",
    "pi05": ("the transformers of LeRobot's `pi` extra (in LeRobot's source, not in the PyPI wheel), a git "
             "branch that replaces the pinned transformers 4.57.1, best in an environment of its own: pip install "
             "'transformers @ git+https://github.com/huggingface/transformers.git@fix/lerobot_openpi'"),
}
SAFETENSORS_FILE = "model.safetensors"
#: LeRobot's config loading sets draccus' process-wide config type for a while (``draccus.config_type``, not
#: thread-safe): nodes loading in parallel threads would leave it at "json" for the rest of the process
_LOAD_LOCK = threading.Lock()


@dataclass
class VLAContext:
    """A VLA's own prefix for one step.

    The per-layer key/value cache of its language model (adapters off) and the prefix's validity mask [B, L_prefix].
    """

    past_key_values: Any
    pad_mask: torch.Tensor


class VLAImageEncoder(nn.Module):
    """Camera image [B,3,H,W] in [0,1] -> the VLA's image tokens [B, N_img, dim] (frozen).

    Subclasses hold the policy's vision encoder and connector and implement ``encode``.
    """

    external_weights = True
    dim: int

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.encode(image).float()


class VLABackbone(SigmaBackbone):
    """The language side of a VLA: prefix, Sigma block, action expert (see the module docstring).

    Subclasses set ``policy`` (the LeRobot policy without its vision encoder), ``hidden_size``,
    ``action_horizon``, ``action_dim`` and ``flow_steps``, and implement ``decoder``,
    ``embed_text``, ``_run_prefix`` and ``forward``.
    """

    external_weights = True
    action_horizon: int
    action_dim: int
    flow_steps: int

    def __init__(self, policy: nn.Module, preprocessor, postprocessor) -> None:
        super().__init__()
        from lerobot.processor import (
            ComplementaryDataProcessorStep,
            NormalizerProcessorStep,
            TokenizerProcessorStep,
            UnnormalizerProcessorStep,
        )

        self.policy = policy
        # the instruction's own steps of the policy's preprocessor (task text edits, tokenizer)
        self._text_steps = [s for s in preprocessor.steps
                            if isinstance(s, (ComplementaryDataProcessorStep, TokenizerProcessorStep))]
        self._normalizer = next(s for s in preprocessor.steps if isinstance(s, NormalizerProcessorStep))
        self._unnormalizer = next(s for s in postprocessor.steps if isinstance(s, UnnormalizerProcessorStep))
        for p in self.policy.parameters():
            p.requires_grad_(False)

    @property
    def decoder(self) -> nn.Module:
        """The VLM's language model (where LoRA goes: its q/k/v/o projections)."""
        raise NotImplementedError

    # ------------------------------------------------------------ processors
    def normalize_state(self, robot_state: torch.Tensor) -> torch.Tensor:
        """Joint positions (radians) -> the policy's normalised state (LeRobot's normalizer step)."""
        from lerobot.processor.converters import create_transition
        from lerobot.processor.core import TransitionKey
        from lerobot.utils.constants import OBS_STATE

        out = self._normalizer(create_transition(observation={OBS_STATE: robot_state.float()}))
        return out[TransitionKey.OBSERVATION][OBS_STATE]

    def unnormalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Return the policy's normalised actions -> radians (LeRobot's unnormalizer step)."""
        from lerobot.processor.converters import create_transition
        from lerobot.processor.core import TransitionKey

        return self._unnormalizer(create_transition(action=actions.float()))[TransitionKey.ACTION]

    def tokenize(self, texts: list[str], max_length: int) -> TextTokens:
        """Return the instruction as the policy's own preprocessor tokenizes it (its tokenizer and length).

        ``max_length`` of the config does not apply.
        """
        from lerobot.processor.converters import create_transition
        from lerobot.processor.core import TransitionKey
        from lerobot.utils.constants import (
            OBS_LANGUAGE_ATTENTION_MASK,
            OBS_LANGUAGE_TOKENS,
        )

        transition = create_transition(observation={}, complementary_data={"task": list(texts)})
        for step in self._text_steps:
            transition = step(transition)
        obs = transition[TransitionKey.OBSERVATION]
        return TextTokens(ids=obs[OBS_LANGUAGE_TOKENS], mask=obs[OBS_LANGUAGE_ATTENTION_MASK].bool(), texts=list(texts))

    # ------------------------------------------------------------ the stages
    def prefix(self, text: TextTokens, image_tokens: torch.Tensor, robot_state: torch.Tensor) -> VLAContext:
        """Return the policy's own prefix through its language model, adapters off, no gradient."""
        with torch.no_grad(), adapters_disabled(self.decoder):
            return self._run_prefix(text, image_tokens, robot_state)

    def sample_actions(self, context: VLAContext, generator: torch.Generator | None = None,
                       noise_scale: float = 1.0) -> torch.Tensor:
        """Return the action expert's chunk [B, action_horizon, action_dim] in radians.

        The policy's own flow-matching sampler from noise N(0, noise_scale^2) (seeded by ``generator``).
        """
        b = context.pad_mask.shape[0]
        shape = (b, self.action_horizon, self.policy.config.max_action_dim)
        noise = torch.randn(shape, generator=generator, device=context.pad_mask.device) * noise_scale
        with torch.no_grad():
            actions = self._denoise(context, noise)
        return self.unnormalize_actions(actions[:, :, : self.action_dim])

    def _run_prefix(self, text: TextTokens, image_tokens: torch.Tensor, robot_state: torch.Tensor) -> VLAContext:
        raise NotImplementedError

    def _denoise(self, context: VLAContext, noise: torch.Tensor) -> torch.Tensor:
        """Return the policy's ``sample_actions`` after its prefix.

        ``flow_steps`` Euler steps of its own ``denoise_step`` from t = 1 to 0 on the cached prefix.
        """
        dt = -1.0 / self.flow_steps
        x = noise
        for step in range(self.flow_steps):
            t = noise.new_full((noise.shape[0],), 1.0 + step * dt, dtype=torch.float32)
            x = x + dt * self.policy.model.denoise_step(prefix_pad_masks=context.pad_mask,
                                                        past_key_values=context.past_key_values, x_t=x, timestep=t)
        return x


# ---------------------------------------------------------------- helpers
@contextlib.contextmanager
def adapters_disabled(module: nn.Module):
    """Run `module` without its peft adapters (the VLA's own prefix stays the untuned policy's).

    The adapters' requires_grad flags are restored afterwards.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in module.modules() if isinstance(m, BaseTunerLayer)]
    flags = [[p.requires_grad for p in m.parameters()] for m in layers]
    for m in layers:
        m.enable_adapters(False)
    try:
        yield
    finally:
        for m, saved in zip(layers, flags):
            m.enable_adapters(True)
            for p, flag in zip(m.parameters(), saved):
                p.requires_grad_(flag)


@contextlib.contextmanager
def precomputed_image_embeddings(owner: nn.Module):
    """Yield a context in which the policy's ``embed_prefix`` calls ``owner.embed_image(image)`` per camera.

    Inside this context that call returns its argument, so the prefix takes the image tokens the vision stage computed
    (the vision encoder runs once per frame, in the vision workspace).
    """
    owner.embed_image = lambda tokens: tokens
    try:
        yield
    finally:
        del owner.embed_image


def _policy_class(kind: str):
    if kind not in POLICY_CLASSES:
        raise ValueError(f"unknown LeRobot policy kind {kind!r}; expected one of {sorted(POLICY_CLASSES)}")
    module_name, class_name = POLICY_CLASSES[kind]
    try:
        module = __import__(module_name, fromlist=[class_name])
    except ImportError as err:
        raise RuntimeError(f"the {kind} backbone needs LeRobot: {INSTALL_HINT[kind]} ({err})") from err
    return getattr(module, class_name)


def _check_weights_loaded(policy: nn.Module, path_or_id: str, drop: tuple[str, ...], policy_keys) -> None:
    """Raise unless the checkpoint file holds every weight the policy needs.

    LeRobot loads non-strictly: a missing tensor would silently stay random. `policy_keys(policy, file_keys)`: the
    policy's keys the file fills (the policy's own key mapping).
    """
    from safetensors import safe_open

    if os.path.isdir(path_or_id):
        file = os.path.join(path_or_id, SAFETENSORS_FILE)
    else:
        from huggingface_hub import hf_hub_download

        file = hf_hub_download(path_or_id, SAFETENSORS_FILE)  # already in the cache: from_pretrained fetched it
    with safe_open(file, framework="pt") as handle:
        present = policy_keys(policy, list(handle.keys()))
    missing = [k for k in policy.state_dict() if k not in present and not any(d in k for d in drop)]
    if missing:
        raise RuntimeError(f"{file} lacks {len(missing)} weights of the policy ({missing[:3]}, ...): "
                           "not a checkpoint of this architecture")


def load_lerobot_policy(kind: str, path_or_id: str, drop: tuple[str, ...] = (), policy_keys=None):
    """Return a LeRobot policy by kind from a local directory or a hub id (``config.json`` + ``model.safetensors``).

    On the CPU in eval mode; clear errors without LeRobot or the files. ``drop``: key fragments of weights the caller
    never uses (allowed to be absent); ``policy_keys``: the policy's mapping from file keys to its state-dict keys
    (None: the same).
    """
    cls = _policy_class(kind)
    from lerobot.configs.policies import PreTrainedConfig

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    where = "local directory" if os.path.isdir(path_or_id) else "hub id (needs network or a warm cache)"
    try:
        with _LOAD_LOCK:  # the policy's own from_pretrained, given the config, does not read it again
            config = PreTrainedConfig.from_pretrained(path_or_id, local_files_only=offline)
        if config.type != kind:
            raise RuntimeError(f"{path_or_id} holds a {config.type!r} policy, not {kind!r}")
        config.device = "cpu"
        policy = cls.from_pretrained(path_or_id, config=config, local_files_only=offline)
        _check_weights_loaded(policy, path_or_id, drop, policy_keys or (lambda _, keys: set(keys)))
    except (OSError, ValueError) as err:
        hint = f" (pi0.5 needs {INSTALL_HINT['pi05']})" if kind == "pi05" else ""
        raise RuntimeError(f"could not load the {kind} backbone {path_or_id!r} as a {where}: {err}{hint}") from err
    return policy.eval()


def dataset_stats(config: SigmaConfig) -> dict | None:
    """SigmaConfig's state/action statistics in LeRobot's dataset-stats layout (None without them)."""
    from lerobot.utils.constants import ACTION, OBS_STATE

    stats = {}
    if config.state_mean is not None:
        stats[OBS_STATE] = {"mean": torch.tensor(config.state_mean), "std": torch.tensor(config.state_std)}
    if config.action_mean is not None:
        stats[ACTION] = {"mean": torch.tensor(config.action_mean), "std": torch.tensor(config.action_std)}
    return stats or None


def build_vla(config: SigmaConfig, vision: bool, language: bool) -> tuple[VLAImageEncoder | None, VLABackbone | None]:
    """Return the VLA parts the requested workspaces hold.

    The image encoder (vision) and the language backbone (language).

    The policy is loaded once; what no workspace holds is dropped.
    """
    if config.backbone_4bit:
        require_4bit()
    if config.backbone == "smolvla":
        from . import smolvla as kind_module
    else:
        from . import pi05 as kind_module
    policy = load_lerobot_policy(config.backbone, config.backbone_path, kind_module.UNUSED_WEIGHTS,
                                 kind_module.policy_keys)
    kind_module.check_compatible(policy.config, config)
    encoder = kind_module.image_encoder(policy) if vision else None
    backbone = kind_module.language_backbone(policy, config) if language else None
    if config.backbone_4bit:
        for part in (encoder, backbone):
            if part is not None:
                quantize_linears_4bit(part, skip=kind_module.FULL_PRECISION)
    return encoder, backbone
