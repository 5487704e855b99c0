# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Bad input and interruptions of sigma-closed-loop and sigma-make-default: one-line errors, before any work.

No simulator runs here: a stage that must not start is replaced by one that fails the test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sigma_model.cli import parse_cli
from sigma_model.testing import cli_error

from sigma_sim import closed_loop_cli, default_model


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    from sigma_model import SigmaModel, save_checkpoint
    from sigma_model.testing import small_config

    return save_checkpoint(SigmaModel(small_config()), tmp_path / "model")


@pytest.fixture
def no_stage(monkeypatch):
    """Make every stage that needs the simulator fail the test if it starts."""
    for name in ("stage_record", "stage_preprocess", "stage_train", "stage_select", "stage_align", "stage_eval"):
        monkeypatch.setattr(default_model, name, lambda *a, name=name: pytest.fail(f"{name} ran"))


def test_closed_loop_missing_checkpoint_or_bad_adapter_config_is_one_line(tmp_path, checkpoint, capsys):
    missing = tmp_path / "missing"
    error = cli_error(closed_loop_cli.main, [f"--checkpoint={missing}", "--episodes=1"], capsys)
    assert error == f"sigma-closed-loop: error: no Sigma checkpoint at {missing} (no such directory)"
    error = cli_error(closed_loop_cli.main, [f"--checkpoint={checkpoint}", f"--baseline_checkpoint={missing}"], capsys)
    assert error.startswith(f"sigma-closed-loop: error: no Sigma checkpoint at {missing}")
    bad = tmp_path / "adapter.json"
    for text in ("{bad", '{"no_such_field": 1}'):
        bad.write_text(text)
        error = cli_error(closed_loop_cli.main, [f"--checkpoint={checkpoint}", f"--adapter_config={bad}"], capsys)
        assert error.startswith(f"sigma-closed-loop: error: {bad}")


def test_closed_loop_unusable_sigma_policy_is_one_line(tmp_path, capsys):
    """Weights that are no safetensors file, a missing statistics file: named, not a traceback or a repo-id error."""
    pytest.importorskip("lerobot_policy_sigma")
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot_policy_sigma import SigmaConfig, SigmaPolicy, make_sigma_pre_post_processors
    from sigma_model.testing import small_config

    config = SigmaConfig(model=small_config(), device="cpu")
    config.input_features = {"observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
                             "observation.state": PolicyFeature(FeatureType.STATE, (6,))}
    config.output_features = {"action": PolicyFeature(FeatureType.ACTION, (6,))}
    unit = {"mean": [0.0] * 6, "std": [1.0] * 6}
    for name in ("weights", "stats"):
        SigmaPolicy(config).save_pretrained(tmp_path / name)
        for processor in make_sigma_pre_post_processors(config, {"observation.state": unit, "action": unit}):
            processor.save_pretrained(tmp_path / name)
    (tmp_path / "weights" / "model.safetensors").write_bytes(b"garbage")
    stats = tmp_path / "stats" / "policy_preprocessor_step_3_normalizer_processor.safetensors"
    stats.unlink()
    for name, words in (("weights", "model.safetensors is not a readable safetensors file"),
                        ("stats", f"{stats} is missing (policy_preprocessor.json references it)")):
        error = cli_error(closed_loop_cli.main, [f"--policy_path={tmp_path / name}", "--episodes=1"], capsys)
        assert error.startswith(f"sigma-closed-loop: error: {tmp_path / name}/") and words in error, error


def test_make_default_corrupt_partial_provenance_is_one_line(tmp_path, no_stage, capsys):
    work = tmp_path / "work"
    work.mkdir()
    for text in ('{"record": {"episodes"', "[1, 2]"):
        (work / "provenance_partial.json").write_text(text)
        error = cli_error(default_model.main, [f"--work_dir={work}", "--stages=[record]"], capsys)
        assert error.startswith(f"sigma-make-default: error: {work / 'provenance_partial.json'} ")
        assert error.endswith("delete it or use a fresh --work_dir")


def test_make_default_missing_notes_file_is_refused_before_any_stage(tmp_path, no_stage, capsys):
    work, notes = tmp_path / "work", tmp_path / "notes.md"
    error = cli_error(default_model.main, [f"--work_dir={work}", f"--notes_file={notes}", "--stages=[record]"],
                      capsys)
    assert error.startswith("sigma-make-default: error: ") and str(notes) in error
    assert not work.exists()  # bad input leaves nothing behind


def test_make_default_max_steps_and_train_set_are_checked_before_any_stage(tmp_path, capsys):
    def parse(argv):
        return parse_cli(default_model.MakeDefaultConfig, argv, default_model.PROG)

    assert cli_error(parse, ["--max_steps=0"], capsys).startswith("sigma-make-default: error: --episodes, ")
    assert "max_steps" in cli_error(parse, ["--train_set={max_steps: 0}"], capsys)
    assert "unknown TrainingConfig fields" in cli_error(parse, ["--train_set={stepz: 3}"], capsys)
    # unset: the recipe's steps; a value: that many
    assert default_model.training_config(parse([]), tmp_path).max_steps == default_model.DEFAULT_TRAINING["max_steps"]
    assert default_model.training_config(parse(["--max_steps=1"]), tmp_path).max_steps == 1


def test_make_default_refuses_to_record_over_an_earlier_runs_demonstrations(tmp_path, monkeypatch, capsys):
    work, recorded = tmp_path / "work", []
    monkeypatch.setattr(default_model, "stage_record", lambda args, work: recorded.append(args.episodes) or {})
    (work / "demos" / "meta").mkdir(parents=True)
    (work / "demos" / "meta" / "info.json").write_text(json.dumps({"total_episodes": 2}))
    argv = [f"--work_dir={work}", "--episodes=3", "--stages=[record]"]
    assert default_model.main(argv) == 0 and recorded == [3]  # an interrupted recording: recorded again
    refused = (f"sigma-make-default: error: {work / 'demos'} holds the 2 demonstrations of an earlier run, "
               "not --episodes=3: use a fresh --work_dir (or --episodes=2)")
    (work / "provenance_partial.json").write_text(json.dumps({"record": {"episodes": 2}}))  # a finished recording
    assert cli_error(default_model.main, argv, capsys) == refused
    (work / "provenance_partial.json").unlink()
    (work / "shards").mkdir()  # a preprocessed one
    assert cli_error(default_model.main, argv, capsys) == refused
    assert recorded == [3]


def test_make_default_stale_shards_name_its_own_remedy(tmp_path, monkeypatch, capsys):
    from sigma_model.data import preprocess

    def mismatch(dataset, out_dir, *a, **k):
        raise preprocess.PreprocessMismatchError(
            f"{out_dir}/meta.json was made from a different version of the dataset (total_episodes: 2 -> 3); "
            "use another --out_dir or pass --overwrite=true")

    monkeypatch.setattr(preprocess, "preprocess_dataset", mismatch)
    work = tmp_path / "work"
    error = cli_error(default_model.main, [f"--work_dir={work}", "--stages=[preprocess]"], capsys)
    assert error == (f"sigma-make-default: error: {work / 'shards'}/meta.json was made from a different version of "
                     "the dataset (total_episodes: 2 -> 3); use a fresh --work_dir")


def test_make_default_ship_interrupted_leaves_a_model_and_a_rerun_recovers(tmp_path, checkpoint, monkeypatch):
    out, work = tmp_path / "out", tmp_path / "work"
    tmp, old = tmp_path / "out.tmp", tmp_path / "out.old"

    def ship(note: str) -> int:
        (tmp_path / "notes.md").write_text(note)
        return default_model.main([f"--out={out}", f"--work_dir={work}", "--stages=[ship]", "--quiet=true",
                                   f"--model_dir={checkpoint}", f"--notes_file={tmp_path / 'notes.md'}"])

    def shipped_note() -> str:
        return json.loads((out / "provenance.json").read_text())["notes_markdown"]

    assert ship("first") == 0 and shipped_note() == "first"
    real, interrupts = os.replace, []

    def interrupted(src, dst):  # one Ctrl-C, as the new model is renamed into place
        if Path(dst) == out and not interrupts:
            interrupts.append(dst)
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(default_model.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ship("second")
    monkeypatch.undo()
    assert shipped_note() == "first" and not old.exists()  # the old model is still in place
    assert ship("third") == 0 and shipped_note() == "third" and not tmp.exists() and not old.exists()
    # killed between the two renames (no cleanup ran): the next run puts the old model back, then ships
    os.replace(out, old)
    default_model.settle_swap(out, old)
    assert shipped_note() == "third" and not old.exists()
    # killed before the old model was deleted: the next run deletes it
    old.mkdir()
    assert ship("fourth") == 0 and shipped_note() == "fourth" and not old.exists()
