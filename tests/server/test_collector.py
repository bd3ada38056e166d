"""The collector policy against CPython's real collector: survivors of a middle pass are frozen
(a full pass no longer walks them), and a thaw walks everything once."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from artemis.core.versions import SHARDS
from artemis.server.observability.collector import Collector
from tests.server.harness import OK_BODY, Api, instance


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector()
    try:
        yield collector
    finally:
        collector.uninstall()
        gc.unfreeze()  # this test process's objects go back to the collector
        gc.collect()


def test_a_middle_pass_freezes_its_survivors_until_a_thaw(collector: Collector) -> None:
    collector.install()
    cycle = Cycle()
    dead = weakref.ref(cycle)
    gc.collect(1)  # the cycle is alive: it survives this pass and is frozen
    frozen = gc.get_freeze_count()
    freezes = collector.freezes
    del cycle
    gc.collect()  # a full pass does not walk frozen objects: the dead cycle stays
    kept = dead() is not None
    collector.thaw()
    assert (True, True, True, None, 1, True) == (
        kept, freezes >= 1, frozen > 0, dead(), collector.thaws,
        collector.last_thaw_collected >= 1), collector.summary()


def test_without_install_nothing_is_frozen(collector: Collector) -> None:
    gc.unfreeze()
    cycle = Cycle()
    dead = weakref.ref(cycle)
    gc.collect(1)
    del cycle
    gc.collect()
    assert (0, None, 0) == (gc.get_freeze_count(), dead(), collector.freezes)


async def test_a_snapshot_is_frozen_as_it_is_built(api: Api, collector: Collector) -> None:
    """Where the node runs the policy, each step of a snapshot's build freezes what lives
    (its maps are copies that live until the next snapshot): no young pass walks them."""
    api.node.collector = collector
    try:
        assert OK_BODY == await api.register(instance())
        before = collector.freezes
        await api.node.snapshot_once()
        services = api.node.versions.current.services
        assert services is not None
        walked = [m for generation in (0, 1, 2) for o in gc.get_objects(generation)
                  for m in services if o is m]
        assert ([], True) == (walked, collector.freezes - before >= SHARDS // 8)
    finally:
        api.node.collector = None
