"""The pull-out commands: `artemis pull-out` and `artemis pull-in` take an instance, a server, a
service's zone or a group out of discovery and back; `artemis pulled-out` lists what is out.

Rules (what a careful operator expects of a command that changes what clients see)
  * Nothing is written that would change nothing: a pull-out by an operation already in force,
    or a pull-in of an operation not in force, says so and exits 5 (the audit log gets no
    no-op); the operations in force on the target are named.
  * A pull-out of something the registry does not know (no such instance, no instance on that
    server or in that zone) is refused with the closest ids it does know (exit 4), unless
    `--force` (an instance may be pulled out before it registers).
  * A pull-out that would take more than one instance out of discovery (a server, a zone, a
    group) shows them and asks first; `--yes` answers yes, and without a terminal to ask it is
    refused (exit 4). `--dry-run` shows what would change and changes nothing.
  * What is reported is read back from the node after the write: the target's operations before
    and after, and each instance it covers with its status now and what holds it out.

All of it goes through the management API (docs/management.md) with the bearer token
(`--token`, ARTEMIS_TOKEN): the write role to change, the read role to list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from artemis import wire
from artemis.cli.errors import NothingToChange, Refused
from artemis.cli.output import confirm, report, show
from artemis.cli.target import F, Node, Target, client_command, option, run, token_option
from artemis.cli.view import (
    MANAGEMENT,
    Holds,
    Registered,
    closest,
    group_by_id,
    group_key,
    held_text,
    load_holds,
    load_registered,
)

__all__ = ["COVERED_COLUMNS", "PULLED_COLUMNS", "Subject", "covered_row", "pull_in", "pull_out",
           "pulled_out", "write_options"]

COVERED_COLUMNS = ("serviceId", "instanceId", "ip", "zone", "status", "pulledOutBy")
PULLED_COLUMNS = ("kind", "target", "operations", "instances")


def write_options(fn: F) -> F:
    """--operator and --reason (for the audit log), --dry-run and --yes: every write's."""
    for decorate in reversed([
        option("--operator", metavar="NAME", env="USER", default="artemis-cli",
               help="Who does it, for the audit log."),
        option("--reason", metavar="REASON", help="Why, for the audit log."),
        option("--dry-run", is_flag=True, help="Show what would change; change nothing."),
        option("--yes", "-y", is_flag=True,
               help="Do it without asking (a wide or destructive change asks first)."),
    ]):
        fn = decorate(fn)
    return fn


@dataclass(frozen=True)
class Subject:
    """What a pull-out is on: its kind, its key (as the JSON shows it) and how it reads."""

    kind: str  # instance, server, zone or group
    key: dict[str, Any]
    label: str
    service: str | None  # the one service it covers, or None for a server (any service)
    group: wire.Group | None = None

    def covers(self, registered: Registered) -> list[wire.Instance]:
        key = self.key
        if self.kind == "instance":
            found = registered.instance(key["serviceId"], key["instanceId"])
            return [found] if found is not None else []
        if self.kind == "server":
            return registered.on_server(key["serverId"])
        if self.kind == "zone":
            return registered.in_zone(key["serviceId"], key["zoneId"])
        return registered.in_group(key["serviceId"], key["zoneId"], key["name"])

    async def operations(self, node: Node) -> list[str]:
        """The operations in force on it now."""
        region, key = node.target.region, self.key
        if self.kind == "instance":
            one = await node.call(f"{MANAGEMENT}/instance-operations.json",
                                  wire.InstanceKeyRequest(instance_key=wire.InstanceKey(
                                      instance_id=key["instanceId"], region_id=region,
                                      service_id=key["serviceId"])),
                                  wire.InstanceOperationsResponse)
            return sorted(one.operations.operations) if one.operations else []
        if self.kind == "server":
            server = await node.call(f"{MANAGEMENT}/server-operations.json",
                                     wire.ServerKeyRequest(server_key=wire.ServerKey(
                                         region_id=region, server_id=key["serverId"])),
                                     wire.ServerOperationsResponse)
            return sorted(server.operations.operations) if server.operations else []
        if self.kind == "zone":
            zone = await node.call(f"{MANAGEMENT}/zone/get-zone-operations.json",
                                   wire.ZoneKeyRequest(zone_key=wire.ZoneKey(
                                       region_id=region, service_id=key["serviceId"],
                                       zone_id=key["zoneId"])),
                                   wire.ZoneOperationsResponse)
            return sorted(zone.operations.operations) if zone.operations else []
        group = await node.call(f"{MANAGEMENT}/group/get-group-operations.json",
                                wire.GroupIdQuery(group_id=key["groupId"]),
                                wire.GroupOperationsResponse)
        found = group.group_operations
        return sorted(found.operations or ()) if found else []

    async def operate(self, node: Node, operation: str, complete: bool, operator: str,
                      reason: str | None) -> None:
        region, key = node.target.region, self.key
        context: dict[str, Any] = {"operation_complete": complete, "operator_id": operator,
                                   "reason": reason}
        if self.kind == "instance":
            await node.call(f"{MANAGEMENT}/operate-instance.json", wire.OperateInstanceRequest(
                instance_key=wire.InstanceKey(instance_id=key["instanceId"], region_id=region,
                                              service_id=key["serviceId"]),
                operation=operation, **context), wire.StatusOnlyResponse)
        elif self.kind == "server":
            await node.call(f"{MANAGEMENT}/operate-server.json", wire.OperateServerRequest(
                operation=operation, server_key=wire.ServerKey(region_id=region,
                                                               server_id=key["serverId"]),
                **context), wire.StatusOnlyResponse)
        elif self.kind == "zone":
            zone_key = wire.ZoneKey(region_id=region, service_id=key["serviceId"],
                                    zone_id=key["zoneId"])
            await node.call(f"{MANAGEMENT}/zone/operate-zone-operations.json",
                            wire.OperateZoneOperationsRequest(
                                operation=operation, zone_operations_list=[wire.ZoneOperations(
                                    operations=[operation], zone_key=zone_key)], **context),
                            wire.StatusOnlyResponse)
        else:
            await node.call(f"{MANAGEMENT}/group/operate-group-operations.json",
                            wire.GroupOperationsWrite(
                                operation=operation, group_operations_list=[wire.GroupOperations(
                                    group_id=key["groupId"], operations=[operation])],
                                **context), wire.StatusOnlyResponse)


async def _group_subject(node: Node, group_id: int) -> Subject:
    group = await group_by_id(node, group_id)
    return Subject("group", group_key(group), f"group {group_id} ({group.group_key})",
                   group.service_id, group)


def _unknown(subject: Subject, registered: Registered, every: Registered | None) -> Refused:
    """The refusal of a pull-out of something the registry does not know, with the closest ids
    it does know."""
    key = subject.key
    service = key.get("serviceId")
    if subject.kind == "server":
        near = closest(key["serverId"], {i.ip for i in registered.every() if i.ip})
        what = f"no registered instance has ip {key['serverId']}"
    elif not registered.of(service or ""):
        names = every.services.keys() | every.logical.keys() if every else set()
        near = closest(service or "", names)
        what = f"service {service} has no registered instance"
    elif subject.kind == "instance":
        near = closest(key["instanceId"],
                       {i.instance_id or "" for i in registered.of(service or "")})
        what = f"service {service} has no instance {key['instanceId']}"
    else:
        near = closest(key["zoneId"], {i.zone_id or "" for i in registered.of(service or "")})
        what = f"service {service} has no instance in zone {key['zoneId']}"
    hint = f" (closest: {', '.join(near)})" if near else ""
    return Refused(f"{what}{hint}; nothing was changed (--force pulls it out all the same)")


def covered_row(instance: wire.Instance, holds: Holds, logical: bool) -> dict[str, Any]:
    """An instance a pull-out covers, as reported: its status now and what holds it out."""
    held = holds.of(instance) if instance.status == "down" else []
    return {"serviceId": instance.service_id, "instanceId": instance.instance_id,
            "ip": instance.ip, "zone": instance.zone_id, "group": instance.group_id,
            "logical": logical, "status": instance.status, "pulledOutBy": held}


def _of(part: int, whole: int) -> str:
    """`1 of the 2 registered instances it covers is`, in words that agree."""
    return (f"{part} of the {whole} registered instance{'' if whole == 1 else 's'} it covers "
            f"{'is' if part == 1 else 'are'}")


def _table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "pulledOutBy": held_text(r["pulledOutBy"])} for r in rows]


async def _pull(node: Node, subject: Subject, complete: bool, operation: str, force: bool,
                dry_run: bool, yes: bool, operator: str, reason: str | None) -> None:
    target = node.target
    registered = await load_registered(node, subject.service)
    covered = subject.covers(registered)
    if not complete and not covered and not force and subject.kind != "group":
        every = await load_registered(node) if subject.service is not None else registered
        raise _unknown(subject, registered, every)
    before = await subject.operations(node)
    if complete and operation not in before:
        hint = (f"; --operation {before[0]} completes that one" if len(before) == 1 else "")
        raise NothingToChange(f"{subject.label} is not pulled out by operation {operation!r} "
                              f"(operations in force on it: {', '.join(before) or 'none'})"
                              f"{hint}; nothing was changed")
    if not complete and operation in before:
        raise NothingToChange(f"{subject.label} is already pulled out by operation "
                              f"{operation!r}; nothing was changed")
    action = "pull-in" if complete else "pull-out"
    result: dict[str, Any] = {"action": action, "target": {"kind": subject.kind, **subject.key},
                              "operation": operation, "dryRun": dry_run, "before": before}
    shown = [i for i in covered if i.status != "down"]
    if dry_run or (not complete and len(shown) > 1):
        holds = await load_holds(node)
        rows = [covered_row(i, holds, registered.is_logical(i)) for i in covered]
        would = (f"would complete operation {operation} on {subject.label}" if complete else
                 f"would pull out {subject.label} (operation {operation}): "
                 f"{_of(len(shown), len(covered))} in discovery now")
        if dry_run:
            report(target.as_json, {**result, "after": None, "instances": rows},
                   [would + "; nothing was changed (--dry-run)"], COVERED_COLUMNS, _table(rows))
            return
        if not yes and not target.as_json:  # what the question is about
            click.echo(would + ":", err=True)
            show(False, COVERED_COLUMNS, _table(rows), err=True)
        confirm(f"Pull out {subject.label}, taking {len(shown)} instances out of discovery?",
                yes)
    await subject.operate(node, operation, complete, operator, reason)
    after = await subject.operations(node)
    now = subject.covers(await load_registered(node, subject.service))
    holds = await load_holds(node) if any(i.status == "down" for i in now) else Holds()
    rows = [covered_row(i, holds, registered.is_logical(i)) for i in now]
    out = [r for r in rows if r["status"] == "down"]
    done = (f"operation {operation} completed on {subject.label}" if complete else
            f"pulled out {subject.label} (operation {operation})")
    lines = [f"{done}: operations in force now: {', '.join(after) or 'none'} "
             f"(before: {', '.join(before) or 'none'})",
             f"{_of(len(out), len(rows))} out of discovery now" + (":" if rows else "")]
    report(target.as_json, {**result, "after": after, "instances": rows}, lines,
           COVERED_COLUMNS, _table(rows))


def _pull_group(complete: bool) -> click.Group:
    action = "pull-in" if complete else "pull-out"
    group = click.Group(action, help=(
        "Complete an operation: the target is back in discovery once no other operation holds "
        "it. Nothing is written when the operation is not in force (exit 5)."
        if complete else
        "Take an instance, a server, a service's zone or a group out of discovery (it stays "
        "registered). Refused for a target the registry does not know (exit 4) unless --force; "
        "a target of several instances asks first (--yes)."))
    operation_help = ("The operation to complete." if complete else
                      "The operation's name: pull-in completes the same name.")

    def common(fn: Any) -> Any:
        fn = write_options(fn)
        if not complete:
            fn = option("--force", is_flag=True,
                        help="Pull out a target the registry does not know.")(fn)
        fn = option("--operation", metavar="NAME", default="pull-out", help=operation_help)(fn)
        fn = token_option("the write role")(fn)
        return client_command(fn)

    def go(target: Target, token: str | None, subject: Subject | int, operation: str,
           opts: dict[str, Any]) -> None:
        async def main() -> None:
            async with Node(target, token) as node:
                chosen = (await _group_subject(node, subject) if isinstance(subject, int)
                          else subject)
                await _pull(node, chosen, complete, operation, opts.get("force", False),
                            opts["dry_run"], opts["yes"], opts["operator"], opts["reason"])

        run(target, main())

    @group.command("instance")
    @click.argument("service")
    @click.argument("instance_id")
    @common
    def instance(target: Target, service: str, instance_id: str, token: str | None,
                 operation: str, **opts: Any) -> None:
        """An instance of a service, by its id."""
        go(target, token, Subject("instance", {"serviceId": service, "instanceId": instance_id},
                                  f"instance {service} {instance_id}", service), operation, opts)

    @group.command("server")
    @click.argument("ip")
    @common
    def server(target: Target, ip: str, token: str | None, operation: str,
               **opts: Any) -> None:
        """A machine: every instance whose ip is IP, of any service."""
        go(target, token, Subject("server", {"serverId": ip}, f"server {ip}", None), operation,
           opts)

    @group.command("zone")
    @click.argument("service")
    @click.argument("zone_id", metavar="ZONE")
    @common
    def zone(target: Target, service: str, zone_id: str, token: str | None, operation: str,
             **opts: Any) -> None:
        """A service's instances in one zone."""
        go(target, token, Subject("zone", {"serviceId": service, "zoneId": zone_id},
                                  f"zone {service} {zone_id}", service), operation, opts)

    @group.command("group")
    @click.argument("group_id", type=click.IntRange(min=1), metavar="GROUP_ID")
    @common
    def group_(target: Target, group_id: int, token: str | None, operation: str,
               **opts: Any) -> None:
        """A group (`artemis group list` shows their ids): its service's instances in its zone
        whose groupId is its name."""
        go(target, token, group_id, operation, opts)

    return group


pull_out = _pull_group(complete=False)
pull_in = _pull_group(complete=True)


@click.command(name="pulled-out")
@token_option("the read role")
@client_command
def pulled_out(target: Target, token: str | None) -> None:
    """List what is pulled out: instances, servers, zones and groups, with their operations and
    how many registered instances each holds out."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        async with Node(target, token) as node:
            holds = await load_holds(node)
            registered = await load_registered(node)
        every = registered.every()

        def count(kind: str, key: dict[str, Any]) -> int:
            return sum(1 for i in every if any(h["kind"] == kind and h["key"] == key
                                               for h in holds.of(i)))

        key: dict[str, Any]
        for (service, instance_id), ops in sorted(holds.instances.items()):
            key = {"serviceId": service, "instanceId": instance_id}
            rows.append({"kind": "instance", "target": f"{service} {instance_id}", "key": key,
                         "operations": ops, "instances": count("instance", key)})
        for server, ops in sorted(holds.servers.items()):
            key = {"serverId": server}
            rows.append({"kind": "server", "target": server, "key": key, "operations": ops,
                         "instances": count("server", key)})
        for (service, zone), ops in sorted(holds.zones.items()):
            key = {"serviceId": service, "zoneId": zone}
            rows.append({"kind": "zone", "target": f"{service} {zone}", "key": key,
                         "operations": ops, "instances": count("zone", key)})
        for group_id, ops in sorted(holds.groups.items()):
            row = holds.group_rows.get(group_id)
            key = group_key(row) if row is not None else {"groupId": group_id}
            name = row.group_key if row is not None else "?"
            rows.append({"kind": "group", "target": f"{group_id} ({name})", "key": key,
                         "operations": ops, "instances": count("group", key)})

    run(target, main())
    if target.as_json:
        show(True, PULLED_COLUMNS, rows)
    else:
        show(False, PULLED_COLUMNS, [{**r, "operations": ", ".join(r["operations"])}
                                     for r in rows])

