# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
r"""``sigma.env`` settings file (paper section 4.1: ``load_sigma_env`` reads settings and ``HF_token``).

Format: one ``KEY=VALUE`` per line; blank lines and ``#`` comments are ignored; an optional leading
``export`` is accepted; values may be single- or double-quoted (``\n``-style escapes are honoured in
double quotes); unquoted values may carry a trailing `` # comment``.

The Hugging Face token may be given as ``HF_TOKEN``, ``HF_token`` (the paper's spelling) or
``HUGGINGFACE_HUB_TOKEN``; it is exported as ``HF_TOKEN`` so that ``huggingface_hub`` picks it up.
The token value is never printed or logged: :class:`SigmaEnv`'s ``repr``/``str`` mask it, and
:meth:`SigmaEnv.describe` reports only whether a token is set.

Recognised settings (all optional, read by ``sigma-preprocess``): ``SIGMA_DATASET`` (hub id or path),
``SIGMA_DATASET_REVISION``, ``SIGMA_DATASET_ROOT`` (local download dir), ``SIGMA_SHARD_DIR``,
``SIGMA_MAX_RETRIES``, ``SIGMA_BACKOFF_BASE_S``, ``SIGMA_BACKOFF_MAX_S``, ``HF_HOME``,
``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``HF_LEROBOT_HOME``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["SigmaEnv", "load_sigma_env", "parse_env_text", "TOKEN_KEYS", "SECRET_KEY_PATTERN",
           "DEFAULT_ENV_FILE", "get_hf_token", "is_truthy"]

DEFAULT_ENV_FILE = "sigma.env"
TOKEN_KEYS = ("HF_TOKEN", "HF_token", "HUGGINGFACE_HUB_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# Any key whose name looks secret is masked in repr / describe().
SECRET_KEY_PATTERN = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|CREDENTIAL)", re.IGNORECASE)
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")


def is_truthy(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def _unquote(raw: str, key: str, lineno: int, path: str) -> str:
    if not raw:
        return ""
    q = raw[0]
    if q in ("'", '"'):
        end = raw.find(q, 1)
        while q == '"' and end > 0 and raw[end - 1] == "\\":
            end = raw.find(q, end + 1)
        if end < 0:
            raise ValueError(f"{path}:{lineno}: unterminated quote in value of {key}")
        rest = raw[end + 1:].strip()
        if rest and not rest.startswith("#"):
            raise ValueError(f"{path}:{lineno}: unexpected text after quoted value of {key}")
        inner = raw[1:end]
        if q == '"':
            inner = (inner.replace("\\n", "\n").replace("\\t", "\t").replace('\\"', '"')
                     .replace("\\\\", "\\"))
        return inner
    # unquoted: strip trailing " # comment"
    m = re.search(r"\s+#", raw)
    return raw[: m.start()].rstrip() if m else raw


def parse_env_text(text: str, path: str = "<env>") -> dict[str, str]:
    """Parse env-file text into an ordered dict (later keys win).

    Raises ValueError on bad lines (the message names the line number and key only, never the value).
    """
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ValueError(f"{path}:{lineno}: expected KEY=VALUE")
        key, raw = m.group(1), m.group(2)
        out[key] = _unquote(raw, key, lineno, path)
    return out


class SigmaEnv(Mapping[str, str]):
    """Settings read from ``sigma.env`` (a read-only mapping).  Secrets are masked in repr/str."""

    def __init__(self, values: Mapping[str, str], path: Path | None = None) -> None:
        self._values = dict(values)
        self.path = path

    # Mapping API
    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def hf_token(self) -> str | None:
        for k in TOKEN_KEYS:
            v = self._values.get(k)
            if v:
                return v
        return None

    @staticmethod
    def is_secret_key(key: str) -> bool:
        return bool(SECRET_KEY_PATTERN.search(key))

    def masked(self) -> dict[str, str]:
        return {k: ("***" if self.is_secret_key(k) and v else v) for k, v in self._values.items()}

    def describe(self) -> str:
        src = str(self.path) if self.path else "<none>"
        keys = ", ".join(sorted(k for k in self._values if not self.is_secret_key(k))) or "-"
        return f"env file {src}: {len(self)} settings ({keys}); HF token: {'set' if self.hf_token else 'not set'}"

    def __repr__(self) -> str:
        return f"SigmaEnv(path={str(self.path) if self.path else None!r}, values={self.masked()!r})"

    __str__ = __repr__


def load_sigma_env(path: str | os.PathLike | None = DEFAULT_ENV_FILE, *, override: bool = False,
                   required: bool = False, export: bool = True) -> SigmaEnv:
    """Read ``sigma.env`` and (by default) export its settings into ``os.environ``.

    - ``override=False``: variables already set in the process environment win over the file.
    - ``required=False``: a missing file gives an empty :class:`SigmaEnv` (logged at debug level).
    - The HF token (any of :data:`TOKEN_KEYS`) is exported as ``HF_TOKEN``.

    Returns the settings from the file merged with the effective environment values for the keys it
    defines.  The token is never logged.
    """
    if path is None:
        return SigmaEnv({}, None)
    p = Path(path).expanduser()
    if not p.exists():
        if required:
            raise FileNotFoundError(f"env file not found: {p}")
        log.debug("env file %s not found; using the process environment only", p)
        return SigmaEnv({}, p)
    if p.is_dir():
        raise IsADirectoryError(f"env file path is a directory: {p}")
    values = parse_env_text(p.read_text(encoding="utf-8"), str(p))
    effective: dict[str, str] = {}
    for k, v in values.items():
        if export and (override or k not in os.environ):
            os.environ[k] = v
        effective[k] = os.environ.get(k, v) if export else v
    env = SigmaEnv(effective, p)
    tok = env.hf_token
    if export and tok and (override or "HF_TOKEN" not in os.environ):
        os.environ["HF_TOKEN"] = tok
    log.info("%s", env.describe())
    return env


def get_hf_token(env: Mapping[str, str] | None = None) -> str | None:
    """Return the HF token from ``env`` (a SigmaEnv or mapping) or the process environment."""
    sources = [env] if env is not None else []
    sources.append(os.environ)
    for src in sources:
        for k in TOKEN_KEYS:
            v = src.get(k)
            if v:
                return v
    return None
