# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""StampedHistory: a camera frame is paired with the joint state stamped nearest to it."""

from __future__ import annotations

import pytest

from sigma_model.freshness import NS, StampedHistory

MS = NS // 1000


def test_nearest_stamp_wins_over_the_newest_arrival():
    h = StampedHistory(keep_s=1.0)
    for t, v in [(0, "a"), (33 * MS, "b"), (66 * MS, "c")]:
        h.add(t, v)
    assert h.nearest(31 * MS) == (33 * MS, "b")  # the state read with a frame 2 ms older than it
    assert h.nearest(35 * MS) == (33 * MS, "b")
    assert h.nearest(-5 * MS) == (0, "a")
    assert h.nearest(500 * MS) == (66 * MS, "c")
    assert h.nearest(int(16.5 * MS)) == (33 * MS, "b")  # a tie goes to the later one
    assert h.newest_stamp == 66 * MS


def test_old_values_are_dropped_and_clear_empties():
    h = StampedHistory(keep_s=0.1)
    h.add(0, "old")
    h.add(50 * MS, "mid")
    h.add(120 * MS, "new")
    assert [v for _, v in h.items] == ["mid", "new"]  # 0 is more than keep_s before the newest
    h.clear()
    assert h.nearest(0) is None and h.newest_stamp is None


def test_bad_use_is_a_clear_error():
    h = StampedHistory(keep_s=1.0)
    h.add(10, "x")
    with pytest.raises(ValueError, match="older than the newest"):
        h.add(5, "y")
    with pytest.raises(ValueError, match="keep_s"):
        StampedHistory(keep_s=0.0)


def test_a_frame_waits_only_while_a_nearer_value_may_still_come():
    h = StampedHistory(keep_s=1.0)
    assert h.nearer_may_come(0)  # nothing known yet
    h.add(0, "a")
    assert h.nearer_may_come(1 * MS)  # no period yet
    assert not h.nearer_may_come(0)  # a value stamped at or after the frame is there
    h.add(33 * MS, "b")
    h.add(66 * MS, "c")
    assert h.period_ns() == 33 * MS
    assert h.nearer_may_come(97 * MS)  # the next one (about 99 ms) is nearer than c
    assert not h.nearer_may_come(70 * MS)  # c is nearer than anything still to come
    assert not h.nearer_may_come(int(82.5 * MS))  # a tie: no wait
    assert not h.nearer_may_come(50 * MS)


def test_a_stamp_from_the_future_of_the_clock_is_not_fresh():
    """A value stamped on a timeline the clock left is not fresh, however long the clock takes to catch up.

    The clock went back: use_sim_time switched, a looped bag.
    """
    from sigma_model.freshness import StampGate

    gate = StampGate("joint_states", max_age_s=0.2, future_tolerance_s=0.1)
    stamp = gate.accept(100 * NS, 100 * NS)
    assert gate.fresh(stamp, 100 * NS + NS // 10) and gate.fresh(stamp, 100 * NS - NS // 20)
    assert not gate.fresh(stamp, 100 * NS + NS // 2)  # too old
    assert not gate.fresh(stamp, 10 * NS)  # the clock went back 90 s
