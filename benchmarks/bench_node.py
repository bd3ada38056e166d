"""Throughput, latency, memory and event-loop lag of one registry node, on loopback.

Run by hand (needs `wrk`: `apt-get install wrk`), never by the test suite:

    .venv/bin/python benchmarks/bench_node.py                  # everything, about 2 minutes
    .venv/bin/python benchmarks/bench_node.py --only lookup    # one scenario

Every scenario starts its own `artemis server` process on 127.0.0.1 with a free port, sends
bounded load (wrk for --duration seconds, or a fixed number of requests), and stops the process by
its pid. The rate limits are raised for the run (the defaults are the original's production
limits: 100,000 registry calls per 10 s), as the command line printed with each figure shows.

Scenarios
  ceiling     GET /health: the HTTP stack and routing with a trivial answer
  lookup      POST lookup.json for one service of 20 instances
  heartbeat   POST heartbeat.json of one instance, rotating over 1,000 registered instances
  heartbeat-batch   heartbeat.json of 100 instances per request (renewals/s = requests/s x 100)
  register    register.json of 100 instances per request, over 20,000 distinct instances
  scale       100,000 instances in 10,000 services: registration rate, node RSS, and the event
              loop's lag while the fleet heartbeats, 2,000 instances change per round (in batches
              of 100), and the node takes snapshots and answers deltas from its oldest version
              and the whole services.json (gzipped); with the longest uninterrupted step of the
              snapshotter, of delta folding and of the garbage collector
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

REGION = "bench"
ZONE = "z1"
HIGH_LIMITS = "registry=1000000000,replication=1000000000,cluster=1000000000,status=1000000"


def peak_rss_mb(pid: int) -> float:
    """A process's largest resident set so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return -1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def node(*extra: str, env: dict[str, str] | None = None, port: int | None = None
         ) -> Iterator[tuple[str, psutil.Process, list[str]]]:
    """Start a node on `port` (default: a free loopback port); yield (base url, process,
    command); stop it."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "artemis", "server", "--port", str(port), "--region", REGION,
           "--zone", ZONE, "--log-level", "warning", "--rate-limits", HIGH_LIMITS,
           "--rate-limit-per-client", "0",
           "--max-batch", "5000",
           # every load generator connects from 127.0.0.1: no per-address cap
           "--max-connections-per-client", "0", "--max-instances-per-client", "0",
           "--max-services-per-client", "0", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                if httpx.get(base + "/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()  # its stderr ends only once it is gone
                proc.wait()
                raise RuntimeError(f"node did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        yield base, psutil.Process(proc.pid), cmd
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], wait: float = 10) -> None:
    """Stop a process this benchmark started, by its pid: politely, then for sure."""
    proc.terminate()
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def instance(service: str, i: int) -> dict[str, Any]:
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    return {"groupId": None, "healthCheckUrl": f"http://{ip}:8080/health",
            "instanceId": f"{ip}:8080", "ip": ip, "machineName": f"host-{i}",
            "metadata": {"owner": "bench"}, "port": 8080, "protocol": "http",
            "regionId": REGION, "serviceId": service, "status": "up",
            "url": f"http://{ip}:8080/api", "zoneId": ZONE}


def post(client: httpx.Client, base: str, path: str, body: Any) -> dict[str, Any]:
    answer = client.post(base + path, content=json.dumps(body).encode(),
                         headers={"Content-Type": "application/json"})
    answer.raise_for_status()
    data: dict[str, Any] = answer.json()
    return data


def register(base: str, instances: list[dict[str, Any]], batch: int = 1000) -> None:
    with httpx.Client(timeout=30) as client:
        for i in range(0, len(instances), batch):
            data = post(client, base, "/api/registry/register.json",
                        {"instances": instances[i:i + batch]})
            if data["responseStatus"]["status"] != "success":
                raise RuntimeError(data)


def lua_rotating(path: str, bodies: list[str]) -> str:
    items = ",\n".join("[==[" + b + "]==]" for b in bodies)
    return f"""
local bodies = {{
{items}
}}
local n = #bodies
local i = 0
local headers = {{["Content-Type"] = "application/json"}}
request = function()
  i = i % n + 1
  return wrk.format("POST", "{path}", headers, bodies[i])
end
"""


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"wrk printed no {pattern!r}:\n{text}")
    return match.group(1)


def wrk(url: str, duration: int, connections: int, script: str | None = None,
        proc: psutil.Process | None = None) -> dict[str, Any]:
    """Run wrk and return requests/s, latency percentiles (ms), errors and server CPU."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script or "")
        script_path = handle.name
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script:
        cmd += ["-s", script_path]
    cmd.append(url)
    cpu_before = proc.cpu_times() if proc else None
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30,
                         check=True).stdout
    elapsed = time.monotonic() - started
    os.unlink(script_path)
    result: dict[str, Any] = {
        "requests_per_s": float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        "non_2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out))
        else 0,
        "socket_errors": bool(re.search(r"Socket errors", out)),
    }
    for pct in ("50", "90", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        if m:
            result[f"p{pct}_ms"] = round(float(m.group(1)) * _UNITS[m.group(2)], 3)
    if proc and cpu_before:
        after = proc.cpu_times()
        used = (after.user - cpu_before.user) + (after.system - cpu_before.system)
        result["server_cpu_percent"] = round(100 * used / elapsed, 1)
    return result


def scenario_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    with node(*args.node_args, env=args.node_env) as (base, proc, cmd):
        return {"command": cmd, **wrk(base + "/health", args.duration, args.connections,
                                      proc=proc)}


def scenario_lookup(args: argparse.Namespace) -> dict[str, Any]:
    with node(*args.node_args, env=args.node_env) as (base, proc, cmd):
        register(base, [instance("lookup.service", i) for i in range(20)])
        body = json.dumps({"discoveryConfigs": [{"discoveryData": None, "regionId": None,
                                                 "serviceId": "lookup.service", "zoneId": None}],
                           "regionId": REGION, "zoneId": ZONE})
        with httpx.Client() as client:
            size = len(client.post(base + "/api/discovery/lookup.json", content=body).content)
        script = lua_rotating("/api/discovery/lookup.json", [body])
        return {"command": cmd, "answer_bytes": size,
                **wrk(base + "/api/discovery/lookup.json", args.duration, args.connections,
                      script, proc)}


def scenario_heartbeat(args: argparse.Namespace) -> dict[str, Any]:
    with node(*args.node_args, env=args.node_env) as (base, proc, cmd):
        fleet = [instance("heartbeat.service", i) for i in range(1000)]
        register(base, fleet)
        bodies = [json.dumps({"instances": [inst]}) for inst in fleet]
        script = lua_rotating("/api/registry/heartbeat.json", bodies)
        return {"command": cmd, **wrk(base + "/api/registry/heartbeat.json", args.duration,
                                      args.connections, script, proc)}


def scenario_heartbeat_batch(args: argparse.Namespace) -> dict[str, Any]:
    with node() as (base, proc, cmd):
        fleet = [instance(f"batch.service.{i // 100}", i) for i in range(10_000)]
        register(base, fleet)
        bodies = [json.dumps({"instances": fleet[i:i + 100]}) for i in range(0, 10_000, 100)]
        script = lua_rotating("/api/registry/heartbeat.json", bodies)
        result = wrk(base + "/api/registry/heartbeat.json", args.duration, args.connections,
                     script, proc)
        result["renewals_per_s"] = round(result["requests_per_s"] * 100)
        return {"command": cmd, **result}


def scenario_register(args: argparse.Namespace) -> dict[str, Any]:
    with node() as (base, proc, cmd):
        fleet = [instance(f"register.service.{i // 20}", i) for i in range(20_000)]
        bodies = [json.dumps({"instances": fleet[i:i + 100]}) for i in range(0, 20_000, 100)]
        script = lua_rotating("/api/registry/register.json", bodies)
        result = wrk(base + "/api/registry/register.json", args.duration, args.connections,
                     script, proc)
        result["instances_per_s"] = round(result["requests_per_s"] * 100)
        return {"command": cmd, **result}


def runtime(client: httpx.Client, base: str, window: float) -> dict[str, Any]:
    data: dict[str, Any] = client.get(f"{base}/api/status/runtime.json?window={window}").json()
    return data


def scenario_scale(args: argparse.Namespace) -> dict[str, Any]:
    services, per_service = 10_000, 10
    total = services * per_service
    with node("--snapshot-interval", "1", "--snapshot-count", "30") as (base, proc, cmd), \
            httpx.Client(timeout=60) as client:
        rss_empty = proc.memory_info().rss
        # The load generator yields the CPU to the node (2 shared cores): the lag measured is
        # then the node's own, not the client's encoding time.
        os.nice(10)
        fleet = [instance(f"scale.service.{i % services}", i) for i in range(total)]
        started = time.monotonic()
        register(base, fleet, batch=1000)
        register_s = time.monotonic() - started
        lag_register = runtime(client, base, register_s + 1)["loopLag"]
        # Let the snapshot of the whole registry be taken, then keep the fleet alive and
        # churning while deltas and whole snapshots are asked for.
        first = runtime(client, base, 5)["snapshotVersions"]
        deadline = time.monotonic() + 10
        while runtime(client, base, 1)["snapshotVersions"] == first:
            if time.monotonic() > deadline:
                raise RuntimeError("no snapshot was taken")
            time.sleep(0.2)
        rss_registered = proc.memory_info().rss
        beats = [json.dumps({"instances": fleet[i:i + 1000]}).encode()
                 for i in range(0, total, 1000)]  # encoded once: the client competes for CPU
        churn_started = time.monotonic()
        rng = random.Random(7)
        delta_sizes = []
        services_bytes = 0
        rounds = 0
        while time.monotonic() - churn_started < args.churn_seconds:
            rounds += 1
            # every instance heartbeats once per round (batches of 1,000), 2,000 re-register
            for beat in beats:
                client.post(base + "/api/registry/heartbeat.json", content=beat).raise_for_status()
            changed = [dict(fleet[j], status=rng.choice(["up", "starting"]))
                       for j in rng.sample(range(total), 2000)]
            register(base, changed, batch=100)
            oldest = runtime(client, base, 1)["snapshotVersions"][0]
            answer = post(client, base, "/api/discovery/services-delta.json",
                          {"regionId": REGION, "zoneId": ZONE, "version": oldest})
            if answer["responseStatus"]["status"] == "success":
                delta_sizes.append(sum(len(v) for v in answer["delta"].values()))
            if rounds % 3 == 0:
                request = client.build_request("POST", base + "/api/discovery/services.json",
                                               content=b"{}", headers={"Accept-Encoding": "gzip"})
                whole = client.send(request, stream=True)
                services_bytes = sum(len(chunk) for chunk in whole.iter_raw())
                whole.close()
        churn_s = time.monotonic() - churn_started
        status = runtime(client, base, churn_s)
        return {
            "command": cmd,
            "instances": total,
            "services": services,
            "register_seconds": round(register_s, 2),
            "register_instances_per_s": round(total / register_s),
            "rss_empty_mb": round(rss_empty / 2**20, 1),
            "rss_registered_mb": round(rss_registered / 2**20, 1),
            "rss_after_churn_mb": round(proc.memory_info().rss / 2**20, 1),
            "loop_lag_during_registration": lag_register,
            "churn_seconds": round(churn_s, 1),
            "churn_rounds": rounds,
            "loop_lag_during_churn": status["loopLag"],
            "longest_step_ms": status["longestStepMs"],
            "snapshots_taken": status["snapshotsTaken"],
            "delta_sizes": delta_sizes[:5],
            "services_json_gzip_bytes": services_bytes,
        }


SCENARIOS = {
    "ceiling": scenario_ceiling,
    "lookup": scenario_lookup,
    "heartbeat": scenario_heartbeat,
    "heartbeat-batch": scenario_heartbeat_batch,
    "register": scenario_register,
    "scale": scenario_scale,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help="comma-separated scenarios (default: all)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk load")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--churn-seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--node-arg", dest="node_args", action="append", default=[],
                        help="an extra flag for the node (repeat for more)")
    parser.add_argument("--node-env", dest="node_env_list", action="append", default=[],
                        help="NAME=VALUE in the node's environment (repeat for more)")
    args = parser.parse_args()
    args.node_env = dict(item.split("=", 1) for item in args.node_env_list)
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
