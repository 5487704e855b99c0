# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""`sigma-eval`: offline closed-loop replay of shards through a Sigma checkpoint (paper sections 5, 6).

Every field below is ``--field=...``; the replay options are ``--replay.<field>`` (ReplayConfig) and
the risk gate's ``--adapter.<field>`` (AdapterConfig); ``--config_path=FILE`` (YAML or JSON) sets the
starting values and flags override it (draccus, like lerobot-train). Example::

    sigma-eval --shards=data/shards --checkpoint=runs/sigma --output=eval/ --replay.batch_size=4 --adapter.k=2

writes eval/sigma_eval_report.json, eval/sigma_eval_batches.jsonl and PNG plots, and prints the
summary, CHECK A and CHECK B. An existing report is replaced only with ``--overwrite=true``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..cli import check_choice, parse_cli
from .adapter import AdapterConfig
from .replay import ReplayConfig

PROG = "sigma-eval"
CI_METHODS = ("bootstrap", "t")
SUMMARY_FIELDS = ("num_samples", "num_batches", "avg_mse_vector", "avg_mse_chunk", "avg_mse_traj", "avg_tau_l2",
                  "avg_semantic_text_alignment", "hard_sample_fraction", "total_hard_samples",
                  "avg_hard_mse_vector", "avg_hard_mse_chunk", "avg_hard_mse_traj", "window_success_rate")


@dataclass
class ReportOptions:
    """The outputs and statistics of an evaluation report's command line (sigma-eval, sigma-bag-eval)."""

    output: str = "sigma_eval"  # directory for the report, batch log and plots
    overwrite: bool = False  # replace a report already in output
    heads: str | None = None  # sigma_telepathy_heads.safetensors to load over the checkpoint
    threads: int | None = None  # torch CPU threads (torch.set_num_threads; on a busy machine 1 avoids oversubscription)
    ci: str = "bootstrap"  # confidence interval over batches: bootstrap or t
    confidence: float = 0.95
    n_bootstrap: int = 2000
    table_every: int = 20  # CHECK B lists every N-th batch
    plots: bool = True  # write the PNG plots
    quiet: bool = False  # print only the report path

    def __post_init__(self) -> None:
        check_choice("--ci", self.ci, CI_METHODS)
        if not 0 < self.confidence < 1:
            raise ValueError("--confidence must be in (0, 1)")
        if self.n_bootstrap <= 0:
            raise ValueError(f"--n_bootstrap must be positive, got {self.n_bootstrap}")
        if self.threads is not None and self.threads <= 0:
            raise ValueError("--threads must be positive")


@dataclass
class EvalCLI(ReportOptions):
    """sigma-eval's command line: inputs and outputs, the replay (replay), the adapter (adapter) and statistics."""

    shards: str | None = None  # directory of shard_*.safetensors (sigma-preprocess output); required
    # Sigma model checkpoint dir, a training step dir, or a sigma-train output dir (latest step); required
    checkpoint: str | None = None
    baseline_checkpoint: str | None = None  # separate untuned baseline policy (replayed with telepathy off)
    # the heads the run started from, for CHECK A (default: sigma_telepathy_heads_init.safetensors of the
    # checkpoint's training run, when found)
    init_heads: str | None = None
    # batches (the paper: 723 windows in 181 batches of 4), seed, conditions, baseline source, thresholds,
    # carry_state (false: every window from a zero state), device (cpu, cuda, cuda:0 or auto)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)  # the risk gate (paper 4.3)
    progress: bool = True  # tqdm progress bar

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("shards", "checkpoint"):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required")


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
    cli = parse_cli(EvalCLI, argv, PROG, description=__doc__)
    logging.basicConfig(
        level=logging.WARNING if cli.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        import torch

        from .replay import _shard_dataset, episode_batches, run_replay
        from .report import refuse_existing_report

        refuse_existing_report(cli.output, cli.overwrite)

        if cli.threads is not None:
            torch.set_num_threads(cli.threads)
        config = cli.replay
        if config.device == "auto":
            config = dataclasses.replace(config, device="cuda" if torch.cuda.is_available() else "cpu")
        dataset = _shard_dataset(cli.shards, config.batch_size)
        plan = episode_batches(dataset, config.batch_size, config.max_batches)
        bar = None
        if cli.progress and not cli.quiet:
            from tqdm import tqdm

            bar = tqdm(total=sum(len(b) for b in plan), unit="sample", desc=PROG, dynamic_ncols=True)
        try:
            report, result = run_replay(
                cli.shards, cli.checkpoint, cli.output, config=config, adapter_config=cli.adapter,
                baseline_checkpoint=cli.baseline_checkpoint, heads=cli.heads, init_heads=cli.init_heads,
                ci_method=cli.ci, confidence=cli.confidence, n_boot=cli.n_bootstrap, table_every=cli.table_every,
                plots=cli.plots, progress=None if bar is None else bar.update, dataset=dataset, plan=plan,
            )
        finally:
            if bar is not None:
                bar.close()
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    out = Path(cli.output)
    if not cli.quiet:
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
