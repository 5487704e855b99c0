# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""End-to-end preprocessing on a locally written LeRobot dataset (sigma_model.data.preprocess)."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

pytest.importorskip("lerobot.datasets.lerobot_dataset")

from sigma_model.data.lerobot_source import load_lerobot_dataset  # noqa: E402
from sigma_model.data.preprocess import PreprocessMismatchError, main, preprocess_dataset  # noqa: E402
from sigma_model.data.shards import ShardCorruptError, ShardDataset, collate_sigma_samples, list_shards  # noqa: E402
from sigma_model.data.synthetic import expected_window_counts, write_synthetic_dataset  # noqa: E402
from sigma_model.data.windows import WindowConfig  # noqa: E402

# (static frames, moving frames) per episode: mixed, too short, all static, mixed, all moving
EPISODES = [(6, 14), (0, 3), (12, 0), (5, 9), (0, 10)]
T = 4
MIN_NORM = 0.4  # window kept iff >= 2 of its 4 actions are moving (norm 1): 2/4 = 0.5 >= 0.4 > 1/4
CFG = WindowConfig(horizon_T=T, stride=1, chunk_len=3, min_action_norm=MIN_NORM, image_size=(16, 16))
SECRET = "hf_DoNotPrintMe_0123456789abcdef"


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def ds_root(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("pp") / "lerobot_ds", EPISODES, fps=10)


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_expected_window_count_and_filtering(ds_root, tmp_path):
    exp = expected_window_counts(EPISODES, T, 1, MIN_NORM)
    # hand count: ep0 17 windows, s>=4 kept (13); ep1 too short; ep2 9 dropped; ep3 11, s>=3 kept (8); ep4 7 kept
    assert exp == {"windows_total": 44, "windows_kept": 28, "windows_dropped_static": 16, "episodes_too_short": 1}
    meta = preprocess_dataset(ds_root, tmp_path / "out", CFG, shard_size=8, progress=False)
    assert meta["complete"] and meta["num_samples"] == 28 and meta["num_shards"] == 4
    w = meta["windows"]
    assert (w["windows_total"], w["windows_kept"], w["windows_dropped_static"]) == (44, 28, 16)
    assert meta["episodes"]["seen"] == 5 and meta["episodes"]["too_short"] == 1
    assert meta["episodes"]["with_kept_windows"] == 3
    assert meta["episodes"]["per_episode"]["2"] == {"frames": 12, "windows": 9, "kept": 0, "dropped_static": 9}
    assert meta["dataset"]["total_episodes"] == 5 and meta["dataset"]["total_frames"] == 59
    assert meta["params"]["window"]["min_action_norm"] == MIN_NORM and meta["params"]["shard_size"] == 8
    assert meta["keys"] == {"image": "observation.images.front", "state": "observation.state",
                            "action": "action", "text": "task"}
    assert meta["sample_keys"]["vision_inputs"] == {"dtype": "U8", "shape": [3, 16, 16]}
    assert w["avg_action_l2_kept"]["min"] >= MIN_NORM

    ds = ShardDataset(tmp_path / "out", require_complete=True)
    assert len(ds) == 28
    starts = [(int(ds[i]["episode_index"]), int(ds[i]["frame_index"])) for i in range(len(ds))]
    assert starts == [(0, s) for s in range(4, 17)] + [(3, s) for s in range(3, 11)] + [(4, s) for s in range(7)]
    # ground truth comes from the dataset's own frames
    frames = list(load_lerobot_dataset(ds_root, episodes=[3]))
    item = ds[13]  # episode 3, window starting at frame 3
    acts = torch.stack([f["action"] for f in frames[3:3 + T]])
    assert torch.equal(item["gt_action_trajectory"], acts)
    assert torch.equal(item["gt_action_chunk"], acts[:3])
    assert torch.equal(item["gt_action_vector"], acts[0])
    assert torch.equal(item["robot_state"], frames[3]["observation.state"])
    assert item["text"] == frames[3]["task"] == "pick up the red cube"
    assert item["vision_inputs"].shape == (3, 16, 16) and item["vision_inputs"].dtype == torch.uint8
    assert float(item["avg_action_l2"]) == pytest.approx(0.5, abs=1e-5)
    batch = collate_sigma_samples([ds[i] for i in range(5)])
    assert batch["gt_action_chunk"].shape == (5, 3, 6) and len(batch["text"]) == 5


@pytest.mark.parametrize("stop_after", [5, 8, 17, 27])
def test_interrupted_run_resumes_to_identical_shards(ds_root, tmp_path, stop_after):
    ref = tmp_path / "ref"
    preprocess_dataset(ds_root, ref, CFG, shard_size=8, progress=False)

    out = tmp_path / "resumed"

    def hook(n):
        if n == stop_after:
            raise Interrupted

    with pytest.raises(Interrupted):
        preprocess_dataset(ds_root, out, CFG, shard_size=8, progress=False, on_sample_written=hook)
    assert len(list_shards(out)) == stop_after // 8  # only full shards reached the disk
    assert json.loads((out / "meta.json").read_text())["complete"] is False
    with pytest.raises(RuntimeError, match="not complete"):
        ShardDataset(out, require_complete=True)
    written: list[int] = []
    meta = preprocess_dataset(ds_root, out, CFG, shard_size=8, progress=False,
                              on_sample_written=written.append)
    assert written[0] == (stop_after // 8) * 8 + 1  # skipped exactly the windows already on disk
    assert meta["num_samples"] == 28
    assert _files(out) == _files(ref)  # byte-identical shards and meta.json


def test_parameter_change_refused_and_complete_is_noop(ds_root, tmp_path):
    out = tmp_path / "o"
    preprocess_dataset(ds_root, out, CFG, shard_size=8, progress=False)
    before = _files(out)
    calls: list[int] = []
    preprocess_dataset(ds_root, out, CFG, shard_size=8, progress=False, on_sample_written=calls.append)
    assert calls == [] and _files(out) == before
    other = WindowConfig(horizon_T=T, stride=2, chunk_len=3, min_action_norm=MIN_NORM, image_size=(16, 16))
    with pytest.raises(PreprocessMismatchError, match="window"):
        preprocess_dataset(ds_root, out, other, shard_size=8, progress=False)
    meta = preprocess_dataset(ds_root, out, other, shard_size=8, progress=False, overwrite=True)
    exp = expected_window_counts(EPISODES, T, 2, MIN_NORM)
    assert meta["num_samples"] == exp["windows_kept"] and meta["windows"]["windows_total"] == exp["windows_total"]


def test_baseline_policy_and_max_episodes(ds_root, tmp_path):
    meta = preprocess_dataset(ds_root, tmp_path / "b", CFG, shard_size=100, progress=False,
                              max_episodes=1, baseline_policy="hold_state")
    assert meta["num_samples"] == 13 and meta["dataset"]["selected_episodes"] == 1
    item = ShardDataset(tmp_path / "b")[0]
    assert torch.equal(item["base_action_chunk"], item["robot_state"].expand(3, 6))
    assert item["base_action_trajectory"].shape == (T, 6) and item["base_action_vector"].shape == (6,)


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--config_path", "--dataset", "--out_dir", "--window.horizon_T", "--window.stride",
                "--window.min_action_norm", "--window.image_size", "--shard_size", "--env_file", "--max_episodes",
                "--overwrite"):
        assert opt in out


def test_cli_runs_with_env_file_and_never_prints_token(ds_root, tmp_path, capsys, caplog, monkeypatch):
    for k in ("HF_TOKEN", "HF_token", "SIGMA_DATASET", "SIGMA_SHARD_DIR"):
        monkeypatch.delenv(k, raising=False)
    out = tmp_path / "cli"
    env = tmp_path / "sigma.env"
    env.write_text(f"HF_token={SECRET}\nSIGMA_DATASET={ds_root}\nSIGMA_SHARD_DIR={out}\n")
    with caplog.at_level(logging.DEBUG):
        rc = main([f"--env_file={env}", f"--window.horizon_T={T}", "--window.chunk_len=3",
                   f"--window.min_action_norm={MIN_NORM}", "--shard_size=10", "--window.image_size=[16,16]",
                   "--verbose=true"])
    captured = capsys.readouterr()
    assert rc == 0
    assert "28 samples in 3 shards" in captured.out
    for text in (captured.out, captured.err, caplog.text):
        assert SECRET not in text
    assert os.environ.get("HF_TOKEN") == SECRET
    assert SECRET not in (out / "meta.json").read_text()
    assert len(ShardDataset(out)) == 28
    # clear error for a missing dataset
    rc = main(
        [
            f"--env_file={tmp_path / 'none.env'}",
            f"--dataset={tmp_path / 'missing'}",
            f"--out_dir={tmp_path / 'x'}",
            "--progress=false",
        ]
    )
    assert rc == 1 and "does not exist" in capsys.readouterr().err


def test_cli_config_path_then_flags(ds_root, tmp_path, capsys, monkeypatch):
    """--config_path (YAML with a window: section) sets the run; --window.* flags override it."""
    for k in ("SIGMA_DATASET", "SIGMA_SHARD_DIR"):
        monkeypatch.delenv(k, raising=False)
    cfg = tmp_path / "pre.yaml"
    cfg.write_text(f"dataset: {ds_root}\nout_dir: {tmp_path / 'out'}\nenv_file: {tmp_path / 'none.env'}\n"
                   f"progress: false\nshard_size: 10\nwindow:\n  horizon_T: {T + 2}\n  chunk_len: 3\n"
                   f"  min_action_norm: {MIN_NORM}\n  image_size: [16, 16]\n")
    assert main([f"--config_path={cfg}", f"--window.horizon_T={T}"]) == 0
    assert "28 samples in 3 shards" in capsys.readouterr().out
    window = json.loads((tmp_path / "out" / "meta.json").read_text())["params"]["window"]
    assert window["horizon_T"] == T and window["chunk_len"] == 3 and window["image_size"] == [16, 16]


@pytest.mark.parametrize("argv, message", [
    (["--window.horizon_T=0"], "horizon_T must be >= 1"),
    (["--window.chunk_len=40"], "chunk_len must be in [1, horizon_T=16]"),
    (["--shard_size=0"], "--shard_size must be >= 1"),
    (["--window.image_size=[16]"], "window.image_size"),
    (["--window.joint_units=deg"], "joint_units must be one of ('radians', 'degrees', 'range_m100_100')"),
    (["--horizon=8"], "unrecognized arguments: --horizon=8"),
    (["--out_dir=x"], "no dataset given"),
])
def test_cli_bad_flags_give_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    for k in ("SIGMA_DATASET", "SIGMA_SHARD_DIR"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(SystemExit) as ei:
        main([*argv, f"--env_file={tmp_path / 'none.env'}"])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("sigma-preprocess: error: ") and message in err


@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_killed_process_resumes_to_identical_shards(ds_root, tmp_path):
    """A preprocessing process killed with SIGKILL mid-run (no cleanup at all) resumes identically."""
    import subprocess
    import sys
    from pathlib import Path

    ref, out = tmp_path / "ref", tmp_path / "killed"
    preprocess_dataset(ds_root, ref, CFG, shard_size=8, progress=False)
    script = (
        "import os, signal\n"
        "from sigma_model.data.preprocess import preprocess_dataset\n"
        "from sigma_model.data.windows import WindowConfig\n"
        f"cfg = WindowConfig(horizon_T={T}, stride=1, chunk_len=3, min_action_norm={MIN_NORM}, image_size=(16, 16))\n"
        "def hook(n):\n"
        "    if n == 19:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"preprocess_dataset({str(ds_root)!r}, {str(out)!r}, cfg, shard_size=8, progress=False,"
        " on_sample_written=hook)\n"
    )
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert r.returncode == -9, r.stderr.decode()[-2000:]
    assert len(list_shards(out)) == 2
    preprocess_dataset(ds_root, out, CFG, shard_size=8, progress=False)
    assert _files(out) == _files(ref)


def test_changed_dataset_or_damaged_output_is_reported(tmp_path):
    root = write_synthetic_dataset(tmp_path / "ds", [(0, 10), (0, 10)])
    out = tmp_path / "out"
    cfg = WindowConfig(horizon_T=T, min_action_norm=0.1, image_size=None)
    preprocess_dataset(root, out, cfg, shard_size=5, progress=False)
    (out / "shard_00001.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(ShardCorruptError, match="shard_00001.safetensors"):
        preprocess_dataset(root, out, cfg, shard_size=5, progress=False)
    write_synthetic_dataset(root, [(0, 10), (0, 12)], overwrite=True)
    with pytest.raises(PreprocessMismatchError, match="total_frames: 20 -> 22"):
        preprocess_dataset(root, out, cfg, shard_size=5, progress=False)


def test_shards_of_unknown_parameters_are_never_kept(ds_root, tmp_path):
    """Shards without meta.json (copied from another run, or meta.json deleted) are refused, never mixed in."""
    out = tmp_path / "o"
    other = WindowConfig(horizon_T=T + 2, stride=1, chunk_len=3, min_action_norm=MIN_NORM, image_size=(24, 24))
    preprocess_dataset(ds_root, out, other, shard_size=8, progress=False)
    (out / "meta.json").unlink()
    before = _files(out)
    with pytest.raises(PreprocessMismatchError) as err:
        preprocess_dataset(ds_root, out, CFG, shard_size=8, progress=False)
    assert str(err.value) == (f"{out} holds shards but no meta.json, so the parameters they were made with are "
                              "unknown; use another --out_dir or pass --overwrite=true to replace them")
    assert _files(out) == before
    assert preprocess_dataset(ds_root, out, CFG, shard_size=8, progress=False, overwrite=True)["num_samples"] == 28


def test_cli_bad_output_or_max_episodes_give_one_line(ds_root, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    bad_meta = tmp_path / "bad_meta"
    bad_meta.mkdir()
    (bad_meta / "meta.json").write_text("[1, 2]")
    cases = [
        (afile, [], f"shard directory {afile} exists and is not a directory"),
        (bad_meta, [], f"{bad_meta / 'meta.json'} is malformed (expected a JSON object, found list)"),
        (tmp_path / "o", ["--episodes=[0,1]", "--max_episodes=-1"],
         "max_episodes must be >= 1 (or None for all episodes), got -1"),
        (tmp_path / "o", ["--max_episodes=0"], "max_episodes must be >= 1 (or None for all episodes), got 0"),
    ]
    for out, argv, message in cases:
        rc = main([f"--dataset={ds_root}", f"--out_dir={out}", f"--env_file={tmp_path / 'none.env'}",
                   "--progress=false", *argv])
        assert (rc, capsys.readouterr().err) == (1, f"sigma-preprocess: error: {message}\n")
    assert afile.read_text() == "not a directory" and not (tmp_path / "o").exists()
