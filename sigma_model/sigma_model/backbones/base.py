"""The backbone interface used by the language intent workspace."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..outputs import TextTokens

if TYPE_CHECKING:
    from ..configuration_sigma import SigmaConfig


class SigmaBackbone(nn.Module):
    """A multimodal decoder seen by Sigma.

    Subclasses set `hidden_size`, implement `tokenize`, `embed_text` and `forward`. The language
    workspace projects vision and state tokens into `hidden_size`, concatenates
    [text; vision; state] and calls `forward` to get hidden_sequence_base.
    """

    hidden_size: int

    def tokenize(self, texts: list[str], max_length: int) -> TextTokens:
        raise NotImplementedError

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def build_backbone(config: "SigmaConfig") -> SigmaBackbone:
    """The backbone named by `config.backbone` (imports heavy dependencies lazily)."""
    if config.backbone == "tiny":
        from .tiny import TinyDecoderBackbone

        return TinyDecoderBackbone(config)
    if config.backbone == "hf":
        from .hf_vlm import HFBackbone

        return HFBackbone.from_pretrained(config.backbone_path, load_in_4bit=config.backbone_4bit)
    from .lerobot_policies import LeRobotPolicyBackbone

    return LeRobotPolicyBackbone.from_pretrained(config.backbone, config.backbone_path)
