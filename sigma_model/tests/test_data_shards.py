# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""ShardWriter / ShardDataset (sigma_model.data.shards)."""

from __future__ import annotations

import json
import os
import struct

import pytest
import torch

from sigma_model.data.shards import (
    ShardCorruptError,
    ShardDataset,
    ShardWriter,
    collate_sigma_samples,
    encode_shard,
    list_shards,
    load_meta,
    read_shard,
    read_shard_header,
)
from sigma_model.data import shards as shards_module


def _sample(i: int, base: bool = False) -> dict:
    s = {
        "vision_inputs": torch.full((3, 4, 5), i % 256, dtype=torch.uint8),
        "robot_state": torch.arange(6, dtype=torch.float32) + i,
        "gt_action_vector": torch.full((6,), float(i)),
        "gt_action_chunk": torch.full((4, 6), float(i)),
        "gt_action_trajectory": torch.full((8, 6), float(i)),
        "avg_action_l2": torch.tensor(float(i) / 2),
        "max_action_l2": torch.tensor(float(i)),
        "text": f"tâsk {i % 3} ✓" if i % 2 else "",
        "episode_index": torch.tensor(i // 4),
        "frame_index": torch.tensor(i % 4),
        "window_index": torch.tensor(i),
    }
    if base:
        s["base_action_vector"] = torch.zeros(6)
    return s


def test_write_read_roundtrip(tmp_path):
    w = ShardWriter(tmp_path, shard_size=4)
    assert w.skip_count == 0 and w.next_shard_index == 0
    for i in range(10):
        w.add(_sample(i))
    assert [p.name for _, p in list_shards(tmp_path)] == ["shard_00000.safetensors", "shard_00001.safetensors"]
    meta = w.close({"dataset": {"id": "x"}})
    assert meta["num_samples"] == 10 and meta["num_shards"] == 3 and meta["complete"] is True
    assert [s["num_samples"] for s in meta["shards"]] == [4, 4, 2]
    assert json.loads((tmp_path / "meta.json").read_text()) == meta
    assert not list(tmp_path.glob(".*.tmp"))
    ds = ShardDataset(tmp_path, require_complete=True, verify_checksums=True)
    assert len(ds) == 10
    for i in (0, 3, 4, 9, -1):
        item = ds[i]
        j = i % 10
        ref = _sample(j)
        for k, v in ref.items():
            if k == "text":
                assert item[k] == v
            else:
                assert torch.equal(item[k], v), k
    batch = collate_sigma_samples([ds[0], ds[5], ds[9]])
    assert batch["vision_inputs"].shape == (3, 3, 4, 5) and batch["vision_inputs"].dtype == torch.uint8
    assert batch["gt_action_trajectory"].shape == (3, 8, 6)
    assert batch["text"] == ["", "tâsk 2 ✓", "tâsk 0 ✓"]
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_sigma_samples)
    assert sum(len(b["text"]) for b in loader) == 10
    with pytest.raises(IndexError):
        ds[10]


def test_resume_skip_count_and_partial_last_shard(tmp_path):
    w = ShardWriter(tmp_path, shard_size=3)
    for i in range(7):
        w.add(_sample(i))
    w.close({"k": 1})  # shards of 3, 3, 1
    w2 = ShardWriter(tmp_path, shard_size=3)
    # the partial final shard is removed and will be rewritten; full shards are kept
    assert w2.skip_count == 6 and w2.next_shard_index == 2
    assert [p.name for _, p in list_shards(tmp_path)] == ["shard_00000.safetensors", "shard_00001.safetensors"]
    with pytest.raises(ShardCorruptError, match="shard_size"):
        ShardWriter(tmp_path, shard_size=2)
    with pytest.raises(FileExistsError):
        ShardWriter(tmp_path, shard_size=3, resume=False)
    w3 = ShardWriter(tmp_path, shard_size=3, overwrite=True)
    assert w3.skip_count == 0 and not list_shards(tmp_path)


def test_corrupt_and_truncated_shards_name_the_file(tmp_path):
    w = ShardWriter(tmp_path, shard_size=2)
    for i in range(4):
        w.add(_sample(i, base=True))
    w.close({})
    p1 = tmp_path / "shard_00001.safetensors"
    data = p1.read_bytes()
    p1.write_bytes(data[:-7])  # truncated
    with pytest.raises(ShardCorruptError, match="shard_00001.safetensors.*truncated"):
        ShardDataset(tmp_path)
    with pytest.raises(ShardCorruptError, match="shard_00001"):
        ShardWriter(tmp_path, shard_size=2)
    p1.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + b"\x00" * 8)
    with pytest.raises(ShardCorruptError, match="shard_00001.safetensors"):
        read_shard(p1)
    p1.write_bytes(b"abc")
    with pytest.raises(ShardCorruptError, match="shard_00001.safetensors"):
        ShardDataset(tmp_path)
    (tmp_path / "shard_00001.safetensors").unlink()
    with pytest.raises(ShardCorruptError, match="missing"):
        ShardDataset(tmp_path)


def corrupt_tensor_byte(path) -> None:
    """Flip one byte of a shard's image data; the file stays a valid safetensors shard."""
    data = bytearray(path.read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    start = read_shard_header(path)["tensors"]["vision_inputs"]["data_offsets"][0]
    data[8 + header_len + start] ^= 0xFF
    path.write_bytes(bytes(data))


def test_shard_not_matching_its_checksum_is_refused(tmp_path):
    w = ShardWriter(tmp_path, shard_size=2)
    for i in range(6):
        w.add(_sample(i))
    w.close({})
    p1 = tmp_path / "shard_00001.safetensors"
    corrupt_tensor_byte(p1)
    tensors, _ = read_shard(p1)  # still a readable shard: only the checksum tells
    assert not torch.equal(tensors["vision_inputs"][0], _sample(2)["vision_inputs"])
    with pytest.raises(ShardCorruptError, match=r"shard_00001\.safetensors does not match its checksum"):
        ShardDataset(tmp_path)
    assert len(ShardDataset(tmp_path, verify_checksums=False)) == 6


def test_each_shard_is_hashed_once_per_process(tmp_path, monkeypatch):
    hashed = []
    real = shards_module._file_sha256
    monkeypatch.setattr(shards_module, "_file_sha256", lambda p: hashed.append(p.name) or real(p))
    w = ShardWriter(tmp_path, shard_size=2)
    for i in range(4):
        w.add(_sample(i))
    w.close({})
    ShardDataset(tmp_path)
    ShardDataset(tmp_path)
    assert sorted(hashed) == ["shard_00000.safetensors", "shard_00001.safetensors"]
    p1 = tmp_path / "shard_00001.safetensors"
    mtime = p1.stat().st_mtime_ns
    corrupt_tensor_byte(p1)
    os.utime(p1, ns=(mtime + 10**9, mtime + 10**9))  # a later write (mtime resolution can be coarse)
    with pytest.raises(ShardCorruptError, match="shard_00001.safetensors"):
        ShardDataset(tmp_path)


def test_incomplete_run_refused_when_required(tmp_path):
    w = ShardWriter(tmp_path, shard_size=2)
    w.write_meta({}, complete=False)
    for i in range(2):
        w.add(_sample(i))
    with pytest.raises(RuntimeError, match="not complete"):
        ShardDataset(tmp_path, require_complete=True)
    w.abandon()
    assert len(ShardDataset(tmp_path)) == 2  # the full shard written before the "interruption"


def test_sample_key_mismatch_rejected(tmp_path):
    w = ShardWriter(tmp_path, shard_size=2)
    w.add(_sample(0))
    with pytest.raises(ValueError, match="keys"):
        w.add(_sample(1, base=True))


def test_pt_shards_loaded_with_weights_only(tmp_path):
    """The paper's shard_*.pt layout (list of sample dicts) is readable without arbitrary pickle."""
    torch.save([_sample(i) for i in range(3)], tmp_path / "shard_00000.pt")
    torch.save({"samples": [_sample(i) for i in range(3, 5)]}, tmp_path / "shard_00001.pt")
    ds = ShardDataset(tmp_path)
    assert (
        len(ds) == 5
        and ds[4]["text"] == _sample(4)["text"]
        and torch.equal(ds[3]["robot_state"], _sample(3)["robot_state"])
    )

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"samples": [Evil()]}, tmp_path / "shard_00002.pt")
    with pytest.raises(ShardCorruptError, match="shard_00002.pt"):
        ShardDataset(tmp_path)


def _raw_shard(path, header, data: bytes = b"", length: int | None = None):
    """Write a safetensors-like file: 8-byte header length (``length`` or the real one), header, data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


SIGMA_META = {"format": "sigma-shard", "num_samples": "1"}


def test_shard_header_faults_are_named_exactly(tmp_path, monkeypatch):
    p = tmp_path / "shard_00000.safetensors"
    entry = {"dtype": "U8", "shape": [1, 4], "data_offsets": [0, 4]}
    full = 8 + len(json.dumps({"__metadata__": SIGMA_META, "x": entry})) + 4  # bytes the header accounts for
    cases = [
        (lambda: p.write_bytes(b"12345"), f"shard {p} is truncated (5 bytes; no safetensors header)"),
        (lambda: _raw_shard(p, b""), f"shard {p} is truncated or corrupt (header length 0, file size 8)"),
        (lambda: _raw_shard(p, b"{}", length=1000),
         f"shard {p} is truncated or corrupt (header length 1000, file size 10)"),
        (lambda: _raw_shard(p, [1]), f"shard {p} is corrupt (header is not a JSON object)"),
        (lambda: _raw_shard(p, {"x": {"dtype": "U8"}}), f"shard {p} is corrupt (bad entry for tensor 'x')"),
        (lambda: _raw_shard(p, {"__metadata__": SIGMA_META, "x": entry}, b"abc"),
         f"shard {p} is truncated or corrupt (expected {full} bytes from its header, found {full - 1})"),
        (lambda: _raw_shard(p, {"__metadata__": {"format": "other"}, "x": entry}, b"abcd"),
         f"{p} is not a Sigma shard (metadata format='other')"),
        (lambda: _raw_shard(p, {"x": entry}, b"abcd"), f"{p} is not a Sigma shard (metadata format=None)"),
        (lambda: _raw_shard(p, {"__metadata__": {"format": "sigma-shard"}, "x": entry}, b"abcd"),
         f"shard {p} is corrupt (missing num_samples)"),
        (lambda: _raw_shard(p, {"__metadata__": {"format": "sigma-shard", "num_samples": "x"}, "x": entry}, b"abcd"),
         f"shard {p} is corrupt (missing num_samples)"),
    ]
    for write, message in cases:
        write()
        with pytest.raises(ShardCorruptError) as err:
            read_shard_header(p)
        assert str(err.value) == message
    _raw_shard(p, b"{not json}")
    with pytest.raises(ShardCorruptError, match=rf"^shard {p} is corrupt \(invalid safetensors header: "):
        read_shard_header(p)
    with pytest.raises(ShardCorruptError, match=rf"^cannot read shard {tmp_path / 'nope'}: "):
        read_shard_header(tmp_path / "nope")
    # a header longer than the limit is refused before it is read (the limit made small here)
    monkeypatch.setattr(shards_module, "_MAX_HEADER", 16)
    header = {"__metadata__": SIGMA_META, "x": entry}
    _raw_shard(p, header, b"abcd")
    with pytest.raises(ShardCorruptError, match=rf"header length {len(json.dumps(header))}, file size"):
        read_shard_header(p)


def test_shard_header_reports_what_it_read(tmp_path):
    w = ShardWriter(tmp_path, shard_size=2)
    for i in range(2):
        w.add(_sample(i))
    p = w.shard_paths[0]
    hdr = read_shard_header(p)
    assert hdr["num_samples"] == 2 and hdr["file_size"] == p.stat().st_size
    assert hdr["metadata"] == {"format": "sigma-shard", "format_version": "1", "num_samples": "2",
                               "first_sample_index": "0"}
    assert hdr["tensors"]["robot_state"]["shape"] == [2, 6] and "__metadata__" not in hdr["tensors"]


def test_read_shard_faults_are_named_exactly(tmp_path):
    from sigma_model.data.shards import serialize_safetensors

    p = tmp_path / "shard_00000.safetensors"
    meta = {"format": "sigma-shard", "num_samples": "2"}
    text = {"text_utf8": torch.tensor(list(b"abcd"), dtype=torch.uint8), "text_offsets": torch.tensor([0, 2, 4])}
    for tensors, message in (
        ({"x": torch.zeros(2)}, f"shard {p} is corrupt (text fields: 'text_utf8')"),
        ({**text, "text_offsets": torch.tensor([0, 2])},
         f"shard {p} is corrupt (text fields: list index out of range)"),
        ({**text, "x": torch.zeros(3)}, f"shard {p} is corrupt ('x' has 3 rows, expected 2)"),
    ):
        p.write_bytes(serialize_safetensors(tensors, meta))
        with pytest.raises(ShardCorruptError) as err:
            read_shard(p)
        assert str(err.value) == message
    p.write_bytes(serialize_safetensors({**text, "x": torch.arange(2)}, meta))
    tensors, texts = read_shard(p)
    assert texts == ["ab", "cd"] and list(tensors) == ["x"] and tensors["x"].tolist() == [0, 1]


def _exact(exc_type, message, call):
    with pytest.raises(exc_type) as err:
        call()
    assert str(err.value) == message


def test_writer_defaults_errors_and_directories(tmp_path):
    from sigma_model.data.shards import encode_shard, serialize_safetensors

    w = ShardWriter(tmp_path / "a" / "b")  # parents are created
    assert w.shard_size == 1000 and w.closed is False and (tmp_path / "a" / "b").is_dir()
    _exact(ValueError, "shard_size must be >= 1, got 0", lambda: ShardWriter(tmp_path / "c", shard_size=0))
    one = ShardWriter(tmp_path / "one", shard_size=1)
    one.extend(_sample(i) for i in range(2))
    assert [p.name for p in one.shard_paths] == ["shard_00000.safetensors", "shard_00001.safetensors"]
    # leftovers of an interrupted atomic write are removed; overwrite works without a meta.json
    (tmp_path / "one" / ".shard_00002.safetensors.x1.tmp").write_bytes(b"partial")
    ShardWriter(tmp_path / "one", shard_size=1)
    assert not list((tmp_path / "one").glob(".*.tmp"))
    assert ShardWriter(tmp_path / "one", shard_size=1, overwrite=True).skip_count == 0
    one = ShardWriter(tmp_path / "one", shard_size=1)
    one.add(_sample(0))
    _exact(FileExistsError, f"{tmp_path / 'one'} already contains shards; pass resume=True or overwrite=True",
           lambda: ShardWriter(tmp_path / "one", shard_size=1, resume=False))
    # numbering gaps and shards of another shard_size name the file and what was expected
    (tmp_path / "one" / "shard_00002.safetensors").write_bytes(encode_shard([_sample(2)], first_sample_index=2))
    _exact(ShardCorruptError, "shard numbering has a gap: expected shard_00001.safetensors, found "
           "shard_00002.safetensors", lambda: ShardWriter(tmp_path / "one", shard_size=1))
    gap = tmp_path / "nofirst"
    gap.mkdir()
    p0 = gap / "shard_00000.safetensors"
    p0.write_bytes(serialize_safetensors({"x": torch.zeros(1)}, {"format": "sigma-shard", "num_samples": "1"}))
    _exact(ShardCorruptError, f"shard {p0} starts at sample -1, expected 0 (was it written with a different "
           "shard_size than 1?)", lambda: ShardWriter(gap, shard_size=1))
    short = tmp_path / "short"
    short.mkdir()
    (short / "shard_00000.safetensors").write_bytes(encode_shard([_sample(0)], first_sample_index=0))
    (short / "shard_00001.safetensors").write_bytes(encode_shard([_sample(2), _sample(3)], first_sample_index=2))
    _exact(ShardCorruptError, f"shard {short / 'shard_00000.safetensors'} holds 1 samples but shard_size is 2 and "
           "it is not the last shard", lambda: ShardWriter(short, shard_size=2))


def test_resume_logs_and_keeps_the_full_shards_checksums(tmp_path, caplog):
    w = ShardWriter(tmp_path, shard_size=2)
    w.extend(_sample(i) for i in range(5))
    first = w.close({})
    caplog.set_level("INFO", logger="sigma_model.data.shards")
    w2 = ShardWriter(tmp_path, shard_size=2)
    assert [r.getMessage() for r in caplog.records] == [
        "resume: shard_00002.safetensors is a partial final shard (1 samples); it will be rewritten",
        f"resume: 2 full shards (4 samples) already in {tmp_path}",
    ]
    w2.add(_sample(4))
    meta = w2.close({})
    assert meta["shards"] == first["shards"] and meta["num_samples"] == 5
    assert w2.closed is True and w2.close({}) is None  # a second close writes nothing
    _exact(RuntimeError, "ShardWriter is closed", lambda: w2.add(_sample(5)))


def test_meta_json_fields_and_abandon(tmp_path):
    w = ShardWriter(tmp_path, shard_size=2)
    w.add(_sample(0))
    assert w.close() is None and not (tmp_path / "meta.json").exists()  # no meta given: none written
    meta = ShardWriter(tmp_path, shard_size=2).write_meta({"note": 1}, complete=False)
    assert {k: meta[k] for k in ("format", "format_version", "complete", "shard_size", "note")} == {
        "format": "sigma-shard", "format_version": 1, "complete": False, "shard_size": 2, "note": 1}
    w = ShardWriter(tmp_path / "ab", shard_size=2)
    w.add(_sample(0))
    w.abandon()
    assert w.closed is True and w.num_buffered == 0 and w.close({}) is None
    assert not list_shards(tmp_path / "ab")


def test_dataset_defaults_errors_and_incomplete_meta(tmp_path):
    _exact(FileNotFoundError, f"shard directory not found: {tmp_path / 'x'}", lambda: ShardDataset(tmp_path / "x"))
    _exact(FileNotFoundError, f"no shard_*.safetensors (or shard_*.pt) files in {tmp_path}",
           lambda: ShardDataset(tmp_path))
    w = ShardWriter(tmp_path, shard_size=2)
    w.extend(_sample(i) for i in range(2))
    w.write_meta({}, complete=False)  # lists shard 0 only
    w.extend(_sample(i) for i in range(2, 4))
    ds = ShardDataset(tmp_path)  # an unfinished run: the shards on disk count, not meta.json's list
    assert len(ds) == 4 and ds.cache_shards == 2
    _exact(IndexError, "index 4 out of range for 4 samples", lambda: ds[4])
    meta = json.loads((tmp_path / "meta.json").read_text())
    del meta["complete"]
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    _exact(RuntimeError, f"{tmp_path}: preprocessing is not complete (meta.json complete != true); rerun "
           "sigma-preprocess to resume it", lambda: ShardDataset(tmp_path, require_complete=True))


def test_dataset_keeps_the_most_recently_used_shards(tmp_path, monkeypatch):
    w = ShardWriter(tmp_path, shard_size=1)
    w.extend(_sample(i) for i in range(3))
    w.close({})
    loads = []
    real = shards_module.read_shard
    monkeypatch.setattr(shards_module, "read_shard", lambda p: loads.append(p.name[6:11]) or real(p))
    ds = ShardDataset(tmp_path, cache_shards=2)
    for i in (0, 1, 2, 1, 0):
        ds[i]
    assert loads == ["00000", "00001", "00002", "00000"]  # 2 evicted 0 (least recently used); 1 stayed
    loads.clear()
    ds = ShardDataset(tmp_path, cache_shards=0)  # at least one
    for i in (0, 0, 1, 0):
        ds[i]
    assert ds.cache_shards == 1 and loads == ["00000", "00001", "00000"]


def test_checksums_are_cached_per_path(tmp_path):
    from sigma_model.data.shards import verify_shard_checksum, _file_sha256

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(b"0123456789")
    b.write_bytes(b"0123456780")  # same size
    st = a.stat()
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime
    good = _file_sha256(a)
    verify_shard_checksum(a, good)
    bad = _file_sha256(b)
    _exact(ShardCorruptError, f"shard {b} does not match its checksum in meta.json (sha256 {bad[:12]}..., "
           f"expected {good[:12]}...)", lambda: verify_shard_checksum(b, good))


def test_header_edge_cases(tmp_path, monkeypatch):
    p = tmp_path / "shard_00000.safetensors"
    _raw_shard(p, b"7")  # a one-byte header: read, then refused as not an object
    _exact(ShardCorruptError, f"shard {p} is corrupt (header is not a JSON object)", lambda: read_shard_header(p))
    p.write_bytes(b"\xff" * 8)  # the length is unsigned
    _exact(ShardCorruptError, f"shard {p} is truncated or corrupt (header length 18446744073709551615, file size 8)",
           lambda: read_shard_header(p))
    header = {"__metadata__": SIGMA_META}  # no tensors: the file is the header alone
    _raw_shard(p, header)
    assert read_shard_header(p)["num_samples"] == 1
    monkeypatch.setattr(shards_module, "_MAX_HEADER", len(json.dumps(header)))  # a header of exactly the limit
    assert read_shard_header(p)["tensors"] == {}
    monkeypatch.undo()
    _raw_shard(p, {"__metadata__": SIGMA_META, "x": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}, b"abcd")
    with pytest.raises(ShardCorruptError, match=rf"^shard {p} is corrupt: "):  # safetensors refuses the dtype
        read_shard(p)


def test_writer_never_mixes_sample_layouts(tmp_path):
    """Shards of another config (other shapes) are refused on disk and for new samples; no file is removed."""
    w = ShardWriter(tmp_path, shard_size=2)
    w.extend(_sample(i) for i in range(5))
    w.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "copy").mkdir()
    for name in ("shard_00000.safetensors", "shard_00001.safetensors"):
        (tmp_path / "copy" / name).write_bytes(before[name])
    resumed = ShardWriter(tmp_path / "copy", shard_size=2)
    other = {**_sample(4), "gt_action_trajectory": torch.zeros(5, 6), "vision_inputs": torch.zeros(3, 8, 8)}
    resumed.add(other)
    _exact(ShardCorruptError, f"shard {tmp_path / 'copy' / 'shard_00002.safetensors'} and shard_00000.safetensors "
           "hold samples of different layouts (gt_action_trajectory, vision_inputs): the shards in "
           f"{tmp_path / 'copy'} were made with other parameters; use a fresh output directory",
           lambda: resumed.add(other))
    assert len(list_shards(tmp_path / "copy")) == 2
    # a partial last shard of another layout is refused, not removed
    (tmp_path / "shard_00002.safetensors").write_bytes(encode_shard([other], first_sample_index=4))
    with pytest.raises(ShardCorruptError, match="shard_00002.safetensors and shard_00000.safetensors hold samples "
                       r"of different layouts \(gt_action_trajectory, vision_inputs\)"):
        ShardWriter(tmp_path, shard_size=2)
    assert len(list_shards(tmp_path)) == 3


def test_writer_refuses_a_file_as_out_dir(tmp_path):
    (tmp_path / "f").write_text("not a directory")
    _exact(NotADirectoryError, f"shard directory {tmp_path / 'f'} exists and is not a directory",
           lambda: ShardWriter(tmp_path / "f", overwrite=True))
    assert (tmp_path / "f").read_text() == "not a directory"


@pytest.mark.parametrize("content, problem", [
    (b"[1, 2]", "is malformed (expected a JSON object, found list)"),
    (b'{"complete": "yes"}', "is malformed ('complete' should be true or false)"),
    (b'{"params": [1]}', "is malformed ('params' should be an object)"),
    (b'{"shards": {"file": "x"}}', "is malformed ('shards' should be a list)"),
    (b'{"complete": true, "shards": [{"num_samples": 2}]}', "is malformed (shards[0] has no valid 'file' name)"),
    (b'{"shards": ["shard_00000.safetensors"]}', "is malformed (shards[0] has no valid 'file' name)"),
    (b'{"shards": [{"file": "../shard_00000.safetensors"}]}', "is malformed (shards[0] has no valid 'file' name)"),
    (b'{"shards": [{"file": "a", "sha256": 1}]}', "is malformed (shards[0]: 'sha256' should be a string)"),
    (b'{"shards": [{"file": "a", "num_samples": true}]}',
     "is malformed (shards[0]: 'num_samples' should be an integer)"),
    (b'{"note": "\xff"}', "is corrupt (not valid UTF-8 JSON: 'utf-8' codec can't decode byte 0xff in position "
                          "10: invalid start byte)"),
    (b'{"complete": tru', "is corrupt (not valid UTF-8 JSON: Expecting value: line 1 column 14 (char 13))"),
])
def test_malformed_meta_json_is_one_error_naming_the_file(tmp_path, content, problem):
    w = ShardWriter(tmp_path, shard_size=2)
    w.extend(_sample(i) for i in range(2))
    (tmp_path / "meta.json").write_bytes(content)
    _exact(ShardCorruptError, f"{tmp_path / 'meta.json'} {problem}", lambda: ShardDataset(tmp_path))
    _exact(ShardCorruptError, f"{tmp_path / 'meta.json'} {problem}", lambda: load_meta(tmp_path))


def test_unreadable_meta_json_names_the_file(tmp_path):
    (tmp_path / "meta.json").mkdir()
    _exact(ShardCorruptError, f"cannot read {tmp_path / 'meta.json'}: Is a directory", lambda: load_meta(tmp_path))
