"""A node: the core objects of one registry process, and the loops that drive them.

The node owns the registry, its versions, the rate limiters and the node status. It hands every
change to whoever subscribed (push, metrics) and runs its background loops in one task group,
started and stopped by `running()`. The parts around it (cluster, management, push) are built
and registered by the composition root, `artemis.server.compose`; the node knows none of them.

Stop order, in `running()`: the closers registered with `on_close` run first, in the order they
were registered (the composition root writes it down), then the loops and tasks are cancelled,
newest first. Registered instances live in memory only; peers (when configured) hold the copies
that survive a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Hashable,
    Sequence,
)
from typing import Any, TypeVar

from artemis.clock import Clock, OffsetClock, SystemClock
from artemis.core.lease import SafeCheckerConfig
from artemis.core.node_status import DOWN, STARTING, UP, NodeState
from artemis.core.ownership import Mode
from artemis.core.ratelimit import ClientLimiter, RateLimiter
from artemis.core.registry import Registry, RegistryConfig
from artemis.core.versions import Change, Versions
from artemis.server.connections import ConnectionStats
from artemis.server.observability.collector import Collector
from artemis.server.observability.loop import LoopLag, StepTimes, drive_async, percentiles_ms
from artemis.server.settings import CLIENT_RATE_LIMIT_FAMILIES, Settings

# LoopLag, StepTimes, drive_async and percentiles_ms live in observability.loop; still
# importable from here.
__all__ = ["LoopLag", "Node", "Step", "StepTimes", "Subscriber", "Task", "drive_async",
           "percentiles_ms"]

log = logging.getLogger("artemis.node")

T = TypeVar("T")


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, where the C library has it (Linux with glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_malloc_trim = _find_malloc_trim()
Subscriber = Callable[[Sequence[Change]], None]
Step = Callable[[], Awaitable[None] | None]  # one run of a loop, plain or awaited
Task = Callable[[], Coroutine[object, None, None]]  # a task that runs while the node runs


def _safe_checker(settings: Settings, window: float) -> SafeCheckerConfig:
    return SafeCheckerConfig(
        enabled=settings.self_preservation,
        window=window,
        percentage_threshold=settings.self_preservation_percentage,
        max_count_threshold=settings.self_preservation_min_count,
        max_count_reset_interval=settings.self_preservation_reset_interval,
    )


class Node:
    """One registry node (see the module doc)."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or (OffsetClock(settings.wall_clock_offset)
                                      if settings.wall_clock_offset else SystemClock())
        self.started_mono = self.clock.monotonic()
        self.registry = Registry(RegistryConfig(
            region=settings.region,
            zone=settings.zone,
            lease_ttl=settings.lease_ttl,
            legacy_lease_ttl=settings.legacy_lease_ttl,
            max_lease_ttl=settings.max_lease_ttl,
            allow_registry_from_other_zone=settings.allow_registry_from_other_zone,
            safe_checker=_safe_checker(settings, settings.self_preservation_window),
            legacy_safe_checker=_safe_checker(settings, settings.legacy_self_preservation_window),
            change_log_size=settings.change_log_size,
            pause_threshold=settings.pause_threshold,
            change_log_bytes=settings.change_log_bytes,
            max_instances=settings.max_instances,
            max_services=settings.max_services,
            max_instances_per_client=settings.max_instances_per_client,
            max_services_per_client=settings.max_services_per_client,
            registration_mode=Mode(settings.registration_mode),
        ))
        self.versions = Versions(self.registry, settings.snapshot_count, self.clock.wall_ms())
        self.state = NodeState()
        self.limiters = {
            name: RateLimiter(f"artemis.service.{name}", settings.rate_limit(name),
                              settings.rate_limit_map(name), enabled=settings.rate_limit_enabled)
            for name in ("registry", "replication", "cluster", "status")
        }
        # Per client, per family of endpoints (discovery has no per-operation limit): peers'
        # calls (replication) are never limited per client.
        self.client_limiters = {
            name: ClientLimiter(f"artemis.client.{name}", settings.client_rate_limit(name),
                                capacity=settings.rate_limit_clients,
                                enabled=settings.rate_limit_enabled)
            for name in CLIENT_RATE_LIMIT_FAMILIES
        }
        self.lag = LoopLag()
        self.connections = ConnectionStats()  # counted by the runner's connection guard
        self.steps = StepTimes()
        self.collector: Collector | None = None  # the process's collector policy (runner.py)
        # Large registry batches run one at a time behind this gate (server/api/registry.py).
        self.batch_gate = asyncio.Lock()
        self._subscribers: list[Subscriber] = []
        self._loops: list[tuple[str, float, Step]] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[tuple[str, Task]] = []
        # This run's id: node.json answers carry it, so that a node polling a list of peers
        # that includes itself recognises its own answer.
        self.node_id = os.urandom(8).hex()
        # With peers (listed or from DNS) a starting node copies a peer's leases before it is
        # up (the cluster's bootstrap); alone, it is up as soon as it runs.
        self.bootstraps = bool(settings.peers or settings.peers_dns)
        self._holds: set[str] = set()  # what must be ready before the node is up
        self._up_pending = False
        self.snapshots_taken = 0
        # Large answers built one at a time and shared (build_shared).
        self._builds: dict[Hashable, asyncio.Future[Any]] = {}
        self._build_lock: asyncio.Lock | None = None
        self.shared_builds: dict[str, int] = {}  # requests answered by a build already under way
        self._trimmed_at = self.started_mono
        self._pauses_logged = 0

    # --- changes -------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` with every batch of changes, in revision order; returns an undo."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def publish(self, changes: Sequence[Change]) -> None:
        if not changes:
            return
        for subscriber in self._subscribers:
            try:
                subscriber(changes)
            except Exception:
                log.exception("a change subscriber failed; the others still get the changes")

    def add_loop(self, name: str, interval: float, step: Step) -> None:
        """Run `step` every `interval` seconds while the node runs (register before running)."""
        self._loops.append((name, interval, step))

    def add_task(self, name: str, run: Task) -> None:
        """Run `run()` as a task while the node runs (register before running)."""
        self._tasks.append((name, run))

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Await `closer` when the node starts to stop, before its loops end."""
        self._closers.append(closer)

    async def closing(self) -> None:
        """The node is stopping: let every part that holds connections close them."""
        for closer in self._closers:
            try:
                await closer()
            except Exception:
                log.exception("closing %s failed", closer)

    # --- status --------------------------------------------------------------------------

    def mark_up(self) -> None:
        """The registry is ready (at once for a single node, after its bootstrap in a
        cluster); the node is up as soon as nothing holds it (management data loading)."""
        if self._holds:
            self._up_pending = True
            return
        self._up_pending = False
        if self.state.status != UP:
            self.state = self.state.move(UP)

    @property
    def up_pending(self) -> bool:
        """The registry is ready but something still holds the node `starting`."""
        return self._up_pending

    def hold(self, reason: str) -> None:
        """Keep the node `starting` until `release(reason)`."""
        self._holds.add(reason)

    def release(self, reason: str) -> None:
        self._holds.discard(reason)
        if self._up_pending and not self._holds and self.state.status == STARTING:
            self.mark_up()

    def force(self, status: str) -> None:
        """An operator's override: `up`, `down`, or `auto` (a node that is down starts again
        and, in a cluster, bootstraps before it is up)."""
        if status == "up":
            self.state = self.state.move(UP)
        elif status == "down":
            self.state = self.state.move(DOWN)
            self._up_pending = False
        elif self.state.status == DOWN:
            self.state = self.state.move(STARTING)
            self._up_pending = False
            if not self.bootstraps:
                self.mark_up()
        log.warning("node status forced %s: now %s", status, self.state.status)

    async def build_shared(self, key: Hashable, build: Callable[[], Generator[None, None, T]],
                           name: str) -> T:
        """Run the chunked computation `build()` (through drive_async) with at most one such
        computation at a time on this node, so large answers never stack their work on the
        event loop; a call with the `key` of a computation queued or running waits for it and
        gets the same result (counted in `shared_builds[name]`). A caller that goes away does not
        stop the computation the others wait for."""
        task = self._builds.get(key)
        if task is None:
            task = asyncio.ensure_future(self._build_one(build, name))
            self._builds[key] = task
            task.add_done_callback(lambda done: self._built(key, done))
        else:
            self.shared_builds[name] = self.shared_builds.get(name, 0) + 1
        result: T = await asyncio.shield(task)
        return result

    def _built(self, key: Hashable, task: asyncio.Future[Any]) -> None:
        self._builds.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here too: every caller may have gone

    async def _build_one(self, build: Callable[[], Generator[None, None, T]], name: str) -> T:
        if self._build_lock is None:
            self._build_lock = asyncio.Lock()
        async with self._build_lock:
            return await drive_async(build(), self.steps, name)

    def allowed(self, limiter: str, identity: str, client: str | None = None,
                now: float | None = None) -> bool:
        """Whether a call to operation `identity` of `limiter`'s family may go on, counted if so
        (at `now`, the clock's time if None).

        `client` (core.ratelimit.client_key: the caller's address, or its token) is held to its
        own limit in the family first; None (peers, calls not limited per client) skips that.
        A call refused by either limit is counted by neither."""
        if now is None:
            now = self.clock.monotonic()
        per_client = None
        if client is not None:
            per_client = self.client_limiters.get(limiter)
            if per_client is not None and not per_client.allow(client, identity, now):
                return False
        per_operation = self.limiters.get(limiter)
        if per_operation is not None and not per_operation.allow(identity, now):
            if per_client is not None and client is not None:
                per_client.refund(client, now)
            return False
        return True

    # --- loops ---------------------------------------------------------------------------

    def sweep_once(self) -> None:
        self.publish(self.registry.sweep(self.clock.monotonic(), self.clock.wall_ms()))

    async def sweep_tick(self) -> None:
        """One run of the sweeper loop: it tells the registry the node runs (a longer gap than
        `pause_threshold` is the node's own pause, given back to the live leases), then sweeps,
        giving the event loop back every few thousand leases looked at."""
        self.registry.tick(self.clock.monotonic())
        pauses = self.registry.pauses
        if pauses.count != self._pauses_logged and pauses.last is not None:
            log.warning("the node itself did not run for %.1f s (stopped, stalled or starved): "
                        "%d live leases got the time back instead of expiring (pauses so far: %d)",
                        pauses.last.seconds, pauses.last.leases, pauses.count)
            self._pauses_logged = pauses.count
        self.publish(await drive_async(
            self.registry.sweeping(self.clock.monotonic(), self.clock.wall_ms()), self.steps,
            "sweep"))

    async def snapshot_once(self) -> None:
        # A snapshot's maps live on (until the next one): where the node runs its collector
        # policy they are frozen step by step as they are copied, so that the young passes
        # meanwhile do not walk them (64 maps of 100,000 services: 5-9 ms a pass).
        collector = self.collector
        snapshot = await drive_async(self.versions.build(self.clock.wall_ms()), self.steps,
                                     "snapshot", None if collector is None else collector.freeze)
        if snapshot is not None:
            self.snapshots_taken += 1
        self.trim_memory()

    def trim_memory(self) -> None:
        """Give memory freed by large answers back to the system, at most every 10 s.

        Deltas and whole snapshots of a large registry are tens of megabytes that live for one
        request; the C allocator keeps such freed blocks and the process's size only grows.
        """
        now = self.clock.monotonic()
        if _malloc_trim is None or now - self._trimmed_at < 10.0:
            return
        self._trimmed_at = now
        started, cpu = time.perf_counter(), time.thread_time()
        _malloc_trim(0)
        self.steps.record("trim", time.perf_counter() - started, time.thread_time() - cpu)

    async def _every(self, interval: float, step: Step) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                result = step()
                if result is not None:
                    await result
            except Exception:
                log.exception("background step %s failed; it runs again", step)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Node]:
        """Start the background loops; on exit run the closers, then stop the loops.

        Start: the node's own loops (lease sweeper, self-preservation, snapshotter), the loops
        and tasks the composition root registered (push sweeper, cluster, management), the loop
        lag timer; then the node is up (alone, or when forced), or waits for its bootstrap.
        Stop: 1. the closers, in the order they were registered (see `compose.build`);
        2. every loop and task cancelled, newest first, and awaited."""
        s = self.settings
        loops = [
            ("lease sweeper", s.sweep_interval, self.sweep_tick),
            ("self-preservation", 1.0, lambda: self.registry.check_safety(self.clock.monotonic())),
            ("snapshotter", s.snapshot_interval, self.snapshot_once),
            *self._loops,
        ]
        self.registry.tick(self.clock.monotonic())  # from now on a gap is the node's own pause
        tasks = [asyncio.create_task(self._every(interval, step), name=name)
                 for name, interval, step in loops]
        tasks.append(asyncio.create_task(self.lag.run(), name="loop lag"))
        tasks += [asyncio.create_task(run(), name=name) for name, run in self._tasks]
        gc.callbacks.append(self.steps.gc_callback)
        if s.force_status == "down":
            self.state = self.state.move(DOWN)
        elif s.force_status == "up" or not self.bootstraps:
            self.mark_up()
        try:
            yield self
        finally:
            await self.closing()  # 1. the parts close (they may still use the loops' state)
            for task in reversed(tasks):  # 2. then the loops and tasks end
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            gc.callbacks.remove(self.steps.gc_callback)

    def __repr__(self) -> str:
        return f"Node({self.settings.node_url!r}, {self.state.status}, {self.registry!r})"
