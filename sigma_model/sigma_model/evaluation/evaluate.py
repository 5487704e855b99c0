"""`sigma-eval`: offline closed-loop replay of shards through a Sigma checkpoint (paper sections 5, 6).

    sigma-eval --shards data/shards --checkpoint runs/sigma --output eval/

writes eval/sigma_eval_report.json, eval/sigma_eval_batches.jsonl and PNG plots, and prints the
summary, CHECK A and CHECK B. An existing report is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .adapter import AdapterConfig
from .replay import ALL_CONDITIONS, BASELINE_SOURCES, ReplayConfig

SUMMARY_FIELDS = ("num_samples", "num_batches", "avg_mse_vector", "avg_mse_chunk", "avg_mse_traj", "avg_tau_l2",
                  "avg_semantic_text_alignment", "hard_sample_fraction", "total_hard_samples",
                  "avg_hard_mse_vector", "avg_hard_mse_chunk", "avg_hard_mse_traj", "window_success_rate")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sigma-eval",
        description="Offline closed-loop replay of Sigma shards under telepathy on/off x adapter on/off plus "
                    "the baseline; writes sigma_eval_report.json, a per-batch JSONL log and PNG plots.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--shards", required=True, help="directory of shard_*.safetensors (sigma-preprocess output)")
    p.add_argument("--checkpoint", required=True,
                   help="Sigma model checkpoint dir, a training step dir, or a sigma-train output dir (latest step)")
    p.add_argument("--output", "-o", default="sigma_eval", help="directory for the report, batch log and plots")
    p.add_argument("--overwrite", action="store_true", help="replace a report already in --output")
    p.add_argument("--baseline-checkpoint", default=None,
                   help="separate untuned baseline policy checkpoint (replayed with telepathy off)")
    p.add_argument("--baseline", choices=BASELINE_SOURCES, default="auto",
                   help="baseline source: auto = checkpoint if given, else the shards' base_action_*, else tau = 0")
    p.add_argument("--heads", default=None, help="sigma_telepathy_heads.safetensors to load over the checkpoint")
    p.add_argument("--init-heads", default=None,
                   help="the heads the run started from, for CHECK A (default: sigma_telepathy_heads_init.safetensors "
                        "of the checkpoint's training run, when found)")
    p.add_argument("--no-carry", action="store_true",
                   help="replay every window from a zero state (default: tau and memory carried through each episode)")
    p.add_argument("--batch-size", type=int, default=4, help="the paper replays 723 windows in 181 batches of 4")
    p.add_argument("--max-batches", type=int, default=None, help="replay at most this many batches")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-batch diffusion noise")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, or auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (torch.set_num_threads)")
    p.add_argument("--conditions", nargs="+", choices=ALL_CONDITIONS, default=list(ALL_CONDITIONS))
    p.add_argument("--hard-thresholds", nargs=3, type=float, metavar=("VEC", "CHUNK", "TRAJ"), default=(0.1, 0.2, 0.2),
                   help="a sample is hard when any of its MSEs exceeds its threshold")
    p.add_argument("--success-thresholds", nargs=3, type=float, metavar=("VEC", "CHUNK", "TRAJ"), default=(0.1, 0.2, 0.2),
                   help="window_success_rate: the fraction of windows whose MSEs are all within these")
    a = p.add_argument_group("adapter (paper 4.3)")
    a.add_argument("--adapter-config", default=None, help="JSON file with AdapterConfig fields (flags below override)")
    d = AdapterConfig()
    a.add_argument("--adapter-min-scale", type=float, default=None, help=f"default {d.min_scale}")
    a.add_argument("--adapter-max-scale", type=float, default=None, help=f"default {d.max_scale}")
    a.add_argument("--adapter-k", type=float, default=None, help=f"exponential sharpness, default {d.k}")
    a.add_argument("--adapter-tau-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help=f"target range of ||tau||_2, default {d.tau_l2_range}")
    a.add_argument("--adapter-max-residual-ratio", type=float, default=None, help=f"default {d.max_residual_ratio}")
    s = p.add_argument_group("statistics and output")
    s.add_argument("--ci", choices=("bootstrap", "t"), default="bootstrap", help="confidence interval over batches")
    s.add_argument("--confidence", type=float, default=0.95)
    s.add_argument("--n-bootstrap", type=int, default=2000)
    s.add_argument("--table-every", type=int, default=20, help="CHECK B lists every N-th batch")
    s.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    s.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    s.add_argument("--quiet", "-q", action="store_true", help="print only the report path")
    return p


def adapter_config_from_args(args: argparse.Namespace) -> AdapterConfig:
    values = AdapterConfig().to_dict()
    if args.adapter_config:
        values.update(json.loads(Path(args.adapter_config).read_text()))
    for flag, name in (("adapter_min_scale", "min_scale"), ("adapter_max_scale", "max_scale"), ("adapter_k", "k"),
                       ("adapter_tau_range", "tau_l2_range"), ("adapter_max_residual_ratio", "max_residual_ratio")):
        value = getattr(args, flag)
        if value is not None:
            values[name] = value
    return AdapterConfig.from_dict(values)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def format_check_a(ca: dict) -> str:
    """CHECK A as text: the groups' statistics, and the trained heads against their initialisation."""
    lines = ["CHECK A (telepathy heads):"]
    for group in ("experimental", "control"):
        g = ca.get(group) or {}
        lines.append(f"  {group:<13} heads_tensors={g.get('heads_tensors')} mean={_fmt(g.get('mean'))} "
                     f"std={_fmt(g.get('std'))} rms={_fmt(g.get('rms'))}  ({g.get('source')})")
    lines.append(f"  identical: {ca.get('identical')}")
    if ca.get("relative_change") is not None:
        paths = ", ".join(f"{k} {v:.3g}" for k, v in (ca.get("telepathy_paths") or {}).items())
        lines.append(f"  vs initialisation: relative change {ca['relative_change']:.3g} ({paths})")
    lines.append(f"  {ca.get('status', 'not run')}")
    return "\n".join(lines)


def format_summary(report: dict) -> str:
    from .report import format_check_b

    conds = report["conditions"]
    names = list(conds)
    width = max(12, *(len(n) + 2 for n in names))
    lines = [f"{'field':<30}" + "".join(f"{n:>{width}}" for n in names)]
    for f in SUMMARY_FIELDS:
        lines.append(f"{f:<30}" + "".join(f"{_fmt(conds[n].get(f)):>{width}}" for n in names))
    for extra in ("adapter_scale", "adapter_fallback_fraction"):
        if any(extra in conds[n].get("extra", {}) for n in names):
            lines.append(f"{extra:<30}" + "".join(f"{_fmt(conds[n]['extra'].get(extra)):>{width}}" for n in names))
    imp = report["relative_improvement"]
    if imp["by_condition"]:
        pct = int(round(imp["confidence"] * 100))
        lines.append("")
        lines.append(f"relative MSE improvement over {imp['reference']} ({pct}% CI, {imp['method']}):")
        for name, scales in imp["by_condition"].items():
            cells = []
            for scale, e in scales.items():
                if e["estimate"] is None:
                    cells.append(f"{scale} -")
                    continue
                ci = "" if e["ci_low"] is None else f" [{100 * e['ci_low']:+.1f}, {100 * e['ci_high']:+.1f}]"
                cells.append(f"{scale} {100 * e['estimate']:+.1f}%{ci}")
            lines.append(f"  {name:<24}" + "   ".join(cells))
    ca = report.get("check_a") or {}
    if ca:
        lines.append("")
        lines.append(format_check_a(ca))
    labels = {n: conds[n].get("label", n) for n in names}
    lines.append("")
    lines.append(f"CHECK B (every {report['check_b']['every']} batches):")
    lines.append(format_check_b(report["check_b"]["rows"], labels))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        import torch

        from .replay import _shard_dataset, episode_batches, run_replay
        from .report import refuse_existing_report

        refuse_existing_report(args.output, args.overwrite)

        if args.threads is not None:
            if args.threads <= 0:
                raise ValueError("--threads must be positive")
            torch.set_num_threads(args.threads)
        device = args.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        config = ReplayConfig(
            batch_size=args.batch_size, max_batches=args.max_batches, seed=args.seed, conditions=tuple(args.conditions),
            baseline=args.baseline, device=device, carry_state=not args.no_carry,
            hard_thresholds=dict(zip(("vec", "chunk", "traj"), args.hard_thresholds)),
            success_thresholds=dict(zip(("vec", "chunk", "traj"), args.success_thresholds)),
        )
        adapter_config = adapter_config_from_args(args)
        if not 0 < args.confidence < 1:
            raise ValueError("--confidence must be in (0, 1)")
        dataset = _shard_dataset(args.shards, config.batch_size)
        plan = episode_batches(dataset, config.batch_size, config.max_batches)
        bar = None
        if not (args.no_progress or args.quiet):
            from tqdm import tqdm

            bar = tqdm(total=sum(len(b) for b in plan), unit="sample", desc="sigma-eval", dynamic_ncols=True)
        try:
            report, result = run_replay(
                args.shards, args.checkpoint, args.output, config=config, adapter_config=adapter_config,
                baseline_checkpoint=args.baseline_checkpoint, heads=args.heads, init_heads=args.init_heads,
                ci_method=args.ci,
                confidence=args.confidence, n_boot=args.n_bootstrap, table_every=args.table_every,
                plots=not args.no_plots, progress=None if bar is None else bar.update, dataset=dataset, plan=plan,
            )
        finally:
            if bar is not None:
                bar.close()
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"sigma-eval: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.output)
    if not args.quiet:
        print(format_summary(report))
        print("")
        print(f"replayed {result.num_samples} samples in {result.num_batches} batches x {len(config.conditions)} "
              f"conditions: {result.seconds:.2f} s ({result.samples_per_s:.1f} samples/s)")
        for name, path in report.get("files", {}).items():
            print(f"{name}: {path}")
    else:
        print(out / "sigma_eval_report.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
