"""LeRobot plugin: Sigma as the "sigma" policy type.

LeRobot's commands (lerobot-train, lerobot-eval, lerobot-record) import this module by its
distribution name (`register_third_party_plugins`); importing it registers `SigmaConfig` as the
policy type "sigma" (and sigma-train's LR schedule as the scheduler "sigma_warmup_decay"). LeRobot's
factory then finds `modeling_sigma.SigmaPolicy` and `processor_sigma.make_sigma_pre_post_processors`
by name.

With the simulator installed (``sigma_sim``), importing it also registers the simulated SO-101 as the
LeRobot env type "sigma_so101" (``sigma_sim.lerobot_env``), for ``lerobot-eval --env.type=sigma_so101``:
LeRobot imports plugin distributions named lerobot_policy/robot/camera/teleoperator_*, none for envs.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from .configuration_sigma import SigmaConfig, SigmaSchedulerConfig

if importlib.util.find_spec("sigma_sim") is not None:
    import sigma_sim.lerobot_env  # noqa: F401  (registers the env type "sigma_so101")

_LAZY = {
    "SigmaPolicy": "lerobot_policy_sigma.modeling_sigma",
    "make_sigma_pre_post_processors": "lerobot_policy_sigma.processor_sigma",
    "export_sigma_checkpoint": "lerobot_policy_sigma.export",
}

__all__ = ["SigmaConfig", "SigmaPolicy", "SigmaSchedulerConfig", "export_sigma_checkpoint", "make_sigma_pre_post_processors"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'lerobot_policy_sigma' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
