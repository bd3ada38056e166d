"""Hostile and careless connections against a real node (granian's RSGI face, as in production):
WebSocket upgrades on the wrong path, connections that never speak or dribble, oversized
headers, HTTP/2 nobody asked for, and a second node started on a port already served.

Each attack is one that took a node down or made it unreachable before; after each, the node
must answer, keep its registry, and count what it refused.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.process.conftest import RunningNode, StartNode, poll

SERVICE = "conn.service.v1"
INSTANCE = {"instanceId": "10.0.0.5:8080", "ip": "10.0.0.5", "port": 8080,
            "url": "http://10.0.0.5:8080/api", "regionId": "SHA", "zoneId": "zone-1",
            "serviceId": SERVICE, "status": "up"}
UPGRADE = ("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
           "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEADLINE = 30.0


def register(node: RunningNode) -> None:
    with node.client() as client:
        answer = client.post("/api/registry/register.json", json={"instances": [INSTANCE]})
    assert "success" == answer.json()["responseStatus"]["errorCode"]


def registered(node: RunningNode) -> int:
    with node.client() as client:
        return int(client.get("/health").json()["instances"])


def raw_exchange(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send `request` on a new connection; everything the node answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(65536):
                received += data
                if b"\r\n\r\n" in received and b"connection: close" not in received.lower():
                    break
        return received


@contextlib.contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` TCP connections to the node that send nothing; closed on exit."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        yield held
    finally:
        for sock in held:
            sock.close()


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the node has closed `sock` (reads EOF or a reset without waiting)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def health_answers(node: RunningNode) -> bool | None:
    try:
        answer = httpx.get(node.url + "/health", timeout=2.0)
    except httpx.TransportError:
        return None
    return True if answer.status_code == 200 else None


def metric(node: RunningNode, name: str) -> float:
    text = httpx.get(node.url + "/metrics", timeout=5.0).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert len(values) == 1, f"{name} not in /metrics"
    return values[0]


@pytest.mark.parametrize("path", ["/health", "/api/discovery/lookup.json", "/no/such/path",
                                  "/ws/no-such-socket"])
def test_websocket_upgrade_on_a_path_without_websocket_is_refused_and_node_lives(
        start_node: StartNode, path: str) -> None:
    """An upgrade to a path that serves no WebSocket answers 404; the process and its registry
    live on (it used to abort the whole process)."""
    node = start_node()
    register(node)

    for _ in range(3):
        answer = raw_exchange(node.port, UPGRADE.format(path=path).encode())
        assert answer.startswith(b"HTTP/1.1 404"), answer

    assert None is node.process.poll()
    assert 1 == registered(node)


def test_idle_connections_neither_block_the_node_nor_stay_open(start_node: StartNode) -> None:
    """1,100 connections that never send a byte leave the node reachable, and are closed after
    idle_timeout (they used to make it unreachable for as long as they were held)."""
    node = start_node("--idle-timeout", "2", "--max-connections-per-client", "0")
    register(node)

    with idle_connections(node.port, 1100) as held:
        assert True is poll(lambda: health_answers(node), DEADLINE, "health with idle sockets")
        assert 1 == registered(node)
        poll(lambda: all(closed_by_peer(s) for s in held) or None, DEADLINE,
             "every idle connection closed by the node")


def test_dribbling_connections_are_cut_at_the_idle_timeout(start_node: StartNode) -> None:
    """Connections that send their headers one byte at a time are closed after idle_timeout,
    whatever they still send; the node answers others meanwhile."""
    node = start_node("--idle-timeout", "2", "--max-connections-per-client", "0")
    with idle_connections(node.port, 200) as held:
        started = time.monotonic()
        request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
        position = 0
        while not all(closed_by_peer(s) for s in held):
            assert time.monotonic() - started < DEADLINE, "dribbling connections never closed"
            for sock in held:
                with contextlib.suppress(OSError):
                    sock.setblocking(True)
                    sock.send(request[position:position + 1])
            position += 1
            assert True is health_answers(node)
            time.sleep(0.2)
    assert None is node.process.poll()


def test_connections_over_the_per_client_limit_are_closed_and_counted(
        start_node: StartNode) -> None:
    """One address holding more than max_connections_per_client keeps only that many; the
    rest are closed and counted in /metrics, and the node keeps answering."""
    node = start_node("--max-connections-per-client", "40", "--connection-check-interval",
                      "0.2", "--idle-timeout", "600")
    with idle_connections(node.port, 300) as held:
        poll(lambda: sum(closed_by_peer(s) for s in held) >= 260 or None, DEADLINE,
             "connections above the limit closed")
        assert True is health_answers(node)
        assert metric(node, "artemis_connections_closed_over_limit_total") >= 260
        # at most the limit stays open (the test's own probes count against it too)
        assert 30 <= sum(not closed_by_peer(s) for s in held) <= 40


def test_oversized_headers_are_refused_without_harm(start_node: StartNode) -> None:
    """A request whose headers exceed max_header_bytes is refused (431 or a close), and the
    node answers the next request."""
    node = start_node("--max-header-bytes", "16384")
    register(node)
    huge = (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 200_000
            + b"\r\n\r\n")
    with contextlib.suppress(OSError):
        answer = raw_exchange(node.port, huge)
        assert b"HTTP/1.1 200" not in answer
    assert True is health_answers(node)
    assert 1 == registered(node)


def test_http2_is_off_unless_asked_for(start_node: StartNode) -> None:
    """By default the node speaks HTTP/1.1 only: an HTTP/2 cleartext (prior knowledge)
    connection gets no HTTP/2 answer; with --http2 it gets the server's SETTINGS frame."""
    settings_frame = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # empty SETTINGS, stream 0

    def first_frame_type(node: RunningNode) -> int | None:
        with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
            sock.sendall(H2_PREFACE + settings_frame)
            with contextlib.suppress(OSError):
                head = sock.recv(9)
                return head[3] if len(head) >= 4 and not head.startswith(b"HTTP/") else None
        return None

    node = start_node()
    assert None is first_frame_type(node)
    assert True is health_answers(node)

    both = start_node("--http2")
    assert 4 == first_frame_type(both)  # SETTINGS
    assert True is health_answers(both)


def test_a_second_node_on_a_served_port_refuses_to_start(start_node: StartNode) -> None:
    """A node started on a port another node serves exits 1 naming the address; the first
    node alone answers, with its registry intact (they used to share the port)."""
    node = start_node()
    register(node)
    second = subprocess.run(
        [sys.executable, "-m", "artemis", "server", "--port", str(node.port),
         "--region", "SHA", "--zone", "zone-1"],
        capture_output=True, text=True, timeout=60, check=False)

    assert 1 == second.returncode
    assert f"127.0.0.1:{node.port} is already in use" in second.stderr
    assert [1] * 20 == [registered(node) for _ in range(20)]
