"""Lease deadlines filed by the second: which leases a sweep has to look at, and no others.

Rules
  * A lease is filed under the whole second its deadline falls in (`ceil(deadline)`), in that
    second's list, as the two strings the lease already holds (its service's key and its own), so
    a filing costs 16 bytes and no new object: a million leases take 16 MB, where a heap of
    `(deadline, seq, service, key)` tuples took about 130 MB.
  * `lease.due` is the list the lease is filed in. A lease is looked at only from that list: an
    entry left behind by a lease that was replaced, removed or filed again elsewhere is skipped.
  * `take(now)` hands over every list whose second could hold a deadline before `now` (its second
    is less than `now + 1`); the registry looks at each lease in it: still live, it is filed again
    at its current deadline (renewals never touch this index: a renewed lease moves when its old
    deadline comes); expired, it is removed, or held by self-preservation and filed again.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from artemis.core.service_state import Lease

__all__ = ["Expiry"]


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
