# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Freshness of timestamped inputs, judged by their header stamps (no ROS, no torch).

A robot loop must act on fresh data only. Arrival time says nothing about a message that sat in
a queue, came from a stalled driver or from a clock running ahead, so each input stream goes
through a :class:`StampGate`: a message is refused when its stamp is older than ``max_age_s``,
more than ``future_tolerance_s`` in the future, older than the last accepted one of its stream,
or zero (unstamped) unless unstamped messages are allowed (they are then stamped on arrival). All
times are integer nanoseconds of one clock (the node's ROS clock).
"""

from __future__ import annotations

from dataclasses import dataclass

NS = 1_000_000_000
KINDS = ("stale", "future", "out_of_order", "unstamped")


class StaleInput(ValueError):
    """A message refused for its stamp; ``kind`` is one of :data:`KINDS`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class StampGate:
    """Accepts the messages of one stream whose stamps are fresh and in order."""

    name: str
    max_age_s: float
    future_tolerance_s: float = 0.1
    allow_unstamped: bool = False

    def __post_init__(self) -> None:
        if not (self.max_age_s > 0 and self.future_tolerance_s >= 0):
            raise ValueError(f"{self.name}: max_age_s must be > 0 and future_tolerance_s >= 0")
        self.last_ns: int | None = None
        self.refused = dict.fromkeys(KINDS, 0)

    def age_s(self, stamp_ns: int, now_ns: int) -> float:
        return (int(now_ns) - int(stamp_ns)) / NS

    def accept(self, stamp_ns: int, now_ns: int) -> int:
        """Return the stamp to use for the message (``now_ns`` for an allowed unstamped one).

        Raise :class:`StaleInput` if the message must be refused.
        """
        stamp_ns = int(stamp_ns)
        if stamp_ns == 0:
            if not self.allow_unstamped:
                self._refuse("unstamped", f"{self.name}: unstamped message (header stamp 0)")
            stamp_ns = int(now_ns)
        age = self.age_s(stamp_ns, now_ns)
        if age > self.max_age_s:
            self._refuse("stale", f"{self.name}: stamp {age:.3f}s old > {self.max_age_s}s")
        if -age > self.future_tolerance_s:
            self._refuse("future", f"{self.name}: stamp {-age:.3f}s in the future > {self.future_tolerance_s}s")
        if self.last_ns is not None and stamp_ns < self.last_ns:
            self._refuse("out_of_order", f"{self.name}: stamp {(self.last_ns - stamp_ns) / NS:.3f}s older than "
                                         "the last accepted one")
        self.last_ns = stamp_ns
        return stamp_ns

    def fresh(self, stamp_ns: int | None, now_ns: int) -> bool:
        """Whether an accepted stamp is still young enough to use at ``now_ns``."""
        return stamp_ns is not None and self.age_s(stamp_ns, now_ns) <= self.max_age_s

    def reset(self) -> None:
        """Forget the last stamp (a new stream: restarted driver, new recording)."""
        self.last_ns = None

    def _refuse(self, kind: str, message: str) -> None:
        self.refused[kind] += 1
        raise StaleInput(kind, message)
