"""The blocking face of the clients, for code without an event loop.

Each sync client runs its async client on an event loop in a daemon thread of its own; every
method hands a coroutine to that loop and waits for its result. Listeners run on that thread.

    with SyncRegistryClient("http://127.0.0.1:8080", region="SHA") as registry:
        registry.register(Instance(service_id="demo", instance_id="a", url="http://a"))
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Self, TypeVar, cast

from artemis.client.discovery import DiscoveryClient, Listener
from artemis.client.errors import ClientClosed
from artemis.client.lifecycle import BackgroundClient
from artemis.client.registration import RegistryClient
from artemis.wire import Instance, Service

__all__ = ["SyncDiscoveryClient", "SyncRegistryClient"]

T = TypeVar("T")


class _LoopThread:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self.stopped = False

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self.stopped:
            coro.close()
            raise ClientClosed("this client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class _Blocking:
    """An async client (BackgroundClient) run on a loop thread of its own."""

    def __init__(self, kind: Callable[..., BackgroundClient], servers: str | Sequence[str],
                 options: dict[str, Any], name: str) -> None:
        self._thread = _LoopThread(name)
        self._async: BackgroundClient = self._thread.run(_make(kind, servers, options))

    def close(self) -> None:
        if self._thread.stopped:
            return
        try:
            self._thread.run(self._async.close())
        finally:
            self._thread.stop()

    def __enter__(self) -> Self:
        self._thread.run(self._async.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncRegistryClient(_Blocking):
    """RegistryClient, blocking. Same arguments."""

    def __init__(self, servers: str | Sequence[str], **options: Any) -> None:
        super().__init__(RegistryClient, servers, options, "artemis-registry")
        self._client = cast(RegistryClient, self._async)

    def register(self, *instances: Instance) -> None:
        self._thread.run(self._client.register(*instances))

    def unregister(self, *instances: Instance) -> None:
        self._thread.run(self._client.unregister(*instances))

    @property
    def instances(self) -> list[Instance]:
        return self._client.instances

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._client.stats)


class SyncDiscoveryClient(_Blocking):
    """DiscoveryClient, blocking. Same arguments."""

    def __init__(self, servers: str | Sequence[str], **options: Any) -> None:
        super().__init__(DiscoveryClient, servers, options, "artemis-discovery")
        self._client = cast(DiscoveryClient, self._async)

    def get_service(self, service_id: str) -> Service:
        return self._thread.run(self._client.get_service(service_id))

    def instances(self, service_id: str) -> list[Instance]:
        return self._thread.run(self._client.instances(service_id))

    def cached(self, service_id: str) -> Service | None:
        return self._client.cached(service_id)

    def add_listener(self, service_id: str, listener: Listener) -> None:
        if self._thread.stopped:
            raise ClientClosed("this client is closed")
        self._thread.loop.call_soon_threadsafe(self._client.add_listener, service_id, listener)


async def _make(kind: Callable[..., T], servers: str | Sequence[str],
                options: dict[str, Any]) -> T:
    """Build the async client inside its loop (its connections belong to that loop)."""
    return kind(servers, **options)
