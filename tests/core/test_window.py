"""The sliding window of whole buckets behind rate limits and self-preservation."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import pytest

from artemis.core.window import SlidingWindow

T0 = 1000.0


def totals(window: SlidingWindow, times: list[float]) -> list[int]:
    return [window.total(t) for t in times]


def test_counts_events_of_the_last_ten_buckets() -> None:
    """An event counts from its own second until ten whole buckets have passed."""
    window = SlidingWindow(10.0)
    assert 3 == window.add(T0 + 0.2, 3)
    assert 4 == window.add(T0 + 4.9)
    assert [4, 4, 1, 1, 0] == totals(window, [T0 + 9.0, T0 + 9.99, T0 + 10.0, T0 + 13.99,
                                              T0 + 14.0])


def test_current_bucket_is_counted() -> None:
    """Events of the current, partly elapsed second are in the total at once."""
    window = SlidingWindow(10.0)
    window.add(T0 + 0.9)
    assert [1, 2] == [window.total(T0 + 0.95), window.add(T0 + 0.99)]


def test_buckets_expire_one_by_one() -> None:
    """One event per second: the total climbs to ten and stays there as old seconds leave."""
    window = SlidingWindow(10.0)
    seen = [window.add(T0 + k) for k in range(15)]
    assert [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10, 10, 10] == seen
    assert [9, 5, 1, 0] == totals(window, [T0 + 15, T0 + 19, T0 + 23, T0 + 24])


def test_a_long_gap_clears_everything() -> None:
    """After a full window without events nothing is left, however much was counted."""
    window = SlidingWindow(10.0)
    for k in range(10):
        window.add(T0 + k, 100)
    assert [1000, 0, 1] == [window.total(T0 + 9), window.total(T0 + 500), window.add(T0 + 500)]


def test_admit_counts_only_below_the_limit() -> None:
    """`admit` counts an event while the window holds fewer than the limit, and a refused one
    is not counted: once old seconds leave, as many are admitted again as left."""
    window = SlidingWindow(10.0)
    assert [True, True, False, False] == [window.admit(T0 + t, 2) for t in (0.1, 5.0, 5.1, 9.9)]
    assert ([2, True, False], 0) == (
        [window.total(T0 + 9.99), window.admit(T0 + 10.0, 2), window.admit(T0 + 10.5, 2)],
        window.admit(T0 + 40.0, 0) + window.total(T0 + 40.0))


def test_admit_agrees_with_total_and_add() -> None:
    """`admit(now, limit)` is `total(now) < limit` then `add(now)`, at any time, also when the
    clock steps back inside the window (a FakeClock may)."""
    fast, slow = SlidingWindow(10.0), SlidingWindow(10.0)
    times = [T0 + t / 7 for t in range(0, 400, 3)] + [T0 + 30, T0 + 29.5, T0 + 45, T0 + 44.1]
    expected = []
    for t in times:
        ok = slow.total(t) < 25
        if ok:
            slow.add(t)
        expected.append(ok)
    assert expected == [fast.admit(t, 25) for t in times]


def test_other_bucket_sizes() -> None:
    """A 20 s window of 2 s buckets (the client's reconnect limiter) slides in 2 s steps."""
    window = SlidingWindow(20.0, bucket=2.0)
    window.add(T0 + 0.5)
    window.add(T0 + 3.0)
    assert [2, 2, 1, 1, 0] == totals(window, [T0 + 19.9, T0 + 19.0, T0 + 20.0, T0 + 21.9,
                                              T0 + 22.0])
    assert 20.0 == window.window


def test_window_is_whole_buckets() -> None:
    """A window that is not a multiple of the bucket is rounded down to whole buckets."""
    assert [10.0, 4.0, 1.0] == [SlidingWindow(10.5).window, SlidingWindow(5.0, 2.0).window,
                                SlidingWindow(1.0).window]


@pytest.mark.parametrize(("window", "bucket"), [(10.0, 0.0), (10.0, -1.0), (0.5, 1.0)])
def test_a_window_needs_one_positive_bucket(window: float, bucket: float) -> None:
    """A bucket must be positive and fit in the window."""
    with pytest.raises(ValueError, match="at least one bucket of positive length"):
        SlidingWindow(window, bucket)


def test_reset_forgets_the_counts() -> None:
    """reset() empties the window; counting starts again from zero."""
    window = SlidingWindow(10.0)
    window.add(T0, 5)
    window.reset()
    assert [0, 1] == [window.total(T0), window.add(T0 + 1)]


def test_repr_shows_window_and_total() -> None:
    """The repr shows the window length and the last computed total."""
    window = SlidingWindow(10.0)
    window.add(T0, 3)
    assert "SlidingWindow(window=10.0, total=3)" == repr(window)
