"""Replication to one peer: coalescing, bounds, time to live, retries, backoff, error mapping."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

from collections import OrderedDict
from dataclasses import astuple
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artemis.core.replication import (
    HEARTBEAT,
    OPERATIONS,
    REGISTER,
    UNREGISTER,
    PeerQueue,
    QueueConfig,
    QueueStats,
    Task,
    instance_key,
    retryable,
)
from artemis.wire import Instance

T0 = 1000.0


def task(operation: str, instance: Instance, submitted: float, attempts: int = 0,
         owner: str = "") -> Task:
    """The task the queue holds for a write of `instance`."""
    return Task(operation, instance, submitted, instance_key(instance), attempts, owner)


def inst(service: str = "svc", instance: str = "i1", **fields: Any) -> Instance:
    values: dict[str, Any] = {
        "region_id": "default", "zone_id": "default", "service_id": service,
        "instance_id": instance, "ip": "10.0.0.1", "port": 8080,
        "url": f"http://10.0.0.1:8080/{instance}",
    }
    values.update(fields)
    return Instance(**values)


def queue(rng: float | None = 1.0, **config: Any) -> PeerQueue:
    """A queue with a fixed jitter (1.0: the full backoff) and small limits by default."""
    values: dict[str, Any] = {"limit": 100, "ttl": 10.0, "max_attempts": 3, "backoff": 0.25,
                              "max_backoff": 3.0}
    values.update(config)
    return PeerQueue(QueueConfig(**values), rng=None if rng is None else (lambda: rng))


def drain(q: PeerQueue, now: float = T0) -> list[Task]:
    """Everything queued, in queue order (taking it out)."""
    return q.take(len(q) + 1, now)


A, B, C, D = inst(instance="a"), inst(instance="b"), inst(instance="c"), inst(instance="d")


# --- submit and coalescing ---------------------------------------------------------------------


def test_tasks_are_taken_in_submit_order() -> None:
    """Each operation of an instance becomes one task, handed out oldest first."""
    q = queue()
    q.submit(REGISTER, [A, B], T0)
    q.submit(HEARTBEAT, [C], T0 + 1)
    q.submit(UNREGISTER, [D], T0 + 2)
    assert 4 == len(q)
    assert [task(REGISTER, A, T0), task(REGISTER, B, T0), task(HEARTBEAT, C, T0 + 1),
            task(UNREGISTER, D, T0 + 2)] == drain(q)
    assert (QueueStats(submitted=4), 0) == (q.stats, len(q))


def test_a_newer_write_replaces_the_queued_one_keeping_place_and_submit_time() -> None:
    """A newer task of an instance (ids in any case) replaces the queued one in its place."""
    q = queue()
    first = inst("Svc", "I-1")
    later = inst("SVC", "i-1", port=9090)
    q.submit(REGISTER, [first], T0)
    q.submit(REGISTER, [B], T0 + 1)
    q.submit(UNREGISTER, [later], T0 + 2)
    assert [task(UNREGISTER, later, T0), task(REGISTER, B, T0 + 1)] == drain(q)
    assert QueueStats(submitted=3, coalesced=1) == q.stats


@pytest.mark.parametrize(("first", "second", "kept"), [
    (REGISTER, HEARTBEAT, REGISTER),  # the register renews the lease there anyway
    (REGISTER, UNREGISTER, UNREGISTER),
    (REGISTER, REGISTER, REGISTER),
    (UNREGISTER, REGISTER, REGISTER),
    (UNREGISTER, HEARTBEAT, HEARTBEAT),
    (UNREGISTER, UNREGISTER, UNREGISTER),
    (HEARTBEAT, REGISTER, REGISTER),
    (HEARTBEAT, UNREGISTER, UNREGISTER),
    (HEARTBEAT, HEARTBEAT, HEARTBEAT),
])
def test_coalescing_keeps_the_last_write_except_heartbeat_over_register(
        first: str, second: str, kept: str) -> None:
    """The later operation (and its data) wins, except a heartbeat never replaces a register."""
    q = queue()
    old, new = inst(port=1), inst(port=2)
    q.submit(first, [old], T0)
    q.submit(second, [new], T0 + 1)
    data = old if (first, second) == (REGISTER, HEARTBEAT) else new
    assert [task(kept, data, T0)] == drain(q)
    assert QueueStats(submitted=2, coalesced=1) == q.stats


def test_heartbeats_after_a_register_keep_the_register() -> None:
    """Any number of heartbeats after a queued register leave the register and its data."""
    q = queue()
    q.submit(REGISTER, [inst(port=1)], T0)
    for n in range(3):
        q.submit(HEARTBEAT, [inst(port=10 + n)], T0 + n)
    assert [task(REGISTER, inst(port=1), T0)] == drain(q)


def test_a_register_carries_its_owner_through_coalescing_and_retries() -> None:
    """A register's owner rides with it: a later register replaces it with its own, heartbeats
    after it keep it, and a failed send put back under a newer heartbeat keeps it too."""
    q = queue()
    q.submit(REGISTER, [A, B], T0, ["team-a", "10.0.0.9"])
    q.submit(HEARTBEAT, [A], T0 + 1)
    q.submit(REGISTER, [B], T0 + 2, ["team-b"])
    assert [task(REGISTER, A, T0, owner="team-a"), task(REGISTER, B, T0, owner="team-b")] == (
        drain(q))
    q.submit(REGISTER, [C], T0, ["team-c"])
    taken = q.take(10, T0)
    q.submit(HEARTBEAT, [C], T0 + 1)
    q.retry(taken, T0 + 1)
    assert [task(REGISTER, C, T0 + 1, attempts=0, owner="team-c")] == drain(q)


def test_coalesced_task_ages_from_its_first_write() -> None:
    """A task's time to live counts from the first write it carries, not the latest."""
    q = queue(ttl=10.0)
    q.submit(REGISTER, [A], T0)
    q.submit(REGISTER, [B], T0 + 5)
    q.submit(UNREGISTER, [A], T0 + 9)
    assert [task(REGISTER, B, T0 + 5)] == q.take(10, T0 + 10.5)
    assert QueueStats(submitted=3, coalesced=1, dropped_expired=1) == q.stats


def test_a_new_write_gives_a_retried_task_fresh_attempts() -> None:
    """A write coalesced into a task that failed before starts its attempts again."""
    q = queue(max_attempts=3)
    q.submit(REGISTER, [A], T0)
    for _ in range(2):
        q.retry(q.take(1, T0), T0)
    q.submit(UNREGISTER, [A], T0 + 1)
    assert [task(UNREGISTER, A, T0, 0)] == drain(q)


# --- limit ---------------------------------------------------------------------------------------


def test_a_full_queue_drops_its_oldest_task() -> None:
    """At `limit` tasks a new instance's task pushes the oldest out, counted as overflow."""
    q = queue(limit=2)
    q.submit(REGISTER, [A, B, C], T0)
    q.submit(HEARTBEAT, [D], T0 + 1)
    assert [task(REGISTER, C, T0), task(HEARTBEAT, D, T0 + 1)] == drain(q)
    assert QueueStats(submitted=4, dropped_overflow=2) == q.stats


def test_coalescing_into_a_full_queue_drops_nothing() -> None:
    """A write of an instance already queued takes no room, so nothing overflows."""
    q = queue(limit=2)
    q.submit(REGISTER, [A, B], T0)
    q.submit(UNREGISTER, [A], T0 + 1)
    assert [task(UNREGISTER, A, T0), task(REGISTER, B, T0)] == drain(q)
    assert QueueStats(submitted=3, coalesced=1) == q.stats


# --- take ----------------------------------------------------------------------------------------


def test_take_hands_out_at_most_count_in_queue_order() -> None:
    """take(n) returns the n oldest tasks and leaves the rest queued in order."""
    q = queue()
    q.submit(REGISTER, [A, B, C], T0)
    assert ([task(REGISTER, A, T0), task(REGISTER, B, T0)], 1) == (q.take(2, T0), len(q))
    assert [task(REGISTER, C, T0)] == q.take(5, T0)
    assert ([], 0) == (q.take(5, T0), len(q))


def test_take_drops_tasks_older_than_ttl_on_the_way() -> None:
    """Tasks older than ttl are dropped (counted) on the way; one exactly ttl old is sent."""
    q = queue(ttl=10.0)
    q.submit(REGISTER, [A], T0)
    q.submit(REGISTER, [B], T0 + 1)
    q.submit(REGISTER, [C], T0 + 2)
    assert [task(REGISTER, B, T0 + 1)] == q.take(1, T0 + 11)
    assert ([task(REGISTER, C, T0 + 2)], QueueStats(submitted=3, dropped_expired=1)) == (
        drain(q, T0 + 11), q.stats)


def test_done_counts_sent_tasks() -> None:
    """Tasks reported done are counted as sent."""
    q = queue()
    q.submit(REGISTER, [A, B], T0)
    q.done(q.take(2, T0))
    assert (QueueStats(submitted=2, sent=2), 0) == (q.stats, len(q))


# --- retry and give_up ---------------------------------------------------------------------------


def test_retry_puts_tasks_back_at_the_front_in_their_order() -> None:
    """Failed tasks go back before everything queued, in the order they were taken."""
    q = queue()
    q.submit(REGISTER, [A, B, C], T0)
    failed = q.take(2, T0)
    q.submit(HEARTBEAT, [D], T0 + 1)
    q.retry(failed, T0 + 1)
    assert [task(REGISTER, A, T0, 1), task(REGISTER, B, T0, 1), task(REGISTER, C, T0),
            task(HEARTBEAT, D, T0 + 1)] == drain(q, T0 + 1)
    assert QueueStats(submitted=4, retried=2) == q.stats


def test_retry_skips_a_task_superseded_by_a_newer_queued_write() -> None:
    """A failed task whose instance was written again meanwhile is dropped: the newer one wins."""
    q = queue()
    q.submit(REGISTER, [A, B], T0)
    failed = q.take(2, T0)
    q.submit(UNREGISTER, [inst(instance="A")], T0 + 1)
    q.retry(failed, T0 + 1)
    assert [task(REGISTER, B, T0, 1), task(UNREGISTER, inst(instance="A"), T0 + 1)] == drain(
        q, T0 + 1)
    assert QueueStats(submitted=3, coalesced=1, retried=1) == q.stats


def test_retry_keeps_a_failed_register_over_a_heartbeat_queued_meanwhile() -> None:
    """A heartbeat queued while a register was in flight does not make the register's retry void."""
    q = queue()
    registered = inst(port=1)
    q.submit(REGISTER, [registered], T0)
    failed = q.take(1, T0)
    q.submit(HEARTBEAT, [inst(port=1)], T0 + 1)
    q.retry(failed, T0 + 1)
    # where the register lands (its place, its submit time) is the fix's choice: check what is sent
    assert [(REGISTER, registered)] == [(t.operation, t.instance) for t in drain(q, T0 + 1)]


def test_retry_drops_a_task_after_max_attempts() -> None:
    """A task is sent at most max_attempts times; the last failure drops it as failed."""
    q = queue(max_attempts=3)
    q.submit(REGISTER, [A], T0)
    sent = []
    while len(q):
        taken = q.take(1, T0)
        sent += taken
        q.retry(taken, T0)
    assert ([task(REGISTER, A, T0, 3)] * 3, QueueStats(submitted=1, retried=2, dropped_failed=1)) \
        == (sent, q.stats)


@pytest.mark.parametrize(("now", "kept"), [(T0 + 10.0, True), (T0 + 10.001, False)])
def test_retry_drops_a_task_older_than_ttl(now: float, kept: bool) -> None:
    """A failed task more than ttl after its first write is dropped as failed, not retried."""
    q = queue(ttl=10.0)
    q.submit(REGISTER, [A], T0)
    q.retry(q.take(1, T0), now)
    expected = (([task(REGISTER, A, T0, 1)], QueueStats(submitted=1, retried=1)) if kept
                else ([], QueueStats(submitted=1, dropped_failed=1)))
    assert expected == (drain(q, T0), q.stats)


def test_retry_into_a_full_queue_drops_the_oldest() -> None:
    """Retried tasks that overfill the queue are dropped from the front as overflow."""
    q = queue(limit=2)
    q.submit(REGISTER, [A, B], T0)
    failed = q.take(1, T0)
    q.submit(REGISTER, [C], T0 + 1)
    q.retry(failed, T0 + 1)
    assert [task(REGISTER, B, T0), task(REGISTER, C, T0 + 1)] == drain(q, T0 + 1)
    assert QueueStats(submitted=3, retried=1, dropped_overflow=1) == q.stats


def test_give_up_counts_tasks_as_failed() -> None:
    """Tasks given up (a permanent error) are dropped and counted as failed."""
    q = queue()
    q.submit(REGISTER, [A, B], T0)
    q.give_up(q.take(2, T0))
    assert (QueueStats(submitted=2, dropped_failed=2), 0) == (q.stats, len(q))


def test_clear_drops_everything_queued() -> None:
    """clear() empties the queue, counts the tasks as failed and says how many there were."""
    q = queue()
    q.submit(REGISTER, [A, B, C], T0)
    assert (3, 0, QueueStats(submitted=3, dropped_failed=3)) == (q.clear(), len(q), q.stats)
    assert (0, []) == (q.clear(), drain(q))


def test_dropped_is_the_sum_of_every_drop() -> None:
    """stats.dropped adds overflow, expired and failed drops."""
    assert 7 == QueueStats(dropped_overflow=1, dropped_expired=2, dropped_failed=4).dropped


# --- backoff -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("jitter", "delays"), [
    (1.0, [0.25, 0.5, 1.0, 2.0, 3.0, 3.0]),
    (0.5, [0.125, 0.25, 0.5, 1.0, 1.5, 1.5]),
])
def test_send_failed_backs_off_exponentially_up_to_max_backoff(
        jitter: float, delays: list[float]) -> None:
    """Delay n is backoff * 2^(n-1), capped at max_backoff, times the jitter; ready_at follows."""
    q = queue(rng=jitter, backoff=0.25, max_backoff=3.0)
    got = []
    for n in range(len(delays)):
        now = T0 + n
        got.append((q.send_failed(now), q.ready_at, q.failures))
    assert [(d, T0 + n + d, n + 1) for n, d in enumerate(delays)] == got
    assert QueueStats(send_failures=len(delays)) == q.stats


def test_sent_ok_resets_the_backoff() -> None:
    """One success clears the failures and ready_at; the next failure starts from `backoff`."""
    q = queue(rng=1.0, backoff=0.25, max_backoff=3.0)
    for n in range(4):
        q.send_failed(T0 + n)
    q.sent_ok()
    assert (0, 0.0) == (q.failures, q.ready_at)
    assert (0.25, T0 + 10.25, 1) == (q.send_failed(T0 + 10), q.ready_at, q.failures)


def test_backoff_stays_capped_after_very_many_failures() -> None:
    """Thousands of consecutive failures keep the delay at max_backoff (no float overflow)."""
    q = queue(rng=1.0, backoff=0.25, max_backoff=3.0)
    delays = {q.send_failed(T0) for _ in range(2000)}
    assert ({0.25, 0.5, 1.0, 2.0, 3.0}, 2000) == (delays, q.failures)


def test_default_jitter_stays_within_the_ceiling() -> None:
    """Without an injected rng the delay is a random fraction of the current ceiling."""
    q = queue(rng=None, backoff=0.25, max_backoff=3.0)
    first = q.send_failed(T0)
    assert (True, T0 + first) == (0.0 <= first <= 0.25, q.ready_at)


def test_queue_config_defaults() -> None:
    """The defaults: 100 000 tasks, 10 s ttl, 5 attempts, backoff 50 ms up to 5 s."""
    assert (100_000, 10.0, 5, 0.05, 5.0) == astuple(QueueConfig())


# --- error mapping and keys ----------------------------------------------------------------------


@pytest.mark.parametrize(("code", "expected"), [
    ("bad-request", False),
    ("no-permission", False),
    ("internal-service-error", False),
    ("service-unavailable", False),
    ("rate-limited", True),
    ("unknown", True),
    ("data-not-found", True),
    ("", True),
])
def test_retryable_follows_the_originals_error_mapping(code: str, expected: bool) -> None:
    """bad-request, no-permission, internal-service-error, service-unavailable are permanent."""
    assert expected == retryable(code)


@pytest.mark.parametrize(("instance", "key"), [
    (inst("Svc.A", "Inst-1"), "svc.a\x1finst-1"),
    (inst("svc.a", "INST-1", region_id="other", port=1), "svc.a\x1finst-1"),
    (Instance(), "\x1f"),
    (inst("a\x1fb", "c"), "a\x1fb\x1fc"),
])
def test_instance_key_is_service_and_instance_id_lower_case(instance: Instance, key: str) -> None:
    """An instance's key is `service\\x1finstance`, lower-case; missing ids are empty."""
    assert key == instance_key(instance)


def test_operations_are_register_heartbeat_unregister() -> None:
    """The three replicated operations, by their endpoint names."""
    assert ("register", "heartbeat", "unregister") == OPERATIONS


# --- property ------------------------------------------------------------------------------------

IDS = ["a", "A", "b", "c", "C", "d"]
SUBMITS = st.lists(st.tuples(st.sampled_from(OPERATIONS), st.sampled_from(IDS),
                             st.integers(0, 3)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(SUBMITS, st.integers(1, 5))
def test_queue_holds_one_task_per_instance_with_its_last_operation(
        submits: list[tuple[str, str, int]], limit: int) -> None:
    """At most one task per instance and `limit` in all, each with the last operation submitted
    for it since it entered the queue, except that heartbeats after a register leave register."""
    q = queue(limit=limit)
    model: OrderedDict[str, tuple[str, Instance, float]] = OrderedDict()
    for n, (operation, ident, port) in enumerate(submits):
        instance = inst(instance=ident, port=port)
        now = T0 + n * 0.01
        q.submit(operation, [instance], now)
        key = ident.lower()
        if key in model:
            kept, _, first = model[key]
            if not (operation == HEARTBEAT and kept == REGISTER):
                model[key] = (operation, instance, first)
        else:
            if len(model) >= limit:
                model.popitem(last=False)
            model[key] = (operation, instance, now)
        assert len(q) <= limit
    tasks = drain(q)
    keys = [instance_key(t.instance) for t in tasks]
    assert len(keys) == len(set(keys)) <= limit
    assert [task(op, instance, first) for op, instance, first in model.values()] == tasks
    # every submit either coalesced or made a task that is still queued or overflowed
    assert len(submits) == q.stats.submitted == (q.stats.coalesced + q.stats.dropped_overflow
                                                 + len(tasks))
