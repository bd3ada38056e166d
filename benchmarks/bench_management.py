"""Lookup throughput with and without management data, on one node. Run by hand:

    .venv/bin/python benchmarks/bench_management.py                 # about 3 minutes
    .venv/bin/python benchmarks/bench_management.py --pull-outs 10000 --route-rules 1000 --rounds 2

Two nodes run side by side, each with its own SQLite management database in a temporary
directory (and 1-hour leases, so nothing expires while the pull-outs are made without
heartbeats). Both hold 10,000 instances of 1,000 other services plus `lookup.service` with 20
instances. On the second, --route-rules services (`lookup.service` among them) get an active
route rule with two active groups and released weights, 5 more instances of `lookup.service` are
registered, and --pull-outs instances are pulled out through the management API (those 5 and the
rest among the other services). wrk then measures `lookup.json` of `lookup.service` on each node
in turn, --rounds times (the same 20 instances in both answers, as bench_node.py's lookup
scenario; on the second filtered from 25 and carrying the route rule). Each figure is the median
of its rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_node import REGION, ZONE, instance, lua_rotating, node, register, wrk

TOKEN = "benchmark-admin-token-0123456789"  # noqa: S105 - a throwaway local secret
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def lookup(base: str, args: argparse.Namespace, proc: Any) -> list[dict[str, Any]]:
    body = json.dumps({"discoveryConfigs": [{"discoveryData": None, "regionId": None,
                                             "serviceId": "lookup.service", "zoneId": None}],
                       "regionId": REGION, "zoneId": ZONE})
    script = lua_rotating("/api/discovery/lookup.json", [body])
    return [wrk(base + "/api/discovery/lookup.json", args.duration, args.connections, script,
                proc) for _ in range(args.rounds)]


def visible(client: httpx.Client, base: str) -> dict[str, Any]:
    """What the measured lookup answers: its instance count, route rules and size."""
    response = client.post(base + "/api/discovery/lookup.json", json={
        "discoveryConfigs": [{"serviceId": "lookup.service"}], "regionId": REGION})
    service = response.json()["services"][0]
    return {"instances": len(service["instances"]), "routeRules": service["routeRules"],
            "bytes": len(response.content)}


def pull_out(client: httpx.Client, base: str, targets: list[dict[str, Any]]) -> float:
    """Pull every target out through the management API; the seconds it took."""
    started = time.monotonic()
    for inst in targets:
        answer = client.post(base + "/api/management/operate-instance.json", headers=AUTH,
                             content=json.dumps({
                                 "instanceKey": {"regionId": REGION,
                                                 "serviceId": inst["serviceId"],
                                                 "instanceId": inst["instanceId"]},
                                 "operation": "pull-out", "operationComplete": False,
                                 "operatorId": "bench"})).json()
        if answer["responseStatus"]["status"] != "success":
            raise RuntimeError(answer)
    return time.monotonic() - started


def post_ok(client: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = client.post(url, headers=AUTH, content=json.dumps(body)).json()
    if answer["responseStatus"]["status"] != "success":
        raise RuntimeError(answer)
    return answer


def add_route_rules(client: httpx.Client, base: str, services: list[str]) -> float:
    """One active route rule per service with two active groups (blue 90, green 10), weights
    released, in batches of 1,000; the seconds it took."""
    group = f"{base}/api/management/group"
    context = {"operatorId": "bench"}
    started = time.monotonic()
    groups = [{"serviceId": s, "regionId": REGION, "zoneId": ZONE, "name": name,
               "status": "active"} for s in services for name in ("blue", "green")]
    for i in range(0, len(groups), 1000):
        post_ok(client, group + "/insert-groups.json", {"groups": groups[i:i + 1000], **context})
    rules = [{"serviceId": s, "name": "split", "status": "active"} for s in services]
    for i in range(0, len(rules), 1000):
        post_ok(client, group + "/insert-route-rules.json",
                {"routeRules": rules[i:i + 1000], **context})
    group_ids = {(g["serviceId"], g["name"]): g["groupId"] for g in post_ok(
        client, group + "/get-all-groups.json", {})["groups"]}
    rule_ids = {r["serviceId"]: r["routeRuleId"] for r in post_ok(
        client, group + "/get-all-route-rules.json", {})["routeRules"]}
    links = [{"routeRuleId": rule_ids[s.lower()], "groupId": group_ids[(s.lower(), name)],
              "unreleasedWeight": weight}
             for s in services for name, weight in (("blue", 90), ("green", 10))]
    for i in range(0, len(links), 1000):
        post_ok(client, group + "/insert-route-rule-groups.json",
                {"routeRuleGroups": links[i:i + 1000], **context})
        post_ok(client, group + "/release-route-rule-groups.json",
                {"routeRuleGroups": links[i:i + 1000], **context})
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pull-outs", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--route-rules", type=int, default=1_000)
    args = parser.parse_args()
    others = [instance(f"other.service.{i % 1000}", 100 + i)
              for i in range(max(10_000, args.pull_outs))]
    lookups = [instance("lookup.service", i) for i in range(20)]
    extra = [instance("lookup.service", 20 + i) for i in range(5)]
    targets = extra + others[:args.pull_outs - len(extra)]
    with tempfile.TemporaryDirectory() as tmp, \
            node("--database", f"sqlite:///{tmp}/plain.db", "--admin-token", TOKEN,
                 "--lease-ttl", "3600") as (plain, plain_proc, cmd), \
            node("--database", f"sqlite:///{tmp}/managed.db", "--admin-token", TOKEN,
                 "--lease-ttl", "3600") as (managed, managed_proc, _), \
            httpx.Client(timeout=30) as client:
        for base in (plain, managed):
            register(base, others + lookups)
        register(managed, extra)
        ruled = ["lookup.service"] + [f"other.service.{i}" for i in range(args.route_rules - 1)]
        rule_seconds = add_route_rules(client, managed, ruled)
        pull_seconds = pull_out(client, managed, targets)
        status = client.get(managed + "/api/status/management.json").json()
        rounds: dict[str, list[dict[str, Any]]] = {"plain": [], "managed": []}
        for _ in range(args.rounds):  # alternating, so drift hits both alike
            rounds["plain"] += lookup(plain, argparse.Namespace(**{**vars(args), "rounds": 1}),
                                      plain_proc)
            rounds["managed"] += lookup(managed, argparse.Namespace(**{**vars(args),
                                                                       "rounds": 1}),
                                        managed_proc)
        shown = {"plain": visible(client, plain), "managed": visible(client, managed)}
    rate = {k: statistics.median(r["requests_per_s"] for r in v) for k, v in rounds.items()}
    print(json.dumps({
        "command": cmd, "instances": len(others) + 20,
        "route_rules": len(ruled), "route_rules_seconds": round(rule_seconds, 1),
        "pull_outs": len(targets), "pull_out_calls_seconds": round(pull_seconds, 1),
        "management": {k: status[k] for k in ("version", "pulledOut", "hiddenInstances")},
        "lookup_without_management": {"requests_per_s": rate["plain"],
                                      "rounds": rounds["plain"],
                                      "instances_answered": shown["plain"]},
        "lookup_with_pull_outs": {"requests_per_s": rate["managed"],
                                  "rounds": rounds["managed"],
                                  "instances_answered": shown["managed"]},
        "ratio": f"{rate['managed'] / rate['plain']:.1%}",
    }, indent=2))


if __name__ == "__main__":
    main()
