"""Loading LeRobot datasets by hub id or local path, with cache prefetch and retry/backoff.

Paper section 4.1: ``load_sigma_env`` -> ``load_lerobot_dataset`` -> ``prefetch_hf_dataset`` (cache
warm-up with exponential backoff and HTTP 429 detection) -> ``safe_iter_dataset`` (per-step retries).

Backends (``backend=``):

- ``"lerobot"``: LeRobot's own ``LeRobotDataset`` (``lerobot.datasets.lerobot_dataset``, the older
  ``lerobot.common.datasets.lerobot_dataset`` or the standalone ``lerobot-dataset`` package's
  ``ledataset.datasets.lerobot_dataset``), when one of them is importable.
- ``"native"``: the project's reader (:class:`~sigma_model.data.lerobot_format.LeRobotDatasetReader`)
  on a local copy; hub ids are first downloaded with ``huggingface_hub.snapshot_download``.
- ``"auto"`` (default): ``"lerobot"`` when importable, else ``"native"``.

``HF_HUB_OFFLINE=1`` is respected: only the local cache is used and a missing dataset raises
:class:`DatasetUnavailableError` with an explanation instead of a network attempt.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .env_file import get_hf_token, is_truthy, load_sigma_env  # noqa: F401  (re-exported)
from .lerobot_format import LeRobotDatasetReader, LeRobotFormatError

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
    "load_lerobot_dataset",
    "import_lerobot_dataset_class",
    "hf_offline",
]

TRANSIENT_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_LEROBOT_MODULES = (
    "lerobot.datasets.lerobot_dataset",          # lerobot >= 0.4
    "lerobot.common.datasets.lerobot_dataset",   # lerobot < 0.4
    "ledataset.datasets.lerobot_dataset",        # standalone PyPI package "lerobot-dataset"
)


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
    """True for HTTP 429 / "Too Many Requests" errors."""
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
            and not isinstance(source, (str, bytes, Mapping)) and not hasattr(source, "iter_frames"):
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
        try:
            from huggingface_hub import snapshot_download  # noqa: PLC0415
        except ImportError as e:  # pragma: no cover
            raise ImportError("loading a dataset by hub id needs huggingface_hub (pip install huggingface_hub)") from e
    offline = hf_offline()
    token = token if token is not None else get_hf_token()
    kwargs: dict[str, Any] = {"repo_id": repo_id, "repo_type": "dataset", "revision": revision,
                              "token": token or None}
    if local_dir is not None:
        kwargs["local_dir"] = str(local_dir)
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    if allow_patterns is not None:
        kwargs["allow_patterns"] = list(allow_patterns)
    if offline:
        kwargs["local_files_only"] = True
    try:
        path = call_with_retry(lambda: snapshot_download(**kwargs), policy=policy, sleep=sleep,
                               what=f"prefetch {repo_id}")
    except Exception as exc:  # noqa: BLE001
        name = type(exc).__name__
        if offline or name in ("OfflineModeIsEnabled", "LocalEntryNotFoundError", "HfHubOfflineError"):
            raise DatasetUnavailableError(_offline_message(repo_id, str(cache_dir) if cache_dir else None)) from exc
        status = http_status_of(exc)
        if name in ("RepositoryNotFoundError", "GatedRepoError") or status in (401, 403, 404):
            raise DatasetUnavailableError(
                f"dataset {repo_id!r} not found or not accessible on the Hugging Face Hub "
                f"({name}{f', HTTP {status}' if status else ''}); check the id and the HF token "
                "(HF_TOKEN in sigma.env)") from exc
        if name == "RevisionNotFoundError":
            raise DatasetUnavailableError(f"dataset {repo_id!r}: revision {revision!r} not found") from exc
        if is_transient_error(exc):
            raise DatasetUnavailableError(
                f"could not download dataset {repo_id!r}: {name} persisted after retries "
                "(network unreachable or rate limited)") from exc
        raise
    return Path(path)


# --------------------------------------------------------------------------------------------------
# Dataset loading
# --------------------------------------------------------------------------------------------------

def import_lerobot_dataset_class() -> tuple[type, str] | None:
    """``(LeRobotDataset, module_name)`` from the first importable LeRobot distribution, else None."""
    for mod in _LEROBOT_MODULES:
        try:
            m = importlib.import_module(mod)
            return m.LeRobotDataset, mod
        except Exception as e:  # noqa: BLE001 - ImportError, or a broken install (e.g. torchvision ABI)
            log.debug("LeRobot API %s not usable: %s", mod, e)
    return None


@dataclass
class FrameSource:
    """An iterable of LeRobot frame dicts plus dataset metadata, whatever the backend."""

    dataset_id: str
    backend: str                       # "native" or "lerobot:<module>"
    root: Path | None
    fps: int
    features: dict[str, dict[str, Any]]
    robot_type: str | None
    total_episodes: int
    total_frames: int
    num_frames: int
    episodes: list[int] | None
    codebase_version: str = ""
    tasks: list[str] = field(default_factory=list)
    _iter_factory: Callable[[int], Iterator[dict]] | None = None
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep

    def __len__(self) -> int:
        return self.num_frames

    def __iter__(self) -> Iterator[dict[str, Any]]:
        assert self._iter_factory is not None
        return safe_iter_dataset(self._iter_factory, policy=self.policy, sleep=self.sleep,
                                 what=f"iterating {self.dataset_id}")

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.dataset_id,
            "backend": self.backend,
            "codebase_version": self.codebase_version,
            "fps": self.fps,
            "robot_type": self.robot_type,
            "total_episodes": self.total_episodes,
            "total_frames": self.total_frames,
            "selected_episodes": None if self.episodes is None else len(self.episodes),
            "selected_frames": self.num_frames,
            "features": {k: {"dtype": v.get("dtype"), "shape": list(v.get("shape", ()))}
                         for k, v in self.features.items()},
        }


def _looks_local(ref: str | os.PathLike) -> bool:
    p = Path(ref).expanduser()
    return p.exists() or str(ref).startswith((".", "/", "~")) or os.sep in str(ref) and str(ref).count("/") > 1


def _episodes_arg(max_episodes: int | None, episodes: Sequence[int] | None, total: int) -> list[int] | None:
    if episodes is not None:
        eps = sorted({int(e) for e in episodes})
        if max_episodes is not None:
            eps = eps[: int(max_episodes)]
        return eps
    if max_episodes is not None and int(max_episodes) < total:
        return list(range(int(max_episodes)))
    return None


def load_lerobot_dataset(
    dataset: str | os.PathLike,
    *,
    backend: str = "auto",
    revision: str | None = None,
    root: str | os.PathLike | None = None,
    episodes: Sequence[int] | None = None,
    max_episodes: int | None = None,
    token: str | None = None,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    prefetch: bool = True,
) -> FrameSource:
    """Open a LeRobot dataset by hub id (``lerobot/svla_so101_pickplace``) or local directory.

    ``root``: for a hub id, where to download (native backend: passed as ``local_dir``; lerobot
    backend: LeRobot's ``root``).  ``max_episodes`` keeps the first N episodes.  Frames are yielded
    through :func:`safe_iter_dataset`.
    """
    if backend not in ("auto", "lerobot", "native"):
        raise ValueError(f"backend must be auto|lerobot|native, got {backend!r}")
    policy = policy or RetryPolicy.from_env()
    ref = str(dataset)
    local = _looks_local(ref)
    if local and not Path(ref).expanduser().exists():
        raise DatasetUnavailableError(f"local dataset path does not exist: {ref}")

    lr = None
    if backend in ("auto", "lerobot"):
        lr = import_lerobot_dataset_class()
        if lr is None and backend == "lerobot":
            raise ImportError("backend='lerobot' requested but no LeRobot dataset API is importable "
                              f"(tried {', '.join(_LEROBOT_MODULES)})")

    if lr is not None:
        return _load_with_lerobot(lr, ref, local, revision=revision, root=root, episodes=episodes,
                                  max_episodes=max_episodes, policy=policy, sleep=sleep)

    # native backend
    if local:
        data_root = Path(ref).expanduser()
    else:
        if not prefetch and root is None:
            raise ValueError("native backend with a hub id needs prefetch=True or a local root")
        data_root = prefetch_hf_dataset(ref, revision=revision, local_dir=root, token=token,
                                        policy=policy, sleep=sleep) if prefetch else Path(root)  # type: ignore[arg-type]
    try:
        probe = LeRobotDatasetReader(data_root)
    except LeRobotFormatError as e:
        raise DatasetUnavailableError(f"{ref}: {e}") from e
    eps = _episodes_arg(max_episodes, episodes, probe.total_episodes)
    reader = LeRobotDatasetReader(data_root, episodes=eps, image_format="bytes")
    return FrameSource(
        dataset_id=str(data_root.resolve()) if local else ref,
        backend="native", root=data_root, fps=reader.fps, features=reader.features,
        robot_type=reader.robot_type, total_episodes=reader.total_episodes, total_frames=reader.total_frames,
        num_frames=reader.num_frames, episodes=eps, codebase_version=reader.codebase_version,
        tasks=list(reader.tasks), _iter_factory=lambda p, _r=reader: _r.iter_frames(start=p),
        policy=policy, sleep=sleep)


def _load_with_lerobot(lr: tuple[type, str], ref: str, local: bool, *, revision, root, episodes, max_episodes,
                       policy: RetryPolicy, sleep) -> FrameSource:
    cls, mod = lr
    if local:
        repo_id = Path(ref).expanduser().resolve().name
        kw: dict[str, Any] = {"root": str(Path(ref).expanduser())}
    else:
        if hf_offline():
            log.info("HF_HUB_OFFLINE set: LeRobot will only use local files for %s", ref)
        repo_id = ref
        kw = {"root": str(root)} if root is not None else {}
        if revision is not None:
            kw["revision"] = revision

    def open_ds(eps: list[int] | None):
        try:
            return cls(repo_id, episodes=eps, **kw)
        except Exception as exc:  # noqa: BLE001
            if not local and hf_offline() and not is_transient_error(exc):
                raise DatasetUnavailableError(_offline_message(ref, kw.get("root"))) from exc
            raise

    meta_ds = call_with_retry(lambda: open_ds(None), policy=policy, sleep=sleep, what=f"open {ref} (LeRobot)")
    total_eps = int(meta_ds.meta.total_episodes)
    eps = _episodes_arg(max_episodes, episodes, total_eps)
    ds = meta_ds if eps is None else call_with_retry(lambda: open_ds(eps), policy=policy, sleep=sleep,
                                                     what=f"open {ref} (LeRobot)")
    tasks_df = getattr(ds.meta, "tasks", None)
    tasks = [str(t) for t in tasks_df.index] if tasks_df is not None and hasattr(tasks_df, "index") else []
    features = {k: {**v, "shape": tuple(v.get("shape", ()))} for k, v in dict(ds.meta.features).items()}
    info = getattr(ds.meta, "info", {}) or {}

    def factory(p: int, _ds=ds) -> Iterator[dict]:
        for i in range(p, len(_ds)):
            yield _ds[i]

    return FrameSource(
        dataset_id=str(Path(ref).expanduser().resolve()) if local else ref, backend=f"lerobot:{mod}",
        root=Path(ds.root),
        fps=int(ds.meta.fps), features=features, robot_type=info.get("robot_type"),
        total_episodes=total_eps, total_frames=int(ds.meta.total_frames), num_frames=len(ds), episodes=eps,
        codebase_version=str(info.get("codebase_version", "")), tasks=tasks, _iter_factory=factory,
        policy=policy, sleep=sleep)
