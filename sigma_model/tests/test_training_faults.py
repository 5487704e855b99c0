# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Bad files around a training run give one-line errors naming the file, and --overwrite loses nothing early.

Corrupt or unfitting checkpoint JSON, heads of another shape, a half-written metrics line, corrupt heads files
in sigma-eval, a garbled `latest` pointer.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from sigma_model.evaluation import evaluate
from sigma_model.evaluation.check_a import check_a, check_a_section
from sigma_model.training.checkpointing import HEADS_FILE, INIT_HEADS_FILE, latest_checkpoint
from sigma_model.training.configuration_training import TrainingConfig
from sigma_model.training.metrics import MetricsLogger, read_metrics
from sigma_model.training.train import main
from sigma_model.training.trainer import SigmaTrainer

from sigma_model.testing import small_config
from test_eval_replay import _write_shards

STEP = Path("checkpoints") / "step_00000002"
MODEL = small_config(use_audio=False)
FLAGS = ["--train.synthetic_samples=8", "--train.batch_size=4", "--train.warmup_steps=1", "--progress=false",
         "--train.curriculum_steps=2", "--train.save_every=0"] + [
    f"--model.{name}={getattr(MODEL, name)}"
    for name in ("d_model", "n_heads", "image_size", "patch_size", "use_audio", "chunk_len", "traj_len")
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Return a finished two-step sigma-train run (checkpoint step 2, metrics, initial heads); copy to change it."""
    out = tmp_path_factory.mktemp("faults") / "run"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(FLAGS + [f"--train.output_dir={out}", "--train.max_steps=2"]) == 0
    finally:
        torch.set_num_threads(n)
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del data[key]
    path.write_text(json.dumps(data))


def _one_line_error(capsys, argv: list[str], prog: str = "sigma-train") -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and err.startswith(f"{prog}: error: "), err
    return err


CORRUPTIONS = {
    "empty trainer_state": (lambda d: (d / "trainer_state.json").write_text(""),
                            "trainer_state.json is not valid JSON"),
    "empty optimizer.json": (lambda d: (d / "optimizer.json").write_text(""), "optimizer.json is not valid JSON"),
    "truncated training_config": (lambda d: (d / "training_config.json").write_text('{\n  "adam_betas": [\n'),
                                  "training_config.json is not valid JSON"),
    "rng.json {}": (lambda d: (d / "rng.json").write_text("{}"), "rng.json lacks ['python']"),
    "rng.json bad python state": (lambda d: _edit_json(d / "rng.json", python=[1]), "rng.json: "),
    "scheduler.json a list": (lambda d: (d / "scheduler.json").write_text("[1, 2]"),
                              "scheduler.json must hold a JSON object, not list"),
    "scheduler.json another step": (lambda d: _edit_json(d / "scheduler.json", last_epoch=7),
                                    "scheduler.json: last_epoch 7 is not the checkpoint's step 2"),
    "optimizer.json bad groups": (lambda d: _edit_json(d / "optimizer.json", param_groups=[1]), "optimizer.json: "),
    "no samples_seen": (lambda d: _edit_json(d / "trainer_state.json", samples_seen=None),
                        "trainer_state.json lacks ['samples_seen']"),
    "text samples_seen": (lambda d: _edit_json(d / "trainer_state.json", samples_seen="8"),
                          "trainer_state.json: ['samples_seen'] must be non-negative integers"),
    "heads of another shape": (lambda d: _edit_json(d / "sigma_config.json", d_tau=MODEL.d_tau * 2),
                               "does not match the model: other shapes for"),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_a_bad_checkpoint_file_is_a_one_line_error_naming_it(run, tmp_path, capsys, name):
    out = _copy(run, tmp_path)
    corrupt, message = CORRUPTIONS[name]
    corrupt(out / STEP)
    err = _one_line_error(capsys, FLAGS + [f"--train.output_dir={out}", "--train.max_steps=3", "--resume=auto"])
    assert str(out / STEP) in err and message in err


def test_a_bad_model_config_file_is_named(tmp_path, capsys):
    bad = tmp_path / "model.json"
    bad.write_text('{"d_model": ')
    err = _one_line_error(capsys, [f"--model_config={bad}", f"--train.output_dir={tmp_path / 'o'}"])
    assert f"{bad} is not valid JSON" in err
    bad.write_text('{"d_model": 32, "nonsense": 1}')
    assert f"{bad}: unknown SigmaConfig fields: ['nonsense']" in _one_line_error(
        capsys, [f"--model_config={bad}", f"--train.output_dir={tmp_path / 'o'}"])


def _rows(n: int) -> list[dict]:
    return [{"step": i, "loss": 1.0 / (i + 1)} for i in range(n)]


def _logged(directory: Path, n: int) -> None:
    logger = MetricsLogger(directory)
    for row in _rows(n):
        logger.log(row)
    logger.close()


def test_a_half_written_last_metrics_line_is_dropped_on_resume(tmp_path, caplog):
    _logged(tmp_path, 3)
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    for name in ("metrics.jsonl", "metrics.csv"):  # a crash in the middle of writing the last row
        path = tmp_path / name
        path.write_bytes(path.read_bytes()[:-6])
    with caplog.at_level(logging.WARNING):
        MetricsLogger(tmp_path, resume_step=5).close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1]
    assert (tmp_path / "metrics.csv").read_text().splitlines() == csv_lines[:3]
    assert "metrics.jsonl: dropping the half-written last line 3" in caplog.text
    assert "metrics.csv: dropping the half-written last line 4" in caplog.text


@pytest.mark.parametrize("name, line, bad", [("metrics.jsonl", 2, '{"step": 1, "lo'), ("metrics.csv", 3, "1,0.5,")])
def test_a_corrupt_metrics_line_in_the_middle_is_an_error_naming_the_file_and_line(tmp_path, name, line, bad):
    _logged(tmp_path, 3)
    path = tmp_path / name
    lines = path.read_text().splitlines()
    lines[line - 1] = bad
    path.write_text("\n".join(lines) + "\n")
    before = path.read_bytes()
    with pytest.raises(ValueError, match=rf"{name} line {line} is corrupt"):
        MetricsLogger(tmp_path, resume_step=5)
    assert path.read_bytes() == before


def test_a_binary_metrics_file_is_an_error_naming_it(tmp_path):
    _logged(tmp_path, 1)
    (tmp_path / "metrics.jsonl").write_bytes(b"\xff\xfe\n")
    with pytest.raises(ValueError, match="metrics.jsonl is not a metrics log"):
        MetricsLogger(tmp_path, resume_step=5)


def test_resume_auto_continues_past_a_half_written_metrics_line(run, tmp_path, capsys):
    out = _copy(run, tmp_path)
    jsonl = out / "metrics.jsonl"
    jsonl.write_bytes(jsonl.read_bytes()[:-10])
    assert main(FLAGS + [f"--train.output_dir={out}", "--train.max_steps=3", "--resume=auto"]) == 0
    assert [r["step"] for r in read_metrics(out)] == [0, 2]


def _train_config(out: Path, **overrides) -> TrainingConfig:
    values = dict(synthetic_samples=8, batch_size=4, max_steps=1, warmup_steps=1, output_dir=str(out), save_every=0,
                  curriculum_steps=2)
    return TrainingConfig(**{**values, **overrides})


class _Unreadable(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index):
        raise ValueError("unreadable sample")


def test_overwrite_replaces_the_old_run_only_once_the_new_one_trains(run, tmp_path):
    out = _copy(run, tmp_path)
    old = _snapshot(out)
    with pytest.raises(FileNotFoundError, match="shards_dir"):  # bad inputs: the old run is untouched
        SigmaTrainer(_train_config(out, synthetic_samples=0, shards_dir=str(tmp_path / "typo")), MODEL, overwrite=True)
    assert _snapshot(out) == old
    trainer = SigmaTrainer(_train_config(out, use_previous_window=False), MODEL, dataset=_Unreadable(), overwrite=True)
    with pytest.raises(ValueError, match="unreadable sample"):  # fails in its first step: the old run comes back
        trainer.train()
    assert _snapshot(out) == old and sorted(p.name for p in out.iterdir()) == sorted(p.name for p in run.iterdir())
    SigmaTrainer(_train_config(out, seed=5), MODEL, overwrite=True).train()
    assert [p.name for p in (out / "checkpoints").iterdir() if p.is_dir()] == ["step_00000001"]
    assert (out / INIT_HEADS_FILE).read_bytes() != old[INIT_HEADS_FILE]
    assert [r["step"] for r in read_metrics(out)] == [0]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_garbled_latest_pointer_falls_back_to_the_highest_complete_step(run, tmp_path, caplog):
    out = _copy(run, tmp_path)
    (out / "checkpoints" / "latest").write_bytes(b"\xff\xfe../../x\n")
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(out / "checkpoints") == out / STEP
    assert "does not name a complete checkpoint" in caplog.text


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:100])
    return path


@pytest.mark.parametrize("name", [HEADS_FILE, INIT_HEADS_FILE])
def test_check_a_names_a_corrupt_heads_file(run, tmp_path, name):
    out = _copy(run, tmp_path)
    from sigma_model import load_checkpoint

    model = load_checkpoint(out / STEP / "model")
    heads, init = out / STEP / HEADS_FILE, out / INIT_HEADS_FILE
    bad = _truncate(heads if name == HEADS_FILE else init)
    with pytest.raises(ValueError, match=f"corrupt checkpoint file {bad}"):
        check_a_section(model, heads, init)
    if name == HEADS_FILE:
        with pytest.raises(ValueError, match=f"corrupt checkpoint file {bad}"):
            check_a(model, heads)


def test_sigma_eval_names_a_corrupt_heads_file(run, tmp_path, capsys):
    out = _copy(run, tmp_path)
    shards = _write_shards(MODEL, tmp_path / "shards", n=4, shard_size=4)
    bad = _truncate(out / STEP / HEADS_FILE)
    rc = evaluate.main([f"--shards={shards}", f"--checkpoint={out}", f"--output={tmp_path / 'eval'}",
                        "--progress=false", "--plots=false", "--quiet=true", "--threads=1", "--n_bootstrap=10",
                        "--replay.batch_size=4", "--replay.max_batches=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("sigma-eval: error: corrupt checkpoint file ")
    assert str(bad) in err[0]
