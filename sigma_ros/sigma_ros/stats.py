# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""ROS-free bookkeeping shared by the nodes: latencies, rates, dropped inputs, stamp pairing."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Hashable


class NodeStats:
    """Per-stage latency, event rates and dropped-input counters of one node (thread-safe)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = float(window_s)
        self._lock = threading.Lock()
        self._latency: dict[str, deque] = {}
        self._last_latency: dict[str, float] = {}
        self._events: dict[str, deque] = {}
        self.drops: dict[str, int] = {}
        self.last_error = ""

    def latency(self, stage: str, seconds: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._latency.setdefault(stage, deque()).append((now, seconds))
            self._last_latency[stage] = seconds
            self._trim(self._latency[stage], now)

    def event(self, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            q = self._events.setdefault(name, deque())
            q.append(now)
            self._trim(q, now, key=lambda x: x)

    def drop(self, name: str, error: str = "", count: int = 1) -> int:
        with self._lock:
            self.drops[name] = self.drops.get(name, 0) + count
            if error:
                self.last_error = error
            return self.drops[name]

    def declare_drop(self, name: str) -> None:
        with self._lock:
            self.drops.setdefault(name, 0)

    def _trim(self, q: deque, now: float, key=lambda x: x[0]) -> None:
        while q and now - key(q[0]) > self.window_s:
            q.popleft()

    def snapshot(self) -> dict:
        """{'latency': {stage: (last_ms, mean_ms, max_ms)}, 'rates': {name: hz}, 'drops': {...}}."""
        now = time.monotonic()
        with self._lock:
            lat = {}
            for stage, q in self._latency.items():
                self._trim(q, now)
                vals = [v for _, v in q] or [self._last_latency.get(stage, 0.0)]
                lat[stage] = (1e3 * self._last_latency.get(stage, 0.0), 1e3 * sum(vals) / len(vals), 1e3 * max(vals))
            rates = {}
            for name, q in self._events.items():
                self._trim(q, now, key=lambda x: x)
                if len(q) >= 2 and q[-1] > q[0]:
                    rates[name] = (len(q) - 1) / (q[-1] - q[0])
                else:
                    rates[name] = 0.0
            return {"latency": lat, "rates": rates, "drops": dict(self.drops), "last_error": self.last_error}


class Timer:
    """Wall time of a block: ``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


class StampSync:
    """Exact-stamp pairing of several inputs (a tiny message_filters.TimeSynchronizer).

    ``add(key, stamp, item)`` returns ``{key: item}`` once every key has an item with that stamp;
    older unmatched stamps are discarded then (they can never complete). Each key keeps at most
    ``queue_size`` stamps.
    """

    def __init__(self, keys: tuple[str, ...], queue_size: int = 8) -> None:
        if not keys:
            raise ValueError("StampSync needs at least one key")
        self.keys = tuple(keys)
        self.queue_size = max(1, int(queue_size))
        self._queues: dict[str, OrderedDict] = {k: OrderedDict() for k in self.keys}
        self.discarded = 0
        self._lock = threading.Lock()

    def add(self, key: str, stamp: Hashable, item) -> dict | None:
        with self._lock:
            q = self._queues[key]
            q[stamp] = item
            q.move_to_end(stamp)
            while len(q) > self.queue_size:
                q.popitem(last=False)
                self.discarded += 1
            if not all(stamp in self._queues[k] for k in self.keys):
                return None
            out = {k: self._queues[k][stamp] for k in self.keys}
            for k in self.keys:
                qk = self._queues[k]
                for s in list(qk):
                    try:
                        older = s <= stamp
                    except TypeError:
                        older = s == stamp
                    if older:
                        del qk[s]
                        if s != stamp:
                            self.discarded += 1
            return out

    def clear(self) -> None:
        with self._lock:
            for q in self._queues.values():
                q.clear()


class FrameGapCounter:
    """Frames missing from a stream, judged by the gaps between consecutive header stamps.

    ROS 2 headers carry no sequence number, so a frame lost in transport (too large for the
    transport, dropped under load) or pushed out of a full subscription queue shows only as a gap.
    The expected period is ``1 / expected_hz``, or with ``expected_hz`` 0 the median of the recent
    intervals; a gap of k periods counts k - 1 missing frames.
    """

    def __init__(self, expected_hz: float = 0.0, history: int = 31) -> None:
        self.expected_period_ns = int(1e9 / expected_hz) if expected_hz > 0 else None
        self._intervals: deque = deque(maxlen=history)
        self._last: int | None = None
        self.received = 0
        self.missing = 0

    def period_ns(self) -> int | None:
        if self.expected_period_ns is not None:
            return self.expected_period_ns
        if len(self._intervals) < 5:
            return None
        return int(sorted(self._intervals)[len(self._intervals) // 2])

    def add(self, stamp_ns: int) -> int:
        """Record a frame's stamp (in order); returns how many frames are missing before it."""
        self.received += 1
        missed = 0
        if self._last is not None and stamp_ns > self._last:
            interval = stamp_ns - self._last
            period = self.period_ns()
            if period:
                missed = max(0, int(round(interval / period)) - 1)
            if not missed:
                self._intervals.append(interval)
        self._last = stamp_ns
        self.missing += missed
        return missed
