"""The discovery commands: `artemis services`, `artemis instances SERVICE`, `artemis watch SERVICE`.

Rules
  * `services` asks services.json (the node's newest snapshot, taken every second, so an instance
    registered the moment before may not be counted yet); it first asks the node, with a lookup
    of no service, whether it serves the region and zone asked, so another region is refused as
    `instances` refuses it.
  * `instances` looks the service up (lookup.json: the live registry, what clients get) and adds
    the registered instances management holds out of discovery, as `down` with the operations
    that hold them (`pulledOutBy`). Those are read from the management API (a token with the
    read role, unless the node's reads are open) only when the node hides any instance; when
    they cannot be read, a note on stderr says so.
  * `watch` shows the same rows, then one line per change the node pushes, until SIGINT or
    SIGTERM: `new`, `change`, `pulled-out` (still registered, hidden by management: its lease is
    still in leases.json), `pulled-in` (back from a pull-out), `unregistered` or `expired` (its
    lease is gone; which of the two is told by the node's count of expired leases around the
    change's revision, runtime.json), and `delete` when the cause cannot be told for sure (a
    change seen by a reload, or other leases expired meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from typing import Any, Final

import click
import msgspec

from artemis import wire
from artemis.cli.output import cell, reader_gone, show
from artemis.cli.target import (
    Node,
    Target,
    client_command,
    log_warnings,
    run,
    stop_event,
    token_option,
)
from artemis.cli.view import Holds, held_text, load_holds, load_registered
from artemis.client import DiscoveryClient
from artemis.client.errors import ArtemisError, ServerError, TransportError
from artemis.clock import SystemClock

__all__ = ["INSTANCE_COLUMNS", "SERVICE_COLUMNS", "Samples", "changes", "instance_row",
           "instances", "services", "watch"]

SERVICE_COLUMNS = ("serviceId", "instances")
INSTANCE_COLUMNS = ("instanceId", "url", "ip", "port", "zone", "status", "group", "pulledOutBy")
PUSH_WAIT: Final = 2.0  # seconds watch waits for the push WebSocket before it looks the service up
SAMPLE_EVERY: Final = 1.0  # seconds between watch's looks at the node's revision and expiries


class _ManagementStatus(msgspec.Struct, rename="camel", kw_only=True, frozen=True):
    enabled: bool = False
    available: bool = False
    hidden_instances: int = 0


class _Runtime(msgspec.Struct, rename="camel", kw_only=True, frozen=True):
    revision: int = 0
    evicted_total: int = 0


@click.command()
@client_command
def services(target: Target) -> None:
    """List the services with their instance counts (the node's newest snapshot, taken every
    second: `instances` answers from the live registry)."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        async with Node(target) as node:
            await node.call("/api/discovery/lookup.json", wire.LookupRequest(
                discovery_configs=[wire.DiscoveryConfig()], region_id=target.region,
                zone_id=target.zone), wire.LookupResponse)
            answer = await node.call("/api/discovery/services.json", wire.GetServicesRequest(
                region_id=target.region, zone_id=target.zone), wire.GetServicesResponse)
        rows.extend({"serviceId": s.service_id, "instances": len(s.instances or ())}
                    for s in sorted(answer.services or (), key=lambda s: s.service_id or ""))

    run(target, main())
    show(target.as_json, SERVICE_COLUMNS, rows)


def instance_row(instance: wire.Instance,
                 held: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"instanceId": instance.instance_id, "url": instance.url, "ip": instance.ip,
            "port": instance.port, "zone": instance.zone_id,
            "status": "down" if held else instance.status, "group": instance.group_id,
            "pulledOutBy": held or []}


def _lower_id(instance: wire.Instance) -> str:
    return (instance.instance_id or "").lower()


def _by_id(service: wire.Service | None) -> dict[str, wire.Instance]:
    found = service.instances if service is not None else None
    return {_lower_id(i): i for i in sorted(found or (), key=_lower_id)}


async def _pulled_out(node: Node, service: str, shown: dict[str, wire.Instance]
                      ) -> tuple[list[tuple[wire.Instance, list[dict[str, Any]]]], str | None]:
    """The registered instances of `service` management holds out of discovery (not in
    `shown`), each with what holds it; or a note saying why they cannot be listed."""
    try:
        status = await node.get("/api/status/management.json", _ManagementStatus)
    except TransportError as exc:
        return [], f"cannot tell whether the node holds instances out of discovery: {exc}"
    if not status.enabled or status.hidden_instances == 0:
        return [], None
    try:
        registered = await load_registered(node, service)
        hidden = [i for i in registered.services.get(service.lower(), ())
                  if i.status == "down" and _lower_id(i) not in shown]
        holds = await load_holds(node) if hidden else Holds()
    except ServerError as exc:
        return [], (f"the node holds {status.hidden_instances} registered instances out of "
                    f"discovery; those of {service} are not listed: {exc}")
    return [(i, holds.of(i)) for i in hidden], None


def _rows(shown: dict[str, wire.Instance],
          hidden: list[tuple[wire.Instance, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    rows = [(k, instance_row(i)) for k, i in shown.items()]
    rows += [(_lower_id(i), instance_row(i, held or [{"kind": "?", "key": {}, "operation": "?"}]))
             for i, held in hidden]
    return [row for _, row in sorted(rows, key=lambda kr: kr[0])]


def _table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "pulledOutBy": held_text(r["pulledOutBy"])} for r in rows]


@click.command()
@click.argument("service")
@token_option("the read role: to list pulled-out instances")
@client_command
def instances(target: Target, service: str, token: str | None) -> None:
    """List a service's instances: those discovery shows (a lookup of the live registry), and
    those management holds out, as down with the operations that hold them."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        async with Node(target, token) as node:
            answer = await node.call("/api/discovery/lookup.json", wire.LookupRequest(
                discovery_configs=[wire.DiscoveryConfig(service_id=service)],
                region_id=target.region, zone_id=target.zone), wire.LookupResponse)
            shown = _by_id(answer.services[0] if answer.services else None)
            hidden, note = await _pulled_out(node, service, shown)
        if note:
            click.echo(f"artemis: {cell(note)}", err=True)
        rows.extend(_rows(shown, hidden))

    run(target, main())
    show(target.as_json, INSTANCE_COLUMNS, rows if target.as_json else _table(rows))


def changes(before: dict[str, wire.Instance],
            after: dict[str, wire.Instance]) -> list[tuple[str, wire.Instance]]:
    """What happened to each instance between two views of a service, by instance id."""
    out = [("delete", i) for k, i in before.items() if k not in after]
    out += [("change" if k in before else "new", i) for k, i in after.items()
            if before.get(k) != i]
    return out


class Samples:
    """The node's registry revision and count of expired leases, as `watch` samples them, to
    tell an expiry from an unregistration (module rules)."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.seen: deque[tuple[int, int]] = deque(maxlen=600)

    def add(self, url: str, revision: int, evicted: int) -> None:
        if url != self.url or (self.seen and revision < self.seen[-1][0]):
            self.seen.clear()  # another node, or the node restarted: its numbers start again
            self.url = url
        self.seen.append((revision, evicted))

    def cause(self, revision: int) -> str | None:
        """Why the lease of a change at `revision` went: `unregistered` when no lease expired
        between a sample before it and one after, `expired` when every change between them was
        an expiry; None when it cannot be told."""
        before = [s for s in self.seen if s[0] < revision]
        after = [s for s in self.seen if s[0] >= revision]
        if not before or not after:
            return None
        (rev0, evicted0), (rev1, evicted1) = before[-1], after[0]
        if evicted1 == evicted0:
            return "unregistered"
        return "expired" if evicted1 - evicted0 == rev1 - rev0 else None

    def __repr__(self) -> str:
        return f"Samples(url={self.url!r}, kept={len(self.seen)})"


def _revision(token: str | None) -> int | None:
    number = (token or "").rpartition(".")[2]
    return int(number) if number.isdigit() else None


def _registered_ids(answer: wire.LeasesStatusResponse, service: str) -> set[str]:
    """The instance ids (lower-case) of the service's leases; a lease names its instance as
    region/zone/service[/group]/instance."""
    ids: set[str] = set()
    for name, leases in (answer.leases or {}).items():
        if name.lower() == service.lower():
            ids.update(lease.instance.rpartition("/")[2] for lease in leases)
    return ids


class _Watch:
    """What `watch` knows between changes: the instances shown, those pulled out, the samples,
    and a Node per URL the push comes from."""

    def __init__(self, target: Target, token: str | None, service: str) -> None:
        self.target, self.token, self.service = target, token, service
        self.shown: dict[str, wire.Instance] = {}
        self.pulled: set[str] = set()
        self.samples = Samples()
        self.nodes: dict[str, Node] = {}
        self.events: asyncio.Queue[tuple[str, wire.Instance, int | None]] = asyncio.Queue()

    def node(self, url: str) -> Node:
        if url not in self.nodes:
            self.nodes[url] = Node(Target((url,), self.target.region, self.target.zone,
                                          self.target.as_json), self.token)
        return self.nodes[url]

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.transport.aclose()

    async def sample(self, url: str) -> None:
        runtime = await self.node(url).get("/api/status/runtime.json", _Runtime)
        self.samples.add(url, runtime.revision, runtime.evicted_total)

    async def sampling(self, discovery: DiscoveryClient) -> None:
        while True:
            url = discovery.push_server
            if url is not None:
                with contextlib.suppress(ArtemisError):
                    await self.sample(url)
            await asyncio.sleep(SAMPLE_EVERY)

    async def classify(self, kind: str, instance: wire.Instance, revision: int | None,
                       url: str | None) -> tuple[str, list[dict[str, Any]]]:
        key = _lower_id(instance)
        if kind == "new" and key in self.pulled:
            self.pulled.discard(key)
            return "pulled-in", []
        if kind != "delete" or url is None:
            return kind, []
        node = self.node(url)
        try:
            leases = await node.call("/api/status/leases.json", wire.LeasesStatusRequest(
                service_ids=[self.service]), wire.LeasesStatusResponse)
            if key in _registered_ids(leases, self.service):
                self.pulled.add(key)
                try:
                    held = (await load_holds(node)).of(instance)
                except ServerError:
                    held = []
                return "pulled-out", held or [{"kind": "?", "key": {}, "operation": "?"}]
            if revision is None:
                return "delete", []
            await self.sample(url)
        except ArtemisError:
            return "delete", []
        return self.samples.cause(revision) or "delete", []

    def on_change(self, discovery: DiscoveryClient) -> Any:
        def listener(kind: str, now: wire.Service) -> None:
            after = _by_id(now)
            revision = _revision(discovery.revision(self.service)) if kind != "reload" else None
            for change, instance in changes(self.shown, after):
                self.events.put_nowait((change, instance, revision))
            self.shown = after

        return listener

    def say(self, change: str, instance: wire.Instance, held: list[dict[str, Any]]) -> None:
        row = instance_row(instance, held)
        if self.target.as_json:
            click.echo(json.dumps({"change": change, "instance": row,
                                   "serviceId": self.service}))
        else:
            text = _table([row])[0]
            click.echo(f"{change:<12}  " + "  ".join(cell(text[c]) for c in INSTANCE_COLUMNS))


@click.command()
@click.argument("service")
@token_option("the read role: to list pulled-out instances and what holds them")
@client_command
def watch(target: Target, service: str, token: str | None) -> None:
    """Show a service's instances, then one line per change as the node pushes it, until
    Ctrl-C: new, change, pulled-out, pulled-in, unregistered, expired (or delete when the cause
    cannot be told)."""

    async def main() -> None:
        log_warnings()
        stop = stop_event()
        clock = SystemClock()
        state = _Watch(target, token, service)
        discovery = DiscoveryClient(list(target.servers), region=target.region,
                                    zone=target.zone, retries=target.retries, clock=clock,
                                    token=token)
        discovery.caller.retry_refused = False  # the first answer is the person's
        try:
            async with discovery:
                # With push connected, get_service subscribes before it looks up, so no change
                # falls between the two; without push, the client polls and so will this.
                deadline = clock.monotonic() + PUSH_WAIT
                while not discovery.push_connected and clock.monotonic() < deadline:
                    await clock.sleep(0.01)
                state.shown = _by_id(await discovery.get_service(service))
                discovery.caller.retry_refused = True  # from now on, keep watching
                listing = state.node(discovery.push_server or discovery.caller.servers.current())
                hidden, note = await _pulled_out(listing, service, state.shown)
                state.pulled = {_lower_id(i) for i, _ in hidden}
                if note:
                    click.echo(f"artemis: {cell(note)}", err=True)
                rows = _rows(state.shown, hidden)
                if target.as_json:
                    click.echo(json.dumps({"instances": rows, "serviceId": service}))
                else:
                    show(False, INSTANCE_COLUMNS, _table(rows))
                discovery.add_listener(service, state.on_change(discovery))
                await _follow(state, discovery, stop)
        finally:
            await state.close()

    run(target, main())


async def _follow(state: _Watch, discovery: DiscoveryClient, stop: asyncio.Event) -> None:
    """Print each change, classified, until `stop` is set or the reader of stdout is gone."""
    sampler = asyncio.create_task(state.sampling(discovery), name="artemis watch samples")
    stopped = asyncio.create_task(stop.wait())
    try:
        while True:
            next_event = asyncio.create_task(state.events.get())
            done, _ = await asyncio.wait({next_event, stopped},
                                         return_when=asyncio.FIRST_COMPLETED)
            if stopped in done:
                next_event.cancel()
                return
            kind, instance, revision = next_event.result()
            change, held = await state.classify(kind, instance, revision, discovery.push_server)
            try:
                state.say(change, instance, held)
            except BrokenPipeError:  # `artemis watch s | head -3`: the reader is gone
                reader_gone()
                return
    finally:
        for task in (sampler, stopped):
            task.cancel()
        await asyncio.gather(sampler, stopped, return_exceptions=True)
