"""The canary and logical-instance commands (docs/management.md, "Group operations, tags,
members, logical instances, canary").

  * `artemis canary show | set | clear SERVICE APP_ID`: the service's canary instances, the
    members of its canary group (zone `canary`, named after the app id) in its
    `canary-route-rule`, made when missing with a staged weight of 5.
  * `artemis logical list | set | delete`: instances operators define for a service without
    registering them; discovery shows them in the service's `logicInstances`.

As every write: checked first (unknown instance ids refused with the closest ones unless
--force; nothing to change: exit 5), clearing and deleting ask first (--yes), what is reported
is read back.
"""

from __future__ import annotations

from typing import Any, Final

import click
import msgspec

from artemis import wire
from artemis.cli.errors import NotAsWritten, NothingToChange
from artemis.cli.groups import context, member_ids, unknown_ids
from artemis.cli.management import write_options
from artemis.cli.output import confirm, report, show
from artemis.cli.target import (
    Node,
    Target,
    client_command,
    key_values,
    option,
    run,
    token_option,
)
from artemis.cli.view import MANAGEMENT, load_registered

__all__ = ["LOGICAL_COLUMNS", "canary", "logical"]

CANARY_ZONE: Final = "canary"
CANARY_RULE: Final = "canary-route-rule"
LOGICAL_COLUMNS = ("id", "serviceId", "instanceId", "url", "ip", "port", "zone", "group")
_G: Final = f"{MANAGEMENT}/group"


async def _canary(node: Node, service: str, app: str) -> dict[str, Any]:
    """The canary group of (service, app), its members and its weights; members [] and no group
    when there is none yet."""
    found = await node.call(f"{_G}/get-groups.json", wire.GroupsQuery(
        service_id=service, zone_id=CANARY_ZONE, name=app), wire.GroupsResponse)
    group = found.groups[0] if found.groups else None
    members = sorted(await member_ids(node, group.group_id or 0)) if group else []
    weight = staged = None
    if group is not None:
        rules = await node.call(f"{_G}/get-route-rules.json", wire.RouteRulesQuery(
            service_id=service, name=CANARY_RULE), wire.RouteRulesResponse)
        for rule in rules.route_rules or ():
            links = await node.call(f"{_G}/get-route-rule-groups.json",
                                    wire.RouteRuleGroupsQuery(route_rule_id=rule.route_rule_id,
                                                              group_id=group.group_id),
                                    wire.RouteRuleGroupsResponse)
            for link in links.route_rule_groups or ():
                weight, staged = link.weight, link.unreleased_weight
    return {"serviceId": service, "appId": app,
            "groupId": group.group_id if group else None,
            "groupKey": group.group_key if group else None, "members": members,
            "weight": weight, "staged": staged}


def _text(state: dict[str, Any]) -> str:
    if state["groupId"] is None:
        return f"{state['serviceId']} has no canary group for app {state['appId']}"
    return (f"canary of {state['serviceId']} for app {state['appId']} (group "
            f"{state['groupId']}): {', '.join(state['members']) or 'no instances'}; weight in "
            f"{CANARY_RULE}: {'none (5)' if state['weight'] is None else state['weight']} "
            f"released, {state['staged']} staged")


@click.group()
def canary() -> None:
    """A service's canary instances (its canary group in its canary-route-rule)."""


@canary.command("show")
@click.argument("service")
@click.argument("app_id")
@token_option("the read role")
@client_command
def show_canary(target: Target, service: str, app_id: str, token: str | None) -> None:
    """Show a service's canary instances for an app id, and the canary group's weights."""
    found: dict[str, Any] = {}

    async def main() -> None:
        async with Node(target, token) as node:
            found.update(await _canary(node, service, app_id))

    run(target, main())
    report(target.as_json, found, [_text(found)])


async def _set(target: Target, service: str, app_id: str, ids: list[str], token: str | None,
               opts: dict[str, Any], force: bool) -> None:
    async with Node(target, token) as node:
        before = await _canary(node, service, app_id)
        if {i.lower() for i in before["members"]} == {i.lower() for i in ids} and (
                before["groupId"] is not None):
            raise NothingToChange(f"{_text(before)}: already so; nothing was changed")
        if ids:
            unknown_ids(await load_registered(node, service), service, ids, force)
        if opts["dry_run"]:
            report(target.as_json, {"action": "canary", "dryRun": True, "before": before,
                                    "members": ids},
                   [f"would make the canary of {service} for app {app_id}: "
                    f"{', '.join(ids) or 'no instances'} (now: "
                    f"{', '.join(before['members']) or 'none'}); nothing was changed "
                    f"(--dry-run)"])
            return
        if not ids:
            confirm(f"Clear the canary of {service} for app {app_id} ("
                    f"{', '.join(before['members']) or 'no instances'})?", opts["yes"])
        await node.call(f"{MANAGEMENT}/canary/update-canary-ips.json", wire.CanaryRequest(
            service_id=service, app_id=app_id, canary_ips=ids, **context(opts)),
            wire.StatusOnlyResponse)
        after = await _canary(node, service, app_id)
    report(target.as_json, {"action": "canary", "before": before, "after": after},
           [_text(after) + f" (before: {', '.join(before['members']) or 'none'})"])


@canary.command("set")
@click.argument("service")
@click.argument("app_id")
@click.argument("instance_ids", nargs=-1, required=True, metavar="INSTANCE_ID...")
@option("--force", is_flag=True, help="Use instance ids the service has not registered.")
@write_options
@token_option("the write role")
@client_command
def set_canary(target: Target, service: str, app_id: str, instance_ids: tuple[str, ...],
               force: bool, token: str | None, **opts: Any) -> None:
    """Make these instances the service's canary for the app id (the others leave it)."""
    run(target, _set(target, service, app_id, list(dict.fromkeys(instance_ids)), token, opts,
                     force))


@canary.command("clear")
@click.argument("service")
@click.argument("app_id")
@write_options
@token_option("the write role")
@client_command
def clear_canary(target: Target, service: str, app_id: str, token: str | None,
                 **opts: Any) -> None:
    """Take every instance out of the service's canary for the app id. Asks first (--yes)."""
    run(target, _set(target, service, app_id, [], token, opts, False))


def _logical_row(item: wire.ServiceInstance) -> dict[str, Any]:
    return {"id": item.id, "serviceId": item.service_id, "instanceId": item.instance_id,
            "url": item.url, "ip": item.ip, "port": item.port, "zone": item.zone_id,
            "group": item.group_id, "protocol": item.protocol,
            "healthCheckUrl": item.health_check_url, "machineName": item.machine_name,
            "description": item.description, "metadata": item.metadata}


async def _logical(node: Node, service: str | None,
                   instance_id: str | None) -> list[wire.ServiceInstance]:
    found = await node.call(f"{_G}/get-service-instances.json", wire.ServiceInstancesQuery(
        service_id=service, instance_id=instance_id), wire.ServiceInstancesResponse)
    return sorted(found.service_instances or (),
                  key=lambda i: (i.service_id or "", i.instance_id or ""))


@click.group()
def logical() -> None:
    """Logical instances: instances operators define for a service without registering them."""


@logical.command("list")
@option("--service", metavar="SERVICE", help="Only this service's.")
@token_option("the read role")
@client_command
def list_logical(target: Target, service: str | None, token: str | None) -> None:
    """List logical instances."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        async with Node(target, token) as node:
            rows.extend(_logical_row(i) for i in await _logical(node, service, None))

    run(target, main())
    show(target.as_json, LOGICAL_COLUMNS, rows)


_FIELDS: Final = ("url", "ip", "port", "zone_id", "group_id", "protocol", "health_check_url",
                  "machine_name", "description", "metadata")


@logical.command("set")
@click.argument("service")
@click.argument("instance_id")
@option("--url", metavar="URL", required=True, help="Where the instance serves.")
@option("--ip", metavar="IP", help="Its IP address (a server pull-out covers it).")
@option("--port", metavar="PORT", type=click.IntRange(0, 65535), default=0, shown="0",
        help="Its port.")
@option("--zone-id", metavar="ZONE", help="Its zone.")
@option("--group-id", metavar="GROUP", help="Its group id.")
@option("--protocol", metavar="NAME", help="Its protocol.")
@option("--health-check-url", metavar="URL", help="Its health check URL.")
@option("--machine-name", metavar="NAME", help="Its machine's name.")
@option("--description", metavar="DESCRIPTION", help="What it is.")
@option("--metadata", metavar="KEY=VALUE", multiple=True, callback=key_values,
        help="Its metadata; repeat it for several.")
@write_options
@token_option("the write role")
@client_command
def set_logical(target: Target, service: str, instance_id: str, token: str | None,
                **values: Any) -> None:
    """Add a logical instance, or change one (every field is set as given)."""
    opts = {k: values.pop(k) for k in ("operator", "reason", "dry_run", "yes")}
    values["metadata"] = values["metadata"] or None
    wanted = wire.ServiceInstance(service_id=service, instance_id=instance_id,
                                  region_id=target.region, **values)

    async def main() -> None:
        async with Node(target, token) as node:
            found = await _logical(node, service, instance_id)
            before = found[0] if found else None
            changed = [f for f in _FIELDS if before is None
                       or getattr(before, f) != getattr(wanted, f)]
            if before is not None and not changed:
                raise NothingToChange(f"logical instance {service} {instance_id} already is as "
                                      f"asked; nothing was changed")
            what = "add" if before is None else "change " + ", ".join(changed) + " of"
            if opts["dry_run"]:
                report(target.as_json, {"action": "logical", "dryRun": True,
                                        "instance": msgspec.to_builtins(wanted),
                                        "changed": changed},
                       [f"would {what} logical instance {service} {instance_id}; nothing was "
                        f"changed (--dry-run)"])
                return
            await node.call(f"{_G}/insert-service-instances.json", wire.ServiceInstancesWrite(
                service_instances=[wanted], **context(opts)), wire.StatusOnlyResponse)
            after = await _logical(node, service, instance_id)
        rows = [_logical_row(i) for i in after]
        done = "added" if before is None else "changed " + ", ".join(changed) + " of"
        report(target.as_json, {"action": "logical", "before": _logical_row(before)
                                if before else None, "after": rows[0] if rows else None},
               [f"{done} logical instance {service} {instance_id}"], LOGICAL_COLUMNS, rows)

    run(target, main())


@logical.command("delete")
@click.argument("service")
@click.argument("instance_id")
@write_options
@token_option("the write role")
@client_command
def delete_logical(target: Target, service: str, instance_id: str, token: str | None,
                   **opts: Any) -> None:
    """Delete a logical instance. Asks first (--yes)."""

    async def main() -> None:
        async with Node(target, token) as node:
            found = await _logical(node, service, instance_id)
            if not found:
                others = [i.instance_id or "" for i in await _logical(node, service, None)]
                raise NothingToChange(f"{service} has no logical instance {instance_id} (its "
                                      f"logical instances: {', '.join(others) or 'none'}); "
                                      f"nothing was changed")
            if opts["dry_run"]:
                report(target.as_json, {"action": "delete", "dryRun": True,
                                        "instance": _logical_row(found[0])},
                       [f"would delete logical instance {service} {instance_id}; nothing was "
                        f"changed (--dry-run)"])
                return
            confirm(f"Delete logical instance {service} {instance_id} ({found[0].url})?",
                    opts["yes"])
            await node.call(f"{_G}/delete-service-instances.json", wire.ServiceInstancesWrite(
                service_instance_ids=[i.id for i in found if i.id is not None],
                **context(opts)), wire.StatusOnlyResponse)
            left = await _logical(node, service, instance_id)
        if left:
            raise NotAsWritten("the node still lists the logical instance after the delete")
        report(target.as_json, {"action": "delete", "deleted": _logical_row(found[0])},
               [f"deleted logical instance {service} {instance_id}"])

    run(target, main())
