# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""sigma.env, retry/backoff, prefetch and dataset loading (no network)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from sigma_model.data.env_file import get_hf_token, load_sigma_env, parse_env_text
from sigma_model.data.lerobot_source import (
    DatasetUnavailableError,
    RetryPolicy,
    backoff_delay,
    call_with_retry,
    is_rate_limit_error,
    is_transient_error,
    load_lerobot_dataset,
    prefetch_hf_dataset,
    safe_iter_dataset,
)

SECRET = "hf_SUPERSECRETtoken1234567890"


class FakeResponse:
    def __init__(self, status: int, headers: dict | None = None) -> None:
        self.status_code = status
        self.headers = headers or {}


class FakeHTTPError(Exception):
    def __init__(self, status: int, headers: dict | None = None) -> None:
        super().__init__(f"{status} Client Error")
        self.response = FakeResponse(status, headers)


class LocalEntryNotFoundError(Exception):
    """Same name as huggingface_hub's error (classification is by name)."""


# ---------------------------------------------------------------------------------------------- env

@pytest.fixture
def clean_env(monkeypatch):
    for k in ("HF_TOKEN", "HF_token", "HUGGINGFACE_HUB_TOKEN", "SIGMA_DATASET", "SIGMA_X", "SIGMA_Q",
              "HF_HUB_OFFLINE", "SIGMA_MAX_RETRIES"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_parse_env_text():
    text = """
# comment
export SIGMA_DATASET=lerobot/svla_so101_pickplace
SIGMA_X = "two words"  # trailing comment
SIGMA_Q='single # not a comment'
EMPTY=
URL=http://x/#frag
"""
    d = parse_env_text(text)
    assert d == {"SIGMA_DATASET": "lerobot/svla_so101_pickplace", "SIGMA_X": "two words",
                 "SIGMA_Q": "single # not a comment", "EMPTY": "", "URL": "http://x/#frag"}
    with pytest.raises(ValueError, match=":2:"):
        parse_env_text("A=1\nnot a line\n")
    with pytest.raises(ValueError) as ei:
        parse_env_text(f'HF_TOKEN="{SECRET}\n')
    assert SECRET not in str(ei.value)


def test_load_sigma_env_exports_and_masks_token(tmp_path, clean_env, caplog, capsys):
    p = tmp_path / "sigma.env"
    p.write_text(f"HF_token={SECRET}\nSIGMA_DATASET=lerobot/svla_so101_pickplace\nSIGMA_X=from_file\n")
    clean_env.setenv("SIGMA_X", "from_process")
    with caplog.at_level(logging.DEBUG):
        env = load_sigma_env(p)
    assert env.hf_token == SECRET and os.environ["HF_TOKEN"] == SECRET and get_hf_token() == SECRET
    assert os.environ["SIGMA_DATASET"] == "lerobot/svla_so101_pickplace"
    assert env["SIGMA_X"] == "from_process"  # process environment wins unless override=True
    assert load_sigma_env(p, override=True)["SIGMA_X"] == "from_file"
    for text in (repr(env), str(env), env.describe(), caplog.text, capsys.readouterr().out):
        assert SECRET not in text
    assert "HF token: set" in env.describe()
    assert len(load_sigma_env(tmp_path / "missing.env")) == 0
    with pytest.raises(FileNotFoundError):
        load_sigma_env(tmp_path / "missing.env", required=True)


# ------------------------------------------------------------------------------------ classification

def test_error_classification():
    assert is_rate_limit_error(FakeHTTPError(429)) and is_transient_error(FakeHTTPError(429))
    assert is_transient_error(FakeHTTPError(503)) and is_transient_error(FakeHTTPError(500))
    assert not is_transient_error(FakeHTTPError(404)) and not is_transient_error(FakeHTTPError(401))
    assert is_transient_error(ConnectionResetError()) and is_transient_error(TimeoutError())
    assert not is_transient_error(FileNotFoundError("x")) and not is_transient_error(ValueError("bad"))
    assert not is_transient_error(LocalEntryNotFoundError("offline"))

    class ReadTimeout(Exception):  # e.g. httpx.ReadTimeout / requests.exceptions.ReadTimeout
        pass

    assert is_transient_error(ReadTimeout())


def test_backoff_delays_exponential_capped_and_429():
    pol = RetryPolicy(max_retries=8, base_delay=1.0, max_delay=10.0, rate_limit_min_delay=5.0)
    assert [backoff_delay(k, pol) for k in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff_delay(0, pol, FakeHTTPError(429)) == 5.0  # 429 waits at least rate_limit_min_delay
    assert backoff_delay(0, pol, FakeHTTPError(429, {"Retry-After": "7"})) == 7.0
    assert backoff_delay(0, pol, FakeHTTPError(503)) == 1.0


# ------------------------------------------------------------------------------------------ retries

def test_call_with_retry_fake_sleep():
    sleeps: list[float] = []
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] <= 3:
            raise FakeHTTPError(503)
        return "ok"

    pol = RetryPolicy(max_retries=5, base_delay=0.5, max_delay=100)
    assert call_with_retry(flaky, policy=pol, sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0, 2.0]
    calls["n"] = 0
    with pytest.raises(FakeHTTPError):
        call_with_retry(flaky, policy=RetryPolicy(max_retries=2, base_delay=0.5), sleep=sleeps.append)
    sleeps.clear()
    with pytest.raises(FakeHTTPError):  # permanent errors are not retried
        call_with_retry(lambda: (_ for _ in ()).throw(FakeHTTPError(404)), policy=pol, sleep=sleeps.append)
    assert sleeps == []


class FlakyStream:
    """Fake remote dataset stream: opened at a position; fails at scheduled (position, attempt) points."""

    def __init__(self, n: int, failures: dict[int, list[Exception]]) -> None:
        self.n = n
        self.failures = {k: list(v) for k, v in failures.items()}
        self.opens: list[int] = []

    def __call__(self, start: int):
        self.opens.append(start)

        def gen():
            for i in range(start, self.n):
                if self.failures.get(i):
                    raise self.failures[i].pop(0)
                yield {"index": i}

        return gen()


def test_safe_iter_dataset_backoff_resumes_without_duplicates():
    stream = FlakyStream(10, {3: [FakeHTTPError(429), FakeHTTPError(429)], 7: [ConnectionResetError()]})
    sleeps: list[float] = []
    pol = RetryPolicy(max_retries=3, base_delay=1.0, max_delay=60, rate_limit_min_delay=0)
    items = list(safe_iter_dataset(stream, policy=pol, sleep=sleeps.append))
    assert [x["index"] for x in items] == list(range(10))
    # 429 twice at item 3 (1 s, 2 s), counter resets after success, reset error at item 7 (1 s)
    assert sleeps == [1.0, 2.0, 1.0]
    assert stream.opens == [0, 3, 3, 7]


def test_safe_iter_dataset_gives_up_and_propagates_permanent_errors():
    sleeps: list[float] = []
    stream = FlakyStream(5, {2: [FakeHTTPError(503)] * 10})
    it = safe_iter_dataset(stream, policy=RetryPolicy(max_retries=2, base_delay=1.0), sleep=sleeps.append)
    assert [next(it)["index"], next(it)["index"]] == [0, 1]
    with pytest.raises(FakeHTTPError):
        next(it)
    assert sleeps == [1.0, 2.0]
    with pytest.raises(ValueError):
        list(safe_iter_dataset(FlakyStream(5, {1: [ValueError("corrupt row")]}), sleep=sleeps.append))


def test_safe_iter_map_style_and_reiterable():
    class MapDS:
        def __init__(self):
            self.fail = {2: 1}

        def __len__(self):
            return 4

        def __getitem__(self, i):
            if self.fail.get(i):
                self.fail[i] -= 1
                raise TimeoutError("read timed out")
            return i * 10

    sleeps: list[float] = []
    assert list(safe_iter_dataset(MapDS(), sleep=sleeps.append)) == [0, 10, 20, 30]
    assert sleeps == [1.0]

    class ReIterable:
        def __init__(self):
            self.failed = False

        def __iter__(self):
            for i in range(5):
                if i == 3 and not self.failed:
                    self.failed = True
                    raise ConnectionError("reset")
                yield i

    assert list(safe_iter_dataset(ReIterable(), sleep=sleeps.append)) == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------------- prefetch / offline

def test_prefetch_retries_then_succeeds(tmp_path, clean_env):
    calls: list[dict] = []

    def fake_snapshot_download(**kw):
        calls.append(kw)
        if len(calls) < 3:
            raise FakeHTTPError(429, {"Retry-After": "3"})
        return str(tmp_path)

    sleeps: list[float] = []
    clean_env.setenv("HF_TOKEN", SECRET)
    out = prefetch_hf_dataset("lerobot/svla_so101_pickplace", snapshot_download=fake_snapshot_download,
                              policy=RetryPolicy(base_delay=1.0, rate_limit_min_delay=2.0), sleep=sleeps.append)
    assert out == tmp_path and sleeps == [3.0, 3.0]
    assert calls[0]["repo_type"] == "dataset" and calls[0]["token"] == SECRET
    assert "local_files_only" not in calls[0]


def test_prefetch_offline_clear_error(tmp_path, clean_env):
    clean_env.setenv("HF_HUB_OFFLINE", "1")
    seen: list[dict] = []

    def fake(**kw):
        seen.append(kw)
        raise LocalEntryNotFoundError("not cached")

    with pytest.raises(DatasetUnavailableError, match="HF_HUB_OFFLINE"):
        prefetch_hf_dataset("lerobot/svla_so101_pickplace", snapshot_download=fake, sleep=lambda s: None)
    assert seen[0]["local_files_only"] is True and len(seen) == 1
    # the real huggingface_hub with an empty cache: no network access because local_files_only=True
    pytest.importorskip("huggingface_hub")
    with pytest.raises(DatasetUnavailableError, match="not available in the local cache"):
        prefetch_hf_dataset("lerobot/svla_so101_pickplace", cache_dir=tmp_path / "hf", sleep=lambda s: None)
    # a hub id through LeRobot: offline without a local copy is a clear error, before any hub call
    from lerobot.datasets import lerobot_dataset

    hub_calls: list = []
    clean_env.setattr(lerobot_dataset, "snapshot_download", lambda *a, **k: hub_calls.append(a))
    clean_env.setattr(lerobot_dataset, "get_safe_version", lambda *a, **k: hub_calls.append(a))
    with pytest.raises(DatasetUnavailableError, match="HF_HUB_OFFLINE"):
        load_lerobot_dataset("lerobot/svla_so101_pickplace", root=tmp_path / "lr")
    assert hub_calls == [] and not (tmp_path / "lr").exists()


def test_load_local_dataset(tmp_path):
    from sigma_model.data.synthetic import write_synthetic_dataset

    root = write_synthetic_dataset(tmp_path / "ds", [(1, 3), (0, 2), (2, 2)])
    src = load_lerobot_dataset(root, max_episodes=2)
    assert type(src.dataset).__name__ == "LeRobotDataset"
    assert src.describe()["total_episodes"] == 3 and len(src) == 6 and src.fps == 10
    threads, seen = torch.get_num_threads(), []
    torch.set_num_threads(2)
    try:
        frames = [f for f in src if not seen.append(torch.get_num_threads())]
        assert seen == [1] * 6 and torch.get_num_threads() == 2  # frames are read with one torch thread
    finally:
        torch.set_num_threads(threads)
    assert [int(f["episode_index"]) for f in frames] == [0, 0, 0, 0, 1, 1]
    assert frames[0]["task"] == "pick up the red cube"
    with pytest.raises(DatasetUnavailableError, match="does not exist"):
        load_lerobot_dataset(tmp_path / "nope")


class FakeHub:
    """snapshot_download over a local "remote" dataset.

    Copies the files matching allow_patterns into local_dir, after the failures scheduled for meta/ or for the other
    files; records every call.
    """

    def __init__(self, remote, meta_failures, data_failures):
        self.remote, self.calls = remote, []
        self.failures = {True: list(meta_failures), False: list(data_failures)}

    def __call__(self, repo_id, *, repo_type=None, revision=None, local_dir=None, allow_patterns=None,
                 ignore_patterns=None, **kw):
        import fnmatch
        import shutil

        patterns = [allow_patterns] if isinstance(allow_patterns, str) else list(allow_patterns or ["*"])
        self.calls.append({"repo_id": repo_id, "repo_type": repo_type, "revision": revision,
                           "local_dir": str(local_dir), "allow_patterns": patterns, **kw})
        if self.failures[patterns == ["meta/"]]:
            raise self.failures[patterns == ["meta/"]].pop(0)
        for f in self.remote.rglob("*"):
            rel = f.relative_to(self.remote).as_posix()
            if f.is_file() and any(rel.startswith(p) if p.endswith("/") else fnmatch.fnmatch(rel, p)
                                   for p in patterns):
                (Path(local_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, Path(local_dir) / rel)
        return str(local_dir)


def test_hub_dataset_is_prefetched_with_retries_and_read_by_lerobot(tmp_path, clean_env, monkeypatch):
    """A hub id.

    LeRobot fetches meta/ (retried on HTTP 503), prefetch_hf_dataset fetches the selected episodes' files (retried on
    HTTP 429, with the token from the environment), LeRobotDataset reads them; a second open finds everything locally
    and makes no call.
    """
    import huggingface_hub
    from lerobot.datasets import lerobot_dataset, utils as lerobot_utils

    from sigma_model.data.synthetic import write_synthetic_dataset

    remote = write_synthetic_dataset(tmp_path / "remote", [(1, 3), (0, 2), (2, 2)])
    hub = FakeHub(remote, [FakeHTTPError(503)], [FakeHTTPError(429)])
    monkeypatch.setattr(lerobot_dataset, "snapshot_download", hub)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    for module in (lerobot_dataset, lerobot_utils):
        monkeypatch.setattr(module, "get_safe_version", lambda repo_id, version: "v3.0")
    clean_env.setenv("HF_TOKEN", SECRET)
    sleeps: list[float] = []
    policy = RetryPolicy(base_delay=1.0, rate_limit_min_delay=2.0)
    src = load_lerobot_dataset("someone/pickplace", root=tmp_path / "local", max_episodes=2, policy=policy,
                               sleep=sleeps.append)
    assert sleeps == [1.0, 2.0]
    meta_calls = [c for c in hub.calls if c["allow_patterns"] == ["meta/"]]
    data_calls = [c for c in hub.calls if c["allow_patterns"] != ["meta/"]]
    assert len(meta_calls) == 2 and len(data_calls) == 2  # each retried once
    assert data_calls[-1] == {"repo_id": "someone/pickplace", "repo_type": "dataset", "revision": "v3.0",
                              "local_dir": str(tmp_path / "local"), "token": SECRET,
                              "allow_patterns": ["data/chunk-000/file-000.parquet"]}
    assert src.dataset_id == "someone/pickplace" and len(src) == 6
    local = list(load_lerobot_dataset(remote, max_episodes=2))
    frames = list(src)
    assert [int(f["index"]) for f in frames] == [int(f["index"]) for f in local] == list(range(6))
    for f, g in zip(frames, local):
        assert f["task"] == g["task"]
        for key in ("observation.images.front", "observation.state", "action", "timestamp"):
            assert torch.equal(f[key], g[key]), key
    n = len(hub.calls)
    assert len(load_lerobot_dataset("someone/pickplace", root=tmp_path / "local", max_episodes=2)) == 6
    assert len(hub.calls) == n
