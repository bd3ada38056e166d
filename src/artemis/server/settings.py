"""Node settings: defaults, then a TOML file, then `ARTEMIS_*` environment variables, then flags.

Each later source overrides the earlier ones. The environment is passed in as a mapping; nothing
here reads `os.environ` by itself. Every setting is described once, in `SETTINGS`, and that
description feeds the `artemis server` flags, its `--help` and docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from artemis.core.membership import PeersError, parse_peers
from artemis.core.ownership import MODES, Scope
from artemis.server.masking import mask_url, url_password
from artemis.server.tokens import (
    MIN_SECRET,
    cluster_secret_problem,
    parse_token_list,
    parse_tokens,
)

__all__ = ["SETTINGS", "Settings", "SettingsError", "env_name", "flag_name"]

ENV_PREFIX: Final = "ARTEMIS_"

RATE_LIMIT_DEFAULTS: Final[dict[str, int]] = {
    # limiter -> default limit per 10 s; limiter.identity -> limit of one operation (§5.5)
    "registry": 100_000,
    "replication": 1_000_000,
    "cluster": 10_000,
    "status": 30,
    "status.get-leases": 10,
}

# The families of endpoints limited per client (each with its own window per client), and the
# default cap of a family whose per-operation limits are below rate_limit_per_client.
CLIENT_RATE_LIMIT_FAMILIES: Final = ("registry", "discovery", "cluster", "status")
CLIENT_RATE_LIMIT_CAPS: Final[dict[str, int]] = {"cluster": 2_000}


class SettingsError(ValueError):
    """A setting has a value it cannot take; the message names the setting and the source."""


def _doc(text: str, **extra: Any) -> dict[str, Any]:
    return {"doc": text, **extra}


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata=_doc("Address to listen on."))
    port: int = field(default=8080, metadata=_doc("TCP port to listen on.", lo=0, hi=65535))
    url: str = field(default="", metadata=_doc(
        "URL at which clients reach this node, reported by up-*-nodes.json "
        "(default: http://HOST:PORT plus the context path)."))
    region: str = field(default="default", metadata=_doc(
        "Region of this node; instances and lookups must name the same region."))
    zone: str = field(default="default", metadata=_doc("Zone of this node inside its region."))
    context_path: str = field(default="", metadata=_doc(
        "Path prefix of every endpoint, for example /artemis-web."))
    lease_ttl: float = field(default=20.0, metadata=_doc(
        "Seconds an instance stays registered without a heartbeat.", lo=1.0, hi=604_800.0))
    legacy_lease_ttl: float = field(default=90.0, metadata=_doc(
        "Lease of instances whose metadata has java_registry.", lo=1.0, hi=604_800.0))
    max_lease_ttl: float = field(default=300.0, metadata=_doc(
        "Longest lease an instance may state for itself (metadata artemis.lease_ttl, or a "
        "Eureka client's leaseInfo.durationInSecs); a longer one is cut to this.",
        lo=1.0, hi=604_800.0))
    sweep_interval: float = field(default=0.1, metadata=_doc(
        "Seconds between two looks for expired leases.", lo=0.01, hi=5.0))
    pause_threshold: float = field(default=2.0, metadata=_doc(
        "Seconds without a run of the node's own sweeper after which the gap counts as the "
        "node's own pause (stopped, stalled VM or loop): live leases get the gap back instead "
        "of expiring (0: off; else at least twice sweep_interval).", lo=0.0, hi=3600.0))
    self_preservation: bool = field(default=True, metadata=_doc(
        "Keep expired leases when renewals drop suddenly (can also be switched at run time)."))
    self_preservation_window: float = field(default=10.0, metadata=_doc(
        "Seconds over which renewals are counted (10-300).", lo=10.0, hi=300.0))
    self_preservation_percentage: int = field(default=85, metadata=_doc(
        "Below this share (%) of the peak renewal count the node holds expired leases.",
        lo=50, hi=100))
    self_preservation_min_count: int = field(default=50, metadata=_doc(
        "No decision while the peak renewal count is below this.", lo=0))
    self_preservation_reset_interval: float = field(default=600.0, metadata=_doc(
        "Seconds after which a stale peak drops to the current count.", lo=60.0))
    legacy_self_preservation_window: float = field(default=60.0, metadata=_doc(
        "Renewal window of the legacy (java_registry) leases.", lo=10.0, hi=300.0))
    allow_registry_from_other_zone: bool = field(default=True, metadata=_doc(
        "Accept instances whose zoneId differs from this node's zone."))
    allow_discovery_from_other_zone: bool = field(default=True, metadata=_doc(
        "Answer lookups whose zoneId differs from this node's zone."))
    snapshot_interval: float = field(default=1.0, metadata=_doc(
        "Seconds between two discovery snapshots (a snapshot is taken only after a change).",
        lo=0.05, hi=300.0))
    snapshot_count: int = field(default=60, metadata=_doc(
        "How many snapshots are kept; a delta can start from any of them.", lo=1, hi=10_000))
    change_log_size: int = field(default=200_000, metadata=_doc(
        "How many changes the node remembers for deltas.", lo=1_000, hi=10_000_000))
    max_connections: int = field(default=16_384, metadata=_doc(
        "Most connections (HTTP and WebSocket) the node serves at once; more wait in the "
        "listen backlog until one closes.", lo=64, hi=1_000_000))
    max_connections_per_client: int = field(default=512, metadata=_doc(
        "Most connections one client address may hold; the newest above it are closed within "
        "connection_check_interval (0: no limit; Linux only).", lo=0))
    connection_check_interval: float = field(default=1.0, metadata=_doc(
        "Seconds between two counts of the connections per client address (longer when one "
        "count takes over 2 % of it, as at tens of thousands of connections).",
        lo=0.1, hi=60.0))
    idle_timeout: float = field(default=20.0, metadata=_doc(
        "Seconds a connection may stay silent before its request's headers are complete, and "
        "between two requests of a keep-alive connection; then it is closed.",
        lo=1.0, hi=600.0))
    listen_backlog: int = field(default=4096, metadata=_doc(
        "Connections the kernel queues before the node accepts them (capped by the "
        "kernel's somaxconn).", lo=16, hi=65_535))
    max_header_bytes: int = field(default=64 * 1024, metadata=_doc(
        "Largest request line plus headers accepted; a larger request is refused and its "
        "connection closed.", lo=8192, hi=16 * 1024 * 1024))
    http2: bool = field(default=False, metadata=_doc(
        "Also speak HTTP/2 (cleartext upgrade, or ALPN with TLS); off: HTTP/1.1 only."))
    max_body_bytes: int = field(default=4 * 1024 * 1024, metadata=_doc(
        "Largest request body accepted, after gzip is undone.", lo=1024))
    max_batch: int = field(default=5_000, metadata=_doc(
        "Most instances in one register, heartbeat or unregister request.", lo=1))
    max_instances: int = field(default=1_000_000, metadata=_doc(
        "Most instances the node holds; a register of a new instance beyond it fails for that "
        "instance with rate-limited (renewals and instances already held are never refused).",
        lo=1))
    max_services: int = field(default=100_000, metadata=_doc(
        "Most services the node holds; an instance of a new service beyond it is refused "
        "likewise.", lo=1))
    max_instances_per_client: int = field(default=100_000, metadata=_doc(
        "Most instances one client address may register on this node (peers' writes are not "
        "counted; 0: no limit).", lo=0))
    max_services_per_client: int = field(default=10_000, metadata=_doc(
        "Most services one client address may hold instances of on this node (0: no limit).",
        lo=0))
    change_log_bytes: int = field(default=128 * 1024 * 1024, metadata=_doc(
        "Most bytes the change log keeps (each change counted as its instance's JSON plus 256); "
        "the oldest changes leave first, and a delta or resume from them fetches everything "
        "again.", lo=1024 * 1024))
    gzip_min_bytes: int = field(default=8192, metadata=_doc(
        "Answers at least this large are gzipped for clients that accept gzip.", lo=0))
    ws_session_ttl: float = field(default=360.0, metadata=_doc(
        "Seconds after which a WebSocket session is closed, so clients spread over the nodes "
        "again (the original's 6 minutes).", lo=1.0, hi=86_400.0))
    ws_max_sessions: int = field(default=10_000, metadata=_doc(
        "Most WebSocket sessions (push and heartbeat) a node holds at once.", lo=1))
    ws_max_subscriptions: int = field(default=1_000, metadata=_doc(
        "Most services one push session subscribes to.", lo=1))
    ws_max_frame_bytes: int = field(default=1024 * 1024, metadata=_doc(
        "Largest WebSocket message accepted from a client.", lo=1024))
    ws_send_queue: int = field(default=1_000, metadata=_doc(
        "Changes queued for one push session before its queued changes are replaced by "
        "reloads; a session still behind after that is closed.", lo=2))
    ws_send_queue_bytes: int = field(default=16 * 1024 * 1024, metadata=_doc(
        "Bytes of change frames queued for one push session before its queued changes are "
        "replaced by reloads, as for ws_send_queue.", lo=16_384, hi=1024 * 1024 * 1024))
    ws_send_timeout: float = field(default=10.0, metadata=_doc(
        "Seconds one push frame may take to send before its session is closed as too slow.",
        lo=0.1, hi=600.0))
    ws_coalesce_ms: int = field(default=0, metadata=_doc(
        "Milliseconds a push session waits to batch a burst of changes, sending only the last "
        "change of each instance (0: off).", lo=0, hi=10_000))
    peers: str = field(default="", metadata=_doc(
        "The cluster's nodes, as the original writes them: zone:url,url;zone2:url (this node "
        "finds itself by its url; a part without zone: is in this node's zone)."))
    peers_dns: str = field(default="", metadata=_doc(
        "NAME:PORT whose DNS addresses are the cluster's nodes (a headless service), all in "
        "this node's zone; resolved again every peers_dns_interval."))
    peers_dns_interval: float = field(default=30.0, metadata=_doc(
        "Seconds between two resolutions of peers_dns.", lo=1.0, hi=86_400.0))
    peer_status_interval: float = field(default=1.0, metadata=_doc(
        "Seconds between two polls of every peer's node status.", lo=0.1, hi=300.0))
    peer_timeout: float = field(default=2.0, metadata=_doc(
        "Seconds a peer has to answer a status poll or a replication request.",
        lo=0.05, hi=60.0))
    cluster_secret: str = field(default="", metadata=_doc(
        "Shared secret of the cluster, the same on every node (at least 16 characters): sent "
        "to peers on every call (x-artemis-cluster-secret) and required from them on the "
        "replication, bootstrap and repair endpoints. Required with peers unless "
        "cluster_insecure.", secret=True))
    cluster_insecure: bool = field(default=False, metadata=_doc(
        "Accept peer calls without the cluster secret (anyone who reaches the node can then "
        "write to its registry as a peer): only to run next to original Java nodes, which "
        "cannot send one. Logged as a warning and shown as peerAuth insecure."))
    force_status: str = field(default="auto", metadata=_doc(
        "auto (bootstrap decides), up (serve at once, even before a copy) or down (serve "
        "nothing); also switchable at run time by /api/admin/node-status.json.",
        choices=("auto", "up", "down")))
    bootstrap_timeout: float = field(default=10.0, metadata=_doc(
        "Seconds a starting node waits for a peer to be up (to copy its registry) when some "
        "peers do not answer; then it comes up with what it has.", lo=0.0, hi=3_600.0))
    replication_queue: int = field(default=100_000, metadata=_doc(
        "Replication tasks queued for one peer; when full the oldest is dropped.", lo=100))
    replication_batch: int = field(default=1_000, metadata=_doc(
        "Most instances sent to a peer in one replication request.", lo=1, hi=100_000))
    replication_task_ttl: float = field(default=10.0, metadata=_doc(
        "Seconds a replication task may wait (queued or retried) before it is dropped.",
        lo=0.5, hi=600.0))
    replication_retries: int = field(default=5, metadata=_doc(
        "Attempts of one replication task before it is dropped.", lo=1, hi=100))
    replication_backoff: float = field(default=0.05, metadata=_doc(
        "Seconds of the first pause after a failed replication request; it doubles per "
        "failure in a row (with full jitter) up to 5 s.", lo=0.001, hi=60.0))
    anti_entropy_interval: float = field(default=5.0, metadata=_doc(
        "Seconds between two checksum comparisons with each peer, which repair any difference "
        "(0: off).", lo=0.0, hi=3_600.0))
    wall_clock_offset: float = field(default=0.0, metadata=_doc(
        "Seconds added to this node's wall clock (changeTime, versions, registration times); "
        "for tests of clock skew between nodes, leave 0.", lo=-86_400.0, hi=86_400.0))
    database: str = field(default="", metadata=_doc(
        "Management database (pull-outs and their audit log), shared by the cluster: "
        "sqlite:///path/file.db (embedded, no server), mysql://user@host/db or "
        "postgresql://host/db; empty: no management.", secret_url=True))
    management_poll_interval: float = field(default=0.25, metadata=_doc(
        "Seconds between two looks at the management database's version; a change made on "
        "any node is applied within about this long.", lo=0.05, hi=60.0))
    management_timeout: float = field(default=2.0, metadata=_doc(
        "Seconds a management database call may take before the API answers "
        "service-unavailable.", lo=0.1, hi=60.0))
    management_start_timeout: float = field(default=10.0, metadata=_doc(
        "Seconds a starting node waits for its management data before it comes up with "
        "nothing pulled out.", lo=0.0, hi=3_600.0))
    tokens: str = field(default="", metadata=_doc(
        "API tokens: NAME:ROLES:SECRET, comma-separated; ROLES joined by +: read and write "
        "(the management API) and register=SERVICES (register, heartbeat and unregister the "
        "services named: ids separated by a vertical bar, orders.* a prefix, * all), for "
        "example ci:read+register=orders.*:SECRET; SECRET at least 16 characters (the "
        "admin_token is a token with every role).", secret=True))
    registration_mode: str = field(default="open", metadata=_doc(
        "Who may register, heartbeat and unregister: open (anyone, but a live instance is "
        "owned by who registered it), token (a token with the register role for the "
        "service) or permissive (anyone replaces anything, as the original); see "
        "docs/security.md.", choices=MODES))
    management_open_reads: bool = field(default=False, metadata=_doc(
        "Let management reads (operations, audit log) through without a token."))
    rate_limit_enabled: bool = field(default=True, metadata=_doc(
        "Enforce the rate limits (per operation and per client)."))
    rate_limits: dict[str, int] = field(default_factory=dict, metadata=_doc(
        "Limits per 10 s: LIMITER=N or LIMITER.OPERATION=N, comma-separated "
        "(limiters: registry, replication, cluster, status).", kind="map"))
    rate_limit_per_client: int = field(default=20_000, metadata=_doc(
        "Most calls one client (its address, or its token when it sends one) may make per 10 s "
        "to each family of limited endpoints (registry writes with heartbeat frames, "
        "discovery, cluster node lists, status reads), besides the per-operation limits; "
        "peers are exempt (0: no per-client limit).", lo=0))
    rate_limits_per_client: dict[str, int] = field(default_factory=dict, metadata=_doc(
        "Per-client limits per 10 s of one family: FAMILY=N, comma-separated (families: "
        "registry, discovery, cluster, status; 0: none); unnamed families take "
        "rate_limit_per_client, except cluster at most 2000.", kind="map"))
    rate_limit_clients: int = field(default=16_384, metadata=_doc(
        "Most clients whose per-client windows a node keeps per family (about 600 bytes "
        "each); the least recently seen is forgotten beyond, and starts again with an empty "
        "window.", lo=16, hi=10_000_000))
    admin_token: str = field(default="", metadata=_doc(
        "Bearer token for the node's admin switches (at least 16 characters; it also has every "
        "role of tokens); without one they answer only 127.0.0.1.", secret=True))
    cors_origins: str = field(default="", metadata=_doc(
        "Browser origins allowed to call the API, comma-separated (https://console.example.com); "
        "an answer names the caller's Origin only when it is listed. Empty: no CORS headers, "
        "browsers on other origins cannot read the answers."))
    eureka: bool = field(default=True, metadata=_doc(
        "Serve the Eureka REST API under /eureka/ (and /eureka/v2/), so Eureka clients "
        "register and discover in this registry unchanged; see docs/eureka.md."))
    eureka_delta_window: float = field(default=180.0, metadata=_doc(
        "Seconds of changes a Eureka delta (/eureka/apps/delta) carries, as Eureka's "
        "retentionTimeInMSInDeltaQueue.", lo=10.0, hi=3_600.0))
    metrics: bool = field(default=True, metadata=_doc(
        "Serve Prometheus metrics at /metrics and time every request for them."))
    console: str = field(default="on", metadata=_doc(
        "Serve the web console at /console/ (and redirect / there): on or off.",
        choices=("on", "off")))
    log_format: str = field(default="console", metadata=_doc(
        "console (for people) or json (one object a line, for collectors).",
        choices=("console", "json")))
    tls_cert: str = field(default="", metadata=_doc(
        "PEM certificate file: serve HTTPS and WSS instead of HTTP and WS (with tls_key)."))
    tls_key: str = field(default="", metadata=_doc("PEM private key file of tls_cert."))
    tls_ca: str = field(default="", metadata=_doc(
        "PEM certificate authority file for mutual TLS (with tls_cert): every connection must "
        "present a certificate it signed, and this node trusts peer nodes only when their "
        "certificate is signed by it and presents tls_cert to them. Empty: no client "
        "certificates asked."))
    tls_min_version: str = field(default="1.2", metadata=_doc(
        "Oldest TLS version accepted: 1.2 (older Java clients) or 1.3.", choices=("1.2", "1.3")))
    gc_freeze: bool = field(default=True, metadata=_doc(
        "Move what survives the garbage collector's middle-generation passes out of its full "
        "passes (gc.freeze), so 10,000 WebSocket sessions do not make one pass stall the node "
        "for hundreds of milliseconds; see docs/operations.md."))
    gc_thaw_interval: float = field(default=3600.0, metadata=_doc(
        "Seconds between two full passes over everything frozen, which collect any cycle that "
        "died frozen (0: never).", lo=0.0, hi=604_800.0))
    shutdown_timeout: float = field(default=5.0, metadata=_doc(
        "Seconds a stopping node waits for requests in flight before it closes them.",
        lo=0.1, hi=600.0))
    log_level: str = field(default="info", metadata=_doc(
        "debug, info, warning or error.", choices=("debug", "info", "warning", "error")))

    # --- derived -------------------------------------------------------------------------

    @property
    def node_url(self) -> str:
        if self.url:
            return self.url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host}:{self.port}{self.context_path}"

    def rate_limit(self, limiter: str, identity: str | None = None) -> int:
        merged = {**RATE_LIMIT_DEFAULTS, **self.rate_limits}
        if identity is not None and f"{limiter}.{identity}" in merged:
            return merged[f"{limiter}.{identity}"]
        return merged[limiter]

    def client_rate_limit(self, family: str) -> int:
        """The per-client limit per 10 s of a family of endpoints (0: none)."""
        if family in self.rate_limits_per_client:
            return self.rate_limits_per_client[family]
        return min(self.rate_limit_per_client,
                   CLIENT_RATE_LIMIT_CAPS.get(family, self.rate_limit_per_client))

    def rate_limit_map(self, limiter: str) -> dict[str, int]:
        merged = {**RATE_LIMIT_DEFAULTS, **self.rate_limits}
        prefix = limiter + "."
        return {k[len(prefix):]: v for k, v in merged.items() if k.startswith(prefix)}

    def api_tokens(self) -> dict[str, tuple[frozenset[str], str]]:
        """Token name -> (roles, secret); the admin token is `admin` with every role."""
        tokens = parse_tokens(self.tokens) if self.tokens else {}
        if self.admin_token:
            tokens["admin"] = (frozenset({"read", "write", "register"}), self.admin_token)
        return tokens

    def register_scopes(self) -> dict[str, Scope]:
        """Token name -> the services its register role may write (the admin token: all)."""
        scopes = {name: token.scope for name, token in parse_token_list(self.tokens).items()
                  if token.scope is not None}
        if self.admin_token:
            scopes["admin"] = Scope.parse("*")
        return scopes

    def cors_allowed(self) -> tuple[str, ...]:
        """The origins of `cors_origins` (scheme://host[:port], no path), in order; ValueError
        naming the first that is not one."""
        origins: list[str] = []
        for part in self.cors_origins.split(","):
            origin = part.strip().rstrip("/")
            if not origin:
                continue
            scheme, sep, host = origin.partition("://")
            if (origin == "*" or not sep or scheme.lower() not in ("http", "https") or not host
                    or any(c in host for c in "/?#@ ") or not origin.isprintable()):
                raise ValueError(f"{part.strip()!r} is not an origin (scheme://host[:port])")
            if origin not in origins:
                origins.append(origin)
        return tuple(origins)

    def public(self) -> dict[str, Any]:
        """Every setting with its value, secrets masked (for /api/status/config.json)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret"):
                value = "***" if value else ""
            elif f.metadata.get("secret_url") and value:
                value = mask_url(value)
            out[f.name] = value
        return out

    # --- loading -------------------------------------------------------------------------

    @classmethod
    def load(cls, config_file: Path | str | None = None, env: Mapping[str, str] | None = None,
             overrides: Mapping[str, Any] | None = None) -> Settings:
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        if config_file:
            path = Path(config_file)
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
            for key, value in _flatten(data).items():
                name = key.replace("-", "_")
                values[name] = _convert(name, value, f"config file {path}")
                sources[name] = f"config file {path}"
        for name in SETTINGS:
            raw = (env or {}).get(env_name(name))
            if raw is not None and raw != "":
                values[name] = _convert(name, raw, f"environment variable {env_name(name)}")
                sources[name] = f"environment variable {env_name(name)}"
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = _convert(name, value, f"option {flag_name(name)}")
                sources[name] = f"option {flag_name(name)}"
        settings = cls(**values)
        settings._check(sources)
        return settings

    def _check(self, sources: Mapping[str, str]) -> None:
        def fail(name: str, problem: str) -> SettingsError:
            return SettingsError(f"{sources.get(name, 'default')}: {name} {problem}")

        if self.context_path and (not self.context_path.startswith("/")
                                  or self.context_path.endswith("/")):
            raise fail("context_path", f"must start with / and not end with one, "
                                       f"got {self.context_path!r}")
        for key in self.rate_limits:
            limiter = key.split(".", 1)[0]
            if limiter not in ("registry", "replication", "cluster", "status"):
                raise fail("rate_limits", f"names an unknown limiter {limiter!r} in {key!r} "
                                          "(limiters: registry, replication, cluster, status)")
        for key, value in self.rate_limits_per_client.items():
            if key not in CLIENT_RATE_LIMIT_FAMILIES or value < 0:
                raise fail("rate_limits_per_client", f"has {key}={value}: families are "
                           f"{', '.join(CLIENT_RATE_LIMIT_FAMILIES)}, limits 0 or more")
        if 0 < self.pause_threshold < 2 * self.sweep_interval:
            raise fail("pause_threshold", f"must be 0 or at least twice sweep_interval "
                                          f"({2 * self.sweep_interval}), "
                                          f"got {self.pause_threshold}")
        for name in ("region", "zone"):
            if not getattr(self, name).strip():
                raise fail(name, "must not be blank")
        if self.peers and self.peers_dns:
            raise fail("peers_dns", "cannot be set together with peers; choose one")
        if self.peers:
            try:
                parse_peers(self.peers, self.zone)
            except PeersError as exc:
                raise fail("peers", str(exc)) from None
        if self.cluster_secret:
            problem = cluster_secret_problem(self.cluster_secret)
            if problem:
                raise fail("cluster_secret", problem)
        if (self.peers or self.peers_dns) and not (self.cluster_secret or self.cluster_insecure):
            raise SettingsError(
                "a node with peers needs the cluster secret: set --cluster-secret (or "
                "ARTEMIS_CLUSTER_SECRET), the same on every node, at least 16 characters; or "
                "--cluster-insecure to accept peer calls without one (only next to original "
                "Java nodes, which cannot send one)")
        if self.peers_dns:
            name, sep, port = self.peers_dns.rpartition(":")
            if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
                raise fail("peers_dns", f"must be NAME:PORT, got {self.peers_dns!r}")
        if self.tokens:
            try:
                parse_tokens(self.tokens)
            except ValueError as exc:
                raise fail("tokens", str(exc)) from None
        if self.registration_mode == "token" and not self.register_scopes():
            raise fail("registration_mode", "token needs a token with the register role "
                       "(tokens NAME:register=SERVICES:SECRET, or admin_token): no one could "
                       "register")
        if self.admin_token and len(self.admin_token) < MIN_SECRET:
            raise fail("admin_token", f"must be at least {MIN_SECRET} characters")
        try:
            self.cors_allowed()
        except ValueError as exc:
            raise fail("cors_origins", str(exc)) from None
        if self.database and any(c in url_password(self.database) for c in "@/?#"):
            raise fail("database", "has a password holding @, /, ? or # unencoded, which "
                       "drivers read differently: percent-encode them (%40, %2F, %3F, %23)")
        if self.database and not any("write" in roles for roles, _ in self.api_tokens().values()):
            raise fail("database", "needs a token with the write role (admin_token, or tokens "
                                   "with NAME:write:SECRET): management writes are never open")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise fail("tls_cert" if not self.tls_cert else "tls_key",
                       "must be given together with tls_cert and tls_key both set")
        if self.tls_ca and not self.tls_cert:
            raise fail("tls_ca", "asks for mutual TLS, which needs tls_cert and tls_key")


SETTINGS: Final[dict[str, dataclasses.Field[Any]]] = {
    f.name: f for f in dataclasses.fields(Settings)
}


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`[lease] ttl = 5` and `lease_ttl = 5` mean the same; `[rate_limits]` stays a table."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}".replace("-", "_")
        if isinstance(value, dict) and name not in ("rate_limits", "rate_limits_per_client"):
            out.update(_flatten(value, name + "_"))
        else:
            out[name] = value
    return out


def _convert(name: str, value: Any, source: str) -> Any:
    f = SETTINGS.get(name)
    if f is None:
        raise SettingsError(f"{source}: unknown setting {name!r}")
    meta = f.metadata
    kind = meta.get("kind") or f.type
    try:
        if kind == "map":
            out: Any = _parse_map(value)
        elif kind == "bool":
            out = _parse_bool(value)
        elif kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            out = int(value)
        elif kind == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            out = float(value)
        else:
            if not isinstance(value, str):
                raise ValueError(value)
            out = value
    except (TypeError, ValueError):
        raise SettingsError(f"{source}: {name} must be {_kind_text(kind)}, got {value!r}") from None
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        if hi is None:
            bound = f"at least {lo}"
        elif lo is None:
            bound = f"at most {hi}"
        else:
            bound = f"between {lo} and {hi}"
        raise SettingsError(f"{source}: {name} must be {bound}, got {out!r}")
    choices = meta.get("choices")
    if choices and out not in choices:
        raise SettingsError(f"{source}: {name} must be one of {', '.join(choices)}, got {out!r}")
    return out


def _kind_text(kind: Any) -> str:
    return {"int": "a whole number", "float": "a number", "bool": "true or false",
            "map": "NAME=N pairs"}.get(str(kind), "text")


def _dotted(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`registry.heartbeat = 5` unquoted in TOML is a nested table: flatten it back to dots."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _parse_map(value: Any) -> dict[str, int]:
    if isinstance(value, Mapping):
        items = list(_dotted(value).items())
    else:
        items = []
        for part in str(value).split(","):
            if part.strip():
                key, sep, number = part.partition("=")
                if not sep:
                    raise ValueError(part)
                items.append((key.strip(), number.strip()))
    out: dict[str, int] = {}
    for key, number in items:
        if isinstance(number, bool):
            raise ValueError(number)
        limit = int(number)
        if limit < 0:
            raise ValueError(number)
        out[str(key)] = limit
    return out


def settings_table() -> str:
    """The Markdown table of every setting, as docs/configuration.md shows it."""
    rows = ["| setting | flag | environment | default | meaning |", "|---|---|---|---|---|"]
    for name, f in SETTINGS.items():
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        if f.metadata.get("secret") or default in ("", {}):
            shown = "(none)"
        elif isinstance(default, bool):
            shown = "true" if default else "false"
        else:
            shown = str(default)
        rows.append(f"| `{name}` | `{flag_name(name)}` | `{env_name(name)}` | {shown} | "
                    f"{f.metadata['doc']} |")
    return "\n".join(rows) + "\n"
