# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Statistics, table and plot of benchmarks/so101_sim_comparison.py (its results JSON in, Markdown and PNG out)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

#: two-sided 95% quantiles of Student's t for 1..30 degrees of freedom
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """Return the two-sided 95% quantile of Student's t (table to 30 degrees of freedom, Cornish-Fisher beyond)."""
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def summary(rates: list[float], successes: list[int], episodes: int) -> dict[str, Any]:
    """Return the mean success over seeds with a 95% CI: t over seeds (>= 2 seeds) or Wilson on the pooled episodes."""
    from sigma_model.evaluation.report import wilson_interval

    n, mean = len(rates), sum(rates) / len(rates)
    if n >= 2:
        sd = math.sqrt(sum((r - mean) ** 2 for r in rates) / (n - 1))
        half = t_quantile_975(n - 1) * sd / math.sqrt(n)
        return {"mean": mean, "ci95": [max(0.0, mean - half), min(1.0, mean + half)],
                "ci_method": f"t over {n} seeds (df {n - 1}), clipped to [0, 1]"}
    lo, hi = wilson_interval(sum(successes), n * episodes)
    return {"mean": mean, "ci95": [lo, hi], "ci_method": f"Wilson on {n * episodes} pooled episodes"}


def time_to_reach(rates: dict[str, float], total_steps: int, wall_s: float | None,
                  threshold: float = 0.8) -> dict[str, Any]:
    """Return the first evaluated checkpoint whose success reaches `threshold`, and its estimated training time.

    The time is the run's wall time x step / steps (uniform speed). Only the evaluated checkpoints count, so a hit at
    the first of them (`at_first_evaluated`) may have been reached earlier.
    """
    steps = sorted(int(s) for s in rates)
    hit = next((s for s in steps if rates[str(s)] >= threshold), None)
    return {"threshold": threshold, "step": hit, "at_first_evaluated": hit is not None and hit == steps[0],
            "wall_s_est": None if hit is None or wall_s is None else wall_s * hit / total_steps}


def reach_cell(reach: dict[str, Any]) -> str:
    if reach["step"] is None:
        return "not reached"
    wall = "-" if reach["wall_s_est"] is None else f"{reach['wall_s_est'] / 60:.1f}"
    return f"{'<= ' if reach['at_first_evaluated'] else ''}{reach['step']} ({wall})"


def markdown(results: dict[str, Any]) -> str:
    ev, sel = results["evaluation"], results.get("selection")
    pct = lambda v: f"{100 * v:.0f}%"  # noqa: E731
    chosen_head = (f" checkpoint chosen on episodes {sel['range']}: step "
                   "(held-out success) | mean of the chosen [95% CI] |") if sel else ""
    lines = [f"Closed-loop success on the held-out episodes {results['seeds']['held_out']} ({ev['episodes']} per "
             f"checkpoint, at most {ev['max_steps']} ticks), commit `{results['commit']}`; demonstrations: "
             f"{results['seeds']['demonstrations']['episodes']} episodes.", "",
             "| method | seeds | success per seed (last checkpoint) | mean [95% CI] | min over 2nd-half checkpoints "
             "| first checkpoint >= 80%: step (est. min) |" + chosen_head + " train wall time per seed (min) "
             "| samples per seed | device | scaled down |",
             "|---|---|---|---|---|---|" + ("---|---|" if sel else "") + "---|---|---|---|"]
    for name, m in results["methods"].items():
        lo, hi = m["ci95"]
        wall = ", ".join("-" if w is None else f"{w / 60:.1f}" for w in m["train_wall_s"])
        chosen = ""
        if sel:
            picks = [m["selected"].get(str(seed)) for seed in m["seeds"]]
            mean = m.get("selected_summary")
            chosen = (" " + ", ".join("-" if p is None else f"{p['step']} ({pct(p['success'])})" for p in picks)
                      + " | " + ("-" if mean is None else
                                 f"{pct(mean['mean'])} [{pct(mean['ci95'][0])}, {pct(mean['ci95'][1])}]") + " |")
        lines.append(f"| {name} | {', '.join(map(str, m['seeds']))} | {', '.join(map(pct, m['success']))} | "
                     f"{pct(m['mean'])} [{pct(lo)}, {pct(hi)}] | {pct(m['second_half_min'])} | "
                     f"{', '.join(map(reach_cell, m['reach_80']))} |{chosen} {wall} | "
                     f"{', '.join(map(str, m['samples']))} | {m['device']} | {'yes' if m['scaled_down'] else 'no'} |")
    methods = sorted({m["ci_method"] for m in results["methods"].values()})
    lines += ["", f"95% CI: {'; '.join(methods)}. Training: {results['budget']['steps']} steps x batch "
              f"{results['budget']['batch_size']} per run. First checkpoint >= 80%: per seed, of the evaluated "
              "checkpoints ('<=': already the first of them), its time estimated as the run's wall time x step / "
              "steps." + (" Chosen checkpoint: the evaluated checkpoint with the most successes on the selection "
                          "episodes (the later on a tie), as sigma-make-default's select stage ships; its held-out "
                          "success is reported, the held-out episodes never choose." if sel else "")
              + " Recipes:", ""]
    lines += [f"- {name}: {m['recipe']['summary']}" for name, m in results["methods"].items()]
    return "\n".join(lines + pose_table(results) + generalisation_table(results)) + "\n"


def pose_table(results: dict[str, Any]) -> list[str]:
    """Markdown lines: each method's and seed's held-out success by the cube's start pose (results["pose_bins"])."""
    bins = results.get("pose_bins")
    if not bins:
        return []
    y, x = bins["yaw_deg"], bins["x_m"]
    heads = [f"yaw {y[k]:.0f} to {y[k + 1]:.0f} deg" for k in range(3)] + [f"x < {x[1]:.2f} m (near)",
                                                                           f"x >= {x[1]:.2f} m"]
    lines = ["", f"Held-out success by the cube's start pose ({bins['counted']}; successes / episodes):", "",
             "| method | seed | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(heads)]
    for name, m in results["methods"].items():
        for seed, counts in m["by_pose"].items():
            cells = [f"{100 * s / n:.0f}% ({s}/{n})" if n else "-" for s, n in (counts[b] for b in bins["bins"])]
            lines.append(f"| {name} | {seed} | " + " | ".join(cells) + " |")
    return lines


def generalisation_table(results: dict[str, Any]) -> list[str]:
    """Markdown lines: each method's chosen checkpoints on the held-out episodes with each variation."""
    gen = results.get("generalisation")
    if not gen:
        return []
    variations = gen["variations"]
    lines = ["", f"Generalisation: {gen['checkpoint']}, the held-out episodes with each variation (mean [95% CI]; "
             "successes per seed; nominal: the same episodes again):", "",
             "| method | chosen step per seed | " + " | ".join(variations) + " |",
             "|---|---|" + "---|" * len(variations)]
    for name, m in results["methods"].items():
        per_seed = m["generalisation"]
        cells = []
        for v in variations:
            mean = m["generalisation_summary"][v]
            cells.append(f"{100 * mean['mean']:.0f}% [{100 * mean['ci95'][0]:.0f}%, {100 * mean['ci95'][1]:.0f}%] ("
                         + ", ".join(str(g["by_variation"][v]["successes"]) for g in per_seed.values()) + ")")
        steps = ", ".join(str(g["step"]) for g in per_seed.values())
        lines.append(f"| {name} | {steps} | " + " | ".join(cells) + " |")
    return lines


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    markers = "osD^v<>ph*"
    for colour, (name, m) in enumerate(results["methods"].items()):
        for i, (seed, points) in enumerate(m["checkpoints"].items()):
            steps = [int(s) for s in points]
            ax.plot(steps, list(points.values()), marker=markers[i % len(markers)], color=f"C{colour}",
                    label=f"{name} seed {seed}")
    ax.set(xlabel="training step", ylabel=f"success rate ({results['evaluation']['episodes']} held-out episodes)",
           ylim=(-0.03, 1.03), title="Simulated SO-101 pick-and-place: success against training step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
