"""Request spans with the OpenTelemetry SDK's in-memory exporter; sampling before any span."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from artemis.clock import FakeClock
from artemis.server.compose import build
from artemis.server.observability.tracing import Tracing, configure
from artemis.server.settings import Settings

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


async def _client(exporter: InMemorySpanExporter, ratio: float
                  ) -> AsyncIterator[httpx.AsyncClient]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    parts = build(Settings(region="SHA"), FakeClock(),
                  Tracing(provider.get_tracer("test"), ratio, provider, random.Random(1)))
    parts.node.mark_up()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=parts.app),
                                 base_url="http://testserver") as client:
        yield client
    provider.shutdown()


@pytest.fixture
async def traced(exporter: InMemorySpanExporter) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(exporter, 1.0):
        yield client


@pytest.fixture
async def untraced(exporter: InMemorySpanExporter) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(exporter, 0.0):
        yield client


async def test_every_request_is_a_span_at_ratio_one(traced: httpx.AsyncClient,
                                                    exporter: InMemorySpanExporter) -> None:
    """At sampling ratio 1 each request is one server span with method, path and status."""
    await traced.post("/api/registry/heartbeat.json", json={"instances": []})
    await traced.get("/nowhere")
    assert [("POST /api/registry/heartbeat.json", "POST", "/api/registry/heartbeat.json", 200),
            ("GET /nowhere", "GET", "/nowhere", 404)] == [
        (s.name, s.attributes["http.request.method"], s.attributes["url.path"],
         s.attributes["http.response.status_code"]) for s in exporter.get_finished_spans()]


async def test_ratio_zero_makes_no_span(untraced: httpx.AsyncClient,
                                        exporter: InMemorySpanExporter) -> None:
    """At sampling ratio 0 a request without a sampled traceparent makes no span at all."""
    await untraced.get("/health")
    await untraced.get("/health", headers={"traceparent": UNSAMPLED})
    assert () == exporter.get_finished_spans()


async def test_a_sampled_caller_continues_its_trace(untraced: httpx.AsyncClient,
                                                    exporter: InMemorySpanExporter) -> None:
    """A request with a sampled W3C traceparent is traced as a child of the caller's span."""
    await untraced.get("/health", headers={"traceparent": PARENT})
    [span] = exporter.get_finished_spans()
    assert ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331") == (
        format(span.context.trace_id, "032x"), format(span.parent.span_id, "016x"))


def test_configure_is_off_without_otel_variables() -> None:
    """No OTEL_* variable asking for export, or the SDK disabled: no tracing."""
    assert (None, None, None) == (
        configure({}), configure({"OTEL_TRACES_EXPORTER": "none"}),
        configure({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}))


def test_configure_follows_the_standard_variables() -> None:
    """OTEL_TRACES_EXPORTER=otlp turns tracing on, with the sampler argument as ratio."""
    tracing = configure({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER_ARG": "0.25",
                         "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert tracing is not None
    ratio = tracing.ratio
    tracing.shutdown()
    assert 0.25 == ratio
