"""The group, route-rule, canary and logical commands against a real node with a database: each
write checked first (exit 4 or 5, nothing sent), destructive ones asking first, and what they
report read back from the node."""

from __future__ import annotations

import json
from typing import Any

from click.testing import Result

from tests.cli.helpers import SERVICE, TOKEN, instance, invoke, post, register
from tests.process.conftest import RunningNode


def run(node: RunningNode, *args: str) -> Result:
    """`artemis *args` against `node` (region SHA) with the admin token."""
    return invoke(*args, "--server", node.url, "--region", "SHA", "--token", TOKEN)


def out(result: Result) -> Any:
    assert 0 == result.exit_code, result.stderr
    return json.loads(result.stdout)


def shown_rules(node: RunningNode) -> list[dict[str, Any]]:
    """The route rules discovery shows for SERVICE now: (group key, weight) of each group."""
    answer = post(node, "/api/discovery/lookup.json",
                  {"discoveryConfigs": [{"serviceId": SERVICE}], "regionId": "SHA"})
    return [{"routeId": r["routeId"], "groups": [(g["groupKey"], g["weight"])
                                                 for g in r["groups"]]}
            for r in answer["services"][0].get("routeRules") or []]


def test_groups_are_added_tagged_given_members_and_deleted(managed_node: RunningNode) -> None:
    """group add refuses a group with no instance (a typo) and one that exists; tag, untag,
    add-member and remove-member say what the group has now; delete asks first."""
    register(managed_node, instance("a", groupId="blue"), instance("b", groupId="green"))
    typo = run(managed_node, "group", "add", SERVICE, "zone-1", "bleu")
    added = out(run(managed_node, "group", "add", SERVICE, "zone-1", "blue", "--json"))
    again = run(managed_node, "group", "add", SERVICE, "zone-1", "blue")
    tagged = out(run(managed_node, "group", "tag", "1", "idc=sha-a", "rack=7", "--json"))
    same = run(managed_node, "group", "tag", "1", "idc=sha-a")
    member = out(run(managed_node, "group", "add-member", "1", "b", "--json"))
    unknown = run(managed_node, "group", "add-member", "1", "c")
    listed = out(run(managed_node, "group", "list", "--json"))
    untag = run(managed_node, "group", "untag", "1", "rack")  # no terminal: needs --yes
    untagged = out(run(managed_node, "group", "untag", "1", "rack", "--yes", "--json"))
    removed = out(run(managed_node, "group", "remove-member", "1", "b", "--yes", "--json"))
    deleted = out(run(managed_node, "group", "delete", "1", "--yes", "--json"))

    group = {"groupId": 1, "serviceId": SERVICE, "region": "sha", "zone": "zone-1",
             "name": "blue", "groupKey": "demo.service/sha/zone-1/blue", "appId": None,
             "description": None, "status": "active", "instances": 1}
    assert ((4, "artemis: service demo.service has no registered instance in zone zone-1 with "
                "groupId bleu (closest zone and group: zone-1 blue, zone-1 green); nothing was "
                "changed "
                "(--force adds it all the same)\n"),
            {"action": "add", "groups": [{**group, "tags": {}, "members": [],
                                          "operations": []}]},
            (5, "artemis: group 1 (demo.service/sha/zone-1/blue) exists already (`artemis "
                "group update` changes it); nothing was changed\n"),
            {"action": "tag", "groupId": 1, "before": {},
             "after": {"idc": "sha-a", "rack": "7"}},
            5, {"action": "add-member", "groupId": 1, "before": [], "after": ["b"]},
            (4, "artemis: service demo.service has no registered instance c; nothing was "
                "changed (--force all the same)\n"),
            [{**group, "tags": {"idc": "sha-a", "rack": "7"}, "members": ["b"],
              "operations": []}],
            4, {"idc": "sha-a"}, [], [1]) == (
        (typo.exit_code, typo.stderr), added, (again.exit_code, again.stderr), tagged,
        same.exit_code, member, (unknown.exit_code, unknown.stderr), listed, untag.exit_code,
        untagged["after"], removed["after"], deleted["groupIds"])
    assert [] == out(run(managed_node, "group", "list", "--json"))


def test_route_rule_weights_are_staged_then_released(managed_node: RunningNode) -> None:
    """create stages every group's weight (discovery shows the default, 5, until then); release
    shows what it
    will change, asks first, then reports what discovery shows; weight stages one change;
    a release with nothing staged changes nothing (exit 5)."""
    register(managed_node, instance("a", groupId="blue"), instance("b", groupId="green"))
    empty = run(managed_node, "route-rule", "create", SERVICE, "split",
                "--group", "zone-1/blue=90", "--group", "zone-1/grene=10")
    created = out(run(managed_node, "route-rule", "create", SERVICE, "split",
                      "--group", "zone-1/blue=90", "--group", "zone-1/green=10", "--json"))
    before_release = shown_rules(managed_node)
    unasked = run(managed_node, "route-rule", "release", "1")
    released = out(run(managed_node, "route-rule", "release", "1", "--yes", "--json"))
    nothing = run(managed_node, "route-rule", "release", "1", "--yes")
    staged = out(run(managed_node, "route-rule", "weight", "1", "2", "30", "--json"))
    shown = out(run(managed_node, "route-rule", "show", "1", "--json"))

    def link(group: int, name: str, weight: int | None, staged: int) -> dict[str, Any]:
        return {"routeRuleGroupId": group, "groupId": group,
                "groupKey": f"demo.service/sha/zone-1/{name}", "status": "active",
                "weight": weight, "staged": staged, "pending": weight != staged}

    assert ((4, "artemis: no group and no registered instance of demo.service for zone-1/grene "
                "(closest: zone-1/green, zone-1/blue); nothing was changed (--force creates it "
                "all the same)\n"),
            [link(1, "blue", None, 90), link(2, "green", None, 10)],
            [{"routeId": "split", "groups": [("demo.service/sha/zone-1/blue", 5),
                                             ("demo.service/sha/zone-1/green", 5)]}],
            4, [("demo.service/sha/zone-1/blue", 90), ("demo.service/sha/zone-1/green", 10)],
            [{"routeId": "split", "groups": [("demo.service/sha/zone-1/blue", 90),
                                             ("demo.service/sha/zone-1/green", 10)]}],
            (5, "artemis: route rule 1 has no staged weight to release; nothing was changed\n"),
            [link(1, "blue", 90, 90), link(2, "green", 10, 30)],
            {"routeRuleId": 1, "serviceId": SERVICE, "name": "split", "status": "active",
             "strategy": "weighted-round-robin", "description": None,
             "groups": [link(1, "blue", 90, 90), link(2, "green", 10, 30)]}) == (
        (empty.exit_code, empty.stderr), created["groups"], before_release, unasked.exit_code,
        [(d["groupKey"], d["weight"]) for d in released["discovery"]],
        shown_rules(managed_node), (nothing.exit_code, nothing.stderr), staged["groups"],
        shown)


def test_route_rules_are_updated_and_deleted(managed_node: RunningNode) -> None:
    """update changes only what is given and says so; a group leaves a rule with
    remove-group; delete asks first and the rule is gone."""
    register(managed_node, instance("a", groupId="blue"))
    run(managed_node, "route-rule", "create", SERVICE, "split", "--group", "zone-1/blue=50")
    changed = run(managed_node, "route-rule", "update", "1", "--status", "inactive")
    same = run(managed_node, "route-rule", "update", "1", "--status", "inactive")
    removed = out(run(managed_node, "route-rule", "remove-group", "1", "1", "--yes", "--json"))
    deleted = run(managed_node, "route-rule", "delete", "1", "--yes")

    assert (["changed route rule 1: status active -> inactive"], 5, [],
            ["deleted route rule(s) 1"], []) == (
        changed.stdout.splitlines(), same.exit_code, removed["groups"],
        deleted.stdout.splitlines(), out(run(managed_node, "route-rule", "list", "--json")))


def test_canary_is_set_shown_and_cleared(managed_node: RunningNode) -> None:
    """canary set makes instances the canary (an unknown id refused), show reads it back, a set
    to the same members changes nothing, clear asks first."""
    register(managed_node, instance("a"), instance("b"))
    unknown = run(managed_node, "canary", "set", SERVICE, "app", "z")
    done = out(run(managed_node, "canary", "set", SERVICE, "app", "a", "--json"))
    same = run(managed_node, "canary", "set", SERVICE, "app", "a")
    cleared = out(run(managed_node, "canary", "clear", SERVICE, "app", "--yes", "--json"))

    canary = {"serviceId": SERVICE, "appId": "app", "groupId": 1,
              "groupKey": "demo.service/sha/canary/app", "weight": None, "staged": 5}
    assert (4, {**canary, "members": ["a"]}, 5, {**canary, "members": []}) == (
        unknown.exit_code, done["after"], same.exit_code, cleared["after"])


def test_logical_instances_are_set_and_deleted(managed_node: RunningNode) -> None:
    """logical set adds, then changes only what differs (and says which), list shows it,
    delete asks first; discovery shows it in the service's logicInstances."""
    register(managed_node, instance("a"))
    added = run(managed_node, "logical", "set", SERVICE, "ext-1", "--url", "http://ext:80")
    changed = run(managed_node, "logical", "set", SERVICE, "ext-1", "--url", "http://ext:81",
                  "--zone-id", "zone-1")
    same = run(managed_node, "logical", "set", SERVICE, "ext-1", "--url", "http://ext:81",
               "--zone-id", "zone-1")
    listed = out(run(managed_node, "logical", "list", "--json"))
    answer = post(managed_node, "/api/discovery/lookup.json",
                  {"discoveryConfigs": [{"serviceId": SERVICE}], "regionId": "SHA"})
    deleted = run(managed_node, "logical", "delete", SERVICE, "ext-1", "--yes")

    assert ("added logical instance demo.service ext-1",
            "changed url, zone_id of logical instance demo.service ext-1", 5,
            [("ext-1", "http://ext:81", "zone-1")], ["ext-1"],
            "deleted logical instance demo.service ext-1\n", []) == (
        added.stdout.splitlines()[0], changed.stdout.splitlines()[0], same.exit_code,
        [(i["instanceId"], i["url"], i["zone"]) for i in listed],
        [i["instanceId"] for i in answer["services"][0]["logicInstances"]], deleted.stdout,
        out(run(managed_node, "logical", "list", "--json")))
