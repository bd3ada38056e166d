"""What open web consoles cost a node, and how the console answers at scale, on loopback. Run by
hand (needs `wrk` and, for the browser parts, Debian's `chromium`), never by the test suite:

    .venv/bin/python benchmarks/bench_console.py                    # both scenarios, ~4 minutes
    .venv/bin/python benchmarks/bench_console.py --only consoles --rounds 4 --duration 10
    .venv/bin/python benchmarks/bench_console.py --only consoles --browsers chromium

Scenarios
  consoles  lookup.json throughput (wrk -t2 -c64, one service of 20 instances, as bench_node's
            lookup) with no console open and with 20 open, alternated round after round (the
            order flips each round); the loss is 1 - median(with) / median(without). Every
            console shows the page of a service one instance of which registers and unregisters
            every half second (in both arms), so each gets two pushed changes a second and fetches
            its page again for each. The 20 consoles are, by default, replay clients in a process
            of their own that make exactly the requests an open console makes, at the intervals
            of the console's js/config.js (the overview every OVERVIEW_EVERY_MS, the service page
            every SERVICE_EVERY_MS and on every pushed change, one fetch at a time): the node's
            cost alone. With --browsers chromium they are 20 pages of one headless Chromium on
            the same two cores, so the figure also carries the browsers' own CPU. Before the
            rounds, the node's CPU time per second is measured without load for --duration
            seconds, without and with the consoles: what serving them costs the node's one
            event loop, whatever else runs on the machine.
  search    10,000 services of 10 instances each (100,000 instances): services.json for a
            prefix, service.json of one service and overview.json, each asked 200 times in a row
            (latency percentiles); then, in Chromium, the time from a keystroke in the services
            page's search box to its rendered page (it includes the SEARCH_DELAY_MS pause), for
            20 prefixes.

Each scenario starts its own `artemis server` (bench_node.node) on a free 127.0.0.1 port and stops
it by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_node import REGION, ZONE, instance, lua_rotating, node, register, wrk

ROOT = Path(__file__).resolve().parents[1]
CONFIG_JS = ROOT / "src" / "artemis" / "server" / "console" / "static" / "js" / "config.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WATCHED = "watched.service"


def console_intervals() -> dict[str, float]:
    """The console's polling intervals (seconds), read from its config.js."""
    text = CONFIG_JS.read_text()
    found = {name: int(value) / 1000 for name, value in
             re.findall(r"export const (\w+_MS) = (\d+);", text)}
    return {"overview": found["OVERVIEW_EVERY_MS"], "service": found["SERVICE_EVERY_MS"]}


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))], 2)

    return {"count": len(ordered), "p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 2)}


# --- consoles replayed -----------------------------------------------------------------------


async def _console(base: str, counts: dict[str, int], stop: asyncio.Event) -> None:
    """One open console on the page of WATCHED: what the browser would ask."""
    every = console_intervals()
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        pending = asyncio.Event()

        async def fetch_service() -> None:
            await client.get("/api/console/service.json",
                             params={"serviceId": WATCHED, "limit": 100})
            counts["service"] += 1

        async def overview() -> None:
            while not stop.is_set():
                await client.get("/api/console/overview.json")
                counts["overview"] += 1
                await asyncio.sleep(every["overview"])

        async def polls() -> None:
            while not stop.is_set():
                await asyncio.sleep(every["service"])
                pending.set()

        async def fetcher() -> None:  # one fetch at a time, one more if asked meanwhile
            while not stop.is_set():
                await pending.wait()
                pending.clear()
                await fetch_service()

        async def push() -> None:
            ws_url = base.replace("http://", "ws://") + "/ws/discovery/instance-change"
            async with websockets.connect(ws_url) as ws:
                await ws.send(json.dumps({"serviceId": WATCHED, "regionId": None}))
                while not stop.is_set():
                    try:
                        await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        continue
                    counts["frames"] += 1
                    pending.set()

        await fetch_service()
        tasks = [asyncio.create_task(t()) for t in (overview, polls, fetcher, push)]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _replay_process(base: str, consoles: int, ready: Any, done: Any, out: Any) -> None:
    os.nice(10)  # what is measured is the node's work, not the replay's own on the same cores

    async def main() -> None:
        stop = asyncio.Event()
        counts = {"overview": 0, "service": 0, "frames": 0}
        runs = [asyncio.create_task(_console(base, counts, stop)) for _ in range(consoles)]
        ready.put(True)
        await asyncio.to_thread(done.get)
        stop.set()
        await asyncio.gather(*runs, return_exceptions=True)
        out.put(counts)

    asyncio.run(main())


class Replayed:
    """`consoles` replay clients in a process of their own, while in the `with` block."""

    def __init__(self, base: str, consoles: int) -> None:
        self.base, self.consoles = base, consoles
        self.counts: dict[str, int] = {}

    def __enter__(self) -> Replayed:
        self.ready: multiprocessing.Queue[Any] = multiprocessing.Queue()
        self.done: multiprocessing.Queue[Any] = multiprocessing.Queue()
        self.out: multiprocessing.Queue[Any] = multiprocessing.Queue()
        self.process = multiprocessing.Process(
            target=_replay_process, args=(self.base, self.consoles, self.ready, self.done,
                                          self.out))
        self.process.start()
        self.ready.get(timeout=30)
        time.sleep(1.0)  # every console has fetched its page and subscribed
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.put(True)
        self.counts = self.out.get(timeout=30)
        self.process.join(10)


class Browsers:
    """`consoles` pages of one headless Chromium on the page of WATCHED."""

    def __init__(self, base: str, consoles: int) -> None:
        self.base, self.consoles = base, consoles
        self.counts: dict[str, int] = {}

    def __enter__(self) -> Browsers:
        from playwright.sync_api import sync_playwright

        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM,
                                                       args=CHROMIUM_ARGS, headless=True)
        self.pages = []
        for _ in range(self.consoles):
            page = self.browser.new_context().new_page()
            page.goto(f"{self.base}/console/#/service/{WATCHED}")
            page.wait_for_selector("span.live[data-state=live]", timeout=30_000)
            self.pages.append(page)
        return self

    def __exit__(self, *exc: object) -> None:
        self.counts = {"pages": len(self.pages)}
        self.browser.close()
        self.playwright.stop()


def _churn(base: str, stop: threading.Event) -> None:
    """One instance of WATCHED registers and unregisters every half second."""
    body = json.dumps({"instances": [instance(WATCHED, 999)]})
    with httpx.Client(base_url=base, timeout=10,
                      headers={"content-type": "application/json"}) as client:
        while not stop.wait(0.5):
            client.post("/api/registry/register.json", content=body)
            if stop.wait(0.5):
                break
            client.post("/api/registry/unregister.json", content=body)


def _cpu_ms_per_s(proc: Any, seconds: float) -> float:
    """The node's CPU time per second of wall time over `seconds` (no other load)."""
    before, started = proc.cpu_times(), time.monotonic()
    time.sleep(seconds)
    after, elapsed = proc.cpu_times(), time.monotonic() - started
    used = (after.user - before.user) + (after.system - before.system)
    return round(1000 * used / elapsed, 1)


def scenario_consoles(args: argparse.Namespace) -> dict[str, Any]:
    with node("--lease-ttl", "3600") as (base, proc, cmd):
        register(base, [instance("lookup.service", i) for i in range(20)])
        register(base, [instance(WATCHED, i) for i in range(10)])
        body = json.dumps({"discoveryConfigs": [{"discoveryData": None, "regionId": None,
                                                 "serviceId": "lookup.service", "zoneId": None}],
                           "regionId": REGION, "zoneId": ZONE})
        script = lua_rotating("/api/discovery/lookup.json", [body])
        url = base + "/api/discovery/lookup.json"
        stop = threading.Event()
        churn = threading.Thread(target=_churn, args=(base, stop), daemon=True)
        churn.start()
        opened = Browsers if args.browsers == "chromium" else Replayed
        rounds: list[dict[str, Any]] = []
        try:
            idle = _cpu_ms_per_s(proc, args.duration)
            with opened(base, args.consoles):
                serving = _cpu_ms_per_s(proc, args.duration)
            wrk(url, 3, args.connections, script)  # warm up
            for number in range(args.rounds):
                arms = ["none", "consoles"] if number % 2 == 0 else ["consoles", "none"]
                for arm in arms:
                    if arm == "none":
                        result = wrk(url, args.duration, args.connections, script, proc)
                        rounds.append({"arm": arm, **result})
                        continue
                    with opened(base, args.consoles) as consoles:
                        result = wrk(url, args.duration, args.connections, script, proc)
                    rounds.append({"arm": arm, **result, "console_calls": consoles.counts})
                    print(f"  round {number + 1}: {arm}: {result['requests_per_s']:.0f} req/s",
                          file=sys.stderr)
        finally:
            stop.set()
            churn.join(5)
        without = statistics.median(r["requests_per_s"] for r in rounds if r["arm"] == "none")
        with_consoles = statistics.median(r["requests_per_s"] for r in rounds
                                          if r["arm"] == "consoles")
        return {"command": cmd, "consoles": args.consoles, "browsers": args.browsers,
                "intervals_s": console_intervals(),
                "node_cpu_ms_per_s": {"idle": idle, "with_consoles": serving,
                                      "consoles": round(serving - idle, 1)},
                "rounds": rounds,
                "median_without": without, "median_with": with_consoles,
                "loss_percent": round(100 * (1 - with_consoles / without), 1)}


# --- search at scale -----------------------------------------------------------------------


def _timed(client: httpx.Client, path: str, params_of: Any, count: int) -> dict[str, Any]:
    times, sizes = [], []
    for n in range(count):
        started = time.perf_counter()
        answer = client.get(path, params=params_of(n))
        times.append((time.perf_counter() - started) * 1000)
        sizes.append(len(answer.content))
        if answer.json()["responseStatus"]["errorCode"] != "success":
            raise RuntimeError(answer.text[:500])
    return {**percentiles(times), "answer_bytes_max": max(sizes)}


def scenario_search(args: argparse.Namespace) -> dict[str, Any]:
    teams, per_team, per_service = 100, 100, 10
    with node("--lease-ttl", "3600") as (base, _, cmd):
        fleet = [instance(f"team{t:02d}.svc{s:03d}", (t * per_team + s) * per_service + i)
                 for t in range(teams) for s in range(per_team) for i in range(per_service)]
        started = time.monotonic()
        register(base, fleet, batch=5000)
        registered_s = time.monotonic() - started
        rng = random.Random(7)
        with httpx.Client(base_url=base, timeout=30) as client:
            result: dict[str, Any] = {
                "command": cmd, "services": teams * per_team, "instances": len(fleet),
                "register_seconds": round(registered_s, 1),
                "services_json": _timed(client, "/api/console/services.json", lambda n: {
                    "prefix": f"team{rng.randrange(teams):02d}.svc{rng.randrange(10)}",
                    "limit": 50}, 200),
                "services_json_first_page": _timed(client, "/api/console/services.json",
                                                   lambda n: {"limit": 50}, 200),
                "service_json": _timed(client, "/api/console/service.json", lambda n: {
                    "serviceId": f"team{rng.randrange(teams):02d}.svc{rng.randrange(100):03d}"},
                    200),
                "overview_json": _timed(client, "/api/console/overview.json", lambda n: {}, 200),
            }
        if args.browsers != "none":
            result["browser_search_ms"] = _browser_search(base, teams)
        return result


def _browser_search(base: str, teams: int) -> dict[str, Any]:
    """Keystroke to rendered page in the services page, for 20 prefixes, in Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                    headless=True)
        page = browser.new_page()
        page.goto(base + "/console/#/services")
        page.wait_for_selector("table.services")
        for n in range(20):
            prefix = f"team{(n * 7) % teams:02d}"
            page.fill("#service-search", prefix)
            page.wait_for_selector(f"table.services[data-prefix='{prefix}']")
        measured = page.evaluate("""() => performance.getEntriesByName(
          "artemis-console:search").map((m) => m.duration)""")
        browser.close()
    return percentiles(measured)


SCENARIOS = {"consoles": scenario_consoles, "search": scenario_search}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help="comma-separated scenarios: " + ", ".join(SCENARIOS))
    parser.add_argument("--consoles", type=int, default=20)
    parser.add_argument("--browsers", choices=("replay", "chromium", "none"), default="replay",
                        help="consoles: replay clients (the node's cost) or Chromium pages; "
                             "search: none skips the browser's timing")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each arm")
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per arm")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--out", help="also write the results to this JSON file")
    args = parser.parse_args()
    results = {}
    for name in args.only.split(","):
        print(f"{name}...", file=sys.stderr)
        results[name] = SCENARIOS[name](args)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
