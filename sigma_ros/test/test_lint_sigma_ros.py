# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Linters as tests: ruff (pycodestyle, pyflakes, pep257 rules) and copyright/SPDX headers.

Linted: the sigma_ros package, as ament_flake8 / ament_pep257 / ament_copyright.
"""

from pathlib import Path

import pytest

pytest.importorskip("ruff")

from sigma_model.testing_lint import assert_lint_clean  # noqa: E402

PATHS = [Path(__file__).resolve().parents[1]]


def test_lint():
    assert_lint_clean(PATHS)
