"""GET /metrics: requests by endpoint and code, latency, and the node's state, in Prometheus
text format; off with metrics=False."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from artemis.clock import FakeClock
from artemis.server.compose import build
from artemis.server.node import Node
from artemis.server.settings import Settings

INSTANCE = {"instanceId": "i1", "serviceId": "svc", "url": "http://10.0.0.1:80",
            "regionId": "SHA"}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def _client(**settings: object) -> tuple[httpx.AsyncClient, Node]:
    parts = build(Settings(region="SHA", **settings), FakeClock())  # type: ignore[arg-type]
    parts.node.mark_up()
    transport = httpx.ASGITransport(app=parts.app)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver"), parts.node


async def test_requests_are_counted_by_endpoint_and_code() -> None:
    """Each answer counts once under its endpoint and Artemis code; latency is observed."""
    client, _ = await _client(rate_limits={"registry.register": 1})
    async with client:
        await client.post("/api/registry/register.json", json={"instances": [INSTANCE]})
        await client.post("/api/registry/register.json", json={"instances": [INSTANCE]})
        await client.post("/api/registry/heartbeat.json",
                          json={"instances": [{**INSTANCE, "instanceId": "nobody"}]})
        await client.post("/api/registry/heartbeat.json", content=b"{not json")
        await client.get("/nowhere")
        text = (await client.get("/metrics")).text
    samples = _samples(text)
    register = (("endpoint", "/api/registry/register.json"),)
    heartbeat = (("endpoint", "/api/registry/heartbeat.json"),)
    assert {
        "register success": 1.0, "register rate-limited": 1.0, "heartbeat partial_fail": 1.0,
        "heartbeat bad-request": 1.0, "heartbeat success": 0.0, "unmatched not-found": 1.0,
        "register latency count": 2.0, "heartbeat latency count": 2.0,
        "rate limited": 1.0, "instances": 1.0, "services": 1.0, "node up": 1.0,
    } == {
        "register success": samples[("artemis_http_requests_total",
                                     (("code", "success"), *register))],
        "register rate-limited": samples[("artemis_http_requests_total",
                                          (("code", "rate-limited"), *register))],
        "heartbeat partial_fail": samples[("artemis_http_requests_total",
                                           (("code", "partial_fail"), *heartbeat))],
        "heartbeat bad-request": samples[("artemis_http_requests_total",
                                          (("code", "bad-request"), *heartbeat))],
        "heartbeat success": samples[("artemis_http_requests_total",
                                      (("code", "success"), *heartbeat))],
        "unmatched not-found": samples[("artemis_http_requests_total",
                                        (("code", "not-found"), ("endpoint", "unmatched")))],
        "register latency count": samples[("artemis_http_request_duration_seconds_count",
                                           register)],
        "heartbeat latency count": samples[("artemis_http_request_duration_seconds_count",
                                            heartbeat)],
        "rate limited": samples[("artemis_rate_limited_total",
                                 (("limiter", "registry"), ("operation", "register"),
                                  ("scope", "operation")))],
        "instances": samples[("artemis_instances", (("lease", "normal"),))],
        "services": samples[("artemis_services", ())],
        "node up": samples[("artemis_node_up", ())],
    }


async def test_state_metrics_follow_the_registry() -> None:
    """Evictions, self-preservation and push counters read the node's state at scrape time."""
    client, node = await _client(lease_ttl=5.0, self_preservation=False)
    async with client:
        await client.post("/api/registry/register.json", json={"instances": [INSTANCE]})
        node.clock.advance(6)  # type: ignore[attr-defined]
        node.sweep_once()
        samples = _samples((await client.get("/metrics")).text)
    assert {"evictions": 1.0, "instances": 0.0, "safe": 1.0, "enabled": 0.0, "sessions": 0.0,
            "changes": 2.0} == {
        "evictions": samples[("artemis_evictions_total", ())],
        "instances": samples[("artemis_instances", (("lease", "normal"),))],
        "safe": samples[("artemis_self_preservation_safe", (("lease", "normal"),))],
        "enabled": samples[("artemis_self_preservation_enabled", (("lease", "normal"),))],
        "sessions": samples[("artemis_websocket_sessions", (("kind", "discovery"),))],
        "changes": samples[("artemis_registry_changes_total", ())],
    }


async def test_metrics_off_serves_no_metrics() -> None:
    """With metrics off there is no /metrics endpoint and routes carry no counters."""
    client, _ = await _client(metrics=False)
    async with client:
        answer = await client.get("/metrics")
    assert 404 == answer.status_code
