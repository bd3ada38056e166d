"""OpenTelemetry tracing of requests: off by default, sampled before any span object exists.

Tracing is on when the standard variables ask for export: `OTEL_TRACES_EXPORTER=otlp`, or
`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set (and not
`OTEL_SDK_DISABLED=true`); spans then go out by OTLP over HTTP, configured by the same variables.

Sampling decides first, so that the heartbeat path pays one random number when a request is not
traced: a request that carries a W3C `traceparent` is traced when its caller sampled it (the trace
goes on across nodes and clients); any other request with probability `OTEL_TRACES_SAMPLER_ARG`
(0.01 by default). Only then is a span made.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:  # the SDK is the [otel] extra's: loaded only when tracing is asked for
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["Tracing", "configure"]

DEFAULT_RATIO: Final = 0.01
_PROPAGATOR: Final = TraceContextTextMapPropagator()


class Tracing:
    """Starts and ends request spans for the sampled requests."""

    def __init__(self, tracer: trace.Tracer, ratio: float = DEFAULT_RATIO,
                 provider: TracerProvider | None = None, rng: random.Random | None = None) -> None:
        self.tracer = tracer
        self.ratio = min(1.0, max(0.0, ratio))
        self.provider = provider
        self._random = (rng or random.Random()).random  # noqa: S311 - sampling, not secrets

    def start(self, method: str, path: str, headers: Any) -> trace.Span | None:
        """A span for this request if it is sampled, else None (no span object is made)."""
        parent = headers.get("traceparent")
        if parent is not None:
            flags = parent.rpartition("-")[2]
            if not (len(flags) == 2 and all(c in "0123456789abcdefABCDEF" for c in flags)
                    and int(flags, 16) & 1):
                return None  # the caller did not sample this trace
            carrier = {"traceparent": parent}
            state = headers.get("tracestate")
            if state is not None:
                carrier["tracestate"] = state
            context = _PROPAGATOR.extract(carrier)
        elif self._random() < self.ratio:
            context = None
        else:
            return None
        return self.tracer.start_span(f"{method} {path}", context=context, kind=SpanKind.SERVER,
                                      attributes={"http.request.method": method,
                                                  "url.path": path})

    def start_client(self, name: str, url: str) -> tuple[trace.Span | None, dict[str, str]]:
        """A client span for a call to a peer node if sampled, and the headers (`traceparent`)
        that carry the trace to that node; (None, {}) when not sampled."""
        if self._random() >= self.ratio:
            return None, {}
        span = self.tracer.start_span(name, kind=SpanKind.CLIENT,
                                      attributes={"http.request.method": "POST",
                                                  "url.full": url})
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        return span, carrier

    @staticmethod
    def end(span: trace.Span, status: int) -> None:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def configure(env: Mapping[str, str], service_name: str = "artemis") -> Tracing | None:
    """Tracing as the OTEL_* variables of `env` ask for it, or None (the default)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")}
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT")
    if "none" in exporters or not ("otlp" in exporters or endpoint):
        return None
    # loaded only when tracing is asked for (the [otel] extra)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    try:
        ratio = float(env.get("OTEL_TRACES_SAMPLER_ARG", DEFAULT_RATIO))
    except ValueError:
        ratio = DEFAULT_RATIO
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    # The endpoint from `env` itself (the exporter would read os.environ on its own).
    traces_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not traces_endpoint and endpoint:
        traces_endpoint = endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_endpoint)))
    return Tracing(provider.get_tracer("artemis"), ratio, provider)
