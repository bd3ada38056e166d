"""SIGTERM on a real `artemis server`: WebSocket sessions are closed, new connections refused,
requests in flight answered in full (within shutdown_timeout), then the process exits 0.

A request is "in flight" here when the node has read its head and part of its body (seen in
the node's socket receive queue, /proc/net/tcp) and waits for the rest, which the client sends
only after SIGTERM: the node cannot have finished it before the signal.

Spans still buffered are exported at the end: a small OTLP/HTTP collector here receives them."""

from __future__ import annotations

import contextlib
import gzip
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.process.conftest import RunningNode, StartNode, poll

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets"),
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp"),
]

SERVICE = "demo.service.v1"
SUCCESS = {"failedInstances": None,
           "responseStatus": {"errorCode": "success", "message": "", "status": "success"}}
DEADLINE = 5.0
CUT = ("HTTP/1.1 500 Internal Server Error", b"")


def instance(i: int) -> dict[str, Any]:
    return {"instanceId": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:8080",
            "ip": "10.0.0.1", "port": 8080, "regionId": "SHA", "serviceId": SERVICE,
            "status": "up", "url": f"http://10.0.0.1:8080/{i}", "zoneId": "zone-1"}


def register_request(port: int, *instances: dict[str, Any]) -> tuple[bytes, bytes]:
    """A register.json request split in two: head and half the body, then the other half."""
    body = json.dumps({"instances": list(instances)}).encode()
    head = (f"POST /api/registry/register.json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    half = len(body) // 2
    return head + body[:half], body[half:]


def unread_bytes(node_port: int, client_port: int) -> int | None:
    """Bytes the node has not read yet from the connection with `client_port`, as the kernel
    counts them (None if the connection is not listed)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if (int(local.split(":")[1], 16) == node_port
                and int(remote.split(":")[1], 16) == client_port):
            return int(queues.split(":")[1], 16)
    return None


def read_answer(sock: socket.socket) -> tuple[str, bytes] | None:
    """(status line, body) of one answer with a Content-Length; None if the node closed the
    connection before sending anything; fails on an answer cut short."""
    received = b""
    while b"\r\n\r\n" not in received:
        data = sock.recv(65536)
        if not data:
            assert b"" == received, f"an answer cut short: {received!r}"
            return None
        received += data
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (h.partition(":") for h in lines[1:])
                  if k.strip().lower() == "content-length")
    while len(body) < length:
        data = sock.recv(65536)
        assert data, f"an answer cut short: {head!r} {len(body)} of {length} bytes"
        body += data
    return lines[0], body


@pytest.fixture
def in_flight(start_node: StartNode) -> Iterator[tuple[RunningNode, list[Any]]]:
    """A node (JSON logs, 30 s grace) with four register requests it is reading: three small
    and one of 2,000 instances, each waiting for the second half of its body."""
    node = start_node("--shutdown-timeout", "30", "--log-format", "json")
    batches = [[instance(1)], [instance(2)], [instance(3)],
               [instance(i) for i in range(100, 2100)]]
    pending = []
    for batch in batches:
        sock = socket.create_connection(("127.0.0.1", node.port), timeout=DEADLINE)
        first, rest = register_request(node.port, *batch)
        sock.sendall(first)
        client_port = sock.getsockname()[1]
        poll(lambda p=client_port: unread_bytes(node.port, p) == 0 or None, DEADLINE,
             "the node reading the first half of a request")
        pending.append((sock, rest))
    yield node, pending
    for sock, _ in pending:
        sock.close()


def open_sessions(node: RunningNode, stack: contextlib.ExitStack) -> list[ClientConnection]:
    """A push subscription (shown to work: it gets the `new` of a registration) and a
    heartbeat session."""
    base = node.url.replace("http://", "ws://")
    push = stack.enter_context(connect(base + "/ws/discovery/instance-change",
                                       open_timeout=DEADLINE))
    push.send(json.dumps({"serviceId": SERVICE}))
    with node.client() as client:
        client.post("/api/registry/register.json", json={"instances": [instance(9)]})
    assert "new" == json.loads(push.recv(timeout=DEADLINE))["changeType"]
    heartbeat = stack.enter_context(connect(base + "/ws/registry/heartbeat",
                                            open_timeout=DEADLINE))
    return [push, heartbeat]


def closed(ws: ClientConnection) -> str | None:
    """How `ws` ended: "close handshake" (the node sent a close frame) or "dropped"; None
    while it is open."""
    try:
        ws.recv(timeout=0.05)
    except TimeoutError:
        return None
    except ConnectionClosed as exc:
        return "close handshake" if exc.rcvd is not None else "dropped"
    return None  # a frame still queued: read on


def refused(port: int) -> list[str]:
    """Connect until the node refuses; what each connection accepted meanwhile got (a whole
    answer or a closed connection, never part of an answer)."""
    seen: list[str] = []

    def attempt() -> bool | None:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        except ConnectionRefusedError:
            return True
        with sock:
            try:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Connection: close\r\n\r\n")
                answer = read_answer(sock)
            except ConnectionResetError:
                answer = None
        seen.append("closed" if answer is None else answer[0])
        return None

    poll(attempt, DEADLINE, "the node refusing new connections")
    return seen


def test_sigterm_closes_websockets_refuses_new_requests_and_finishes_those_in_flight(
        in_flight: tuple[RunningNode, list[Any]]) -> None:
    """After SIGTERM: both WebSocket sessions are closed by the node (a close frame, not a
    dropped connection) and new connections are refused while four requests are still in
    flight; each of those then gets its whole success answer
    and the process exits 0."""
    node, pending = in_flight
    with contextlib.ExitStack() as stack:
        sessions = open_sessions(node, stack)
        node.process.send_signal(signal.SIGTERM)
        sessions_closed = [poll(lambda ws=ws: closed(ws), DEADLINE, "a WebSocket closing")
                           for ws in sessions]
    meanwhile = refused(node.port)
    alive = node.process.poll() is None
    for sock, rest in pending:
        sock.sendall(rest)
    answers = [read_answer(sock) for sock, _ in pending]
    code = node.process.wait(timeout=DEADLINE)

    assert (["close handshake"] * 2, True) == (sessions_closed, alive)
    assert [] == [s for s in meanwhile if s not in ("closed", "HTTP/1.1 200 OK")]
    assert [("HTTP/1.1 200 OK", SUCCESS)] * 4 == [
        (a[0], json.loads(a[1])) if a is not None else None for a in answers]
    assert 0 == code


def test_shutdown_is_logged_in_order_as_json_lines(start_node: StartNode) -> None:
    """With --log-format json every line, granian's included, is one JSON object; the stop is
    logged in its order: stopping, granian shutting down, stopped."""
    node = start_node("--log-format", "json")
    code = node.signal(signal.SIGTERM)
    lines = [json.loads(line) for line in node.output().splitlines()]

    assert 0 == code
    assert {("time", "level", "logger", "message")} == {tuple(line) for line in lines}
    assert {"artemis.server", "_granian"} <= {line["logger"] for line in lines}
    stop = [line["message"] for line in lines
            if line["message"].startswith(("stopping", "Shutting down", "artemis node"))]
    assert [f"artemis node {node.url} serving on 127.0.0.1:{node.port} (region SHA, zone zone-1)",
            "stopping: closing WebSocket sessions, no new connections, finishing requests",
            "Shutting down granian",
            f"artemis node {node.url} stopped"] == stop


def test_requests_still_in_flight_after_the_grace_are_cut(start_node: StartNode) -> None:
    """A request whose body never comes is cut shutdown_timeout after SIGTERM: granian answers
    it 500 with no body (or closes it), never with part of an answer; the process still exits
    0 and says so in its log."""
    node = start_node("--shutdown-timeout", "0.3")
    with socket.create_connection(("127.0.0.1", node.port), timeout=DEADLINE) as stalled:
        first, _ = register_request(node.port, instance(1))
        stalled.sendall(first)
        client_port = stalled.getsockname()[1]
        poll(lambda: unread_bytes(node.port, client_port) == 0 or None, DEADLINE,
             "the node reading the first half of a request")
        started = time.monotonic()
        code = node.signal(signal.SIGTERM)
        waited = time.monotonic() - started
        try:
            answer = read_answer(stalled)
        except ConnectionResetError:
            answer = None

    assert (0, True, True) == (code, answer in (None, CUT), 0.3 <= waited < DEADLINE)
    assert "requests still in flight after 0.3s: closing them" in node.output()


class _Collector(BaseHTTPRequestHandler):
    """Keeps each OTLP/HTTP export it is sent (in the server's `received`)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.received.append((self.path, body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """An OTLP/HTTP collector on 127.0.0.1: its URL, and the (path, body) of every export."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.received  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join()


def test_buffered_spans_are_exported_at_shutdown(
        start_node: StartNode, collector: tuple[str, list[tuple[str, bytes]]]) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT set the node traces requests (every one at
    OTEL_TRACES_SAMPLER_ARG=1; a sampled traceparent is continued); its spans, held in a batch
    meant to leave a minute later, are exported when SIGTERM stops it."""
    url, received = collector
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    node = start_node(extra_env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_TRACES_SAMPLER_ARG": "1",
        "OTEL_SERVICE_NAME": "artemis-test", "OTEL_BSP_SCHEDULE_DELAY": "60000"})
    with node.client() as client:
        client.get("/api/status/node.json", headers={"traceparent": parent})
    before = len(received)
    code = node.signal(signal.SIGTERM)
    spans = {}
    for path, body in received:
        assert "/v1/traces" == path
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                spans.update({span.name: (service["service.name"], span.trace_id.hex(),
                                          span.parent_span_id.hex()) for span in scope.spans})

    assert (0, 0) == (before, code)
    assert ("artemis-test", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331") == spans[
        "GET /api/status/node.json"]
    assert "GET /health" in spans  # the fixture's readiness polls, traced too
