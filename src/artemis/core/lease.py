"""Leases and self-preservation.

Rules of a lease
  * A lease is created by register with `renewed = now`; heartbeat sets `renewed = now`.
  * It is expired when `now > renewed + ttl`; an expired lease cannot be renewed (the client must
    register again) and is removed by the sweeper unless self-preservation holds it.
  * Instances whose metadata carries a non-blank `java_registry` get the legacy lease
    (90 s by default) and their own self-preservation state, as in the original.
  * An instance may state its own lease duration in its metadata, `artemis.lease_ttl` (seconds,
    a positive number; the Eureka API stores a client's `leaseInfo.durationInSecs` there): its
    lease then lasts that long, at least 1 s and at most `max_lease_ttl`, whatever the node's
    `lease_ttl`; expiry, self-preservation (normal or legacy, by `java_registry`) and the
    pause credit are otherwise the same. Peers compute the same duration from the same data.

Rules of self-preservation (the original's LeaseUpdateSafeChecker, §5.2, with one fix)
  * Renewals are counted over a sliding window (10 s to 300 s, whole seconds, 1 s buckets).
  * Once a second, `check` compares the window's count with the highest count seen (`max_count`):
      - a count above `max_count` raises it and decides nothing;
      - below `max_count_threshold` (50) nothing is decided;
      - under `percentage_threshold` % (85) of `max_count` the state becomes UNSAFE: expired
        leases are kept, since more likely the network failed than most instances died at once;
      - otherwise SAFE; a `max_count` older than `max_count_reset_interval` then drops to the count.
  * The fix: when an instance leaves (unregister, or eviction while safe) `max_count` shrinks by
    that instance's share, `max_count * 1/n` for n leases before it left, so the baseline follows
    the fleet down instead of staying at its peak until the reset interval (Eureka's complaint).
    For one window after a departure the baseline is not raised again, because the window still
    counts renewals of the instance that left.
  * Turning the check off makes the state SAFE and resets `max_count`; so does turning it on.

Rules of the node's own pauses (PauseWatch)
  * Self-preservation judges the clients; a pause of the node itself (SIGSTOP, a VM stall, a
    frozen event loop) is not their silence: nobody could renew while the node was not running.
  * The node's own loop (the sweeper, every `sweep_interval`) ticks the watch with monotonic time.
    A tick, or any operation that decides on expiry (sweep, heartbeat), that finds more than
    `threshold` seconds since the last tick has found a pause: the gap runs from that tick to now.
  * Every lease that was live when the pause began gets the gap back: `renewed += gap`, so it
    has exactly the time left that it had when the node stopped looking, and its client gets a
    fair chance to heartbeat again. A lease that had expired before the pause gets nothing.
  * A lease gets this credit only if it was renewed (or registered) since the previous pause
    ended, so a silent instance is credited at most once: a node that keeps stalling still
    evicts dead instances, one gap after their deadline at the latest.
  * Until the first tick nothing is a pause (a node that does not run its loops, and tests that
    move a fake clock by hand, expire leases by the clock alone); a threshold of 0 turns it off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from artemis.core.window import SlidingWindow

__all__ = ["Pause", "PauseWatch", "SafeChecker", "SafeCheckerConfig", "SafeCheckerStatus"]


@dataclass(frozen=True, slots=True)
class SafeCheckerConfig:
    enabled: bool = True
    window: float = 10.0
    percentage_threshold: int = 85
    max_count_threshold: int = 50
    max_count_reset_interval: float = 600.0

    def corrected(self) -> SafeCheckerConfig:
        """Values outside the original's ranges, corrected as the original corrects them."""
        window = float(min(300, max(10, int(self.window))))
        pct = self.percentage_threshold if 50 <= self.percentage_threshold <= 100 else 85
        return SafeCheckerConfig(
            enabled=self.enabled,
            window=window,
            percentage_threshold=pct,
            max_count_threshold=max(0, self.max_count_threshold),
            max_count_reset_interval=max(60.0, self.max_count_reset_interval),
        )


@dataclass(frozen=True, slots=True)
class SafeCheckerStatus:
    is_safe: bool
    enabled: bool
    count_last_window: int
    max_count: int
    max_count_updated_at: float  # monotonic seconds; the shell turns it into wall time


class SafeChecker:
    """Self-preservation state of one lease manager (normal or legacy)."""

    __slots__ = ("_blocked_until", "_cfg", "_max", "_max_at", "_renewals", "_safe")

    def __init__(self, config: SafeCheckerConfig) -> None:
        self._cfg = config.corrected()
        self._renewals = SlidingWindow(self._cfg.window)
        self._safe = True
        self._max = 0
        self._max_at = 0.0
        self._blocked_until = 0.0

    @property
    def is_safe(self) -> bool:
        return self._safe or not self._cfg.enabled

    @property
    def enabled(self) -> bool:
        return self._cfg.enabled

    def renewed(self, now: float, n: int = 1) -> None:
        self._renewals.add(now, n)

    def set_enabled(self, enabled: bool) -> None:
        """The runtime switch; either way the baseline starts again from zero."""
        self._cfg = SafeCheckerConfig(
            enabled=enabled,
            window=self._cfg.window,
            percentage_threshold=self._cfg.percentage_threshold,
            max_count_threshold=self._cfg.max_count_threshold,
            max_count_reset_interval=self._cfg.max_count_reset_interval,
        )
        self._max = 0
        self._safe = True

    def departed(self, now: float, leases_before: int) -> None:
        """One instance left a fleet of `leases_before`: shrink the baseline by its share."""
        if leases_before > 0:
            self._max = self._max * (leases_before - 1) // leases_before
            self._blocked_until = now + self._cfg.window

    def check(self, now: float) -> None:
        """The once-a-second decision (rules above)."""
        count = self._renewals.total(now)
        if count > self._max:
            if now >= self._blocked_until:
                self._max = count
                self._max_at = now
            return
        if self._max < self._cfg.max_count_threshold:
            return
        if count * 100 < self._cfg.percentage_threshold * self._max:
            self._safe = False
            return
        self._safe = True
        if now - self._max_at > self._cfg.max_count_reset_interval:
            self._max = count
            self._max_at = now

    def status(self, now: float) -> SafeCheckerStatus:
        return SafeCheckerStatus(
            is_safe=self.is_safe,
            enabled=self._cfg.enabled,
            count_last_window=self._renewals.total(now),
            max_count=self._max,
            max_count_updated_at=self._max_at,
        )

    def __repr__(self) -> str:
        return f"SafeChecker(safe={self.is_safe}, enabled={self._cfg.enabled}, max={self._max})"


@dataclass(frozen=True, slots=True)
class Pause:
    """One pause of the node itself, as found (monotonic seconds)."""

    started: float  # the last tick before it
    seconds: float  # the gap credited to the live leases
    leases: int  # how many leases got it back


class PauseWatch:
    """Tells the node's own pauses from its clients' silence (rules in the module doc)."""

    __slots__ = ("count", "deadline", "last", "resumed", "seconds_total", "threshold")

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.deadline = math.inf  # a decision at a later time has found a pause
        self.resumed = -math.inf  # when the previous pause was found
        self.count = 0
        self.seconds_total = 0.0
        self.last: Pause | None = None

    def tick(self, now: float) -> float:
        """The node's own loop runs at `now`: the gap of a pause it ends (0.0 when none)."""
        gap = self.missed(now)
        if self.threshold > 0:
            self.deadline = now + self.threshold
        return gap

    def missed(self, now: float) -> float:
        """The gap of a pause found at `now` (0.0 when none); `credit` must follow a gap."""
        if now <= self.deadline:
            return 0.0
        gap = now - (self.deadline - self.threshold)
        self.deadline = now + self.threshold
        return gap

    def credit(self, renewed: float, ttl: float, now: float, gap: float) -> float | None:
        """The new renewal time of a lease for the gap found at `now`; None: no credit."""
        if renewed < self.resumed or renewed + ttl < now - gap:
            return None  # credited before and silent since, or expired before the pause
        # just below `now`: a renewal at or after `now` is what earns the next credit
        return min(renewed + gap, math.nextafter(now, -math.inf))

    def credited(self, now: float, gap: float, leases: int) -> Pause:
        """Record the pause found at `now` once its credit is handed out."""
        self.resumed = now
        self.count += 1
        self.seconds_total += gap
        self.last = Pause(now - gap, gap, leases)
        return self.last

    def __repr__(self) -> str:
        return f"PauseWatch(threshold={self.threshold}, count={self.count})"
