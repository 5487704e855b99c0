"""LeRobot pi0.5 and SmolVLA policies as Sigma backbones (and as baseline policies).

Needs the `lerobot` package (0.4.x, in the default install: `pip install --no-deps -r
requirements-lerobot.txt`) and the policy weights (hub id such as `lerobot/pi05_base`, or a local copy).
The VLM inside the policy supplies hidden_sequence_base; the policy itself supplies the baseline
actions that TRAF learns residuals over.
"""

from __future__ import annotations

import torch

from .hf_vlm import TransformersDecoderBackbone

POLICY_CLASSES = {
    "pi05": ("lerobot.policies.pi05.modeling_pi05", "PI05Policy"),
    "smolvla": ("lerobot.policies.smolvla.modeling_smolvla", "SmolVLAPolicy"),
}


def load_lerobot_policy(kind: str, path_or_id: str):
    """Instantiate a LeRobot policy by kind ("pi05" or "smolvla") with a clear error without LeRobot."""
    if kind not in POLICY_CLASSES:
        raise ValueError(f"unknown LeRobot policy kind {kind!r}; expected one of {sorted(POLICY_CLASSES)}")
    module_name, class_name = POLICY_CLASSES[kind]
    try:
        module = __import__(module_name, fromlist=[class_name])
    except ImportError as err:
        raise RuntimeError(
            f"the {kind} backbone needs LeRobot (scripts/setup.sh installs it; by hand: "
            f"pip install --no-deps -r requirements-lerobot.txt): {err}"
        ) from err
    return getattr(module, class_name).from_pretrained(path_or_id)


def _policy_language_model_and_tokenizer(kind: str, policy):
    if kind == "pi05":
        paligemma = policy.model.paligemma_with_expert.paligemma
        inner = getattr(paligemma, "model", paligemma)
        from transformers import AutoTokenizer

        name = getattr(policy.config, "tokenizer_name", "google/paligemma-3b-pt-224")
        return inner.language_model, AutoTokenizer.from_pretrained(name)
    vlm = policy.model.vlm_with_expert.vlm
    inner = getattr(vlm, "model", vlm)
    return inner.text_model, policy.model.vlm_with_expert.processor.tokenizer


class LeRobotPolicyBackbone(TransformersDecoderBackbone):
    """The language model of a LeRobot VLA policy; `baseline_actions` runs the policy itself."""

    def __init__(self, kind: str, policy) -> None:
        super().__init__(*_policy_language_model_and_tokenizer(kind, policy))
        self.kind = kind
        self.policy = policy

    @classmethod
    def from_pretrained(cls, kind: str, path_or_id: str) -> "LeRobotPolicyBackbone":
        return cls(kind, load_lerobot_policy(kind, path_or_id))

    @torch.no_grad()
    def baseline_actions(self, batch: dict) -> torch.Tensor:
        """The untuned policy's action chunk [B, chunk, A] for a LeRobot-format observation batch."""
        return self.policy.predict_action_chunk(batch)
