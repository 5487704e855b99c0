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
        """Whether an accepted stamp is still young enough to use at ``now_ns`` (and not from its future).

        A stamp from the future of the clock is on a timeline the clock left (it went back since).
        """
        return stamp_ns is not None and -self.future_tolerance_s <= self.age_s(stamp_ns, now_ns) <= self.max_age_s

    def reset(self) -> None:
        """Forget the last stamp (a new stream: restarted driver, new recording)."""
        self.last_ns = None

    def _refuse(self, kind: str, message: str) -> None:
        self.refused[kind] += 1
        raise StaleInput(kind, message)


class StampedHistory:
    """The recent values of one stream, to pair another stream's message with the value of its time.

    A camera frame goes with the joint state stamped nearest to it: the state read with the frame, as
    a LeRobot observation (and so the training data) pairs them, not whichever state arrived last.
    Over a transport the state of the frame's own tick can arrive just after the frame: while
    :meth:`nearer_may_come`, the frame waits. Values older than ``keep_s`` before the newest are dropped.
    """

    def __init__(self, keep_s: float) -> None:
        if not keep_s > 0:
            raise ValueError(f"keep_s must be > 0, got {keep_s}")
        self.keep_ns = int(keep_s * NS)
        self.items: list[tuple[int, object]] = []  # (stamp ns, value), stamps ascending

    def add(self, stamp_ns: int, value) -> None:
        """Add a value; stamps must not decrease (a StampGate in front guarantees it)."""
        stamp_ns = int(stamp_ns)
        if self.items and stamp_ns < self.items[-1][0]:
            raise ValueError(f"stamp {stamp_ns} older than the newest {self.items[-1][0]}")
        self.items.append((stamp_ns, value))
        oldest = stamp_ns - self.keep_ns
        while self.items[0][0] < oldest:
            self.items.pop(0)

    def clear(self) -> None:
        self.items = []

    @property
    def newest_stamp(self) -> int | None:
        return self.items[-1][0] if self.items else None

    def period_ns(self) -> int | None:
        """Return the stream's period: the median interval of the values kept (None below two values)."""
        if len(self.items) < 2:
            return None
        gaps = sorted(b[0] - a[0] for a, b in zip(self.items, self.items[1:]))
        return gaps[len(gaps) // 2]

    def nearer_may_come(self, stamp_ns: int) -> bool:
        """Whether a value still to come, one period after the newest, would be nearer to ``stamp_ns``.

        False once a value stamped at or after ``stamp_ns`` is there; True while nothing is known (no value, or no
        period yet).
        """
        newest = self.newest_stamp
        if newest is None:
            return True
        if newest >= stamp_ns:
            return False
        period = self.period_ns()
        return period is None or 2 * (stamp_ns - newest) > period

    def nearest(self, stamp_ns: int) -> tuple[int, object] | None:
        """Return the (stamp, value) stamped nearest to ``stamp_ns`` (the later one on a tie); None if empty."""
        return min(reversed(self.items), key=lambda item: abs(item[0] - stamp_ns), default=None)
