"""Lookup throughput with and without management data, on one node. Run by hand:

    .venv/bin/python benchmarks/bench_management.py                 # about 2 minutes
    .venv/bin/python benchmarks/bench_management.py --pull-outs 10000 --duration 10 --rounds 2

The node runs with a SQLite management database in a temporary directory. It holds 10,000
instances of 1,000 other services plus `lookup.service` with 20 instances. wrk measures
`lookup.json` of `lookup.service` (the 20 instances, as bench_node.py's lookup scenario) with no
management data, then --pull-outs instances are pulled out through the management API (5 more
instances of `lookup.service`, registered for this, and the rest among the other services), and
wrk measures the same lookup again: its answer is the same 20 instances, now filtered from 25.
Rounds alternate nothing (the pull-outs stay); each phase's figure is the median of --rounds.
Route rules are not part of it: they are not built.
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


def visible(client: httpx.Client, base: str) -> int:
    answer = client.post(base + "/api/discovery/lookup.json", json={
        "discoveryConfigs": [{"serviceId": "lookup.service"}], "regionId": REGION}).json()
    return len(answer["services"][0]["instances"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pull-outs", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, node(
            "--database", f"sqlite:///{tmp}/management.db", "--admin-token", TOKEN) as (
            base, proc, cmd):
        others = [instance(f"other.service.{i % 1000}", 100 + i)
                  for i in range(max(10_000, args.pull_outs))]
        register(base, others)
        register(base, [instance("lookup.service", i) for i in range(20)])
        with httpx.Client(timeout=30) as client:
            before = lookup(base, args, proc)
            shown_before = visible(client, base)
            extra = [instance("lookup.service", 20 + i) for i in range(5)]
            register(base, extra)
            targets = extra + others[:args.pull_outs - len(extra)]
            started = time.monotonic()
            for inst in targets:
                answer = client.post(base + "/api/management/operate-instance.json",
                                     headers=AUTH, content=json.dumps({
                                         "instanceKey": {"regionId": REGION,
                                                         "serviceId": inst["serviceId"],
                                                         "instanceId": inst["instanceId"]},
                                         "operation": "pull-out", "operationComplete": False,
                                         "operatorId": "bench"})).json()
                if answer["responseStatus"]["status"] != "success":
                    raise RuntimeError(answer)
            pull_seconds = time.monotonic() - started
            status = client.get(base + "/api/status/management.json").json()
            after = lookup(base, args, proc)
            shown_after = visible(client, base)
    rate_before = statistics.median(r["requests_per_s"] for r in before)
    rate_after = statistics.median(r["requests_per_s"] for r in after)
    print(json.dumps({
        "command": cmd, "instances": len(others) + 25,
        "lookup_without_management": {"requests_per_s": rate_before, "rounds": before,
                                      "instances_answered": shown_before},
        "pull_outs": len(targets), "pull_out_calls_seconds": round(pull_seconds, 1),
        "management": {k: status[k] for k in ("version", "pulledOut", "hiddenInstances")},
        "lookup_with_pull_outs": {"requests_per_s": rate_after, "rounds": after,
                                  "instances_answered": shown_after},
        "ratio": f"{rate_after / rate_before:.1%}",
    }, indent=2))


if __name__ == "__main__":
    main()
