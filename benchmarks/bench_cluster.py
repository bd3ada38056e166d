"""A three-node cluster on loopback: replication lag, restart convergence, replication CPU.

Run by hand, never by the test suite:

    .venv/bin/python benchmarks/bench_cluster.py                 # everything, about 4 minutes
    .venv/bin/python benchmarks/bench_cluster.py --only lag
    .venv/bin/python benchmarks/bench_cluster.py --only restart --instances 100000 --down 60

Scenarios
  lag       three nodes; 10,000 instances, each renewed once a second, the heartbeats spread
            over the three nodes (batches of --hb-batch instances, 100 by default): 10,000
            heartbeats/s, each batch always sent to the node it registered at. Reported: each
            node's replication lag per peer (client write accepted here -> acknowledged by
            the peer; from /api/status/replication.json), and an end-to-end probe: every 100 ms
            an instance registers at one node and a subscriber of each other node times its
            `new` push (from just before the register call).
  restart   three nodes with --instances registered (leases of 300 s, so no heartbeats are
            needed); node B is killed (SIGKILL), stays down --down seconds while 5 % of the
            instances are unregistered and as many new ones registered at A and C, then is
            started again. Reported: seconds from B's start to /health 200, and to B's registry
            checksum equal to A's and C's.
  cpu       the lag scenario's heartbeat load for --seconds, on three nodes without peers and
            then on a three-node cluster; the CPU time (user + system) of the node processes in
            each case, and the share replication adds.

Nodes are started on free 127.0.0.1 ports and stopped by their pid; load is bounded in count
and time. Clock readings from different processes are comparable (the machine's monotonic clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_node import HIGH_LIMITS, REGION, ZONE, free_port, instance
from bench_push import percentiles

JSON = {"Content-Type": "application/json"}
CLUSTER_SECRET = "cluster-secret-of-the-benchmark"  # noqa: S105 - the nodes' shared secret
# what a peer sends: the checksums probe calls a peer-only endpoint
PEER = {**JSON, "x-artemis-cluster-secret": CLUSTER_SECRET}


class Cluster:
    """Three (or `size`) `artemis server` processes that list one another as peers."""

    def __init__(self, size: int = 3, extra: tuple[str, ...] = (), peers: bool = True) -> None:
        self.ports = [free_port() for _ in range(size)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.extra = extra
        self.peers = f"{ZONE}:" + ",".join(self.urls) if peers else ""
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size

    def command(self, i: int) -> list[str]:
        cmd = [sys.executable, "-m", "artemis", "server", "--port", str(self.ports[i]),
               "--region", REGION, "--zone", ZONE, "--log-level", "warning",
               "--rate-limits", HIGH_LIMITS, "--rate-limit-per-client", "0",
               "--max-batch", "5000", "--url", self.urls[i],
               "--max-connections-per-client", "0", "--max-instances-per-client", "0",
               "--max-services-per-client", "0", *self.extra]
        return cmd + (["--peers", self.peers, "--cluster-secret", CLUSTER_SECRET]
                      if self.peers else [])

    def start(self, i: int) -> float:
        """Start node i; returns the monotonic time it was started."""
        started = time.monotonic()
        self.procs[i] = subprocess.Popen(self.command(i), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        return started

    def wait_up(self, i: int, deadline: float = 60.0) -> float:
        end = time.monotonic() + deadline
        while True:
            try:
                if httpx.get(self.urls[i] + "/health", timeout=0.5).status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            proc = self.procs[i]
            if (proc is not None and proc.poll() is not None) or time.monotonic() > end:
                raise RuntimeError(f"node {i} did not come up")
            time.sleep(0.01)

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        self.procs[i] = None

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                times = psutil.Process(proc.pid).cpu_times()
                total += times.user + times.system
        return total

    @contextlib.contextmanager
    def running(self) -> Iterator[Cluster]:
        try:
            for i in range(len(self.ports)):
                self.start(i)
            for i in range(len(self.ports)):
                self.wait_up(i)
            yield self
        finally:
            self.stop()


def register_spread(urls: list[str], instances: list[dict[str, Any]], batch: int = 1000,
                    path: str = "/api/registry/register.json") -> None:
    with httpx.Client(timeout=60) as client:
        for n, start in enumerate(range(0, len(instances), batch)):
            answer = client.post(urls[n % len(urls)] + path, headers=JSON,
                                 content=json.dumps({"instances": instances[start:start + batch]}))
            if answer.json()["responseStatus"]["status"] != "success":
                raise RuntimeError(answer.text[:500])


def checksum(client: httpx.Client, url: str) -> str:
    answer = client.post(url + "/api/replication/registry/checksums.json", headers=PEER,
                         content=json.dumps({"regionId": REGION, "checksum": "-"}))
    return str(answer.json()["checksum"])


# --- heartbeat load ----------------------------------------------------------------------------


def _heartbeats(urls: list[str], instances: list[dict[str, Any]], rate: float, seconds: float,
                batch: int, out: Any) -> None:
    """Renew `instances` at `rate` renewals/s for `seconds`, batches spread over `urls`."""

    async def main() -> None:
        bodies = [json.dumps({"instances": instances[i:i + batch]}).encode()
                  for i in range(0, len(instances), batch)]
        interval = batch / rate
        sent = failed = 0
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(
                max_connections=64)) as client:
            pending: set[asyncio.Task[None]] = set()

            async def one(url: str, body: bytes) -> None:
                nonlocal sent, failed
                answer = await client.post(url + "/api/registry/heartbeat.json", content=body,
                                           headers=JSON)
                if answer.json()["responseStatus"]["status"] == "success":
                    sent += batch
                else:
                    failed += batch

            start = time.monotonic()
            n = 0
            while time.monotonic() - start < seconds:
                due = start + n * interval
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                k = n % len(bodies)  # batch k always goes to the node it registered at
                task = asyncio.create_task(one(urls[k % len(urls)], bodies[k]))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
            await asyncio.gather(*pending, return_exceptions=True)
            out.put({"renewals": sent, "failed": failed,
                     "seconds": round(time.monotonic() - start, 2)})

    asyncio.run(main())


def heartbeat_load(urls: list[str], instances: list[dict[str, Any]], rate: float,
                   seconds: float, batch: int) -> multiprocessing.Process:
    out: Any = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_heartbeats,
                                   args=(urls, instances, rate, seconds, batch, out))
    proc.start()
    proc.result_queue = out  # type: ignore[attr-defined]
    return proc


# --- end-to-end probe ----------------------------------------------------------------------------


async def probe(urls: list[str], seconds: float) -> list[float]:
    """Every 100 ms register a probe at one node; time its `new` at each other node's push."""
    service = "bench.probe"
    arrivals: dict[str, dict[int, float]] = {}
    sockets = []
    for url in urls:
        ws = await websockets.connect(url.replace("http", "ws", 1)
                                      + "/ws/discovery/instance-change", max_queue=None)
        await ws.send(json.dumps({"serviceId": service, "regionId": REGION, "zoneId": ZONE,
                                  "discoveryData": None}))
        sockets.append(ws)
        arrivals[url] = {}

    async def read(url: str, ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in ws:
                change = json.loads(frame)
                if change.get("changeType") == "new":
                    n = int(change["instance"]["instanceId"].split("-")[1])
                    arrivals[url].setdefault(n, time.monotonic())

    readers = [asyncio.create_task(read(url, ws)) for url, ws in zip(urls, sockets, strict=True)]
    sent: dict[int, tuple[str, float]] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            url = urls[n % len(urls)]
            body = {"instances": [{**instance(service, n), "instanceId": f"probe-{n}"}]}
            sent[n] = (url, time.monotonic())
            await client.post(url + "/api/registry/register.json", json=body)
            n += 1
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the last probes' pushes
    for ws in sockets:
        await ws.close()
    for task in readers:
        task.cancel()
    lags = []
    for n, (origin, at) in sent.items():
        for url in urls:
            if url != origin and n in arrivals[url]:
                lags.append((arrivals[url][n] - at) * 1000)
    missing = sum(1 for n, (origin, _) in sent.items() for url in urls
                  if url != origin and n not in arrivals[url])
    if missing:
        print(f"  probe: {missing} pushes did not arrive", file=sys.stderr)
    return lags


# --- scenarios -----------------------------------------------------------------------------------


def scenario_lag(args: argparse.Namespace) -> dict[str, Any]:
    with Cluster().running() as cluster:
        instances = [instance(f"bench.service.{i % 1000}", i) for i in range(args.hb_instances)]
        register_spread(cluster.urls, instances, batch=args.hb_batch)
        load = heartbeat_load(cluster.urls, instances, args.rate, args.seconds, args.hb_batch)
        time.sleep(2)  # let the load settle before the probe starts
        probe_lags = asyncio.run(probe(cluster.urls, args.seconds - 4))
        load.join(args.seconds + 30)
        renewals = load.result_queue.get(timeout=10)  # type: ignore[attr-defined]
        per_node = {}
        with httpx.Client(timeout=10) as client:
            for url in cluster.urls:
                status = client.get(url + "/api/status/replication.json").json()
                per_node[url] = {p["url"]: {"lag": p["lag"], "sent": p["sent"],
                                            "requests": p["requests"],
                                            "coalesced": p["coalesced"],
                                            "dropped": p["droppedOverflow"] + p["droppedExpired"]
                                            + p["droppedFailed"], "retried": p["retried"]}
                                 for p in status["peers"]}
        worst = max(peer["lag"]["p99Ms"] for node in per_node.values() for peer in node.values())
    return {"heartbeats": renewals, "heartbeats_per_s": round(renewals["renewals"]
                                                              / renewals["seconds"]),
            "replication_lag_worst_p99_ms": worst, "replication": per_node,
            "probe_push_ms": percentiles(probe_lags) if probe_lags else {"count": 0}}


def scenario_restart(args: argparse.Namespace) -> dict[str, Any]:
    with Cluster(extra=("--lease-ttl", "300")).running() as cluster:
        a, b, c = cluster.urls
        count = args.instances
        instances = [instance(f"bench.service.{i % 10_000}", i) for i in range(count)]
        started = time.monotonic()
        register_spread(cluster.urls, instances, batch=2000)
        registered_in = time.monotonic() - started
        with httpx.Client(timeout=30) as client:
            end = time.monotonic() + 60
            while len({checksum(client, u) for u in cluster.urls}) != 1:
                if time.monotonic() > end:
                    raise RuntimeError("the cluster did not converge before the restart")
                time.sleep(0.2)
            cluster.kill(1)
            down_at = time.monotonic()
            churn = count // 20
            register_spread([a, c], instances[:churn], batch=1000,
                            path="/api/registry/unregister.json")
            fresh = [instance(f"bench.service.{i % 10_000}", count + i) for i in range(churn)]
            register_spread([a, c], fresh, batch=1000)
            time.sleep(max(0.0, args.down - (time.monotonic() - down_at)))
            restarted = cluster.start(1)
            up_at = cluster.wait_up(1, deadline=120)
            end = time.monotonic() + 120
            while True:
                sums = {u: checksum(client, u) for u in cluster.urls}
                if len(set(sums.values())) == 1:
                    converged_at = time.monotonic()
                    break
                if time.monotonic() > end:
                    raise RuntimeError(f"B did not converge: {sums}")
                time.sleep(0.05)
            status = client.get(b + "/api/status/replication.json").json()
            health = client.get(b + "/health").json()
    return {"instances": count, "registered_in_s": round(registered_in, 2),
            "down_s": round(restarted - down_at, 1), "churn_while_down": 2 * churn,
            "start_to_up_s": round(up_at - restarted, 2),
            "start_to_converged_s": round(converged_at - restarted, 2),
            "instances_on_b": health["instances"], "bootstrap": status["bootstrap"]}


def _cpu_run(cluster: Cluster, args: argparse.Namespace) -> tuple[float, dict[str, Any]]:
    instances = [instance(f"bench.service.{i % 1000}", i) for i in range(args.hb_instances)]
    register_spread(cluster.urls, instances, batch=args.hb_batch)
    time.sleep(1)
    before = cluster.cpu_seconds()
    load = heartbeat_load(cluster.urls, instances, args.rate, args.seconds, args.hb_batch)
    load.join(args.seconds + 30)
    used = cluster.cpu_seconds() - before
    return used, load.result_queue.get(timeout=10)  # type: ignore[attr-defined]


def scenario_cpu(args: argparse.Namespace) -> dict[str, Any]:
    with Cluster(peers=False).running() as alone:
        alone_cpu, alone_load = _cpu_run(alone, args)
    with Cluster().running() as cluster:
        cluster_cpu, cluster_load = _cpu_run(cluster, args)
        with httpx.Client(timeout=10) as client:
            accounted = sum(client.get(u + "/api/status/replication.json").json()["cpuSeconds"]
                            for u in cluster.urls)
    return {"seconds": args.seconds, "renewals_alone": alone_load,
            "renewals_cluster": cluster_load,
            "cpu_s_three_single_nodes": round(alone_cpu, 2),
            "cpu_s_three_node_cluster": round(cluster_cpu, 2),
            "replication_share_of_client_serving": f"{(cluster_cpu - alone_cpu) / alone_cpu:.0%}",
            "cpu_s_accounted_by_nodes": round(accounted, 2)}


SCENARIOS = {"lag": scenario_lag, "restart": scenario_restart, "cpu": scenario_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--seconds", type=float, default=30.0, help="load duration (lag, cpu)")
    parser.add_argument("--rate", type=float, default=10_000, help="heartbeats per second")
    parser.add_argument("--hb-instances", type=int, default=10_000)
    parser.add_argument("--hb-batch", type=int, default=100)
    parser.add_argument("--instances", type=int, default=100_000, help="restart scenario")
    parser.add_argument("--down", type=float, default=60.0, help="seconds B stays down")
    args = parser.parse_args()
    results = {}
    for name in args.only or list(SCENARIOS):
        print(f"{name} ...", file=sys.stderr)
        results[name] = SCENARIOS[name](args)
        print(json.dumps({name: results[name]}, indent=2))
    if len(results) > 1:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
