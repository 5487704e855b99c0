# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The training batch stream: data order, per-item augmentation seeds, loader workers, resume and rewind."""

from __future__ import annotations

import os

import pytest
import torch

from sigma_model.training.batching import BatchStream, DataPosition


class Augmenting:
    """Ten items, each "augmented" by noise drawn from the seed the stream gives it; records the loading process.

    Loading item `fail_index` fails once, while the file `fail_once` exists (in whichever process loads it).
    """

    def __init__(self, n: int = 10, fail_index: int | None = None, fail_once=None) -> None:
        self.n, self.fail_index, self.fail_once = n, fail_index, fail_once

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        raise AssertionError("the stream must give every item its augmentation seed")

    def sample(self, index: int, seed: int) -> dict:
        if index == self.fail_index and self.fail_once.exists():
            self.fail_once.unlink()
            raise OSError("unreadable shard")
        noise = torch.randn(3, generator=torch.Generator().manual_seed(seed))
        return {"index": torch.tensor(index), "noise": noise, "pid": os.getpid()}


def take(stream: BatchStream, n: int) -> list[dict]:
    return [stream.next_batch() for _ in range(n)]


def same(a: list[dict], b: list[dict]) -> bool:
    return all(torch.equal(x["index"], y["index"]) and torch.equal(x["noise"], y["noise"]) for x, y in zip(a, b))


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_depend_on_the_seed_and_position_only(workers):
    # 10 items in batches of 4 (drop_last): 2 batches per epoch, so 7 batches cross three epoch boundaries
    reference = take(BatchStream(Augmenting(), 4, seed=3), 7)
    stream = BatchStream(Augmenting(), 4, seed=3, num_workers=workers)
    batches = take(stream, 7)
    assert same(batches, reference) and len(batches) == 7
    loaders = {pid for b in batches for pid in b["pid"].tolist()}
    assert (loaders == {os.getpid()}) if workers == 0 else (os.getpid() not in loaders and len(loaders) >= 1)
    for epoch in range(3):
        items = torch.cat([b["index"] for b in batches[2 * epoch:2 * epoch + 2]])
        assert len(set(items.tolist())) == 8  # an epoch draws each item at most once
    first = {int(i): n for i, n in zip(batches[0]["index"], batches[0]["noise"])}
    later = {int(i): n for b in batches[2:] for i, n in zip(b["index"], b["noise"])}
    assert any(i in later for i in first)
    assert all(not torch.equal(first[i], later[i]) for i in first if i in later)  # new augmentation every epoch
    other_seed = take(BatchStream(Augmenting(), 4, seed=4), 7)
    assert not same(other_seed, reference)

    resumed = BatchStream(Augmenting(), 4, seed=3, num_workers=workers, position=DataPosition(1, 1))
    assert same(take(resumed, 4), reference[3:])
    stream.position = DataPosition(0, 1)  # a rewind: batches already prefetched from later positions are not used
    assert same(take(stream, 3), reference[1:4])
    stream.close()


@pytest.mark.parametrize("workers", [0, 1])
def test_a_failed_load_is_reported_and_the_next_call_loads_the_same_batch(tmp_path, workers):
    reference = take(BatchStream(Augmenting(), 4, seed=0), 3)
    (tmp_path / "fail").touch()
    data = Augmenting(fail_index=int(reference[1]["index"][1]), fail_once=tmp_path / "fail")  # in the second batch
    stream = BatchStream(data, 4, seed=0, num_workers=workers)
    assert same(take(stream, 1), reference[:1])
    with pytest.raises(OSError, match="unreadable shard"):
        stream.next_batch()
    assert stream.position == DataPosition(0, 1)
    assert same(take(stream, 2), reference[1:3])
    stream.close()


def test_bad_worker_count_is_refused():
    with pytest.raises(ValueError, match="num_workers"):
        BatchStream(Augmenting(), 4, seed=0, num_workers=-1)
