"""What both clients share: their nodes, their transport, and one background task.

`start()` learns the cluster's up nodes (registry or discovery ones) and starts the client's
`_run()` task; `close()` stops the task, lets the client finish (`_finish()`: unregister, close
sockets), and closes the transport if the client made it. A closed client refuses to start again.
Every wait of a client (its rounds, polls, reconnects, the backoff between tries) and every time
it reads are its `clock`'s (artemis.clock; the machine's by default, a FakeClock in tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Self

from artemis.client.errors import ClientClosed
from artemis.client.servers import Caller, ServerList
from artemis.client.transport import NetworkTransport, Transport
from artemis.clock import Clock, SystemClock

__all__ = ["BackgroundClient"]


class BackgroundClient:
    """The base of RegistryClient and DiscoveryClient (see the module doc)."""

    _asks_registry_nodes = False  # which up-nodes list the client's calls should go to
    _task_name = "artemis client"

    def __init__(self, servers: str | Sequence[str], *, region: str | None,
                 zone: str | None, transport: Transport | None, retries: int,
                 clock: Clock | None, token: str | None = None) -> None:
        """`token` is sent as a bearer token by the transport the client makes (a transport
        given is used as it is: give it the token)."""
        if token and transport is not None:
            raise ValueError("give the token to the transport you pass (NetworkTransport(token="
                             "...)), or pass no transport")
        seeds = [servers] if isinstance(servers, str) else list(servers)
        self.clock: Clock = clock or SystemClock()
        self.region = region
        self.zone = zone
        self._own_transport = transport is None
        self.transport: Transport = transport or NetworkTransport(token=token)
        self.caller = Caller(self.transport, ServerList(seeds, clock=self.clock), retries=retries,
                             clock=self.clock)
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Learn the cluster's nodes and start the background work (idempotent)."""
        if self._closed:
            raise ClientClosed(f"this {type(self).__name__} is closed")
        if self._task is None:
            await self.caller.refresh(self._asks_registry_nodes, self.region, self.zone)
            self._task = asyncio.create_task(self._run(), name=self._task_name)

    async def close(self) -> None:
        """Stop the background work, finish (see subclasses), release the transport."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._finish()
        if self._own_transport:
            await self.transport.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self) -> None:
        raise NotImplementedError

    async def _finish(self) -> None:
        """What the client does on close, after its task stopped."""
