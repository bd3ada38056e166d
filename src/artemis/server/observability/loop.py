"""The event loop's own health: how late it wakes up, and the longest steps that held it.

`LoopLag` measures the loop's lateness with a timer; `StepTimes` records the longest
uninterrupted step of each kind of background work (and of the garbage collector);
`drive_async` runs a chunked core computation, giving the loop back between chunks and
recording its longest chunk. `percentiles_ms` summarises samples the way runtime.json and the
metrics show them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import TypeVar

__all__ = ["LoopLag", "StepTimes", "drive_async", "percentiles_ms"]

T = TypeVar("T")


async def drive_async(gen: Generator[None, None, T], steps: StepTimes | None = None,
                      name: str = "", after_step: Callable[[], object] | None = None) -> T:
    """Run a chunked core computation, giving the event loop back between chunks; the longest
    chunk is recorded in `steps` under `name`; `after_step` runs after each chunk."""
    while True:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            next(gen)
        except StopIteration as stop:
            if steps is not None:
                steps.record(name, time.perf_counter() - started, time.thread_time() - cpu)
            if after_step is not None:
                after_step()
            return stop.value  # type: ignore[no-any-return]
        if steps is not None:
            steps.record(name, time.perf_counter() - started, time.thread_time() - cpu)
        if after_step is not None:
            after_step()
        await asyncio.sleep(0)


class StepTimes:
    """The longest uninterrupted step of each kind of background work, and of the garbage
    collector: what the event loop could not escape while it ran. Wall time includes the time
    the operating system gave the CPU to other processes; CPU time is the node's own work."""

    def __init__(self) -> None:
        self.longest: dict[str, float] = {}
        self.longest_cpu: dict[str, float] = {}
        self._gc_started = (0.0, 0.0)

    def record(self, name: str, seconds: float, cpu_seconds: float = 0.0) -> None:
        if seconds > self.longest.get(name, 0.0):
            self.longest[name] = seconds
        if cpu_seconds > self.longest_cpu.get(name, 0.0):
            self.longest_cpu[name] = cpu_seconds

    def gc_callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = (time.perf_counter(), time.thread_time())
        else:
            self.record(f"gc{info.get('generation', 0)}",
                        time.perf_counter() - self._gc_started[0],
                        time.thread_time() - self._gc_started[1])

    def summary(self) -> dict[str, dict[str, float]]:
        return {name: {"wallMs": round(seconds * 1000, 3),
                       "cpuMs": round(self.longest_cpu.get(name, 0.0) * 1000, 3)}
                for name, seconds in sorted(self.longest.items())}

    def __repr__(self) -> str:
        return f"StepTimes({self.summary()})"


class LoopLag:
    """How late the event loop wakes up: a timer due every `interval` measures its overshoot."""

    def __init__(self, interval: float = 0.01, keep: int = 30_000) -> None:
        self.interval = interval
        self.samples: deque[tuple[float, float]] = deque(maxlen=keep)  # (when, lag) seconds
        self.max_lag = 0.0

    async def run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            end = time.perf_counter()
            lag = max(0.0, end - start - self.interval)
            self.samples.append((end, lag))
            self.max_lag = max(self.max_lag, lag)

    def summary(self, window: float | None = None) -> dict[str, float]:
        """Lag percentiles over the last `window` seconds (all kept samples if None)."""
        since = -1.0 if window is None else time.perf_counter() - window
        summary = percentiles_ms(lag for when, lag in self.samples if when >= since)
        summary["maxEverMs"] = round(self.max_lag * 1000, 3) if summary["samples"] else 0.0
        return summary

    def __repr__(self) -> str:
        return f"LoopLag(samples={len(self.samples)}, max_lag={self.max_lag:.6f})"


def percentiles_ms(seconds: Iterable[float]) -> dict[str, float]:
    """How many samples, and their p50, p99 and max in milliseconds (all 0 without samples)."""
    ordered = sorted(seconds)
    if not ordered:
        return {"samples": 0, "p50Ms": 0.0, "p99Ms": 0.0, "maxMs": 0.0}
    return {"samples": len(ordered),
            "p50Ms": round(ordered[len(ordered) // 2] * 1000, 3),
            "p99Ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
            "maxMs": round(ordered[-1] * 1000, 3)}
