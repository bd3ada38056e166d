"""The management commands against a real node with a database: pull-out and pull-in of
instances, servers, zones and groups, pulled-out, instances and watch showing what is out, and
audit. Mistakes are refused before they do harm (exit 4), writes that change nothing are not
sent (exit 5), and what is reported is read back from the node."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import Result

from tests.cli.helpers import (
    SERVICE,
    TOKEN,
    Spawn,
    hold,
    instance,
    invoke,
    listed,
    register,
    row,
    unregister,
)
from tests.process.conftest import RunningNode


def run(node: RunningNode, *args: str, token: str | None = TOKEN) -> Result:
    """`artemis *args` against `node` (region SHA) with the admin token."""
    extra = ["--token", token] if token else []
    return invoke(*args, "--server", node.url, "--region", "SHA", *extra)


def out(result: Result) -> Any:
    return json.loads(result.stdout)


def audit(node: RunningNode) -> list[tuple[str, str, str, bool]]:
    """The audit log, oldest first: (kind, target, operation, complete) of each entry."""
    entries = out(run(node, "audit", "--json", "--oldest-first", "--limit", "100"))
    return [(e["kind"], " ".join(e["target"].values()), e["operation"], e["complete"])
            for e in entries]


def covered(instance_id: str, status: str, *held: dict[str, Any], ip: str = "10.0.0.5",
            zone: str = "zone-1", group: str | None = None) -> dict[str, Any]:
    """An instance as a pull-out reports it (read back after the write)."""
    return {"serviceId": SERVICE, "instanceId": instance_id, "ip": ip, "zone": zone,
            "group": group, "logical": False, "status": status, "pulledOutBy": list(held)}


def test_an_unknown_instance_is_refused_with_the_closest_ids(managed_node: RunningNode) -> None:
    """A typo in an instance id: exit 4, the ids it does know, nothing written (no pull-out,
    no audit entry); --force pulls it out all the same."""
    register(managed_node, instance("a"), instance("b"))
    typo = run(managed_node, "pull-out", "instance", SERVICE, "aa")
    other_service = run(managed_node, "pull-out", "instance", "demo.servic", "a")
    server = run(managed_node, "pull-out", "server", "10.0.0.55")
    zone = run(managed_node, "pull-out", "zone", SERVICE, "zone-2")
    nothing = (out(run(managed_node, "pulled-out", "--json")), audit(managed_node))
    forced = run(managed_node, "pull-out", "instance", SERVICE, "aa", "--force", "--json")

    assert ([(4, "artemis: service demo.service has no instance aa (closest: a); nothing was "
                 "changed (--force pulls it out all the same)\n"),
             (4, "artemis: service demo.servic has no registered instance (closest: "
                 "demo.service); nothing was changed (--force pulls it out all the same)\n"),
             (4, "artemis: no registered instance has ip 10.0.0.55 (closest: 10.0.0.5, "
                 "10.0.0.6); nothing was changed (--force pulls it out all the same)\n"),
             (4, "artemis: service demo.service has no instance in zone zone-2 (closest: "
                 "zone-1); nothing was changed (--force pulls it out all the same)\n")],
            ([], []), 0, ["pull-out"]) == (
        [(r.exit_code, r.stderr) for r in (typo, other_service, server, zone)], nothing,
        forced.exit_code, out(forced)["after"])


def test_pull_out_and_back_in_says_what_changed(managed_node: RunningNode) -> None:
    """pull-out reports the operations before and after and the instance's status, read back;
    the instance leaves discovery and `instances` shows it down with its operation; pull-in
    brings it back."""
    a, b = instance("a"), instance("b")
    register(managed_node, a, b)
    pulled = run(managed_node, "pull-out", "instance", SERVICE, "a", "--reason", "disk",
                 "--operator", "alice", "--json")
    hidden = [i["instanceId"] for i in listed(managed_node)]
    shown = out(run(managed_node, "instances", SERVICE, "--json"))
    back = run(managed_node, "pull-in", "instance", SERVICE, "a", "--operator", "alice")

    assert (0, {"action": "pull-out", "target": {"kind": "instance", "serviceId": SERVICE,
                                                 "instanceId": "a"},
                "operation": "pull-out", "dryRun": False, "before": [], "after": ["pull-out"],
                "instances": [covered("a", "down", hold("instance", serviceId=SERVICE,
                                                        instanceId="a"))]},
            ["b"], [row(a, hold("instance", serviceId=SERVICE, instanceId="a")), row(b)],
            0, ["operation pull-out completed on instance demo.service a: operations in force "
                "now: none (before: pull-out)",
                "0 of the 1 registered instance it covers are out of discovery now:",
                "serviceId      instanceId   ip         zone     status   pulledOutBy",
                "─" * 68,
                "demo.service   a            10.0.0.5   zone-1   up       -"],
            ["a", "b"]) == (
        pulled.exit_code, out(pulled), hidden, shown, back.exit_code, back.stdout.splitlines(),
        sorted(i["instanceId"] for i in listed(managed_node)))
    assert [("instance-operation", "demo.service a", "pull-out", False),
            ("instance-operation", "demo.service a", "pull-out", True)] == audit(managed_node)


def test_a_write_that_changes_nothing_is_not_sent(managed_node: RunningNode) -> None:
    """pull-in of a server out for another operation, without --operation: exit 5, the
    operation in force named, the server still out, no audit entry; a pull-out by an operation
    already in force: exit 5 likewise."""
    register(managed_node, instance("a"))
    run(managed_node, "pull-out", "server", "10.0.0.5", "--operation", "kernel-upgrade")
    pull_in = run(managed_node, "pull-in", "server", "10.0.0.5")
    again = run(managed_node, "pull-out", "server", "10.0.0.5", "--operation", "kernel-upgrade")

    assert ((5, "", "artemis: server 10.0.0.5 is not pulled out by operation 'pull-out' "
                    "(operations in force on it: kernel-upgrade); --operation kernel-upgrade "
                    "completes that one; nothing was changed\n"),
            (5, "artemis: server 10.0.0.5 is already pulled out by operation 'kernel-upgrade';"
                " nothing was changed\n"),
            [], [("server-operation", "10.0.0.5", "kernel-upgrade", False)]) == (
        (pull_in.exit_code, pull_in.stdout, pull_in.stderr), (again.exit_code, again.stderr),
        listed(managed_node), audit(managed_node))


def test_a_wide_pull_out_asks_first(managed_node: RunningNode,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A zone of two instances: --dry-run shows them and changes nothing; without a terminal and
    without --yes it is refused (exit 4); a person answering no changes nothing; --yes does it."""
    register(managed_node, instance("a"), instance("b"))
    dry = run(managed_node, "pull-out", "zone", SERVICE, "zone-1", "--dry-run", "--json")
    refused = run(managed_node, "pull-out", "zone", SERVICE, "zone-1")
    monkeypatch.setattr("artemis.cli.output.interactive", lambda: True)
    declined = invoke("pull-out", "zone", SERVICE, "zone-1", "--server", managed_node.url,
                      "--region", "SHA", "--token", TOKEN)  # no input: the answer is no
    untouched = len(listed(managed_node))
    done = run(managed_node, "pull-out", "zone", SERVICE, "zone-1", "--yes", "--json")
    zone = hold("zone", serviceId=SERVICE, zoneId="zone-1")

    assert ((0, None, [covered("a", "up"), covered("b", "up", ip="10.0.0.6")]),
            (4, "artemis: Pull out zone demo.service zone-1, taking 2 instances out of "
                "discovery? Not done: add --yes to do it without being asked (--dry-run shows "
                "what it would change)\n"),
            (4, True), 2,
            (0, [covered("a", "down", zone), covered("b", "down", zone, ip="10.0.0.6")], [])) == (
        (dry.exit_code, out(dry)["after"], out(dry)["instances"]),
        (refused.exit_code, refused.stderr.splitlines()[-1] + "\n"),
        (declined.exit_code, declined.stderr.endswith("not confirmed: nothing was changed\n")),
        untouched, (done.exit_code, out(done)["instances"], listed(managed_node)))


def test_pulled_out_lists_each_kind_with_structured_fields(managed_node: RunningNode) -> None:
    """pulled-out --json: kind, target, key as fields, operations as a list, and how many
    registered instances each holds out; the table joins them."""
    register(managed_node, instance("a"), instance("b"))
    run(managed_node, "pull-out", "instance", SERVICE, "a")
    run(managed_node, "pull-out", "server", "10.0.0.6", "--operation", "kernel")
    run(managed_node, "pull-out", "zone", SERVICE, "zone-1", "--operation", "deploy", "--yes")
    as_json = run(managed_node, "pulled-out", "--json")
    table = run(managed_node, "pulled-out")

    assert ([{"kind": "instance", "target": "demo.service a",
              "key": {"serviceId": SERVICE, "instanceId": "a"}, "operations": ["pull-out"],
              "instances": 1},
             {"kind": "server", "target": "10.0.0.6", "key": {"serverId": "10.0.0.6"},
              "operations": ["kernel"], "instances": 1},
             {"kind": "zone", "target": "demo.service zone-1",
              "key": {"serviceId": SERVICE, "zoneId": "zone-1"}, "operations": ["deploy"],
              "instances": 2}],
            ["kind       target                operations   instances",
             "─" * 55,
             "instance   demo.service a        pull-out     1",
             "server     10.0.0.6              kernel       1",
             "zone       demo.service zone-1   deploy       2"]) == (
        out(as_json), table.stdout.splitlines())


def test_instances_needs_the_read_role_to_list_pulled_out_ones(managed_node: RunningNode) -> None:
    """Without a token, instances lists what discovery shows and says on stderr why the
    pulled-out ones are missing; with it they are listed as down."""
    register(managed_node, instance("a"), instance("b"))
    run(managed_node, "pull-out", "instance", SERVICE, "a")
    bare = run(managed_node, "instances", SERVICE, "--json", token=None)
    assert (0, [row(instance("b"))],
            "artemis: the node holds 1 registered instances out of discovery; those of "
            "demo.service are not listed: no-permission: this call needs a bearer token with "
            "the read role (no token was given: --token or ARTEMIS_TOKEN)\n") == (
        bare.exit_code, out(bare), bare.stderr)


def test_a_group_pull_out_covers_its_members(managed_node: RunningNode) -> None:
    """pull-out group ID takes the instances of its service and zone whose groupId is its name
    out, and pull-in brings them back; an unknown group id is refused naming the groups."""
    register(managed_node, instance("a", groupId="blue"), instance("b", groupId="green"))
    run(managed_node, "group", "add", SERVICE, "zone-1", "blue")
    unknown = run(managed_node, "pull-out", "group", "7")
    pulled = run(managed_node, "pull-out", "group", "1", "--json")
    hidden = [i["instanceId"] for i in listed(managed_node)]
    back = run(managed_node, "pull-in", "group", "1", "--json")
    group = hold("group", groupId=1, serviceId=SERVICE, zoneId="zone-1", name="blue")

    assert ((4, "artemis: there is no group 7 (groups: 1 (demo.service/sha/zone-1/blue); "
                "`artemis group list` shows them); nothing was changed\n"),
            [covered("a", "down", group, group="blue")], ["b"],
            [covered("a", "up", group="blue")]) == (
        (unknown.exit_code, unknown.stderr), out(pulled)["instances"], hidden,
        out(back)["instances"])


def test_audit_filters_and_fields(managed_node: RunningNode) -> None:
    """audit --json: structured entries (target fields, before and after as lists), filtered
    by kind, operator, operation or completion; the table shows them as text."""
    register(managed_node, instance("a"))
    run(managed_node, "pull-out", "instance", SERVICE, "a", "--operator", "alice",
        "--reason", "disk")
    run(managed_node, "pull-out", "server", "10.0.0.5", "--operator", "bob")
    by_alice = out(run(managed_node, "audit", "--json", "--operator", "alice"))
    servers = out(run(managed_node, "audit", "--json", "--kind", "server-operation"))
    completed = out(run(managed_node, "audit", "--json", "--completed"))
    (entry,) = by_alice

    assert ({"actor": "admin", "operator": "alice", "kind": "instance-operation",
             "target": {"serviceId": SERVICE, "instanceId": "a"}, "operation": "pull-out",
             "complete": False, "before": [], "after": ["pull-out"], "reason": "disk"},
            ["bob"], []) == (
        {k: v for k, v in entry.items() if k not in ("id", "time", "timeMs")},
        [e["operator"] for e in servers], completed)


def test_management_commands_need_a_token(managed_node: RunningNode) -> None:
    """A wrong token is refused in one line with exit code 1, and changes nothing."""
    register(managed_node, instance("a"))
    result = run(managed_node, "pull-out", "instance", SERVICE, "a",
                 token="not-the-token-0123456789")  # noqa: S106 - a wrong test secret
    assert (1, "artemis: no-permission: this call needs a bearer token with the read role\n",
            []) == (result.exit_code, result.stderr,
                    out(run(managed_node, "pulled-out", "--json")))


def test_watch_tells_a_pull_out_from_a_removal(managed_node: RunningNode,
                                               spawn: Spawn) -> None:
    """watch: a pulled-out instance is `pulled-out` with what holds it (it is still
    registered), then `pulled-in`; an unregistered one is `unregistered`."""
    a, b = instance("a"), instance("b")
    register(managed_node, a, b)
    watch = spawn("watch", SERVICE, "--server", managed_node.url, "--region", "SHA", "--json",
                  "--token", TOKEN)
    first = json.loads(watch.line())
    run(managed_node, "pull-out", "instance", SERVICE, "a")
    seen = [json.loads(watch.line())]
    run(managed_node, "pull-in", "instance", SERVICE, "a")
    seen.append(json.loads(watch.line()))
    unregister(managed_node, b)
    seen.append(json.loads(watch.line()))
    held = hold("instance", serviceId=SERVICE, instanceId="a")

    assert ({"instances": [row(a), row(b)], "serviceId": SERVICE},
            [{"change": "pulled-out", "instance": row(a, held), "serviceId": SERVICE},
             {"change": "pulled-in", "instance": row(a), "serviceId": SERVICE},
             {"change": "unregistered", "instance": row(b), "serviceId": SERVICE}],
            0, "") == (first, seen, watch.interrupt(), watch.stderr())

