"""A real `artemis server` process on 127.0.0.1: HTTP over TCP, the Java SDK's habits on the
wire (§13), lease expiry on the real clock, and stopping on signals."""

from __future__ import annotations

import contextlib
import gzip
import json
import signal
import socket
import time
import zlib
from typing import Any

import httpx
import pytest

from tests.process.conftest import StartNode, poll
from tests.server.harness import checksum

SERVICE = "demo.service.v1"
SUCCESS = {"errorCode": "success", "message": "", "status": "success"}
OK_BODY = {"failedInstances": None, "responseStatus": SUCCESS}
INSTANCE = {"groupId": None, "healthCheckUrl": "http://10.0.0.5:8080/health",
            "instanceId": "10.0.0.5:8080", "ip": "10.0.0.5", "machineName": "web-5",
            "metadata": {"owner": "team-a"}, "port": 8080, "protocol": "http", "regionId": "SHA",
            "serviceId": SERVICE, "status": "up", "url": "http://10.0.0.5:8080/api",
            "zoneId": "zone-1"}
SWITCHED_OFF = {"enabled": False, "isSafe": True, "legacyEnabled": False, "legacyIsSafe": True,
                "responseStatus": SUCCESS}
LOOKUP = {"discoveryConfigs": [{"discoveryData": None, "regionId": None, "serviceId": SERVICE,
                                "zoneId": None}], "regionId": "SHA", "zoneId": "zone-1"}


def service(*instances: dict[str, Any]) -> dict[str, Any]:
    return {"instances": list(instances), "logicInstances": [], "metadata": None,
            "routeRules": [], "serviceId": SERVICE}


def lookup_answer(*instances: dict[str, Any]) -> dict[str, Any]:
    return {"responseStatus": SUCCESS, "services": [service(*instances)]}


def bad_request(message: str) -> dict[str, Any]:
    return {"failedInstances": None,
            "responseStatus": {"errorCode": "bad-request", "message": message, "status": "fail"}}


def jackson(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def sdk_request(port: int, path: str, body: Any) -> tuple[bytes, dict[str, str], bytes]:
    """Send `body` exactly as the Java SDK does (§13) over a raw socket: gzip, chunked,
    Content-Type and Accept twice. Returns (status line, headers, body) of the answer."""
    packed = gzip.compress(jackson(body))
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(packed[i:i + 100]), packed[i:i + 100])
                      for i in range(0, len(packed), 100)) + b"0\r\n\r\n"
    head = (f"POST {path} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\n"
            "Accept: application/json\r\n"
            "Content-Type: application/json\r\n"
            "Accept: application/json\r\n"
            "Content-Encoding: gzip\r\n"
            "Transfer-Encoding: chunked\r\n"
            "Connection: close\r\n"
            "User-Agent: Apache-HttpClient/4.5.2 (Java/1.8.0_152)\r\n"
            "\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + chunks)
        received = b""
        while data := sock.recv(65536):
            received += data
    raw_head, _, raw_body = received.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        raw_body = _dechunk(raw_body)
    return status_line, headers, raw_body


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out, data = out + data[:size], data[size + 2:]


def test_register_and_lookup_over_tcp(start_node: StartNode) -> None:
    """Over TCP: register answers success, lookup and service.json find it, /health counts it."""
    node = start_node()
    with node.client() as client:
        registered = client.post("/api/registry/register.json", json={"instances": [INSTANCE]})
        assert OK_BODY == registered.json()
        assert lookup_answer(INSTANCE) == client.post("/api/discovery/lookup.json",
                                                      json=LOOKUP).json()
        service_answer = client.get("/api/discovery/service.json",
                                    params={"serviceId": SERVICE}).json()
        health = client.get("/health")

    assert {"checksum": checksum(INSTANCE), "responseStatus": SUCCESS,
            "service": service(INSTANCE)} == service_answer
    assert (200, {"instances": 1, "status": "up"}) == (health.status_code, health.json())


def test_java_sdk_habits_on_the_wire(start_node: StartNode) -> None:
    """register.json and lookup.json sent gzip-compressed, chunked, with Content-Type and
    Accept each twice (the Java SDK's habits, §13) succeed."""
    node = start_node()

    registered = sdk_request(node.port, "/api/registry/register.json",
                             {"instances": [INSTANCE]})
    looked_up = sdk_request(node.port, "/api/discovery/lookup.json", LOOKUP)

    assert (b"HTTP/1.1 200 OK", "application/json", jackson(OK_BODY)) == (
        registered[0], registered[1]["content-type"], registered[2])
    assert (b"HTTP/1.1 200 OK", "application/json", jackson(lookup_answer(INSTANCE))) == (
        looked_up[0], looked_up[1]["content-type"], looked_up[2])


def test_lease_expires_without_heartbeats(start_node: StartNode) -> None:
    """With --lease-ttl 1 and self-preservation off, an instance that sends no heartbeat is
    gone after about a second (polled, with a deadline), and not before its TTL."""
    node = start_node("--lease-ttl", "1", "--no-self-preservation")
    with node.client() as client:
        started = time.monotonic()
        registered = client.post("/api/registry/register.json", json={"instances": [INSTANCE]})
        assert OK_BODY == registered.json()
        assert lookup_answer(INSTANCE) == client.post("/api/discovery/lookup.json",
                                                      json=LOOKUP).json()

        def gone() -> dict[str, Any] | None:
            answer = client.post("/api/discovery/lookup.json", json=LOOKUP).json()
            return answer if answer == lookup_answer() else None

        assert lookup_answer() == poll(gone, 5.0, "the instance expiring")
        elapsed = time.monotonic() - started
        heartbeat = client.post("/api/registry/heartbeat.json",
                                json={"instances": [INSTANCE]}).json()

    assert elapsed >= 1.0
    assert {"failedInstances": [{
        "errorCode": "data-not-found",
        "errorMessage": "sha/zone-1/demo.service.v1/10.0.0.5:8080: "
                        "Instance is not exising! Need re-register.",
        "instance": INSTANCE}],
        "responseStatus": {"errorCode": "partial_fail", "message": "", "status": "partial_fail"},
    } == heartbeat


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_process_with_exit_code_0(start_node: StartNode, signum: int) -> None:
    """SIGTERM (or SIGINT) makes the process exit 0 within the deadline; the port closes."""
    node = start_node()
    with node.client() as client:
        registered = client.post("/api/registry/register.json", json={"instances": [INSTANCE]})
        assert OK_BODY == registered.json()

    assert 0 == node.signal(signum)
    with pytest.raises(httpx.ConnectError), node.client() as client:
        client.get("/health")


def test_sigterm_exits_despite_a_stalled_client(start_node: StartNode) -> None:
    """A client stalled halfway through its request body does not keep the node alive:
    SIGTERM still ends the process, exit code 0, within 10 s (the grace given to requests in
    flight is bounded)."""
    node = start_node()
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as stalled:
        stalled.sendall(b"POST /api/registry/register.json HTTP/1.1\r\n"
                        b"Host: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
        with node.client() as client:  # answered after the stalled request was sent
            assert {"instances": 0, "status": "up"} == client.get("/health").json()

        code = node.signal(signal.SIGTERM, deadline=10.0)

    assert 0 == code


def test_bad_bodies_over_tcp(start_node: StartNode) -> None:
    """Through granian: oversized bodies (with and without Content-Length), a gzip bomb,
    broken gzip and malformed JSON each answer `bad-request`, and nothing gets registered."""
    node = start_node("--max-body-bytes", "2048")
    big = jackson({"instances": [{**INSTANCE, "machineName": "m" * 4096}]})
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = packer.compress(b'{"instances":[' + b" " * (1 << 20)) + packer.flush()

    def chunks() -> Any:
        yield from (big[i:i + 512] for i in range(0, len(big), 512))

    def post(content: Any, **headers: str) -> Any:
        with node.client() as client:  # one connection each (see the keep-alive test below)
            return client.post("/api/registry/register.json", content=content,
                               headers=headers).json()

    answers = [
        post(big),
        post(chunks()),
        post(bomb, **{"Content-Encoding": "gzip"}),
        post(b"{}", **{"Content-Encoding": "gzip"}),
        post(b'{"instances": ['),
    ]
    health = httpx.get(node.url + "/health", timeout=5.0).json()

    assert [
        bad_request("request body is larger than 2048 bytes"),
        bad_request("request body is larger than 2048 bytes"),
        bad_request("request body is larger than 2048 bytes once decompressed"),
        bad_request("request body is not valid gzip: Error -3 while decompressing data: "
                    "incorrect header check"),
        bad_request("request body: malformed JSON: Input data was truncated"),
    ] == answers
    assert {"instances": 0, "status": "up"} == health


def read_answer(sock: socket.socket) -> tuple[bytes, dict[str, str], bytes] | None:
    """One HTTP answer with a Content-Length from `sock`; None if the node hung up first."""
    received = b""
    try:
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            if not data:
                return None
            received += data
        raw_head, _, body = received.partition(b"\r\n\r\n")
        status_line, *lines = raw_head.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        while len(body) < int(headers["content-length"]):
            data = sock.recv(65536)
            if not data:
                return None
            body += data
    except ConnectionError:
        return None
    return status_line, headers, body


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_connection_usable_after_a_refused_body(start_node: StartNode, framing: str) -> None:
    """After refusing an oversized body unread, the node either says `Connection: close` or
    keeps serving the connection, every time (1000 tries): a keep-alive client (the SDK's pooled
    Apache HttpClient) never meets a silent hang-up on its next request."""
    node = start_node("--max-body-bytes", "2048")
    big = jackson({"instances": [{**INSTANCE, "machineName": "m" * 4096}]})
    if framing == "chunked":
        framed = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 512]), big[i:i + 512])
                          for i in range(0, len(big), 512)) + b"0\r\n\r\n"
        length = "Transfer-Encoding: chunked"
    else:
        framed, length = big, f"Content-Length: {len(big)}"
    first = (f"POST /api/registry/register.json HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n"
             f"Content-Type: application/json\r\n{length}\r\n"
             "Connection: Keep-Alive\r\nAccept-Encoding: gzip,deflate\r\n\r\n"
             ).encode() + framed
    second = (f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n"
              "Connection: close\r\n\r\n").encode()

    def attempt() -> tuple[bytes, bytes, str]:
        with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
            sock.sendall(first)
            refused = read_answer(sock)
            assert refused is not None
            if refused[1].get("connection", "").lower() == "close":
                return refused[0], refused[2], "close announced"
            with contextlib.suppress(ConnectionError):
                sock.sendall(second)
            then = read_answer(sock)
        fate = "hung up silently" if then is None else f"kept open: {then[0]!r}"
        return refused[0], refused[2], fate

    outcomes = [attempt() for _ in range(1000)]

    refusal = jackson(bad_request("request body is larger than 2048 bytes"))
    good = {(b"HTTP/1.1 200 OK", refusal, "close announced"),
            (b"HTTP/1.1 200 OK", refusal, "kept open: b'HTTP/1.1 200 OK'")}
    assert [] == [o for o in outcomes if o not in good]


def test_unknown_path_and_wrong_method_over_tcp(start_node: StartNode) -> None:
    """Through granian an unknown path is 404 and a wrong method 405 with Allow, JSON bodies."""
    node = start_node()
    with node.client() as client:
        missing = client.post("/api/registry/nope.json", json={})
        wrong = client.get("/api/registry/register.json")

    assert (404, {"responseStatus": {
        "errorCode": "bad-request", "message": "no endpoint at /api/registry/nope.json",
        "status": "fail"}}) == (missing.status_code, missing.json())
    assert (405, "OPTIONS, POST", {"responseStatus": {
        "errorCode": "bad-request",
        "message": "GET is not allowed on /api/registry/register.json; use OPTIONS, POST",
        "status": "fail"}}) == (wrong.status_code, wrong.headers["allow"], wrong.json())


def test_admin_switch_from_loopback_over_tcp(start_node: StartNode) -> None:
    """Without an admin token, a call from 127.0.0.1 over TCP may switch self-preservation."""
    node = start_node()
    with node.client() as client:
        answer = client.post("/api/admin/self-preservation.json", json={"enabled": False})

    assert SWITCHED_OFF == answer.json()


def test_admin_switch_needs_the_token_over_tcp(start_node: StartNode) -> None:
    """With --admin-token, even 127.0.0.1 needs `Authorization: Bearer <token>`."""
    node = start_node("--admin-token", "s3cret-s3cret-s3cret")
    path = "/api/admin/self-preservation.json"
    with node.client() as client:
        refused = client.post(path, json={"enabled": False}).json()
        allowed = client.post(path, json={"enabled": False},
                              headers={"Authorization": "Bearer s3cret-s3cret-s3cret"}).json()

    assert {"errorCode": "no-permission",
            "message": "this switch needs the admin bearer token (or, with no token "
                       "configured, a call from 127.0.0.1)",
            "status": "fail"} == refused["responseStatus"]
    assert SWITCHED_OFF == allowed


def test_context_path_over_tcp(start_node: StartNode) -> None:
    """With --context-path /artemis-web the node answers only under it and reports its URL
    with it (the URL the SDK will use)."""
    node = start_node(context_path="/artemis-web")
    with node.client() as client:
        nodes = client.post("/api/cluster/up-registry-nodes.json",
                            json={"regionId": "SHA", "zoneId": "zone-1"}).json()
    outside = httpx.get(f"http://127.0.0.1:{node.port}/api/status/node.json", timeout=5.0)

    assert {"nodes": [{"url": f"http://127.0.0.1:{node.port}/artemis-web",
                       "zone": {"metadata": None, "regionId": "SHA", "zoneId": "zone-1"}}],
            "responseStatus": SUCCESS} == nodes
    assert 404 == outside.status_code
