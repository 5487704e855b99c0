# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The evaluation report: aggregation of per-batch records, confidence intervals, JSON, JSONL, plots.

Everything here works on *per-batch records*, plain dicts, so any replay (offline shards, a rosbag
replayed through the ROS nodes, closed-loop episodes) can produce the same report:

    {"condition": "sigma", "batch": 0, "num_samples": 4,
     "mse_vec": ..., "mse_chk": ..., "mse_trj": ...,          # batch means over samples
     "tau_l2": ..., "sem_align": ...,                          # batch means (optional)
     "num_hard": 1, "hard_mse_vec": ..., "hard_mse_chk": ..., "hard_mse_trj": ...,  # means over hard samples
     "num_within_thresholds": 3,        # offline replay: samples whose MSEs are all within the success thresholds
     "episode_success": 1,              # closed loop: one record per episode, 1 when the task was solved
     ... any other numeric key (e.g. "adapter_scale", "latency_ms") is averaged into "extra" ...}

Success has one meaning per field name: ``window_success_rate`` (offline and bag replay: the fraction
of windows whose vector, chunk and trajectory MSEs are all within ``success_thresholds``) and
``episode_success_rate`` (closed loop: the fraction of episodes that solved the task). A report has
the one its records carry. Every field of the paper (:data:`PAPER_FIELDS`) is always present; one
that this evaluation cannot measure is null and ``not_applicable[field]`` says why.
`build_report(records, ...)` -> dict; `write_report(report, records, out_dir)` writes
``sigma_eval_report.json``, ``sigma_eval_batches.jsonl`` and the PNG plots.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPORT_NAME = "sigma_eval_report.json"
BATCH_LOG_NAME = "sigma_eval_batches.jsonl"
MSE_PLOT_NAME = "sigma_eval_mse_per_batch.png"
IMPROVEMENT_PLOT_NAME = "sigma_eval_improvement.png"
REPORT_FORMAT = "sigma-eval-v2"  # v2: window_success_rate / episode_success_rate, not_applicable, CHECK A vs init
# sigma_eval_report.json fields named in the paper (section 6), per condition and at the top level
PAPER_FIELDS = ("num_samples", "num_batches", "avg_mse_vector", "avg_mse_chunk", "avg_mse_traj", "avg_tau_l2",
                "avg_semantic_text_alignment", "hard_thresholds", "hard_sample_fraction", "total_hard_samples",
                "avg_hard_mse_vector", "avg_hard_mse_chunk", "avg_hard_mse_traj")

# time scale -> (per-batch key, report field, hard report field, threshold key)
SCALES = {
    "vector": ("mse_vec", "avg_mse_vector", "avg_hard_mse_vector", "vec"),
    "chunk": ("mse_chk", "avg_mse_chunk", "avg_hard_mse_chunk", "chunk"),
    "traj": ("mse_trj", "avg_mse_traj", "avg_hard_mse_traj", "traj"),
}
HARD_KEYS = {"mse_vec": "hard_mse_vec", "mse_chk": "hard_mse_chk", "mse_trj": "hard_mse_trj"}
DEFAULT_THRESHOLDS = {"vec": 0.1, "chunk": 0.2, "traj": 0.2}
CHECK_B_COLUMNS = ("mse_vec", "mse_chk", "mse_trj", "tau_l2", "sem_align")
_KNOWN_KEYS = {"condition", "batch", "num_samples", "num_hard", "num_within_thresholds", "episode_success", "tau_l2",
               "sem_align",
               *HARD_KEYS, *HARD_KEYS.values()}


# ----------------------------------------------------------------------------- statistics
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (Lentz, as in Numerical Recipes)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbeta) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbeta) * _betacf(b, a, 1.0 - x) / b


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval of a success rate (``(None, None)`` for no trials)."""
    if n <= 0:
        return None, None
    z = {0.9: 1.6448536, 0.95: 1.959964, 0.99: 2.5758293}.get(round(confidence, 2), 1.959964)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def student_t_cdf(t: float, df: float) -> float:
    """CDF of Student's t distribution with df degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_ppf(p: float, df: float) -> float:
    """Quantile of Student's t (bisection on the exact CDF; |error| < 1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


def relative_improvement(
    reference: Sequence[float],
    candidate: Sequence[float],
    weights: Sequence[float] | None = None,
    method: str = "bootstrap",
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Relative improvement of `candidate` over `reference` from paired per-batch errors.

    estimate = 1 - sum(w * candidate) / sum(w * reference)  (w = samples per batch; > 0 = better).
    method "bootstrap": percentile CI of the estimate over batches resampled with replacement.
    method "t": t-based CI of the mean per-batch improvement 1 - candidate_i / reference_i.
    With fewer than two batches the CI is None.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape or ref.ndim != 1:
        raise ValueError(f"reference and candidate must be 1-D and paired, got {ref.shape} and {cand.shape}")
    w = np.ones_like(ref) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != ref.shape:
        raise ValueError("weights must have one entry per batch")
    if method not in ("bootstrap", "t"):
        raise ValueError(f"method must be 'bootstrap' or 't', got {method!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if method == "bootstrap" and n_boot <= 0:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    ok = np.isfinite(ref) & np.isfinite(cand) & (w > 0)
    ref, cand, w = ref[ok], cand[ok], w[ok]
    n = int(ref.size)
    out: dict[str, Any] = {"method": method, "confidence": confidence, "n_batches": n,
                           "estimate": None, "ci_low": None, "ci_high": None,
                           "reference_mse": None, "candidate_mse": None, "mean_batch_improvement": None}
    if n == 0:
        return out
    ref_mean = float(np.sum(w * ref) / np.sum(w))
    cand_mean = float(np.sum(w * cand) / np.sum(w))
    out["reference_mse"], out["candidate_mse"] = ref_mean, cand_mean
    if ref_mean > 0:
        out["estimate"] = 1.0 - cand_mean / ref_mean
    per_batch = np.where(ref > 0, 1.0 - cand / np.where(ref > 0, ref, 1.0), np.nan)
    per_batch = per_batch[np.isfinite(per_batch)]
    if per_batch.size:
        out["mean_batch_improvement"] = float(per_batch.mean())
    if n < 2:
        return out
    alpha = 1.0 - confidence
    if method == "t":
        m = per_batch.size
        if m < 2:
            return out
        mean = float(per_batch.mean())
        se = float(per_batch.std(ddof=1) / math.sqrt(m))
        half = student_t_ppf(1.0 - alpha / 2.0, m - 1) * se
        out["ci_low"], out["ci_high"] = mean - half, mean + half
        return out
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(int(n_boot), n))
    wr, wc = (w * ref)[idx].sum(axis=1), (w * cand)[idx].sum(axis=1)
    valid = wr > 0
    stats = 1.0 - wc[valid] / wr[valid]
    if stats.size:
        out["ci_low"] = float(np.quantile(stats, alpha / 2.0))
        out["ci_high"] = float(np.quantile(stats, 1.0 - alpha / 2.0))
    return out


# ----------------------------------------------------------------------------- aggregation
def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _weighted_mean(pairs: Iterable[tuple[float | None, float]]) -> float | None:
    total, weight = 0.0, 0.0
    for value, w in pairs:
        if value is not None and w > 0:
            total += value * w
            weight += w
    return total / weight if weight > 0 else None


def _clean(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats -> None, numpy/torch scalars -> Python numbers."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, np.floating):
        return _clean(float(obj))
    return obj


def conditions_in(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Condition names in first-appearance order."""
    seen: list[str] = []
    for r in records:
        if r["condition"] not in seen:
            seen.append(r["condition"])
    return seen


def _null_reasons(out: Mapping[str, Any], has_hard: bool) -> dict[str, str]:
    """Why each null paper field is null (what the records lacked)."""
    no_ref = "no reference action to compare with: the records have no {} (this evaluation scores no actions)"
    reasons = {}
    for key, field, hard_field, _ in SCALES.values():
        reasons[field] = no_ref.format(key)
        reasons[hard_field] = (no_ref.format(key) if not has_hard else
                               "no hard samples: every sample is within the hard thresholds")
    reasons["avg_tau_l2"] = "no telepathy factors in the records (this policy has no tau)"
    reasons["avg_semantic_text_alignment"] = "no semantic factors in the records (this policy has none)"
    reasons["hard_sample_fraction"] = reasons["total_hard_samples"] = \
        "no per-sample errors to compare with the hard thresholds (no reference action)"
    return {f: reasons[f] for f in PAPER_FIELDS if out.get(f) is None and f in reasons}


def aggregate_condition(records: Sequence[Mapping[str, Any]], hard_thresholds: Mapping[str, float],
                        reasons: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the paper's summary fields for the records of one condition.

    ``reasons`` overrides the default explanation of a null field.
    """
    n_samples = sum(int(r.get("num_samples", 0)) for r in records)
    batches = {r.get("batch") for r in records}
    out: dict[str, Any] = {"num_samples": n_samples, "num_batches": len(batches)}
    for key, field, _, _ in SCALES.values():
        out[field] = _weighted_mean((_num(r.get(key)), r.get("num_samples", 0)) for r in records)
    out["avg_tau_l2"] = _weighted_mean((_num(r.get("tau_l2")), r.get("num_samples", 0)) for r in records)
    out["avg_semantic_text_alignment"] = _weighted_mean(
        (_num(r.get("sem_align")), r.get("num_samples", 0)) for r in records
    )
    out["hard_thresholds"] = dict(hard_thresholds)
    has_hard = any(r.get("num_hard") is not None for r in records)
    total_hard = sum(int(r.get("num_hard") or 0) for r in records)
    out["hard_sample_fraction"] = (total_hard / n_samples) if (has_hard and n_samples) else None
    out["total_hard_samples"] = total_hard if has_hard else None
    for key, _, hard_field, _ in SCALES.values():
        hk = HARD_KEYS[key]
        out[hard_field] = _weighted_mean((_num(r.get(hk)), int(r.get("num_hard") or 0)) for r in records)
    if any(r.get("num_within_thresholds") is not None for r in records):
        total = sum(int(r.get("num_within_thresholds") or 0) for r in records)
        out["total_success_windows"] = total
        out["window_success_rate"] = total / n_samples if n_samples else None
    episodes = [int(r["episode_success"]) for r in records if r.get("episode_success") is not None]
    if episodes:
        out["episodes"] = len(episodes)
        out["successful_episodes"] = sum(episodes)
        out["episode_success_rate"] = sum(episodes) / len(episodes)
    extra_keys: list[str] = []
    for r in records:
        for k, v in r.items():
            if k not in _KNOWN_KEYS and k not in {s[0] for s in SCALES.values()} and k not in extra_keys \
                    and _num(v) is not None:
                extra_keys.append(k)
    # extras are means weighted by samples; over episodes (closed loop) each episode counts once
    def weight(r: Mapping[str, Any]) -> float:
        return 1 if r.get("episode_success") is not None else r.get("num_samples", 0)

    out["extra"] = {k: _weighted_mean((_num(r.get(k)), weight(r)) for r in records) for k in extra_keys}
    null = _null_reasons(out, has_hard and n_samples > 0)
    out["not_applicable"] = {f: (reasons or {}).get(f, why) for f, why in null.items()}
    return out


def success_rate_of(entry: Mapping[str, Any], kind: str = "episode") -> float | None:
    """``entry``'s ``<kind>_success_rate`` ("episode" or "window").

    Also from a report written before the rename (``sigma-eval-v1``: ``success_rate``, which meant episodes in a
    closed-loop report and windows within the thresholds in an offline one; ``kind`` says which the caller reads).
    """
    if kind not in ("episode", "window"):
        raise ValueError(f"kind must be 'episode' or 'window', got {kind!r}")
    value = entry.get(f"{kind}_success_rate")
    return entry.get("success_rate") if value is None else value


def paired_series(records: Sequence[Mapping[str, Any]], condition: str, reference: str, key: str):
    """Return (reference values, candidate values, weights) over the batches both conditions have."""
    ref = {r["batch"]: r for r in records if r["condition"] == reference}
    cand = {r["batch"]: r for r in records if r["condition"] == condition}
    batches = sorted(set(ref) & set(cand), key=lambda b: (str(type(b)), b))
    rv, cv, w = [], [], []
    for b in batches:
        x, y = _num(ref[b].get(key)), _num(cand[b].get(key))
        if x is None or y is None:
            continue
        rv.append(x)
        cv.append(y)
        w.append(float(ref[b].get("num_samples", 1)))
    return rv, cv, w


def check_b_rows(records: Sequence[Mapping[str, Any]], every: int = 20) -> list[dict[str, Any]]:
    """Return the per-batch table of the paper's Tables 2 and 3 (every `every`-th batch, per condition)."""
    every = max(1, int(every))
    rows = []
    for cond in conditions_in(records):
        for r in records:
            if r["condition"] == cond and isinstance(r.get("batch"), int) and r["batch"] % every == 0:
                rows.append({"condition": cond, "batch": r["batch"], **{k: _num(r.get(k)) for k in CHECK_B_COLUMNS}})
    return rows


def format_check_b(rows: Sequence[Mapping[str, Any]], labels: Mapping[str, str] | None = None) -> str:
    """CHECK B as a fixed-width text table."""
    labels = labels or {}
    head = f"{'model':<24}{'batch':>7}" + "".join(f"{c:>12}" for c in CHECK_B_COLUMNS)
    lines = [head, "-" * len(head)]
    last = None
    for row in rows:
        name = labels.get(row["condition"], row["condition"]) if row["condition"] != last else ""
        last = row["condition"]
        cells = "".join(f"{'-':>12}" if row[c] is None else f"{row[c]:>12.4g}" for c in CHECK_B_COLUMNS)
        lines.append(f"{name:<24}{row['batch']:>7}{cells}")
    return "\n".join(lines)


def build_report(
    records: Sequence[Mapping[str, Any]],
    *,
    hard_thresholds: Mapping[str, float] | None = None,
    success_thresholds: Mapping[str, float] | None = None,
    reference: str = "baseline",
    condition_info: Mapping[str, Mapping[str, Any]] | None = None,
    not_applicable: Mapping[str, Mapping[str, str]] | None = None,
    check_a: Mapping[str, Any] | None = None,
    ci_method: str = "bootstrap",
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    table_every: int = 20,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Aggregate per-batch records into the report dict (see module docstring for the record keys).

    `reference` names the condition every other condition's relative improvement is measured
    against; `condition_info` adds descriptive fields (telepathy/adapter flags) per condition;
    `not_applicable` (condition -> field -> reason) explains null fields better than the default.
    """
    if not records:
        raise ValueError("no batch records to report (was the dataset empty?)")
    for i, r in enumerate(records):
        if "condition" not in r or "batch" not in r:
            raise ValueError(f"batch record {i} lacks 'condition' or 'batch': {sorted(r)}")
    hard = dict(hard_thresholds or DEFAULT_THRESHOLDS)
    names = conditions_in(records)
    conditions: dict[str, Any] = {}
    for name in names:
        summary = dict((condition_info or {}).get(name, {}))
        summary.update(aggregate_condition([r for r in records if r["condition"] == name], hard,
                                           (not_applicable or {}).get(name)))
        conditions[name] = summary
    primary = names[0]
    improvement: dict[str, Any] = {"reference": reference, "method": ci_method, "confidence": confidence,
                                   "by_condition": {}}
    if reference in names:
        for name in names:
            if name == reference:
                continue
            improvement["by_condition"][name] = {
                scale: relative_improvement(*paired_series(records, name, reference, key), method=ci_method,
                                            confidence=confidence, n_boot=n_boot, seed=seed)
                for scale, (key, _, _, _) in SCALES.items()
            }
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "primary_condition": primary,
        # The paper's top-level fields, for the primary (Sigma) condition.
        **{k: v for k, v in conditions[primary].items() if k not in (condition_info or {}).get(primary, {})},
        # the thresholds of window_success_rate (only a report of windows has one)
        **(
            {"success_thresholds": dict(success_thresholds or DEFAULT_THRESHOLDS)}
            if any(r.get("num_within_thresholds") is not None for r in records)
            else {}
        ),
        "conditions": conditions,
        "relative_improvement": improvement,
        "check_a": dict(check_a) if check_a is not None else None,
        "check_b": {
            "every": int(table_every),
            "columns": list(CHECK_B_COLUMNS),
            "rows": check_b_rows(records, table_every),
        },
        "meta": dict(meta or {}),
    }
    return _clean(report)


# ----------------------------------------------------------------------------- files
def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_batch_log(records: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """One JSON object per line, one line per (batch, condition)."""
    path = Path(path)
    _atomic_text(path, "".join(json.dumps(_clean(r), sort_keys=True) + "\n" for r in records))
    return path


def read_batch_log(path: str | Path) -> list[dict[str, Any]]:
    records = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{i}: not a JSON record: {err}") from err
    return records


_STYLE = {  # condition -> (colour, line style, marker, width, z-order)
    "baseline": ("#7f7f7f", "-", None, 3.2, 1),
    "telepathy_off": ("#1f77b4", "--", None, 1.6, 2),
    "telepathy_off_adapter": ("#17becf", ":", None, 1.6, 2),
    "sigma": ("#d62728", "-", "o", 1.8, 4),
    "sigma_adapter": ("#2ca02c", "-", "s", 1.6, 3),
}
_FALLBACK_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#ff7f0e")


def _style(name: str, i: int):
    return _STYLE.get(name, (_FALLBACK_COLOURS[i % len(_FALLBACK_COLOURS)], "-", "^", 1.5, 2))


def plot_mse_per_batch(records: Sequence[Mapping[str, Any]], path: str | Path,
                       labels: Mapping[str, str] | None = None, title: str | None = None) -> Path:
    """Three stacked panels (vector, chunk, trajectory): per-batch MSE of every condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or {}
    names = conditions_in(records)
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(3, 1, figsize=(13.5, 10.5), sharex=True, constrained_layout=True)
    titles = {"vector": "action vector (single step)", "chunk": "action chunk (short horizon)",
              "traj": "action trajectory (long horizon)"}
    for ax, (scale, (key, field, _, _)) in zip(axes, SCALES.items()):
        positive = True
        drawn: dict[str, tuple] = {}
        for i, name in enumerate(names):
            rows = sorted((r for r in records if r["condition"] == name and _num(r.get(key)) is not None),
                          key=lambda r: r["batch"])
            if not rows:
                continue
            xs = [r["batch"] for r in rows]
            ys = [_num(r[key]) for r in rows]
            positive = positive and min(ys) > 0
            colour, ls, marker, lw, z = _style(name, i)
            mean = _weighted_mean((_num(r[key]), r.get("num_samples", 0)) for r in rows)
            label = f"{labels.get(name, name)}  (mean {mean:.4g})"
            same = [other for other, series in drawn.items() if series == (tuple(xs), tuple(ys))]
            if same:  # say so, or a reader looks for a line hidden under another
                label += f"\n    identical to {labels.get(same[0], same[0])}"
            drawn[name] = (tuple(xs), tuple(ys))
            ax.plot(xs, ys, color=colour, linestyle=ls, marker=marker if len(xs) <= 60 else None, markersize=4,
                    linewidth=lw, zorder=z, label=label)
        ax.set_title(f"MSE per batch: {titles[scale]}", fontsize=12, loc="left")
        ax.set_ylabel("MSE", fontsize=11)
        if positive:
            ys_all = [_num(r.get(key)) for r in records if _num(r.get(key)) is not None]
            if ys_all and max(ys_all) / max(min(ys_all), 1e-12) > 50:
                ax.set_yscale("log")
        ax.grid(True, alpha=0.35)
        ax.legend(fontsize=9.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.95,
                  title="condition (mean over samples)", title_fontsize=9.5)
    axes[-1].set_xlabel("batch", fontsize=11)
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title or "Sigma offline replay: per-batch action MSE by condition (lower is better)", fontsize=13)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_improvement(
    report: Mapping[str, Any], path: str | Path, labels: Mapping[str, str] | None = None
) -> Path | None:
    """Bar chart: relative MSE improvement over the reference per time scale, with the CI as error bars."""
    by_cond = (report.get("relative_improvement") or {}).get("by_condition") or {}
    if not by_cond:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or {}
    ref = report["relative_improvement"].get("reference", "baseline")
    method = report["relative_improvement"].get("method", "bootstrap")
    conf = report["relative_improvement"].get("confidence", 0.95)
    names = list(by_cond)
    scales = list(SCALES)
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(10, 5.5), constrained_layout=True)
    for i, name in enumerate(names):
        colour = _style(name, i)[0]
        xs, ys, lo, hi = [], [], [], []
        for j, scale in enumerate(scales):
            entry = by_cond[name][scale]
            est = entry.get("estimate")
            if est is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(100 * est)
            lo.append(100 * (est - entry["ci_low"]) if entry.get("ci_low") is not None else 0.0)
            hi.append(100 * (entry["ci_high"] - est) if entry.get("ci_high") is not None else 0.0)
        if not xs:
            continue
        # a t-based CI is centred on the mean per-batch improvement; clip so error bars stay drawable
        yerr = np.maximum(np.array([lo, hi]), 0.0)
        ax.bar(xs, ys, width=width * 0.92, color=colour, label=labels.get(name, name), yerr=yerr, capsize=5,
               edgecolor="black", linewidth=0.6)
        for x, y, lo, h in zip(xs, ys, yerr[0], yerr[1]):  # the value sits beyond the CI whisker
            tip = y + h if y >= 0 else y - lo
            ax.annotate(f"{y:+.1f}%", (x, tip), textcoords="offset points", xytext=(0, 4 if y >= 0 else -13),
                        ha="center", fontsize=9, fontweight="bold")
    ax.axhline(0.0, color="black", linewidth=1.0)
    ax.margins(y=0.12)
    ax.set_xticks(range(len(scales)), ["action vector", "action chunk", "action trajectory"], fontsize=11)
    ax.set_ylabel(f"MSE reduction vs {labels.get(ref, ref)} (%)", fontsize=11)
    ax.set_title(f"Relative improvement over {labels.get(ref, ref)} ({int(round(conf * 100))}% CI, {method}); "
                 "above 0 = better", fontsize=12, loc="left")
    ax.grid(True, axis="y", alpha=0.35)
    ax.legend(fontsize=9)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def refuse_existing_report(out_dir: str | Path, overwrite: bool) -> None:
    """FileExistsError if out_dir already holds a report, unless ``overwrite`` (the tools' ``--overwrite``)."""
    path = Path(out_dir) / REPORT_NAME
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists already; pass --overwrite to replace it")


def write_report(
    report: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    plots: bool = True,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Write the report JSON, the batch log and (plots=True) the PNGs into out_dir; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"batch_log": write_batch_log(records, out / BATCH_LOG_NAME)}
    if plots:
        paths["mse_plot"] = plot_mse_per_batch(records, out / MSE_PLOT_NAME, labels)
        imp = plot_improvement(report, out / IMPROVEMENT_PLOT_NAME, labels)
        if imp is not None:
            paths["improvement_plot"] = imp
    report = dict(report)
    report["files"] = {k: p.name for k, p in paths.items()}
    paths["report"] = out / REPORT_NAME
    _atomic_text(paths["report"], json.dumps(_clean(report), indent=2, sort_keys=False, allow_nan=False) + "\n")
    return paths
