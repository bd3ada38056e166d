"""Prometheus HTTP service discovery: the answer's format, labels and filter in process, and the
real Prometheus server (Debian's `prometheus`) reading it with the configuration docs/
prometheus.md documents: registered instances appear as targets and leave when they expire."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.eureka.harness import info, register
from tests.process.conftest import StartNode, free_port, poll
from tests.server.conftest import MakeApi
from tests.server.harness import Api, instance

SD = "/api/discovery/prometheus-sd.json"
DOC = Path(__file__).resolve().parents[2] / "docs" / "prometheus.md"
DEADLINE = 30.0


def group(address: str, **labels: str) -> dict[str, Any]:
    return {"targets": [address], "labels": {f"__meta_artemis_{k}": v for k, v in labels.items()}}


async def targets(api: Api, **params: str) -> Any:
    response = await api.client.get(SD, params=params)
    assert (200, "application/json") == (response.status_code, response.headers["content-type"])
    return response.json()


async def test_every_instance_is_a_target_with_its_labels(api: Api) -> None:
    """One group per instance: ip:port, service, ids, region, zone, url, status, and metadata
    with sanitized names (not the Eureka mapping's keys)."""
    await api.register(instance(metadata={"owner": "team-a", "metrics.path": "/m"}),
                       instance("10.0.0.6:9090", port=9090, groupId="canary", metadata=None))
    await register(api, info(metadata={"team": "orders"}))

    assert [
        group("10.0.0.5:8080", service="demo.service.v1", instance_id="10.0.0.5:8080",
              region="SHA", zone="zone-1", url="http://10.0.0.5:8080/api", status="up",
              metadata_metrics_path="/m", metadata_owner="team-a"),
        group("10.0.0.6:9090", service="demo.service.v1", instance_id="10.0.0.6:9090",
              region="SHA", zone="zone-1", url="http://10.0.0.6:9090/api", group="canary",
              status="up"),
        group("10.0.0.5:8080", service="ORDERS", instance_id="web-1:orders:8080",
              region="SHA", zone="zone-1", url="http://10.0.0.5:8080", status="up",
              metadata_team="orders"),
    ] == await targets(api)


async def test_the_service_parameter_narrows_the_answer(api: Api) -> None:
    """`service` (comma-separated or repeated, any case) keeps those services; unknown ones add
    nothing."""
    await api.register(instance(), instance("10.0.0.9:80", serviceId="other"))

    assert [["10.0.0.5:8080"], ["10.0.0.5:8080", "10.0.0.9:8080"], []] == [
        [g["targets"][0] for g in await targets(api, service=s)]
        for s in ("DEMO.SERVICE.V1", "demo.service.v1,other,nobody", "nobody")]


async def test_an_address_comes_from_the_url_when_the_instance_has_none(api: Api) -> None:
    """No ip nor port: the url's host and port, else the scheme's port."""
    await api.register(instance("a", ip=None, port=0, url="https://api.example/x"),
                       instance("b", ip=None, port=0, url="http://[fd00::7]:81/"))

    assert ["api.example:443", "[fd00::7]:81"] == [g["targets"][0] for g in await targets(api)]


async def test_refusals_are_not_200(make_api: MakeApi) -> None:
    """Over the discovery limit 429, a node not serving 503: Prometheus keeps its targets."""
    limited = await make_api(rate_limits_per_client={"discovery": 1})
    starting = await make_api(up=False)

    assert [200, 429, 503] == [(await limited.client.get(SD)).status_code,
                               (await limited.client.get(SD)).status_code,
                               (await starting.client.get(SD)).status_code]


def documented_config(node_url: str) -> str:
    """The prometheus.yml of docs/prometheus.md, pointed at `node_url`, refreshing every 1 s."""
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
                 if "scrape_configs" in b)
    assert "http://127.0.0.1:8080" in block
    assert "refresh_interval: 30s" in block
    return (block.replace("http://127.0.0.1:8080", node_url)
            .replace("refresh_interval: 30s", "refresh_interval: 1s"))


NEEDS_PROMETHEUS = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="needs Debian's prometheus package (apt-get install prometheus)")
EUREKA_SD = """scrape_configs:
  - job_name: eureka
    eureka_sd_configs:
      - server: {node}/eureka
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_eureka_app_name]
        target_label: app
      - source_labels: [__meta_eureka_app_instance_id]
        target_label: instance_id
      - source_labels: [__meta_eureka_app_instance_status]
        target_label: status
      - source_labels: [__meta_eureka_app_instance_metadata_team]
        target_label: team
"""


@contextlib.contextmanager
def prometheus(config: str, tmp_path: Path) -> Iterator[Callable[[], list[dict[str, Any]] | None]]:
    """A Prometheus server on 127.0.0.1 with `config` (its storage in `tmp_path`); yields a
    function that answers its active targets (None while it does not answer)."""
    (tmp_path / "prometheus.yml").write_text(config)
    port = free_port()
    command = ["prometheus", f"--config.file={tmp_path}/prometheus.yml",
               f"--storage.tsdb.path={tmp_path}/tsdb", f"--web.listen-address=127.0.0.1:{port}"]
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def active() -> list[dict[str, Any]] | None:
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets",
                               params={"state": "active"}, timeout=2.0).json()
        except (httpx.TransportError, ValueError):
            return None
        return list(answer["data"]["activeTargets"])

    try:
        yield active
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@NEEDS_PROMETHEUS
def test_the_real_prometheus_finds_the_instances_and_sees_them_leave(
        start_node: StartNode, tmp_path: Path) -> None:
    """Prometheus with the documented configuration lists an Artemis and a Eureka instance of a
    node with 3 s leases as targets, relabeled as documented; once their leases expire it lists
    none."""
    node = start_node("--lease-ttl", "3")
    artemis = instance(regionId="SHA", zoneId="zone-1", metadata={"metrics_path": "/m"})
    with prometheus(documented_config(node.url), tmp_path) as active, \
            httpx.Client(base_url=node.url, timeout=5.0) as client:
        assert 200 == client.post("/api/registry/register.json",
                                  json={"instances": [artemis]}).status_code
        assert 204 == client.post("/eureka/apps/ORDERS", json={"instance": info(
            leaseInfo={"durationInSecs": 3}, metadata={"team": "orders"})}).status_code

        def renewed() -> list[dict[str, Any]] | None:
            # both clients heartbeat until Prometheus has seen them
            client.post("/api/registry/heartbeat.json", json={"instances": [artemis]})
            client.put("/eureka/apps/ORDERS/web-1:orders:8080")
            return active()

        found = poll(lambda: (t if len(t := renewed() or []) == 2 else None), DEADLINE,
                     "Prometheus listing both instances")
        gone = poll(lambda: (t if (t := active()) == [] else None), DEADLINE,
                    "Prometheus dropping the expired instances")

    assert [
        ({"instance": "10.0.0.5:8080", "instance_id": "10.0.0.5:8080", "job": "artemis-services",
          "region": "SHA", "service": "demo.service.v1", "zone": "zone-1"},
         "http://10.0.0.5:8080/m"),
        ({"instance": "10.0.0.5:8080", "instance_id": "web-1:orders:8080",
          "job": "artemis-services", "region": "SHA", "service": "ORDERS", "zone": "zone-1"},
         "http://10.0.0.5:8080/metrics"),
    ] == sorted(((t["labels"], t["scrapeUrl"]) for t in found),
                key=lambda target: target[0]["service"].lower())
    assert [] == gone


@NEEDS_PROMETHEUS
def test_prometheus_s_own_eureka_discovery_reads_the_eureka_api(
        start_node: StartNode, tmp_path: Path) -> None:
    """Prometheus's eureka_sd_configs (an independent reader of Eureka's XML) finds the Eureka
    and the Artemis instance through /eureka/apps, with their apps, ids, statuses and
    metadata."""
    node = start_node()
    with httpx.Client(base_url=node.url, timeout=5.0) as client:
        assert 200 == client.post("/api/registry/register.json",
                                  json={"instances": [instance(status="starting")]}).status_code
        assert 204 == client.post("/eureka/apps/ORDERS", json={"instance": info(
            metadata={"team": "orders"})}).status_code
    with prometheus(EUREKA_SD.format(node=node.url), tmp_path) as active:
        found = poll(lambda: (t if len(t := active() or []) == 2 else None), DEADLINE,
                     "Prometheus listing both instances")

    assert [  # Prometheus's own choice: instance is the instanceId, the address hostName:port
        ({"app": "DEMO.SERVICE.V1", "instance": "10.0.0.5:8080", "instance_id": "10.0.0.5:8080",
          "job": "eureka", "status": "STARTING"}, "http://web-5:8080/metrics"),
        ({"app": "ORDERS", "instance": "web-1:orders:8080", "instance_id": "web-1:orders:8080",
          "job": "eureka", "status": "UP", "team": "orders"}, "http://web-1:8080/metrics"),
    ] == sorted(((t["labels"], t["scrapeUrl"]) for t in found),
                key=lambda target: target[0]["app"])
