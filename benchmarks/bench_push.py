"""Push and WebSocket heartbeats of one node, on loopback. Run by hand, never by the test suite:

    .venv/bin/python benchmarks/bench_push.py                  # everything, about 1 minute
    .venv/bin/python benchmarks/bench_push.py --only fanout

Scenarios
  fanout      1,000 subscribers of one service (in 4 client processes): one instance registers,
              round after round; the time from the register call's answer to each subscriber's
              receipt of its `new` (per round: the last subscriber's), as percentiles
  heartbeat   64 WebSocket connections, each sending heartbeat frames of 100 instances and
              waiting for each answer (the Java SDK's habit); instance renewals per second
  expiry      50 instances heartbeat over one WebSocket; each in turn stops without unregistering;
              how long after its lease's deadline (last renewal + TTL) its `delete` reaches a
              subscriber, as a distribution
  flood       one subscriber to all changes, then one register of 5,000 instances in 5,000
              services; then a resume frame with revision 0 against --flood-log changes: how long
              the register took, the slowest /health answer and the event loop's largest lag

Each scenario starts its own `artemis server` on a free 127.0.0.1 port and stops it by its pid;
load is bounded in count and time. Clock readings from different processes are comparable:
they all read the machine's monotonic clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_node import REGION, ZONE, instance, node

SUBSCRIBE = {"discoveryData": None, "regionId": None, "zoneId": None}


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))], 2)

    return {"count": len(ordered), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99),
            "max": round(ordered[-1], 2), "min": round(ordered[0], 2)}


# --- fan-out ------------------------------------------------------------------------------


def _subscriber_process(ws_base: str, service: str, count: int, rounds: int,
                        ready: Any, out: Any) -> None:
    """`count` subscribers in one process; report each receipt time of each round."""

    async def main() -> None:
        sockets = []
        for _ in range(count):
            ws = await websockets.connect(ws_base + "/ws/discovery/instance-change",
                                          max_queue=None)
            await ws.send(json.dumps({**SUBSCRIBE, "serviceId": service}))
            sockets.append(ws)
        ready.put(count)
        receipts: dict[str, list[float]] = {}

        async def read(ws: Any) -> None:
            for _ in range(rounds):
                frame = json.loads(await ws.recv())
                receipts.setdefault(frame["instance"]["instanceId"], []).append(
                    time.monotonic())

        await asyncio.wait_for(asyncio.gather(*(read(ws) for ws in sockets)), 120)
        out.put(receipts)
        for ws in sockets:
            await ws.close()

    asyncio.run(main())


def scenario_fanout(args: argparse.Namespace) -> dict[str, Any]:
    subscribers, processes, rounds = args.subscribers, 4, args.rounds
    with node() as (base, _, cmd):
        ws_base = base.replace("http://", "ws://")
        ctx = multiprocessing.get_context("spawn")
        ready, out = ctx.Queue(), ctx.Queue()
        workers = [ctx.Process(target=_subscriber_process,
                               args=(ws_base, "fanout.service", subscribers // processes,
                                     rounds, ready, out)) for _ in range(processes)]
        for w in workers:
            w.start()
        for _ in workers:
            ready.get(timeout=60)
        answered: dict[str, float] = {}
        with httpx.Client(timeout=10) as client:
            for r in range(rounds):
                inst = instance("fanout.service", r)
                body = json.dumps({"instances": [inst]}).encode()
                client.post(base + "/api/registry/register.json", content=body).raise_for_status()
                answered[inst["instanceId"]] = time.monotonic()
                time.sleep(0.1)  # one registration at a time: rounds do not overlap
        receipts: dict[str, list[float]] = {}
        for _ in workers:
            for key, times in out.get(timeout=120).items():
                receipts.setdefault(key, []).extend(times)
        for w in workers:
            w.join(30)
        last = [(max(receipts[k]) - answered[k]) * 1000 for k in answered]
        every = [(t - answered[k]) * 1000 for k in answered for t in receipts[k]]
        return {"command": cmd, "subscribers": subscribers, "rounds": rounds,
                "receipts": len(every),
                "last_subscriber_ms": percentiles(last), "every_subscriber_ms": percentiles(every)}


# --- heartbeats ---------------------------------------------------------------------------


def scenario_heartbeat(args: argparse.Namespace) -> dict[str, Any]:
    connections, per_frame = 64, 100
    total = connections * per_frame * 2
    with node() as (base, proc, cmd):
        fleet = [instance(f"hb.service.{i % 100}", i) for i in range(total)]
        with httpx.Client(timeout=30) as client:
            for i in range(0, total, 1000):
                client.post(base + "/api/registry/register.json",
                            content=json.dumps({"instances": fleet[i:i + 1000]}).encode())
        frames = [json.dumps({"instances": fleet[i:i + per_frame]})
                  for i in range(0, total, per_frame)]
        ws_url = base.replace("http://", "ws://") + "/ws/registry/heartbeat"

        async def main() -> tuple[int, float, int]:
            stop = time.monotonic() + args.duration
            sent = failures = 0

            async def connection(n: int) -> None:
                nonlocal sent, failures
                async with websockets.connect(ws_url, max_size=None) as ws:
                    i = n
                    while time.monotonic() < stop:
                        await ws.send(frames[i % len(frames)])
                        answer = await ws.recv()
                        if b'"success"' not in (answer if isinstance(answer, bytes)
                                                else answer.encode()):
                            failures += 1
                        sent += 1
                        i += connections

            started = time.monotonic()
            await asyncio.gather(*(connection(n) for n in range(connections)))
            return sent, time.monotonic() - started, failures

        cpu_before = proc.cpu_times()
        sent, elapsed, failures = asyncio.run(main())
        cpu_after = proc.cpu_times()
        used = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
        return {"command": cmd, "connections": connections, "instances_per_frame": per_frame,
                "frames": sent, "failed_frames": failures, "seconds": round(elapsed, 2),
                "renewals_per_s": round(sent * per_frame / elapsed),
                "server_cpu_percent": round(100 * used / elapsed, 1)}


# --- expiry -------------------------------------------------------------------------------


def scenario_expiry(args: argparse.Namespace) -> dict[str, Any]:
    count, ttl = 50, args.ttl
    with node("--lease-ttl", str(ttl), "--no-self-preservation") as (base, _, cmd):
        fleet = [instance("expiry.service", i) for i in range(count)]
        ws_base = base.replace("http://", "ws://")

        async def main() -> list[float]:
            last_renewal: dict[str, float] = {}
            deleted: dict[str, float] = {}
            async with websockets.connect(ws_base + "/ws/discovery/instance-change") as sub, \
                    websockets.connect(ws_base + "/ws/registry/heartbeat") as hb:
                await sub.send(json.dumps({**SUBSCRIBE, "serviceId": "expiry.service"}))
                async with httpx.AsyncClient() as client:
                    await client.post(base + "/api/registry/register.json",
                                      content=json.dumps({"instances": fleet}).encode())

                async def listen() -> None:
                    while len(deleted) < count:
                        frame = json.loads(await sub.recv())
                        if frame["changeType"] == "delete":
                            deleted[frame["instance"]["instanceId"]] = time.monotonic()

                listener = asyncio.create_task(listen())
                alive = list(fleet)
                # every 1 s all live instances heartbeat; then one stops, spread over 5 s
                stop_every = 5.0 / count
                next_stop = time.monotonic() + 1.0
                while alive:
                    await hb.send(json.dumps({"instances": alive}))
                    await hb.recv()
                    now = time.monotonic()
                    for inst in alive:
                        last_renewal[inst["instanceId"]] = now
                    while alive and time.monotonic() >= next_stop:
                        alive.pop()
                        next_stop += stop_every
                    await asyncio.sleep(min(0.2, max(0.0, next_stop - time.monotonic())))
                await asyncio.wait_for(listener, ttl + 30)
            return [(deleted[k] - (last_renewal[k] + ttl)) * 1000 for k in last_renewal]

        late = asyncio.run(main())
        return {"command": cmd, "instances": count, "ttl_s": ttl,
                "delete_after_deadline_ms": percentiles(late),
                "mean_ms": round(statistics.mean(late), 1)}


# --- flood ---------------------------------------------------------------------------------


async def _stalls(base: str, attack: Any) -> dict[str, float]:
    """Run `attack()` while /health is probed; its seconds, the slowest probe and loop lag."""
    done, slowest = asyncio.Event(), [0.0]

    async def probe(client: httpx.AsyncClient) -> None:
        while not done.is_set():
            started = time.perf_counter()
            await client.get(base + "/health")
            slowest[0] = max(slowest[0], time.perf_counter() - started)
            await asyncio.sleep(0.01)

    async with httpx.AsyncClient(timeout=600) as client:
        prober = asyncio.create_task(probe(client))
        started = time.perf_counter()
        await attack(client)
        took = time.perf_counter() - started
        done.set()
        await prober
        window = time.perf_counter() - started + 1
        lag = (await client.get(f"{base}/api/status/runtime.json?window={window}")).json()
    return {"attack_s": round(took, 3), "slowest_health_ms": round(slowest[0] * 1000, 1),
            "loop_lag_max_ms": lag["loopLag"]["maxMs"]}


def scenario_flood(args: argparse.Namespace) -> dict[str, Any]:
    services, log = 5000, args.flood_log
    with node("--change-log-size", str(log + services)) as (base, _, cmd):
        ws_base = base.replace("http://", "ws://")

        def batch(port: int) -> dict[str, Any]:
            return {"instances": [{**instance(f"flood.{i}", i), "port": port}
                                  for i in range(services)]}

        async def main() -> dict[str, Any]:
            everything = await websockets.connect(ws_base + "/ws/discovery/all-instance-change")
            await asyncio.sleep(0.5)

            async def register(client: httpx.AsyncClient) -> None:
                await client.post(base + "/api/registry/register.json", json=batch(8080))

            results = {"register": await _stalls(base, register)}
            await everything.close()
            async with httpx.AsyncClient(timeout=600) as client:
                for port in range(8081, 8081 + log // services):
                    await client.post(base + "/api/registry/register.json", json=batch(port))
            async with websockets.connect(ws_base + "/ws/discovery/instance-change") as probe:
                await probe.send(json.dumps({**SUBSCRIBE, "serviceId": "x", "revision": "x"}))
                run = json.loads(await probe.recv())["revision"].rpartition(".")[0]
            resumed = await websockets.connect(ws_base + "/ws/discovery/all-instance-change")

            async def resume(client: httpx.AsyncClient) -> None:
                await resumed.send(json.dumps({"revision": f"{run}.0"}))
                with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
                    while True:
                        await asyncio.wait_for(resumed.recv(), 600)

            results["resume"] = await _stalls(base, resume)
            return results

        return {"command": cmd, "services": services, "log": log, **asyncio.run(main())}


SCENARIOS = {"fanout": scenario_fanout, "heartbeat": scenario_heartbeat,
             "expiry": scenario_expiry, "flood": scenario_flood}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--duration", type=int, default=10, help="seconds of heartbeat load")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--ttl", type=float, default=20.0, help="lease TTL of the expiry run")
    parser.add_argument("--flood-log", type=int, default=195_000,
                        help="changes logged before the flood run's resume")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(),
                                           "python": sys.version.split()[0]},
                               "region": REGION, "zone": ZONE}
    for name in args.only.split(","):
        results[name] = SCENARIOS[name](args)
        print(json.dumps({name: results[name]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
