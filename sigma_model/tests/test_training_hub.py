# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Hub push/pull of training artifacts: clear failures offline and without network; the token."""

from __future__ import annotations

import time

import pytest

from sigma_model.training.hub import HubUnavailableError, pull_artifacts, push_artifacts, resolve_token

SECRET = "hf_NeverPrintThis_0123456789"
DEAD_ENDPOINT = "http://127.0.0.1:9"  # nothing listens on the discard port: connection refused at once


@pytest.fixture
def artifact(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "trainer_state.json").write_text("{}\n")
    return d


@pytest.fixture(autouse=True)
def no_ambient_token(monkeypatch):
    for key in ("HF_TOKEN", "HF_token", "HUGGINGFACE_HUB_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(key, raising=False)


def test_push_and_pull_fail_clearly_offline(monkeypatch, artifact, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        push_artifacts(artifact, "someone/sigma-run", token=SECRET)
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE.*not in the local Hugging Face cache"):
        pull_artifacts("someone/sigma-run-never-cached", tmp_path / "pulled", token=SECRET)
    assert time.monotonic() - start < 10  # no network attempts, no retries


def test_no_network_is_a_clear_error_without_the_token(monkeypatch, artifact, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(HubUnavailableError, match="could not push") as push_err:
        push_artifacts(artifact, "someone/sigma-run", token=SECRET, endpoint=DEAD_ENDPOINT)
    with pytest.raises(HubUnavailableError, match="could not pull") as pull_err:
        pull_artifacts("someone/sigma-run", tmp_path / "pulled", token=SECRET, endpoint=DEAD_ENDPOINT)
    for err in (push_err, pull_err):
        assert DEAD_ENDPOINT in str(err.value) and SECRET not in str(err.value)


def test_push_of_a_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to push"):
        push_artifacts(tmp_path / "missing", "someone/x")


def test_token_resolution(monkeypatch, tmp_path):
    env = tmp_path / "sigma.env"
    env.write_text(f"# settings\nHF_token={SECRET}\n")
    assert resolve_token("explicit", env) == "explicit"
    assert resolve_token(None, env) == SECRET
    monkeypatch.setenv("HF_TOKEN", "from-environment")
    assert resolve_token(None, tmp_path / "absent.env") == "from-environment"
    monkeypatch.delenv("HF_TOKEN")
    assert resolve_token(None, tmp_path / "absent.env") is None
