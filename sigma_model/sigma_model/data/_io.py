# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Small file-system helpers (atomic writes, a directory replaced whole, JSON)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_json", "fsync_dir", "json_dumps_stable", "replacing_directory"]


def fsync_dir(path: str | os.PathLike) -> None:
    """Fsync a directory so that a rename inside it is durable (no-op where unsupported)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir + fsync + os.replace.

    A reader (or a resumed run after a crash) sees either the old file, no file, or the complete
    new file, never a truncated one.  Temp files are named ``.<name>.*.tmp`` so they can be cleaned up.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def json_dumps_stable(obj: Any) -> str:
    """Deterministic JSON (sorted keys, fixed indentation, trailing newline)."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = True) -> None:
    if sort_keys:
        text = json_dumps_stable(obj)
    else:
        text = json.dumps(obj, indent=4, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def replacing_directory(root: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh path beside ``root`` to build its new content at; it becomes ``root`` when the block succeeds.

    What was at ``root`` stays until then: a failure or an interrupt removes the partial copy and leaves ``root`` as
    it was; on success the old one is renamed aside, the new one renamed into place, the old one deleted.
    """
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = root.with_name(f".{root.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run of this process id
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    old = root.with_name(f".{root.name}.old-{os.getpid()}")
    if root.exists():
        os.replace(root, old)
    os.replace(partial, root)
    shutil.rmtree(old, ignore_errors=True)
