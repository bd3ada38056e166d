"""Time, injected: the core never reads a clock of its own, and nothing waits but through one.

`monotonic()` (seconds, never goes back) drives leases, windows and intervals; `wall_ms()` (epoch
milliseconds) is for `changeTime`, versions and display only; `await sleep(seconds)` is the one
way the package waits for time to pass (heartbeat rounds, polls, reconnects, backoff).

`SystemClock` is the machine's; `OffsetClock` skews its wall clock (tests of a cluster);
`FakeClock` moves only when a test says so, and its sleepers wake when it does:

    clock = FakeClock()
    client = RegistryClient(url, clock=clock, heartbeat_interval=5.0)
    await client.register(item)
    await clock.asleep()            # the heartbeat task waits for its first round
    clock.advance(5.0)              # ... which it now runs
    await clock.drive(caller.call(...))  # time jumps over the call's own backoff waits
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

__all__ = ["Clock", "FakeClock", "OffsetClock", "SystemClock"]

T = TypeVar("T")
_EPSILON = 1e-9  # a deadline reached up to float rounding is reached


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall_ms(self) -> int: ...

    async def sleep(self, seconds: float) -> None:
        """Return after `seconds` of this clock's monotonic time (at once if <= 0)."""


class SystemClock:
    """The real clocks of the machine."""

    __slots__ = ()

    # time.monotonic itself, no Python frame around it: read twice on every request's path
    monotonic = staticmethod(time.monotonic)

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

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

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return f"OffsetClock(offset={self._offset_ns / 1e9!r})"


@dataclass(eq=False)
class _Sleeper:
    deadline: float
    order: int
    future: asyncio.Future[None]
    task: asyncio.Task[Any] | None = field(default=None)


class FakeClock:
    """A clock that moves only when told to: a 20 s lease is tested in microseconds.

    `sleep()` waits until `advance()` moves the clock to its end; `advance()` jumps, so a
    sleeper due inside the step wakes after it and sees the time at its end (advance step by
    step, `await asleep()` between, to let a loop run at each of its times). `slept` lists
    every wait asked of the clock, in order.
    """

    __slots__ = ("_mono", "_order", "_sleepers", "_wall_ms", "_watchers", "slept")

    def __init__(self, monotonic: float = 1000.0, wall_ms: int = 1_700_000_000_000) -> None:
        self._mono = monotonic
        self._wall_ms = wall_ms
        self._sleepers: list[_Sleeper] = []
        self._watchers: list[asyncio.Future[None]] = []
        self._order = itertools.count()
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self._mono

    def wall_ms(self) -> int:
        return self._wall_ms

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by `seconds`; wake the sleepers due by then, earliest
        first (they run when the caller next yields to the event loop)."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._mono += seconds
        self._wall_ms += round(seconds * 1000)
        due = sorted((s for s in self._sleepers if s.deadline <= self._mono + _EPSILON),
                     key=lambda s: (s.deadline, s.order))
        for sleeper in due:
            self._sleepers.remove(sleeper)
            if not sleeper.future.done() and not sleeper.future.get_loop().is_closed():
                sleeper.future.set_result(None)

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has moved `seconds` forward (yield once if <= 0)."""
        self.slept.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        sleeper = _Sleeper(self._mono + seconds, next(self._order),
                           asyncio.get_running_loop().create_future(), asyncio.current_task())
        self._sleepers.append(sleeper)
        for watcher in self._watchers:
            if not watcher.done():
                watcher.set_result(None)
        try:
            await sleeper.future
        finally:
            if sleeper in self._sleepers:  # cancelled before it was due
                self._sleepers.remove(sleeper)

    @property
    def sleepers(self) -> list[float]:
        """The times (on `monotonic()`) at which the tasks asleep on this clock wake, sorted."""
        return sorted(s.deadline for s in self._sleepers)

    async def asleep(self, count: int = 1, *, within: float | None = None) -> None:
        """Return once at least `count` tasks sleep on this clock; with `within`, only those
        due within `within` seconds from now count."""
        while self._asleep(within) < count:
            await self._next_sleeper()

    async def drive(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable` in a task of its own, moving the clock to the end of each wait
        of that task as soon as it sleeps: its backoffs pass at once, other tasks' waits
        only as far as it moves the clock."""
        task = asyncio.ensure_future(awaitable)
        try:
            while not task.done():
                mine = [s.deadline for s in self._sleepers if s.task is task]
                if mine:
                    self.advance(max(0.0, min(mine) - self._mono))
                watcher = self._watch()
                try:
                    waits: set[asyncio.Future[Any]] = {task, watcher}
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    self._unwatch(watcher)
            return task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _asleep(self, within: float | None) -> int:
        if within is None:
            return len(self._sleepers)
        return sum(1 for s in self._sleepers if s.deadline <= self._mono + within + _EPSILON)

    async def _next_sleeper(self) -> None:
        watcher = self._watch()
        try:
            await watcher
        finally:
            self._unwatch(watcher)

    def _watch(self) -> asyncio.Future[None]:
        watcher: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.append(watcher)
        return watcher

    def _unwatch(self, watcher: asyncio.Future[None]) -> None:
        self._watchers.remove(watcher)
        watcher.cancel()

    def __repr__(self) -> str:
        return f"FakeClock(monotonic={self._mono!r}, wall_ms={self._wall_ms!r})"
