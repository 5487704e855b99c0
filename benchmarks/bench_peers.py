# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Size and CPU training speed of Sigma's peers (sigma_sim.peers) against Sigma's default model.

    python benchmarks/bench_peers.py [--batch=8] [--iters=5] [--threads=2] [--peers=[act_small,diffusion_small]]

Each policy (LeRobot's class, built from the recipe's config for the simulator's features: 96x96
camera, 6 joints) runs `iters` optimiser steps (forward, backward, AdamW) on a random batch of the
shape lerobot-train feeds it; the median seconds per step is printed with its ratio to the Sigma
policy's (the shipped default model's architecture, lerobot_policy_sigma) measured in the same process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import statistics
import time

import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.factory import get_policy_class

from sigma_sim.peers import PEERS, policy_config
from sigma_sim.record import ACTION_KEY, IMAGE_KEY, STATE_KEY
from sigma_model.cli import check_choice, parse_cli

SIZE, JOINTS = 96, 6


def with_features(config):
    config.input_features = {IMAGE_KEY: PolicyFeature(FeatureType.VISUAL, (3, SIZE, SIZE)),
                             STATE_KEY: PolicyFeature(FeatureType.STATE, (JOINTS,))}
    config.output_features = {ACTION_KEY: PolicyFeature(FeatureType.ACTION, (JOINTS,))}
    return config


def sigma_config():
    from lerobot_policy_sigma import SigmaConfig
    from sigma_model import SigmaConfig as SigmaModelConfig

    return with_features(SigmaConfig(model=SigmaModelConfig.load("checkpoints/sigma_so101_default/config.json"),
                                     device="cpu"))


def random_batch(config, batch: int) -> dict:
    """Return what lerobot-train's dataloader gives the policy: observation windows and action chunks."""
    obs = config.observation_delta_indices
    actions = len(config.action_delta_indices)
    lead = (batch, len(obs)) if obs else (batch,)
    return {
        IMAGE_KEY: torch.rand(*lead, 3, SIZE, SIZE),
        STATE_KEY: torch.randn(*lead, JOINTS),
        f"{STATE_KEY}_is_pad": torch.zeros(*lead, dtype=torch.bool),
        ACTION_KEY: torch.randn(batch, actions, JOINTS),
        "action_is_pad": torch.zeros(batch, actions, dtype=torch.bool),
        "task": ["pick the cube and place it on the left"] * batch,
    }


def seconds_per_step(config, batch: int, iters: int) -> tuple[int, float]:
    torch.manual_seed(0)
    policy = get_policy_class(config.type)(config)
    policy.train()
    params = policy.get_optim_params()
    optimizer = torch.optim.AdamW(params if isinstance(params, list) else policy.parameters(), lr=1e-4)
    data = random_batch(config, batch)
    times = []
    for i in range(iters + 1):
        t0 = time.perf_counter()
        loss, _ = policy.forward(dict(data))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - t0)
    return sum(p.numel() for p in policy.parameters()), statistics.median(times)


PROG = "python benchmarks/bench_peers.py"


@dataclass
class Options:
    batch: int = 8
    iters: int = 5
    threads: int = 2
    peers: list[str] = field(default_factory=lambda: list(PEERS))  # sigma_sim.peers recipes to measure

    def __post_init__(self) -> None:
        for peer in self.peers:
            check_choice("--peers", peer, list(PEERS))


def main(argv: list[str] | None = None) -> None:
    args = parse_cli(Options, argv, PROG, description=__doc__)
    torch.set_num_threads(args.threads)
    n_ref, ref = seconds_per_step(sigma_config(), args.batch, args.iters)
    print(f"batch {args.batch}, {args.threads} threads, median of {args.iters} optimiser steps")
    print(f"{'policy':<18}{'parameters':>12}{'s/step':>9}{'x Sigma':>9}")
    print(f"{'sigma (default)':<18}{n_ref / 1e6:>11.2f}M{ref:>9.3f}{1.0:>9.1f}")
    for name in args.peers:
        n, sec = seconds_per_step(with_features(policy_config(name)), args.batch, args.iters)
        print(f"{name:<18}{n / 1e6:>11.2f}M{sec:>9.3f}{sec / ref:>9.1f}")


if __name__ == "__main__":
    main()
