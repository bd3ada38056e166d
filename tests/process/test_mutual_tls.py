"""Mutual TLS (`--tls-ca`): two real nodes on HTTPS that ask every connection for a certificate
signed by the operator's authority, and reach each other with their own certificates.

The authority, the nodes' certificate and the clients' certificates are made by openssl; a
second authority signs an impostor's certificate."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.process.conftest import START_DEADLINE, RunningNode, free_port, poll

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="needs the openssl command")

SECRET = "mtls-cluster-secret-0123456789"  # noqa: S105 - a test secret
SERVICE = "mtls.service"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def authority(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}-ca.pem", folder / f"{name}-ca.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "1", "-subj", f"/CN={name} authority", "-keyout", str(key),
             "-out", str(cert), "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def signed(folder: Path, name: str, ca: tuple[Path, Path], usage: str) -> tuple[Path, Path]:
    """A certificate for IP 127.0.0.1 with extended key usage `usage`, signed by `ca`."""
    cert, key, request = (folder / f"{name}.pem", folder / f"{name}.key",
                          folder / f"{name}.csr")
    extensions = folder / f"{name}.ext"
    extensions.write_text(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(request))
    _openssl("x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-days", "1", "-extfile", str(extensions), "-out", str(cert))
    return cert, key


def context(ca: Path, certificate: tuple[Path, Path] | None) -> ssl.SSLContext:
    trust = ssl.create_default_context(cafile=str(ca))
    if certificate is not None:
        trust.load_cert_chain(*certificate)
    return trust


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = authority(tmp_path, "cluster")
    other = authority(tmp_path, "other")
    return {"ca": ca[0],
            "node": signed(tmp_path, "node", ca, "serverAuth,clientAuth"),
            "client": signed(tmp_path, "client", ca, "clientAuth"),
            "impostor": signed(tmp_path, "impostor", other, "clientAuth")}


@pytest.fixture
def pair(tmp_path: Path, pki: dict[str, Any]) -> Any:
    """Two nodes, peers of each other, under mutual TLS; yields them once both are up."""
    ports = [free_port(), free_port()]
    urls = [f"https://127.0.0.1:{port}" for port in ports]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTEMIS_")}
    trust = context(pki["ca"], pki["client"])
    nodes = []
    for port, url in zip(ports, urls, strict=True):
        log = tmp_path / f"node-{port}.log"
        command = [sys.executable, "-m", "artemis", "server", "--port", str(port),
                   "--region", "SHA", "--zone", "zone-1", "--url", url,
                   "--peers", "zone-1:" + ",".join(urls), "--cluster-secret", SECRET,
                   "--tls-cert", str(pki["node"][0]), "--tls-key", str(pki["node"][1]),
                   "--tls-ca", str(pki["ca"])]
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        nodes.append(RunningNode(process, port, "", log, "https", trust))
    try:
        for node in nodes:
            poll(lambda node=node: _up(node), START_DEADLINE, f"{node.url} up with its peer")
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def _up(node: RunningNode) -> bool | None:
    if node.process.poll() is not None:
        pytest.fail(f"the node exited with {node.process.returncode}:\n{node.output()}")
    try:
        with node.client() as client:
            return True if client.get("/health").status_code == 200 else None
    except httpx.TransportError:
        return None


def instance(i: int) -> dict[str, Any]:
    return {"instanceId": f"10.0.0.{i}:8080", "ip": f"10.0.0.{i}", "port": 8080,
            "protocol": "http", "regionId": "SHA", "serviceId": SERVICE, "status": "up",
            "url": f"http://10.0.0.{i}:8080/", "zoneId": "zone-1"}


def ids(node: RunningNode) -> list[str] | None:
    with node.client() as client:
        answer = client.post("/api/discovery/service.json",
                             json={"discoveryConfig": {"serviceId": SERVICE}}).json()
    service = answer.get("service") or {}
    return sorted(i["instanceId"] for i in service.get("instances") or []) or None


def refused(node: RunningNode, trust: ssl.SSLContext) -> str:
    """How a call with `trust` ends: 'answered', or the kind of error that ended it."""
    try:
        httpx.get(node.url + "/health", verify=trust, timeout=5.0)
    except (httpx.TransportError, ssl.SSLError) as exc:
        return type(exc).__name__
    return "answered"


def test_peers_replicate_over_mutual_tls_and_strangers_are_refused(
        pair: list[RunningNode], pki: dict[str, Any]) -> None:
    a, b = pair
    with a.client() as client:
        status = client.post("/api/registry/register.json",
                             json={"instances": [instance(1)]}).json()["responseStatus"]
    assert "success" == status["errorCode"]
    # written on A with a client certificate, replicated to B over the peers' own mutual TLS
    assert ["10.0.0.1:8080"] == poll(lambda: ids(b), START_DEADLINE, "the instance on B")

    no_certificate = refused(a, context(pki["ca"], None))
    impostor = refused(a, context(pki["ca"], pki["impostor"]))
    assert "answered" not in (no_certificate, impostor), (no_certificate, impostor)
    # nothing the strangers did reached the registry; the nodes still serve certified clients
    assert (["10.0.0.1:8080"], ["10.0.0.1:8080"]) == (ids(a), ids(b))


def test_mutual_tls_needs_the_nodes_own_certificate(tmp_path: Path, pki: dict[str, Any]) -> None:
    """--tls-ca without --tls-cert is refused at start, naming the setting."""
    result = subprocess.run(
        [sys.executable, "-m", "artemis", "server", "--port", str(free_port()),
         "--tls-ca", str(pki["ca"])], capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("ARTEMIS_")})
    assert (2, True) == (result.returncode, "tls_ca" in result.stderr), result.stderr
