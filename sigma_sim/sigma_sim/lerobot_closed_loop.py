# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""LeRobot policies of any type (ACT, Diffusion Policy, Sigma's plugin, ...) in the closed-loop evaluation.

:class:`LeRobotPolicyAdapter` runs a policy with its saved processors through LeRobot's own single-step
inference in :func:`sigma_sim.closed_loop.run_episode`; :func:`evaluate_lerobot_policy` runs it over the
evaluation's seeded episodes and reports in Sigma's format (``sigma-closed-loop --policy-path DIR``)::

    sigma-closed-loop --policy-path outputs/train/act/checkpoints/last/pretrained_model --episodes 50 -o eval/act
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sigma_sim.closed_loop import (
    ClosedLoopConfig,
    ExpertPolicy,
    build_closed_loop_report,
    evaluation_env,
    run_conditions,
    write_closed_loop_report,
)
from sigma_sim.record import ACTION_KEY, IMAGE_KEY, ROBOT_TYPE, STATE_KEY, to_lerobot_frame
from sigma_sim.so101_env import JOINT_NAMES


class LeRobotPolicyAdapter:
    """Any LeRobot policy in the closed loop.

    Each tick the simulator's observation becomes the frame sigma-sim-record stores
    (``observation.images.front``, ``observation.state``) and goes through LeRobot's own single-step
    inference, ``lerobot.utils.control_utils.predict_action`` (preprocessor -> ``select_action`` ->
    postprocessor), as ``lerobot-record`` runs a policy on a robot; the episode's instruction is the
    task. ``reset`` resets the policy and its processors and seeds torch's global generator with the
    episode seed (policies that sample draw from it).
    """

    def __init__(self, policy, preprocessor, postprocessor, path: str | Path | None = None) -> None:
        check_features(policy.config)
        self.policy, self.preprocessor, self.postprocessor = policy, preprocessor, postprocessor
        self.path = None if path is None else str(path)
        self.device = torch.device(policy.config.device or "cpu")
        self.latency: dict[str, list[float]] = {"policy": []}
        self.diagnostics: dict[str, list[float]] = {}
        self.plans = 0  # not observable for a generic policy
        self.instruction = ""

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> LeRobotPolicyAdapter:
        """Load a policy saved by lerobot-train (``.../pretrained_model``, a local directory) and its processors.

        Raises FileNotFoundError / ValueError (one line) for a directory that holds none.
        """
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors
        from lerobot.utils.import_utils import register_third_party_plugins
        from safetensors import SafetensorError

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no config.json in {path}: expected a LeRobot policy directory "
                                    "(lerobot-train's .../checkpoints/<step>/pretrained_model)")
        register_third_party_plugins()  # plugin policy types (lerobot_policy_*) register themselves
        try:
            config = PreTrainedConfig.from_pretrained(path)
        except Exception as err:  # draccus names the field it could not decode
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"{path / 'config.json'} is not a LeRobot policy config ({first})") from None
        config.device = device
        try:
            policy = get_policy_class(config.type).from_pretrained(path, config=config)
        except (RuntimeError, SafetensorError) as err:  # weights unreadable, or of another config (size mismatch)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"{path}: the policy's weights do not load ({first[:300]})") from None
        pre, post = make_pre_post_processors(config, pretrained_path=str(path),
                                             preprocessor_overrides={"device_processor": {"device": device}})
        return cls(policy, pre, post, path)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the camera images the policy was trained on (96x96 without a camera)."""
        feature = self.policy.config.input_features.get(IMAGE_KEY)
        return (int(feature.shape[1]), int(feature.shape[2])) if feature is not None else (96, 96)

    def reset(self, instruction: str, seed: int) -> None:
        self.policy.reset()
        self.preprocessor.reset()
        self.postprocessor.reset()
        torch.manual_seed(int(seed))
        self.instruction = instruction

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        from lerobot.utils.control_utils import predict_action

        t0 = time.perf_counter()
        action = predict_action(to_lerobot_frame(obs), self.policy, self.device, self.preprocessor, self.postprocessor,
                                use_amp=False, task=self.instruction, robot_type=ROBOT_TYPE)
        self.latency["policy"].append(time.perf_counter() - t0)
        return action.reshape(-1).double().cpu().numpy()


def check_features(config) -> None:
    """Check that the policy reads what the simulator gives and outputs 6 joint targets.

    The simulator gives the front camera and 6 joint positions.

    ValueError (one line) otherwise.
    """
    n = len(JOINT_NAMES)
    inputs, outputs = config.input_features or {}, config.output_features or {}
    unknown = sorted(set(inputs) - {IMAGE_KEY, STATE_KEY})
    problems = [f"inputs {unknown} (the simulator gives {IMAGE_KEY} and {STATE_KEY})"] if unknown else []
    if STATE_KEY in inputs and tuple(inputs[STATE_KEY].shape) != (n,):
        problems.append(f"{STATE_KEY} of shape {tuple(inputs[STATE_KEY].shape)} (the simulator has {n} joints)")
    if ACTION_KEY not in outputs or tuple(outputs[ACTION_KEY].shape) != (n,):
        shape = tuple(outputs[ACTION_KEY].shape) if ACTION_KEY in outputs else None
        problems.append(f"{ACTION_KEY} of shape {shape} (the simulator takes {n} joint targets)")
    if problems:
        raise ValueError(f"a {config.type!r} policy with {'; '.join(problems)} cannot act in the simulated SO-101")


def check_lerobot_conditions(conditions) -> None:
    others = [c for c in conditions if c not in ("lerobot", "expert")]
    if others:
        raise ValueError(f"conditions {others} evaluate a Sigma checkpoint; a LeRobot policy runs as 'lerobot' "
                         "(plus 'expert')")


def evaluate_lerobot_policy(policy: LeRobotPolicyAdapter, config: ClosedLoopConfig | None = None,
                            out_dir: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Return the closed-loop evaluation of a LeRobot policy.

    The same seeded episodes, safety filter and success criterion as Sigma's, a camera of the policy's image size; the
    report (Sigma's format) names its condition ``lerobot_<type>``; ``"expert"`` in ``config.conditions`` adds the
    scripted expert.
    """
    cfg = config or ClosedLoopConfig(conditions=("lerobot",))
    check_lerobot_conditions(cfg.conditions)
    pconf = policy.policy.config
    cfg = replace(cfg, replan_every=getattr(pconf, "n_action_steps", None) or cfg.replan_every)
    torch.set_num_threads(cfg.threads)
    height, width = policy.image_size
    name = f"lerobot_{pconf.type}"
    info = {name: {"label": f"LeRobot {pconf.type}", "policy_type": pconf.type, "policy_path": policy.path,
                   "parameters": sum(p.numel() for p in policy.policy.parameters())}}
    env = evaluation_env(cfg, width, height)
    policies: dict[str, Any] = {name: policy} if "lerobot" in cfg.conditions else {}
    if "expert" in cfg.conditions:
        policies["expert"] = ExpertPolicy(env)
    t0 = time.perf_counter()
    try:
        outcomes = run_conditions(env, policies, cfg, progress)
    finally:
        env.close()
    meta = {"seconds": time.perf_counter() - t0, "threads": torch.get_num_threads(), "policy_path": policy.path,
            "policy_type": pconf.type, "device": str(policy.device)}
    report, records = build_closed_loop_report(
        outcomes, cfg, info, meta, {"passed": None, "status": "not run: a LeRobot policy has no Sigma heads"}
    )
    if out_dir is not None:
        write_closed_loop_report(report, records, out_dir)
    return report
