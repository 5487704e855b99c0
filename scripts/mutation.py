# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Mutation testing of sigma_model's core modules with mutmut (``make mutation``).

Runs ``mutmut run`` from ``sigma_model/`` (configuration: ``[tool.mutmut]`` in sigma_model/pyproject.toml;
the mutated copy lands in ``sigma_model/mutants/``, which imports as ``sigma_model``) on the functions in
SCOPE, then prints the mutation score per module and every surviving mutant. Mutants listed in
benchmarks/results/mutation_equivalent.md (``- `mutant name`: reason``) are equivalent: they are reported
apart and left out of the score.

    python scripts/mutation.py                      # every module in SCOPE, then the report
    python scripts/mutation.py --module safety      # one module (repeatable): its untested and surviving mutants
    python scripts/mutation.py --module safety --all  # every mutant of it again
    python scripts/mutation.py --module safety --fast  # against the fast unit tests only (a lower bound)
    python scripts/mutation.py --report-only        # the report of the last results
    python scripts/mutation.py --show NAME          # the diff of one mutant
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG_DIR = ROOT / "sigma_model"
MUTANTS = PKG_DIR / "mutants"
EQUIVALENT_FILE = ROOT / "benchmarks" / "results" / "mutation_equivalent.md"

# module label -> mutant-name globs (mutmut names a mutant <module>.x_<function>__mutmut_<n> or
# <module>.xǁ<Class>ǁ<method>__mutmut_<n>). The files are listed in [tool.mutmut] only_mutate.
SCOPE: dict[str, list[str]] = {
    "safety": ["sigma_model.safety.*"],
    "control_loop": ["sigma_model.control_loop.*"],
    "losses": ["sigma_model.training.losses.*"],
    "curriculum": ["sigma_model.training.curriculum.*"],
    "trainer_step": ["sigma_model.training.trainer.x_compute_losses__mutmut_*",
                     "sigma_model.training.trainer.xǁSigmaTrainerǁtrain_step__mutmut_*"],
    "recurrence": ["sigma_model.language_workspace.xǁSemanticMemoryǁforward__mutmut_*",
                   "sigma_model.language_workspace.xǁLanguageModulatorǁforward__mutmut_*",
                   "sigma_model.modeling_sigma.xǁSigmaModelǁforward__mutmut_*",
                   "sigma_model.modeling_sigma.xǁSigmaModelǁselect_action__mutmut_*"],
    "adapter": ["sigma_model.evaluation.adapter.*"],
    "shards": ["sigma_model.data.shards.x_read_shard__mutmut_*",
               "sigma_model.data.shards.x_read_shard_header__mutmut_*",
               "sigma_model.data.shards.x__file_sha256__mutmut_*",
               "sigma_model.data.shards.x_verify_shard_checksum__mutmut_*",
               "sigma_model.data.shards.xǁShardWriterǁ*",
               "sigma_model.data.shards.xǁShardDatasetǁ*"],
    "replay": ["sigma_model.evaluation.replay.x_replay__mutmut_*",
               "sigma_model.evaluation.replay.xǁEpisodeStateǁ*",
               "sigma_model.evaluation.replay.x_batch_record__mutmut_*",
               "sigma_model.evaluation.replay.x_observation_from_batch__mutmut_*"],
}
# ``--fast``: only these unit tests run (paths relative to sigma_model/): minutes per module instead of hours. The
# trainer's step, the recurrence and replay get the training-loop, model and replay tests that finish in about a
# second, without the slow end-to-end runs (the 6 s training run, preprocessed shards, bit-identical resume without
# EMA) and without replay's CLI tests (draccus parses the mutated sources there); their own focused tests are
# tests/test_training_step.py, tests/test_model_recurrence.py and tests/test_eval_replay_records.py. Every score is a
# lower bound of the full selection's. One fixed list for every module, since mutmut drops all verdicts when the
# selection changes (mutmut runs a mutant only against the tests that call its function).
_TRAINING_LOOP = "tests/test_training_loop.py::"
_REPLAY = "tests/test_eval_replay.py::"
FAST_TESTS = [
    "tests/test_safety_filter.py", "tests/test_safety_properties.py", "tests/test_control_loop.py",
    "tests/test_training_losses.py", "tests/test_eval_adapter.py", "tests/test_data_shards.py",
    *(_TRAINING_LOOP + t for t in (
        "test_resumed_training_is_bit_identical[0.9]", "test_checkpoints_export_the_weight_average",
        "test_interrupt_saves_a_checkpoint_and_resume_continues",
        "test_dataset_baselines_are_used_for_residual_learning",
        "test_bf16_autocast_on_cpu_and_grad_accumulation", "test_clear_errors",
        "test_continuing_the_same_trainer_keeps_its_log", "test_auxiliary_target_is_learned_from_the_image_only",
        "test_action_losses_count_in_normalised_units", "test_the_trainer_applies_the_curriculum_step_by_step")),
    "tests/test_training_step.py", "tests/test_model_equations.py", "tests/test_model_stages.py",
    "tests/test_model_recurrence.py",
    *(_REPLAY + t for t in (
        "test_telepathy_off_equals_tau0_baseline_exactly", "test_dataset_baseline_and_metrics_by_hand",
        "test_separate_baseline_checkpoint", "test_check_a_matches_heads_definition",
        "test_bad_inputs_are_clear_errors",
        "test_replay_carries_tau_and_memory_through_each_episode", "test_episode_lanes_batch_the_recurrence_exactly")),
    "tests/test_eval_replay_records.py",
]
# Runs mutmut with its test selection replaced by the files in argv[1] (comma-separated); the rest of the
# configuration stays that of [tool.mutmut]. mutmut resets its verdicts when the selection changes.
_SELECTED_TESTS_MUTMUT = (
    "import dataclasses, sys; import mutmut.configuration as c; "
    "tests = sys.argv.pop(1).split(','); load = c._load_config; "
    "c._load_config = lambda: dataclasses.replace(load(), pytest_add_cli_args_test_selection=tests); "
    "c.reset_config(); from mutmut.__main__ import cli; c.reset_config(); sys.argv[0] = 'mutmut'; cli()"
)
KILLED = {1, 3, 24, -24, 152, 255, 36, -11, -9}  # test failure, pytest error, timeout, crash
LABEL = {0: "survived", 5: "no tests", 33: "no tests", None: "not checked"}


def module_of(name: str) -> str | None:
    for module, globs in SCOPE.items():
        if any(fnmatch.fnmatchcase(name, g) for g in globs):
            return module
    return None


def load_results() -> dict[str, int | None]:
    """Mutant name -> mutmut exit code (None: not checked) for every mutant in SCOPE."""
    results: dict[str, int | None] = {}
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if module_of(name):
                results[name] = code
    return results


def load_equivalent() -> dict[str, str]:
    """Mutant name -> reason, from the list of equivalent mutants."""
    if not EQUIVALENT_FILE.exists():
        return {}
    found = re.findall(r"^- `([^`]+)`: (.+)$", EQUIVALENT_FILE.read_text(), flags=re.MULTILINE)
    return dict(found)


def report(modules: list[str]) -> float | None:
    """Print the score per module and the survivors; return the overall score (percent)."""
    results, equivalent = load_results(), load_equivalent()
    if not results:
        print("no mutation results yet: run `make mutation`", file=sys.stderr)
        return None
    rows, survivors = [], []
    tot_killed = tot_scored = unchecked = 0
    for module in modules:
        names = sorted(n for n in results if module_of(n) == module)
        counts = {"killed": 0, "survived": 0, "equivalent": 0, "no tests": 0, "not checked": 0}
        for n in names:
            code = results[n]
            if code in KILLED:
                counts["killed"] += 1
            elif n in equivalent:
                counts["equivalent"] += 1
            else:
                label = LABEL.get(code, "survived")
                counts[label] += 1
                if label != "not checked":
                    survivors.append((module, n, label))
        scored = counts["killed"] + counts["survived"] + counts["no tests"]
        tot_killed += counts["killed"]
        tot_scored += scored
        unchecked += counts["not checked"]
        score = f"{100.0 * counts['killed'] / scored:5.1f}%" if scored else "  n/a"
        rows.append((module, len(names), counts, score))
    print(
        f"{'module':<14}{'mutants':>8}{'killed':>8}{'survived':>9}{'no tests':>9}{'equiv.':>7}{'unchecked':>10}  score"
    )
    for module, n, c, score in rows:
        print(f"{module:<14}{n:>8}{c['killed']:>8}{c['survived']:>9}{c['no tests']:>9}{c['equivalent']:>7}"
              f"{c['not checked']:>10}  {score}")
    overall = 100.0 * tot_killed / tot_scored if tot_scored else None
    if overall is not None:
        print(f"mutation score: {overall:.1f}% ({tot_killed} of {tot_scored} non-equivalent mutants killed;"
              f" listed equivalent mutants: {EQUIVALENT_FILE.relative_to(ROOT)})"
              + (f"; {unchecked} mutants not checked yet" if unchecked else ""))
    if survivors:
        print(f"\nsurviving mutants ({len(survivors)}; `python scripts/mutation.py --show NAME` prints one):")
        for module, n, label in survivors:
            print(f"  [{module}] {n}" + ("" if label == "survived" else f" ({label})"))
    return overall


def to_run(modules: list[str], everything: bool = False, unchecked_only: bool = False) -> list[str]:
    """Return what `mutmut run` gets: globs, or the names of the mutants to test.

    A module's globs when it has no results yet (or ``everything``); else the names of its mutants without a
    verdict or that survived and are not listed as equivalent (``unchecked_only``: without a verdict). mutmut
    reruns every mutant a glob matches; a verdict it keeps until the mutant's function changes.
    """
    results, equivalent = ({}, {}) if everything else (load_results(), load_equivalent())
    selection: list[str] = []
    for module in modules:
        names = [n for n in results if module_of(n) == module]
        if not names:
            selection += [] if unchecked_only else SCOPE[module]
            continue
        selection += sorted(n for n in names if results[n] is None or (
            not unchecked_only and results[n] not in KILLED and n not in equivalent))
    return selection


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--module", action="append", choices=sorted(SCOPE), help="only this module (repeatable)")
    p.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel")
    p.add_argument("--report-only", action="store_true", help="print the report of the last results")
    p.add_argument("--all", action="store_true", help="test every mutant again, killed ones too")
    p.add_argument("--fast", action="store_true",
                   help="run only the fast unit-test files (FAST_TESTS): much faster; a lower bound")
    p.add_argument("--show", metavar="NAME", help="print the diff of one mutant")
    p.add_argument("--fail-under", type=float, default=0.0, help="exit 1 when the score is lower (percent)")
    args = p.parse_args(argv)
    mutmut = [sys.executable, "-m", "mutmut"]
    if args.show:
        return subprocess.call([*mutmut, "show", args.show], cwd=PKG_DIR)
    modules = args.module or list(SCOPE)
    if args.fast:
        mutmut = [sys.executable, "-c", _SELECTED_TESTS_MUTMUT, ",".join(FAST_TESTS)]
    if not args.report_only:
        MUTANTS.mkdir(exist_ok=True)
        # The property tests run a tenth of their examples per mutant (the test suite runs all).
        env = {**os.environ, "SIGMA_PROPERTY_SCALE": os.environ.get("SIGMA_PROPERTY_SCALE", "0.1")}
        log = MUTANTS / "mutmut-run.log"
        # Pass 2 tests the mutants mutmut made anew in pass 1 (of functions changed since the last results).
        for selection in (to_run(modules, everything=args.all), None):
            selection = to_run(modules, unchecked_only=True) if selection is None else selection
            if not selection:
                continue
            print(f"mutmut run ({', '.join(modules)}; {len(selection)} mutants or globs), output in "
                  f"{log.relative_to(ROOT)} ...", flush=True)
            with open(log, "w") as out:
                rc = subprocess.call([*mutmut, "run", "--max-children", str(args.max_children), *selection],
                                     cwd=PKG_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
            if rc != 0:
                print(f"mutmut run failed (exit {rc}); see {log}", file=sys.stderr)
                return rc
    score = report(modules)
    return 1 if score is None or score < args.fail_under else 0


if __name__ == "__main__":
    sys.exit(main())
