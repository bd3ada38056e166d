"""Rate limits: per operation (§5.5) and per client, each a sliding 10 s window of 1 s buckets.

A call that would take a count over its limit is refused and not counted, so a refused call costs
the caller nothing and changes nothing.

  RateLimiter    one limit per operation (`register`, `get-leases`...), shared by every caller:
                 it protects the node.
  ClientLimiter  one limit per client of a family of endpoints (registry writes, discovery...):
                 it keeps one noisy caller from using up the operation's limit of everyone else.
                 A client is its address, or its token when the call carries one (`client_key`).
                 Windows are kept for at most `capacity` clients; the least recently seen is
                 forgotten beyond that (it starts again with an empty window: forgetting only
                 ever lets a call through sooner, it never refuses one).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Final

from artemis.core.window import SlidingWindow

__all__ = ["CLIENT_WINDOW_BYTES", "ClientLimiter", "RateLimiter", "client_key"]

# What one kept client window costs, measured with tracemalloc (tests/core/test_ratelimit.py
# keeps it honest): the window, its ten buckets, the key and the ordered dict's entry.
CLIENT_WINDOW_BYTES: Final = 600
_NAMED_PREFIX: Final = "token "  # never the start of an address


def client_key(address: str, token: str | None = None) -> str:
    """Who a call is counted against: the name of its token when it carries one (every address
    using the token shares it), else its address (the TCP peer without port)."""
    return _NAMED_PREFIX + token if token else address


class RateLimiter:
    """One limiter (for example `artemis.service.registry`) with a limit per identity."""

    __slots__ = ("_default", "_enabled", "_limits", "_name", "_window", "_windows", "rejected")

    def __init__(
        self,
        name: str,
        default_limit: int,
        limits: Mapping[str, int] | None = None,
        *,
        enabled: bool = True,
        window: float = 10.0,
    ) -> None:
        self._name = name
        self._default = default_limit
        self._limits = dict(limits or {})
        self._enabled = enabled
        self._window = window
        self._windows: dict[str, SlidingWindow] = {}
        self.rejected: dict[str, int] = {}

    def allow(self, identity: str, now: float) -> bool:
        """Count one call of `identity` at `now` if its limit allows it."""
        if not self._enabled:
            return True
        window = self._windows.get(identity)
        if window is None:
            window = self._windows[identity] = SlidingWindow(self._window)
        if window.admit(now, self._limits.get(identity, self._default)):
            return True
        self.rejected[identity] = self.rejected.get(identity, 0) + 1
        return False

    def limit(self, identity: str) -> int:
        return self._limits.get(identity, self._default)

    @property
    def enabled(self) -> bool:
        return self._enabled

    def __repr__(self) -> str:
        return (
            f"RateLimiter({self._name!r}, enabled={self._enabled}, default={self._default}, "
            f"limits={self._limits!r}, rejected={self.rejected!r})"
        )


class ClientLimiter:
    """The per-client limit of one family of endpoints (for example `registry`): at most `limit`
    calls per client in a sliding window, windows kept for at most `capacity` clients.

    `allow` is O(1): one ordered-dict lookup and move, one window update; a client seen for the
    first time allocates one window (and evicts the least recently seen one when full).
    `rejected` counts refusals by operation (not by client: their number is unbounded).
    """

    __slots__ = ("_capacity", "_enabled", "_limit", "_name", "_window", "_windows", "evicted",
                 "rejected")

    def __init__(self, name: str, limit: int, *, capacity: int = 16_384, enabled: bool = True,
                 window: float = 10.0) -> None:
        if capacity < 1:
            raise ValueError("a client limiter keeps at least one client")
        self._name = name
        self._limit = limit
        self._capacity = capacity
        self._enabled = enabled and limit > 0
        self._window = window
        self._windows: OrderedDict[str, SlidingWindow] = OrderedDict()
        self.rejected: dict[str, int] = {}
        self.evicted = 0

    def allow(self, client: str, operation: str, now: float) -> bool:
        """Count one call of `client` (to `operation`) at `now` if its limit allows it."""
        if not self._enabled:
            return True
        windows = self._windows
        window = windows.get(client)
        if window is None:
            if len(windows) >= self._capacity:
                windows.popitem(last=False)
                self.evicted += 1
            window = windows[client] = SlidingWindow(self._window)
        else:
            windows.move_to_end(client)
        if window.admit(now, self._limit):
            return True
        self.rejected[operation] = self.rejected.get(operation, 0) + 1
        return False

    def refund(self, client: str, now: float) -> None:
        """Take back the count of a call `allow` let through that was refused afterwards (by the
        operation's own limit): a refused call is never counted."""
        window = self._windows.get(client)
        if window is not None and window.total(now) > 0:
            window.add(now, -1)

    def count(self, client: str, now: float) -> int:
        """Calls of `client` in its window now (0 for a client not kept)."""
        window = self._windows.get(client)
        return 0 if window is None else window.total(now)

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._windows)

    def __repr__(self) -> str:
        return (f"ClientLimiter({self._name!r}, enabled={self._enabled}, limit={self._limit}, "
                f"clients={len(self._windows)}/{self._capacity}, evicted={self.evicted}, "
                f"rejected={self.rejected!r})")
