"""Prometheus HTTP service discovery: every instance discovery shows, as a scrape target.

GET /api/discovery/prometheus-sd.json answers what Prometheus's `http_sd_configs` reads: a JSON
list of target groups, one per instance, `{"targets": ["HOST:PORT"], "labels": {...}}`.

Rules
  * Only what discovery shows: instances pulled out by management are not targets. `service`
    (comma-separated, or repeated) narrows the answer to those services (case-insensitive); an
    unknown one adds nothing.
  * The target is the instance's ip (else its url's host; an IPv6 address in brackets) and its
    port (else its url's port, else 80 or 443 by its url's scheme); an instance with neither ip
    nor url host is left out.
  * Labels (Prometheus drops `__meta_` labels after relabeling: map the ones wanted, see
    docs/api.md): `__meta_artemis_service` (the serviceId as the service was first
    registered), `__meta_artemis_instance_id`, `__meta_artemis_region`,
    `__meta_artemis_zone`, `__meta_artemis_url`, `__meta_artemis_group` and
    `__meta_artemis_status` when set, and `__meta_artemis_metadata_<key>` for each metadata
    entry, its key sanitized for a label name (every character but ASCII letters, digits and
    `_` becomes `_`; of keys that sanitize alike, the first in key order wins). The keys the
    Eureka mapping keeps (`eureka.*`, `artemis.lease_ttl`) are not labels.
  * Held to the caller's `discovery` limit per client (429 past it); a node that does not serve
    discovery answers 503. Prometheus keeps the targets it has on any answer but 200.
  * A service's target groups are encoded once per revision of the service.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable
from typing import Final
from urllib.parse import urlsplit

import msgspec

from artemis.core.registry import ServiceState
from artemis.server.api.endpoint import GET, Endpoint, Query, bind
from artemis.server.api.registry import client_address
from artemis.server.eureka.mapping import is_reserved
from artemis.server.http import Request, Response, Route
from artemis.server.node import Node, drive_async
from artemis.wire import ErrorCode, Instance

__all__ = ["ENDPOINTS", "PROMETHEUS_SD", "TargetGroup", "label_name", "routes", "target"]

_LABEL: Final = re.compile(r"[^a-zA-Z0-9_]")
_STEP: Final = 2_000  # instances encoded between two yields
_encoder: Final = msgspec.json.Encoder()


class TargetGroup(msgspec.Struct, frozen=True):
    """One target group of Prometheus's HTTP service discovery."""

    targets: list[str]
    labels: dict[str, str]


def label_name(key: str) -> str:
    """A metadata key as a label name: `__meta_artemis_metadata_` and the key sanitized."""
    return "__meta_artemis_metadata_" + _LABEL.sub("_", key)


def target(instance: Instance) -> str | None:
    """HOST:PORT to scrape the instance at (rules in the module doc), or None."""
    parts = urlsplit(instance.url or "")
    host = instance.ip or parts.hostname
    if not host:
        return None
    try:
        url_port = parts.port
    except ValueError:
        url_port = None
    port = instance.port or url_port or (443 if parts.scheme.lower() == "https" else 80)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def group(service_id: str, instance: Instance) -> bytes | None:
    """One instance as a target group, encoded; None when it has no address."""
    address = target(instance)
    if address is None:
        return None
    labels = {
        "__meta_artemis_service": service_id,
        "__meta_artemis_instance_id": instance.instance_id or "",
        "__meta_artemis_region": instance.region_id or "",
        "__meta_artemis_zone": instance.zone_id or "",
        "__meta_artemis_url": instance.url or "",
    }
    if instance.group_id:
        labels["__meta_artemis_group"] = instance.group_id
    if instance.status:
        labels["__meta_artemis_status"] = instance.status
    for key in sorted(instance.metadata or ()):
        if not is_reserved(key):
            labels.setdefault(label_name(key), instance.metadata[key])  # type: ignore[index]
    return _encoder.encode(TargetGroup([address], labels))


class PrometheusSd:
    """The endpoint of one node, with each service's target groups kept per revision."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.registry = node.registry
        self._kept: dict[str, tuple[ServiceState, int, bytes]] = {}
        self.route = bind(PROMETHEUS_SD, self)

    def _encoded(self, state: ServiceState) -> bytes:
        kept = self._kept.get(state.key)
        if kept is not None and kept[0] is state and kept[1] == state.revision:
            return kept[2]
        parts = [group(state.service_id, lease.instance)
                 for lease in state.leases.values() if not lease.hidden]
        body = b",".join(p for p in parts if p is not None)
        self._kept[state.key] = (state, state.revision, body)
        return body

    def _build(self, states: list[ServiceState]) -> Generator[None, None, bytes]:
        parts: list[bytes] = []
        done = 0
        for state in states:
            if self.registry.services.get(state.key) is not state:
                continue  # removed while the loop ran
            kept = self._kept.get(state.key)
            if kept is None or kept[0] is not state or kept[1] != state.revision:
                done += len(state.leases)
            body = self._encoded(state)
            if body:
                parts.append(body)
            if done >= _STEP:
                done = 0
                yield
        services = self.registry.services
        if len(self._kept) > len(services):
            self._kept = {k: v for k, v in self._kept.items() if services.get(k) is v[0]}
        return b"[" + b",".join(parts) + b"]"

    async def targets(self, request: Request) -> Response | bytes:
        node = self.node
        route = self.route
        if not node.allowed("discovery", "prometheus-sd", client_address(request.client)):
            return Response(route.fail(ErrorCode.RATE_LIMITED, "Request is rate limited."),
                            status=429)
        if not node.state.serves_discovery:
            return Response(route.fail(ErrorCode.SERVICE_UNAVAILABLE, (
                f"Service discovery is not in up state. Current status: {node.state.status}")),
                status=503)
        services = self.registry.services
        wanted = [s.strip().lower() for value in request.query_all("service")
                  for s in value.split(",") if s.strip()]
        chosen: Iterable[ServiceState | None] = (
            services.values() if not wanted
            else (services.get(key) for key in dict.fromkeys(wanted)))
        states = [s for s in chosen if s is not None and s.visible]
        return await drive_async(self._build(states), node.steps, "prometheus-sd")


def routes(node: Node) -> dict[str, Route]:
    return {PROMETHEUS_SD.path: PrometheusSd(node).route}


PROMETHEUS_SD: Final = Endpoint(
    "/api/discovery/prometheus-sd.json", GET, "Prometheus HTTP service discovery", None,
    list[TargetGroup], PrometheusSd.targets, reads_body=False,
    query=(Query("service", {"type": "array", "items": {"type": "string"}},
                 "Service ids to narrow the answer to, comma-separated (the parameter may also "
                 "be repeated); none means every service.", explode=False),),
    description="Every instance discovery shows, one target group each, in the format of "
    "Prometheus's `http_sd_configs`: `targets` is `HOST:PORT` (ip, else the url's host; port, "
    "else the url's), `labels` are `__meta_artemis_service`, `__meta_artemis_instance_id`, "
    "`__meta_artemis_region`, `__meta_artemis_zone`, `__meta_artemis_url`, "
    "`__meta_artemis_group` and `__meta_artemis_status` when set, and "
    "`__meta_artemis_metadata_<key>` per metadata entry (key sanitized). Over the caller's "
    "discovery limit it answers 429, and 503 on a node that does not serve discovery, with a "
    "`responseStatus`; Prometheus keeps its targets on such answers.")
ENDPOINTS: Final = (PROMETHEUS_SD,)
