"""The sigma-train command: --help, a run and its resume, configuration layering, clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from sigma_model.training.metrics import read_metrics
from sigma_model.training.train import main

from sigma_model.testing import small_config
from test_data_shards import corrupt_tensor_byte
from test_eval_replay import _write_shards

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--shards", "--resume", "--grad-accum", "--lr", "--scheduler", "--load-in-4bit", "--push-to-hub", "--set"):
        assert option in text


def test_console_script_is_registered():
    assert re.search(r'sigma-train\s*=\s*"sigma_model\.training\.train:main"', (ROOT / "pyproject.toml").read_text())


def test_run_then_resume(tmp_path, capsys):
    model_json = tmp_path / "model.json"
    small_config(use_audio=False).save(model_json)
    out = tmp_path / "run"
    common = ["--synthetic", "12", "--batch-size", "4", "--warmup-steps", "1", "-o", str(out),
              "--model-config", str(model_json), "--no-progress", "--set", "curriculum_steps=2"]
    assert main(common + ["--max-steps", "2"]) == 0
    assert "done at step 2" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        main(common + ["--max-steps", "3"])
    assert refused.value.code == 2 and "--resume" in capsys.readouterr().err
    assert main(common + ["--max-steps", "3", "--resume"]) == 0
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2]
    assert (out / "checkpoints" / "step_00000003" / "sigma_telepathy_heads.safetensors").is_file()


def test_config_layering(tmp_path, capsys):
    cfg = tmp_path / "train.json"
    cfg.write_text(json.dumps({"learning_rate": 0.5, "rho_hard": 0.5, "batch_size": 3}))
    assert main(["--config", str(cfg), "--lr", "0.25", "--set", "rho_hard=0.2", "--set", "lora_target_modules=[\"q_proj\"]",
                 "--print-config"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["learning_rate"] == 0.25 and resolved["rho_hard"] == 0.2 and resolved["batch_size"] == 3
    assert resolved["lora_target_modules"] == ["q_proj"]


@pytest.mark.parametrize("argv, message", [
    (["--shards", "/nonexistent/shards", "-o", "{tmp}/a"], "sigma-preprocess"),
    (["-o", "{tmp}/b"], "no training data"),
    (["--synthetic", "4", "--set", "rho_hard=2", "-o", "{tmp}/c"], "rho_hard"),
    (["--synthetic", "4", "--set", "nonsense=1", "-o", "{tmp}/d"], "unknown TrainingConfig fields"),
])
def test_clear_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_shard_not_matching_its_checksum_is_refused(tmp_path, capsys):
    config = small_config()
    config.save(tmp_path / "model.json")
    shards = _write_shards(config, tmp_path / "shards", n=8, shard_size=4)
    corrupt_tensor_byte(shards / "shard_00001.safetensors")
    with pytest.raises(SystemExit) as exit_info:
        main(["--shards", str(shards), "-o", str(tmp_path / "run"), "--model-config", str(tmp_path / "model.json"),
              "--max-steps", "1", "--warmup-steps", "0", "--no-progress"])
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
    common = ["--synthetic", "8", "--batch-size", "4", "--max-steps", "1", "--warmup-steps", "0", "--no-progress",
              "--model-config", str(model_json)]
    assert main(common + ["-o", str(tmp_path / "run"), "--stats", str(dataset)]) == 0
    config = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000001" / "model").config
    assert config.state_mean == (0.1,) * 6 and config.state_std == (0.2,) * 5 + (1e-3,)  # floored, not 0
    assert config.action_std == (0.3,) * 6
    assert main(common + ["-o", str(tmp_path / "file"), "--stats", str(dataset / "meta" / "stats.json")]) == 0
    assert load_checkpoint(tmp_path / "file" / "checkpoints" / "step_00000001" / "model").config == config
    del stats["action"]["std"]
    (dataset / "meta" / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(SystemExit):
        main(common + ["-o", str(tmp_path / "bad"), "--stats", str(dataset)])
    assert "no mean/std for 'action'" in capsys.readouterr().err
