"""How every cost of one node grows with its registry: 10,000 / 100,000 / 1,000,000 instances.

Run by hand (needs `wrk`), never by the test suite:

    .venv/bin/python benchmarks/bench_scale.py                         # 10k and 100k, ~3 min
    .venv/bin/python benchmarks/bench_scale.py --sizes 1000000 --churn-seconds 60

For each size, ten instances per service (so 1,000,000 instances are 100,000 services), a node
is started on 127.0.0.1 with the caps and rate limits raised and leases of 600 s (nothing
expires during the run), and:

  register      the instances in batches of 5,000 over four connections: instances/s, RSS
  idle lookup   wrk on lookup.json of a 20-instance service for --lookup-seconds: the request
                path's rate on an idle node, whatever the registry's size
  idle writes   the same for a heartbeat and a register (the same data again) of one instance a
                request, rotating over 1,000 instances spread over the registry
  churn         for --churn-seconds: every instance heartbeats once a round of --round-seconds
                (10 s by default, as clients of a 20 s lease do; batches of 5,000),
                1,000 new instances register and the 1,000 of the round before unregister (a
                deploy), 1,000 of the fleet register again (as restarted clients do), a client's
                delta is fetched as the protocol has it, from the version of its last answer
                (its size recorded), every third round the whole services.json (gzip);
                meanwhile wrk runs the same lookup: its rate during churn
  worst delta   after the churn, the delta from the oldest kept version whose changes the log
                still holds (the largest the node gives), with the loop lag while it was made
  costs         the loop-lag timer's maximum (with the machine's steal meanwhile: steal.py, the
                CPU time the hypervisor took, in all and the most within 100 ms) and the
                longest steps of the snapshotter, delta folding and the garbage collector
                during registration and churn (runtime.json);
                services.json's gzipped size and the time of one fetch; RSS after churn
  restart copy  a second node started with the first as its peer: seconds until it is up,
                having copied the whole registry (leases.json, a page of services a request),
                its checksum equal, its RSS then and at its peak, and the loop lag of both
                nodes during the copy

The load generator runs niced (the 2 cores are shared): what is measured is the node. Bodies are
encoded before the clock starts. Every process started is stopped by its pid.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench_node import REGION, ZONE, free_port, lua_rotating, node, peak_rss_mb, stop, wrk
from steal import StealWatch

SECRET = "bench-cluster-secret-0123456789"  # noqa: S105 - a benchmark's own secret
PER_SERVICE = 10
CHURN_POOL = 30_000_000  # ids of the instances a deploy brings up during churn
BATCH = 5_000
STEAL = StealWatch()  # started by main(): what the hypervisor took, next to each loop lag
LOOKUP_SERVICE = "scale.lookup"


def instance_json(service: str, i: int, status: str = "up") -> str:
    """One instance as the Java SDK sends it (keys in order, nulls written), as JSON text."""
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    return (f'{{"groupId":null,"healthCheckUrl":"http://{ip}:8080/health",'
            f'"instanceId":"{ip}:8080","ip":"{ip}","machineName":"host-{i}",'
            f'"metadata":{{"owner":"bench"}},"port":8080,"protocol":"http",'
            f'"regionId":"{REGION}","serviceId":"{service}","status":"{status}",'
            f'"url":"http://{ip}:8080/api","zoneId":"{ZONE}"}}')


def service_of(i: int) -> str:
    return f"scale.service.{i // PER_SERVICE:06d}"


def bodies(total: int, status: str = "up") -> Iterator[bytes]:
    """The whole fleet as InstancesRequest bodies of BATCH instances."""
    for start in range(0, total, BATCH):
        items = ",".join(instance_json(service_of(i), i, status)
                         for i in range(start, min(total, start + BATCH)))
        yield f'{{"instances":[{items}]}}'.encode()


def post_all(base: str, path: str, payloads: list[bytes], connections: int = 4) -> None:
    """POST every payload, over `connections` keep-alive connections at once; each answer must
    be a success."""
    failures: list[str] = []

    def worker(part: list[bytes]) -> None:
        with httpx.Client(timeout=120) as client:
            for payload in part:
                answer = client.post(base + path, content=payload,
                                     headers={"Content-Type": "application/json"}).json()
                if answer["responseStatus"]["status"] != "success":
                    failures.append(json.dumps(answer["responseStatus"]))
                    return

    threads = [threading.Thread(target=worker, args=(payloads[n::connections],))
               for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{path} failed: {failures[0]}")


def unnice(proc: psutil.Process) -> None:
    """Give a node the normal priority this niced generator took from it (root may)."""
    try:
        proc.nice(0)
    except psutil.AccessDenied:
        print("cannot renice the node: it runs niced like the load generator", file=sys.stderr)


def runtime(base: str, window: float) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{base}/api/status/runtime.json?window={window}",
                                       timeout=60).json()
    return answer


def checksum(base: str) -> str:
    answer = httpx.post(f"{base}/api/replication/registry/checksums.json",
                        json={"regionId": REGION, "checksum": "0"}, timeout=120,
                        headers={"x-artemis-cluster-secret": SECRET}).json()
    return str(answer["checksum"])


def lookup_script() -> str:
    body = json.dumps({"discoveryConfig": {"serviceId": LOOKUP_SERVICE, "regionId": REGION,
                                           "zoneId": ZONE}})
    return lua_rotating("/api/discovery/lookup.json", [body])


def wait_snapshot(base: str) -> None:
    """Wait until a snapshot holds every change made so far (its version is the revision)."""
    deadline = time.monotonic() + 60
    while True:
        now = runtime(base, 1)
        if now["snapshotVersions"] and max(now["snapshotVersions"]) >= now["revision"]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no snapshot of revision {now['revision']} within 60 s")
        time.sleep(0.2)


def services_json(base: str) -> tuple[int, float]:
    """The gzipped size of the whole services.json and the seconds one fetch took."""
    started = time.monotonic()
    with httpx.Client(timeout=300) as client, client.stream(
            "POST", base + "/api/discovery/services.json", content=b"{}",
            headers={"Accept-Encoding": "gzip"}) as answer:
        size = sum(len(chunk) for chunk in answer.iter_raw())
    return size, round(time.monotonic() - started, 3)


def churn(base: str, total: int, seconds: float, beats: list[bytes], round_seconds: float
          ) -> dict[str, Any]:
    rng = random.Random(7)
    rounds = overran = 0
    delta_ms: list[float] = []
    delta_bytes: list[int] = []
    leaving: list[str] = []
    version = runtime(base, 1)["snapshotVersions"][-1]  # as if services.json had just been read
    started = time.monotonic()
    with httpx.Client(timeout=300) as client:
        while time.monotonic() - started < seconds:
            rounds += 1
            round_ends = time.monotonic() + round_seconds
            post_all(base, "/api/registry/heartbeat.json", beats, connections=2)
            # a deploy: 1,000 new instances come up, the 1,000 of the round before go away (they
            # are not among the fleet, whose heartbeats stay exactly what the node holds)
            arrived = [instance_json(service_of(rng.randrange(total)),
                                     CHURN_POOL + rounds * 1000 + k) for k in range(1000)]
            post_all(base, "/api/registry/register.json",
                     [f'{{"instances":[{",".join(arrived)}]}}'.encode()])
            if leaving:
                post_all(base, "/api/registry/unregister.json",
                         [f'{{"instances":[{",".join(leaving)}]}}'.encode()])
            leaving = arrived
            # and 1,000 of the fleet restart: registered again with the same data
            again = [instance_json(service_of(j), j) for j in rng.sample(range(total),
                                                                        min(1000, total))]
            post_all(base, "/api/registry/register.json",
                     [f'{{"instances":[{",".join(again)}]}}'.encode()])
            # a client's delta, as the protocol has it: from the version of its last answer
            # (a fall back to the newest version where the node has none from it)
            asked = time.monotonic()
            delta = client.post(base + "/api/discovery/services-delta.json",
                                json={"regionId": REGION, "zoneId": ZONE, "version": version})
            answer = delta.json()
            if answer["responseStatus"]["errorCode"] == "success":
                delta_bytes.append(len(delta.content))
                version = answer["version"]
            else:
                delta_bytes.append(-1)
                version = runtime(base, 1)["snapshotVersions"][-1]
            delta_ms.append(round((time.monotonic() - asked) * 1000, 1))
            if rounds % 3 == 0:
                services_json(base)
            if time.monotonic() < round_ends:
                time.sleep(round_ends - time.monotonic())
            else:
                overran += 1
    elapsed = time.monotonic() - started
    return {"rounds": rounds, "rounds_overran": overran, "seconds": round(elapsed, 1),
            "renewals_per_s": round(rounds * total / elapsed), "delta_fetch_ms": delta_ms[:5],
            "delta_bytes": delta_bytes[:5]}  # -1: data-not-found


def worst_delta(base: str) -> dict[str, Any]:
    """The largest delta the node gives: from the oldest kept version whose changes the log
    still holds (at a million instances: the end of the registration itself), asked once
    after the churn, with the loop lag's maximum while it was made and sent."""
    started = time.monotonic()
    with httpx.Client(timeout=300) as client:
        for version in runtime(base, 1)["snapshotVersions"][:-1]:
            asked = time.monotonic()
            delta = client.post(base + "/api/discovery/services-delta.json",
                                json={"regionId": REGION, "zoneId": ZONE, "version": version})
            if delta.json()["responseStatus"]["errorCode"] == "success":
                fetched = round((time.monotonic() - asked) * 1000, 1)
                during = runtime(base, time.monotonic() - started + 1)
                return {"bytes": len(delta.content), "fetch_ms": fetched,
                        "loop_lag_max_ms": during["loopLag"]["maxMs"]}
    return {"bytes": -1}


def restart_copy(first_port: int, total: int, node_args: list[str]) -> dict[str, Any]:
    """Start a second node whose peer is the first; seconds until it is up with a copy."""
    port = free_port()
    urls = f"{ZONE}:http://127.0.0.1:{first_port},http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "artemis", "server", "--port", str(port), "--region", REGION,
           "--zone", ZONE, "--log-level", "warning", "--peers", urls, "--cluster-secret", SECRET,
           "--url", f"http://127.0.0.1:{port}", "--bootstrap-timeout", "300",
           "--max-batch", "5000", "--rate-limit-per-client", "0",
           "--max-connections-per-client", "0", "--max-instances-per-client", "0",
           "--max-services-per-client", "0", "--max-instances", str(2 * total + 100),
           "--max-services", str(total // PER_SERVICE + 100), "--lease-ttl", "600",
           "--max-lease-ttl", "600", *node_args]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    unnice(psutil.Process(proc.pid))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = started + 600
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError("the second node did not come up: "
                                   f"{proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.05)
        up_s = time.monotonic() - started
        copying = runtime(base, up_s + 1)
        return {"up_seconds": round(up_s, 2), "checksum": checksum(base),
                "rss_mb": round(psutil.Process(proc.pid).memory_info().rss / 2**20, 1),
                "peak_rss_mb": peak_rss_mb(proc.pid),
                "loop_lag": copying["loopLag"], "steps": copying["longestStepMs"],
                "source_loop_lag": runtime(f"http://127.0.0.1:{first_port}", up_s + 1)["loopLag"]}
    finally:
        stop(proc, 30)  # a million leases take a while to let go of


def measure(total: int, args: argparse.Namespace) -> dict[str, Any]:
    services = total // PER_SERVICE
    first_port = free_port()
    extra = ["--max-instances", str(2 * total + 100),
             "--max-services", str(services + 100), "--lease-ttl", "600",
             "--max-lease-ttl", "600",
             "--peers", f"{ZONE}:http://127.0.0.1:{first_port},http://127.0.0.1:{free_port()}",
             "--url", f"http://127.0.0.1:{first_port}", "--cluster-secret", SECRET,
             "--bootstrap-timeout", "0", *args.node_args]
    fleet = list(bodies(total))
    lookup = [",".join(instance_json(LOOKUP_SERVICE, 16_000_000 + n) for n in range(20))]
    with node(*extra, port=first_port) as (base, proc, cmd):
        unnice(proc)
        rss_empty = proc.memory_info().rss
        post_all(base, "/api/registry/register.json",
                 [f'{{"instances":[{lookup[0]}]}}'.encode()])
        started = time.monotonic()
        post_all(base, "/api/registry/register.json", fleet)
        register_s = time.monotonic() - started
        during_register = runtime(base, register_s + 1)
        register_steal = STEAL.span(started)
        wait_snapshot(base)
        rss_registered = proc.memory_info().rss
        idle = wrk(base + "/api/discovery/lookup.json", args.lookup_seconds, 16, lookup_script(),
                   proc)
        # the write paths, one instance a request, over 1,000 instances spread over the registry
        spread = ['{"instances":[' + instance_json(service_of(i), i) + "]}"
                  for i in range(0, total, max(1, total // 1000))]
        writes = {path: wrk(base + path, args.lookup_seconds, 16, lua_rotating(path, spread), proc)
                  for path in ("/api/registry/heartbeat.json", "/api/registry/register.json")}
        # churn, with the lookup measured at the same time
        result: dict[str, Any] = {}
        loaded = threading.Thread(target=lambda: result.update(
            wrk(base + "/api/discovery/lookup.json", int(args.churn_seconds), 16,
                lookup_script(), proc)))
        loaded.start()
        churn_started = time.monotonic()
        churned = churn(base, total, args.churn_seconds, fleet, args.round_seconds)
        loaded.join()
        during_churn = runtime(base, churned["seconds"] + 1)
        churn_steal = STEAL.span(churn_started)
        worst = worst_delta(base)
        size, fetch_s = services_json(base)
        copy = restart_copy(first_port, total, args.node_args)
        return {
            "instances": total, "services": services, "command": cmd,
            "register_instances_per_s": round(total / register_s),
            "rss_empty_mb": round(rss_empty / 2**20, 1),
            "rss_registered_mb": round(rss_registered / 2**20, 1),
            "rss_after_churn_mb": round(proc.memory_info().rss / 2**20, 1),
            "loop_lag_register": {**during_register["loopLag"], "steal": register_steal},
            "steps_register": during_register["longestStepMs"],
            "lookup_idle": idle, "lookup_during_churn": result,
            "heartbeat_idle": writes["/api/registry/heartbeat.json"],
            "register_idle": writes["/api/registry/register.json"],
            "lookup_ratio": round(result.get("requests_per_s", 0) / idle["requests_per_s"], 3),
            "churn": churned,
            "loop_lag_churn": {**during_churn["loopLag"], "steal": churn_steal},
            "steps_churn": during_churn["longestStepMs"],
            "worst_delta": worst,
            "services_json_gzip_bytes": size, "services_json_seconds": fetch_s,
            "restart_copy": copy, "checksum_equal": copy["checksum"] == checksum(base),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000",
                        help="comma-separated instance counts (default: 10000,100000)")
    parser.add_argument("--churn-seconds", type=float, default=20.0)
    parser.add_argument("--lookup-seconds", type=int, default=5)
    parser.add_argument("--round-seconds", type=float, default=10.0,
                        help="a churn round's length: every instance heartbeats once a round, "
                             "as clients of a 20 s lease would (0: back to back)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--node-arg", dest="node_args", action="append", default=[],
                        help="an extra flag for the node (repeat for more)")
    args = parser.parse_args()
    os.nice(10)  # the load generator yields the CPU to the node
    STEAL.start()
    results = [measure(int(size), args) for size in args.sizes.split(",")]
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
