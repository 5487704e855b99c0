# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Per-step training metrics: every column of the paper's Table 1 to CSV and JSONL (+ TensorBoard).

Table 1 columns (in order): loss, L_act, L_sem, L_int, L_tau, L_act_hard, w_sem, w_int, w_tau,
hard_ratio, tau_rms. As in the paper, `L_act` is the action term that enters the total loss,
L_act + lambda_hard L_act_hard (Table 1's step-0 row sums that way); the plain alpha-weighted
L_act is logged as `L_act_base`. Extra columns follow (flow-matching loss, the parts of L_sem, the
per-level MSEs, learning rate, gradient norm, throughput).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)

TABLE1_COLUMNS = (
    "loss",
    "L_act",
    "L_sem",
    "L_int",
    "L_tau",
    "L_act_hard",
    "w_sem",
    "w_int",
    "w_tau",
    "hard_ratio",
    "tau_rms",
)
EXTRA_COLUMNS = (
    "L_act_base",
    "L_flow",
    "L_aux",
    "L_time",
    "L_mi",
    "mse_vec",
    "mse_chk",
    "mse_trj",
    "baseline_from_data",
    "prev_window",
    "lr",
    "grad_norm",
    "epoch",
    "samples",
    "samples_per_s",
)
COLUMNS = ("step",) + TABLE1_COLUMNS + EXTRA_COLUMNS
CSV_NAME, JSONL_NAME = "metrics.csv", "metrics.jsonl"


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLogger:
    """Append-only CSV + JSONL writer; on resume it drops rows logged after the checkpoint's step."""

    def __init__(self, directory: str | Path, resume_step: int | None = None, tensorboard: bool = False) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.csv_path, self.jsonl_path = self.directory / CSV_NAME, self.directory / JSONL_NAME
        if resume_step is None:
            for p in (self.csv_path, self.jsonl_path):
                p.unlink(missing_ok=True)
        else:
            self._truncate_after(resume_step)
        new_csv = not self.csv_path.exists()
        self._csv_file = open(self.csv_path, "a", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=COLUMNS, extrasaction="ignore")
        if new_csv:
            self._csv.writeheader()
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.directory / "tensorboard"))
            except ImportError:
                log.warning("tensorboard is not installed; logging to CSV/JSONL only (pip install tensorboard)")

    def _truncate_after(self, step: int) -> None:
        if self.jsonl_path.exists():
            keep = [line for line in self.jsonl_path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= step]
            self.jsonl_path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
        if self.csv_path.exists():
            with open(self.csv_path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            with open(self.csv_path, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(r for r in rows if int(r["step"]) <= step)

    def log(self, row: dict) -> None:
        row = {k: _clean(v) for k, v in row.items()}
        self._csv.writerow(row)
        self._csv_file.flush()
        self._jsonl.write(json.dumps({k: row.get(k) for k in COLUMNS if k in row}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k in TABLE1_COLUMNS + EXTRA_COLUMNS:
                v = row.get(k)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(f"train/{k}", v, row["step"])

    def close(self) -> None:
        self._csv_file.close()
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(directory: str | Path) -> list[dict]:
    """Return the JSONL rows of a run (for tests and notebooks)."""
    path = Path(directory) / JSONL_NAME
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
