"""Lease deadlines filed by the tenth of a second: which leases a sweep has to look at, and no
others.

Rules
  * A lease is filed under the tick (a tenth of a second, the sweeper's interval) its deadline
    falls in (`ceil(deadline * 10)`), among that tick's entries, as the two strings the lease
    already holds (its service's key and its own), so a filing costs 16 bytes and no new
    object: a million leases take 16 MB, where a heap of `(deadline, seq, service, key)` tuples
    took about 130 MB.
  * A tick's entries are sealed into tuples of `Filed.SEAL` strings as they come: the garbage
    collector soon leaves a tuple of strings alone, where it would walk a list of two million
    (a million leases filed in one tick) at every full collection, 60 ms at a time.
  * `lease.due` is the tick's `Filed` the lease is filed in. A lease is looked at only from
    there: an entry left behind by a lease replaced, removed or filed again since is skipped.
  * `take(now)` hands over the entries of every tick that could hold a deadline before `now`
    (a tick less than `now * 10 + 1`), so a lease is removed within a tick of its deadline and
    looked at about twice when its deadline comes (the sweeper runs every tick). The sweep
    looks at each lease in it: still live, it is filed again at its current deadline (renewals
    never touch this index: a renewed lease moves when its old deadline comes); expired, it is
    removed, or held by self-preservation and filed again a second later.
  * The sweep yields every `step` leases it looks at, so the shell can serve the event loop: a
    million leases of 20 s bring some 50,000 due every second. What changes meanwhile is judged
    when it is reached (a lease renewed meanwhile is filed again, one replaced is skipped).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Generator, Iterator
from itertools import chain
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from artemis.core.registry import Registry
    from artemis.core.service_state import Lease
    from artemis.core.versions import Change

__all__ = ["Expiry", "Filed", "sweeping"]

HELD_RECHECK: Final = 1.0  # seconds until an expired lease self-preservation holds is looked at


class Filed:
    """One tick's entries, `service, key, service, key, ...`, sealed into tuples (rules above)."""

    __slots__ = ("open", "sealed")
    SEAL: Final = 1024

    def __init__(self) -> None:
        self.sealed: list[tuple[str, ...]] = []
        self.open: list[str] = []

    def add(self, service: str, key: str) -> None:
        entries = self.open
        entries.append(service)
        entries.append(key)
        if len(entries) >= self.SEAL:
            self.sealed.append(tuple(entries))
            entries.clear()

    def __iter__(self) -> Iterator[str]:
        return chain(*self.sealed, self.open)

    def __len__(self) -> int:
        """Strings filed: two an entry."""
        return sum(map(len, self.sealed)) + len(self.open)


class Expiry:
    """Deadlines by the tick (rules above)."""

    __slots__ = ("_lists", "_ticks")

    TICKS_PER_SECOND: Final = 10

    def __init__(self) -> None:
        self._lists: dict[int, Filed] = {}
        self._ticks: list[int] = []  # a heap of the ticks that have a list

    def file(self, deadline: float, lease: Lease) -> None:
        """File `lease` under the tick of `deadline`."""
        tick = math.ceil(deadline * self.TICKS_PER_SECOND)
        filed = self._lists.get(tick)
        if filed is None:
            filed = self._lists[tick] = Filed()
            heapq.heappush(self._ticks, tick)
        filed.add(lease.service, lease.key)
        lease.due = filed

    def take(self, now: float) -> list[Filed]:
        """Remove and return, earliest first, the entries of every tick that may hold a
        deadline before `now`; each iterates as `service, key, service, key, ...`."""
        taken = []
        ticks, lists, limit = self._ticks, self._lists, now * self.TICKS_PER_SECOND + 1
        while ticks and ticks[0] < limit:
            taken.append(lists.pop(heapq.heappop(ticks)))
        return taken

    def __len__(self) -> int:
        """Entries filed, including ones left behind by leases filed again since."""
        return sum(len(filed) for filed in self._lists.values()) // 2

    def __repr__(self) -> str:
        return f"Expiry(ticks={len(self._ticks)}, entries={len(self)})"


def sweeping(registry: Registry, expiry: Expiry, now: float, wall_ms: int, step: int
             ) -> Generator[None, None, list[Change]]:
    """Remove from `registry` the leases that expired by `now` (rules above); its changes."""
    changes: list[Change] = []
    services, seen = registry.services, 0
    for filed in expiry.take(now):
        entries = iter(filed)
        for service, key in zip(entries, entries, strict=True):
            seen += 1
            if seen % step == 0:
                yield
            state = services.get(service)
            if state is None:
                continue  # removed since
            lease = state.leases.get(key)
            if lease is None or lease.due is not filed:
                continue  # replaced, removed or filed again since
            deadline = lease.renewed + lease.ttl
            if deadline >= now:
                expiry.file(deadline, lease)
            elif not (registry.legacy_safe if lease.legacy else registry.safe).is_safe:
                expiry.file(now + HELD_RECHECK, lease)
            else:
                registry._remove(state, lease, now, wall_ms, changes)
                registry.evicted_total += 1
    return changes
