"""Memory and event-loop bounds of one node under careless or hostile traffic, on loopback.

Run by hand, never by the test suite:

    .venv/bin/python benchmarks/bench_memory.py                   # every scenario, about 1 minute
    .venv/bin/python benchmarks/bench_memory.py --only churn      # one scenario
    .venv/bin/python benchmarks/bench_memory.py --only churn --node-arg=--change-log-bytes=8388608

Every scenario starts its own `artemis server` process on 127.0.0.1 with a free port (the rate
limits raised, as the command printed with each figure shows) and stops it by its pid. Memory is
the node's resident set (RSS) read from /proc.

Scenarios
  churn      --cycles register/unregister cycles of one instance with --metadata-kb of metadata
             (batches of --batch): RSS before, right after, and once the node has given freed
             memory back (it trims every 10 s); what the change log keeps. No instance is live at
             the end, so what stays is what the node keeps of instances that left.
  leases     --instances instances, then --requests concurrent /api/replication/registry/
             leases.json (the whole registry each) while one client looks a service up in a
             loop: the longest lookup, the event loop's lag during the storm, RSS.
  services   --service-ids instances, each of a new service id, registered in batches of 5,000
             (leases of 600 s: none expires meanwhile): how many services the node took and how
             many instances it refused (max_services, max_services_per_client), RSS, loop lag.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

REGION = "bench"
ZONE = "z1"
HIGH_LIMITS = "registry=1000000000,replication=1000000000,cluster=1000000000,status=1000000"
CLUSTER_SECRET = "cluster-secret-of-the-benchmark"  # noqa: S105 - the node's own, for this run
PEER = {"x-artemis-cluster-secret": CLUSTER_SECRET}  # replication endpoints answer only peers


def as_a_peer() -> tuple[str, ...]:
    """Flags giving the node a peer that never answers and the secret, so it answers the
    replication endpoints (a node without peers refuses them); it is up at its first poll."""
    return ("--peers", f"{ZONE}:http://127.0.0.1:{free_port()}", "--cluster-secret",
            CLUSTER_SECRET, "--bootstrap-timeout", "0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


@contextlib.contextmanager
def node(args: argparse.Namespace, *extra: str) -> Iterator[tuple[str, int, list[str]]]:
    """Start a node on a free loopback port; yield (base url, pid, command); stop it."""
    port = free_port()
    cmd = [sys.executable, "-m", "artemis", "server", "--port", str(port), "--region", REGION,
           "--zone", ZONE, "--log-level", "warning", "--rate-limits", HIGH_LIMITS,
           "--rate-limit-per-client", "0", *extra,
           *args.node_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
                stderr = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"node did not start: {stderr[-2000:]}")
            time.sleep(0.05)
        yield base, proc.pid, cmd
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def instance(service: str, i: int, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    return {"instanceId": f"{ip}:8080", "ip": ip, "port": 8080, "regionId": REGION,
            "serviceId": service, "url": f"http://{ip}:8080/api", "zoneId": ZONE,
            "metadata": metadata or {"owner": "bench"}}


def metrics(client: httpx.Client, base: str) -> dict[str, float]:
    """The node's unlabelled samples and its refusals by cap, from /metrics."""
    out: dict[str, float] = {}
    for line in client.get(base + "/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def lag(client: httpx.Client, base: str, window: float) -> dict[str, Any]:
    runtime: dict[str, Any] = client.get(
        f"{base}/api/status/runtime.json?window={window}").json()
    return {"loop_lag": runtime["loopLag"], "longest_step_ms": runtime["longestStepMs"]}


def scenario_churn(args: argparse.Namespace) -> dict[str, Any]:
    metadata = {f"key{n}": "v" * 1000 for n in range(args.metadata_kb)}
    with node(args, "--snapshot-interval", "1") as (base, pid, cmd), \
            httpx.Client(timeout=60) as client:
        time.sleep(1)
        before = rss_mb(pid)
        started = time.monotonic()
        for first in range(0, args.cycles, args.batch):
            batch = {"instances": [instance(f"churn.{i % 10}", i, metadata)
                                   for i in range(first, min(first + args.batch, args.cycles))]}
            body = json.dumps(batch).encode()
            for path in ("/api/registry/register.json", "/api/registry/unregister.json"):
                answer = client.post(base + path, content=body).json()
                if answer["responseStatus"]["status"] != "success":
                    raise RuntimeError(answer)
        churn_s = time.monotonic() - started
        after = rss_mb(pid)
        time.sleep(args.settle)
        seen = metrics(client, base)
        return {"command": cmd, "cycles": args.cycles, "metadata_kb": args.metadata_kb,
                "churn_seconds": round(churn_s, 1), "rss_before_mb": before,
                "rss_after_churn_mb": after, f"rss_after_{args.settle:g}s_mb": rss_mb(pid),
                "instances_left": seen.get('artemis_instances{lease="normal"}'),
                "change_log_entries": seen.get("artemis_change_log_entries"),
                "change_log_mb": round(seen.get("artemis_change_log_bytes", 0) / 2**20, 1)
                if "artemis_change_log_bytes" in seen else None,
                **lag(client, base, churn_s + args.settle)}


def scenario_leases(args: argparse.Namespace) -> dict[str, Any]:
    with node(args, *as_a_peer()) as (base, pid, cmd), httpx.Client(timeout=120,
                                                                     headers=PEER) as client:
        fleet = [instance(f"svc.{i % 1000}", i) for i in range(args.instances)]
        for first in range(0, len(fleet), 5000):
            client.post(base + "/api/replication/registry/register.json",
                        content=json.dumps({"instances": fleet[first:first + 5000]}).encode())
        time.sleep(2.5)  # the snapshot of the new registry is taken
        lookups: list[float] = []
        sizes: list[int] = []
        stop = threading.Event()

        def look() -> None:
            body = json.dumps({"discoveryConfigs": [{"serviceId": "svc.1"}],
                               "regionId": REGION, "zoneId": ZONE}).encode()
            with httpx.Client(timeout=60) as own:
                while not stop.is_set():
                    began = time.monotonic()
                    own.post(base + "/api/discovery/lookup.json", content=body)
                    lookups.append(time.monotonic() - began)
                    time.sleep(0.01)

        def copy() -> None:
            with httpx.Client(timeout=120) as own, own.stream(
                    "POST", base + "/api/replication/registry/leases.json",
                    content=json.dumps({"regionId": REGION}).encode(),
                    headers={"Accept-Encoding": "identity", **PEER}) as answer:
                sizes.append(sum(len(chunk) for chunk in answer.iter_raw()))

        looker = threading.Thread(target=look)
        looker.start()
        started = time.monotonic()
        copiers = [threading.Thread(target=copy) for _ in range(args.requests)]
        for thread in copiers:
            thread.start()
        for thread in copiers:
            thread.join()
        storm_s = time.monotonic() - started
        stop.set()
        looker.join()
        return {"command": cmd, "instances": args.instances, "requests": args.requests,
                "answer_mb": round(max(sizes) / 2**20, 1), "storm_seconds": round(storm_s, 2),
                "longest_lookup_ms": round(max(lookups) * 1000, 1), "lookups": len(lookups),
                "rss_mb": rss_mb(pid), **lag(client, base, time.monotonic() - started)}


def scenario_services(args: argparse.Namespace) -> dict[str, Any]:
    with node(args, "--lease-ttl", "600") as (base, pid, cmd), \
            httpx.Client(timeout=120) as client:
        refused = 0
        started = time.monotonic()
        for first in range(0, args.service_ids, 5000):
            body = {"instances": [instance(f"unique.{i}", i)
                                  for i in range(first, min(first + 5000, args.service_ids))]}
            answer = client.post(base + "/api/registry/register.json",
                                 content=json.dumps(body).encode()).json()
            refused += len(answer.get("failedInstances") or ())
        took_s = time.monotonic() - started
        seen = metrics(client, base)
        return {"command": cmd, "service_ids": args.service_ids, "seconds": round(took_s, 1),
                "services_held": seen.get("artemis_services"), "refused": refused,
                "rss_mb": rss_mb(pid), **lag(client, base, took_s)}


SCENARIOS = {"churn": scenario_churn, "leases": scenario_leases, "services": scenario_services}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help="comma-separated scenarios (default: all)")
    parser.add_argument("--cycles", type=int, default=20_000)
    parser.add_argument("--metadata-kb", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--settle", type=float, default=12.0,
                        help="seconds to wait after the churn before the last RSS")
    parser.add_argument("--instances", type=int, default=300_000)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--service-ids", type=int, default=1_000_000)
    parser.add_argument("--node-arg", dest="node_args", action="append", default=[],
                        help="an extra flag for the node (repeat for more)")
    args = parser.parse_args()
    for name in args.only.split(","):
        print(json.dumps({name: SCENARIOS[name](args)}), flush=True)


if __name__ == "__main__":
    main()
