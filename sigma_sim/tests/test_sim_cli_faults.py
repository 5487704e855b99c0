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


@pytest.mark.parametrize("flag", ["--seed=-5", "--control_hz=0", "--control_hz=-30", "--control_hz=nan",
                                  "--control_hz=inf", "--max_step_rad=inf", "--max_step_rad=0", "--max_step_rad=nan",
                                  "--threads=0", "--threads=-2"])
def test_closed_loop_bad_numbers_are_one_line_before_any_episode(flag, monkeypatch, capsys):
    """Before, these ended in a traceback once the simulator ran (--threads <= 0: silently ignored)."""
    monkeypatch.setattr(closed_loop_cli, "evaluate_checkpoint", lambda *a, **k: pytest.fail("episodes ran"))
    error = cli_error(closed_loop_cli.main, [flag], capsys)
    assert error.startswith(f"sigma-closed-loop: error: ClosedLoopConfig.{flag[2:].split('=')[0]} must be "), error


def test_closed_loop_output_is_checked_and_made_before_any_episode(tmp_path, checkpoint, monkeypatch, capsys):
    """Before, a file as --output ran the whole evaluation, then a traceback: the results were lost."""
    from sigma_model.checkpoint import CheckpointError

    made = []

    def evaluate(path, cfg, out_dir, **_):  # the episodes would start here
        made.append(Path(out_dir).is_dir())
        raise CheckpointError("stop here")

    monkeypatch.setattr(closed_loop_cli, "evaluate_checkpoint", evaluate)
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for output, words in ((afile, f"{afile} is a file, not a directory for the report"),
                          (afile / "sub", f"{afile / 'sub'}")):
        error = cli_error(closed_loop_cli.main, [f"--checkpoint={checkpoint}", f"--output={output}"], capsys)
        assert error.startswith("sigma-closed-loop: error: ") and words in error, error
    assert afile.read_text() == "mine" and made == []
    new = tmp_path / "new" / "report"
    assert cli_error(closed_loop_cli.main, [f"--checkpoint={checkpoint}", f"--output={new}"], capsys) == \
        "sigma-closed-loop: error: stop here"
    assert made == [True]


def test_closed_loop_checkpoint_naming_a_missing_text_encoder_is_one_line(tmp_path, checkpoint, capsys):
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "text_encoder": "no_such_encoder"}))
    error = cli_error(closed_loop_cli.main, [f"--checkpoint={checkpoint}", "--episodes=1", "--conditions=[sigma]"],
                      capsys)
    assert error.startswith(f"sigma-closed-loop: error: checkpoint {checkpoint}: cannot build the model config.json "
                            "describes: text_encoder 'no_such_encoder' is neither"), error


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


def recorded_demos(work: Path, argv: list[str], episodes: int) -> dict:
    """Write WORK/demos's metadata and the settings ``argv`` records with (no simulator); return those settings."""
    (work / "demos" / "meta").mkdir(parents=True)
    (work / "demos" / "meta" / "info.json").write_text(json.dumps({"total_episodes": episodes, "total_frames": 9}))
    settings = default_model.record_settings(parse_cli(default_model.MakeDefaultConfig, argv, default_model.PROG))
    (work / default_model.RECORD_SETTINGS).write_text(json.dumps(settings))
    return settings


def test_make_default_refuses_to_record_over_an_earlier_runs_demonstrations(tmp_path, monkeypatch, capsys):
    work, recorded = tmp_path / "work", []
    monkeypatch.setattr(default_model, "stage_record", lambda args, work: recorded.append(args.episodes) or {})
    recorded_demos(work, ["--episodes=2"], 2)
    argv = [f"--work_dir={work}", "--episodes=3", "--stages=[record]"]
    assert default_model.main(argv) == 0 and recorded == [3]  # an interrupted recording: recorded again
    refused = (f"sigma-make-default: error: {work / 'demos'} holds the demonstrations of an earlier run recorded with "
               "--episodes=2, not --episodes=3: use a fresh --work_dir (or those settings)")
    (work / "provenance_partial.json").write_text(json.dumps({"record": {"episodes": 2}}))  # a finished recording
    assert cli_error(default_model.main, argv, capsys) == refused
    (work / "provenance_partial.json").unlink()
    (work / "shards").mkdir()  # a preprocessed one
    assert cli_error(default_model.main, argv, capsys) == refused
    assert recorded == [3]


def test_make_default_reuses_demonstrations_only_of_the_same_recording_settings(tmp_path, monkeypatch, capsys):
    """Before, any demonstrations of --episodes were reused: other seeds, noise, expert, lead or cube-pose column."""
    from sigma_sim import record

    calls, work = [], tmp_path / "work"
    monkeypatch.setattr(record, "record_dataset", lambda root, n, **k: calls.append(k["seed"]) or
                        record.RecordSummary(root=str(root), episodes=n, frames=9, attempted=n))
    first = ["--episodes=2", "--seed=0", "--expert_noise=0.02"]
    settings = recorded_demos(work, first, 2)
    (work / "provenance_partial.json").write_text(json.dumps({"record": {"episodes": 2}}))
    common = [f"--work_dir={work}", "--stages=[record]"]
    assert default_model.main([*common, *first, "--record_workers=3"]) == 0  # workers: the same dataset
    stage = json.loads((work / "provenance_partial.json").read_text())["record"]
    assert stage["reused"] and stage["settings"] == settings
    for other, words in ((["--seed=7", "--expert_noise=0.3", "--expert_set={hover_z: 0.12}"],
                          "--seed=0, --expert_noise=0.02, --expert_set={}, not --seed=7, --expert_noise=0.3, "
                          "--expert_set={hover_z: 0.12}"),
                         (["--lead_checkpoint=ck", "--lead_max_steps=9"],
                          "--lead_checkpoint=unset, --lead_max_steps=unset, not --lead_checkpoint=ck, "
                          "--lead_max_steps=9"),
                         (["--aux_cube_pose=false"], "cube pose recorded (--aux_cube_pose or --privileged_cube_pose)"
                                                     "=true, not cube pose recorded")):
        error = cli_error(default_model.main, [*common, "--episodes=2", *other], capsys)
        assert error.startswith(f"sigma-make-default: error: {work / 'demos'} holds the demonstrations of an earlier "
                                "run recorded with ") and words in error, error
        assert error.endswith("use a fresh --work_dir (or those settings)")
    for unknown in ("unlink", '{"seed": '):  # recorded before the settings were stored; a write cut short
        path = work / default_model.RECORD_SETTINGS
        path.unlink() if unknown == "unlink" else path.write_text(unknown)
        error = cli_error(default_model.main, [*common, *first], capsys)
        assert "whose settings are not stored" in error and "leave record out of --stages" in error and calls == []
    (work / default_model.RECORD_SETTINGS).write_text(json.dumps(settings))
    (work / "provenance_partial.json").unlink()  # no finished recording: one of other settings is recorded again
    assert default_model.main([*common, "--episodes=2", "--seed=7"]) == 0 and calls == [7]
    assert json.loads((work / default_model.RECORD_SETTINGS).read_text())["seed"] == 7


def test_make_default_refuses_an_existing_out_before_any_stage(tmp_path, no_stage, checkpoint, capsys):
    """Before, the ship stage replaced --out whatever it held (its default: the shipped model)."""
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    (out / "MY_MODEL.txt").write_text("mine")
    argv = [f"--work_dir={work}", f"--model_dir={checkpoint}", "--quiet=true", "--stages=[eval,ship]", f"--out={out}"]
    assert cli_error(default_model.main, argv, capsys) == (
        f"sigma-make-default: error: --out {out} exists already (the ship stage replaces it): pass --overwrite=true "
        "to replace it, or choose another --out")
    assert (out / "MY_MODEL.txt").read_text() == "mine" and not work.exists()
    (tmp_path / "file").write_text("mine")
    error = cli_error(default_model.main, [*argv[:-1], f"--out={tmp_path / 'file'}", "--overwrite=true"], capsys)
    assert error == f"sigma-make-default: error: --out {tmp_path / 'file'} is a file, not a directory"
    ship = [*argv[:3], "--stages=[ship]"]
    assert default_model.main([*ship, f"--out={out}", "--overwrite=true"]) == 0
    assert (out / "config.json").is_file() and not (out / "MY_MODEL.txt").exists()
    (tmp_path / "empty").mkdir()
    assert default_model.main([*ship, f"--out={tmp_path / 'empty'}"]) == 0  # an empty directory holds nothing to lose
    assert "--overwrite" not in json.loads((out / "provenance.json").read_text())["command"]


@pytest.mark.parametrize("flag, words", [
    ("--threads=0", "--threads and --lead_max_steps must be positive"),
    ("--lead_max_steps=-1", "--threads and --lead_max_steps must be positive"),
    ("--seed=-1", "--seed, --eval_seed, --select_seed and --align_seed must be >= 0"),
    ("--expert_noise=nan", "--expert_noise must be a finite number >= 0 (rad), got nan"),
    ("--expert_noise=-0.1", "--expert_noise must be a finite number >= 0 (rad), got -0.1"),
    ("--expert_set={hover: 1}", "--expert_set: "),
])
def test_make_default_bad_recording_and_thread_options_are_one_line(flag, words, capsys):
    error = cli_error(lambda argv: parse_cli(default_model.MakeDefaultConfig, argv, default_model.PROG), [flag], capsys)
    assert error.startswith("sigma-make-default: error: ") and words in error, error


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
                                   "--overwrite=true",
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
