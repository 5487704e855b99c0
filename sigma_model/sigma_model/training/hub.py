# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Push and pull training artifacts (checkpoints, adapters, telepathy heads, logs) with huggingface_hub.

- Offline mode: when HF_HUB_OFFLINE is set (read at call time), `push_artifacts` refuses at once
  and `pull_artifacts` only looks in the local Hugging Face cache; both raise HubUnavailableError
  with a message saying so.
- Without network, any connection failure is reported as HubUnavailableError naming the
  endpoint; the token is never part of a message or a log line.
- Token: the explicit argument, else the `sigma.env` file via sigma_model.data's env-file helper
  (HF_TOKEN / HF_token / HUGGINGFACE_HUB_TOKEN), else the process environment.
"""

from __future__ import annotations

import os
from pathlib import Path

TOKEN_KEYS = ("HF_TOKEN", "HF_token", "HUGGINGFACE_HUB_TOKEN", "HUGGING_FACE_HUB_TOKEN")


class HubUnavailableError(RuntimeError):
    """The Hugging Face Hub cannot be used (offline mode, no network, or a hub-side error)."""


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_token(token: str | None = None, env_file: str | os.PathLike | None = "sigma.env") -> str | None:
    """Explicit token, else sigma.env (through sigma_model.data's helper when it exists), else os.environ."""
    if token:
        return token
    if env_file is not None and Path(env_file).is_file():
        try:
            from ..data.env_file import load_sigma_env

            found = load_sigma_env(env_file, export=False).hf_token
            if found:
                return found
        except ImportError:
            pass
    for key in TOKEN_KEYS:
        if os.environ.get(key):
            return os.environ[key]
    return None


def _endpoint(endpoint: str | None) -> str:
    return endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def _wrap(action: str, repo_id: str, endpoint: str, err: Exception) -> HubUnavailableError:
    return HubUnavailableError(
        f"could not {action} {repo_id!r} at {endpoint}: {type(err).__name__}: {err}. "
        "Check the network, the repo id and the token (HF_TOKEN in sigma.env), or set HF_HUB_OFFLINE=1 to work locally."
    )


def push_artifacts(
    path: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    env_file: str | os.PathLike | None = "sigma.env",
    private: bool = True,
    path_in_repo: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
    repo_type: str = "model",
    endpoint: str | None = None,
) -> str:
    """Upload a file or a directory (e.g. a training checkpoint) to `repo_id`; returns the commit URL."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"nothing to push: {path} does not exist")
    if hub_offline():
        raise HubUnavailableError(f"HF_HUB_OFFLINE is set: not pushing {path} to {repo_id!r} (unset it to upload)")
    from huggingface_hub import HfApi

    where = _endpoint(endpoint)
    api = HfApi(endpoint=where, token=resolve_token(token, env_file))
    message = commit_message or f"Sigma training artifacts: {path.name}"
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if path.is_dir():
            info = api.upload_folder(repo_id=repo_id, folder_path=str(path), path_in_repo=path_in_repo,
                                     commit_message=message, revision=revision, repo_type=repo_type)
        else:
            info = api.upload_file(path_or_fileobj=str(path), path_in_repo=path_in_repo or path.name, repo_id=repo_id,
                                   commit_message=message, revision=revision, repo_type=repo_type)
    except HubUnavailableError:
        raise
    except Exception as err:  # httpx / hub HTTP / OS errors all mean "could not push"
        raise _wrap("push to", repo_id, where, err) from err
    return str(getattr(info, "commit_url", info))


def pull_artifacts(
    repo_id: str,
    local_dir: str | os.PathLike,
    *,
    token: str | None = None,
    env_file: str | os.PathLike | None = "sigma.env",
    revision: str | None = None,
    allow_patterns: list[str] | None = None,
    repo_type: str = "model",
    endpoint: str | None = None,
) -> Path:
    """Download `repo_id` (optionally only `allow_patterns`) into `local_dir`; returns the directory.

    With HF_HUB_OFFLINE set, only the local cache is used (HubUnavailableError when it is not there).
    """
    from huggingface_hub import snapshot_download

    offline = hub_offline()
    where = _endpoint(endpoint)
    try:
        out = snapshot_download(
            repo_id, repo_type=repo_type, revision=revision, local_dir=str(local_dir), allow_patterns=allow_patterns,
            token=resolve_token(token, env_file), local_files_only=offline, endpoint=where, etag_timeout=10,
        )
    except Exception as err:
        if offline:
            raise HubUnavailableError(
                f"HF_HUB_OFFLINE is set and {repo_id!r} is not in the local Hugging Face cache "
                f"({type(err).__name__}); unset HF_HUB_OFFLINE with network access to download it"
            ) from err
        raise _wrap("pull", repo_id, where, err) from err
    return Path(out)
