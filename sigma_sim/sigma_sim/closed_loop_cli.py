# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Command line of the in-process closed-loop evaluation: ``sigma-closed-loop``.

sigma-closed-loop --checkpoint checkpoints/sigma_so101_default --episodes 50
sigma-closed-loop --policy-path outputs/train/act/checkpoints/last/pretrained_model --episodes 50
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sigma_sim.closed_loop import ALL_CONDITIONS, ClosedLoopConfig, evaluate_checkpoint, format_summary
from sigma_sim.episode_variations import VARIATIONS


DEFAULT_CHECKPOINT = "checkpoints/sigma_so101_default"
SIGMA_ONLY_OPTIONS = ("checkpoint", "baseline_checkpoint", "replan_every", "diffusion_steps", "adapter_config",
                      "no_memory", "no_expert_reference", "init_heads")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sigma-closed-loop", description="In-process closed-loop evaluation in the "
                                "simulated SO-101 (success rate, time to success, smoothness) of a Sigma checkpoint "
                                "or of a LeRobot policy of any type.")
    p.add_argument("--checkpoint", default=None, help=f"Sigma checkpoint directory (default {DEFAULT_CHECKPOINT})")
    p.add_argument("--policy-path", default=None, metavar="DIR",
                   help="instead: a LeRobot policy saved by lerobot-train (.../pretrained_model), any type (act, "
                        "diffusion, sigma, ...), run with its processors; reported as lerobot_<type>")
    p.add_argument("--device", default="cpu", help="device of the --policy-path policy (default cpu)")
    p.add_argument("--baseline-checkpoint", default=None, help="separate baseline policy checkpoint (telepathy off)")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=10_000, help="first episode seed (default 10000)")
    p.add_argument("--conditions", nargs="+", default=None, choices=ALL_CONDITIONS,
                   help="default: sigma telepathy_off sigma_adapter; with --policy-path: lerobot (add expert for "
                        "the ceiling)")
    p.add_argument("--variations", nargs="+", default=list(VARIATIONS), choices=VARIATIONS,
                   help="episode variations every condition runs, on the same seeds (default: all; 'nominal' is "
                        "required, the report's main columns): wide_range (cube start box +20%%), perturbed_view "
                        "(lights and camera pose), paraphrase (held-out instruction wordings)")
    p.add_argument("--replan-every", type=int, default=None,
                   help="control ticks between plans (default: the checkpoint's n_action_steps)")
    p.add_argument("--diffusion-steps", type=int, default=None,
                   help="the DiT's integration steps per plan (default: the checkpoint's diffusion_steps)")
    p.add_argument("--max-steps", type=int, default=450)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--adapter-config", default=None, help="AdapterConfig JSON")
    p.add_argument("--no-memory", action="store_true", help="reset tau / memory at every plan")
    p.add_argument("--no-expert-reference", action="store_true",
                   help="do not score plans against the scripted expert (avg_mse_* are then null)")
    p.add_argument("--init-heads", default=None, help="the training run's sigma_telepathy_heads_init.safetensors "
                   "for CHECK A (default: found next to the checkpoint)")
    p.add_argument("--output", "-o", default=None, help="write sigma_eval_report.json (+ batch log) here")
    p.add_argument("--overwrite", action="store_true", help="replace a report already in --output")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from sigma_model.evaluation.adapter import AdapterConfig
    from sigma_model.evaluation.report import REPORT_NAME, refuse_existing_report

    lerobot = args.policy_path is not None
    if lerobot:
        given = [f"--{o.replace('_', '-')}" for o in SIGMA_ONLY_OPTIONS if getattr(args, o) not in (None, False)]
        if given:
            parser.error(f"{', '.join(given)} apply to a Sigma checkpoint, not to --policy-path")
    elif "lerobot" in (args.conditions or ()):
        parser.error("--conditions lerobot needs --policy-path")
    conditions = args.conditions or (
        ["lerobot"] if lerobot else ["sigma", "telepathy_off", "sigma_adapter"]
    )
    try:
        if args.output:
            refuse_existing_report(args.output, args.overwrite)
        cfg = ClosedLoopConfig(episodes=args.episodes, seed=args.seed, conditions=tuple(conditions),
                               variations=tuple(args.variations),
                               replan_every=args.replan_every, diffusion_steps=args.diffusion_steps,
                               max_steps=args.max_steps, threads=args.threads,
                               carry_memory=not args.no_memory, expert_reference=not args.no_expert_reference)
        if lerobot:
            from sigma_sim.lerobot_closed_loop import LeRobotPolicyAdapter, check_lerobot_conditions

            check_lerobot_conditions(cfg.conditions)
            policy = LeRobotPolicyAdapter.from_pretrained(args.policy_path, device=args.device)
    except (ValueError, OSError) as err:
        parser.exit(2, f"sigma-closed-loop: error: {err}\n")
    if lerobot:
        from sigma_sim.lerobot_closed_loop import evaluate_lerobot_policy

        report = evaluate_lerobot_policy(policy, cfg, args.output, progress=not args.quiet)
    else:
        adapter_config = AdapterConfig.load(args.adapter_config) if args.adapter_config else None
        report = evaluate_checkpoint(args.checkpoint or DEFAULT_CHECKPOINT, cfg, args.output,
                                     adapter_config=adapter_config, baseline_checkpoint=args.baseline_checkpoint,
                                     progress=not args.quiet, init_heads=args.init_heads)
    print(format_summary(report))
    if args.output:
        print(f"report: {Path(args.output) / REPORT_NAME}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
