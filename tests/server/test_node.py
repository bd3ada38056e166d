"""The node shell: change subscribers, background loops, loop-lag summary."""

from __future__ import annotations

import asyncio

import pytest

from artemis.clock import FakeClock
from artemis.core.versions import Change
from artemis.server.node import LoopLag, Node, drive_async
from artemis.server.settings import Settings
from artemis.wire import Instance


def _instance(i: int, service: str = "svc") -> Instance:
    return Instance(instance_id=f"i{i}", service_id=service, url=f"http://10.0.0.{i}:80",
                    region_id="SHA")


def _node(**settings: object) -> tuple[Node, FakeClock]:
    clock = FakeClock()
    node = Node(Settings(region="SHA", **settings), clock)  # type: ignore[arg-type]
    node.mark_up()
    return node, clock


def test_subscribers_get_every_change_in_revision_order() -> None:
    """Each subscriber receives the batches of changes, in revision order."""
    node, clock = _node(lease_ttl=5.0)
    seen: list[tuple[int, str, str | None]] = []

    def record(changes: list[Change]) -> None:
        seen.extend((c.revision, c.kind, c.instance.instance_id) for c in changes)

    node.subscribe(record)  # type: ignore[arg-type]
    result = node.registry.register([_instance(1), _instance(2)], clock.monotonic(),
                                    clock.wall_ms())
    node.publish(result.changes)
    clock.advance(5.01)
    node.sweep_once()
    assert [(1, "new", "i1"), (2, "new", "i2"), (3, "delete", "i1"), (4, "delete", "i2")] == seen


def test_a_failing_subscriber_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    """A subscriber that raises is logged; the next subscriber still gets the changes."""
    node, clock = _node()
    got: list[int] = []

    def broken(changes: list[Change]) -> None:
        raise RuntimeError("boom")

    node.subscribe(broken)  # type: ignore[arg-type]
    node.subscribe(lambda changes: got.extend(c.revision for c in changes))
    result = node.registry.register([_instance(1)], clock.monotonic(), clock.wall_ms())
    node.publish(result.changes)
    assert [1] == got
    assert ["a change subscriber failed; the others still get the changes"] == [
        r.getMessage() for r in caplog.records]


def test_unsubscribe_stops_delivery() -> None:
    """The function subscribe returns removes the subscriber."""
    node, clock = _node()
    got: list[int] = []
    undo = node.subscribe(lambda changes: got.extend(c.revision for c in changes))
    node.publish(node.registry.register([_instance(1)], clock.monotonic(), 0).changes)
    undo()
    node.publish(node.registry.register([_instance(2)], clock.monotonic(), 0).changes)
    assert [1] == got


async def test_snapshot_once_takes_a_version_only_after_a_change() -> None:
    """The snapshotter adds a version when the registry changed, and none when it did not."""
    node, clock = _node()
    first = node.versions.versions
    await node.snapshot_once()
    assert first == node.versions.versions
    node.registry.register([_instance(1)], clock.monotonic(), clock.wall_ms())
    clock.advance(1)
    await node.snapshot_once()
    assert [*first, clock.wall_ms()] == node.versions.versions
    assert 1 == node.snapshots_taken


async def test_running_starts_the_loops_and_expires_leases() -> None:
    """Inside running() the node is up and its sweeper removes an expired lease by itself."""
    node = Node(Settings(region="SHA", lease_ttl=1.0, sweep_interval=0.01,
                         self_preservation=False))
    async with node.running():
        assert "up" == node.state.status
        clock = node.clock
        node.registry.register([_instance(1)], clock.monotonic(), clock.wall_ms())
        deadline = asyncio.get_running_loop().time() + 5
        while node.registry.instance_count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert 0 == node.registry.instance_count
        assert 1 == node.registry.evicted_total


async def test_drive_async_returns_the_generator_result() -> None:
    """drive_async runs a chunked computation to its end and returns its value."""

    def chunks() -> object:
        yield
        yield
        return 42

    assert 42 == await drive_async(chunks())  # type: ignore[arg-type]


def test_loop_lag_summary_of_samples() -> None:
    """The lag summary reports percentiles of the kept samples in milliseconds."""
    lag = LoopLag()
    assert {"samples": 0, "p50Ms": 0.0, "p99Ms": 0.0, "maxMs": 0.0, "maxEverMs": 0.0} == \
        lag.summary()
    for i in range(100):
        lag.samples.append((0.0, i / 1000))
    lag.max_lag = 0.099
    assert {"samples": 100, "p50Ms": 50.0, "p99Ms": 99.0, "maxMs": 99.0, "maxEverMs": 99.0} == \
        lag.summary()
