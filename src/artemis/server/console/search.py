"""The registry's services in id order, for the console's search by id prefix and its paging.

Rules
  * Keys are the registry's service keys (lower-case ids), kept sorted; the services of a prefix
    are one range of that list, found by bisection: a search costs O(log n + page), never a scan
    of the registry.
  * The list follows the registry lazily: a search first checks whether the set of keys may
    have moved (the registry's revision or its service count changed, or `recheck` seconds
    passed: a service whose instances were all hidden comes and goes without a revision), and
    only then compares the key sets (in C, about a millisecond per 100,000 services) and inserts
    or removes what changed; a change larger than an eighth of the list sorts it again.
  * A key found in the list but gone from the registry since is skipped when a page is read.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["ServiceIndex"]

_LAST: Final = "\U0010ffff"  # sorts after every character a key may hold


class ServiceIndex:
    """The sorted service keys of a registry's `services` mapping (rules in the module doc)."""

    __slots__ = ("_checked_at", "_count", "_keys", "_known", "_revision", "recheck")

    def __init__(self, recheck: float = 5.0) -> None:
        self.recheck = recheck  # seconds after which the key sets are compared anyway
        self._keys: list[str] = []
        self._known: set[str] = set()
        self._revision = -1
        self._count = -1
        self._checked_at = float("-inf")

    def sync(self, services: Mapping[str, Any], revision: int, now: float) -> None:
        """Bring the list in step with `services` if it may have moved (`now`: monotonic s)."""
        if (revision == self._revision and len(services) == self._count
                and now - self._checked_at < self.recheck):
            return
        self._revision, self._count, self._checked_at = revision, len(services), now
        current = services.keys()
        if current == self._known:
            return
        added = current - self._known
        removed = self._known - current
        if len(added) + len(removed) > len(self._keys) // 8 + 64:
            self._known = set(current)
            self._keys = sorted(self._known)
            return
        keys = self._keys
        for key in removed:
            at = bisect_left(keys, key)
            if at < len(keys) and keys[at] == key:
                del keys[at]
        for key in added:
            insort(keys, key)
        self._known -= removed
        self._known |= added

    def search(self, prefix: str, offset: int, limit: int) -> tuple[int, list[str]]:
        """How many keys start with `prefix` (lower-cased), and `limit` of them from `offset`."""
        prefix = prefix.lower()
        keys = self._keys
        low = bisect_left(keys, prefix)
        high = bisect_left(keys, prefix + _LAST, low) if prefix else len(keys)
        start = min(low + offset, high)
        return high - low, keys[start:min(start + limit, high)]

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"ServiceIndex({len(self._keys)} services, revision {self._revision})"
