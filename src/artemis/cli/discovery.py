"""The discovery commands: `artemis services`, `artemis instances SERVICE`, `artemis watch SERVICE`.

`services` asks services.json (the node's newest snapshot); `instances` looks the service up with
a DiscoveryClient (no push); `watch` shows the service, then one line per change pushed, until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import json
from typing import Any

import click

from artemis import wire
from artemis.cli.output import cell, show
from artemis.cli.target import Target, call, client_command, log_warnings, run, stop_event
from artemis.client import DiscoveryClient
from artemis.clock import SystemClock

__all__ = ["INSTANCE_COLUMNS", "SERVICE_COLUMNS", "changes", "instance_row", "instances",
           "services", "watch"]

SERVICE_COLUMNS = ("serviceId", "instances")
INSTANCE_COLUMNS = ("instanceId", "url", "ip", "port", "zone", "status", "group")
PUSH_WAIT = 2.0  # seconds watch waits for the push WebSocket before it looks the service up


@click.command()
@client_command
def services(target: Target) -> None:
    """List the services with their instance counts (the node's newest snapshot, taken every
    second)."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        answer = await call(target, "/api/discovery/services.json",
                            wire.GetServicesRequest(region_id=target.region,
                                                    zone_id=target.zone),
                            wire.GetServicesResponse)
        rows.extend({"serviceId": s.service_id, "instances": len(s.instances or ())}
                    for s in sorted(answer.services or (), key=lambda s: s.service_id or ""))

    run(target, main())
    show(target.as_json, SERVICE_COLUMNS, rows)


def instance_row(instance: wire.Instance) -> dict[str, Any]:
    return {"instanceId": instance.instance_id, "url": instance.url, "ip": instance.ip,
            "port": instance.port, "zone": instance.zone_id, "status": instance.status,
            "group": instance.group_id}


def _by_id(service: wire.Service) -> dict[str, wire.Instance]:
    return {(i.instance_id or "").lower(): i
            for i in sorted(service.instances or (), key=lambda i: i.instance_id or "")}


@click.command()
@click.argument("service")
@client_command
def instances(target: Target, service: str) -> None:
    """List a service's instances (a discovery lookup)."""
    found: list[wire.Instance] = []

    async def main() -> None:
        async with DiscoveryClient(list(target.servers), region=target.region, zone=target.zone,
                                   retries=target.retries, use_push=False) as discovery:
            found.extend(_by_id(await discovery.get_service(service)).values())

    run(target, main())
    show(target.as_json, INSTANCE_COLUMNS, [instance_row(i) for i in found])


def changes(before: dict[str, wire.Instance],
            after: dict[str, wire.Instance]) -> list[tuple[str, wire.Instance]]:
    """What happened to each instance between two views of a service, by instance id."""
    out = [("delete", i) for k, i in before.items() if k not in after]
    out += [("change" if k in before else "new", i) for k, i in after.items()
            if before.get(k) != i]
    return out


@click.command()
@click.argument("service")
@client_command
def watch(target: Target, service: str) -> None:
    """Show a service's instances, then one line per change as the node pushes it, until
    Ctrl-C. Lines are `new`, `delete` or `change` and the instance; a `reload` from the node
    prints what it changed the same way."""

    async def main() -> None:
        log_warnings()
        stop = stop_event()
        clock = SystemClock()
        async with DiscoveryClient(list(target.servers), region=target.region, zone=target.zone,
                                   retries=target.retries, clock=clock) as discovery:
            # With push connected, get_service subscribes before it looks up, so no change
            # falls between the two; without push, the client polls and so will this. The
            # client offers a property, not an event, hence the poll.
            deadline = clock.monotonic() + PUSH_WAIT
            while not discovery.push_connected and clock.monotonic() < deadline:
                await clock.sleep(0.01)
            known = _by_id(await discovery.get_service(service))
            rows = [instance_row(i) for i in known.values()]
            if target.as_json:
                click.echo(json.dumps({"instances": rows, "serviceId": service}))
            else:
                show(False, INSTANCE_COLUMNS, rows)

            def on_change(kind: str, now: wire.Service) -> None:
                nonlocal known
                after = _by_id(now)
                try:
                    for change, instance in changes(known, after):
                        row = instance_row(instance)
                        if target.as_json:
                            click.echo(json.dumps({"change": change, "instance": row,
                                                   "serviceId": service}))
                        else:
                            click.echo(f"{change:<6}  " + "  ".join(cell(row[c])
                                                                    for c in INSTANCE_COLUMNS))
                except BrokenPipeError:  # `artemis watch s | head -3`: the reader is gone
                    stop.set()
                known = after

            discovery.add_listener(service, on_change)
            await stop.wait()

    run(target, main())
