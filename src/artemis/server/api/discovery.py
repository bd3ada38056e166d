"""Discovery endpoints: lookup, service, services and services-delta (§4.2).

Answers are assembled from bytes encoded once per service revision (lookup, service) or once per
snapshot (services) or per delta; nothing is serialized again per request on the hot path.

Every call is first held to its client's limit of the `discovery` family (rate_limit_per_client,
per client address: `rate-limited` past it); discovery has no per-operation limit, so one client
can never use up what the others get.
"""

from __future__ import annotations

from typing import Final

from artemis import wire
from artemis.core.registry import ServiceState, encode_service
from artemis.core.versions import Delta, Snapshot, checksum_hex
from artemis.server.api.endpoint import (
    GET_POST,
    POST,
    REGION_QUERY,
    ZONE_QUERY,
    Endpoint,
    Query,
    bind,
)
from artemis.server.api.registry import client_address
from artemis.server.http import BadRequest, Pieces, Request, Route, status_bytes
from artemis.server.node import Node, drive_async
from artemis.wire import ErrorCode, GetServiceRequest, GetServicesDeltaRequest, LookupRequest

__all__ = ["ENDPOINTS", "routes"]

_SUCCESS: Final = status_bytes(ErrorCode.SUCCESS, "", "success")
_LOOKUP_HEAD: Final = b'{"responseStatus":' + _SUCCESS + b',"services":['


# What a cached lookup answer depends on: per service asked, the state seen and its revision.
_Deps = tuple[tuple[str, ServiceState | None, int], ...]
_LOOKUP_CACHE_SIZE: Final = 4096
_LOOKUP_CACHE_KEY_BYTES: Final = 4096  # larger lookups are not cached: bounds the cache's memory


class Discovery:
    def __init__(self, node: Node) -> None:
        self.node = node
        # Whole lookup answers by request body: clients repeat the same lookup, so most of them
        # are answered without decoding anything. An entry is used only while every service it
        # names is still the same object at the same revision.
        self._lookups: dict[bytes, tuple[_Deps, bytes]] = {}
        # The same Pieces for the same snapshot or delta, so each is gzipped at most once.
        self._services_answer: tuple[Snapshot, Pieces] | None = None
        self._delta_answers: dict[int, tuple[Delta, Pieces]] = {}
        self.region = node.settings.region.lower()
        self.zone = node.settings.zone.lower()
        self.lookup_route = bind(LOOKUP, self)
        self.service_route = bind(SERVICE, self)
        self.services_route = bind(SERVICES, self)
        self.delta_route = bind(DELTA, self)
        self._per_client = node.client_limiters["discovery"]
        self._clock = node.clock

    def _refusal(self, route: Route, region: str | None, zone: str | None) -> bytes | None:
        """Why this node will not answer a lookup for (region, zone), as an answer; or None.

        A missing region or zone means this node's own (the original refuses a missing region:
        quirk 16); a different one is refused `no-permission`.
        """
        node = self.node
        if not node.state.serves_discovery:
            return route.fail(ErrorCode.SERVICE_UNAVAILABLE, f"Service discovery is not in up "
                              f"state. Current status: {node.state.status}")
        if region is not None and region.lower() != self.region:
            return route.fail(ErrorCode.NO_PERMISSION, f"regionId is not the same as the "
                              f"discovery node. regionId: {region}, discovery node.regionId: "
                              f"{node.settings.region}")
        if (zone is not None and not node.settings.allow_discovery_from_other_zone
                and zone.lower() != self.zone):
            return route.fail(ErrorCode.NO_PERMISSION, f"zoneId is not the same as the discovery "
                              f"node. zoneId: {zone}, discovery node.zoneId: "
                              f"{node.settings.zone}")
        return None

    def _service(self, service_id: str) -> tuple[bytes, int]:
        """The encoded Service named as asked, and its checksum."""
        state = self.node.registry.service(service_id)
        if state is None:
            return encode_service(service_id, ()), 0
        if state.service_id == service_id:
            return state.body(), state.visible_checksum
        return (encode_service(service_id, (lease.encoded for lease in state.leases.values()
                                            if not lease.hidden), state.rules, state.logic),
                state.visible_checksum)

    def _limited(self, route: Route, operation: str, request: Request) -> bytes | None:
        """The `rate-limited` answer when the caller is over its own limit; else None."""
        if self.node.allowed("discovery", operation, client_address(request.client)):
            return None
        return route.fail(ErrorCode.RATE_LIMITED, "Request is rate limited.")

    def lookup(self, request: Request) -> bytes:
        # node.allowed("discovery", ...) inlined: the hottest path, and discovery has no
        # per-operation limit.
        if not self._per_client.allow(client_address(request.client), "lookup",
                                      self._clock.monotonic()):
            return self.lookup_route.fail(ErrorCode.RATE_LIMITED, "Request is rate limited.")
        cached = self._lookups.get(request.body)
        if cached is not None and self.node.state.serves_discovery:
            services = self.node.registry.services
            for key, state, revision in cached[0]:
                current = services.get(key)
                if current is not state or (state is not None and state.revision != revision):
                    break
            else:
                return cached[1]
        body: LookupRequest = request.json(LookupRequest)
        configs = body.discovery_configs
        if not configs:
            raise BadRequest("Request is null or request.discoveryConfigs is empty.")
        refusal = self._refusal(self.lookup_route, body.region_id, body.zone_id)
        if refusal is not None:
            return refusal
        parts = []
        deps = []
        services = self.node.registry.services
        for config in configs:
            if config is None or not config.service_id or config.service_id.isspace():
                continue
            key = config.service_id.lower()
            state = services.get(key)
            deps.append((key, state, 0 if state is None else state.revision))
            parts.append(self._service(config.service_id)[0])
        answer = b"".join((_LOOKUP_HEAD, b",".join(parts), b"]}"))
        if len(request.body) <= _LOOKUP_CACHE_KEY_BYTES:
            if len(self._lookups) >= _LOOKUP_CACHE_SIZE:
                self._lookups.clear()
            self._lookups[request.body] = (tuple(deps), answer)
        return answer

    def service(self, request: Request) -> bytes:
        limited = self._limited(self.service_route, "get-service", request)
        if limited is not None:
            return limited
        if request.method == "GET":
            service_id = request.query("serviceId")
            region, zone = request.query("regionId"), request.query("zoneId")
        else:
            body: GetServiceRequest = request.json(GetServiceRequest)
            config = body.discovery_config
            service_id = None if config is None else config.service_id
            region, zone = body.region_id, body.zone_id
        if not service_id or service_id.isspace():
            raise BadRequest("Request is null or request.discoveryConfig is null.")
        refusal = self._refusal(self.service_route, region, zone)
        if refusal is not None:
            return refusal
        encoded, checksum = self._service(service_id)
        return b"".join((b'{"checksum":"', checksum_hex(checksum).encode(),
                         b'","responseStatus":', _SUCCESS, b',"service":', encoded, b"}"))

    async def services(self, request: Request) -> bytes | Pieces:
        limited = self._limited(self.services_route, "get-services", request)
        if limited is not None:
            return limited
        if request.method == "POST":
            request.json(wire.GetServicesRequest)  # read for its shape only, as the original
        node = self.node
        if not node.state.serves_discovery:
            return self.services_route.fail(
                ErrorCode.SERVICE_UNAVAILABLE,
                f"Service discovery is not in up state. Current status: {node.state.status}")
        current = node.versions.current
        cached = self._services_answer
        if cached is None or cached[0] is not current:
            answer, size = await drive_async(current.answer(), node.steps, "services")
            cached = self._services_answer = (current, Pieces(answer, size))
        return cached[1]

    async def delta(self, request: Request) -> bytes | Pieces:
        limited = self._limited(self.delta_route, "get-services-delta", request)
        if limited is not None:
            return limited
        body: GetServicesDeltaRequest = request.json(GetServicesDeltaRequest)
        node = self.node
        if not node.state.serves_discovery:
            return self.delta_route.fail(
                ErrorCode.SERVICE_UNAVAILABLE,
                f"Service discovery is not in up state. Current status: {node.state.status}")
        delta = await drive_async(node.versions.delta(body.version), node.steps, "delta")
        if delta is None:
            return self.delta_route.fail(ErrorCode.DATA_NOT_FOUND, "Delta is not found.")
        cached = self._delta_answers.get(body.version)
        if cached is not None and cached[0] is delta:
            return cached[1]
        answer = Pieces(delta.parts, delta.size)
        # Kept (with its gzipped copy) only as long as the core keeps the delta itself.
        self._delta_answers = {v: entry for v, entry in self._delta_answers.items()
                               if node.versions.cached_delta(v) is entry[0]}
        if node.versions.cached_delta(body.version) is delta:
            self._delta_answers[body.version] = (delta, answer)
        return answer


def routes(node: Node) -> dict[str, Route]:
    d = Discovery(node)
    return {
        LOOKUP.path: d.lookup_route,
        SERVICE.path: d.service_route,
        SERVICES.path: d.services_route,
        DELTA.path: d.delta_route,
    }


LOOKUP: Final = Endpoint(
    "/api/discovery/lookup.json", POST, "Look services up", wire.LookupRequest,
    wire.LookupResponse, Discovery.lookup,
    description="Answers the live registry; a service with no instances answers "
    "`\"instances\": []`. A node that cannot serve discovery answers `service-unavailable`.")
SERVICE: Final = Endpoint(
    "/api/discovery/service.json", GET_POST, "Get one service", wire.GetServiceRequest,
    wire.GetServiceResponse, Discovery.service,
    query=(Query("serviceId", {"type": "string"}, "The service's id.", required=True),
           REGION_QUERY, ZONE_QUERY),
    description="The service from the live registry, with its checksum.")
SERVICES: Final = Endpoint(
    "/api/discovery/services.json", GET_POST, "Get every service", wire.GetServicesRequest,
    wire.GetServicesResponse, Discovery.services,
    description="The newest snapshot with its `version`; only services with instances appear.")
DELTA: Final = Endpoint(
    "/api/discovery/services-delta.json", POST, "Get the changes since a version",
    wire.GetServicesDeltaRequest, wire.GetServicesDeltaResponse, Discovery.delta,
    description="The changes (`new`, `delete`, `change`) from a kept `version` to the newest; "
    "a version that is not kept answers `data-not-found`.")
ENDPOINTS: Final = (LOOKUP, SERVICE, SERVICES, DELTA)
