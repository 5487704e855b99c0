# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Sample shards: ``shard_00000.safetensors`` ... plus ``meta.json`` (paper section 4.1 ``ShardWriter``).

Format (tensor-only, no pickle): each shard is one safetensors file holding N samples stacked along
dim 0 - ``vision_inputs`` uint8 [N, 3, H, W], ``robot_state`` [N, S], ``gt_action_vector`` [N, A],
``gt_action_chunk`` [N, C, A], ``gt_action_trajectory`` [N, T, A], ``avg_action_l2`` [N],
``max_action_l2`` [N], ``episode_index`` / ``frame_index`` / ``window_index`` int64 [N], optional
``base_action_*`` - and the texts as UTF-8 bytes ``text_utf8`` uint8 [total_bytes] with
``text_offsets`` int64 [N + 1].  The safetensors header metadata records the format name/version and
the sample count.

Writes are atomic (temp file + fsync + ``os.replace`` + directory fsync).  On start-up,
:class:`ShardWriter` inspects the existing shards: every *full* shard (``shard_size`` samples) is
kept, ``skip_count = shard_size * n_full`` windows are skipped by the producer, and writing continues
with the next shard number.  A trailing partial shard (only written at the very end of a run) is
rewritten.  So an interrupted run, resumed with the same parameters, produces exactly the same files
as an uninterrupted one.  Shards never mix sample layouts (tensor names, dtypes, shapes): shards of
different layouts on disk, or new samples unlike the kept shards, are refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

__all__ = [
    "SHARD_FORMAT",
    "SHARD_FORMAT_VERSION",
    "META_FILENAME",
    "ShardCorruptError",
    "ShardWriter",
    "ShardDataset",
    "collate_sigma_samples",
    "encode_shard",
    "read_shard",
    "read_shard_header",
    "verify_shard_checksum",
    "shard_filename",
    "list_shards",
    "list_pt_shards",
    "read_pt_shard",
]

SHARD_FORMAT = "sigma-shard"
SHARD_FORMAT_VERSION = 1
META_FILENAME = "meta.json"
SHARD_PREFIX = "shard_"
SHARD_SUFFIX = ".safetensors"
_SHARD_RE = re.compile(r"^shard_(\d{5,})\.safetensors$")
TEXT_KEY = "text"
_TEXT_BYTES = "text_utf8"
_TEXT_OFFSETS = "text_offsets"
_MAX_HEADER = 100 * 1024 * 1024


class ShardCorruptError(RuntimeError):
    """A shard file is truncated, corrupt or not a Sigma shard (the message names the file)."""


def shard_filename(index: int) -> str:
    return f"{SHARD_PREFIX}{index:05d}{SHARD_SUFFIX}"


def list_shards(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(index, path)]`` of ``shard_NNNNN.safetensors`` files in ``out_dir``, sorted by index."""
    d = Path(out_dir)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _SHARD_RE.match(p.name)
        if m and p.is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


# --------------------------------------------------------------------------------------------------
# Encoding / decoding
# --------------------------------------------------------------------------------------------------

def _stack_samples(samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    if not samples:
        raise ValueError("cannot write an empty shard")
    keys = [k for k in samples[0] if k != TEXT_KEY]
    for i, s in enumerate(samples):
        if set(s) != set(samples[0]):
            raise ValueError(f"sample {i} has keys {sorted(s)} but sample 0 has {sorted(samples[0])}")
    tensors: dict[str, torch.Tensor] = {}
    for k in keys:
        vals = [s[k] if isinstance(s[k], torch.Tensor) else torch.as_tensor(s[k]) for s in samples]
        try:
            tensors[k] = torch.stack(vals).contiguous()
        except RuntimeError as e:
            raise ValueError(f"samples disagree on the shape of {k!r}: {e}") from e
    texts = [str(s.get(TEXT_KEY, "")) for s in samples]
    encoded = [t.encode("utf-8") for t in texts]
    offsets = [0]
    for b in encoded:
        offsets.append(offsets[-1] + len(b))
    blob = b"".join(encoded)
    tensors[_TEXT_BYTES] = (torch.frombuffer(bytearray(blob), dtype=torch.uint8).clone()
                            if blob else torch.zeros(0, dtype=torch.uint8))
    tensors[_TEXT_OFFSETS] = torch.tensor(offsets, dtype=torch.int64)
    return tensors


_ST_DTYPES = {torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.int32: "I32", torch.int64: "I64",
              torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64",
              torch.bool: "BOOL"}


def serialize_safetensors(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """Byte-deterministic safetensors serialisation (sorted names and metadata keys).

    ``safetensors.torch.save`` orders the ``__metadata__`` map non-deterministically between
    processes, which would break "resumed run == uninterrupted run, byte for byte".  This writes the
    same standard format (readable by ``safetensors.safe_open`` / ``load_file``) deterministically.
    """
    header: dict[str, Any] = {"__metadata__": {str(k): str(v) for k, v in sorted(metadata.items())}}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _ST_DTYPES:
            raise TypeError(f"tensor {name!r}: dtype {t.dtype} not supported in shards")
        arr = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
        if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"):
            arr = arr.byteswap()  # safetensors is little-endian
        data = arr.tobytes()
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":"), sort_keys=False).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)
    return struct.pack("<Q", len(hjson)) + hjson + b"".join(blobs)


def _encode_stacked(tensors: Mapping[str, torch.Tensor], first_sample_index: int) -> bytes:
    n = len(tensors[_TEXT_OFFSETS]) - 1
    metadata = {"format": SHARD_FORMAT, "format_version": str(SHARD_FORMAT_VERSION),
                "num_samples": str(n), "first_sample_index": str(int(first_sample_index))}
    return serialize_safetensors(tensors, metadata)


def encode_shard(samples: Sequence[Mapping[str, Any]], first_sample_index: int = 0) -> bytes:
    """Serialise samples to safetensors bytes (deterministic for identical inputs)."""
    return _encode_stacked(_stack_samples(samples), first_sample_index)


def _layout(tensors: Mapping[str, Any]) -> dict[str, tuple[str, list[int]]]:
    """``{name: (dtype, per-sample shape)}`` of stacked tensors or of a shard header's tensor entries."""

    def entry(v: Any) -> tuple[str, list[int]]:
        return (_ST_DTYPES.get(v.dtype, str(v.dtype)), list(v.shape[1:])) if isinstance(v, torch.Tensor) else \
            (v["dtype"], list(v["shape"][1:]))

    return {k: entry(v) for k, v in tensors.items() if k not in (_TEXT_BYTES, _TEXT_OFFSETS)}


def read_shard_header(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and validate a shard's safetensors header without loading tensors.

    Checks: header length sane, JSON valid, every tensor's byte range inside the file, the file size
    exactly matching, Sigma format metadata present.  Raises :class:`ShardCorruptError` naming the file.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ShardCorruptError(f"shard {p} is truncated ({size} bytes; no safetensors header)")
            (n,) = struct.unpack("<Q", head)
            if n <= 0 or n > _MAX_HEADER or 8 + n > size:
                raise ShardCorruptError(f"shard {p} is truncated or corrupt (header length {n}, file size {size})")
            raw = f.read(n)
    except OSError as e:
        raise ShardCorruptError(f"cannot read shard {p}: {e}") from e
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShardCorruptError(f"shard {p} is corrupt (invalid safetensors header: {e})") from e
    if not isinstance(header, dict):
        raise ShardCorruptError(f"shard {p} is corrupt (header is not a JSON object)")
    meta = header.pop("__metadata__", {}) or {}
    end = 0
    for name, info in header.items():
        try:
            a, b = info["data_offsets"]
            if not isinstance(info["dtype"], str) or not isinstance(info["shape"], list):
                raise TypeError
        except (KeyError, TypeError, ValueError) as e:
            raise ShardCorruptError(f"shard {p} is corrupt (bad entry for tensor {name!r})") from e
        end = max(end, int(b))
    if 8 + n + end != size:
        raise ShardCorruptError(
            f"shard {p} is truncated or corrupt (expected {8 + n + end} bytes from its header, found {size})")
    if meta.get("format") != SHARD_FORMAT:
        raise ShardCorruptError(f"{p} is not a Sigma shard (metadata format={meta.get('format')!r})")
    try:
        num = int(meta["num_samples"])
    except (KeyError, ValueError) as e:
        raise ShardCorruptError(f"shard {p} is corrupt (missing num_samples)") from e
    return {"metadata": meta, "tensors": header, "num_samples": num, "file_size": size}


def read_shard(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Load a shard: (tensors stacked along dim 0, texts).  Raises ShardCorruptError naming the file."""
    from safetensors.torch import load_file  # noqa: PLC0415

    p = Path(path)
    hdr = read_shard_header(p)
    try:
        tensors = load_file(str(p))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise ShardCorruptError(f"shard {p} is corrupt: {e}") from e
    n = hdr["num_samples"]
    try:
        blob = tensors.pop(_TEXT_BYTES)
        offsets = tensors.pop(_TEXT_OFFSETS).tolist()
        data = blob.numpy().tobytes()
        texts = [data[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n)]
    except (KeyError, IndexError, UnicodeDecodeError) as e:
        raise ShardCorruptError(f"shard {p} is corrupt (text fields: {e})") from e
    for k, v in tensors.items():
        if v.shape[0] != n:
            raise ShardCorruptError(f"shard {p} is corrupt ({k!r} has {v.shape[0]} rows, expected {n})")
    return tensors, texts


def _file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: (path, size, mtime_ns, sha256) of the shard files this process has verified.
_VERIFIED: set[tuple[str, int, int, str]] = set()


def verify_shard_checksum(path: str | os.PathLike, sha256: str) -> None:
    """Raise :class:`ShardCorruptError` unless the file's SHA-256 is ``sha256`` (its meta.json entry).

    Each file is hashed once per process while its path, size and mtime stay the same.
    """
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, sha256)
    if key in _VERIFIED:
        return
    got = _file_sha256(p)
    if got != sha256:
        raise ShardCorruptError(f"shard {p} does not match its checksum in meta.json "
                                f"(sha256 {got[:12]}..., expected {sha256[:12]}...)")
    _VERIFIED.add(key)


def list_pt_shards(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``shard_NNNNN.pt`` files (the paper's published layout), sorted by index."""
    d = Path(out_dir)
    out = []
    for p in d.glob("shard_*.pt"):
        m = re.match(r"^shard_(\d+)\.pt$", p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def read_pt_shard(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Read a ``shard_*.pt`` file with ``torch.load(weights_only=True)`` (no arbitrary pickle code).

    Accepted layouts: a list of sample dicts, ``{"samples": [...]}``, or a dict of stacked tensors
    with the texts as a list of str under ``text``/``texts``.
    """
    p = Path(path)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ShardCorruptError(f"shard {p} cannot be loaded with torch.load(weights_only=True): {e}") from e
    if isinstance(obj, Mapping) and "samples" in obj:
        obj = obj["samples"]
    if isinstance(obj, (list, tuple)):
        if not obj or not all(isinstance(x, Mapping) for x in obj):
            raise ShardCorruptError(f"shard {p}: expected a non-empty list of sample dicts")
        texts = [str(x.get("text", x.get("texts", ""))) for x in obj]
        samples = [{k: v for k, v in x.items() if k not in ("text", "texts") and isinstance(v, torch.Tensor)}
                   for x in obj]
        tensors = {k: torch.stack([s_[k] for s_ in samples]) for k in samples[0]}
        return tensors, texts
    if isinstance(obj, Mapping):
        texts = obj.get("text", obj.get("texts"))
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        n = next(iter(tensors.values())).shape[0] if tensors else 0
        texts = [str(t) for t in texts] if isinstance(texts, (list, tuple)) else [""] * n
        return tensors, texts
    raise ShardCorruptError(f"shard {p}: unsupported content type {type(obj).__name__}")


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------

class ShardWriter:
    """Buffers samples and writes ``shard_size``-sample shards atomically; resumable.

    After construction, ``skip_count`` samples are already safely on disk (full shards); the producer
    must skip that many samples of its (deterministic) sample stream and :meth:`add` the rest, which must
    have the kept shards' layout.
    ``next_shard_index`` is the number of the next shard file.  :meth:`close` writes the final partial
    shard and ``meta.json`` with ``"complete": true``.
    """

    def __init__(self, out_dir: str | os.PathLike, shard_size: int = 1000, *, resume: bool = True,
                 overwrite: bool = False) -> None:
        if int(shard_size) < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.out_dir = Path(out_dir)
        self.shard_size = int(shard_size)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise NotADirectoryError(f"shard directory {self.out_dir} exists and is not a directory")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for _, p in list_shards(self.out_dir):
                p.unlink()
            (self.out_dir / META_FILENAME).unlink(missing_ok=True)
        for tmp in self.out_dir.glob(".*.tmp"):  # leftovers of an interrupted atomic write
            tmp.unlink(missing_ok=True)
        self.shards: list[dict[str, Any]] = []
        self._layout: dict[str, tuple[str, list[int]]] | None = None  # of the shards on disk
        self._buffer: list[Mapping[str, Any]] = []
        self.closed = False
        existing = list_shards(self.out_dir)
        if existing and not resume:
            raise FileExistsError(f"{self.out_dir} already contains shards; pass resume=True or overwrite=True")
        self._scan(existing)
        self.skip_count = self.num_written
        self.next_shard_index = len(self.shards)

    def _scan(self, existing: list[tuple[int, Path]]) -> None:
        for pos, (idx, path) in enumerate(existing):
            if idx != pos:
                raise ShardCorruptError(f"shard numbering has a gap: expected {shard_filename(pos)}, found {path.name}")
            hdr = read_shard_header(path)
            self._check_layout(path, _layout(hdr["tensors"]))
            n = hdr["num_samples"]
            first = int(hdr["metadata"].get("first_sample_index", -1))
            if first != pos * self.shard_size:
                raise ShardCorruptError(
                    f"shard {path} starts at sample {first}, expected {pos * self.shard_size} "
                    f"(was it written with a different shard_size than {self.shard_size}?)")
            if n == self.shard_size:
                self.shards.append(self._shard_entry(path, n))
            elif n < self.shard_size and pos == len(existing) - 1:
                log.info("resume: %s is a partial final shard (%d samples); it will be rewritten", path.name, n)
                path.unlink()
            else:
                raise ShardCorruptError(
                    f"shard {path} holds {n} samples but shard_size is {self.shard_size} and it is not the last shard")
        if self.shards:
            log.info(
                "resume: %d full shards (%d samples) already in %s", len(self.shards), self.num_written, self.out_dir
            )
        else:
            self._layout = None  # a partial shard 0 was removed: nothing on disk to match

    def _check_layout(self, path: Path, layout: dict[str, tuple[str, list[int]]]) -> None:
        """Refuse a shard whose sample layout differs from the shards before it (another config made it)."""
        if self._layout is None:
            self._layout = layout
        elif layout != self._layout:
            diff = sorted(k for k in set(layout) | set(self._layout) if layout.get(k) != self._layout.get(k))
            raise ShardCorruptError(
                f"shard {path} and {shard_filename(0)} hold samples of different layouts ({', '.join(diff)}): "
                f"the shards in {self.out_dir} were made with other parameters; use a fresh output directory")

    @staticmethod
    def _shard_entry(path: Path, n: int) -> dict[str, Any]:
        return {"file": path.name, "num_samples": n, "sha256": _file_sha256(path)}

    @property
    def num_written(self) -> int:
        """Samples in shards on disk (not counting the in-memory buffer)."""
        return sum(s["num_samples"] for s in self.shards)

    @property
    def num_buffered(self) -> int:
        return len(self._buffer)

    @property
    def shard_paths(self) -> list[Path]:
        return [self.out_dir / s["file"] for s in self.shards]

    def add(self, sample: Mapping[str, Any]) -> None:
        if self.closed:
            raise RuntimeError("ShardWriter is closed")
        self._buffer.append(sample)
        if len(self._buffer) >= self.shard_size:
            self._flush()

    def extend(self, samples: Iterable[Mapping[str, Any]]) -> None:
        for s in samples:
            self.add(s)

    def _flush(self) -> None:
        if not self._buffer:
            return
        path = self.out_dir / shard_filename(self.next_shard_index)
        tensors = _stack_samples(self._buffer)
        self._check_layout(path, _layout(tensors))
        data = _encode_stacked(tensors, self.num_written)
        atomic_write_bytes(path, data)
        self.shards.append({"file": path.name, "num_samples": len(self._buffer),
                            "sha256": hashlib.sha256(data).hexdigest()})
        self.next_shard_index += 1
        self._buffer = []

    def write_meta(self, meta: Mapping[str, Any], *, complete: bool) -> dict[str, Any]:
        """Write ``meta.json`` atomically (shard list, counts and ``complete`` are filled in)."""
        m = dict(meta)
        m.update({
            "format": SHARD_FORMAT,
            "format_version": SHARD_FORMAT_VERSION,
            "complete": bool(complete),
            "shard_size": self.shard_size,
            "num_samples": self.num_written,
            "num_shards": len(self.shards),
            "shards": list(self.shards),
        })
        atomic_write_json(self.out_dir / META_FILENAME, m)
        return m

    def close(self, meta: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Write the final partial shard, then ``meta.json`` (complete) if ``meta`` is given."""
        if self.closed:
            return None
        self._flush()
        self.closed = True
        return self.write_meta(meta, complete=True) if meta is not None else None

    def abandon(self) -> None:
        """Drop the in-memory buffer without writing (e.g. after an error); full shards stay on disk."""
        self._buffer = []
        self.closed = True


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------

#: Types of meta.json's fields that readers use (``None`` counts as absent).
_META_FIELDS = {"complete": bool, "params": dict, "dataset": dict, "num_samples": int, "num_shards": int,
                "shards": list}
_SHARD_ENTRY_FIELDS = {"file": str, "num_samples": int, "sha256": str}
_JSON_NAMES = {bool: "true or false", dict: "an object", list: "a list", int: "an integer", str: "a string"}


def _mistyped(obj: Mapping[str, Any], fields: Mapping[str, type]) -> str | None:
    """Return the first key of ``fields`` whose value in ``obj`` is set but not of its type, else None."""
    for key, typ in fields.items():
        v = obj.get(key)
        if v is not None and (not isinstance(v, typ) or typ is int and isinstance(v, bool)):
            return f"{key!r} should be {_JSON_NAMES[typ]}"
    return None


def _meta_problem(meta: Any) -> str | None:
    """Return what is wrong with the structure of a parsed meta.json, or None."""
    if not isinstance(meta, dict):
        return f"expected a JSON object, found {type(meta).__name__}"
    if problem := _mistyped(meta, _META_FIELDS):
        return problem
    for i, entry in enumerate(meta.get("shards") or []):
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
            return f"shards[{i}] has no valid 'file' name"
        if problem := _mistyped(entry, _SHARD_ENTRY_FIELDS):
            return f"shards[{i}]: {problem}"
    return None


def load_meta(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``out_dir/meta.json`` (None if there is none); raises ShardCorruptError naming it if it is malformed."""
    p = Path(out_dir) / META_FILENAME
    if not p.exists():
        return None
    try:
        meta = json.loads(p.read_bytes().decode("utf-8"))
    except OSError as e:
        raise ShardCorruptError(f"cannot read {p}: {e.strerror or e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShardCorruptError(f"{p} is corrupt (not valid UTF-8 JSON: {e})") from e
    problem = _meta_problem(meta)
    if problem:
        raise ShardCorruptError(f"{p} is malformed ({problem})")
    return meta


class ShardDataset(torch.utils.data.Dataset):
    """Map-style dataset over a shard directory; each item is one sample dict (tensors + ``text``).

    Headers of all shards are validated at construction (truncation is caught early); shard contents
    are loaded lazily and the ``cache_shards`` most recently used shards are kept in memory.  With
    ``require_complete=True`` an unfinished preprocessing run (meta.json ``complete: false``) is refused.
    With ``verify_checksums`` (the default) every shard listed in meta.json must match its SHA-256
    there (:func:`verify_shard_checksum`, once per file and process).
    """

    def __init__(self, shard_dir: str | os.PathLike, *, cache_shards: int = 2, require_complete: bool = False,
                 verify_checksums: bool = True) -> None:
        self.shard_dir = Path(shard_dir)
        if not self.shard_dir.is_dir():
            raise FileNotFoundError(f"shard directory not found: {self.shard_dir}")
        self.meta = load_meta(self.shard_dir) or {}
        if require_complete and not self.meta.get("complete", False):
            raise RuntimeError(f"{self.shard_dir}: preprocessing is not complete (meta.json complete != true); "
                               "rerun sigma-preprocess to resume it")
        if self.meta.get("shards") and self.meta.get("complete"):
            files = [(i, self.shard_dir / s["file"]) for i, s in enumerate(self.meta["shards"])]
            for _, p in files:
                if not p.exists():
                    raise ShardCorruptError(f"shard {p} listed in meta.json is missing")
        else:
            files = list_shards(self.shard_dir)
        self._pt_cache: dict[int, tuple[dict[str, torch.Tensor], list[str]]] = {}
        if not files:
            files = list_pt_shards(self.shard_dir)
        if not files:
            raise FileNotFoundError(f"no shard_*.safetensors (or shard_*.pt) files in {self.shard_dir}")
        self.paths = [p for _, p in files]
        checksums = {s.get("file"): s.get("sha256") for s in self.meta.get("shards") or []} if verify_checksums else {}
        self.counts = []
        for i, p in enumerate(self.paths):
            if p.suffix == ".pt":
                self._pt_cache[i] = read_pt_shard(p)
                self.counts.append(len(self._pt_cache[i][1]))
                continue
            hdr = read_shard_header(p)
            self.counts.append(hdr["num_samples"])
            if checksums.get(p.name):
                verify_shard_checksum(p, checksums[p.name])
        self.offsets = [0]
        for c in self.counts:
            self.offsets.append(self.offsets[-1] + c)
        self.cache_shards = max(1, int(cache_shards))
        self._cache: OrderedDict[int, tuple[dict[str, torch.Tensor], list[str]]] = OrderedDict()

    def __len__(self) -> int:
        return self.offsets[-1]

    def _locate(self, idx: int) -> tuple[int, int]:
        import bisect  # noqa: PLC0415

        n = len(self)
        if idx < 0:
            idx += n
        if not 0 <= idx < n:
            raise IndexError(f"index {idx} out of range for {n} samples")
        s = bisect.bisect_right(self.offsets, idx) - 1
        return s, idx - self.offsets[s]

    def load_shard(self, s: int) -> tuple[dict[str, torch.Tensor], list[str]]:
        if s in self._pt_cache:
            return self._pt_cache[s]
        if s in self._cache:
            self._cache.move_to_end(s)
            return self._cache[s]
        data = read_shard(self.paths[s])
        self._cache[s] = data
        while len(self._cache) > self.cache_shards:
            self._cache.popitem(last=False)
        return data

    def __getitem__(self, idx: int) -> dict[str, Any]:
        s, j = self._locate(int(idx))
        tensors, texts = self.load_shard(s)
        item: dict[str, Any] = {k: v[j] for k, v in tensors.items()}
        item[TEXT_KEY] = texts[j]
        return item


def collate_sigma_samples(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack sample tensors along a new batch dim; ``text`` becomes a list of str.

    ``vision_inputs`` stays uint8 [B, 3, H, W] (divide by 255 for the model's float image input).
    """
    if not batch:
        raise ValueError("empty batch")
    out: dict[str, Any] = {}
    for k in batch[0]:
        vals = [b[k] for b in batch]
        if k == TEXT_KEY or isinstance(vals[0], str):
            out[k] = list(vals)
        else:
            out[k] = torch.stack([v if isinstance(v, torch.Tensor) else torch.as_tensor(v) for v in vals])
    return out
