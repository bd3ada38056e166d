"""CPU time the hypervisor took from this virtual machine ("steal", the eighth number of
/proc/stat's `cpu` line): while it is taken, every process here waits, the node's event loop
included, whatever the node does. A benchmark runs a `StealWatch` and reports, for each span
it measures, how much was stolen and the most stolen within any 100 ms, next to its loop-lag
figures, so that a stall the machine caused can be told from one the node caused.

/proc/stat counts in ticks of 10 ms (USER_HZ 100), summed over the CPUs: the figures are
coarse, and 10 ms of steal on each of two CPUs reads as 20 ms.
"""

from __future__ import annotations

import bisect
import threading
import time

TICK_MS = 10  # one USER_HZ tick
WINDOW = 0.1  # seconds: the window of the "most within" figure


def read_steal() -> int:
    """Ticks stolen from every CPU since boot (0 where the kernel does not count them)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = stat.readline().split()
    return int(fields[8]) if len(fields) > 8 else 0


class StealWatch:
    """Samples the steal counter every `every` seconds in a daemon thread, from `start()` to
    `stop()`; `span(a, b)` summarises what was stolen between two `time.monotonic()` readings."""

    def __init__(self, every: float = 0.005) -> None:
        self.every = every
        self._seen: list[tuple[float, int]] = []  # (when an increase was seen, its ticks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steal-watch", daemon=True)

    def start(self) -> StealWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        last = read_steal()
        while not self._stop.wait(self.every):
            now = read_steal()
            if now > last:
                self._seen.append((time.monotonic(), now - last))
                last = now

    def span(self, since: float, until: float | None = None) -> dict[str, int]:
        """Milliseconds stolen between `since` and `until` (now if None), and the most stolen
        within any WINDOW of that span."""
        until = time.monotonic() if until is None else until
        seen = self._seen[:]
        times, ticks = [at for at, _ in seen], [n for _, n in seen]
        first, last = bisect.bisect_left(times, since), bisect.bisect_right(times, until)
        worst = 0
        for n in range(first, last):
            end = bisect.bisect_right(times, times[n] + WINDOW, n, last)
            worst = max(worst, sum(ticks[n:end]))
        return {"stolen_ms": sum(ticks[first:last]) * TICK_MS,
                "most_in_100ms_ms": worst * TICK_MS}
