"""The Eureka API on one node, on loopback: renewals against Artemis heartbeats, and the full
fetch of a large registry.

Run by hand (needs `wrk`: `apt-get install wrk`), never by the test suite:

    .venv/bin/python benchmarks/bench_eureka.py                 # both scenarios, about 3 minutes
    .venv/bin/python benchmarks/bench_eureka.py --only renew    # one scenario

Every scenario starts its own `artemis server` process (bench_node.node: raised rate limits, no
per-client caps) and stops it by its pid.

Scenarios
  renew   1,000 instances registered through the Artemis API and 1,000 through the Eureka API
          on the same node; wrk sends heartbeat.json (one instance per request, rotating) and
          Eureka renewals (PUT /eureka/apps/APP/ID?status=UP&lastDirtyTimestamp=..., rotating),
          in alternating rounds of --duration seconds each, --rounds times; the figure is the
          ratio of the median rates (target: at least 0.8).
  fetch   --instances Eureka instances (100 per application) registered one POST each by
          --clients concurrent clients; then the first full fetch (JSON and XML, built), and
          wrk on GET /eureka/apps (JSON, gzip) served from the kept answer: its ETag is the
          same before and after the run, so every request got the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_node import instance, lua_rotating, node, register, wrk

APP = "BENCH"


def eureka_info(i: int, app: str = APP, duration: int = 90) -> dict[str, Any]:
    """An InstanceInfo as py-eureka-client registers one."""
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    return {"instance": {
        "instanceId": f"{ip}:{app.lower()}:8080", "hostName": f"host-{i}", "app": app,
        "ipAddr": ip, "status": "UP", "overriddenstatus": "UNKNOWN",
        "port": {"$": 8080, "@enabled": "true"}, "securePort": {"$": 443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
                           "name": "MyOwn"},
        "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": duration},
        "metadata": {"owner": "bench"}, "homePageUrl": f"http://{ip}:8080/",
        "statusPageUrl": f"http://{ip}:8080/info", "healthCheckUrl": f"http://{ip}:8080/health",
        "vipAddress": app.lower(), "secureVipAddress": app.lower(),
        "lastUpdatedTimestamp": "1000", "lastDirtyTimestamp": "1000",
        "isCoordinatingDiscoveryServer": "false"}}


async def register_eureka(base: str, bodies: list[dict[str, Any]], clients: int) -> float:
    """POST every body to /eureka/apps/APP with `clients` concurrent clients; seconds taken."""
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait((body["instance"]["app"], json.dumps(body).encode()))

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            app, body = queue.get_nowait()
            async with session.post(f"{base}/eureka/apps/{app}", data=body,
                                    headers={"content-type": "application/json"}) as answer:
                if answer.status != 204:
                    raise RuntimeError(f"{answer.status} {await answer.text()}")

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(clients)))
    return time.perf_counter() - started


def lua_renewals(paths: list[str]) -> str:
    items = ",\n".join(f'"{p}"' for p in paths)
    return f"""
local paths = {{
{items}
}}
local n = #paths
local i = 0
local headers = {{["Content-Length"] = "0"}}
request = function()
  i = i % n + 1
  return wrk.format("PUT", paths[i], headers, "")
end
"""


def scenario_renew(args: argparse.Namespace) -> dict[str, Any]:
    with node(*args.node_args) as (base, proc, cmd):
        fleet = [instance("heartbeat.service", i) for i in range(1000)]
        register(base, fleet)
        infos = [eureka_info(i) for i in range(1000)]
        asyncio.run(register_eureka(base, infos, 16))
        heartbeats = [json.dumps({"instances": [inst]}) for inst in fleet]
        heartbeat_script = lua_rotating("/api/registry/heartbeat.json", heartbeats)
        renew_script = lua_renewals([
            f"/eureka/apps/{APP}/{b['instance']['instanceId']}?status=UP&lastDirtyTimestamp=1000"
            for b in infos])
        rounds: dict[str, list[dict[str, Any]]] = {"heartbeat": [], "renew": []}
        for _ in range(args.rounds):
            rounds["heartbeat"].append(wrk(base + "/api/registry/heartbeat.json",
                                           args.duration, args.connections, heartbeat_script,
                                           proc))
            rounds["renew"].append(wrk(base + "/eureka/apps", args.duration, args.connections,
                                       renew_script, proc))
        for name, results in rounds.items():
            if any(r["non_2xx"] or r["socket_errors"] for r in results):
                raise RuntimeError(f"{name}: failed requests: {results}")
        median = {name: statistics.median(r["requests_per_s"] for r in results)
                  for name, results in rounds.items()}
        return {"command": cmd, "rounds": rounds,
                "heartbeat_per_s": round(median["heartbeat"]),
                "renew_per_s": round(median["renew"]),
                "renew_to_heartbeat": round(median["renew"] / median["heartbeat"], 3)}


def timed_get(client: httpx.Client, url: str, headers: dict[str, str]) -> tuple[float, int, str]:
    """GET `url`: milliseconds until its last byte, bytes on the wire (gzip not undone), ETag."""
    started = time.perf_counter()
    with client.stream("GET", url, headers=headers) as answer:
        answer.raise_for_status()
        size = sum(len(chunk) for chunk in answer.iter_raw())
        etag = answer.headers["etag"]
    return round((time.perf_counter() - started) * 1000, 1), size, etag


def scenario_fetch(args: argparse.Namespace) -> dict[str, Any]:
    with node("--max-lease-ttl", "3600", *args.node_args) as (base, proc, cmd):
        bodies = [eureka_info(i, f"BENCH-{i // 100}", duration=3600)
                  for i in range(args.instances)]
        seconds = asyncio.run(register_eureka(base, bodies, args.clients))
        json_gzip = {"accept": "application/json", "accept-encoding": "gzip"}
        with httpx.Client(timeout=120) as client:
            # the first fetch builds (after snapshot_interval, so it sees every instance)
            time.sleep(1.5)
            plain = {"accept-encoding": "identity"}
            first_json = timed_get(client, base + "/eureka/apps",
                                   {**plain, "accept": "application/json"})
            first_xml = timed_get(client, base + "/eureka/apps", plain)
            first_gzip = timed_get(client, base + "/eureka/apps", json_gzip)  # compresses once
            kept_json = timed_get(client, base + "/eureka/apps", json_gzip)
            steps = client.get(base + "/api/status/runtime.json").json()["longestStepMs"]
            count = sum(len(a["instance"]) for a in
                        client.get(base + "/eureka/apps", headers={"accept": "application/json"})
                        .json()["applications"]["application"])
            script = ('wrk.headers["Accept"] = "application/json"\n'
                      'wrk.headers["Accept-Encoding"] = "gzip"\n')
            load = wrk(base + "/eureka/apps", args.duration, args.fetch_connections, script,
                       proc)
            after = timed_get(client, base + "/eureka/apps", json_gzip)
        return {
            "command": cmd, "instances": count,
            "registrations_per_s": round(args.instances / seconds),
            "first_fetch_json_ms_bytes": first_json[:2],
            "first_fetch_xml_ms_bytes": first_xml[:2],
            "first_gzip_fetch_json_ms_bytes": first_gzip[:2],
            "kept_fetch_json_gzip_ms_bytes": kept_json[:2],
            "same_bytes_throughout": first_json[2] == kept_json[2] == after[2],
            "longest_build_step_ms": steps.get("eureka"),
            "node_rss_mb": round(proc.memory_info().rss / 2**20),
            "kept_fetch_load": load,
        }


SCENARIOS = {"renew": scenario_renew, "fetch": scenario_fetch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help="comma-separated scenarios (default: all)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of renew")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--fetch-connections", type=int, default=4)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=32, help="concurrent registering clients")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--node-arg", dest="node_args", action="append", default=[],
                        help="an extra flag for the node (repeat for more)")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(),
                                           "python": sys.version.split()[0]}}
    for name in args.only.split(","):
        results[name] = SCENARIOS[name](args)
        print(json.dumps({name: results[name]}), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
