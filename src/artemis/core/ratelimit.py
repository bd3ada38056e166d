"""Rate limits per operation (§5.5): a sliding 10 s window of 1 s buckets per identity.

A call that would take an identity's count over its limit is refused and not counted, so a refused
call costs the caller nothing and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from artemis.core.window import SlidingWindow

__all__ = ["RateLimiter"]


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
        if window.total(now) >= self._limits.get(identity, self._default):
            self.rejected[identity] = self.rejected.get(identity, 0) + 1
            return False
        window.add(now)
        return True

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
