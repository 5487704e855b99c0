# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Loading LeRobot datasets by hub id or local path with LeRobot's ``LeRobotDataset``.

With cache prefetch and retry/backoff.

Paper section 4.1: ``load_sigma_env`` -> ``load_lerobot_dataset`` -> ``prefetch_hf_dataset`` (cache
warm-up with exponential backoff and HTTP 429 detection) -> ``safe_iter_dataset`` (per-step retries).

``HF_HUB_OFFLINE=1`` is respected: only local files are used and a missing dataset raises
:class:`DatasetUnavailableError` with an explanation instead of a network attempt.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .env_file import get_hf_token, is_truthy, load_sigma_env  # noqa: F401  (re-exported)
from .lerobot_io import import_lerobot

log = logging.getLogger(__name__)

__all__ = [
    "DatasetUnavailableError",
    "RetryPolicy",
    "FrameSource",
    "load_sigma_env",
    "is_rate_limit_error",
    "is_transient_error",
    "http_status_of",
    "retry_after_seconds",
    "backoff_delay",
    "call_with_retry",
    "prefetch_hf_dataset",
    "safe_iter_dataset",
    "episode_files",
    "open_lerobot_metadata",
    "load_lerobot_dataset",
    "hf_offline",
]

TRANSIENT_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class DatasetUnavailableError(RuntimeError):
    """The dataset cannot be obtained (offline without a cached copy, not found, auth, retries exhausted)."""


# --------------------------------------------------------------------------------------------------
# Error classification and backoff
# --------------------------------------------------------------------------------------------------

def http_status_of(exc: BaseException) -> int | None:
    """HTTP status code carried by an exception (requests/httpx/huggingface_hub style), if any."""
    for obj in (exc, getattr(exc, "response", None)):
        if obj is None:
            continue
        for attr in ("status_code", "status"):
            v = getattr(obj, attr, None)
            if isinstance(v, int):
                return v
    return None


def is_rate_limit_error(exc: BaseException) -> bool:
    """Return True for HTTP 429 / "Too Many Requests" errors."""
    if http_status_of(exc) == 429:
        return True
    msg = str(exc).lower()
    return "429" in msg and ("too many" in msg or "rate" in msg or "client error" in msg) \
        or "too many requests" in msg or "rate limit" in msg


_TRANSIENT_NAME_PARTS = ("Timeout", "ConnectionError", "ConnectError", "ReadError", "RemoteProtocolError",
                         "ChunkedEncodingError", "IncompleteRead", "ProtocolError", "NetworkError",
                         "ServerDisconnected", "TransportError")
_PERMANENT_NAMES = ("OfflineModeIsEnabled", "LocalEntryNotFoundError", "RepositoryNotFoundError",
                    "RevisionNotFoundError", "EntryNotFoundError", "GatedRepoError", "DisabledRepoError",
                    "HfHubOfflineError")


def is_transient_error(exc: BaseException) -> bool:
    """Whether retrying may help: HTTP 408/425/429/5xx, connection resets, timeouts, broken reads."""
    names = [c.__name__ for c in type(exc).__mro__]
    if any(n in _PERMANENT_NAMES for n in names):
        return False
    status = http_status_of(exc)
    if status is not None:
        return status in TRANSIENT_HTTP_STATUS or 500 <= status < 600
    if is_rate_limit_error(exc):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.ECONNREFUSED, errno.ETIMEDOUT,
                                                  errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EPIPE):
        return True
    return any(part in n for n in names for part in _TRANSIENT_NAME_PARTS)


def retry_after_seconds(exc: BaseException) -> float | None:
    """``Retry-After`` header (seconds) of an HTTP error response, if present and numeric."""
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None)
    if not headers:
        return None
    try:
        v = headers.get("Retry-After") or headers.get("retry-after")
    except Exception:
        return None
    try:
        return max(0.0, float(v)) if v is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: delay_k = min(max_delay, base_delay * factor**k) (+ jitter), k = 0, 1, ...

    On HTTP 429 the delay is at least ``rate_limit_min_delay`` and honours ``Retry-After``.
    ``max_retries`` is the number of retries after the first failure of one step.
    """

    max_retries: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    factor: float = 2.0
    jitter: float = 0.0            # fraction of the delay added at random (0 = deterministic)
    rate_limit_min_delay: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "RetryPolicy":
        env = env if env is not None else os.environ
        kw: dict[str, Any] = {}
        if env.get("SIGMA_MAX_RETRIES"):
            kw["max_retries"] = int(env["SIGMA_MAX_RETRIES"])
        if env.get("SIGMA_BACKOFF_BASE_S"):
            kw["base_delay"] = float(env["SIGMA_BACKOFF_BASE_S"])
        if env.get("SIGMA_BACKOFF_MAX_S"):
            kw["max_delay"] = float(env["SIGMA_BACKOFF_MAX_S"])
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)


def backoff_delay(attempt: int, policy: RetryPolicy, exc: BaseException | None = None,
                  rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (0-based)."""
    d = min(policy.max_delay, policy.base_delay * (policy.factor ** attempt))
    if exc is not None and is_rate_limit_error(exc):
        d = max(d, min(policy.max_delay, policy.rate_limit_min_delay))
        ra = retry_after_seconds(exc)
        if ra is not None:
            d = max(d, min(ra, max(policy.max_delay, ra)))
    if policy.jitter > 0:
        d += d * policy.jitter * (rng or random).random()
    return d


def call_with_retry(fn: Callable[[], Any], *, policy: RetryPolicy | None = None,
                    sleep: Callable[[float], None] = time.sleep, what: str = "operation",
                    on_retry: Callable[[int, float, BaseException], None] | None = None) -> Any:
    """Call ``fn()``; on a transient error sleep with exponential backoff and retry."""
    policy = policy or RetryPolicy()
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below
            if not is_transient_error(exc) or attempt >= policy.max_retries:
                raise
            delay = backoff_delay(attempt, policy, exc)
            kind = "rate limited (HTTP 429)" if is_rate_limit_error(exc) else f"transient error ({type(exc).__name__})"
            log.warning("%s: %s; retry %d/%d in %.1fs", what, kind, attempt + 1, policy.max_retries, delay)
            if on_retry is not None:
                on_retry(attempt, delay, exc)
            sleep(delay)
            attempt += 1


def safe_iter_dataset(source: Any, *, policy: RetryPolicy | None = None,
                      sleep: Callable[[float], None] = time.sleep, start: int = 0,
                      what: str = "dataset iteration",
                      on_retry: Callable[[int, float, BaseException], None] | None = None) -> Iterator[Any]:
    """Iterate ``source`` with per-step retries and exponential backoff on transient errors / HTTP 429.

    ``source`` may be

    - a callable ``f(position) -> iterator`` that starts at ``position`` (best: resumes exactly),
    - a map-style dataset (``__len__`` + ``__getitem__``, e.g. ``LeRobotDataset``): each item is
      fetched with its own retries,
    - a re-iterable (``iter(source)`` restarts it): after an error it is re-opened and the items
      already yielded are skipped.

    Each step gets ``policy.max_retries`` retries; the counter resets after every successful step.
    Non-transient errors propagate immediately.  Items are yielded exactly once, in order.
    """
    policy = policy or RetryPolicy()
    pos = int(start)

    if hasattr(source, "__getitem__") and hasattr(source, "__len__") and not callable(source) \
            and not isinstance(source, (str, bytes, Mapping)):
        n = len(source)
        while pos < n:
            i = pos
            yield call_with_retry(lambda: source[i], policy=policy, sleep=sleep,
                                  what=f"{what} [item {i}]", on_retry=on_retry)
            pos += 1
        return

    if callable(source) and not hasattr(source, "__iter__"):
        opener = source
    else:
        def opener(p: int, _src=source) -> Iterator[Any]:
            it = iter(_src)
            for _ in range(p):
                next(it)
            return it

    attempt = 0
    it: Iterator[Any] | None = None
    while True:
        try:
            if it is None:
                it = opener(pos)
            item = next(it)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001
            if not is_transient_error(exc) or attempt >= policy.max_retries:
                raise
            delay = backoff_delay(attempt, policy, exc)
            kind = "rate limited (HTTP 429)" if is_rate_limit_error(exc) else f"transient error ({type(exc).__name__})"
            log.warning("%s: %s at position %d; retry %d/%d in %.1fs", what, kind, pos, attempt + 1,
                        policy.max_retries, delay)
            if on_retry is not None:
                on_retry(attempt, delay, exc)
            sleep(delay)
            attempt += 1
            it = None
            continue
        attempt = 0
        pos += 1
        yield item


# --------------------------------------------------------------------------------------------------
# Hub access
# --------------------------------------------------------------------------------------------------

def hf_offline() -> bool:
    return is_truthy(os.environ.get("HF_HUB_OFFLINE")) or is_truthy(os.environ.get("HF_DATASETS_OFFLINE"))


def _offline_message(repo_id: str, cache: str | None) -> str:
    where = cache or os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "the default HF cache"
    return (f"HF_HUB_OFFLINE is set and dataset {repo_id!r} is not available in the local cache "
            f"({where}). Unset HF_HUB_OFFLINE (with network access) to download it, run the prefetch "
            "once while online, or pass a local dataset directory instead of a hub id.")


_OFFLINE_NAMES = ("OfflineModeIsEnabled", "LocalEntryNotFoundError", "HfHubOfflineError")


def _unavailable_error(repo_id: str, exc: BaseException, revision: str | None,
                       cache: str | None) -> DatasetUnavailableError | None:
    """Return the clear error for a hub failure (offline, not found, auth, retries exhausted), else None."""
    name = type(exc).__name__
    if name in _OFFLINE_NAMES or hf_offline() and isinstance(exc, (OSError, ConnectionError)):
        return DatasetUnavailableError(_offline_message(repo_id, cache))
    status = http_status_of(exc)
    if name in ("RepositoryNotFoundError", "GatedRepoError") or status in (401, 403, 404):
        return DatasetUnavailableError(
            f"dataset {repo_id!r} not found or not accessible on the Hugging Face Hub "
            f"({name}{f', HTTP {status}' if status else ''}); check the id and the HF token "
            "(HF_TOKEN in sigma.env)")
    if name == "RevisionNotFoundError":
        return DatasetUnavailableError(f"dataset {repo_id!r}: revision {revision!r} not found")
    if is_transient_error(exc):
        return DatasetUnavailableError(
            f"could not download dataset {repo_id!r}: {name} persisted after retries "
            "(network unreachable or rate limited)")
    return None


def _hub_call(fn: Callable[[], Any], repo_id: str, *, what: str, policy: RetryPolicy | None,
              sleep: Callable[[float], None], revision: str | None = None, cache: str | None = None) -> Any:
    """``fn()`` with retries on transient errors / HTTP 429; hub failures become DatasetUnavailableError."""
    try:
        return call_with_retry(fn, policy=policy, sleep=sleep, what=what)
    except Exception as exc:  # noqa: BLE001 - classified
        err = _unavailable_error(repo_id, exc, revision, cache)
        if err is None:
            raise
        raise err from exc


def prefetch_hf_dataset(repo_id: str, *, revision: str | None = None, local_dir: str | os.PathLike | None = None,
                        cache_dir: str | os.PathLike | None = None, allow_patterns: Sequence[str] | None = None,
                        token: str | None = None, policy: RetryPolicy | None = None,
                        sleep: Callable[[float], None] = time.sleep, snapshot_download: Callable | None = None) -> Path:
    """Warm the Hugging Face cache with the dataset files (``snapshot_download``, repo_type dataset).

    Retries transient errors and HTTP 429 with exponential backoff.  With ``HF_HUB_OFFLINE=1`` only the
    local cache is consulted.  Returns the local snapshot directory.  ``snapshot_download`` may be
    injected (tests).
    """
    if snapshot_download is None:
        from huggingface_hub import snapshot_download  # noqa: PLC0415
    token = token if token is not None else get_hf_token()
    kwargs: dict[str, Any] = {"repo_id": repo_id, "repo_type": "dataset", "revision": revision,
                              "token": token or None}
    if local_dir is not None:
        kwargs["local_dir"] = str(local_dir)
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    if allow_patterns is not None:
        kwargs["allow_patterns"] = list(allow_patterns)
    if hf_offline():
        kwargs["local_files_only"] = True
    path = _hub_call(lambda: snapshot_download(**kwargs), repo_id, what=f"prefetch {repo_id}", policy=policy,
                     sleep=sleep, revision=revision, cache=str(cache_dir or local_dir or "") or None)
    return Path(path)


# --------------------------------------------------------------------------------------------------
# Dataset loading (LeRobot's LeRobotDatasetMetadata / LeRobotDataset)
# --------------------------------------------------------------------------------------------------

@dataclass
class FrameSource:
    """A ``LeRobotDataset`` iterated frame by frame with per-frame retries (:func:`safe_iter_dataset`)."""

    dataset_id: str
    dataset: Any                       # lerobot.datasets.lerobot_dataset.LeRobotDataset
    episodes: list[int] | None
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep

    @property
    def meta(self) -> Any:
        return self.dataset.meta

    @property
    def fps(self) -> int:
        return int(self.meta.fps)

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return {k: {**v, "shape": tuple(v.get("shape", ()))} for k, v in self.meta.features.items()}

    @property
    def tasks(self) -> list[str]:
        return [str(t) for t in self.meta.tasks.index]

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Yield the frames, read with one torch thread.

        LeRobotDataset converts each frame with a few small torch ops (ToTensor), which intra-op threads slow down ~10x
        on a busy 2-core machine.
        """
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield from safe_iter_dataset(self.dataset, policy=self.policy, sleep=self.sleep,
                                         what=f"iterating {self.dataset_id}")
        finally:
            torch.set_num_threads(threads)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.dataset_id,
            "codebase_version": str(self.meta.info.get("codebase_version", "")),
            "fps": self.fps,
            "robot_type": self.meta.robot_type,
            "total_episodes": int(self.meta.total_episodes),
            "total_frames": int(self.meta.total_frames),
            "selected_episodes": None if self.episodes is None else len(self.episodes),
            "selected_frames": len(self),
            "features": {k: {"dtype": v.get("dtype"), "shape": list(v.get("shape", ()))}
                         for k, v in self.features.items()},
        }


def _looks_local(ref: str | os.PathLike) -> bool:
    p = Path(ref).expanduser()
    return p.exists() or str(ref).startswith((".", "/", "~")) or os.sep in str(ref) and str(ref).count("/") > 1


def _local_root(ref: str) -> Path:
    """Return the root of a local dataset, checked to hold the metadata LeRobot would otherwise fetch from the hub."""
    root = Path(ref).expanduser()
    if not root.exists():
        raise DatasetUnavailableError(f"local dataset path does not exist: {ref}")
    if not (root / "meta" / "info.json").is_file():
        raise DatasetUnavailableError(f"{ref} is not a LeRobot dataset (no meta/info.json)")
    if not any((root / "meta" / "episodes").glob("*/*.parquet")):
        raise DatasetUnavailableError(f"{ref} is not a complete LeRobot dataset: it has no episodes "
                                      "(no meta/episodes/*/*.parquet)")
    if not (root / "meta" / "tasks.parquet").is_file():
        raise DatasetUnavailableError(f"{ref} is not a complete LeRobot dataset (no meta/tasks.parquet)")
    return root


def _episodes_arg(max_episodes: int | None, episodes: Sequence[int] | None, total: int) -> list[int] | None:
    if episodes is not None:
        eps = sorted({int(e) for e in episodes})
        bad = [e for e in eps if not 0 <= e < total]
        if bad:
            raise ValueError(f"episodes {bad} are not in the dataset (it has episodes 0..{total - 1})")
        if max_episodes is not None:
            eps = eps[: int(max_episodes)]
        return eps
    if max_episodes is not None and int(max_episodes) < total:
        return list(range(int(max_episodes)))
    return None


def episode_files(meta: Any, episodes: Sequence[int] | None) -> list[str]:
    """Return the data (and video) files, relative to the dataset root, that hold ``episodes`` (None: all)."""
    eps = range(int(meta.total_episodes)) if episodes is None else episodes
    files = {str(meta.get_data_file_path(e)) for e in eps}
    files |= {str(meta.get_video_file_path(e, key)) for key in meta.video_keys for e in eps}
    return sorted(files)


def open_lerobot_metadata(dataset: str | os.PathLike, *, revision: str | None = None,
                          root: str | os.PathLike | None = None, policy: RetryPolicy | None = None,
                          sleep: Callable[[float], None] = time.sleep) -> Any:
    """Return the ``LeRobotDatasetMetadata`` of a local dataset directory or a hub id.

    LeRobot downloads ``meta/``, with retries; ``root``: where, default ``$HF_LEROBOT_HOME/<repo_id>``.
    """
    lr = import_lerobot()
    ref = str(dataset)
    if _looks_local(ref):
        path = _local_root(ref)
        return lr.LeRobotDatasetMetadata(path.resolve().name, root=path)
    if hf_offline():
        from lerobot.utils.constants import HF_LEROBOT_HOME

        where = Path(root) if root is not None else HF_LEROBOT_HOME / ref
        if not (where / "meta" / "info.json").is_file():
            raise DatasetUnavailableError(_offline_message(ref, str(where)))
    return _hub_call(lambda: lr.LeRobotDatasetMetadata(ref, root=root, revision=revision), ref,
                     what=f"open {ref} (LeRobot metadata)", policy=policy, sleep=sleep, revision=revision,
                     cache=str(root) if root is not None else None)


def load_lerobot_dataset(
    dataset: str | os.PathLike,
    *,
    revision: str | None = None,
    root: str | os.PathLike | None = None,
    episodes: Sequence[int] | None = None,
    max_episodes: int | None = None,
    token: str | None = None,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FrameSource:
    """Open a LeRobot dataset by hub id (``lerobot/svla_so101_pickplace``) or local directory.

    LeRobot's ``LeRobotDataset`` reads it; ``max_episodes`` (>= 1; None: all) keeps the first N episodes.

    A hub id: LeRobot downloads ``meta/``; :func:`prefetch_hf_dataset` then fetches the selected
    episodes' files into ``root`` (default ``$HF_LEROBOT_HOME/<repo_id>``) with backoff, unless they
    are there already, and ``LeRobotDataset`` reads them from there.
    """
    if max_episodes is not None and (isinstance(max_episodes, bool) or int(max_episodes) < 1):
        raise ValueError(f"max_episodes must be >= 1 (or None for all episodes), got {max_episodes!r}")
    policy = policy or RetryPolicy.from_env()
    lr = import_lerobot()
    ref = str(dataset)
    local = _looks_local(ref)
    meta = open_lerobot_metadata(ref, revision=revision, root=root, policy=policy, sleep=sleep)
    eps = _episodes_arg(max_episodes, episodes, int(meta.total_episodes))
    missing = [f for f in episode_files(meta, eps) if not (meta.root / f).is_file()]
    if local and missing:
        raise DatasetUnavailableError(f"{ref}: missing dataset file {missing[0]}")
    if missing and hf_offline():
        raise DatasetUnavailableError(_offline_message(ref, str(meta.root)))
    if missing:
        from lerobot.datasets.utils import get_safe_version, is_valid_version

        rev = meta.revision
        if is_valid_version(rev):  # LeRobot's codebase-version tag, resolved on the hub as LeRobot does
            rev = _hub_call(lambda: get_safe_version(ref, rev), ref, what=f"revision of {ref}", policy=policy,
                            sleep=sleep, revision=rev)
        prefetch_hf_dataset(ref, revision=rev, local_dir=meta.root, allow_patterns=missing, token=token,
                            policy=policy, sleep=sleep)

    def open_dataset():
        return lr.LeRobotDataset(meta.repo_id, root=meta.root, revision=meta.revision, episodes=eps)

    if local:
        return FrameSource(str(Path(ref).expanduser().resolve()), open_dataset(), eps, policy, sleep)
    ds = _hub_call(open_dataset, ref, what=f"open {ref} (LeRobot)", policy=policy, sleep=sleep, revision=revision)
    return FrameSource(ref, ds, eps, policy, sleep)
