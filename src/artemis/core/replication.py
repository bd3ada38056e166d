"""Replication to one peer: a bounded queue of tasks, coalesced, retried with backoff, aged out.

Rules
  * One queue per peer. A task is one operation (register, heartbeat, unregister) of one
    instance, keyed by the instance: a newer task for the same instance replaces the queued one
    and keeps its place and its first submit time (so its age and time to live count from the
    first write), with one exception: a heartbeat never replaces a queued register (the register
    renews the lease there anyway). Keying by instance, not by (operation, instance), means a
    register and an unregister of one instance can never reach a peer out of order.
  * The queue holds at most `limit` tasks; when full, the oldest task is dropped. A task older
    than `ttl` is dropped when it would be sent. Both are counted.
  * `take(n, now)` hands out up to `n` tasks in queue order; the shell sends them, grouped by
    operation, and reports back with `done` (counted), `retry` (the task goes
    back to the front unless a newer one for the instance arrived meanwhile, or it has used its
    attempts) or `give_up`.
  * After a failed send the peer is backed off: exponential from `backoff`, doubled per
    consecutive failure up to `max_backoff`, with full jitter; `ready_at` says when to send
    again. One success resets it. A peer that is down therefore costs one request per backoff
    period, never a storm.
  * Writes that arrived by replication are never handed to a queue (the shell's rule); nothing
    here sees them.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from artemis.wire import ErrorCode, Instance

__all__ = [
    "HEARTBEAT",
    "OPERATIONS",
    "REGISTER",
    "UNREGISTER",
    "PeerQueue",
    "QueueConfig",
    "QueueStats",
    "Task",
    "instance_key",
    "retryable",
]

REGISTER: Final = "register"
HEARTBEAT: Final = "heartbeat"
UNREGISTER: Final = "unregister"
OPERATIONS: Final = (REGISTER, HEARTBEAT, UNREGISTER)

# The original's error mapping (§6.3): these codes will not change on a retry.
_PERMANENT: Final = frozenset({ErrorCode.BAD_REQUEST, ErrorCode.NO_PERMISSION,
                               ErrorCode.INTERNAL_SERVICE_ERROR, ErrorCode.SERVICE_UNAVAILABLE})


def retryable(code: str) -> bool:
    """Whether a failure with this Artemis error code is worth another attempt."""
    return code not in _PERMANENT


def instance_key(instance: Instance) -> str:
    """The identity of an instance inside one region: service and instance id, lower-case."""
    return f"{(instance.service_id or '').lower()}\x1f{(instance.instance_id or '').lower()}"


class Task(msgspec.Struct, gc=False):
    """One queued write of one instance. Never tracked by the garbage collector (it holds only
    strings, numbers and an Instance): a queue of 100,000 tasks for a peer that is down adds
    nothing to a collection."""

    operation: str
    instance: Instance | msgspec.Raw  # Raw: a renewal's JSON as the lease holds it, sent as is
    submitted: float  # monotonic seconds of the first write this task carries
    key: str  # instance_key of the instance
    attempts: int = 0
    owner: str = ""  # a register's: who owns the instance here (core/ownership.py)


@dataclass(frozen=True, slots=True)
class QueueConfig:
    limit: int = 100_000
    ttl: float = 10.0
    max_attempts: int = 5
    backoff: float = 0.05
    max_backoff: float = 5.0


@dataclass(slots=True)
class QueueStats:
    submitted: int = 0
    coalesced: int = 0
    sent: int = 0
    retried: int = 0
    dropped_overflow: int = 0
    dropped_expired: int = 0
    dropped_failed: int = 0
    send_failures: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_overflow + self.dropped_expired + self.dropped_failed


class PeerQueue:
    """The replication tasks waiting for one peer (rules in the module doc)."""

    def __init__(self, config: QueueConfig, rng: Callable[[], float] | None = None) -> None:
        self.config = config
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self.stats = QueueStats()
        self._random = rng or random.Random().random  # noqa: S311 - jitter, not secrets
        self.failures = 0  # consecutive failed sends
        self.ready_at = 0.0  # monotonic time before which nothing is sent (backoff)

    def __len__(self) -> int:
        return len(self._tasks)

    def submit(self, operation: str, instances: Sequence[Instance | msgspec.Raw], now: float,
               owners: Sequence[str] | None = None, keys: Sequence[str] | None = None) -> None:
        """Queue a write of `instances`; `owners` (a register's, aligned with `instances`) who
        owns each here, sent along so the peer holds the same owner; `keys` their instance
        keys, required when they are JSON already encoded (msgspec.Raw)."""
        tasks = self._tasks
        limit = self.config.limit
        coalesced = dropped = 0
        for n, instance in enumerate(instances):
            key = keys[n] if keys is not None else instance_key(instance)  # type: ignore[arg-type]
            queued = tasks.get(key)
            if queued is not None:
                coalesced += 1
                if not (operation == HEARTBEAT and queued.operation == REGISTER):
                    queued.operation = operation
                    queued.instance = instance
                    queued.owner = owners[n] if owners else ""
                queued.attempts = 0
                continue
            if len(tasks) >= limit:
                tasks.popitem(last=False)
                dropped += 1
            tasks[key] = Task(operation, instance, now, key, owner=owners[n] if owners else "")
        stats = self.stats
        stats.submitted += len(instances)
        stats.coalesced += coalesced
        stats.dropped_overflow += dropped

    def take(self, count: int, now: float) -> list[Task]:
        """Up to `count` tasks to send now, oldest first; expired tasks are dropped on the way."""
        tasks = self._tasks
        out: list[Task] = []
        deadline = now - self.config.ttl
        while tasks and len(out) < count:
            _, task = tasks.popitem(last=False)
            if task.submitted < deadline:
                self.stats.dropped_expired += 1
                continue
            out.append(task)
        return out

    def done(self, tasks: Sequence[Task]) -> None:
        self.stats.sent += len(tasks)

    def retry(self, tasks: Sequence[Task], now: float) -> None:
        """Put failed tasks back at the front (in their order) unless superseded or spent."""
        queued = self._tasks
        config = self.config
        back: list[tuple[str, Task]] = []
        for task in tasks:
            task.attempts += 1
            key = task.key
            newer = queued.get(key)
            if newer is not None:  # a newer write of this instance is queued: it wins...
                self.stats.coalesced += 1
                if newer.operation == HEARTBEAT and task.operation == REGISTER:
                    newer.operation = REGISTER  # ...but a heartbeat never stands for a register
                    newer.instance = task.instance
                    newer.owner = task.owner
                continue
            if task.attempts >= config.max_attempts or now - task.submitted > config.ttl:
                self.stats.dropped_failed += 1
                continue
            back.append((key, task))
            self.stats.retried += 1
        for key, task in reversed(back):
            queued[key] = task
            queued.move_to_end(key, last=False)
        while len(queued) > config.limit:
            queued.popitem(last=False)
            self.stats.dropped_overflow += 1

    def give_up(self, tasks: Sequence[Task]) -> None:
        self.stats.dropped_failed += len(tasks)

    def sent_ok(self) -> None:
        self.failures = 0
        self.ready_at = 0.0

    def send_failed(self, now: float) -> float:
        """Back the peer off after a failed send; returns the delay chosen."""
        self.failures += 1
        self.stats.send_failures += 1
        config = self.config
        ceiling: float = min(config.max_backoff, config.backoff * 2.0 ** min(self.failures - 1, 30))
        delay = ceiling * self._random()
        self.ready_at = now + delay
        return delay

    def clear(self) -> int:
        """Drop every queued task (the peer left the cluster or stopped serving)."""
        dropped = len(self._tasks)
        self._tasks.clear()
        self.stats.dropped_failed += dropped
        return dropped
