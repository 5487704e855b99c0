# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Sigma's peers on the simulator's data: LeRobot's ACT and Diffusion Policy, their lerobot-train recipes.

Each recipe is LeRobot 0.4.4's default config of the policy plus the changes it lists, each with
LeRobot's default and the reason. ``act`` and ``diffusion`` change only what the task or these
machines require; ``act_small`` and ``diffusion_small`` are **scaled-down peers** for 2 CPU cores,
stated as such wherever their results are reported. Neither can come down to Sigma's size (the
default model has 0.96M parameters): both encode the camera with a torchvision ResNet-18 (11.2M
parameters, the smallest backbone they accept), so every peer has more parameters than Sigma.

All peers train with LeRobot's training loop (``lerobot.scripts.lerobot_train.train``, what
``lerobot-train`` runs) on sigma-sim-record's dataset (96x96 front camera, 6 joint positions, 6 joint
targets, 30 fps) and are evaluated like Sigma: ``sigma-closed-loop --policy_path`` or
``lerobot-eval --env.type=sigma_so101`` (the same episodes, safety filter and success criterion)::

    python -m sigma_sim.peers                       # the recipes as a table
    python -m sigma_sim.peers --peer=act_small --root=data/so101_sim --output_dir=outputs/train/act_small --steps=20000
    python -m sigma_sim.peers --peer=act_small --root=data/so101_sim --output_dir=outputs/train/act_small --dry_run=true
                                                    # only print the equivalent lerobot-train command

A dataset that also records the simulator's cube pose (``observation.environment_state``: privileged state, what
sigma-make-default's default ``--aux_cube_pose=true`` records for Sigma's auxiliary training target) does not reach the
peers: their inputs are the front camera and the joint state (``--policy.input_features``), what the simulator's
closed loop and a real robot give. LeRobot would otherwise make every dataset column an input.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sigma_model.cli import check_choice, fail, parse_cli
from sigma_sim.record import ACTION_KEY, DEFAULT_REPO_ID, IMAGE_KEY, STATE_KEY

__all__ = ["PEERS", "Change", "PeerRecipe", "lerobot_train_script", "policy_config", "train_command", "train_config"]


@dataclass(frozen=True)
class Change:
    """One change from LeRobot's default config: ``--policy.<option>=<value>``."""

    option: str
    value: Any
    default: Any  # LeRobot 0.4.4's value (tests check it against LeRobot's config classes)
    why: str


@dataclass(frozen=True)
class PeerRecipe:
    policy_type: str  # LeRobot's policy type (--policy.type)
    description: str
    changes: tuple[Change, ...]
    scaled_down: bool = False

    def flags(self) -> list[str]:
        """lerobot-train's policy flags of the recipe."""
        return [
            f"--policy.type={self.policy_type}",
            *(f"--policy.{c.option}={flag_value(c.value)}" for c in self.changes),
        ]


def flag_value(value: Any) -> str:
    """Return a value as draccus parses it on the command line (None -> null, sequences -> [a,b])."""
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(flag_value(v) for v in value) + "]"
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


NO_IMAGENET = Change(
    "pretrained_backbone_weights", None, "ResNet18_Weights.IMAGENET1K_V1",
    "the ImageNet weights are a torchvision download that offline machines (CI, the GPU runners) cannot "
    "make; Sigma's vision starts from scratch as well")
SMALL_ACT_CHUNK = (
    Change("chunk_size", 16, 100, "the VAE encoder and the decoder run over the whole chunk (~2.5 s per step at "
           "batch 8 on 2 cores with 100); 16 ticks = Sigma's trajectory (traj_len)"),
    Change("n_action_steps", 8, 100, "at most chunk_size; 8 = Sigma's n_action_steps (a new plan every 8 ticks)"),
)
SMALL_ACT_SIZE = (
    Change("dim_model", 256, 512, "smaller transformer for CPU training time"),
    Change("dim_feedforward", 1024, 3200, "smaller transformer for CPU training time"),
    Change("n_encoder_layers", 2, 4, "smaller transformer for CPU training time"),
    Change("n_vae_encoder_layers", 2, 4, "smaller transformer for CPU training time"),
)

PEERS: dict[str, PeerRecipe] = {
    "act": PeerRecipe("act", "LeRobot's ACT as it comes (52M parameters; chunk_size = n_action_steps = 100, i.e. "
                      "3.3 s of open-loop actions at 30 Hz, as LeRobot trains it for the SO-101); needs a GPU",
                      (NO_IMAGENET,)),
    "act_small": PeerRecipe("act", "scaled-down ACT for the CPU: 16-tick chunks, a smaller transformer",
                            (NO_IMAGENET, *SMALL_ACT_CHUNK, *SMALL_ACT_SIZE), scaled_down=True),
    "diffusion": PeerRecipe("diffusion", "LeRobot's Diffusion Policy as it comes (U-Net 512/1024/2048, ~270M "
                            "parameters; horizon 16, 8 action steps, 2 observation steps, no pretrained backbone, "
                            "no crop, 100 DDPM steps); needs a GPU", ()),
    "diffusion_small": PeerRecipe("diffusion", "scaled-down Diffusion Policy for the CPU: a narrower U-Net (16M "
                                  "parameters)",
                                  (Change("down_dims", (64, 128, 256), (512, 1024, 2048),
                                          "U-Net 8x narrower for CPU training time (the ResNet-18 is kept)"),),
                                  scaled_down=True),
}


def policy_config(peer: str | PeerRecipe, device: str = "cpu"):
    """Return the peer's LeRobot config.

    Its lerobot-train flags (:meth:`PeerRecipe.flags`) parsed by draccus into the policy type's config class, as
    lerobot-train parses its ``--policy.*`` flags.
    """
    import draccus
    from lerobot.configs.policies import PreTrainedConfig

    import lerobot.policies  # noqa: F401  (registers LeRobot's policy types)

    recipe = PEERS[peer] if isinstance(peer, str) else peer
    type_flag, *options = recipe.flags()
    config_class = PreTrainedConfig.get_choice_class(type_flag.split("=", 1)[1])
    args = [flag.replace("--policy.", "--", 1) for flag in options]
    return draccus.parse(config_class=config_class, args=[*args, f"--device={device}"])


def robot_input_features(dataset_root: str | Path) -> dict[str, Any] | None:
    """Return the policy inputs a robot gives (front camera, joint state) when the dataset records more, else None.

    LeRobot ``PolicyFeature`` s of the dataset's ``meta/info.json``; None too when there is no dataset there yet.
    """
    from lerobot.datasets.utils import dataset_to_policy_features

    info = Path(dataset_root) / "meta" / "info.json"
    if not info.is_file():
        return None
    recorded = json.loads(info.read_text())["features"]  # shapes as tuples, as LeRobotDatasetMetadata reads them
    features = dataset_to_policy_features({k: {**v, "shape": tuple(v["shape"])} for k, v in recorded.items()})
    inputs = {k: v for k, v in features.items() if k != ACTION_KEY}
    robot = {k: v for k, v in inputs.items() if k in (IMAGE_KEY, STATE_KEY)}
    return robot if robot.keys() != inputs.keys() else None


def input_features_flag(features: dict[str, Any]) -> str:
    """Return ``--policy.input_features=...`` (draccus parses the JSON) of LeRobot ``PolicyFeature`` s."""
    value = {k: {"type": f.type.value, "shape": list(f.shape)} for k, f in features.items()}
    return f"--policy.input_features={json.dumps(value, separators=(',', ':'))}"


#: LeRobot's defaults of the training seed and of the steps between checkpoints (``TrainPipelineConfig``)
LEROBOT_SEED, LEROBOT_SAVE_FREQ = 1000, 20_000
PROG = "python -m sigma_sim.peers"


def train_config(peer: str | PeerRecipe, dataset_root: str | Path, output_dir: str | Path, steps: int,
                 batch_size: int = 8, repo_id: str = DEFAULT_REPO_ID, device: str = "cpu", num_workers: int = 4,
                 seed: int = LEROBOT_SEED, save_freq: int = LEROBOT_SAVE_FREQ):
    """lerobot-train's config (``TrainPipelineConfig``) of a peer on a local LeRobot dataset.

    What :func:`train_command`'s flags give, with no hub push. ``seed`` seeds the initialisation and the data order;
    a checkpoint is saved every ``save_freq`` steps and after the last.
    """
    from lerobot.configs.default import DatasetConfig
    from lerobot.configs.train import TrainPipelineConfig

    policy = policy_config(peer, device)
    policy.push_to_hub = False
    policy.input_features = robot_input_features(dataset_root) or policy.input_features
    return TrainPipelineConfig(dataset=DatasetConfig(repo_id=repo_id, root=str(dataset_root)), policy=policy,
                               output_dir=Path(output_dir), steps=steps, batch_size=batch_size, num_workers=num_workers,
                               seed=seed, save_freq=save_freq)


def train_command(peer: str | PeerRecipe, dataset_root: str | Path, output_dir: str | Path, steps: int,
                  batch_size: int = 8, repo_id: str = DEFAULT_REPO_ID, device: str = "cpu",
                  num_workers: int = 4, seed: int = LEROBOT_SEED, save_freq: int = LEROBOT_SAVE_FREQ) -> list[str]:
    """Return the ``lerobot-train`` command line of :func:`train_config`."""
    recipe = PEERS[peer] if isinstance(peer, str) else peer
    inputs = robot_input_features(dataset_root)
    return [lerobot_train_script(), *recipe.flags(), *([input_features_flag(inputs)] if inputs else []),
            f"--dataset.repo_id={repo_id}", f"--dataset.root={dataset_root}",
            f"--steps={steps}", f"--batch_size={batch_size}", f"--num_workers={num_workers}", f"--seed={seed}",
            f"--save_freq={save_freq}", f"--policy.device={device}", "--policy.push_to_hub=false",
            f"--output_dir={output_dir}"]


def lerobot_train_script() -> str:
    """Return the ``lerobot-train`` of this Python environment (else the one on PATH)."""
    return shutil.which("lerobot-train", path=str(Path(sys.executable).parent)) or "lerobot-train"


def recipes_table() -> str:
    """Return the recipes as a Markdown table (one row per change)."""
    rows = ["| peer | policy | change (LeRobot's default) | why |", "|---|---|---|---|"]
    for name, r in PEERS.items():
        label = f"`{name}`" + (" (scaled down)" if r.scaled_down else "")
        if not r.changes:
            rows.append(f"| {label} | {r.policy_type} | none | {r.description} |")
        for c in r.changes:
            rows.append(f"| {label} | {r.policy_type} | `{c.option}={flag_value(c.value)}` "
                        f"(`{flag_value(c.default)}`) | {c.why} |")
    return "\n".join(rows)


@dataclass
class PeersCLI:
    """python -m sigma_sim.peers: print the peers' lerobot-train recipes, or train one with LeRobot's loop."""

    peer: str | None = None  # train this peer (act, act_small, diffusion, diffusion_small; omit: print the recipes)
    root: str | None = None  # the LeRobot dataset (sigma-sim-record --root)
    output_dir: str | None = None  # lerobot-train's --output_dir (must not exist)
    steps: int = 20_000  # optimiser steps
    batch_size: int = 8
    num_workers: int = 4  # dataloader workers
    device: str = "cpu"  # training device
    seed: int = LEROBOT_SEED  # training seed
    save_freq: int = LEROBOT_SAVE_FREQ  # steps between checkpoints, and the last
    dry_run: bool = False  # print the equivalent lerobot-train command only

    def __post_init__(self) -> None:
        if self.peer is None:
            return
        check_choice("--peer", self.peer, sorted(PEERS))
        if not self.root or not self.output_dir:
            raise ValueError("training a peer needs --root and --output_dir")
        if min(self.steps, self.batch_size, self.save_freq) <= 0 or self.num_workers < 0:
            raise ValueError("--steps, --batch_size and --save_freq must be positive, --num_workers >= 0")


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(PeersCLI, argv, PROG, description=PeersCLI.__doc__)
    if args.peer is None:
        print(recipes_table())
        return 0
    if not args.dry_run and Path(args.output_dir).exists():
        fail(PROG, f"--output_dir {args.output_dir} exists (lerobot-train would refuse it)")
    if not args.dry_run and not (Path(args.root) / "meta" / "info.json").is_file():
        fail(PROG, f"--root {args.root} is not a LeRobot dataset (no meta/info.json; sigma-sim-record writes one)")
    options = dict(steps=args.steps, batch_size=args.batch_size, device=args.device, num_workers=args.num_workers,
                   seed=args.seed, save_freq=args.save_freq)
    print(shlex.join(train_command(args.peer, args.root, args.output_dir, **options)), flush=True)
    if not args.dry_run:
        from lerobot.scripts.lerobot_train import train

        train(train_config(args.peer, args.root, args.output_dir, **options))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
