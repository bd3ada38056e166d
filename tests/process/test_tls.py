"""A real `artemis server` with --tls-cert/--tls-key: HTTPS and WSS on its one port, for raw
clients and for artemis.client, with a self-signed certificate for 127.0.0.1 made by openssl."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from artemis.client import DiscoveryClient, Instance, NetworkTransport, RegistryClient
from artemis.client.errors import TransportError
from tests.process.conftest import RunningNode, StartNode, free_port

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]

SERVICE = "demo.service.v1"
SUCCESS = {"errorCode": "success", "message": "", "status": "success"}
DEADLINE = 5.0


def instance(i: int) -> dict[str, Any]:
    return {"groupId": None, "healthCheckUrl": None, "instanceId": f"10.0.0.{i}:8080",
            "ip": f"10.0.0.{i}", "machineName": None, "metadata": None, "port": 8080,
            "protocol": "http", "regionId": "SHA", "serviceId": SERVICE, "status": "up",
            "url": f"http://10.0.0.{i}:8080/api", "zoneId": "zone-1"}


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for IP 127.0.0.1 and its key (PEM files)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.fixture
def tls_node(start_node: StartNode, certificate: tuple[Path, Path]) -> RunningNode:
    cert, key = certificate
    return start_node("--tls-cert", str(cert), "--tls-key", str(key),
                      scheme="https", verify=str(cert))


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def test_register_and_lookup_over_https(tls_node: RunningNode) -> None:
    """Over HTTPS: register succeeds, lookup finds the instance, and the node gives clients its
    https:// URL."""
    lookup = {"discoveryConfigs": [{"serviceId": SERVICE}], "regionId": "SHA"}
    with tls_node.client() as client:
        registered = client.post("/api/registry/register.json",
                                 json={"instances": [instance(1)]}).json()
        found = client.post("/api/discovery/lookup.json", json=lookup).json()
        nodes = client.post("/api/cluster/up-registry-nodes.json",
                            json={"regionId": "SHA", "zoneId": "zone-1"}).json()

    assert {"failedInstances": None, "responseStatus": SUCCESS} == registered
    assert [instance(1)] == found["services"][0]["instances"]
    assert [f"https://127.0.0.1:{tls_node.port}"] == [n["url"] for n in nodes["nodes"]]


async def test_push_over_wss(tls_node: RunningNode, certificate: tuple[Path, Path]) -> None:
    """A push subscription over wss:// receives the `new` of a registration."""
    url = f"wss://127.0.0.1:{tls_node.port}/ws/discovery/instance-change"
    async with websockets.connect(url, ssl=trusting(certificate[0])) as ws:
        await ws.send(json.dumps({"serviceId": SERVICE}))
        async with httpx.AsyncClient(base_url=tls_node.url, verify=tls_node.verify) as client:
            await client.post("/api/registry/register.json", json={"instances": [instance(2)]})
        frame = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))

    assert ("new", instance(2)) == (frame["changeType"], frame["instance"])


async def test_clients_over_https_and_wss(tls_node: RunningNode,
                                          certificate: tuple[Path, Path]) -> None:
    """RegistryClient and DiscoveryClient with NetworkTransport(verify=<CA file>) register,
    look up, and get a later registration by push over wss:// (their poll interval is far
    longer than the wait)."""
    cert = str(certificate[0])
    first = Instance(service_id=SERVICE, instance_id="a", url="http://a.example:8080/api")
    second = Instance(service_id=SERVICE, instance_id="b", url="http://b.example:8080/api")
    transports = [NetworkTransport(verify=cert), NetworkTransport(verify=cert)]
    async with (
        RegistryClient(tls_node.url, region="SHA", transport=transports[0]) as registry,
        DiscoveryClient(tls_node.url, region="SHA", poll_interval=600,
                        transport=transports[1]) as discovery,
    ):
        await registry.register(first)
        looked_up = [i.instance_id for i in await discovery.instances(SERVICE)]
        await registry.register(second)
        end = time.monotonic() + DEADLINE
        while cached_ids(discovery) != ["a", "b"] and time.monotonic() < end:
            await asyncio.sleep(0.02)
        pushed = cached_ids(discovery)
        connected = discovery.push_connected
    for transport in transports:  # a client closes only a transport it made itself
        await transport.aclose()

    assert (["a"], ["a", "b"], True) == (looked_up, pushed, connected)


def cached_ids(discovery: DiscoveryClient) -> list[str]:
    service = discovery.cached(SERVICE)
    return sorted(i.instance_id or "" for i in (service.instances or ())) if service else []


async def test_an_untrusted_certificate_is_refused(tls_node: RunningNode) -> None:
    """A client that does not trust the node's certificate cannot talk to it: NetworkTransport
    without `verify` raises the client's TransportError, for HTTPS and for WSS."""
    transport = NetworkTransport()
    try:
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await transport.post(tls_node.url, "/api/discovery/services.json", b"{}")
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await transport.connect(tls_node.url, "/ws/discovery/instance-change")
    finally:
        await transport.aclose()


def test_plain_http_on_the_tls_port_fails_cleanly(tls_node: RunningNode) -> None:
    """Plain HTTP to the TLS port gets no HTTP answer (a TLS alert, then the connection is
    closed); the node goes on serving HTTPS."""
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{tls_node.port}/health", timeout=DEADLINE)
    with socket.create_connection(("127.0.0.1", tls_node.port), timeout=DEADLINE) as raw:
        raw.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while data := raw.recv(65536):
            received += data
    with tls_node.client() as client:
        health = client.get("/health")

    assert (False, None) == (received.startswith(b"HTTP/"), tls_node.process.poll())
    assert (200, {"instances": 0, "status": "up"}) == (health.status_code, health.json())


def test_a_missing_or_broken_certificate_stops_the_start(certificate: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    """A certificate file that does not exist, or a key given as the certificate, ends
    `artemis server` at once with exit code 1 and one line naming both files and the reason."""
    key = certificate[1]
    outcomes = []
    for given in (tmp_path / "missing.pem", key):
        port = free_port()
        done = subprocess.run([sys.executable, "-m", "artemis", "server", "--port", str(port),
                               "--tls-cert", str(given), "--tls-key", str(key)],
                              capture_output=True, text=True, timeout=30, check=False)
        prefix = (f"artemis: cannot serve on 127.0.0.1:{port}: "
                  f"cannot load TLS certificate {given} with key {key}: ")
        outcomes.append((done.returncode, done.stderr.removeprefix(prefix).strip()))

    assert [(1, "No such file or directory"), (1, True)] == [
        outcomes[0], (outcomes[1][0], outcomes[1][1].startswith("[SSL]"))]


@pytest.mark.parametrize(("minimum", "expected"), [("1.2", "TLSv1.2"), ("1.3", None)])
def test_tls_min_version(start_node: StartNode, certificate: tuple[Path, Path], minimum: str,
                         expected: str | None) -> None:
    """A client limited to TLS 1.2 connects by default and is refused with --tls-min-version
    1.3."""
    cert, key = certificate
    node = start_node("--tls-cert", str(cert), "--tls-key", str(key), "--tls-min-version",
                      minimum, scheme="https", verify=str(cert))
    context = trusting(cert)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        with socket.create_connection(("127.0.0.1", node.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            version: str | None = tls.version()
    except ssl.SSLError:
        version = None
    assert expected == version
