"""What the web console reads: the node at a glance, services searched by id prefix a page at a
time, one service with its instances, and who a bearer token is; plus `/` and `/console`, which
redirect to the console's page (the files themselves: `server/console`).

Rules
  * Every answer is bounded by a page, never by the registry: services.json reads one range of
    the sorted service keys (`console.search`), service.json decodes only the instances of the
    page it answers. A page holds at most 500 entries.
  * overview.json is built at most once per half second and shared by every caller, so open
    consoles cost the node one small answer per half second whatever their number.
  * These endpoints are open, like the node's status pages: they show what discovery and
    leases.json already show (instances, whether management hides one, leases, route rules).
    What only management readers see (operations, groups, route rules with staged weights) is
    added to service.json for a caller whose bearer token has the read role (or for anyone
    with `management_open_reads`).
  * whoami.json tells a page which of the node's tokens it holds and what it may do, so the
    console offers only the actions that token can take; it says nothing about other tokens.
"""

from __future__ import annotations

import time
from itertools import takewhile
from typing import Any, Final

import msgspec

from artemis import __version__, wire
from artemis.core.lease import SafeChecker
from artemis.core.registry import Lease, ServiceState
from artemis.server.api.endpoint import GET, Access, Endpoint, Query, Role, bind
from artemis.server.cluster import Cluster
from artemis.server.console import Console, shipped
from artemis.server.console.search import ServiceIndex
from artemis.server.http import BadRequest, Request, Route
from artemis.server.management import Management
from artemis.server.node import Node
from artemis.server.observability.loop import percentiles_ms
from artemis.server.push import PushServer
from artemis.wire import ErrorCode

__all__ = ["ENDPOINTS", "ConsoleApi", "routes"]

BASE: Final = "/api/console"
MAX_PAGE: Final = 500
OVERVIEW_TTL: Final = 0.5  # seconds an overview answer is shared
LAG_WINDOW: Final = 10.0  # seconds of event-loop lag samples the overview summarizes
_SORTED_KEPT: Final = 64  # services whose sorted instance keys are kept
_SUCCESS: Final = wire.ResponseStatus(error_code=ErrorCode.SUCCESS, message="",
                                      status="success")
_HTML: Final = "text/html; charset=utf-8"


class _Answer(msgspec.Struct, rename="camel", kw_only=True, frozen=True, omit_defaults=False):
    """Base of the console's answers: camelCase keys, nulls written."""


class ConsoleNode(_Answer, kw_only=True, frozen=True):
    url: str
    node_id: str
    region: str
    zone: str
    status: str
    serves_registry: bool
    serves_discovery: bool
    uptime_seconds: float
    version: str


class ConsolePeer(_Answer, kw_only=True, frozen=True):
    """A peer as this node last polled it, and its replication queue."""

    url: str
    zone: str
    status: str
    serves_registry: bool | None
    serves_discovery: bool | None
    last_answer_time: int
    last_error: str
    queued: int
    sent: int
    retried: int
    lag_p99_ms: float
    lag_samples: int
    dropped_overflow: int
    dropped_expired: int
    dropped_failed: int


class ConsoleSafety(_Answer, kw_only=True, frozen=True):
    """Self-preservation of one kind of lease, with why it holds expired leases or not."""

    enabled: bool
    holding: bool
    reason: str
    renewals: int
    peak: int
    percentage: int
    min_count: int
    window_seconds: float
    leases: int


class ConsoleStore(_Answer, kw_only=True, frozen=True):
    """The management database as this node sees it."""

    enabled: bool
    available: bool
    version: int | None
    last_error: str
    last_load_time: int
    pulled_out: dict[str, int]
    hidden_instances: int


class ConsoleOverview(_Answer, kw_only=True, frozen=True):
    node: ConsoleNode | None = None
    peers: list[ConsolePeer] | None = None
    bootstrap: dict[str, Any] | None = None
    instances: int = 0
    visible_instances: int = 0
    services: int = 0
    revision: int = 0
    self_preservation: ConsoleSafety | None = None
    legacy_self_preservation: ConsoleSafety | None = None
    management: ConsoleStore | None = None
    rate_limited: dict[str, int] | None = None
    rate_limited_total: int = 0
    loop_lag: dict[str, float] | None = None
    push: dict[str, int] | None = None
    server_time: int = 0
    response_status: wire.ResponseStatus


class ConsoleServiceRow(_Answer, kw_only=True, frozen=True):
    service_id: str
    instances: int
    visible: int


class ConsoleServices(_Answer, kw_only=True, frozen=True):
    prefix: str = ""
    offset: int = 0
    limit: int = 0
    total: int = 0
    registry_services: int = 0
    services: list[ConsoleServiceRow] | None = None
    response_status: wire.ResponseStatus


class ConsoleInstance(_Answer, kw_only=True, frozen=True):
    """One registered instance, its lease, and whether management hides it."""

    instance_id: str
    ip: str | None
    port: int
    url: str | None
    health_check_url: str | None
    zone_id: str | None
    group_id: str | None
    status: str | None
    machine_name: str | None
    protocol: str | None
    metadata: dict[str, str] | None
    pulled_out: bool
    lease_remaining_ms: int
    ttl_ms: int
    renewed_ms_ago: int
    registered_time: int
    legacy: bool
    operations: dict[str, list[str]] | None = None  # readers only: instance, server, zone


class ConsoleRuleGroup(_Answer, kw_only=True, frozen=True):
    route_rule_group_id: int | None
    group_id: int | None
    weight: int | None
    unreleased_weight: int | None


class ConsoleRule(_Answer, kw_only=True, frozen=True):
    route_rule_id: int | None
    name: str | None
    status: str | None
    strategy: str | None
    description: str | None
    groups: list[ConsoleRuleGroup]


class ConsoleGroup(_Answer, kw_only=True, frozen=True):
    group_id: int | None
    name: str | None
    zone_id: str | None
    app_id: str | None
    status: str | None
    description: str | None
    tags: dict[str, str] | None
    members: list[str] | None
    operations: list[str] | None


class ConsoleManaged(_Answer, kw_only=True, frozen=True):
    """What management readers see of a service."""

    groups: list[ConsoleGroup]
    route_rules: list[ConsoleRule]
    zone_operations: dict[str, list[str]]


class ConsoleService(_Answer, kw_only=True, frozen=True):
    service_id: str | None = None
    exists: bool = False
    instances: list[ConsoleInstance] | None = None
    total: int = 0
    matching: int = 0
    visible: int = 0
    offset: int = 0
    limit: int = 0
    filter: str = ""
    zones: dict[str, int] | None = None
    route_rules: list[wire.RouteRule] | None = None
    logic_instances: int = 0
    management: ConsoleManaged | None = None
    push_revision: str = ""
    server_time: int = 0
    response_status: wire.ResponseStatus


class ConsoleWhoami(_Answer, kw_only=True, frozen=True):
    token: str | None = None
    known: bool = False
    roles: list[str] | None = None
    open_reads: bool = False
    management: bool = False
    region: str = ""
    response_status: wire.ResponseStatus


_encoder: Final = msgspec.json.Encoder()
_rules: Final = msgspec.json.Decoder(list[wire.RouteRule])


class ConsoleApi:
    """The console's JSON endpoints on one node."""

    def __init__(self, node: Node, push: PushServer, cluster: Cluster | None,
                 management: Management | None, access: Access) -> None:
        self.node = node
        self.push = push
        self.cluster = cluster
        self.management = management
        self.access = access
        self.index = ServiceIndex()
        self._overview: tuple[float, bytes] = (float("-inf"), b"")
        self._sorted: dict[str, tuple[int, int, list[str]]] = {}

    # --- overview ------------------------------------------------------------------------

    def overview(self, request: Request) -> bytes:
        now = self.node.clock.monotonic()
        made, body = self._overview
        if now - made >= OVERVIEW_TTL:
            body = _encoder.encode(self._overview_answer(now))
            self._overview = (now, body)
        return body

    def _overview_answer(self, now: float) -> ConsoleOverview:
        node = self.node
        s = node.settings
        registry = node.registry
        state = node.state
        rejected = {f"{name}.{identity}": count
                    for name, limiter in node.limiters.items()
                    for identity, count in limiter.rejected.items() if count}
        rejected |= {f"client.{name}.{identity}": count
                     for name, limiter in node.client_limiters.items()
                     for identity, count in limiter.rejected.items() if count}
        since = time.perf_counter() - LAG_WINDOW
        lags = [lag for _, lag in takewhile(lambda sample: sample[0] >= since,
                                            reversed(node.lag.samples))]
        replication = self.cluster.status() if self.cluster is not None else None
        status = (self.management.status() if self.management is not None else None)
        return ConsoleOverview(
            node=ConsoleNode(url=s.node_url, node_id=node.node_id, region=s.region,
                             zone=s.zone, status=state.status,
                             serves_registry=state.serves_registry,
                             serves_discovery=state.serves_discovery,
                             uptime_seconds=round(now - node.started_mono, 1),
                             version=__version__),
            peers=[_peer(p) for p in replication["peers"]] if replication else [],
            bootstrap=replication["bootstrap"] if replication else None,
            instances=registry.instance_count, visible_instances=registry.visible_count,
            services=len(registry.services), revision=registry.revision,
            self_preservation=_safety(registry.safe, now, s.self_preservation_window,
                                      registry.lease_count, s),
            legacy_self_preservation=_safety(registry.legacy_safe, now,
                                             s.legacy_self_preservation_window,
                                             registry.legacy_lease_count, s),
            management=_store(status, registry.instance_count - registry.visible_count),
            rate_limited=rejected, rate_limited_total=sum(rejected.values()),
            loop_lag=percentiles_ms(lags), push=self.push.counts(),
            server_time=node.clock.wall_ms(), response_status=_SUCCESS)

    # --- services ------------------------------------------------------------------------

    def services(self, request: Request) -> bytes:
        prefix = _text(request.query("prefix"), "prefix")
        offset = _number(request.query("offset"), "offset", 0, 0, 10_000_000)
        limit = _number(request.query("limit"), "limit", 50, 1, MAX_PAGE)
        registry = self.node.registry
        services = registry.services
        self.index.sync(services, registry.revision, self.node.clock.monotonic())
        total, keys = self.index.search(prefix, offset, limit)
        rows = [ConsoleServiceRow(service_id=state.service_id, instances=len(state.leases),
                                  visible=state.visible)
                for state in (services.get(key) for key in keys) if state is not None]
        return _encoder.encode(ConsoleServices(
            prefix=prefix, offset=offset, limit=limit, total=total,
            registry_services=len(services), services=rows, response_status=_SUCCESS))

    # --- one service ---------------------------------------------------------------------

    def service(self, request: Request) -> bytes:
        service_id = request.query("serviceId")
        if not service_id or not service_id.strip():
            raise BadRequest("serviceId is missing")
        service_id = _text(service_id, "serviceId")
        wanted = _text(request.query("filter"), "filter").lower()
        offset = _number(request.query("offset"), "offset", 0, 0, 10_000_000)
        limit = _number(request.query("limit"), "limit", 100, 1, MAX_PAGE)
        node = self.node
        registry = node.registry
        token = self.push.hub.token(registry.revision)  # before reading: a resume replays after
        state = registry.service(service_id)
        reader = self.access.actor(request, Role.READ) is not None
        managed = self._managed(service_id.lower()) if reader else None
        if state is None:
            return _encoder.encode(ConsoleService(
                service_id=service_id, exists=False, instances=[], offset=offset, limit=limit,
                filter=wanted, zones={}, route_rules=[], management=managed,
                push_revision=token, server_time=node.clock.wall_ms(),
                response_status=_SUCCESS))
        keys = self._sorted_keys(state)
        if wanted:
            keys = [k for k in keys if wanted in k or wanted in state.leases[k].ip]
        zones: dict[str, int] = {}
        for lease in state.leases.values():
            zones[lease.zone] = zones.get(lease.zone, 0) + 1
        now, wall = node.clock.monotonic(), node.clock.wall_ms()
        page = [self._instance(state.leases[k], now, reader) for k in keys[offset:offset + limit]]
        return _encoder.encode(ConsoleService(
            service_id=state.service_id, exists=True, instances=page, total=len(state.leases),
            matching=len(keys), visible=state.visible, offset=offset, limit=limit,
            filter=wanted, zones=zones, route_rules=_rules.decode(state.rules),
            logic_instances=len(msgspec.json.decode(state.logic)), management=managed,
            push_revision=token, server_time=wall, response_status=_SUCCESS))

    def _sorted_keys(self, state: ServiceState) -> list[str]:
        """The instance keys of a service in order, kept per service until it changes."""
        kept = self._sorted.get(state.key)
        if kept is not None and kept[0] == state.revision and kept[1] == len(state.leases):
            return kept[2]
        keys = sorted(state.leases)
        if len(self._sorted) >= _SORTED_KEPT:
            self._sorted.pop(next(iter(self._sorted)))
        self._sorted[state.key] = (state.revision, len(state.leases), keys)
        return keys

    def _instance(self, lease: Lease, now: float, reader: bool) -> ConsoleInstance:
        i = lease.instance
        operations = None
        if reader and self.management is not None:
            ops = self.management.operations
            found = {"instance": ops.instances.get((lease.service, lease.key)),
                     "server": ops.servers.get(lease.ip) if lease.ip else None,
                     "zone": ops.zones.get((lease.service, lease.zone))}
            operations = {kind: list(names) for kind, names in found.items() if names}
        return ConsoleInstance(
            instance_id=i.instance_id or lease.key, ip=i.ip, port=i.port, url=i.url,
            health_check_url=i.health_check_url, zone_id=i.zone_id, group_id=i.group_id,
            status=i.status, machine_name=i.machine_name, protocol=i.protocol,
            metadata=i.metadata, pulled_out=lease.hidden,
            lease_remaining_ms=int((lease.renewed + lease.ttl - now) * 1000),
            ttl_ms=int(lease.ttl * 1000), renewed_ms_ago=int((now - lease.renewed) * 1000),
            registered_time=lease.created_ms, legacy=lease.legacy, operations=operations)

    def _managed(self, service: str) -> ConsoleManaged | None:
        """Groups, route rules (staged and released weights) and zone operations of a
        service, from the management data this node applies."""
        management = self.management
        if management is None:
            return None
        groups = [g for g in management.groups if g.service_id == service]
        mine = {g.group_id for g in groups}
        rules = [r for r in management.route_rules if r.service_id == service]
        by_rule: dict[int | None, list[ConsoleRuleGroup]] = {}
        for link in management.route_rule_groups:
            if link.group_id in mine:
                by_rule.setdefault(link.route_rule_id, []).append(ConsoleRuleGroup(
                    route_rule_group_id=link.route_rule_group_id, group_id=link.group_id,
                    weight=link.weight, unreleased_weight=link.unreleased_weight))
        tags, members = management.tags_by_group, management.members_by_group
        operations = management.operations_by_group
        return ConsoleManaged(
            groups=[ConsoleGroup(
                group_id=g.group_id, name=g.name, zone_id=g.zone_id, app_id=g.app_id,
                status=g.status, description=g.description,
                tags=dict(tags[g.group_id]) if g.group_id in tags else None,
                members=list(members[g.group_id]) if g.group_id in members else None,
                operations=list(operations[g.group_id]) if g.group_id in operations else None)
                for g in sorted(groups, key=lambda g: (g.zone_id or "", g.name or ""))
                if g.group_id is not None],
            route_rules=[ConsoleRule(
                route_rule_id=r.route_rule_id, name=r.name, status=r.status,
                strategy=r.strategy, description=r.description,
                groups=by_rule.get(r.route_rule_id, []))
                for r in sorted(rules, key=lambda r: r.name or "")],
            zone_operations={zone: list(ops) for (s, zone), ops
                             in management.operations.zones.items() if s == service})

    # --- the caller ----------------------------------------------------------------------

    def whoami(self, request: Request) -> bytes:
        access = self.access
        token = access.token_of(request)
        roles = set(token[1] & {"read", "write"}) if token is not None else set()
        if access.actor(request, Role.READ) is not None:
            roles.add("read")  # open reads
        if access.actor(request, Role.ADMIN) is not None:
            roles.add("admin")
        return _encoder.encode(ConsoleWhoami(
            token=token[0] if token is not None else None, known=token is not None,
            roles=sorted(roles), open_reads=self.node.settings.management_open_reads,
            management=self.management is not None, region=self.node.settings.region,
            response_status=_SUCCESS))

    def __repr__(self) -> str:
        return f"ConsoleApi({self.index!r})"


def _peer(p: dict[str, Any]) -> ConsolePeer:
    lag = p["lag"]
    return ConsolePeer(
        url=p["url"], zone=p["zone"], status=p["status"],
        serves_registry=p["canServiceRegistry"], serves_discovery=p["canServiceDiscovery"],
        last_answer_time=p["lastAnswerTime"], last_error=p["lastError"], queued=p["queued"],
        sent=p["sent"], retried=p["retried"], lag_p99_ms=lag["p99Ms"], lag_samples=lag["samples"],
        dropped_overflow=p["droppedOverflow"], dropped_expired=p["droppedExpired"],
        dropped_failed=p["droppedFailed"])


def _safety(checker: SafeChecker, now: float, window: float, leases: int,
            s: Any) -> ConsoleSafety:
    """A checker's state, and why it holds expired leases or not, in words."""
    status = checker.status(now)
    pct, least = s.self_preservation_percentage, s.self_preservation_min_count
    seen = f"{status.count_last_window} renewals in the last {window:g} s"
    if not status.enabled:
        reason = "switched off: expired leases are removed whatever the renewals"
    elif not status.is_safe:
        reason = (f"holding expired leases: {seen}, below {pct} % of the peak of "
                  f"{status.max_count}")
    elif status.max_count < least:
        reason = (f"not holding: the peak of {status.max_count} renewals is below {least}, "
                  "too few to decide")
    else:
        reason = f"not holding: {seen}, at least {pct} % of the peak of {status.max_count}"
    return ConsoleSafety(enabled=status.enabled, holding=not status.is_safe, reason=reason,
                         renewals=status.count_last_window, peak=status.max_count,
                         percentage=pct, min_count=least, window_seconds=window, leases=leases)


def _store(status: dict[str, Any] | None, hidden: int) -> ConsoleStore:
    if status is None:
        return ConsoleStore(enabled=False, available=False, version=None, last_error="",
                            last_load_time=0, pulled_out={}, hidden_instances=hidden)
    return ConsoleStore(enabled=True, available=status["available"], version=status["version"],
                        last_error=status["lastError"], last_load_time=status["lastLoadTime"],
                        pulled_out=status["pulledOut"], hidden_instances=hidden)


def _text(value: str | None, name: str) -> str:
    text = (value or "").strip()
    if len(text) > 256 or not text.isprintable():
        raise BadRequest(f"{name} is longer than 256 characters or has control characters")
    return text


def _number(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or not value.strip():
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {value[:32]!r}") from None
    if not low <= number <= high:
        raise BadRequest(f"{name} must be from {low} to {high}, got {number}")
    return number


def routes(node: Node, push: PushServer, cluster: Cluster | None,
           management: Management | None, access: Access) -> dict[str, Route]:
    """The console's routes when it is on (`console` setting): its files under /console/*,
    the redirects of / and /console, and its JSON endpoints; none when it is off."""
    if node.settings.console != "on":
        return {}
    console = Console(shipped(), node.settings.context_path)
    api = ConsoleApi(node, push, cluster, management, access)
    out = {endpoint.path: bind(endpoint, console if endpoint in _PAGES else api)
           for endpoint in ENDPOINTS}
    out["/console/*"] = Route(frozenset({"GET", "HEAD"}), handler=console.serve,
                              reads_body=False)
    return out


_REDIRECT: Final = {302: "The web console is at /console/ (under the context path)"}
ROOT: Final = Endpoint(
    "/", GET, "Redirect to the web console", None, str,
    Console.redirect, content_type=_HTML, statuses=_REDIRECT, reads_body=False,
    bare_errors=True, description="Answers 302 to /console/ while the console is on "
    "(`console`); 404 when it is off.")
CONSOLE_ROOT: Final = Endpoint(
    "/console", GET, "Redirect to the web console", None, str,
    Console.redirect, content_type=_HTML, statuses=_REDIRECT, reads_body=False,
    bare_errors=True, description="The same as /.")
_PAGES: Final = (ROOT, CONSOLE_ROOT)
OVERVIEW: Final = Endpoint(
    f"{BASE}/overview.json", GET, "The node at a glance", None, ConsoleOverview,
    ConsoleApi.overview, reads_body=False, bare_errors=True,
    description="This node and its peers with their status, instance and service counts, "
    "self-preservation with its reason, replication per peer (queue, lag p99 over a minute, "
    "drops), the management database, rate-limit refusals, event-loop lag over 10 s and push "
    "sessions; built at most twice a second and shared by every caller.")
SERVICES: Final = Endpoint(
    f"{BASE}/services.json", GET, "Services by id prefix, a page at a time", None,
    ConsoleServices, ConsoleApi.services, reads_body=False, bare_errors=True,
    query=(Query("prefix", {"type": "string"}, "Service id prefix (any case); none means "
                 "every service."),
           Query("offset", {"type": "integer", "minimum": 0}, "Services to skip (0)."),
           Query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                 "Services in the page (50).")),
    description="Services in id order with their instance counts (`visible`: those "
    "discovery shows); `total` is how many match the prefix.")
SERVICE: Final = Endpoint(
    f"{BASE}/service.json", GET, "One service and a page of its instances", None,
    ConsoleService, ConsoleApi.service, reads_body=False, bare_errors=True,
    query=(Query("serviceId", {"type": "string"}, "The service.", required=True),
           Query("filter", {"type": "string"}, "Only instances whose id or ip holds this "
                 "text (any case)."),
           Query("offset", {"type": "integer", "minimum": 0}, "Instances to skip (0)."),
           Query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                 "Instances in the page (100).")),
    description="Every registered instance (pulled out or not) in id order with its lease "
    "(milliseconds left; negative while self-preservation holds it), zone, group and metadata; "
    "instance counts by zone; the route rules discovery shows; `pushRevision`, the token to "
    "subscribe with on /ws/discovery/instance-change so that no change after this answer is "
    "missed. With the read role: each instance's operations, and the service's groups and "
    "route rules with staged and released weights.")
WHOAMI: Final = Endpoint(
    f"{BASE}/whoami.json", GET, "What the caller's bearer token may do", None, ConsoleWhoami,
    ConsoleApi.whoami, reads_body=False, bare_errors=True,
    description="The name of the node's token the `Authorization: Bearer` header carries "
    "(`known` false for none or an unknown one) and the roles the caller has: `read` and "
    "`write` of the management API, `admin` for the admin switches.")
ENDPOINTS: Final = (ROOT, CONSOLE_ROOT, OVERVIEW, SERVICES, SERVICE, WHOAMI)
