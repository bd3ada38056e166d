"""CPU a RegistryClient spends keeping 10,000 instances alive. Run by hand:

    .venv/bin/python benchmarks/bench_client.py                 # 30 s of steady state
    .venv/bin/python benchmarks/bench_client.py --seconds 60 --instances 10000

A node starts on a free 127.0.0.1 port; a separate client process registers the instances and
heartbeats them every 5 s (the SDK's default) over the heartbeat WebSocket. After a warm-up
(registration and two rounds), the client process's CPU time is measured over the window and
given as a share of one core; the node is asked that every lease was renewed in the window.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_node import REGION, node

CLIENT = """
import asyncio, sys
from artemis.client import Instance, RegistryClient

async def main(url: str, count: int) -> None:
    async with RegistryClient(url, region="{region}", heartbeat_interval=5.0) as registry:
        fleet = [Instance(service_id=f"client.bench.{{n % 100}}", instance_id=f"i-{{n}}",
                          url=f"http://10.1.{{n // 250}}.{{n % 250}}:8080", port=8080)
                 for n in range(count)]
        for first in range(0, count, 1000):
            await registry.register(*fleet[first:first + 1000])
        print("registered", flush=True)
        while True:
            await asyncio.sleep(5)
            print(registry.stats, flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with node() as (base, _, cmd):
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT.format(region=REGION), base, str(args.instances)],
            stdout=subprocess.PIPE, text=True)
        try:
            assert client.stdout is not None
            if client.stdout.readline().strip() != "registered":
                raise RuntimeError("the client did not register")
            proc = psutil.Process(client.pid)
            time.sleep(11)  # two heartbeat rounds of warm-up
            before, started = proc.cpu_times(), time.monotonic()
            time.sleep(args.seconds)
            after, elapsed = proc.cpu_times(), time.monotonic() - started
            used = (after.user - before.user) + (after.system - before.system)
            leases = httpx.get(base + "/api/status/leases.json", timeout=30).json()
            renewed = sum(1 for entries in leases["leases"].values() for lease in entries)
            print(json.dumps({
                "node_command": cmd,
                "client": f"{sys.executable} -c <CLIENT> {base} {args.instances}",
                "instances": args.instances,
                "window_s": round(elapsed, 1),
                "client_cpu_percent_of_one_core": round(100 * used / elapsed, 2),
                "leases_on_node": renewed,
                "lease_count": leases["leaseCount"],
            }))
        finally:
            client.terminate()
            client.wait(10)


if __name__ == "__main__":
    main()
