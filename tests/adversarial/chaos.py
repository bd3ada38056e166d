"""A randomized fault run against a three-node cluster of real processes on 127.0.0.1.

Every link between two nodes goes through a fault proxy, and the nodes' wall clocks are skewed
(one an hour ahead, one half an hour behind). Simulated clients keep instances alive the way the
SDKs do: each heartbeats at its home node once a second, registers again when told
`data-not-found`, and moves to the next node when its home does not answer. Then, in an order a
seeded random generator picks, the run:

  * kills a node (SIGKILL) and starts it again;
  * pauses a node (SIGSTOP, longer than a lease, then SIGCONT);
  * partitions two nodes (both links drop everything), or cuts them (resets), then heals;
  * delays a link;
  * lets instances die (their client stops), unregisters some, registers new ones, and
    registers some again with new data (a new URL) at another node than their home.

After each step the faults are healed and the checker polls, with a deadline, until every node
serves exactly the instances whose clients still heartbeat, each with the data its client last
registered, and none of the dead ones. A step whose check does not converge fails the run with
the seed, the step list and what each node served.

CI runs a short run (tests/adversarial/test_chaos.py); a longer one runs by hand:

    .venv/bin/python -m tests.adversarial.chaos --steps 100 --seed 7
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.process.cluster import FAST, REGION, ZONE, Cluster

SERVICE = "chaos.service.v1"
LEASE_TTL = 4.0
HEARTBEAT_EVERY = 1.0
CONVERGE_DEADLINE = 60.0  # generous: a busy 2-core machine runs three nodes and the clients
SKEW = {"A": 0.0, "B": 3600.0, "C": -1800.0}
NODE_FLAGS = ("--lease-ttl", str(LEASE_TTL), "--no-self-preservation",
              "--max-connections-per-client", "0")
ACTIONS = ("kill", "pause", "partition", "cut", "delay", "die", "unregister", "register",
           "move")


class ChaosFailure(AssertionError):
    """The cluster did not converge to what the clients hold."""


@dataclass
class Client:
    """One simulated instance and its client: alive while `alive`, data version `version`."""

    instance_id: str
    home: str
    alive: bool = True
    version: int = 0

    def body(self) -> dict[str, Any]:
        return {"serviceId": SERVICE, "instanceId": self.instance_id, "ip": "10.0.0.1",
                "port": 8080, "url": f"http://10.0.0.1:8080/{self.instance_id}/v{self.version}",
                "regionId": REGION, "zoneId": ZONE, "status": "up"}

    def url(self) -> str:
        return str(self.body()["url"])


@dataclass
class Clients:
    """The simulated SDK clients and the thread that heartbeats for them."""

    names: tuple[str, ...]
    urls: dict[str, str]
    clients: dict[str, Client] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=1.0))

    def add(self, instance_id: str, home: str) -> Client:
        client = Client(instance_id, home)
        with self.lock:
            self.clients[instance_id] = client
        self.register(client, home)
        return client

    def call(self, node: str, operation: str, instances: list[dict[str, Any]]
             ) -> dict[str, Any] | None:
        """POST a registry write to `node`; its answer, or None if it did not answer."""
        try:
            answer: dict[str, Any] = self._http.post(
                f"{self.urls[node]}/api/registry/{operation}.json",
                json={"instances": instances}).json()
        except (httpx.HTTPError, ValueError):
            return None
        return answer

    def register(self, client: Client, node: str) -> bool:
        answer = self.call(node, "register", [client.body()])
        return answer is not None and answer["responseStatus"]["errorCode"] == "success"

    def unregister(self, client: Client) -> None:
        with self.lock:
            client.alive = False
        for node in self._order(client.home):
            answer = self.call(node, "unregister", [client.body()])
            if answer is not None and answer["responseStatus"]["errorCode"] == "success":
                return

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos clients", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._http.close()

    def expected(self) -> dict[str, str]:
        """instance id -> URL of every instance whose client is alive."""
        with self.lock:
            return {c.instance_id: c.url() for c in self.clients.values() if c.alive}

    def _order(self, home: str) -> list[str]:
        start = self.names.index(home)
        return [*self.names[start:], *self.names[:start]]

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY):
            with self.lock:
                by_home: dict[str, list[Client]] = {}
                for client in self.clients.values():
                    if client.alive:
                        by_home.setdefault(client.home, []).append(client)
            for home, clients in by_home.items():
                self._heartbeat(home, clients)

    def _heartbeat(self, home: str, clients: list[Client]) -> None:
        answer = self.call(home, "heartbeat", [c.body() for c in clients])
        code = None if answer is None else answer["responseStatus"]["errorCode"]
        if code in (None, "service-unavailable"):  # node away or starting: fail over
            following = self._order(home)[1]
            with self.lock:
                for client in clients:
                    client.home = following
            return
        if answer is None:
            return
        lost = {f["instance"]["instanceId"] for f in answer.get("failedInstances") or ()
                if f.get("errorCode") == "data-not-found"}
        for client in clients:
            if client.instance_id in lost and client.alive:
                self.register(client, home)  # as the SDK does: the node lost it


def served(url: str) -> dict[str, str] | str:
    """instance id -> URL that the node at `url` serves for SERVICE, or why it cannot tell."""
    try:
        answer = httpx.post(f"{url}/api/discovery/service.json", timeout=2.0, json={
            "discoveryConfig": {"serviceId": SERVICE, "regionId": REGION, "zoneId": ZONE}}
                            ).json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"no answer: {exc}"
    status = answer["responseStatus"]["errorCode"]
    if status == "data-not-found":
        return {}
    if status != "success":
        return f"answered {status}"
    return {i["instanceId"]: i["url"] for i in answer["service"]["instances"]}


class Chaos:
    """One run: the cluster, its proxies, the clients and the random steps."""

    def __init__(self, workdir: Path, seed: int, log: Callable[[str], None] = print) -> None:
        self.seed = seed
        self.random = random.Random(seed)
        self.log = log
        self.cluster = Cluster(workdir, ("A", "B", "C"), (*FAST, *NODE_FLAGS))
        self.steps: list[str] = []
        self.counter = 0
        self.clients: Clients | None = None

    # --- set-up -----------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self, instances: int = 24) -> Iterator[Chaos]:
        cluster = self.cluster
        try:
            for src in cluster.names:
                for dst in cluster.names:
                    if src != dst:
                        cluster.add_proxy(src, dst)
            self._skew_clocks()
            cluster.start()
            self.clients = Clients(cluster.names, {n: cluster.url(n) for n in cluster.names})
            for i in range(instances):
                self._new_instance(cluster.names[i % 3])
            self.clients.start()
            self.check("start")
            yield self
        finally:
            if self.clients is not None:
                self.clients.stop()
            for name, node in cluster.nodes.items():
                if node.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(node.process.pid, signal.SIGCONT)
                _ = name
            cluster.stop()

    def _skew_clocks(self) -> None:
        """Give each node its own wall-clock offset (its command is built per name)."""
        command = self.cluster.command

        def skewed(name: str) -> list[str]:
            return [*command(name), "--wall-clock-offset", str(SKEW[name])]

        self.cluster.command = skewed  # type: ignore[method-assign]

    def _new_instance(self, home: str) -> None:
        assert self.clients is not None
        self.counter += 1
        self.clients.add(f"i-{self.counter:04d}", home)

    # --- steps --------------------------------------------------------------------------

    def step(self, number: int) -> None:
        action = self.random.choice(ACTIONS)
        node = self.random.choice(self.cluster.names)
        other = self.random.choice([n for n in self.cluster.names if n != node])
        description = getattr(self, f"_{action}")(node, other)
        self.steps.append(f"{number}: {description}")
        self.log(f"chaos step {number}: {description}")
        self.check(description)

    def _kill(self, node: str, other: str) -> str:
        self.cluster.kill(node)
        time.sleep(self.random.uniform(0.5, 3.0))  # the fault's length is the attack itself
        self.cluster.restart(node)
        return f"kill -9 {node}, restart"

    def _pause(self, node: str, other: str) -> str:
        pid = self.cluster[node].process.pid
        length = self.random.uniform(LEASE_TTL + 0.5, LEASE_TTL * 2)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(length)
        finally:
            os.kill(pid, signal.SIGCONT)
        return f"SIGSTOP {node} for {length:.1f} s"

    def _links(self, node: str, other: str, how: Callable[[Any], None], length: float) -> None:
        proxies = [self.cluster.proxy(node, other), self.cluster.proxy(other, node)]
        for proxy in proxies:
            how(proxy)
        time.sleep(length)
        for proxy in proxies:
            proxy.heal()

    def _partition(self, node: str, other: str) -> str:
        length = self.random.uniform(1.0, 6.0)
        self._links(node, other, lambda p: p.drop(), length)
        return f"partition {node}|{other} for {length:.1f} s"

    def _cut(self, node: str, other: str) -> str:
        length = self.random.uniform(1.0, 4.0)
        self._links(node, other, lambda p: p.cut(), length)
        return f"cut {node}|{other} for {length:.1f} s"

    def _delay(self, node: str, other: str) -> str:
        lag = self.random.uniform(0.05, 0.5)
        self._links(node, other, lambda p: p.delay(lag), self.random.uniform(1.0, 3.0))
        return f"delay {node}<->{other} by {lag:.2f} s"

    def _alive(self) -> list[Client]:
        assert self.clients is not None
        with self.clients.lock:
            return [c for c in self.clients.clients.values() if c.alive]

    def _die(self, node: str, other: str) -> str:
        assert self.clients is not None
        victims = self.random.sample(self._alive(), k=min(3, len(self._alive())))
        with self.clients.lock:
            for client in victims:
                client.alive = False
        return f"clients of {[c.instance_id for c in victims]} stop"

    def _unregister(self, node: str, other: str) -> str:
        assert self.clients is not None
        victims = self.random.sample(self._alive(), k=min(2, len(self._alive())))
        for client in victims:
            self.clients.unregister(client)
        return f"unregister {[c.instance_id for c in victims]}"

    def _register(self, node: str, other: str) -> str:
        for _ in range(3):
            self._new_instance(node)
        return f"3 new instances at {node}"

    def _move(self, node: str, other: str) -> str:
        """Instances registered again with new data at another node than their home: the new
        data must win everywhere, whatever the skewed clocks say."""
        assert self.clients is not None
        movers = self.random.sample(self._alive(), k=min(3, len(self._alive())))
        for client in movers:
            with self.clients.lock:
                client.version += 1
                client.home = node
            self.clients.register(client, node)
        return f"{[c.instance_id for c in movers]} registered again with new URLs at {node}"

    # --- the checker --------------------------------------------------------------------

    def check(self, after: str) -> None:
        """Poll until every node serves exactly the live instances with their current data;
        dead ones must be gone within their lease plus the sweep."""
        assert self.clients is not None
        deadline = time.monotonic() + CONVERGE_DEADLINE
        while True:
            expected = self.clients.expected()
            seen = {name: served(self.cluster.url(name)) for name in self.cluster.names}
            if all(view == expected for view in seen.values()):
                return
            if time.monotonic() > deadline:
                raise ChaosFailure(self._report(after, expected, seen))
            time.sleep(0.25)

    def _report(self, after: str, expected: dict[str, str],
                seen: dict[str, dict[str, str] | str]) -> str:
        lines = [f"no convergence within {CONVERGE_DEADLINE} s after {after!r} "
                 f"(seed {self.seed}); steps so far:", *self.steps,
                 f"expected {len(expected)} instances"]
        for name, view in seen.items():
            if isinstance(view, str):
                lines.append(f"node {name}: {view}")
                continue
            missing = sorted(set(expected) - set(view))
            extra = sorted(set(view) - set(expected))
            stale = sorted(k for k in set(view) & set(expected) if view[k] != expected[k])
            lines.append(f"node {name}: missing {missing}, extra (dead) {extra}, "
                         f"stale data {[(k, view[k], expected[k]) for k in stale]}")
        return "\n".join(lines)


def run(steps: int, seed: int, workdir: Path, log: Callable[[str], None] = print) -> Chaos:
    chaos = Chaos(workdir, seed, log)
    with chaos.running():
        for number in range(1, steps + 1):
            chaos.step(number)
    return chaos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    print(f"chaos: seed {seed}, {args.steps} steps", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="artemis-chaos-") as workdir:
        try:
            run(args.steps, seed, Path(workdir))
        except ChaosFailure as exc:
            print(f"chaos: FAILED\n{exc}", flush=True)
            for log in sorted(Path(workdir).glob("node-*.log")):
                subprocess.run(["tail", "-n", "20", str(log)], check=False)
            sys.exit(1)
    print(f"chaos: {args.steps} steps converged in {time.monotonic() - started:.0f} s "
          f"(seed {seed})", flush=True)


if __name__ == "__main__":
    main()
