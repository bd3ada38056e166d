"""Lease deadlines filed by the second: which leases a sweep has to look at, and no others.

Rules
  * A lease is filed under the whole second its deadline falls in (`ceil(deadline)`), in that
    second's list, as the two strings the lease already holds (its service's key and its own), so
    a filing costs 16 bytes and no new object: a million leases take 16 MB, where a heap of
    `(deadline, seq, service, key)` tuples took about 130 MB.
  * `lease.due` is the list the lease is filed in. A lease is looked at only from that list: an
    entry left behind by a lease that was replaced, removed or filed again elsewhere is skipped.
  * `take(now)` hands over every list whose second could hold a deadline before `now` (its second
    is less than `now + 1`); the sweep looks at each lease in it: still live, it is filed again
    at its current deadline (renewals never touch this index: a renewed lease moves when its old
    deadline comes); expired, it is removed, or held by self-preservation and filed again a
    second later.
  * The sweep yields every `step` leases it looks at, so the shell can serve the event loop: a
    million leases of 20 s bring some 50,000 due every second. What changes meanwhile is judged
    when it is reached (a lease renewed meanwhile is filed again, one replaced is skipped).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Generator
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from artemis.core.registry import Registry
    from artemis.core.service_state import Lease
    from artemis.core.versions import Change

__all__ = ["Expiry", "sweeping"]

HELD_RECHECK: Final = 1.0  # seconds until an expired lease self-preservation holds is looked at


class Expiry:
    """Deadlines by the second (rules above)."""

    __slots__ = ("_lists", "_seconds")

    def __init__(self) -> None:
        self._lists: dict[int, list[str]] = {}
        self._seconds: list[int] = []  # a heap of the seconds that have a list

    def file(self, deadline: float, lease: Lease) -> None:
        """File `lease` under the second of `deadline`."""
        second = math.ceil(deadline)
        filed = self._lists.get(second)
        if filed is None:
            filed = self._lists[second] = []
            heapq.heappush(self._seconds, second)
        filed.append(lease.service)
        filed.append(lease.key)
        lease.due = filed

    def take(self, now: float) -> list[list[str]]:
        """Remove and return, earliest first, the lists of every second that may hold a
        deadline before `now`; each is `[service, key, service, key, ...]`."""
        taken = []
        seconds, lists = self._seconds, self._lists
        while seconds and seconds[0] < now + 1:
            taken.append(lists.pop(heapq.heappop(seconds)))
        return taken

    def __len__(self) -> int:
        """Entries filed, including ones left behind by leases filed again since."""
        return sum(len(filed) for filed in self._lists.values()) // 2

    def __repr__(self) -> str:
        return f"Expiry(seconds={len(self._seconds)}, entries={len(self)})"


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
