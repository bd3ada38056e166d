"""A three-node cluster holding 1,000,000 instances: the copy, replication lag under 50,000
renewals/s, what anti-entropy costs, and a killed node's return.

Run by hand, never by the test suite (the full size takes about 9 minutes and 5 GB of RAM:
three nodes of 1.1 GB, and a restarted node peaks at 2.3 GB while it copies):

    .venv/bin/python benchmarks/bench_cluster_scale.py --instances 30000 --quiet-seconds 10 \\
        --settle 3 --load-seconds 15 --down 3                      # a smoke run, about 1.5 min
    .venv/bin/python benchmarks/bench_cluster_scale.py --out /tmp/cluster-scale.json

With the default replication queue (100,000 tasks a peer) a bulk registration of 1,000,000
overflows it and anti-entropy repairs what was dropped; `--node-arg=--replication-queue
--node-arg=1000000 --node-arg=--replication-task-ttl --node-arg=60` shows the copy by
replication alone. `--py-spy DIR` profiles nodes during the load and the restart (a diagnosis:
the profiler's own CPU perturbs the figures).

Three `artemis server` processes on 127.0.0.1 list one another as peers (bench_cluster's
`Cluster`), with the caps and rate limits raised (`--rate-limits` high, per-client limits and
caps 0, `--max-batch 5000`, `--max-instances 2000000`, `--max-services 200000`) and leases of
3,600 s (`--lease-ttl`, `--max-lease-ttl`), so the registered fleet stays alive without every
instance being renewed; the renewals sent are the load measured. Instances are as the Java SDK
sends them, ten per service (1,000,000 instances are 100,000 services).

Scenarios, in this order on one cluster, then `fast` on a second one:
  register  --instances registered in batches of 5,000, batch n at node n % 3 (two connections
            per node, all at once): seconds until the last answer, and until the three nodes
            hold as many instances and their registry checksums are equal; RSS of each node;
            what replication sent, dropped and anti-entropy repaired meanwhile
  quiet     --quiet-seconds with no client load (anti-entropy every 5 s, the default): each
            node's CPU (user + system) and the repair rounds it ran (all of which found the
            checksums equal); then what a round that finds them different costs its peer:
            node A asked five times for every service's checksum
  lag       --rate renewals/s (heartbeat.json, --hb-batch instances a request, each batch sent to
            the node its instances registered at) for --load-seconds, over the fleet in turn;
            meanwhile (1) each node's replication.json is read every second: the lag of every
            link, client write accepted here -> acknowledged by the peer, over its last 20,000
            writes (about a second at this rate); and every write acknowledged meanwhile,
            counted by lag in the links' buckets (`lagBuckets`, read before and after): the
            share within 100 ms and the p99 over the whole run; (2) bench_cluster's probe:
            every 100 ms an instance registers at one node (in turn) and a subscriber of each
            other node times its `new` push from just before the register call. Also each
            node's CPU, its event-loop lag over the load and longest background steps
            (runtime.json), and how many anti-entropy rounds found the checksums different
  restart   the same renewals continue at A and C (B's batches go to them, as its clients
            would fail over); B is killed (SIGKILL) and stays down --down seconds while
            --churn instances are unregistered and as many new ones registered at A and C; B
            is started again: seconds from its start to /health 200 and to its count and
            checksum equal to A's and C's; B's RSS and peak RSS
  fast      a second cluster, the same but for --anti-entropy-interval --fast-interval (0.01 s:
            hundreds of rounds a second): register and quiet again. The quiet CPU of the two
            clusters, divided by the difference of their rounds, is the CPU of one round (both
            sides of it); at that price, the default interval's rounds cost each node
            `anti_entropy.default_percent_of_a_core_per_node`. (The difference of a cluster
            with anti-entropy off, --fast-interval 0, is a few rounds a second: lost in the
            noise of the quiet CPU.)

The load generators (registration, renewals) run in child processes at nice 10; the probe and
the readings run at normal priority (they are light, and a niced probe would time the
scheduler); the nodes are not niced. Processes are started on free 127.0.0.1 ports and stopped
by their pid; every load is bounded in count and time. Clock readings from different processes
are comparable (the machine's monotonic clock).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cluster import PEER, Cluster, probe
from bench_node import REGION, peak_rss_mb
from bench_push import percentiles
from bench_scale import instance_json, post_all, service_of
from steal import StealWatch

REGISTER_BATCH = 5_000  # instances per register request (the node's --max-batch)
NODE_ARGS = ("--lease-ttl", "3600", "--max-lease-ttl", "3600",
             "--max-instances", "2000000", "--max-services", "200000")


# --- the fleet -----------------------------------------------------------------------------------


def owner(i: int, nodes: int = 3) -> int:
    """The node instance i registers at (and heartbeats to): its 5,000-batch, in turn."""
    return (i // REGISTER_BATCH) % nodes


def body(start: int, end: int) -> bytes:
    items = ",".join(instance_json(service_of(i), i) for i in range(start, end))
    return f'{{"instances":[{items}]}}'.encode()


def _post_child(urls: list[str], path: str, start: int, end: int, out: Any) -> None:
    """Niced: POST instances [start, end) in batches of 5,000, batch n to the node that owns it,
    two connections per node at once; report (started, ended) monotonic times."""
    os.nice(10)
    per_node: list[list[bytes]] = [[] for _ in urls]
    for first in range(start, end, REGISTER_BATCH):
        per_node[owner(first, len(urls))].append(body(first, min(end, first + REGISTER_BATCH)))
    started = time.monotonic()
    threads = [threading.Thread(target=post_all, args=(url, path, part, 2))
               for url, part in zip(urls, per_node, strict=True) if part]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put((started, time.monotonic()))


def post_fleet(urls: list[str], path: str, start: int, end: int) -> tuple[float, float]:
    """Register (or unregister) instances [start, end) from a niced child; its start and end."""
    out: Any = multiprocessing.Queue()
    child = multiprocessing.Process(target=_post_child, args=(urls, path, start, end, out))
    child.start()
    try:
        times: tuple[float, float] = out.get(timeout=1800)
    finally:
        child.join(30)
    return times


def _renewals(urls: list[str], down: int | None, count: int, batch: int, rate: float,
              seconds: float, ready: Any, stop: Any, out: Any) -> None:
    """Niced: renew instances [0, count) in turn, `batch` a request, `rate` renewals/s, for
    `seconds` or until `stop` is set. A batch goes to the node its instances registered at; with
    `down` set, that node's batches go to the other nodes in turn (its clients failed over)."""
    os.nice(10)
    plan = []
    for n, start in enumerate(range(0, count, batch)):
        node = owner(start, len(urls))
        if node == down:
            live = [k for k in range(len(urls)) if k != down]
            node = live[n % len(live)]
        plan.append((urls[node], body(start, min(count, start + batch)),
                     min(count, start + batch) - start))
    ready.set()

    async def main() -> None:
        sent = failed = errors = 0
        kinds: dict[str, int] = {}  # failed requests by exception
        most_pending = 0
        pending: set[asyncio.Task[None]] = set()
        # aiohttp, not httpx: a tenth of the CPU per request (docs/performance.md, Cluster)
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64),
                timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def one(url: str, payload: bytes, size: int) -> None:
                nonlocal sent, failed, errors
                try:
                    async with session.post(url + "/api/registry/heartbeat.json", data=payload,
                                            headers={"Content-Type": "application/json"}
                                            ) as answer:
                        data = json.loads(await answer.read())
                    if data["responseStatus"]["status"] == "success":
                        sent += size
                    else:
                        failed += size
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors += size
                    kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1

            interval = batch / rate
            started = time.monotonic()
            n = 0
            while time.monotonic() - started < seconds and not stop.is_set():
                delay = started + n * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                url, payload, size = plan[n % len(plan)]
                task = asyncio.create_task(one(url, payload, size))
                pending.add(task)
                task.add_done_callback(pending.discard)
                most_pending = max(most_pending, len(pending))
                n += 1
            sending = time.monotonic() - started
            await asyncio.gather(*pending, return_exceptions=True)
            out.put({"renewals": sent, "failed": failed, "errors": errors,
                     "seconds": round(sending, 2),
                     "renewals_per_s": round(sent / max(sending, 1e-9)),
                     "most_requests_in_flight": most_pending, "request_errors": kinds})

    asyncio.run(main())


class Renewals:
    """The renewal load in a niced child process, stoppable."""

    def __init__(self, urls: list[str], count: int, batch: int, rate: float, seconds: float,
                 down: int | None = None) -> None:
        self.stop = multiprocessing.Event()
        ready = multiprocessing.Event()
        self.out: Any = multiprocessing.Queue()
        self.proc = multiprocessing.Process(target=_renewals, args=(
            urls, down, count, batch, rate, seconds, ready, self.stop, self.out))
        self.proc.start()
        if not ready.wait(300):
            raise RuntimeError("the renewal generator did not get ready")

    def result(self, stop: bool = False) -> dict[str, Any]:
        if stop:
            self.stop.set()
        data: dict[str, Any] = self.out.get(timeout=600)
        self.proc.join(30)
        return data


# --- readings ------------------------------------------------------------------------------------


def checksum_answer(client: httpx.Client, url: str, guess: str) -> dict[str, Any]:
    """A node's checksums.json for `guess`: the registry checksum, and every service's only
    when `guess` is not the node's (bench_cluster's `checksum` always asks for every service's,
    about 4 MB at 100,000 services: too heavy to poll)."""
    answer: dict[str, Any] = client.post(
        url + "/api/replication/registry/checksums.json", headers=PEER,
        content=json.dumps({"regionId": REGION, "checksum": guess})).json()
    return answer


class Sums:
    """Registry checksums of the nodes, read cheaply: each node is asked with the value it had
    last time, and the others with the first node's, so equal registries answer a few bytes."""

    def __init__(self) -> None:
        self.last: dict[str, str] = {}

    def read(self, client: httpx.Client, urls: list[str]) -> list[str]:
        first = checksum_answer(client, urls[0], self.last.get(urls[0], "0"))["checksum"]
        self.last[urls[0]] = first
        return [first] + [checksum_answer(client, url, first)["checksum"] for url in urls[1:]]


def instances(client: httpx.Client, url: str) -> int:
    return int(client.get(url + "/api/status/runtime.json?window=1").json()["instances"])


def wait_equal(client: httpx.Client, urls: list[str], deadline: float,
               sums: Sums | None = None) -> float:
    """Poll until every node holds as many instances as the first and the checksums are equal
    (the cheap count first, the checksum only then); the monotonic time they were."""
    sums = sums or Sums()
    end = time.monotonic() + deadline
    while True:
        counts = [instances(client, url) for url in urls]
        if len(set(counts)) == 1 and len(set(sums.read(client, urls))) == 1:
            return time.monotonic()
        if time.monotonic() > end:
            raise RuntimeError(f"no convergence within {deadline} s: instances {counts}")
        time.sleep(0.1)


def replication(client: httpx.Client, url: str) -> dict[str, Any]:
    data: dict[str, Any] = client.get(url + "/api/status/replication.json").json()
    return data


def link_totals(client: httpx.Client, urls: list[str]) -> dict[str, int]:
    """What every link sent, dropped, retried, and what anti-entropy did, summed over links."""
    total = {"sent": 0, "coalesced": 0, "retried": 0, "dropped": 0, "dropped_overflow": 0,
             "dropped_expired": 0, "dropped_failed": 0, "skipped": 0,
             "requests": 0, "repair_rounds": 0, "repair_in_sync": 0, "repaired_services": 0,
             "repaired_instances": 0}
    for url in urls:
        for peer in replication(client, url)["peers"]:
            total["sent"] += peer["sent"]
            total["coalesced"] += peer["coalesced"]
            total["retried"] += peer["retried"]
            total["dropped"] += (peer["droppedOverflow"] + peer["droppedExpired"]
                                 + peer["droppedFailed"])
            total["dropped_overflow"] += peer["droppedOverflow"]
            total["dropped_expired"] += peer["droppedExpired"]
            total["dropped_failed"] += peer["droppedFailed"]
            total["skipped"] += peer["skipped"]
            total["requests"] += peer["requests"]
            total["repair_rounds"] += peer["repair"]["rounds"]
            total["repair_in_sync"] += peer["repair"]["inSync"]
            total["repaired_services"] += peer["repair"]["services"]
            total["repaired_instances"] += peer["repair"]["instances"]
    return total


def cluster_cpu(client: httpx.Client, urls: list[str]) -> list[float]:
    """The CPU seconds each node reports spending on the cluster (encoding, decoding and merging
    for replication, repair and bootstrap; replication.json's `cpuSeconds`)."""
    return [float(replication(client, url)["cpuSeconds"]) for url in urls]


def since(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in after}


def processes(cluster: Cluster) -> list[psutil.Process | None]:
    return [psutil.Process(p.pid) if p is not None and p.poll() is None else None
            for p in cluster.procs]


def cpu(procs: list[psutil.Process | None]) -> list[float]:
    out = []
    for proc in procs:
        times = proc.cpu_times() if proc is not None else None
        out.append(times.user + times.system if times is not None else 0.0)
    return out


def rss_mb(proc: psutil.Process) -> float:
    return round(proc.memory_info().rss / 2**20, 1)


def runtime(client: httpx.Client, url: str, window: float) -> dict[str, Any]:
    """A node's event-loop lag over the last `window` seconds, and the longest steps of its
    background work and garbage collector since it started (runtime.json)."""
    data = client.get(f"{url}/api/status/runtime.json?window={window:.0f}").json()
    return {"loop_lag": data["loopLag"], "longest_step_ms": {
        name: step["wallMs"] for name, step in data["longestStepMs"].items()}}


def spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy (next to this Python) recording `pid` for `seconds` into `out` (raw stacks),
    without pausing it; None when py-spy is not installed."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        print("py-spy not found: no profile", file=sys.stderr)
        return None
    return subprocess.Popen(["nice", "-n", "10", str(exe), "record", "-p", str(pid), "-f", "raw",
                             "-o", str(out), "-d", str(max(1, int(seconds))), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def spy_wait(proc: subprocess.Popen[bytes] | None, seconds: float) -> None:
    if proc is None:
        return
    try:
        proc.wait(seconds + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start(cluster: Cluster) -> None:
    for i in range(len(cluster.ports)):
        cluster.start(i)
    for i in range(len(cluster.ports)):
        cluster.wait_up(i, deadline=120)


# --- scenarios -----------------------------------------------------------------------------------


def scenario_register(cluster: Cluster, total: int) -> dict[str, Any]:
    urls = cluster.urls
    print(f"register {total:,} instances ...", file=sys.stderr, flush=True)
    with httpx.Client(timeout=120) as client:
        before = link_totals(client, urls)
        started, answered = post_fleet(urls, "/api/registry/register.json", 0, total)
        equal = wait_equal(client, urls, deadline=900)
        procs = processes(cluster)
        return {
            "instances": total, "services": -(-total // 10),
            "answered_s": round(answered - started, 2),
            "instances_per_s": round(total / (answered - started)),
            "equal_s": round(equal - started, 2),
            "instances_per_node": [instances(client, url) for url in urls],
            "rss_mb": [rss_mb(p) for p in procs if p is not None],
            "links": since(link_totals(client, urls), before),
        }


def scenario_quiet(cluster: Cluster, seconds: float, settle: float) -> dict[str, Any]:
    """Each node's CPU over `seconds` with no client load, after `settle` seconds of rest."""
    urls = cluster.urls
    print(f"quiet {seconds:.0f} s (after {settle:.0f} s of rest) ...", file=sys.stderr,
          flush=True)
    time.sleep(settle)
    procs = processes(cluster)
    with httpx.Client(timeout=60) as client:
        before_links = link_totals(client, urls)
        before_own = cluster_cpu(client, urls)
        before = cpu(procs)
        started = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - started
        used = [a - b for a, b in zip(cpu(procs), before, strict=True)]
        own = [a - b for a, b in zip(cluster_cpu(client, urls), before_own, strict=True)]
        links = since(link_totals(client, urls), before_links)
    return {"seconds": round(elapsed, 1), "cpu_s_per_node": [round(u, 3) for u in used],
            "cpu_percent_of_a_core_per_node": [round(100 * u / elapsed, 2) for u in used],
            "cluster_cpu_s_per_node_reported": [round(u, 4) for u in own],
            "repair_rounds": links["repair_rounds"],
            "repair_rounds_in_sync": links["repair_in_sync"],
            "repaired_instances": links["repaired_instances"]}


def anti_entropy_cost(default: dict[str, Any], fast: dict[str, Any]) -> dict[str, Any]:
    """What one anti-entropy round costs (both sides of it, all nodes' CPU), from two quiet
    clusters that differ only in how often they run rounds, and what the default interval's
    rounds cost per node at that price."""
    def rates(quiet: dict[str, Any]) -> tuple[float, float]:
        return (sum(quiet["cpu_s_per_node"]) / quiet["seconds"],
                quiet["repair_rounds"] / quiet["seconds"])

    cpu_default, rounds_default = rates(default)
    cpu_fast, rounds_fast = rates(fast)
    if rounds_fast == rounds_default:
        return {"error": "the two clusters ran as many rounds"}
    per_round = (cpu_fast - cpu_default) / (rounds_fast - rounds_default)
    nodes = len(default["cpu_s_per_node"])
    return {"rounds_per_s": {"default": round(rounds_default, 2), "fast": round(rounds_fast, 2)},
            "cpu_cores": {"default": round(cpu_default, 4), "fast": round(cpu_fast, 4)},
            "cpu_ms_per_round": round(per_round * 1000, 3),
            "default_percent_of_a_core_per_node": round(
                100 * per_round * rounds_default / nodes, 3)}


def full_checksums(cluster: Cluster, times: int) -> dict[str, Any]:
    """What a round that finds the checksums different costs the peer that answers it: every
    service's checksum built and sent (asked `times` of node A, one after the other)."""
    procs = processes(cluster)
    url = cluster.urls[0]
    with httpx.Client(timeout=120) as client:
        before = cpu(procs)[0]
        started = time.monotonic()
        size = 0
        for _ in range(times):
            size = len(client.post(url + "/api/replication/registry/checksums.json",
                                   headers=PEER, content=json.dumps(
                                       {"regionId": REGION, "checksum": "0"})).content)
        elapsed = time.monotonic() - started
        used = cpu(procs)[0] - before
    return {"answers": times, "bytes": size, "cpu_ms_each": round(1000 * used / times, 1),
            "wall_ms_each": round(1000 * elapsed / times, 1)}


STEAL = StealWatch()  # started by main()


def _sample_lag(client: httpx.Client, urls: list[str], stop: threading.Event,
                samples: list[dict[str, Any]]) -> None:
    while not stop.wait(1.0):
        for url in urls:
            for peer in replication(client, url)["peers"]:
                lag = peer["lag"]
                if lag.get("samples"):
                    samples.append({"from": url, "to": peer["url"], **lag})


def scenario_lag(cluster: Cluster, args: argparse.Namespace, count: int) -> dict[str, Any]:
    urls = cluster.urls
    print(f"lag: {args.rate:,.0f} renewals/s for {args.load_seconds:.0f} s ...", file=sys.stderr,
          flush=True)
    procs = processes(cluster)
    with httpx.Client(timeout=60) as client:
        before_links = link_totals(client, urls)
        load = Renewals(urls, count, args.hb_batch, args.rate, args.load_seconds)
        time.sleep(3)  # the load settles (the generator builds its bodies first)
        before = cpu(procs)
        buckets_before = lag_buckets(client, urls)
        cpu_started = time.monotonic()
        samples: list[dict[str, Any]] = []
        stop = threading.Event()
        sampler = threading.Thread(target=_sample_lag, args=(client, urls, stop, samples))
        sampler.start()
        profile = (spy(procs[0].pid, min(20.0, args.load_seconds - 8),  # type: ignore[union-attr]
                       args.py_spy / "lag-node-a.txt") if args.py_spy else None)
        probe_lags = asyncio.run(probe(urls, max(5.0, args.load_seconds - 8)))
        stop.set()
        sampler.join()
        over_run = lag_over_run(buckets_before, lag_buckets(client, urls))
        cpu_elapsed = time.monotonic() - cpu_started
        used = [a - b for a, b in zip(cpu(procs), before, strict=True)]
        loops = [runtime(client, url, cpu_elapsed) for url in urls]
        renewals = load.result()
        links = since(link_totals(client, urls), before_links)
        spy_wait(profile, 20)
    return {
        "renewals": renewals,
        "replication_lag_ms": lag_figures(samples),
        "replication_lag_over_run": over_run,
        "probe_push_ms": percentiles(probe_lags) if probe_lags else {"count": 0},
        "cpu_percent_of_a_core_per_node": [round(100 * u / cpu_elapsed, 1) for u in used],
        # CPU time the hypervisor took from this virtual machine meanwhile (benchmarks/steal.py)
        "steal": STEAL.span(cpu_started),
        "runtime_per_node": loops,
        "links": links,
    }


def lag_buckets(client: httpx.Client, urls: list[str]) -> dict[str, dict[str, Any]]:
    """Every link's acknowledged writes by lag since its node started (replication.json; none
    from a node too old to count them)."""
    return {f"{url} -> {peer['url']}": peer["lagBuckets"]
            for url in urls for peer in replication(client, url)["peers"] if "lagBuckets" in peer}


def lag_over_run(before: dict[str, dict[str, Any]],
                 after: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The lag of every write acknowledged between two readings of the links' buckets, all
    links together and per link: how many, the share within 100 ms, and the p99 read off the
    buckets (linear within its bucket, as Prometheus' histogram_quantile)."""
    def between(link: str) -> tuple[list[float], list[int], int]:
        old, new = before[link], after[link]
        return (new["leMs"], [n - o for n, o in zip(new["cumulative"], old["cumulative"],
                                                    strict=True)], new["count"] - old["count"])

    def summed(bounds: list[float], cumulative: list[int], count: int) -> dict[str, Any]:
        if not count:
            return {"writes": 0}
        rank, below, lower = 0.99 * count, 0, 0.0
        p99: float | None = None  # None: above the last bound
        for bound, at in zip(bounds, cumulative, strict=True):
            if at >= rank:
                p99 = lower + (bound - lower) * (rank - below) / max(1, at - below)
                break
            below, lower = at, bound
        within = cumulative[bounds.index(100.0)]
        return {"writes": count, "within_100ms": round(within / count, 5),
                "p99_ms": None if p99 is None else round(p99, 1)}

    links = {link: between(link) for link in after if link in before}
    if not links:
        return {"writes": 0}
    bounds = next(iter(links.values()))[0]
    total = [sum(c[1][i] for c in links.values()) for i in range(len(bounds))]
    return {**summed(bounds, total, sum(c[2] for c in links.values())),
            "per_link": {link: summed(*parts) for link, parts in sorted(links.items())}}


def lag_figures(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The replication lag readings summed up: each reading is one link's p50/p99/max over its
    last 20,000 writes (about 1.2 s of a link's writes at 50,000 renewals/s), read every second,
    so the readings of a link cover all its writes; how their p99s spread, and per link."""
    if not samples:
        return {"readings": 0}
    p99s = sorted(s["p99Ms"] for s in samples)
    links: dict[str, list[float]] = {}
    for s in samples:
        links.setdefault(f"{s['from']} -> {s['to']}", []).append(s["p99Ms"])
    return {
        "readings": len(samples),
        "p50_median": round(statistics.median(s["p50Ms"] for s in samples), 2),
        "p99_median": round(statistics.median(p99s), 2),
        "p99_p90_of_readings": p99s[int(0.9 * (len(p99s) - 1))],
        "p99_worst": p99s[-1],
        "readings_p99_over_100ms": sum(1 for p in p99s if p > 100),
        "max": max(s["maxMs"] for s in samples),
        "p99_median_per_link": {link: round(statistics.median(v), 2)
                                for link, v in sorted(links.items())},
        "p99_worst_per_link": {link: max(v) for link, v in sorted(links.items())},
    }


def scenario_restart(cluster: Cluster, args: argparse.Namespace, count: int) -> dict[str, Any]:
    """Kill B while renewals go on at A and C; churn while it is down; start it again."""
    urls = cluster.urls
    a, b, c = urls
    print(f"restart: B down {args.down:.0f} s ...", file=sys.stderr, flush=True)
    seconds = args.down + 300  # stopped once B is equal
    with httpx.Client(timeout=120) as client:
        load = Renewals(urls, count, args.hb_batch, args.rate, seconds, down=1)
        time.sleep(5)
        cluster.kill(1)
        down_at = time.monotonic()
        churn = args.churn
        if churn:
            # instances [count, count + churn) were registered with the fleet and are not
            # renewed: unregister them, and register as many new ones, at A and C
            post_fleet([a, c], "/api/registry/unregister.json", count, count + churn)
            post_fleet([a, c], "/api/registry/register.json", args.instances,
                       args.instances + churn)
        time.sleep(max(0.0, args.down - (time.monotonic() - down_at)))
        restarted = cluster.start(1)
        profiles = []
        if args.py_spy:
            time.sleep(0.3)  # the interpreter is there to attach to
            profiles = [spy(cluster.procs[1].pid, 35, args.py_spy / "restart-node-b.txt"),  # type: ignore[union-attr]
                        spy(cluster.procs[0].pid, 35, args.py_spy / "restart-node-a.txt")]  # type: ignore[union-attr]
        up_at = cluster.wait_up(1, deadline=600)
        sums = Sums()
        equal_at = wait_equal(client, [a, b, c], deadline=600, sums=sums)
        renewals = load.result(stop=True)
        for profile in profiles:
            spy_wait(profile, 35)
        proc = psutil.Process(cluster.procs[1].pid)  # type: ignore[union-attr]
        status = replication(client, b)
        return {
            "down_s": round(restarted - down_at, 1),
            "churn_while_down": 2 * churn,
            "start_to_up_s": round(up_at - restarted, 2),
            "start_to_equal_s": round(equal_at - restarted, 2),
            "bootstrap": status["bootstrap"],
            "instances": [instances(client, u) for u in urls],
            "b_rss_mb": rss_mb(proc), "b_peak_rss_mb": peak_rss_mb(proc.pid),
            "renewals_at_a_and_c": renewals,
        }


# --- run -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    total = args.instances
    renewed = total - args.churn  # the last --churn instances are the restart's churn
    extra = (*NODE_ARGS, *args.node_args)
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(),
                                           "python": sys.version.split()[0]},
                               "settings": {"instances": total, "rate": args.rate,
                                            "hb_batch": args.hb_batch,
                                            "renewed_instances": renewed}}
    only = set(args.only.split(","))
    if only & {"register", "quiet", "lag", "restart"}:
        cluster = Cluster(extra=extra)
        results["command"] = cluster.command(0)
        try:
            start(cluster)
            results["register"] = scenario_register(cluster, total)
            print(json.dumps({"register": results["register"]}), flush=True)
            if "quiet" in only:
                results["quiet"] = scenario_quiet(cluster, args.quiet_seconds, args.settle)
                results["quiet"]["full_checksums_answer"] = full_checksums(cluster, 5)
                print(json.dumps({"quiet": results["quiet"]}), flush=True)
            if "lag" in only:
                results["lag"] = scenario_lag(cluster, args, renewed)
                print(json.dumps({"lag": results["lag"]}), flush=True)
            if "restart" in only:
                results["restart"] = scenario_restart(cluster, args, renewed)
                print(json.dumps({"restart": results["restart"]}), flush=True)
        finally:
            cluster.stop()
    if "fast" in only:
        interval = str(args.fast_interval)
        cluster = Cluster(extra=(*extra, "--anti-entropy-interval", interval))
        results["fast_command"] = cluster.command(0)
        try:
            start(cluster)
            results["fast_register"] = scenario_register(cluster, total)
            results["fast_quiet"] = scenario_quiet(cluster, args.quiet_seconds, args.settle)
            print(json.dumps({"fast_register": results["fast_register"],
                              "fast_quiet": results["fast_quiet"]}), flush=True)
        finally:
            cluster.stop()
    if "quiet" in results and "fast_quiet" in results:
        results["anti_entropy"] = anti_entropy_cost(results["quiet"], results["fast_quiet"])
        print(json.dumps({"anti_entropy": results["anti_entropy"]}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="register,quiet,lag,restart,fast",
                        help="comma-separated scenarios (register always runs first)")
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=50_000, help="renewals per second")
    parser.add_argument("--hb-batch", type=int, default=500,
                        help="instances per heartbeat request (a divisor of 5,000)")
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--quiet-seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=15.0,
                        help="seconds of rest before the quiet measurement")
    parser.add_argument("--down", type=float, default=10.0, help="seconds B stays down")
    parser.add_argument("--churn", type=int, default=5_000,
                        help="instances unregistered and as many registered while B is down")
    parser.add_argument("--fast-interval", type=float, default=0.01,
                        help="the second cluster's anti-entropy interval (0: off)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--node-arg", dest="node_args", action="append", default=[],
                        help="an extra flag for every node (repeat for more; "
                             "--node-arg=--replication-queue --node-arg=1000000)")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="DIR",
                        help="profile (diagnosis, not figures): node A for 20 s of the lag "
                             "load, and B and A for 35 s from B's restart, raw stacks in DIR")
    args = parser.parse_args()
    STEAL.start()
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    if REGISTER_BATCH % args.hb_batch:
        parser.error("--hb-batch must divide 5,000")
    results = run(args)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
