"""The garbage collector kept out of the loop's way: what lives on is frozen.

A full pass of CPython's collector walks every container object it tracks, in one step the loop
cannot escape, and Python 3.11 cannot split it. The registry itself keeps almost nothing tracked
(see docs/architecture.md), but every open WebSocket session is about forty tracked objects, most
of them granian's and asyncio's: 10,000 sessions are 400,000 objects, and a full pass over them
took 200-350 ms (measured with benchmarks/bench_push_scale.py).

So the node's process moves whatever survives a pass of the middle generation into the permanent
generation (`gc.freeze()`), which no later pass walks: full passes then see only what survived
since the last middle pass, a few thousand objects at most. Objects are still freed the moment
nothing refers to them (reference counting does not look at generations); what freezing gives up
is the collection of *cycles* among frozen objects that die. Measured through a push benchmark
(10,000 sessions opened, resumed, closed and reopened after a restart), the node left 337 such
objects, none of them a session's. `thaw` bounds even that: every `gc_thaw_interval` seconds
everything is thawed and walked once (one full pass, at 10,000 sessions a few hundred
milliseconds), and what lives through it is frozen again.

Only the node's own process does this (`artemis server`, in server/runner.py); a node started in
a test process leaves that process's collector alone.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

__all__ = ["Collector"]

log = logging.getLogger("artemis.collector")


class Collector:
    """Freezes the survivors of every middle- or old-generation pass (a `gc.callbacks` entry);
    `thaw` walks everything once and freezes what lives."""

    def __init__(self) -> None:
        self.freezes = 0
        self.thaws = 0
        self.last_thaw_collected = 0
        self.last_thaw_seconds = 0.0

    def install(self) -> None:
        """Freeze what lives now, and from now on what survives each middle pass."""
        gc.collect()
        gc.freeze()
        if self.callback not in gc.callbacks:
            gc.callbacks.append(self.callback)

    def uninstall(self) -> None:
        if self.callback in gc.callbacks:
            gc.callbacks.remove(self.callback)

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        # At the end of a pass of generation 1 (or 2) the younger generations are empty and the
        # oldest holds only objects that pass found alive.
        if phase == "stop" and info.get("generation", 0) >= 1:
            gc.freeze()
            self.freezes += 1

    def freeze(self) -> None:
        """Freeze what lives now, out of turn: a caller that has just made containers that will
        live long (a remembered heartbeat batch: a list of thousands of leases) keeps the
        young passes from walking them before the next middle pass would have frozen them."""
        gc.freeze()
        self.freezes += 1

    def thaw(self) -> tuple[float, float]:
        """One full pass over everything, frozen or not; what lives through it is frozen
        again. Its wall and CPU seconds."""
        started, cpu = time.perf_counter(), time.thread_time()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.thaws += 1
        self.last_thaw_collected = collected
        self.last_thaw_seconds = time.perf_counter() - started
        log.info("collector: thawed and walked every object in %.0f ms, %s collected",
                 self.last_thaw_seconds * 1000, collected)
        return self.last_thaw_seconds, time.thread_time() - cpu

    def summary(self) -> dict[str, Any]:
        return {"frozenObjects": gc.get_freeze_count(), "freezes": self.freezes,
                "thaws": self.thaws, "lastThawCollected": self.last_thaw_collected,
                "lastThawMs": round(self.last_thaw_seconds * 1000, 3)}

    def __repr__(self) -> str:
        return f"Collector({self.summary()})"
