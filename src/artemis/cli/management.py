"""The management commands: `artemis pull-out` / `pull-in` take an instance, a server or a
service's zone out of discovery and back, `artemis pulled-out` lists what is out, `artemis audit`
shows the newest management writes. All need a bearer token (--token, ARTEMIS_TOKEN).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from artemis import wire
from artemis.cli.output import show
from artemis.cli.target import Target, call, client_command, run

__all__ = ["audit", "pull_in", "pull_out", "pulled_out"]


_token = click.option("--token", envvar="ARTEMIS_TOKEN", show_envvar=True, required=True,
                      help="Bearer token of the management API (write role to pull out or "
                           "in, read role to list).")
_operator = click.option("--operator", envvar="USER", show_envvar=True, default="artemis-cli",
                         show_default=True, help="Who does it, for the audit log.")
_operation = click.option("--operation", default="pull-out", show_default=True,
                          help="The operation's name; pull-in completes the same name.")
_reason = click.option("--reason", default=None, help="Why, for the audit log.")
_TARGETS = ("instance", "server", "zone")


def _operate(target: Target, what: str, keys: tuple[str, ...], complete: bool, token: str,
             operator: str, operation: str, reason: str | None) -> None:
    if what == "instance":
        if len(keys) != 2:
            raise click.UsageError("instance takes SERVICE INSTANCE_ID")
        path = "/api/management/operate-instance.json"
        request: Any = wire.OperateInstanceRequest(
            instance_key=wire.InstanceKey(instance_id=keys[1], region_id=target.region,
                                          service_id=keys[0]),
            operation=operation, operation_complete=complete, operator_id=operator,
            reason=reason)
    elif what == "server":
        if len(keys) != 1:
            raise click.UsageError("server takes IP (the instances' ip)")
        path = "/api/management/operate-server.json"
        request = wire.OperateServerRequest(
            operation=operation, operation_complete=complete, operator_id=operator,
            reason=reason, server_key=wire.ServerKey(region_id=target.region, server_id=keys[0]))
    else:
        if len(keys) != 2:
            raise click.UsageError("zone takes SERVICE ZONE")
        path = "/api/management/zone/operate-zone-operations.json"
        request = wire.OperateZoneOperationsRequest(
            operation=operation, operation_complete=complete, operator_id=operator,
            reason=reason, zone_operations_list=[wire.ZoneOperations(
                operations=[operation], zone_key=wire.ZoneKey(
                    region_id=target.region, service_id=keys[0], zone_id=keys[1]))])

    async def main() -> None:
        await call(target, path, request, wire.StatusOnlyResponse, token)

    run(target, main())
    done = "back in" if complete else "out"
    if target.as_json:
        click.echo(json.dumps({"target": what, "keys": list(keys), "operation": operation,
                               "pulled": done}))
    elif complete:
        click.echo(f"{what} {' '.join(keys)}: {operation} completed (back in discovery unless "
                   f"another operation holds it)")
    else:
        click.echo(f"{what} {' '.join(keys)}: {operation} in force (out of discovery)")


@click.command(name="pull-out")
@click.argument("what", type=click.Choice(_TARGETS))
@click.argument("keys", nargs=-1, required=True)
@_token
@_operator
@_operation
@_reason
@client_command
def pull_out(target: Target, what: str, keys: tuple[str, ...], token: str, operator: str,
             operation: str, reason: str | None) -> None:
    """Take an instance (SERVICE INSTANCE_ID), a server (IP) or a service's zone (SERVICE ZONE)
    out of discovery; it stays registered."""
    _operate(target, what, keys, False, token, operator, operation, reason)


@click.command(name="pull-in")
@click.argument("what", type=click.Choice(_TARGETS))
@click.argument("keys", nargs=-1, required=True)
@_token
@_operator
@_operation
@_reason
@client_command
def pull_in(target: Target, what: str, keys: tuple[str, ...], token: str, operator: str,
            operation: str, reason: str | None) -> None:
    """Complete a pull-out operation: the target is back in discovery once no other operation
    holds it."""
    _operate(target, what, keys, True, token, operator, operation, reason)


PULLED_COLUMNS = ("kind", "key", "operations")


@click.command(name="pulled-out")
@_token
@client_command
def pulled_out(target: Target, token: str) -> None:
    """List what is pulled out: instances, servers and zones, with their operations."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        asked = wire.RegionRequest(region_id=target.region)
        instances = await call(target, "/api/management/all-instance-operations.json", asked,
                               wire.AllInstanceOperationsResponse, token)
        servers = await call(target, "/api/management/all-server-operations.json", asked,
                             wire.AllServerOperationsResponse, token)
        zones = await call(target, "/api/management/zone/get-all-zone-operations.json", asked,
                           wire.AllZoneOperationsResponse, token)
        rows.extend({"kind": "instance", "key": f"{i.instance_key.service_id} "
                     f"{i.instance_key.instance_id}", "operations": ",".join(i.operations)}
                    for i in instances.all_instance_operations or ())
        rows.extend({"kind": "server", "key": s.server_key.server_id,
                     "operations": ",".join(s.operations)}
                    for s in servers.all_server_operations or ())
        rows.extend({"kind": "zone", "key": f"{z.zone_key.service_id} {z.zone_key.zone_id}",
                     "operations": ",".join(z.operations)}
                    for z in zones.all_zone_operations or ())

    run(target, main())
    show(target.as_json, PULLED_COLUMNS, rows)


AUDIT_COLUMNS = ("time", "actor", "operator", "kind", "target", "operation", "done", "before",
                 "after", "reason")


@click.command()
@_token
@click.option("--operator", "operator_filter", default=None, help="Only this operatorId's.")
@click.option("--service", "service_filter", default=None, help="Only this service's.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many entries, newest first.")
@client_command
def audit(target: Target, token: str, operator_filter: str | None, service_filter: str | None,
          limit: int) -> None:
    """Show the newest management writes: who, what, when, before and after."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        answer = await call(target, "/api/management/log/audit.json", wire.OperationLogRequest(
            limit=limit, operator_id=operator_filter, service_id=service_filter),
            wire.AuditLogResponse, token)
        for e in answer.logs or ():
            key = " ".join(k for k in (e.service_id, e.instance_id, e.server_id, e.zone_id) if k)
            rows.append({
                "time": dt.datetime.fromtimestamp(e.create_time / 1000).astimezone().strftime(
                    "%Y-%m-%d %H:%M:%S"),
                "actor": e.actor, "operator": e.operator_id, "kind": e.kind, "target": key,
                "operation": e.operation, "done": "pull-in" if e.complete else "pull-out",
                "before": ",".join(e.before), "after": ",".join(e.after), "reason": e.reason})

    run(target, main())
    show(target.as_json, AUDIT_COLUMNS, rows)
