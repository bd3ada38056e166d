"""The route-rule commands: `artemis route-rule list | show | create | update | delete | weight |
release | remove-group` (docs/management.md, "Splitting traffic: groups and route rules").

A route rule of a service gives its groups weights. A weight is staged first (`weight` stages
one; `create` stages every group's) and discovery shows it only once released (`release`), so
several weights change for clients at once. Each command checks before it writes (a rule that
exists, a group of another service or with no instance, a weight already staged, nothing to
release: exit 4 or 5, nothing sent); `release`, `delete` and `remove-group` show what they will
change and ask first (--yes); what is reported is read back, and `release` adds what discovery
now shows for the service.
"""

from __future__ import annotations

from typing import Any, Final

import click

from artemis import wire
from artemis.cli.errors import NotAsWritten, NothingToChange, Refused
from artemis.cli.groups import context
from artemis.cli.management import write_options
from artemis.cli.output import confirm, report, show
from artemis.cli.target import Node, Target, client_command, option, run, token_option
from artemis.cli.view import MANAGEMENT, closest, group_by_id, load_registered

__all__ = ["LINK_COLUMNS", "RULE_COLUMNS", "route_rule", "rule_row"]

RULE_COLUMNS = ("routeRuleId", "serviceId", "name", "status", "strategy", "groups")
LINK_COLUMNS = ("groupId", "groupKey", "status", "weight", "staged", "pending")
_G: Final = f"{MANAGEMENT}/group"


async def _rule(node: Node, rule_id: int) -> wire.ServiceRouteRule:
    found = await node.call(f"{_G}/get-route-rules.json", wire.RouteRulesQuery(
        route_rule_id=rule_id), wire.RouteRulesResponse)
    if found.route_rules:
        return found.route_rules[0]
    every = await node.call(f"{_G}/get-route-rules.json", wire.RouteRulesQuery(),
                            wire.RouteRulesResponse)
    known = [f"{r.route_rule_id} ({r.service_id} {r.name})" for r in every.route_rules or ()]
    raise Refused(f"there is no route rule {rule_id}" + (
        f" (route rules: {', '.join(known[:5])}{', ...' if len(known) > 5 else ''})"
        if known else " (there are none)") + "; nothing was changed")


async def _links(node: Node, rule_id: int) -> list[dict[str, Any]]:
    """The groups of a route rule with their released and staged weights."""
    found = await node.call(f"{_G}/get-route-rule-groups.json", wire.RouteRuleGroupsQuery(
        route_rule_id=rule_id), wire.RouteRuleGroupsResponse)
    groups = await node.call(f"{_G}/get-groups.json", wire.GroupsQuery(), wire.GroupsResponse)
    by_id = {g.group_id: g for g in groups.groups or ()}
    out = []
    for link in sorted(found.route_rule_groups or (), key=lambda r: r.group_id or 0):
        g = by_id.get(link.group_id)
        out.append({"routeRuleGroupId": link.route_rule_group_id, "groupId": link.group_id,
                    "groupKey": g.group_key if g else None,
                    "status": g.status if g else "deleted", "weight": link.weight,
                    "staged": link.unreleased_weight,
                    "pending": link.unreleased_weight != link.weight})
    return out


def _weight(weight: int | None) -> str:
    return "none (5)" if weight is None else str(weight)


def rule_row(rule: wire.ServiceRouteRule, links: list[dict[str, Any]]) -> dict[str, Any]:
    return {"routeRuleId": rule.route_rule_id, "serviceId": rule.service_id, "name": rule.name,
            "status": rule.status, "strategy": rule.strategy, "description": rule.description,
            "groups": links}


def _groups_text(links: list[dict[str, Any]]) -> str:
    parts = []
    for link in links:
        name = (link["groupKey"] or f"group {link['groupId']}").rsplit("/", 2)[-2:]
        shown = "-" if link["weight"] is None else link["weight"]
        staged = f" (staged {link['staged']})" if link["pending"] else ""
        parts.append(f"{'/'.join(name)} {shown}{staged}")
    return ", ".join(parts)


def _link_cells(links: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**link, "pending": "yes" if link["pending"] else "-"} for link in links]


@click.group(name="route-rule")
def route_rule() -> None:
    """Route rules: weighted groups of a service's instances, staged and released."""


@route_rule.command("list")
@option("--service", metavar="SERVICE", help="Only this service's route rules.")
@token_option("the read role")
@client_command
def list_rules(target: Target, service: str | None, token: str | None) -> None:
    """List route rules with their groups' weights (released; staged when it differs)."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        async with Node(target, token) as node:
            found = await node.call(f"{_G}/get-route-rules.json", wire.RouteRulesQuery(
                service_id=service), wire.RouteRulesResponse)
            for rule in sorted(found.route_rules or (), key=lambda r: r.route_rule_id or 0):
                rows.append(rule_row(rule, await _links(node, rule.route_rule_id or 0)))

    run(target, main())
    show(target.as_json, RULE_COLUMNS, rows if target.as_json else [
        {**r, "groups": _groups_text(r["groups"])} for r in rows])


@route_rule.command("show")
@click.argument("rule_id", type=click.IntRange(min=1), metavar="RULE_ID")
@token_option("the read role")
@client_command
def show_rule(target: Target, rule_id: int, token: str | None) -> None:
    """Show a route rule and each of its groups: the weight discovery shows (released), the
    staged one, and whether a release is pending."""
    found: dict[str, Any] = {}

    async def main() -> None:
        async with Node(target, token) as node:
            found.update(rule_row(await _rule(node, rule_id), await _links(node, rule_id)))

    run(target, main())
    report(target.as_json, found, [
        f"route rule {rule_id}: {found['serviceId']} {found['name']} ({found['status']}, "
        f"{found['strategy']})"], LINK_COLUMNS, _link_cells(found["groups"]))


def _group_spec(ctx: click.Context, param: click.Parameter,
                values: tuple[str, ...]) -> list[tuple[str, str, int]]:
    out = []
    for value in values:
        where, sep, weight = value.rpartition("=")
        zone, slash, name = where.partition("/")
        if not sep or not slash or not zone or not name or not weight.isdigit():
            raise click.BadParameter(f"{value!r} is not ZONE/NAME=WEIGHT", ctx, param)
        out.append((zone, name, int(weight)))
    return out


@route_rule.command("create")
@click.argument("service")
@click.argument("name")
@option("--group", "groups", metavar="ZONE/NAME=WEIGHT", multiple=True, required=True,
        callback=_group_spec, help="A group and its staged weight (0 to 10000); repeat it.")
@option("--status", metavar="STATUS", type=click.Choice(["active", "inactive"]),
        default="active", help="Whether discovery shows the rule.")
@option("--strategy", metavar="NAME", default="weighted-round-robin",
        help="The strategy clients apply.")
@option("--description", metavar="DESCRIPTION", help="What the rule is for.")
@option("--force", is_flag=True, help="Use a group the registry has no instance for.")
@write_options
@token_option("the write role")
@client_command
def create(target: Target, service: str, name: str, groups: list[tuple[str, str, int]],
           status: str, strategy: str, description: str | None, force: bool,
           token: str | None, **opts: Any) -> None:
    """Create a route rule with its groups (added if missing) and their staged weights;
    `artemis route-rule release` makes them what discovery shows."""

    async def main() -> None:
        async with Node(target, token) as node:
            existing = await node.call(f"{_G}/get-route-rules.json", wire.RouteRulesQuery(
                service_id=service, name=name), wire.RouteRulesResponse)
            if existing.route_rules:
                rule = existing.route_rules[0]
                raise NothingToChange(f"route rule {rule.route_rule_id} ({service} {name}) "
                                      f"exists already (`artemis route-rule weight` stages "
                                      f"weights); nothing was changed")
            registered = await load_registered(node, service)
            known = await node.call(f"{_G}/get-groups.json", wire.GroupsQuery(
                service_id=service), wire.GroupsResponse)
            have = {((g.zone_id or "").lower(), (g.name or "").lower()) for g in known.groups or ()}
            where = {f"{i.zone_id}/{(i.group_id or '').strip() or 'default'}"
                     for i in registered.of(service)}
            empty = [f"{z}/{n}" for z, n, _ in groups if (z.lower(), n.lower()) not in have
                     and not registered.in_group(service, z, n)]
            if empty and not force:
                hints = [f"{e} (closest: {', '.join(near)})" if (near := closest(e, where))
                         else e for e in empty]
                raise Refused(f"no group and no registered instance of {service} for "
                              f"{'; '.join(hints)}; nothing was changed (--force creates it "
                              f"all the same)")
            request = wire.CreateRouteRuleRequest(
                route_rule=wire.ServiceRouteRule(service_id=service, name=name, status=status,
                                                 strategy=strategy, description=description),
                groups=[wire.GroupWeight(service_id=service, region_id=target.region,
                                         zone_id=z, name=n, status="active", weight=w)
                        for z, n, w in groups], **context(opts))
            if opts["dry_run"]:
                report(target.as_json, {"action": "create", "dryRun": True,
                                        "serviceId": service, "name": name,
                                        "groups": [{"zone": z, "name": n, "staged": w}
                                                   for z, n, w in groups]},
                       [f"would create route rule {service} {name} with staged weights "
                        + ", ".join(f"{z}/{n} {w}" for z, n, w in groups)
                        + "; nothing was changed (--dry-run)"])
                return
            await node.call(f"{_G}/create-route-rule.json", request, wire.StatusOnlyResponse)
            made = await node.call(f"{_G}/get-route-rules.json", wire.RouteRulesQuery(
                service_id=service, name=name), wire.RouteRulesResponse)
            if not made.route_rules:
                raise NotAsWritten("the node did not list the route rule after creating it")
            rule = made.route_rules[0]
            row = rule_row(rule, await _links(node, rule.route_rule_id or 0))
        report(target.as_json, {"action": "create", **row}, [
            f"created route rule {row['routeRuleId']} ({service} {name}); its weights are "
            f"staged (discovery shows a group without a released weight as 5): `artemis "
            f"route-rule release {row['routeRuleId']}` makes discovery show them"],
            LINK_COLUMNS, _link_cells(row["groups"]))

    run(target, main())


@route_rule.command("update")
@click.argument("rule_id", type=click.IntRange(min=1), metavar="RULE_ID")
@option("--status", metavar="STATUS", type=click.Choice(["active", "inactive"]),
        help="Whether discovery shows the rule.")
@option("--strategy", metavar="NAME", help="The strategy clients apply.")
@option("--description", metavar="DESCRIPTION", help="What the rule is for.")
@write_options
@token_option("the write role")
@client_command
def update(target: Target, rule_id: int, status: str | None, strategy: str | None,
           description: str | None, token: str | None, **opts: Any) -> None:
    """Change a route rule's status, strategy or description (what is not given stays)."""

    async def main() -> None:
        async with Node(target, token) as node:
            before = await _rule(node, rule_id)
            wanted = wire.ServiceRouteRule(
                service_id=before.service_id, name=before.name,
                status=before.status if status is None else status,
                strategy=before.strategy if strategy is None else strategy,
                description=before.description if description is None else description)
            changed = {k: (getattr(before, k), getattr(wanted, k))
                       for k in ("status", "strategy", "description")
                       if getattr(before, k) != getattr(wanted, k)}
            if not changed:
                raise NothingToChange(f"route rule {rule_id} already is as asked; nothing was "
                                      f"changed")
            text = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
            if opts["dry_run"]:
                report(target.as_json, {"action": "update", "dryRun": True,
                                        "routeRuleId": rule_id,
                                        "changes": {k: b for k, (_, b) in changed.items()}},
                       [f"would change route rule {rule_id}: {text}; nothing was changed "
                        f"(--dry-run)"])
                return
            await node.call(f"{_G}/update-route-rules.json", wire.RouteRulesWrite(
                route_rules=[wanted], **context(opts)), wire.StatusOnlyResponse)
            row = rule_row(await _rule(node, rule_id), await _links(node, rule_id))
        report(target.as_json, {"action": "update", **row},
               [f"changed route rule {rule_id}: {text}"])

    run(target, main())


@route_rule.command("delete")
@click.argument("rule_ids", nargs=-1, required=True, type=click.IntRange(min=1),
                metavar="RULE_ID...")
@write_options
@token_option("the write role")
@client_command
def delete(target: Target, rule_ids: tuple[int, ...], token: str | None, **opts: Any) -> None:
    """Delete route rules: discovery stops showing them. Asks first (--yes)."""

    async def main() -> None:
        async with Node(target, token) as node:
            rows = [rule_row(await _rule(node, r), await _links(node, r)) for r in rule_ids]
            if opts["dry_run"]:
                report(target.as_json, {"action": "delete", "dryRun": True, "routeRules": rows},
                       [f"would delete route rule(s) {', '.join(map(str, rule_ids))}; nothing "
                        f"was changed (--dry-run)"])
                return
            if not opts["yes"] and not target.as_json:
                show(False, RULE_COLUMNS, [{**r, "groups": _groups_text(r["groups"])}
                                           for r in rows], err=True)
            confirm(f"Delete {len(rows)} route rule(s)?", opts["yes"])
            await node.call(f"{_G}/delete-route-rules.json", wire.IdsWrite(
                route_rule_ids=list(rule_ids), **context(opts)), wire.StatusOnlyResponse)
            left = await node.call(f"{_G}/get-route-rules.json", wire.RouteRulesQuery(),
                                   wire.RouteRulesResponse)
        still = sorted({r.route_rule_id or 0 for r in left.route_rules or ()} & set(rule_ids))
        if still:
            raise NotAsWritten(f"the node still lists route rule(s) {still} after the delete")
        report(target.as_json, {"action": "delete", "routeRuleIds": list(rule_ids),
                                "deleted": rows},
               [f"deleted route rule(s) {', '.join(map(str, rule_ids))}"])

    run(target, main())


@route_rule.command("weight")
@click.argument("rule_id", type=click.IntRange(min=1), metavar="RULE_ID")
@click.argument("group_id", type=click.IntRange(min=1), metavar="GROUP_ID")
@click.argument("weight", type=click.IntRange(0, 10_000), metavar="WEIGHT")
@write_options
@token_option("the write role")
@client_command
def weight(target: Target, rule_id: int, group_id: int, weight: int, token: str | None,
           **opts: Any) -> None:
    """Stage a group's weight in a route rule (adding the group to it if it is not there);
    discovery shows it once released."""

    async def main() -> None:
        async with Node(target, token) as node:
            rule = await _rule(node, rule_id)
            g = await group_by_id(node, group_id)
            if (g.service_id or "").lower() != (rule.service_id or "").lower():
                raise Refused(f"group {group_id} ({g.group_key}) is not of route rule "
                              f"{rule_id}'s service {rule.service_id}; nothing was changed")
            before = {link["groupId"]: link for link in await _links(node, rule_id)}
            link = before.get(group_id)
            if link is not None and link["staged"] == weight:
                raise NothingToChange(f"group {group_id} already has the staged weight "
                                      f"{weight} in route rule {rule_id}; nothing was changed")
            if opts["dry_run"]:
                report(target.as_json, {"action": "weight", "dryRun": True,
                                        "routeRuleId": rule_id, "groupId": group_id,
                                        "staged": weight},
                       [f"would stage weight {weight} for group {group_id} in route rule "
                        f"{rule_id}; nothing was changed (--dry-run)"])
                return
            await node.call(f"{_G}/insert-route-rule-groups.json", wire.RouteRuleGroupsWrite(
                route_rule_groups=[wire.RouteRuleGroup(route_rule_id=rule_id, group_id=group_id,
                                                       unreleased_weight=weight)],
                **context(opts)), wire.StatusOnlyResponse)
            links = await _links(node, rule_id)
        was = "none" if link is None else link["staged"]
        report(target.as_json, {"action": "weight", "routeRuleId": rule_id, "groupId": group_id,
                                "groups": links},
               [f"staged weight {weight} for group {group_id} ({g.group_key}) in route rule "
                f"{rule_id} (staged before: {was}); `artemis route-rule release {rule_id}` "
                f"makes discovery show it"], LINK_COLUMNS, _link_cells(links))

    run(target, main())


@route_rule.command("release")
@click.argument("rule_id", type=click.IntRange(min=1), metavar="RULE_ID")
@click.argument("group_ids", nargs=-1, type=click.IntRange(min=1), metavar="[GROUP_ID...]")
@write_options
@token_option("the write role")
@client_command
def release(target: Target, rule_id: int, group_ids: tuple[int, ...], token: str | None,
            **opts: Any) -> None:
    """Release staged weights (every pending one of the rule, or those of the groups given):
    discovery shows them and clients split traffic by them. Asks first (--yes)."""

    async def main() -> None:
        async with Node(target, token) as node:
            rule = await _rule(node, rule_id)
            links = await _links(node, rule_id)
            pending = [link for link in links if link["pending"]
                       and (not group_ids or link["groupId"] in group_ids)]
            if not pending:
                raise NothingToChange(f"route rule {rule_id} has no staged weight to release"
                                      + (" for those groups" if group_ids else "")
                                      + "; nothing was changed")
            text = ", ".join(f"group {link['groupId']} {_weight(link['weight'])} -> "
                             f"{link['staged']}" for link in pending)
            if opts["dry_run"]:
                report(target.as_json, {"action": "release", "dryRun": True,
                                        "routeRuleId": rule_id, "groups": pending},
                       [f"would release in route rule {rule_id}: {text}; nothing was changed "
                        f"(--dry-run)"], LINK_COLUMNS, _link_cells(pending))
                return
            if not opts["yes"] and not target.as_json:  # what the question is about
                show(False, LINK_COLUMNS, _link_cells(pending), err=True)
            confirm(f"Release {len(pending)} weight(s) of route rule {rule_id} "
                    f"({rule.service_id} {rule.name}): {text}?", opts["yes"])
            await node.call(f"{_G}/release-route-rule-groups.json", wire.RouteRuleGroupsWrite(
                route_rule_groups=[wire.RouteRuleGroup(route_rule_id=rule_id,
                                                       group_id=link["groupId"])
                                   for link in pending], **context(opts)),
                wire.StatusOnlyResponse)
            after = await _links(node, rule_id)
            shown = await node.call("/api/discovery/lookup.json", wire.LookupRequest(
                discovery_configs=[wire.DiscoveryConfig(service_id=rule.service_id)],
                region_id=target.region), wire.LookupResponse)
        service = shown.services[0] if shown.services else None
        discovered = [{"groupKey": g.group_key, "weight": g.weight}
                      for r in (service.route_rules or [] if service else [])
                      if (r.route_id or "").lower() == (rule.name or "").lower()
                      for g in r.groups or ()]
        seen = ", ".join(f"{d['groupKey']} {d['weight']}" for d in discovered)
        report(target.as_json, {"action": "release", "routeRuleId": rule_id, "groups": after,
                                "discovery": discovered},
               [f"released in route rule {rule_id}: {text}",
                f"discovery shows for {rule.service_id}: {seen}" if discovered else
                f"discovery shows no groups of this rule for {rule.service_id} (a rule or "
                f"group that is inactive, or groups without instances, are not shown)"],
               LINK_COLUMNS, _link_cells(after))

    run(target, main())


@route_rule.command("remove-group")
@click.argument("rule_id", type=click.IntRange(min=1), metavar="RULE_ID")
@click.argument("group_id", type=click.IntRange(min=1), metavar="GROUP_ID")
@write_options
@token_option("the write role")
@client_command
def remove_group(target: Target, rule_id: int, group_id: int, token: str | None,
                 **opts: Any) -> None:
    """Take a group out of a route rule (its weight goes with it at once). Asks first
    (--yes)."""

    async def main() -> None:
        async with Node(target, token) as node:
            await _rule(node, rule_id)
            links = {link["groupId"]: link for link in await _links(node, rule_id)}
            link = links.get(group_id)
            if link is None:
                raise NothingToChange(f"group {group_id} is not in route rule {rule_id} (its "
                                      f"groups: {', '.join(map(str, links)) or 'none'}); "
                                      f"nothing was changed")
            if opts["dry_run"]:
                report(target.as_json, {"action": "remove-group", "dryRun": True,
                                        "routeRuleId": rule_id, "group": link},
                       [f"would take group {group_id} out of route rule {rule_id}; nothing was "
                        f"changed (--dry-run)"])
                return
            confirm(f"Take group {group_id} ({link['groupKey']}, weight "
                    f"{_weight(link['weight'])}) out "
                    f"of route rule {rule_id}?", opts["yes"])
            await node.call(f"{_G}/delete-route-rule-groups.json", wire.IdsWrite(
                route_rule_group_ids=[link["routeRuleGroupId"]], **context(opts)),
                wire.StatusOnlyResponse)
            after = await _links(node, rule_id)
        report(target.as_json, {"action": "remove-group", "routeRuleId": rule_id,
                                "groups": after},
               [f"took group {group_id} out of route rule {rule_id}; its groups now:"
                + ("" if after else " none")],
               LINK_COLUMNS, _link_cells(after))

    run(target, main())
