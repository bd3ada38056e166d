"""Fixtures of the in-process HTTP API tests: nodes on a fake clock behind httpx's ASGI transport.

ASGITransport does not run the lifespan, so no background loop runs: tests move the clock and
call `node.sweep_once()` / `node.snapshot_once()` themselves (through `Api.sweep`/`Api.snapshot`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from artemis.clock import FakeClock
from artemis.server.compose import NodeParts, build
from artemis.server.settings import Settings
from tests.server.harness import OK_BODY, REGION, ZONE, Api, instance

MakeApi = Callable[..., Awaitable[Api]]


def make_parts(clock: FakeClock, *, up: bool = True, **settings: Any) -> NodeParts:
    """The parts of a node of region SHA, zone zone-1 (unless `settings` say otherwise), built
    by the composition root. `up` marks it up (with a database: once management releases it)."""
    parts = build(Settings(**{"region": REGION, "zone": ZONE, **settings}), clock)
    if up:
        parts.node.mark_up()
    return parts


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_api(clock: FakeClock) -> AsyncIterator[MakeApi]:
    """Build an `Api` with `Settings(**settings)`; `up=False` leaves the node `starting`;
    `client_host` is the caller's address the app sees. Clients are closed at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(*, up: bool = True, client_host: str = "127.0.0.1",
                       **settings: Any) -> Api:
            parts = make_parts(clock, up=up, **settings)
            transport = httpx.ASGITransport(app=parts.app, client=(client_host, 40000))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://testserver"))
            return Api(parts, clock, client, settings.get("context_path", ""))

        yield make


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    """An up node with default settings and nothing registered."""
    return await make_api()


@pytest.fixture
async def seeded(api: Api) -> Api:
    """An up node with `instance()` registered."""
    assert OK_BODY == await api.register(instance())
    return api


MANAGEMENT_TOKEN = "management-test-token-0123456789"  # noqa: S105 - a test secret


@pytest.fixture
async def managed(make_api: MakeApi, tmp_path: Any) -> AsyncIterator[Api]:
    """An up node with a SQLite management database (opened, its data loaded) and an admin
    token its client sends with every request."""
    api = await make_api(database=f"sqlite:///{tmp_path}/management.db",
                         admin_token=MANAGEMENT_TOKEN)
    management = api.parts.management
    assert management is not None
    await management.store.open()
    await management.reload()
    api.node.release("management")
    api.client.headers["authorization"] = f"Bearer {MANAGEMENT_TOKEN}"
    yield api
    await management.store.close()
