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
from typing import Any, Callable

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
    "telepathy",
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


def _parse_lines(path: Path, parse: Callable[[str], Any]) -> list[tuple[str, Any]]:
    """Return (line, parse(line)) for each non-blank line of ``path``.

    A half-written last line (a crash mid-write: no end of line, or one ``parse`` rejects) is dropped with a
    warning; any other line ``parse`` rejects is a ValueError naming the file and the line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a metrics log (not UTF-8 text: {err})") from err
    lines = text.splitlines()
    out = []
    for number, line in enumerate(lines, 1):
        last = number == len(lines)
        try:
            if last and not text.endswith("\n"):
                raise ValueError("no end of line")
            if line.strip():
                out.append((line, parse(line)))
        except (ValueError, KeyError, TypeError) as err:
            if not last:
                raise ValueError(f"{path} line {number} is corrupt ({err}): repair or delete it") from err
            log.warning("%s: dropping the half-written last line %d (%s)", path, number, err)
    return out


def _jsonl_row(line: str) -> dict:
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    int(row["step"])
    return row


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
            keep = [line for line, row in _parse_lines(self.jsonl_path, _jsonl_row) if int(row["step"]) <= step]
            self.jsonl_path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
        if self.csv_path.exists():
            header: list[str] = []

            def csv_row(line: str) -> dict | None:
                values = next(csv.reader([line]))
                if not header:
                    header.extend(values)
                    return None
                if len(values) != len(header):
                    raise ValueError(f"{len(values)} fields, the header has {len(header)}")
                row = dict(zip(header, values))
                int(row["step"])
                return row

            rows = [row for _, row in _parse_lines(self.csv_path, csv_row) if row is not None]
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
    """Return the JSONL rows of a run (for tests and notebooks; a half-written last line is left out)."""
    return [row for _, row in _parse_lines(Path(directory) / JSONL_NAME, _jsonl_row)]
