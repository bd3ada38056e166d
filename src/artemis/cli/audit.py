"""The audit command: `artemis audit` pages through the management audit log, newest first, with
the filters the API has (docs/management.md, "Who did what").

Each entry: when, who (`actor`, the token's name; `operator`, the operatorId given), what kind of
write on which target, the operation (`complete`: whether it completed one), the reason, and the
target's state before and after: operations for instance, server and zone operations; the row
written, as an object, for groups, route rules, their groups, tags, members and logical
instances.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Final

import click

from artemis import wire
from artemis.cli.output import show
from artemis.cli.target import Node, Target, client_command, option, run, token_option
from artemis.cli.view import MANAGEMENT

__all__ = ["AUDIT_COLUMNS", "KINDS", "audit", "audit_row"]

AUDIT_COLUMNS = ("time", "actor", "operator", "kind", "target", "operation", "complete",
                 "before", "after", "reason")
KINDS: Final = ("instance-operation", "server-operation", "zone-operation", "group-operation",
                "group", "route-rule", "route-rule-group", "group-instance", "service-instance",
                "group-tag")
_PATHS: Final = {kind: f"{MANAGEMENT}/log/{kind}-logs.json" for kind in KINDS}


def _state(items: list[str], kind: str) -> list[Any]:
    """before/after: operations (text) for the operation kinds, rows (objects) for the others."""
    if kind.endswith("-operation") and kind != "group-operation":
        return list(items)
    out: list[Any] = []
    for item in items:
        try:
            out.append(json.loads(item))
        except ValueError:
            out.append(item)
    return out


def audit_row(entry: wire.AuditEntry) -> dict[str, Any]:
    """One audit entry with structured fields (JSON)."""
    moment = dt.datetime.fromtimestamp(entry.create_time / 1000, dt.UTC)
    target = {k: v for k, v in (("serviceId", entry.service_id),
                                ("instanceId", entry.instance_id),
                                ("serverId", entry.server_id), ("zoneId", entry.zone_id)) if v}
    return {"id": entry.id, "time": moment.isoformat(timespec="milliseconds"),
            "timeMs": entry.create_time, "actor": entry.actor, "operator": entry.operator_id,
            "kind": entry.kind, "target": target, "operation": entry.operation,
            "complete": entry.complete, "before": _state(entry.before, entry.kind),
            "after": _state(entry.after, entry.kind), "reason": entry.reason}


def _brief(state: list[Any]) -> str:
    """before/after in a table cell: operations joined, a row by its id and name or status."""
    parts = []
    for item in state:
        if isinstance(item, dict):
            named = [f"{k}={'none' if item[k] is None else item[k]}"
                     for k in ("id", "name", "status", "weight", "unreleased_weight", "tag",
                               "value", "instance_id") if k in item]
            if item.get("deleted"):
                named.append("deleted")
            parts.append(" ".join(named) or json.dumps(item, sort_keys=True))
        else:
            parts.append(str(item))
    return ", ".join(parts)


def _cells(row: dict[str, Any]) -> dict[str, Any]:
    local = dt.datetime.fromtimestamp(row["timeMs"] / 1000).astimezone()
    return {**row, "time": local.strftime("%Y-%m-%d %H:%M:%S"),
            "target": " ".join(str(v) for v in row["target"].values()),
            "before": _brief(row["before"]), "after": _brief(row["after"])}


@click.command()
@token_option("the read role")
@option("--kind", metavar="KIND", type=click.Choice(KINDS),
        help="Only this kind of write: " + ", ".join(KINDS) + ".")
@option("--service", metavar="SERVICE", help="Only writes on this service.")
@option("--instance", "instance_id", metavar="ID", help="Only writes on this instance id.")
@option("--server-id", metavar="IP", help="Only writes on this server.")
@option("--zone-id", metavar="ZONE", help="Only writes on this zone.")
@option("--group-id", metavar="ID", type=click.IntRange(min=1),
        help="Only writes on this group (group kinds).")
@option("--route-rule-id", metavar="ID", type=click.IntRange(min=1),
        help="Only writes on this route rule.")
@option("--operation", metavar="NAME", help="Only this operation (pull-out, create, release...).")
@option("--operator", metavar="NAME", help="Only this operatorId's writes.")
@option("--completed/--not-completed", "complete", default=None,
        help="Only writes that completed an operation (pull-ins, deletes), or only others.")
@option("--limit", metavar="N", type=click.IntRange(1, 1000), default=20,
        help="How many entries (at most 1000).")
@option("--offset", metavar="N", type=click.IntRange(min=0), default=0, shown="0",
        help="Skip this many entries first (paging).")
@option("--oldest-first", is_flag=True, help="Oldest entries first.")
@client_command
def audit(target: Target, token: str | None, kind: str | None, service: str | None,
          instance_id: str | None, server_id: str | None, zone_id: str | None,
          group_id: int | None, route_rule_id: int | None, operation: str | None,
          operator: str | None, complete: bool | None, limit: int, offset: int,
          oldest_first: bool) -> None:
    """Show the management audit log, newest first: who did what, when, and the target before
    and after. The total of matching entries is on stderr when there are more."""
    rows: list[dict[str, Any]] = []
    total = 0

    async def main() -> None:
        nonlocal total
        asked = wire.OperationLogRequest(
            complete=complete, group_id=group_id, instance_id=instance_id, limit=limit,
            newest_first=not oldest_first, offset=offset, operation=operation,
            operator_id=operator, route_rule_id=route_rule_id, server_id=server_id,
            service_id=service, zone_id=zone_id)
        path = _PATHS[kind] if kind else f"{MANAGEMENT}/log/audit.json"
        async with Node(target, token) as node:
            answer = await node.call(path, asked, wire.AuditLogResponse)
        rows.extend(audit_row(e) for e in answer.logs or ())
        total = answer.total

    run(target, main())
    if target.as_json:
        show(True, AUDIT_COLUMNS, rows)
    else:
        show(False, AUDIT_COLUMNS, [_cells(r) for r in rows])
    if total > offset + len(rows):
        click.echo(f"artemis: {len(rows)} of {total} entries shown (--offset "
                   f"{offset + len(rows)} for the next)", err=True)
