# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The sigma-train command (draccus): --help, a run and its resume, nested overrides, --config_path, clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from sigma_model.training.configuration_training import TrainingConfig
from sigma_model.training.metrics import read_metrics
from sigma_model.training.train import main

from sigma_model.testing import small_config
from test_data_shards import corrupt_tensor_byte
from test_eval_replay import _write_shards

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_help_lists_the_config_fields(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--config_path", "--train.shards_dir", "--train.grad_accum_steps", "--train.learning_rate",
                   "--train.rho_hard", "--train.load_in_4bit", "--model.d_model", "--model.backbone", "--model_config",
                   "--stats", "--resume", "--overwrite", "--push_to_hub"):
        assert option in text


def test_console_script_is_registered():
    assert re.search(r'sigma-train\s*=\s*"sigma_model\.training\.train:main"', (ROOT / "pyproject.toml").read_text())


def test_run_then_resume(tmp_path, capsys):
    out = tmp_path / "run"
    small = small_config(use_audio=False)
    model_flags = [
        f"--model.{name}={getattr(small, name)}"
        for name in ("d_model", "n_heads", "image_size", "patch_size", "use_audio", "chunk_len", "traj_len")
    ]
    common = [
        "--train.synthetic_samples=12",
        "--train.batch_size=4",
        "--train.warmup_steps=1",
        f"--train.output_dir={out}",
        "--progress=false",
        "--train.curriculum_steps=2",
        *model_flags,
    ]
    assert main(common + ["--train.max_steps=2"]) == 0
    assert "done at step 2" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        main(common + ["--train.max_steps=3"])
    assert refused.value.code == 2 and "--resume=auto" in capsys.readouterr().err
    assert main(common + ["--train.max_steps=3", "--resume=auto"]) == 0
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2]
    assert (out / "checkpoints" / "step_00000003" / "sigma_telepathy_heads.safetensors").is_file()
    from sigma_model import load_checkpoint

    model = load_checkpoint(out / "checkpoints" / "step_00000003" / "model").config
    assert (model.d_model, model.image_size, model.use_audio) == (small.d_model, small.image_size, False)


def _resolved(capsys, argv):
    assert main([*argv, "--print_config=true"]) == 0
    return json.loads(capsys.readouterr().out)


def test_nested_overrides_reach_the_configs(capsys):
    resolved = _resolved(capsys, ["--train.rho_hard=0.2", "--train.lora_target_modules=[q_proj]",
                                  "--train.adam_betas=[0.8,0.9]", "--model.d_model=64", "--resume=auto"])
    assert resolved["train"]["rho_hard"] == 0.2 and resolved["train"]["lora_target_modules"] == ["q_proj"]
    assert resolved["train"]["adam_betas"] == [0.8, 0.9] and resolved["model"]["d_model"] == 64
    assert resolved["resume"] == "auto" and resolved["train"]["learning_rate"] == TrainingConfig().learning_rate


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_path_file_then_flags_override_it(tmp_path, capsys, suffix):
    data = {
        "train": {"learning_rate": 0.5, "rho_hard": 0.5, "batch_size": 3},
        "model": {"d_model": 64},
        "overwrite": True,
    }
    cfg = tmp_path / f"run{suffix}"
    cfg.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data))
    resolved = _resolved(capsys, [f"--config_path={cfg}", "--train.learning_rate=0.25", "--model.n_heads=2"])
    assert resolved["train"]["learning_rate"] == 0.25 and resolved["train"]["rho_hard"] == 0.5
    assert resolved["train"]["batch_size"] == 3 and resolved["overwrite"] is True
    assert resolved["model"]["d_model"] == 64 and resolved["model"]["n_heads"] == 2
    again = tmp_path / "again.json"  # the printed config is itself a --config_path file
    again.write_text(json.dumps(resolved))
    assert _resolved(capsys, [f"--config_path={again}"]) == resolved


def test_one_group_from_a_file_with_include(tmp_path, capsys):
    """Draccus's `--group="include FILE"` reads one nested config (e.g. a checkpoint's config.json)."""
    small_config(d_model=64).save(tmp_path / "model.json")
    resolved = _resolved(capsys, [f"--model=include {tmp_path / 'model.json'}", "--model.n_heads=4"])
    assert (
        resolved["model"]["d_model"] == 64
        and resolved["model"]["n_heads"] == 4
        and resolved["model"]["image_size"] == 32
    )


@pytest.mark.parametrize("argv, message", [
    (["--train.shards_dir=/nonexistent/shards", "--train.output_dir={tmp}/a"], "sigma-preprocess"),
    (["--train.output_dir={tmp}/b"], "no training data"),
    (["--train.synthetic_samples=4", "--train.rho_hard=2", "--train.output_dir={tmp}/c"], "rho_hard must be <= 1.0"),
    (["--train.synthetic_samples=4", "--train.nonsense=1"], "unrecognized arguments: --train.nonsense=1"),
    (["--nonsense=1"], "unrecognized arguments"),
    (["--train.batch_size=many"], "train.batch_size"),
    (["--model.d_model=30", "--model.n_heads=4"], "divisible by n_heads"),
    (["--overwrite"], "--overwrite: expected one argument"),
    (["--config_path={tmp}/missing.yaml"], "missing.yaml"),
    (["--model_config={tmp}/missing.json"], "does not exist"),
    (["--model_config={tmp}/missing.json", "--model.d_model=64"], "not both"),
])
def test_bad_flags_and_values_give_one_line_and_exit_2(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("sigma-train: error: ") and message in err


def test_shard_not_matching_its_checksum_is_refused(tmp_path, capsys):
    config = small_config()
    config.save(tmp_path / "model.json")
    shards = _write_shards(config, tmp_path / "shards", n=8, shard_size=4)
    corrupt_tensor_byte(shards / "shard_00001.safetensors")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                f"--train.shards_dir={shards}",
                f"--train.output_dir={tmp_path / 'run'}",
                f"--model_config={tmp_path / 'model.json'}",
                "--train.max_steps=1",
                "--train.warmup_steps=0",
                "--progress=false",
            ]
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "shard_00001.safetensors does not match its checksum" in err


def test_stats_flag_standardises_with_a_lerobot_datasets_stats(tmp_path, capsys):
    """--stats reads LeRobot's dataset metadata (LeRobotDatasetMetadata.stats) of a dataset root."""
    from sigma_model import load_checkpoint
    from sigma_model.data.synthetic import write_synthetic_dataset

    model_json = tmp_path / "model.json"
    small_config(use_audio=False).save(model_json)
    dataset = write_synthetic_dataset(tmp_path / "dataset", [(0, 3)])
    stats = {"observation.state": {"mean": [0.1] * 6, "std": [0.2] * 5 + [0.0]},
             "action": {"mean": [-0.1] * 6, "std": [0.3] * 6}}
    (dataset / "meta" / "stats.json").write_text(json.dumps(stats))
    common = ["--train.synthetic_samples=8", "--train.batch_size=4", "--train.max_steps=1", "--train.warmup_steps=0",
              "--progress=false", f"--model_config={model_json}"]
    assert main(common + [f"--train.output_dir={tmp_path / 'run'}", f"--stats={dataset}"]) == 0
    config = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000001" / "model").config
    assert config.state_mean == (0.1,) * 6 and config.state_std == (0.2,) * 5 + (1e-3,)  # floored, not 0
    assert config.action_std == (0.3,) * 6
    assert main(common + [f"--train.output_dir={tmp_path / 'file'}", f"--stats={dataset / 'meta' / 'stats.json'}"]) == 0
    assert load_checkpoint(tmp_path / "file" / "checkpoints" / "step_00000001" / "model").config == config
    del stats["action"]["std"]
    (dataset / "meta" / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(SystemExit):
        main(common + [f"--train.output_dir={tmp_path / 'bad'}", f"--stats={dataset}"])
    assert "no mean/std for 'action'" in capsys.readouterr().err
