"""Push at scale: 10,000 WebSocket subscribers on one node, on loopback. Run by hand, never by the
test suite:

    .venv/bin/python benchmarks/bench_push_scale.py                 # 10,000 sessions, ~3 minutes
    .venv/bin/python benchmarks/bench_push_scale.py --sessions 500 --hot 100 --services 40 \\
        --rounds 20                                                 # a smoke run, ~1 minute

One node on a free 127.0.0.1 port (leases of 900 s, so nothing expires during the run). --hot
(1,000) sessions subscribe to one service, `push.hot`; the others (9,000) are spread over
--services (900) services, ten per service. Each session is one /ws/discovery/instance-change
WebSocket following one service as a client does: subscribe, look the service up, apply every
pushed change (`new`, `delete`; `reload` looks it up again), keep the revision of the last frame
and resubscribe with it after a reconnect. A client whose session ends tries again after a random
0 to --spread (1) seconds, and while the node does not answer every --retry (2) seconds +-50%, the
project's DiscoveryClient's interval. The sessions live in --processes (8) client processes,
niced (--client-nice, 19: the least CPU the scheduler gives them while the node wants it; runs
before 2026-12-07 used 10), so that what is measured is the node; the controller that registers
and reads the node's figures is not niced (the node it starts inherits its priority).

Phases, in order:
  memory    the node's RSS with the registry filled and no session, then with every session open,
            subscribed and idle (each read after --settle seconds, longer than the node's 10 s
            memory trim): bytes per idle session
  fanout    one instance registers in `push.hot`, --rounds times, 0.1 s apart, while every other
            session stays open: from just before the register call is sent (on a connection
            already open) to the last of the hot subscribers' receipt of its `new`, per round
            (and to every receipt, and the register call's own answer); the loop lag meanwhile.
            A receipt is read by a niced client process sharing the cores with the node, so
            the figure is an upper bound of the node's own fan-out time. With --wire (auto: when
            tcpdump is installed and the run is root's), the loopback interface is captured
            meanwhile (benchmarks/wire_capture.py) and the same figures are read from the
            kernel's packet times: from the register request's first packet to each frame's,
            that is when the frame was in the subscriber's socket, before its client read it
  resume    every client closes its session; while they are away, each service loses one
            instance and gains one; then they reconnect (spread over --spread seconds) with the
            revision of the last frame they saw, and the node replays what each missed from its
            change log (the same run: resume by revision). The node's loop lag from the first
            reconnection until every session has caught up, the time that took, frames replayed
  restart   the node is killed (SIGKILL, by its pid) with every session open and started again on
            the same port. It comes back empty (the registry lives in memory) and with a new run
            id, so every resubscription's revision is of another run and is answered by a
            `reload`, after which the client looks the service up. The fleet registers again (as
            the clients' heartbeats do after `data-not-found`), but for one instance of each
            service that died meanwhile, and each service gains a new one, while the sessions
            reconnect. The restarted node's loop lag from its start (its own, after the
            interpreter's start and imports) until every session has caught up, its longest
            steps, and the time that took, from its start and from the kill

The node's longest steps (garbage collector passes by generation, snapshotter, sweeper) are
read with each phase's loop lag; they are since the node's start, not per phase. The clients'
counts (frames, reloads, lookups, connections and failed attempts) are per phase.

Each of resume and restart ends with a check of every session: its view (the instances it holds)
equals the node's answer for its service, right when all have caught up and again after a quiet
second; a session that lost a change would hold a different set. A phase that does not converge
within 120 s is reported as such.

Connection caps: every session connects from 127.0.0.1, so the node runs without the per-address
cap (bench_node's `--max-connections-per-client 0`, as every benchmark here): one address standing
for many clients is the benchmark's shape, not what the cap is for. `ws_max_sessions` (10,000) and
`max_connections` (16,384) hold 10,000 sessions as they are; they are raised only for a larger
--sessions. Open files: the controller raises its soft limit (inherited by the node and the client
processes) to --sessions plus 2,048 when the hard limit allows, and stops otherwise.

The machine's steal (benchmarks/steal.py: CPU time the hypervisor took from this virtual
machine, when it is one) is sampled all along and reported with every loop-lag figure: over the
same span, and the most within any 100 ms. A stall the node's thread spent runnable while the
hypervisor ran something else is the machine's, not the node's; the fan-out also counts its
rounds with any steal and gives the on-the-wire figures of the others apart.

Clock readings from different processes are comparable: they all read the machine's monotonic
clock. Every process started is stopped by its pid. Each phase prints one JSON line as it ends,
--out writes them all as one document, and a few lines of summary go to standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import queue
import random
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil
import websockets
from websockets.exceptions import ConnectionClosed, WebSocketException

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_node import REGION, ZONE, free_port, instance, node, register, runtime
from bench_push import SUBSCRIBE, percentiles
from steal import StealWatch
from wire_capture import Capture, fanout_rounds, unavailable

HOT = "push.hot"
PATH = "/ws/discovery/instance-change"
REGISTER = "/api/registry/register.json"
CONVERGE_S = 120.0
CONNECT_ERRORS = (OSError, TimeoutError, EOFError, WebSocketException)
COUNTS = ("frames", "reloads", "lookups", "connects", "connect_failures", "lookup_failures",
          "error_frames")  # what each client process counts


def cold_service(k: int) -> str:
    return f"push.svc.{k:04d}"


def raise_open_files(need: int) -> int:
    """Raise the soft limit on open files to `need` (children inherit it); stop if the hard
    limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < need:
        raise SystemExit(f"open files are limited to {soft} (hard limit {hard}); {need} are "
                         "needed: raise `ulimit -n` or lower --sessions")
    return soft


# --- the client processes -------------------------------------------------------------------


class _Sub:
    """One session: the service it follows, what it holds of it, and the revision it saw."""

    __slots__ = ("again", "connected_at", "event_at", "looking", "pending", "revision",
                 "service", "view", "ws")

    def __init__(self, service: str) -> None:
        self.service = service
        self.view: dict[str, Any] = {}  # lower-case instance id -> instance
        self.revision: str | None = None
        self.ws: Any = None
        self.looking = False  # a lookup is in flight: frames wait in `pending`
        self.again = False  # a reload came during the lookup: look up once more
        self.pending: list[dict[str, Any]] = []
        self.event_at = 0.0  # when its view last changed or a lookup completed
        self.connected_at = 0.0


class _Client:
    """Every session of one client process, driven by the controller's commands."""

    def __init__(self, http_base: str, services: list[str], out: Any) -> None:
        self.ws_url = http_base.replace("http://", "ws://") + PATH
        self.lookup_url = http_base + "/api/discovery/lookup.json"
        self.subs = [_Sub(service) for service in services]
        self.out = out
        self.allowed = asyncio.Event()  # sessions may (re)connect
        self.changed = asyncio.Event()  # a session connected, closed or finished a lookup
        self.stopping = False
        self.gate = asyncio.Semaphore(64)  # handshakes in flight in this process
        self.spread = 1.0
        self.retry = 2.0
        self.truth: dict[str, dict[str, Any]] = {}
        self.receipts: dict[str, list[float]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.counts = {"frames": 0, "reloads": 0, "lookups": 0, "connects": 0,
                       "connect_failures": 0, "lookup_failures": 0, "error_frames": 0}
        self.errors: list[str] = []
        self.http: aiohttp.ClientSession | None = None

    # sessions

    async def run(self, sub: _Sub) -> None:
        delay = 0.0
        while True:
            await self.allowed.wait()
            if self.stopping:
                return
            if delay:
                await asyncio.sleep(delay)
                if not self.allowed.is_set():
                    continue
            try:
                async with self.gate:
                    ws = await websockets.connect(self.ws_url, max_queue=None, max_size=None,
                                                  ping_interval=None, compression=None,
                                                  open_timeout=30, close_timeout=2)
            except CONNECT_ERRORS:
                self.counts["connect_failures"] += 1
                delay = self.retry * random.uniform(0.5, 1.5)  # the node is away
                continue
            self.counts["connects"] += 1
            await self.serve(sub, ws)
            delay = random.uniform(0.0, self.spread)  # clients do not all come back at once

    async def serve(self, sub: _Sub, ws: Any) -> None:
        sub.ws, sub.connected_at = ws, time.monotonic()
        self.changed.set()
        try:
            await ws.send(json.dumps({**SUBSCRIBE, "serviceId": sub.service,
                                      "revision": sub.revision}))
            if sub.revision is None:  # nothing to resume from: look it up once subscribed
                self.lookup(sub)
            async for text in ws:
                self.on_frame(sub, text)
        except ConnectionClosed:
            pass
        finally:
            sub.ws = None
            self.changed.set()

    def on_frame(self, sub: _Sub, text: str | bytes) -> None:
        now = time.monotonic()
        frame = json.loads(text)
        kind = frame.get("changeType")
        if kind is None:
            self.counts["error_frames"] += 1
            if len(self.errors) < 5:
                self.errors.append(str(text)[:300])
            return
        self.counts["frames"] += 1
        if frame.get("revision"):
            sub.revision = frame["revision"]
        if kind == "new" and sub.service == HOT:
            self.receipts.setdefault(frame["instance"]["instanceId"], []).append(now)
        if sub.looking:
            sub.pending.append(frame)
        else:
            self.apply(sub, frame, now)

    def apply(self, sub: _Sub, frame: dict[str, Any], now: float) -> None:
        kind = frame["changeType"]
        if kind == "reload":
            self.counts["reloads"] += 1
            self.lookup(sub)
            return
        key = frame["instance"]["instanceId"].lower()
        if kind in ("new", "change"):
            sub.view[key] = frame["instance"]
        elif kind == "delete":
            sub.view.pop(key, None)
        sub.event_at = now

    def lookup(self, sub: _Sub) -> None:
        if sub.looking:
            sub.again = True
            return
        sub.looking = True
        task = asyncio.create_task(self._lookup(sub))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _lookup(self, sub: _Sub) -> None:
        assert self.http is not None
        body = json.dumps({"discoveryConfigs": [{**SUBSCRIBE, "serviceId": sub.service}],
                           "regionId": REGION, "zoneId": ZONE}).encode()
        while not self.stopping:
            try:
                async with self.http.post(self.lookup_url, data=body) as response:
                    services = (await response.json(content_type=None))["services"]
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
                self.counts["lookup_failures"] += 1
                await asyncio.sleep(random.uniform(0.25, 0.75))
                continue
            self.counts["lookups"] += 1
            found = services[0]["instances"] if services else []
            sub.view = {i["instanceId"].lower(): i for i in found or []}
            now = time.monotonic()
            sub.event_at = now
            pending, sub.pending = sub.pending, []
            sub.looking = False
            self.changed.set()
            for frame in pending:  # what came meanwhile, in order (twice does no harm)
                if sub.looking:
                    sub.pending.append(frame)
                else:
                    self.apply(sub, frame, now)
            if not sub.again or sub.looking:
                sub.again = False
                return
            sub.again = False
            sub.looking = True

    # commands

    def check(self) -> dict[str, Any]:
        equal = online = looking = 0
        last_event = last_connect = 0.0
        unequal: list[dict[str, Any]] = []
        for sub in self.subs:
            online += sub.ws is not None
            looking += sub.looking
            expected = self.truth.get(sub.service.lower(), {})
            if sub.ws is not None and not sub.looking and sub.view == expected:
                equal += 1
            elif len(unequal) < 3:
                unequal.append({"service": sub.service, "online": sub.ws is not None,
                                "looking": sub.looking, "held": len(sub.view),
                                "expected": len(expected),
                                "missing": sorted(set(expected) - set(sub.view))[:3],
                                "extra": sorted(set(sub.view) - set(expected))[:3]})
            last_event = max(last_event, sub.event_at)
            last_connect = max(last_connect, sub.connected_at)
        return {"sessions": len(self.subs), "equal": equal, "online": online,
                "looking": looking, "last_event": last_event, "last_connect": last_connect,
                "unequal": unequal, **self.counts, "errors": self.errors}

    async def until(self, done: Callable[[], bool], within: float) -> None:
        """Wait until `done()` holds, looking again whenever a session changes; at most
        `within` seconds."""
        deadline = time.monotonic() + within
        while not done() and time.monotonic() < deadline:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), deadline - time.monotonic())

    async def main(self, commands: Any) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

        def read() -> None:
            while True:
                command = commands.get()
                loop.call_soon_threadsafe(inbox.put_nowait, command)
                if command[0] == "stop":
                    return

        threading.Thread(target=read, daemon=True).start()
        self.http = aiohttp.ClientSession(  # lighter than httpx: the clients share the CPU
            connector=aiohttp.TCPConnector(limit=8), timeout=aiohttp.ClientTimeout(total=30),
            headers={"Content-Type": "application/json"})
        runners: list[asyncio.Task[None]] = []
        while True:
            command = await inbox.get()
            name = command[0]
            if name == "hello":
                self.out.put((name, None))
            elif name == "open":
                self.allowed.set()
                runners = [asyncio.create_task(self.run(sub)) for sub in self.subs]
                await self.until(lambda: all(s.ws is not None and not s.looking
                                             for s in self.subs), 300)
                self.out.put((name, self.check()))
            elif name == "expect":
                self.truth = command[1]
                self.out.put((name, None))
            elif name == "check":
                self.out.put((name, self.check()))
            elif name == "receipts":
                receipts, self.receipts = self.receipts, {}
                self.out.put((name, receipts))
            elif name == "drop":
                self.allowed.clear()
                await asyncio.gather(*(s.ws.close() for s in self.subs if s.ws is not None),
                                     return_exceptions=True)
                await self.until(lambda: all(s.ws is None for s in self.subs), 60)
                self.out.put((name, self.check()))
            elif name == "timers":
                self.spread, self.retry = command[1], command[2]
                self.out.put((name, None))
            elif name == "reconnect":
                self.allowed.set()
                self.out.put((name, None))
            elif name == "stop":
                self.stopping = True
                self.allowed.set()
                await asyncio.gather(*(s.ws.close() for s in self.subs if s.ws is not None),
                                     return_exceptions=True)
                for task in [*runners, *self.tasks]:
                    task.cancel()
                await asyncio.gather(*runners, *self.tasks, return_exceptions=True)
                await self.http.close()
                self.out.put((name, None))
                return


def _client_process(http_base: str, services: list[str], commands: Any, out: Any,
                    nice: int) -> None:
    os.nice(nice)  # the node is what is measured: the clients yield the CPU to it
    gc.disable()  # a client's own full collections would show in the figures (it lives minutes)
    with contextlib.suppress(ImportError):
        import uvloop  # the clients' own CPU time is not what is measured

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_Client(http_base, services, out).main(commands))


class Clients:
    """The client processes, and one command to all of them at a time."""

    def __init__(self, base: str, services: list[str], processes: int, nice: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.out: Any = ctx.Queue()
        self.inboxes: list[Any] = [ctx.Queue() for _ in range(processes)]
        # session n goes to process n % processes: the hot sessions are spread evenly
        self.procs = [ctx.Process(target=_client_process,
                                  args=(base, services[n::processes], self.inboxes[n], self.out,
                                        nice))
                      for n in range(processes)]
        for proc in self.procs:
            proc.start()
        self.ask("hello", timeout=120)  # started and listening: what follows is timed

    def ask(self, *command: Any, timeout: float = 60) -> list[Any]:
        for inbox in self.inboxes:
            inbox.put(command)
        answers = []
        for _ in self.inboxes:
            name, payload = self.out.get(timeout=timeout)
            if name != command[0]:
                raise RuntimeError(f"asked {command[0]}, a client answered {name}")
            answers.append(payload)
        return answers

    def check(self) -> dict[str, Any]:
        parts = self.ask("check")
        total: dict[str, Any] = {key: sum(p[key] for p in parts)
                                 for key in ("sessions", "equal", "online", "looking", *COUNTS)}
        total["last_event"] = max(p["last_event"] for p in parts)
        total["last_connect"] = max(p["last_connect"] for p in parts)
        total["unequal"] = [u for p in parts for u in p["unequal"]][:5]
        total["errors"] = [e for p in parts for e in p["errors"]][:5]
        return total

    def stop(self) -> None:
        with contextlib.suppress(queue.Empty, RuntimeError):
            self.ask("stop", timeout=30)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()  # by its pid
                proc.join()


# --- the controller -------------------------------------------------------------------------


def truth(base: str, services: list[str]) -> dict[str, dict[str, Any]]:
    """What the node holds of each service: lower-case service id -> instance id -> instance."""
    held: dict[str, dict[str, Any]] = {}
    with httpx.Client(timeout=60) as client:
        for start in range(0, len(services), 200):
            configs = [{**SUBSCRIBE, "serviceId": s} for s in services[start:start + 200]]
            answer = client.post(base + "/api/discovery/lookup.json",
                                 json={"discoveryConfigs": configs, "regionId": REGION,
                                       "zoneId": ZONE}).json()
            for service in answer["services"]:
                held[service["serviceId"].lower()] = {
                    i["instanceId"].lower(): i for i in service["instances"] or []}
    return held


def post(client: httpx.Client, base: str, path: str, instances: list[dict[str, Any]]) -> None:
    answer = client.post(base + path, json={"instances": instances}).json()
    if answer["responseStatus"]["status"] != "success":
        raise RuntimeError(f"{path}: {answer['responseStatus']}")


def converge(clients: Clients, base: str, services: list[str], since: float,
             before: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hand the node's registry to the clients and wait until every session holds exactly its
    service; the seconds from `since` until the last of them got there (its last change applied
    or, if it had nothing to apply, its connection), checked again after a quiet second. The
    clients' counts are those since `before` (an earlier check), if given."""
    held = truth(base, services)
    clients.ask("expect", held)
    deadline = time.monotonic() + CONVERGE_S
    state = clients.check()
    while state["equal"] < state["sessions"] and time.monotonic() < deadline:
        time.sleep(0.2)
        state = clients.check()
    done = state["equal"] == state["sessions"]
    caught_up = time.monotonic()
    result = {"converged": done,
              "all_caught_up_s": (round(max(state["last_event"], state["last_connect"]) - since,
                                        3) if done else None),
              "all_connected_s": round(state["last_connect"] - since, 3),
              "checked_at_s": round(caught_up - since, 3)}
    time.sleep(1.0)
    again = truth(base, services)
    if again != held:
        clients.ask("expect", again)
    final = clients.check()
    result["check"] = {"sessions": final["sessions"], "equal_to_node": final["equal"],
                       "online": final["online"], "registry_unchanged": again == held,
                       "unequal_examples": final["unequal"], "error_frames": final["errors"]}
    result["client_counts"] = {k: final[k] - (before[k] if before else 0) for k in COUNTS}
    return result


STEAL = StealWatch()  # started by main(): what the hypervisor took, next to each loop lag


def lag_since(base: str, since: float) -> dict[str, Any]:
    with httpx.Client(timeout=30) as client:
        status = runtime(client, base, time.monotonic() - since + 0.5)
    return {"loop_lag": {**status["loopLag"], "steal": STEAL.span(since - 0.5)},
            "longest_step_ms": status["longestStepMs"],
            "push": status["push"], "uptime_s": status["uptimeSeconds"]}


def phase_memory(base: str, proc: psutil.Process, clients: Clients, total: int,
                 settle: float) -> dict[str, Any]:
    time.sleep(settle)
    rss_before = proc.memory_info().rss
    started = time.monotonic()
    opened = clients.ask("open", timeout=600)
    open_s = time.monotonic() - started
    online = sum(p["online"] for p in opened)
    if online < total:
        raise RuntimeError(f"only {online} of {total} sessions opened: {opened[0]}")
    time.sleep(settle)
    rss_after = proc.memory_info().rss
    with httpx.Client() as client:
        counted = client.get(base + "/api/status/message/connections.json").json()
    return {"sessions": total, "open_seconds": round(open_s, 1), "node_counts": counted,
            "rss_before_mb": round(rss_before / 2**20, 1),
            "rss_after_mb": round(rss_after / 2**20, 1),
            "bytes_per_idle_session": round((rss_after - rss_before) / total)}


def phase_fanout(base: str, clients: Clients, rounds: int, first_id: int,
                 wire: bool) -> dict[str, Any]:
    clients.ask("receipts")  # forget what came before
    sent: dict[str, float] = {}
    answer_ms: list[float] = []
    capture = None
    if wire:
        capture = Capture(int(base.rsplit(":", 1)[1]))
        capture.start()
    started = time.monotonic()
    try:
        with httpx.Client(timeout=10) as client:
            client.get(base + "/health").raise_for_status()  # the connection is open before
            for r in range(rounds):
                inst = instance(HOT, first_id + r)
                body = json.dumps({"instances": [inst]}).encode()
                at = time.monotonic()  # the clock starts before the request is sent
                client.post(base + REGISTER, content=body,
                            headers={"Content-Type": "application/json"}).raise_for_status()
                answer_ms.append((time.monotonic() - at) * 1000)
                sent[inst["instanceId"]] = at
                time.sleep(0.1)  # one registration at a time: rounds do not overlap
        time.sleep(1.0)
    finally:
        if capture is not None:
            capture.stop()
    lag = lag_since(base, started)
    receipts: dict[str, list[float]] = {}
    for part in clients.ask("receipts"):
        for key, times in part.items():
            receipts.setdefault(key, []).extend(times)
    counts = [len(receipts.get(k, [])) for k in sent]
    # a round the hypervisor took CPU time during (from its request until 0.1 s later)
    stolen = [STEAL.span(at, at + 0.1)["stolen_ms"] > 0 for at in sent.values()]
    last = [(max(receipts[k]) - sent[k]) * 1000 for k in sent if receipts.get(k)]
    every = [(t - sent[k]) * 1000 for k in sent for t in receipts.get(k, [])]
    result: dict[str, Any] = {
        "rounds": rounds, "receipts_per_round_min": min(counts),
        "receipts_per_round_max": max(counts),
        "last_subscriber_ms": percentiles(last), "every_subscriber_ms": percentiles(every),
        "register_answer_ms": percentiles(answer_ms), "loop_lag": lag["loop_lag"],
        "longest_step_ms_since_node_start": lag["longest_step_ms"],
        "rounds_with_steal": sum(stolen), "wire": None}
    if capture is not None:
        try:
            on_wire = fanout_rounds(capture.packets(), capture.port,
                                    f"POST {REGISTER} ".encode())
        finally:
            capture.close()
        result["wire"] = {
            "rounds": len(on_wire),
            "frames_per_round_min": min(map(len, on_wire), default=0),
            "frames_per_round_max": max(map(len, on_wire), default=0),
            "last_subscriber_ms": some_percentiles([max(r) for r in on_wire if r]),
            "first_subscriber_ms": some_percentiles([min(r) for r in on_wire if r]),
            "every_subscriber_ms": some_percentiles([at for r in on_wire for at in r]),
            # the rounds the hypervisor took no CPU time during (the rounds are in order)
            "last_subscriber_ms_rounds_without_steal": some_percentiles(
                [max(r) for r, hit in zip(on_wire, stolen, strict=False) if r and not hit])
            if len(on_wire) == len(stolen) else None}
    return result


def some_percentiles(values: list[float]) -> dict[str, float] | None:
    return percentiles(values) if values else None


def churn_batch(held: dict[str, dict[str, Any]], services: list[str], first_id: int
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One instance of each service to remove (its first by id) and one new one to add."""
    gone = [held[s.lower()][min(held[s.lower()])] for s in services if held.get(s.lower())]
    new = [instance(s, first_id + n) for n, s in enumerate(services)]
    return gone, new


def phase_resume(base: str, clients: Clients, services: list[str], first_id: int,
                 spread: float) -> dict[str, Any]:
    before_counts = clients.check()
    clients.ask("drop", timeout=120)
    with httpx.Client(timeout=30) as client:
        before = runtime(client, base, 1)["push"]
        gone, new = churn_batch(truth(base, services), services, first_id)
        for i in range(0, len(gone), 500):
            post(client, base, "/api/registry/unregister.json", gone[i:i + 500])
        for i in range(0, len(new), 500):
            post(client, base, "/api/registry/register.json", new[i:i + 500])
    started = time.monotonic()
    clients.ask("reconnect")
    result = converge(clients, base, services, started, before_counts)
    lag = lag_since(base, started)
    replayed = lag["push"]["framesReplayed"] - before["framesReplayed"]
    return {"changes_while_away": len(gone) + len(new), "reconnect_spread_s": spread,
            **result, "loop_lag": lag["loop_lag"],
            "longest_step_ms_since_node_start": lag["longest_step_ms"],
            "frames_replayed": replayed,
            "node_push": lag["push"]}


def summary(results: dict[str, Any]) -> str:
    """A few lines for a human; the JSON holds everything."""
    lines = [f"{results['sessions']} sessions ({results['hot']} on {HOT}) over "
             f"{results['services']} services"]
    if "memory" in results:
        m = results["memory"]
        lines.append(f"memory   node RSS {m['rss_before_mb']} -> {m['rss_after_mb']} MB: "
                     f"{m['bytes_per_idle_session']} bytes per idle session")
    if "fanout" in results:
        f = results["fanout"]
        lines.append(f"fanout   last of the hot subscribers p50 {f['last_subscriber_ms']['p50']} "
                     f"p99 {f['last_subscriber_ms']['p99']} max {f['last_subscriber_ms']['max']} "
                     f"ms; receipts per round {f['receipts_per_round_min']}-"
                     f"{f['receipts_per_round_max']}; loop lag max {f['loop_lag']['maxMs']} ms; "
                     f"rounds with steal {f['rounds_with_steal']}")
        if f["wire"] is not None and f["wire"]["last_subscriber_ms"] is not None:
            w = f["wire"]
            lines.append(f"fanout   on the wire, last frame of a round p50 "
                         f"{w['last_subscriber_ms']['p50']} p99 {w['last_subscriber_ms']['p99']} "
                         f"max {w['last_subscriber_ms']['max']} ms; frames per round "
                         f"{w['frames_per_round_min']}-{w['frames_per_round_max']}")
            quiet = w["last_subscriber_ms_rounds_without_steal"]
            if quiet is not None:
                lines.append(f"fanout   on the wire, rounds without steal ({quiet['count']}): "
                             f"p50 {quiet['p50']} p99 {quiet['p99']} max {quiet['max']} ms")
    for name, key in (("resume", "loop_lag"), ("restart", "loop_lag_since_start")):
        if name in results:
            r = results[name]
            lines.append(f"{name:8} converged {r['converged']} in {r['all_caught_up_s']} s; "
                         f"{r['check']['equal_to_node']}/{r['check']['sessions']} sessions "
                         f"equal to the node; loop lag max {r[key]['maxMs']} ms "
                         f"(the machine's steal: {r[key]['steal']['stolen_ms']} ms, at most "
                         f"{r[key]['steal']['most_in_100ms_ms']} ms in 100 ms)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--hot", type=int, default=1_000, help="sessions of the one service")
    parser.add_argument("--services", type=int, default=900,
                        help="services the other sessions are spread over")
    parser.add_argument("--per-service", type=int, default=3, help="instances per service")
    parser.add_argument("--processes", type=int, default=8, help="client processes")
    parser.add_argument("--client-nice", type=int, default=19,
                        help="niceness of the client processes (earlier runs used 10)")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--spread", type=float, default=1.0,
                        help="seconds over which clients reconnect after losing their session")
    parser.add_argument("--retry", type=float, default=2.0,
                        help="seconds between a client's failed connection attempts, +-50%% "
                             "(the project's DiscoveryClient's reconnect_interval)")
    parser.add_argument("--settle", type=float, default=12.0,
                        help="seconds before each RSS reading")
    parser.add_argument("--only", default="memory,fanout,resume,restart")
    parser.add_argument("--wire", choices=("auto", "on", "off"), default="auto",
                        help="capture the fan-out on loopback (auto: when tcpdump and root are "
                             "there)")
    parser.add_argument("--node-arg", dest="node_args", action="append", default=[],
                        help="an extra flag for the node (repeat for more)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    STEAL.start()
    total, phases = args.sessions, set(args.only.split(","))
    why_not = unavailable()
    if args.wire == "on" and why_not:
        raise SystemExit(f"--wire on: {why_not}")
    wire = args.wire == "on" or (args.wire == "auto" and why_not is None)
    limit = raise_open_files(total + 2048)
    cold = [cold_service(k) for k in range(args.services)]
    services = [HOT, *cold]
    per_session = [HOT if n < args.hot else cold[(n - args.hot) % len(cold)]
                   for n in range(total)]
    node_args = ["--log-level", "error", "--lease-ttl", "900", "--max-lease-ttl", "900",
                 "--ws-max-sessions", str(max(10_000, total)),
                 "--max-connections", str(max(16_384, total + 1024)), *args.node_args]
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(),
                                           "python": sys.version.split()[0],
                                           "open_files_limit": limit},
                               "sessions": total, "hot": args.hot, "services": len(services),
                               "processes": args.processes}
    next_id = 0

    def fresh(count: int) -> int:
        nonlocal next_id
        next_id += count
        return next_id - count

    def emit(name: str, value: Any) -> None:
        results[name] = value
        print(json.dumps({name: value}), flush=True)

    port = free_port()
    clients: Clients | None = None
    try:
        with node(*node_args, port=port) as (base, proc, cmd):
            results["command"] = cmd
            fleet = [instance(s, fresh(1)) for s in services for _ in range(args.per_service)]
            register(base, fleet, batch=500)
            clients = Clients(base, per_session, args.processes, args.client_nice)
            clients.ask("timers", args.spread, args.retry)
            if "memory" in phases:
                emit("memory", phase_memory(base, proc, clients, total, args.settle))
            else:
                clients.ask("open", timeout=600)
            # a change of every service, so that every session holds a revision to resume from
            with httpx.Client(timeout=30) as client:
                post(client, base, "/api/registry/register.json",
                     [instance(s, fresh(1)) for s in services])
            warm = converge(clients, base, services, time.monotonic())
            if not warm["converged"]:
                raise RuntimeError(f"the sessions did not take the first change: {warm}")
            if "fanout" in phases:
                emit("fanout", phase_fanout(base, clients, args.rounds, fresh(args.rounds),
                                            wire))
            if "resume" in phases:
                emit("resume", phase_resume(base, clients, services, fresh(len(services)),
                                            args.spread))
            if "restart" not in phases:
                return
            held = truth(base, services)
            before_counts = clients.check()
            killed = time.monotonic()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        spawned = time.monotonic()
        with node(*node_args, port=port) as (base, proc, _):
            up = time.monotonic()
            with httpx.Client(timeout=30) as client:
                # the node's own start (its clock is this machine's monotonic one): the time
                # before it is the interpreter's start and imports
                started = time.monotonic() - runtime(client, base, 1)["uptimeSeconds"]
            gone, new = churn_batch(held, services, fresh(len(services)))
            dead = {(i["serviceId"].lower(), i["instanceId"]) for i in gone}
            again = [i for s in held.values() for i in s.values()
                     if (i["serviceId"].lower(), i["instanceId"]) not in dead]
            random.Random(7).shuffle(again)
            with httpx.Client(timeout=30) as client:
                for i in range(0, len(again), 250):  # heartbeats answered data-not-found
                    post(client, base, "/api/registry/register.json", again[i:i + 250])
                    time.sleep(0.02)
                for i in range(0, len(new), 100):
                    post(client, base, "/api/registry/register.json", new[i:i + 100])
                    time.sleep(0.02)
            registered = time.monotonic()
            result = converge(clients, base, services, started, before_counts)
            lag = lag_since(base, started)
            caught_up = result["all_caught_up_s"]
            emit("restart", {
                "kill_to_spawn_s": round(spawned - killed, 3),
                "spawn_to_node_start_s": round(started - spawned, 3),
                "node_start_to_health_s": round(up - started, 3),
                "reregistered_s": round(registered - started, 3),
                "instances_reregistered": len(again), "instances_died": len(gone),
                "instances_new": len(new), **result,
                "all_caught_up_since_kill_s": (None if caught_up is None
                                               else round(caught_up + started - killed, 3)),
                "loop_lag_since_start": lag["loop_lag"],
                "longest_step_ms_since_start": lag["longest_step_ms"],
                "node_push": lag["push"],
                "rss_mb": round(proc.memory_info().rss / 2**20, 1)})
    finally:
        if clients is not None:
            clients.stop()
        if args.out:
            args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(summary(results), file=sys.stderr)


if __name__ == "__main__":
    main()
