"""The group commands: `artemis group list | add | update | delete | tag | untag | members |
add-member | remove-member` (docs/management.md, "Splitting traffic" and "Group operations").

A group is the instances of one service in one zone whose `groupId` is its name (`default` for
none), plus its explicit members; its key is service/region/zone/name. Every write is checked
first (a group that exists already, a tag already so, an instance the service does not have:
exit 5 or 4, nothing sent), deletes ask first (--yes), and what is reported is read back.
A group is pulled out and back with `artemis pull-out group ID` / `pull-in group ID`.
"""

from __future__ import annotations

from typing import Any

import click

from artemis import wire
from artemis.cli.errors import NotAsWritten, NothingToChange, Refused
from artemis.cli.management import write_options
from artemis.cli.output import confirm, report, show
from artemis.cli.target import (
    F,
    Node,
    Target,
    client_command,
    key_values,
    option,
    run,
    token_option,
)
from artemis.cli.view import MANAGEMENT, Registered, closest, group_by_id, load_registered

__all__ = ["GROUP_COLUMNS", "context", "group", "group_row", "member_ids", "unknown_ids"]

GROUP_COLUMNS = ("groupId", "serviceId", "zone", "name", "status", "appId", "instances", "tags",
                 "members", "operations")
_G = f"{MANAGEMENT}/group"


def context(opts: dict[str, Any]) -> dict[str, Any]:
    """The audit context of a write, from write_options."""
    return {"operator_id": opts["operator"], "reason": opts["reason"]}


def group_row(g: wire.Group, tags: dict[str, str], members: list[str], operations: list[str],
              registered: Registered | None) -> dict[str, Any]:
    """A group as the commands show it (JSON: every field)."""
    count = None if registered is None else len(registered.in_group(
        g.service_id or "", g.zone_id or "", g.name or ""))
    return {"groupId": g.group_id, "serviceId": g.service_id, "region": g.region_id,
            "zone": g.zone_id, "name": g.name, "groupKey": g.group_key, "appId": g.app_id,
            "description": g.description, "status": g.status, "instances": count,
            "tags": tags, "members": members, "operations": operations}


def _cells(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "tags": ", ".join(f"{k}={v}" for k, v in sorted(row["tags"].items())),
            "members": ", ".join(row["members"]), "operations": ", ".join(row["operations"])}


async def member_ids(node: Node, group_id: int) -> dict[str, int]:
    """The explicit members of a group: instance id -> member row id."""
    found = await node.call(f"{_G}/get-group-instances.json", wire.GroupIdQuery(
        group_id=group_id), wire.GroupInstancesResponse)
    return {m.instance_id: m.id for m in found.group_instances or ()
            if m.instance_id is not None and m.id is not None}


async def _tags(node: Node, group_id: int) -> dict[str, str]:
    found = await node.call(f"{_G}/get-group-tags.json", wire.GroupIdQuery(group_id=group_id),
                            wire.GroupTagsResponse)
    return dict(found.group_tags.tags or {}) if found.group_tags else {}


async def _row(node: Node, g: wire.Group) -> dict[str, Any]:
    """One group read back, with its tags, members, operations and registered instances."""
    gid = g.group_id or 0
    ops = await node.call(f"{_G}/get-group-operations.json", wire.GroupIdQuery(group_id=gid),
                          wire.GroupOperationsResponse)
    registered = await load_registered(node, g.service_id)
    return group_row(g, await _tags(node, gid), sorted(await member_ids(node, gid)),
                     sorted(ops.group_operations.operations or ())
                     if ops.group_operations else [], registered)


async def _find(node: Node, service: str, zone: str, name: str) -> wire.Group | None:
    found = await node.call(f"{_G}/get-groups.json", wire.GroupsQuery(
        service_id=service, zone_id=zone, name=name, region_id=node.target.region),
        wire.GroupsResponse)
    return found.groups[0] if found.groups else None


def _say(target: Target, action: str, rows: list[dict[str, Any]], line: str) -> None:
    report(target.as_json, {"action": action, "groups": rows}, [line], GROUP_COLUMNS,
           [_cells(r) for r in rows])


@click.group()
def group() -> None:
    """Groups of a service's instances: list, add, change, delete, tag, explicit members."""


@group.command("list")
@token_option("the read role")
@option("--service", metavar="SERVICE", help="Only this service's groups.")
@option("--zone-id", metavar="ZONE", help="Only groups in this zone.")
@option("--name", metavar="NAME", help="Only groups of this name.")
@option("--status", metavar="STATUS", type=click.Choice(["active", "inactive"]),
        help="Only active or only inactive groups.")
@client_command
def list_groups(target: Target, token: str | None, service: str | None, zone_id: str | None,
                name: str | None, status: str | None) -> None:
    """List groups with their registered instances, tags, explicit members and operations."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        async with Node(target, token) as node:
            found = await node.call(f"{_G}/get-groups.json", wire.GroupsQuery(
                service_id=service, zone_id=zone_id, name=name, status=status),
                wire.GroupsResponse)
            asked = wire.RegionRequest(region_id=target.region)
            tags = await node.call(f"{_G}/get-all-group-tags.json", asked,
                                   wire.AllGroupTagsResponse)
            members = await node.call(f"{_G}/get-group-instances.json", wire.GroupIdQuery(),
                                      wire.GroupInstancesResponse)
            ops = await node.call(f"{_G}/get-all-group-operations.json", asked,
                                  wire.AllGroupOperationsResponse)
            registered = await load_registered(node)
        by_tags = {t.group_id: dict(t.tags or {}) for t in tags.all_group_tags or ()}
        by_ops = {o.group_id: sorted(o.operations or ()) for o in ops.all_group_operations or ()}
        by_members: dict[int | None, list[str]] = {}
        for m in members.group_instances or ():
            by_members.setdefault(m.group_id, []).append(m.instance_id or "")
        rows.extend(group_row(g, by_tags.get(g.group_id, {}),
                              sorted(by_members.get(g.group_id, [])),
                              by_ops.get(g.group_id, []), registered)
                    for g in sorted(found.groups or (), key=lambda g: g.group_id or 0))

    run(target, main())
    show(target.as_json, GROUP_COLUMNS, rows if target.as_json else [_cells(r) for r in rows])


def _group_fields(fn: F) -> F:
    for decorate in (
            option("--status", metavar="STATUS", type=click.Choice(["active", "inactive"]),
                   help="active (its route rules use it) or inactive; add: active."),
            option("--description", metavar="DESCRIPTION", help="What the group is for."),
            option("--app-id", metavar="APP", help="The application the group belongs to.")):
        fn = decorate(fn)
    return fn


async def _write_group(node: Node, g: wire.Group, opts: dict[str, Any]) -> None:
    await node.call(f"{_G}/update-groups.json", wire.GroupsWrite(groups=[g], **context(opts)),
                    wire.StatusOnlyResponse)


@group.command("add")
@click.argument("service")
@click.argument("zone_id", metavar="ZONE")
@click.argument("name")
@_group_fields
@option("--force", is_flag=True, help="Add a group the registry has no instance for.")
@write_options
@token_option("the write role")
@client_command
def add(target: Target, service: str, zone_id: str, name: str, app_id: str | None,
        description: str | None, status: str | None, token: str | None,
        **opts: Any) -> None:
    """Add a group: the instances of SERVICE in ZONE whose groupId is NAME. Refused when the
    service has no registered instance there (a typo would route to nobody) unless --force."""

    async def main() -> None:
        async with Node(target, token) as node:
            existing = await _find(node, service, zone_id, name)
            if existing is not None:
                raise NothingToChange(f"group {existing.group_id} ({existing.group_key}) "
                                      f"exists already (`artemis group update` changes it); "
                                      f"nothing was changed")
            registered = await load_registered(node, service)
            if not registered.in_group(service, zone_id, name) and not opts["force"]:
                names = {f"{i.zone_id} {(i.group_id or '').strip() or 'default'}"
                         for i in registered.of(service)}
                near = closest(f"{zone_id} {name}", names)
                raise Refused(f"service {service} has no registered instance in zone {zone_id} "
                              f"with groupId {name}" + (f" (closest zone and group: "
                                                        f"{', '.join(near)})" if near else "")
                              + "; nothing was changed (--force adds it all the same)")
            wanted = wire.Group(service_id=service, region_id=target.region, zone_id=zone_id,
                                name=name, app_id=app_id, description=description,
                                status=status or "active")
            if opts["dry_run"]:
                report(target.as_json, {"action": "add", "dryRun": True,
                                        "group": _plain(wanted)},
                       [f"would add group {service}/{target.region}/{zone_id}/{name}; nothing "
                        f"was changed (--dry-run)"])
                return
            await _write_group(node, wanted, opts)
            made = await _find(node, service, zone_id, name)
            if made is None:
                raise NotAsWritten("the node did not list the group after adding it")
            row = await _row(node, made)
        _say(target, "add", [row], f"added group {row['groupId']} ({row['groupKey']})")

    run(target, main())


def _plain(g: wire.Group) -> dict[str, Any]:
    return {"serviceId": g.service_id, "region": g.region_id, "zone": g.zone_id,
            "name": g.name, "appId": g.app_id, "description": g.description, "status": g.status}



@group.command("update")
@click.argument("group_id", type=click.IntRange(min=1), metavar="GROUP_ID")
@_group_fields
@write_options
@token_option("the write role")
@client_command
def update(target: Target, group_id: int, app_id: str | None, description: str | None,
           status: str | None, token: str | None, **opts: Any) -> None:
    """Change a group's app id, description or status (what is not given stays)."""

    async def main() -> None:
        async with Node(target, token) as node:
            before = await group_by_id(node, group_id)
            wanted = wire.Group(
                service_id=before.service_id, region_id=before.region_id,
                zone_id=before.zone_id, name=before.name,
                app_id=before.app_id if app_id is None else app_id,
                description=before.description if description is None else description,
                status=before.status if status is None else status)
            changed = {k: v for k, v in _plain(wanted).items() if _plain(before)[k] != v}
            if not changed:
                raise NothingToChange(f"group {group_id} ({before.group_key}) already is as "
                                      f"asked; nothing was changed")
            if opts["dry_run"]:
                report(target.as_json, {"action": "update", "dryRun": True,
                                        "groupId": group_id, "changes": changed},
                       [f"would change group {group_id}: " + ", ".join(
                           f"{k} {_plain(before)[k]} -> {v}" for k, v in changed.items())
                        + "; nothing was changed (--dry-run)"])
                return
            await _write_group(node, wanted, opts)
            row = await _row(node, await group_by_id(node, group_id))
        _say(target, "update", [row], f"changed group {group_id}: " + ", ".join(
            f"{k} {_plain(before)[k]} -> {v}" for k, v in changed.items()))

    run(target, main())


@group.command("delete")
@click.argument("group_ids", nargs=-1, required=True, type=click.IntRange(min=1),
                metavar="GROUP_ID...")
@write_options
@token_option("the write role")
@client_command
def delete(target: Target, group_ids: tuple[int, ...], token: str | None, **opts: Any) -> None:
    """Delete groups (their route rules no longer use them). Asks first (--yes)."""

    async def main() -> None:
        async with Node(target, token) as node:
            rows = [await _row(node, await group_by_id(node, gid)) for gid in group_ids]
            if opts["dry_run"]:
                _say(target, "delete", rows, "would delete these groups; nothing was changed "
                     "(--dry-run)")
                return
            if not opts["yes"] and not target.as_json:
                show(False, GROUP_COLUMNS, [_cells(r) for r in rows], err=True)
            confirm(f"Delete {len(rows)} group(s)?", opts["yes"])
            await node.call(f"{_G}/delete-groups.json", wire.IdsWrite(
                group_ids=list(group_ids), **context(opts)), wire.StatusOnlyResponse)
            left = await node.call(f"{_G}/get-groups.json", wire.GroupsQuery(),
                                   wire.GroupsResponse)
            still = sorted({g.group_id or 0 for g in left.groups or ()} & set(group_ids))
        if still:
            raise NotAsWritten(f"the node still lists group(s) {still} after the delete")
        report(target.as_json, {"action": "delete", "groupIds": list(group_ids),
                                "deleted": rows},
               [f"deleted group(s) {', '.join(map(str, group_ids))}"])

    run(target, main())


@group.command("tag")
@click.argument("group_id", type=click.IntRange(min=1), metavar="GROUP_ID")
@click.argument("tags", nargs=-1, required=True, callback=key_values, metavar="KEY=VALUE...")
@write_options
@token_option("the write role")
@client_command
def tag(target: Target, group_id: int, tags: dict[str, str], token: str | None,
        **opts: Any) -> None:
    """Set tags of a group (its metadata in route rules)."""

    async def main() -> None:
        async with Node(target, token) as node:
            g = await group_by_id(node, group_id)
            before = await _tags(node, group_id)
            changed = {k: v for k, v in tags.items() if before.get(k) != v}
            if not changed:
                raise NothingToChange(f"group {group_id} already has these tags; nothing was "
                                      f"changed")
            if opts["dry_run"]:
                report(target.as_json, {"action": "tag", "dryRun": True, "groupId": group_id,
                                        "before": before, "after": {**before, **changed}},
                       [f"would set {_kv(changed)} on group {group_id}; nothing was changed "
                        f"(--dry-run)"])
                return
            await node.call(f"{_G}/insert-group-tags.json", wire.GroupTagsWrite(
                group_tags_list=[wire.GroupTags(group_id=group_id, tags=changed)],
                **context(opts)), wire.StatusOnlyResponse)
            after = await _tags(node, group_id)
        report(target.as_json, {"action": "tag", "groupId": group_id, "before": before,
                                "after": after},
               [f"group {group_id} ({g.group_key}) tags now: {_kv(after) or 'none'} "
                f"(before: {_kv(before) or 'none'})"])

    run(target, main())


def _kv(tags: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


@group.command("untag")
@click.argument("group_id", type=click.IntRange(min=1), metavar="GROUP_ID")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@write_options
@token_option("the write role")
@client_command
def untag(target: Target, group_id: int, keys: tuple[str, ...], token: str | None,
          **opts: Any) -> None:
    """Delete tags of a group. Asks first (--yes)."""

    async def main() -> None:
        async with Node(target, token) as node:
            g = await group_by_id(node, group_id)
            before = await _tags(node, group_id)
            gone = [k for k in keys if k in before]
            if not gone:
                raise NothingToChange(f"group {group_id} has none of these tags (its tags: "
                                      f"{_kv(before) or 'none'}); nothing was changed")
            if opts["dry_run"]:
                report(target.as_json, {"action": "untag", "dryRun": True,
                                        "groupId": group_id, "keys": gone},
                       [f"would delete {', '.join(gone)} of group {group_id}; nothing was "
                        f"changed (--dry-run)"])
                return
            confirm(f"Delete tag(s) {', '.join(gone)} of group {group_id} ({g.group_key})?",
                    opts["yes"])
            for key in gone:
                await node.call(f"{_G}/delete-group-tags.json", wire.DeleteGroupTagsRequest(
                    group_id=group_id, tag=key, **context(opts)), wire.StatusOnlyResponse)
            after = await _tags(node, group_id)
        report(target.as_json, {"action": "untag", "groupId": group_id, "before": before,
                                "after": after},
               [f"group {group_id} ({g.group_key}) tags now: {_kv(after) or 'none'} "
                f"(before: {_kv(before)})"])

    run(target, main())


@group.command("members")
@click.argument("group_id", type=click.IntRange(min=1), metavar="GROUP_ID")
@token_option("the read role")
@client_command
def members(target: Target, group_id: int, token: str | None) -> None:
    """List a group's explicit members (instance ids clients add to the group whatever their
    groupId), and whether each is registered."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        async with Node(target, token) as node:
            g = await group_by_id(node, group_id)
            found = await member_ids(node, group_id)
            registered = await load_registered(node, g.service_id)
        for instance_id, member_id in sorted(found.items()):
            known = registered.instance(g.service_id or "", instance_id)
            rows.append({"memberId": member_id, "groupId": group_id, "instanceId": instance_id,
                         "registered": known is not None,
                         "status": known.status if known is not None else None})

    run(target, main())
    show(target.as_json, ("memberId", "instanceId", "registered", "status"), rows)


@group.command("add-member")
@click.argument("group_id", type=click.IntRange(min=1), metavar="GROUP_ID")
@click.argument("instance_ids", nargs=-1, required=True, metavar="INSTANCE_ID...")
@option("--force", is_flag=True, help="Add instance ids the service has not registered.")
@write_options
@token_option("the write role")
@client_command
def add_member(target: Target, group_id: int, instance_ids: tuple[str, ...],
               token: str | None, **opts: Any) -> None:
    """Make instances explicit members of a group. Refused for an instance id its service has
    not registered (with the closest ones) unless --force."""

    async def main() -> None:
        async with Node(target, token) as node:
            g = await group_by_id(node, group_id)
            before = await member_ids(node, group_id)
            wanted = [i for i in dict.fromkeys(instance_ids)
                      if i.lower() not in {m.lower() for m in before}]
            if not wanted:
                raise NothingToChange(f"group {group_id} already has these members; nothing "
                                      f"was changed")
            registered = await load_registered(node, g.service_id)
            unknown_ids(registered, g.service_id or "", wanted, opts["force"])
            if opts["dry_run"]:
                report(target.as_json, {"action": "add-member", "dryRun": True,
                                        "groupId": group_id, "added": wanted},
                       [f"would add {', '.join(wanted)} to group {group_id}; nothing was "
                        f"changed (--dry-run)"])
                return
            await node.call(f"{_G}/insert-group-instances.json", wire.GroupInstancesWrite(
                group_instances=[wire.GroupInstance(group_id=group_id, instance_id=i)
                                 for i in wanted], **context(opts)), wire.StatusOnlyResponse)
            after = await member_ids(node, group_id)
        report(target.as_json, {"action": "add-member", "groupId": group_id,
                                "before": sorted(before), "after": sorted(after)},
               [f"group {group_id} ({g.group_key}) members now: {', '.join(sorted(after))} "
                f"(before: {', '.join(sorted(before)) or 'none'})"])

    run(target, main())


def unknown_ids(registered: Registered, service: str, ids: list[str], force: bool) -> None:
    """Refuse instance ids `service` has not registered (closest ones named), unless force."""
    known = {i.instance_id or "" for i in registered.of(service)}
    missing = [i for i in ids if registered.instance(service, i) is None]
    if missing and not force:
        hints = [f"{m} (closest: {', '.join(near)})" if (near := closest(m, known)) else m
                 for m in missing]
        raise Refused(f"service {service} has no registered instance {'; '.join(hints)}; "
                      f"nothing was changed (--force all the same)")


@group.command("remove-member")
@click.argument("group_id", type=click.IntRange(min=1), metavar="GROUP_ID")
@click.argument("instance_ids", nargs=-1, required=True, metavar="INSTANCE_ID...")
@write_options
@token_option("the write role")
@client_command
def remove_member(target: Target, group_id: int, instance_ids: tuple[str, ...],
                  token: str | None, **opts: Any) -> None:
    """Remove explicit members from a group. Asks first (--yes)."""

    async def main() -> None:
        async with Node(target, token) as node:
            g = await group_by_id(node, group_id)
            before = await member_ids(node, group_id)
            by_lower = {k.lower(): (k, v) for k, v in before.items()}
            gone = [by_lower[i.lower()] for i in instance_ids if i.lower() in by_lower]
            if not gone:
                raise NothingToChange(f"group {group_id} has none of these members (its "
                                      f"members: {', '.join(sorted(before)) or 'none'}); "
                                      f"nothing was changed")
            names = ", ".join(name for name, _ in gone)
            if opts["dry_run"]:
                report(target.as_json, {"action": "remove-member", "dryRun": True,
                                        "groupId": group_id,
                                        "removed": [name for name, _ in gone]},
                       [f"would remove {names} from group {group_id}; nothing was changed "
                        f"(--dry-run)"])
                return
            confirm(f"Remove {names} from group {group_id} ({g.group_key})?", opts["yes"])
            await node.call(f"{_G}/delete-group-instances.json", wire.GroupInstancesWrite(
                group_instance_ids=[member_id for _, member_id in gone], **context(opts)),
                wire.StatusOnlyResponse)
            after = await member_ids(node, group_id)
        report(target.as_json, {"action": "remove-member", "groupId": group_id,
                                "before": sorted(before), "after": sorted(after)},
               [f"group {group_id} ({g.group_key}) members now: "
                f"{', '.join(sorted(after)) or 'none'} (before: {', '.join(sorted(before))})"])

    run(target, main())
