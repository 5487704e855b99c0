# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Linters as tests: ruff (pycodestyle, pyflakes, pep257 rules) and copyright/SPDX headers.

Linted: the sigma_model package, benchmarks/, scripts/ and the root conftest.py.
"""

from pathlib import Path

import pytest

pytest.importorskip("ruff")

from sigma_model.testing_lint import assert_lint_clean  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# sigma_model, and the files of the repository root that no package holds.
PATHS = [ROOT / "sigma_model"] + [
    p for p in (ROOT / "benchmarks", ROOT / "scripts", ROOT / "conftest.py") if p.exists()
]


def test_lint():
    assert_lint_clean(PATHS)
