"""The real py-eureka-client (unmodified, in processes of its own) against a real `artemis server`:
it registers an app, renews it, discovers other apps and calls them (tiny HTTP servers of the
test on 127.0.0.1, one registered through Eureka, one through the Artemis Python client), and
unregisters on stop; the Artemis Python client finds the Eureka app. Waits poll with a
deadline."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from artemis.client import Instance, SyncDiscoveryClient, SyncRegistryClient
from tests.process.conftest import RunningNode, StartNode, free_port, poll

DEADLINE = 20.0
APP_SCRIPT = Path(__file__).with_name("eureka_app.py")
STATUS_LIMITS = "status=100000,status.get-leases=100000"


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{self.server.greeting} at {self.path}".encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def tiny_server(greeting: str) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 answering every GET with `greeting`; yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.greeting = greeting  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class EurekaApp:
    """One eureka_app.py process: a service using py-eureka-client."""

    def __init__(self, node: RunningNode, app: str, port: int, *, discover: bool) -> None:
        command = [sys.executable, str(APP_SCRIPT), node.url + "/eureka/", app, str(port)]
        self.process = subprocess.Popen(command + (["--discover"] if discover else []),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, prefix: str) -> str:
        """The next line starting with `prefix` (its log lines are kept in `seen`)."""
        while True:
            try:
                line = self.lines.get(timeout=DEADLINE)
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} line within {DEADLINE} s: "
                                     f"{self.seen[-20:]}") from None
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def call(self, app: str, path: str) -> str:
        self.send(f"call {app} {path}")
        return self.expect(("ok", "error"))  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.send("stop")
            self.expect("stopped")
            self.process.wait(timeout=DEADLINE)

    def kill(self) -> None:
        """End the process if it still runs, and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=DEADLINE)
        self.reader.join(DEADLINE)  # it ends at the end of the output
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def eureka_app(node: RunningNode, path: str) -> dict[str, Any] | None:
    """GET /eureka/apps/... as JSON; None when 404."""
    response = httpx.get(f"{node.url}/eureka/apps/{path}",
                         headers={"accept": "application/json"}, timeout=5.0)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def lease_of(node: RunningNode, service_id: str) -> dict[str, Any] | None:
    answer = httpx.get(f"{node.url}/api/status/leases.json", params={"appIds": service_id},
                       timeout=5.0).json()
    leases = answer["leases"].get(service_id.lower()) or answer["leases"].get(service_id)
    return leases[0] if leases else None


def test_py_eureka_client_registers_renews_discovers_calls_and_unregisters(
        start_node: StartNode) -> None:
    """The whole life of a py-eureka-client service on this registry."""
    node = start_node("--rate-limits", STATUS_LIMITS)
    apps: list[EurekaApp] = []
    with tiny_server("billing says hi") as billing_port, \
            tiny_server("inventory says hi") as inventory_port:
        try:
            billing = EurekaApp(node, "billing", billing_port, discover=False)
            apps.append(billing)
            billing.expect("started")
            with SyncRegistryClient(node.url, region="SHA", zone="zone-1",
                                    heartbeat_interval=1.0) as registry:
                registry.register(Instance(
                    service_id="inventory", instance_id=f"127.0.0.1:{inventory_port}",
                    ip="127.0.0.1", port=inventory_port, region_id="SHA", zone_id="zone-1",
                    url=f"http://127.0.0.1:{inventory_port}"))
                poll(lambda: eureka_app(node, "BILLING"), DEADLINE, "BILLING registered")
                orders = EurekaApp(node, "orders", free_port(), discover=True)
                apps.append(orders)
                orders.expect("started")

                # registered: seen through Eureka and by the Artemis Python client
                registered = poll(lambda: eureka_app(node, "ORDERS"), DEADLINE, "ORDERS")
                shown = registered["application"]["instance"][0]
                with SyncDiscoveryClient(node.url, region="SHA", zone="zone-1") as discovery:
                    found = discovery.get_service("orders").instances
                # renewed: the 4 s lease the client stated, renewed since its registration
                lease = poll(lambda: (lease if (lease := lease_of(node, "ORDERS")) is not None
                                      and lease["renewalTime"] != lease["creationTime"]
                                      else None), DEADLINE, "a renewal of ORDERS")
                # discovers and calls an app of each kind, through its own balancing
                called = [poll(lambda app=app: (line if (line := orders.call(app, "/hello"))
                                                .startswith("ok") else None),
                               DEADLINE, f"a call of {app}")
                          for app in ("BILLING", "INVENTORY")]

                orders.stop()
                gone = poll(lambda: eureka_app(node, "ORDERS") is None or None, DEADLINE,
                            "ORDERS gone")
                with SyncDiscoveryClient(node.url, region="SHA", zone="zone-1") as discovery:
                    after = discovery.get_service("orders").instances
                runtime = httpx.get(f"{node.url}/api/status/runtime.json", timeout=5.0).json()
        finally:
            for app in apps:
                app.kill()

    assert ("UP", "127.0.0.1", {"management.port": shown["metadata"]["management.port"],
                                "zone": "zone-1", "team": "tests"}) == (
        shown["status"], shown["ipAddr"], shown["metadata"])
    assert [("ORDERS", "127.0.0.1", "up")] == [(i.service_id, i.ip, i.status) for i in found]
    assert 4000 == lease["ttl"]  # ms
    assert ["ok billing says hi at /hello", "ok inventory says hi at /hello"] == called
    assert (True, [], 0) == (gone, after, runtime["evictedTotal"])  # cancelled, not expired
