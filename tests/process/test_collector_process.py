"""The node's collector policy in a real process: survivors frozen, thawed on schedule, and
push sessions unharmed by either."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.process.conftest import RunningNode, StartNode
from tests.process.test_push_process import (
    change,
    get,
    instance,
    next_frame,
    post,
    subscribe,
    until,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets")


async def metrics(node: RunningNode) -> str:
    async with httpx.AsyncClient(base_url=node.url, timeout=5) as client:
        return (await client.get("/metrics")).text


async def test_sessions_live_through_freezes_and_thaws(start_node: StartNode) -> None:
    """With a thaw every half second, twenty subscribers opened before two thaws still each get
    the registration made after them, and the node reports what it froze."""
    node = start_node("--gc-thaw-interval", "0.5")
    sessions = [await subscribe(node) for _ in range(20)]
    try:
        async def thawed_twice() -> dict[str, int] | None:
            collector: dict[str, int] = (await get(node, "/api/status/runtime.json"))["collector"]
            return collector if collector["thaws"] >= 2 else None

        collector = await until(thawed_twice, 20, "two thaws")
        await post(node, "/api/registry/register.json", {"instances": [instance()]})
        frames = await asyncio.gather(*(next_frame(ws) for ws in sessions))
    finally:
        for ws in sessions:
            await ws.close()
    text = await metrics(node)
    assert ([change("new", instance(), frame) for frame in frames], True, True, True, True) == (
        frames, collector["frozenObjects"] > 10_000, collector["freezes"] >= collector["thaws"],
        "\nartemis_gc_frozen_objects " in text, "\nartemis_gc_thaws_total " in text)


async def test_no_gc_freeze_leaves_the_collector_alone(start_node: StartNode) -> None:
    node = start_node("--no-gc-freeze")
    runtime = await get(node, "/api/status/runtime.json")
    assert ({}, False) == (runtime["collector"], "artemis_gc_frozen_objects" in await metrics(node))
