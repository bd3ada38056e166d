"""A counter over a sliding time window made of whole buckets (the original's TimeBuffer).

Used by the rate limiters (10 s in 1 s buckets) and by self-preservation (renewals over the last
window). `now` is monotonic seconds, always passed in.
"""

from __future__ import annotations

import math

__all__ = ["SlidingWindow"]


class SlidingWindow:
    """Counts events of the last `window` seconds, in buckets of `bucket` seconds.

    The count of the current, partly elapsed bucket is included, so the window covers between
    `window - bucket` and `window` seconds of the past.
    """

    __slots__ = ("_bucket", "_counts", "_head", "_size", "_total")

    def __init__(self, window: float, bucket: float = 1.0) -> None:
        if bucket <= 0 or window < bucket:
            raise ValueError("a window holds at least one bucket of positive length")
        self._bucket = bucket
        self._size = max(1, math.floor(window / bucket))
        self._counts = [0] * self._size
        self._head = -1  # index (in bucket units since 0) of the newest bucket seen
        self._total = 0

    def _advance(self, now: float) -> int:
        index = math.floor(now / self._bucket)
        if index > self._head:
            if self._head < 0 or index - self._head >= self._size:
                self._counts = [0] * self._size
                self._total = 0
            else:
                for i in range(self._head + 1, index + 1):
                    slot = i % self._size
                    self._total -= self._counts[slot]
                    self._counts[slot] = 0
            self._head = index
        return self._head % self._size

    def add(self, now: float, n: int = 1) -> int:
        """Count `n` events at `now`; return the window's new total."""
        slot = self._advance(now)
        self._counts[slot] += n
        self._total += n
        return self._total

    def admit(self, now: float, limit: int) -> bool:
        """Count one event at `now` if the window holds fewer than `limit`; whether it did.

        `total` and `add` in one step, the rate limiters' hot path: a call in the newest bucket
        (most calls) costs one division and no allocation."""
        if math.floor(now / self._bucket) > self._head:
            slot = self._advance(now)
        else:
            slot = self._head % self._size
        if self._total >= limit:
            return False
        self._counts[slot] += 1
        self._total += 1
        return True

    def total(self, now: float) -> int:
        self._advance(now)
        return self._total

    def reset(self) -> None:
        self._counts = [0] * self._size
        self._total = 0

    @property
    def window(self) -> float:
        return self._size * self._bucket

    def __repr__(self) -> str:
        return f"SlidingWindow(window={self.window}, total={self._total})"
