# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""scripts/mutation.py's fixed ``--fast`` selection names test files and test functions that exist."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fast_selection_names_existing_tests():
    spec = importlib.util.spec_from_file_location("sigma_mutation_script", ROOT / "scripts" / "mutation.py")
    mutation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mutation)
    assert len(set(mutation.FAST_TESTS)) == len(mutation.FAST_TESTS)
    for entry in mutation.FAST_TESTS:
        path, _, test = entry.partition("::")
        source = ROOT / "sigma_model" / path
        assert source.is_file(), entry
        if test:
            names = {n.name for n in ast.walk(ast.parse(source.read_text())) if isinstance(n, ast.FunctionDef)}
            assert test.split("[")[0] in names, entry
