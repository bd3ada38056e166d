"""Know a service's instances: a local cache kept current by push, polling when push is down.

Rules
  * The first `get_service(id)` subscribes to the service on the push WebSocket, then looks it up;
    push frames that arrive while the lookup is in flight are applied after it, in order, so
    nothing falls between the two (applying a change twice does no harm).
  * Frames: `new` and `change` replace or add the instance, `delete` removes it, `reload` looks
    the service up again. The revision of the last frame is kept per service; after a reconnect
    every service is subscribed again with it, so the node replays what was missed (or sends a
    reload).
  * While push cannot be had, every `poll_interval` seconds all cached services are looked up
    (one lookup for all). Push is tried again every `reconnect_interval` seconds. While push is
    connected, all cached services are still looked up every `poll_interval * 6` seconds, a slow
    safety net (as the original's 15-minute full lookup).
  * While no node answers, the last known instances are served: the cache is never emptied by an
    error. `get_service` raises only when the service was never fetched.
  * Listeners of a service are called, in order, with (change_type, Service) after each change of
    the cache; an exception in a listener is logged and does not stop the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from artemis import wire
from artemis.client.errors import ArtemisError, TransportError, server_error
from artemis.client.lifecycle import BackgroundClient
from artemis.client.transport import ClientWebSocket, Transport
from artemis.clock import Clock
from artemis.wire import Instance, Service

__all__ = ["DiscoveryClient", "Listener"]

log = logging.getLogger("artemis.client.discovery")
Listener = Callable[[str, Service], Any]


@dataclass
class _Entry:
    service_id: str
    instances: dict[str, Instance] = field(default_factory=dict)
    route_rules: list[wire.RouteRule] | None = None
    logic_instances: list[Instance] | None = None
    revision: str | None = None
    pending: list[wire.PushedChange] | None = None  # frames that came during a lookup
    listeners: list[Listener] = field(default_factory=list)
    fetched: bool = False
    again: bool = False  # subscribed while a lookup was in flight: look up once more after it

    def service(self) -> Service:
        return Service(instances=list(self.instances.values()),
                       logic_instances=self.logic_instances or [], route_rules=self.route_rules,
                       service_id=self.service_id)


class DiscoveryClient(BackgroundClient):
    """A cache of services' instances, kept current by push (rules above).

        async with DiscoveryClient("http://127.0.0.1:8080", region="SHA") as discovery:
            service = await discovery.get_service("demo")
    """

    def __init__(self, servers: str | Sequence[str], *, region: str | None = None,
                 zone: str | None = None, transport: Transport | None = None,
                 poll_interval: float = 10.0, reconnect_interval: float = 2.0,
                 retries: int = 3, use_push: bool = True, clock: Clock | None = None,
                 token: str | None = None) -> None:
        """`token`: a bearer token sent with every call (discovery needs none today; for a
        proxy or node that asks for one)."""
        super().__init__(servers, region=region, zone=zone, transport=transport, retries=retries,
                         clock=clock, token=token)
        self.poll_interval = poll_interval
        self.reconnect_interval = reconnect_interval
        self.use_push = use_push
        self._entries: dict[str, _Entry] = {}
        self._ws: ClientWebSocket | None = None
        self._ws_url: str | None = None
        self._polled_at = -1e18
        self.stats = {"frames": 0, "lookups": 0, "reconnects": 0, "polls": 0, "errors": 0}

    # --- lifecycle -----------------------------------------------------------------------

    _task_name = "artemis discovery"

    async def _finish(self) -> None:
        await self._drop_ws()

    @property
    def push_connected(self) -> bool:
        return self._ws is not None

    @property
    def push_server(self) -> str | None:
        """The URL of the node the push WebSocket is connected to; None while it is not."""
        return self._ws_url if self._ws is not None else None

    def revision(self, service_id: str) -> str | None:
        """The revision token of the last change pushed for the service (the node's
        `run.revision`); None before any. A listener called for a pushed change reads the
        token of that change here."""
        entry = self._entries.get(service_id.lower())
        return entry.revision if entry is not None else None

    # --- reading -------------------------------------------------------------------------

    async def get_service(self, service_id: str) -> Service:
        """The service's instances, from the cache (fetched the first time)."""
        await self.start()
        key = service_id.lower()
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(service_id)
            await self._subscribe(entry)
        if not entry.fetched:
            await self._lookup([entry])
        return entry.service()

    async def instances(self, service_id: str) -> list[Instance]:
        return list((await self.get_service(service_id)).instances or [])

    def cached(self, service_id: str) -> Service | None:
        """The cached service, without asking any node; None if never fetched."""
        entry = self._entries.get(service_id.lower())
        return entry.service() if entry is not None and entry.fetched else None

    def add_listener(self, service_id: str, listener: Listener) -> None:
        key = service_id.lower()
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(service_id)
            if self._ws is not None:
                task = asyncio.ensure_future(self._subscribe(entry))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
        entry.listeners.append(listener)

    # --- lookups -------------------------------------------------------------------------

    async def _lookup(self, entries: list[_Entry]) -> None:
        for entry in entries:
            if entry.pending is None:
                entry.pending = []
        try:
            body = wire.encode(wire.LookupRequest(
                discovery_configs=[wire.DiscoveryConfig(service_id=e.service_id)
                                   for e in entries],
                region_id=self.region, zone_id=self.zone))
            answer = await self.caller.call("/api/discovery/lookup.json", body,
                                            wire.LookupResponse)
            status = answer.response_status
            if status.status == "fail":
                raise server_error(status.error_code, status.message)
        except ArtemisError:
            for entry in entries:
                pending, entry.pending = entry.pending or [], None
                if entry.fetched:  # keep the last known instances, with what was pushed since
                    for change in pending:
                        self._apply(entry, change, notify=True)
            if any(not e.fetched for e in entries):
                raise
            return
        self.stats["lookups"] += 1
        by_key = {(s.service_id or "").lower(): s for s in answer.services or []}
        for entry in entries:
            service = by_key.get(entry.service_id.lower())
            pending, entry.pending = entry.pending or [], None
            before = dict(entry.instances)
            if service is not None:
                entry.instances = {(i.instance_id or "").lower(): i
                                   for i in service.instances or []}
                entry.route_rules = service.route_rules
                entry.logic_instances = service.logic_instances
            first = not entry.fetched
            entry.fetched = True
            for change in pending:
                self._apply(entry, change, notify=False)
            if first or before != entry.instances:
                self._notify(entry, "reload")
        redo = [e for e in entries if e.again]
        for entry in redo:
            entry.again = False
        if redo:
            await self._lookup(redo)

    # --- push ----------------------------------------------------------------------------

    async def _subscribe(self, entry: _Entry) -> None:
        ws = self._ws
        if ws is None:
            return
        frame = wire.Subscription(service_id=entry.service_id, revision=entry.revision)
        try:
            await ws.send(wire.encode(frame).decode())
        except TransportError:
            await self._drop_ws()

    async def _run(self) -> None:
        """Keep the push WebSocket; poll while it is down."""
        while True:
            if self.use_push:
                try:
                    await self._push_session()
                except (TransportError, wire.DecodeError) as exc:
                    log.debug("push unavailable: %s", exc)
                except ArtemisError as exc:  # pragma: no cover - defensive
                    self.stats["errors"] += 1
                    log.warning("push failed: %s", exc)
            await self._poll_until(self.clock.monotonic() + (
                self.reconnect_interval if self.use_push else self.poll_interval))

    async def _poll_until(self, deadline: float) -> None:
        """Look every cached service up if `poll_interval` has passed since the last poll,
        then wait until `deadline`."""
        entries = [e for e in self._entries.values() if e.fetched]
        if entries and self.clock.monotonic() - self._polled_at >= self.poll_interval:
            self._polled_at = self.clock.monotonic()
            self.stats["polls"] += 1
            with contextlib.suppress(ArtemisError):
                await self._lookup(entries)
        await self.clock.sleep(deadline - self.clock.monotonic())

    async def _push_session(self) -> None:
        url = self.caller.servers.current()
        try:
            self._ws = await self.transport.connect(url, "/ws/discovery/instance-change")
        except TransportError:
            self.caller.servers.failed(url)
            raise
        self._ws_url = url
        self.stats["reconnects"] += 1
        try:
            entries = list(self._entries.values())
            for entry in entries:
                await self._subscribe(entry)
            # Services never pushed to have no revision to resume from: look them up again
            # now that they are subscribed, so nothing from before the subscription is missed.
            stale = [e for e in entries if e.fetched and e.revision is None
                     and e.pending is None]
            for entry in entries:
                if entry.pending is not None:
                    entry.again = True  # its answer may predate the subscription
            if stale:
                with contextlib.suppress(ArtemisError):
                    await self._lookup(stale)
            safety_net = asyncio.create_task(self._safety_net(), name="artemis safety net")
            try:
                while (ws := self._ws) is not None:
                    self._on_frame(await ws.recv())
            finally:
                safety_net.cancel()
                await asyncio.gather(safety_net, return_exceptions=True)
        finally:
            await self._drop_ws()

    async def _safety_net(self) -> None:
        """While push is connected: every `poll_interval * 6` seconds, look every cached
        service up."""
        while True:
            await self.clock.sleep(self.poll_interval * 6)
            entries = [e for e in self._entries.values() if e.fetched]
            if entries:
                with contextlib.suppress(ArtemisError):
                    await self._lookup(entries)

    def _on_frame(self, text: str) -> None:
        try:
            change = msgspec.json.decode(text, type=wire.PushedChange)
        except msgspec.DecodeError:
            log.warning("a push frame that is not a change: %.200s", text)
            return
        if change.change_type is None or change.instance is None:
            log.info("the node said: %.200s", text)  # an error frame
            return
        self.stats["frames"] += 1
        entry = self._entries.get((change.instance.service_id or "").lower())
        if entry is None:
            return
        if entry.pending is not None:
            entry.pending.append(change)
            return
        self._apply(entry, change, notify=True)

    def _apply(self, entry: _Entry, change: wire.PushedChange, *, notify: bool) -> None:
        if change.revision:
            entry.revision = change.revision
        instance = change.instance
        if instance is None:
            return
        key = (instance.instance_id or "").lower()
        kind = change.change_type
        if kind == "reload":
            task = asyncio.ensure_future(self._lookup([entry]))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            return
        if kind in ("new", "change"):
            if entry.instances.get(key) == instance:
                return
            entry.instances[key] = instance
        elif kind == "delete":
            if entry.instances.pop(key, None) is None:
                return
        else:
            return
        if notify:
            self._notify(entry, kind)

    def _notify(self, entry: _Entry, kind: str) -> None:
        service = entry.service()
        for listener in list(entry.listeners):
            try:
                listener(kind, service)
            except Exception:
                log.exception("a service listener failed")

    async def _drop_ws(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    def __repr__(self) -> str:
        return (f"DiscoveryClient(services={len(self._entries)}, push={self.push_connected}, "
                f"stats={self.stats})")
