"""Time, injected: the core never reads a clock of its own.

`monotonic()` (seconds, never goes back) drives leases, windows and intervals; `wall_ms()` (epoch
milliseconds) is for `changeTime`, versions and display only.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "OffsetClock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall_ms(self) -> int: ...


class SystemClock:
    """The real clocks of the machine."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def __repr__(self) -> str:
        return "SystemClock()"


class OffsetClock:
    """The machine's clocks with `offset` seconds added to the wall clock only (the setting
    `wall_clock_offset`: a node whose wall clock is skewed, for tests of a cluster)."""

    __slots__ = ("_offset_ns",)

    def __init__(self, offset: float) -> None:
        self._offset_ns = round(offset * 1e9)

    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return (time.time_ns() + self._offset_ns) // 1_000_000

    def __repr__(self) -> str:
        return f"OffsetClock(offset={self._offset_ns / 1e9!r})"


class FakeClock:
    """A clock that moves only when told to: a 20 s lease is tested in microseconds."""

    __slots__ = ("_mono", "_wall_ms")

    def __init__(self, monotonic: float = 1000.0, wall_ms: int = 1_700_000_000_000) -> None:
        self._mono = monotonic
        self._wall_ms = wall_ms

    def monotonic(self) -> float:
        return self._mono

    def wall_ms(self) -> int:
        return self._wall_ms

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by `seconds`."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._mono += seconds
        self._wall_ms += round(seconds * 1000)

    def __repr__(self) -> str:
        return f"FakeClock(monotonic={self._mono!r}, wall_ms={self._wall_ms!r})"
