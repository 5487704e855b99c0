# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Linters as tests, as ament_flake8 / ament_pep257 / ament_copyright are for ROS 2 packages.

Each package's ``test_lint_<package>.py`` calls :func:`assert_lint_clean` on its own directory: ruff with the
repository's ``ruff.toml`` (pycodestyle, pyflakes and pep257 rules) and a check that every Python file starts with
the copyright and SPDX lines (after a shebang).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEADER = ("# Copyright 2026 The Sigma Authors", "# SPDX-License-Identifier: Apache-2.0")
SKIP_DIRS = {"mutants", "build", "install", "log", "dist", ".venv", "__pycache__", ".git"}


def python_files(paths: list[Path]) -> list[Path]:
    """Return the Python files under ``paths`` (files or directories), outside build and cache directories."""
    files = []
    for path in paths:
        candidates = [path] if path.is_file() else sorted(path.rglob("*.py"))
        files += [f for f in candidates if not SKIP_DIRS.intersection(f.parts)]
    return files


def copyright_findings(paths: list[Path]) -> list[str]:
    """Return one line per Python file whose first lines (after a shebang) are not :data:`HEADER`."""
    findings = []
    for f in python_files(paths):
        lines = f.read_text(encoding="utf-8").splitlines()
        if lines and lines[0].startswith("#!"):
            lines = lines[1:]
        if tuple(lines[: len(HEADER)]) != HEADER:
            findings.append(f"{f}: missing copyright header {' / '.join(HEADER)!r}")
    return findings


def ruff_findings(paths: list[Path]) -> list[str]:
    """Return ruff's findings on ``paths`` (the nearest ``ruff.toml`` configures it), one line each."""
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "--quiet",
                          *map(str, paths)], capture_output=True, text=True)
    if run.returncode not in (0, 1):
        raise RuntimeError(f"ruff failed ({run.returncode}): {run.stderr.strip()}")
    return run.stdout.splitlines()


def assert_lint_clean(paths: list[Path]) -> None:
    """Fail with every ruff and copyright finding on ``paths``."""
    findings = ruff_findings(paths) + copyright_findings(paths)
    assert not findings, f"{len(findings)} lint finding(s):\n" + "\n".join(findings)
