"""Prometheus metrics: counted on the hot path as plain integers, turned into metrics when scraped.

A request adds one to its endpoint's count and one to a latency bucket; an error answer adds one to
its endpoint's code. Nothing else happens per request: `Collector.collect()` reads these counters
and the node's state (instances, leases, push sessions, rate limiting, loop lag) when Prometheus
asks for /metrics.
"""

from __future__ import annotations

import gc
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from artemis.server.cluster import Cluster
    from artemis.server.cluster.credential import ClusterCredential
    from artemis.server.management import Management
    from artemis.server.node import Node
    from artemis.server.push import PushServer

__all__ = ["BUCKETS", "CONTENT_TYPE", "LAG_BUCKETS", "EndpointStats", "NodeCollector", "render",
           "scrape_registry"]

BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                  5.0)
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# Replication lag buckets (seconds): each peer link counts its acknowledged writes in them
LAG_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _buckets(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """A histogram's samples: the cumulative count at each bound, then at +Inf, from the
    counts of each bucket (the last: above every bound)."""
    labels = [*map(repr, bounds), "+Inf"]
    return list(zip(labels, accumulate(counts), strict=True))


class EndpointStats:
    """One endpoint's requests, latency buckets and error codes (plain numbers)."""

    __slots__ = ("buckets", "codes", "count", "name", "total_seconds")

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.total_seconds = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.codes: dict[str, int] = {}

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total_seconds += seconds
        self.buckets[bisect_left(BUCKETS, seconds)] += 1

    def error(self, code: str) -> None:
        self.codes[code] = self.codes.get(code, 0) + 1

    def __repr__(self) -> str:
        return f"EndpointStats({self.name!r}, count={self.count}, codes={self.codes})"


class NodeCollector(Collector):
    """Every metric of a node, computed at scrape time."""

    def __init__(self, node: Node, endpoints: dict[str, EndpointStats],
                 push: PushServer | None, cluster: Cluster | None = None,
                 management: Management | None = None,
                 peers: ClusterCredential | None = None) -> None:
        self.node = node
        self.endpoints = endpoints
        self.push = push
        self.cluster = cluster
        self.management = management
        self.peers = peers  # the cluster credential: peer calls refused

    def collect(self) -> Iterator[Metric]:
        yield from self._requests()
        yield from self._registry()
        yield from self._push()
        yield from self._cluster()
        yield from self._management()
        yield from self._runtime()

    def _requests(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("artemis_http_requests", "HTTP requests answered, by "
                                       "endpoint and Artemis error code",
                                       labels=["endpoint", "code"])
        latency = HistogramMetricFamily("artemis_http_request_duration_seconds",
                                        "Time to answer an HTTP request", labels=["endpoint"])
        for name, stats in sorted(self.endpoints.items()):
            if not stats.count:
                continue
            errors = 0
            for code, count in sorted(stats.codes.items()):
                requests.add_metric([name, code], count)
                errors += count
            requests.add_metric([name, "success"], max(0, stats.count - errors))
            latency.add_metric([name], _buckets(BUCKETS, stats.buckets), stats.total_seconds)
        yield requests
        yield latency

    def _registry(self) -> Iterator[Metric]:
        registry = self.node.registry
        instances = GaugeMetricFamily("artemis_instances", "Registered instances (leases)",
                                      labels=["lease"])
        instances.add_metric(["normal"], registry.lease_count)
        instances.add_metric(["legacy"], registry.legacy_lease_count)
        yield instances
        yield GaugeMetricFamily("artemis_services", "Services with at least one instance",
                                value=len(registry.services))
        yield CounterMetricFamily("artemis_evictions", "Leases removed because they expired",
                                  value=registry.evicted_total)
        yield CounterMetricFamily("artemis_heartbeat_data_mismatches", "Heartbeats whose "
                                  "instance differed from the lease held (a stale copy: a "
                                  "client is told to register again, a peer's data is taken)",
                                  value=registry.heartbeat_mismatches)
        yield CounterMetricFamily("artemis_node_pauses", "Pauses of the node itself (no run of "
                                  "its sweeper for over pause_threshold) given back to the "
                                  "leases", value=registry.pauses.count)
        yield CounterMetricFamily("artemis_node_paused_seconds", "Seconds of those pauses",
                                  value=registry.pauses.seconds_total)
        yield CounterMetricFamily("artemis_registry_changes", "Changes recorded (the revision)",
                                  value=registry.revision)
        safe = GaugeMetricFamily("artemis_self_preservation_safe", "1 when expired leases are "
                                 "evicted, 0 while self-preservation holds them",
                                 labels=["lease"])
        enabled = GaugeMetricFamily("artemis_self_preservation_enabled",
                                    "1 when self-preservation is on", labels=["lease"])
        now = self.node.clock.monotonic()
        renewals = GaugeMetricFamily("artemis_lease_renewals_last_window",
                                     "Renewals counted in the self-preservation window",
                                     labels=["lease"])
        for lease, checker in (("normal", registry.safe), ("legacy", registry.legacy_safe)):
            status = checker.status(now)
            safe.add_metric([lease], 1 if status.is_safe else 0)
            enabled.add_metric([lease], 1 if status.enabled else 0)
            renewals.add_metric([lease], status.count_last_window)
        yield safe
        yield enabled
        yield renewals
        limited = CounterMetricFamily("artemis_rate_limited", "Calls refused by a rate limit: "
                                      "scope operation (the operation's limit, every caller's) "
                                      "or client (the caller's own limit in the family)",
                                      labels=["limiter", "operation", "scope"])
        for name, limiter in sorted(self.node.limiters.items()):
            for operation, count in sorted(limiter.rejected.items()):
                limited.add_metric([name, operation, "operation"], count)
        for name, per_client in sorted(self.node.client_limiters.items()):
            for operation, count in sorted(per_client.rejected.items()):
                limited.add_metric([name, operation, "client"], count)
        yield limited
        clients = GaugeMetricFamily("artemis_rate_limit_clients", "Clients whose per-client "
                                    "rate-limit window the node keeps", labels=["limiter"])
        forgotten = CounterMetricFamily("artemis_rate_limit_clients_forgotten", "Per-client "
                                        "windows forgotten to stay within rate_limit_clients",
                                        labels=["limiter"])
        for name, per_client in sorted(self.node.client_limiters.items()):
            clients.add_metric([name], len(per_client))
            forgotten.add_metric([name], per_client.evicted)
        yield clients
        yield forgotten
        yield CounterMetricFamily("artemis_snapshots", "Discovery snapshots taken",
                                  value=self.node.snapshots_taken)
        yield from self._limits()
        up = GaugeMetricFamily("artemis_node_up", "1 when the node serves registry and "
                               "discovery")
        state = self.node.state
        up.add_metric([], 1 if state.serves_registry and state.serves_discovery else 0)
        yield up

    def _limits(self) -> Iterator[Metric]:
        """The caps on what the registry holds and what large answers cost."""
        registry = self.node.registry
        refused = CounterMetricFamily("artemis_registrations_refused", "New instances refused "
                                      "because a cap was reached, by cap", labels=["cap"])
        for cap in ("max_instances", "max_services", "max_instances_per_client",
                    "max_services_per_client"):
            refused.add_metric([cap], registry.refused.get(cap, 0))
        yield refused
        writes = CounterMetricFamily("artemis_writes_refused", "Client registry writes refused "
                                     "by registration_mode (core/ownership.py), by rule: owner "
                                     "(another writer's live instance, per instance), scope "
                                     "(a service outside the token's scope, per instance), "
                                     "token (no or unknown token, per request or WebSocket)",
                                     labels=["rule"])
        for rule, count in sorted(registry.ownership.refused.items()):
            writes.add_metric([rule], count)
        yield writes
        log = registry.log
        yield GaugeMetricFamily("artemis_change_log_entries", "Changes the change log keeps",
                                value=len(log))
        yield GaugeMetricFamily("artemis_change_log_bytes", "Bytes the change log keeps, as "
                                "change_log_bytes counts them", value=log.bytes)
        yield CounterMetricFamily("artemis_change_log_trimmed", "Changes dropped early to keep "
                                  "the change log within change_log_bytes", value=log.trimmed)
        shared = CounterMetricFamily("artemis_shared_answers", "Requests for a large answer "
                                     "(services, checksums, leases) answered by a build already "
                                     "under way", labels=["answer"])
        for name, count in sorted(self.node.shared_builds.items()):
            shared.add_metric([name], count)
        yield shared

    def _push(self) -> Iterator[Metric]:
        if self.push is None:
            return
        stats = self.push.stats()
        sessions = GaugeMetricFamily("artemis_websocket_sessions", "Open WebSocket sessions",
                                     labels=["kind"])
        sessions.add_metric(["discovery"], stats["discovery"])
        sessions.add_metric(["registry"], stats["registry"])
        yield sessions
        yield CounterMetricFamily("artemis_push_frames_sent", "Change frames sent to "
                                  "subscribers", value=stats["framesSent"])
        yield CounterMetricFamily("artemis_push_frames_queued", "Change frames queued for "
                                  "subscribers", value=stats["framesQueued"])
        yield CounterMetricFamily("artemis_push_frames_dropped", "Change frames replaced by "
                                  "a reload of their service because a session's queue was "
                                  "full", value=stats["framesDropped"])
        yield CounterMetricFamily("artemis_push_frames_replayed", "Change frames queued by "
                                  "resumes, from the change log", value=stats["framesReplayed"])
        yield CounterMetricFamily("artemis_push_sessions_dropped", "Push sessions closed "
                                  "because they could not keep up", value=stats["closedTooSlow"])
        yield CounterMetricFamily("artemis_websocket_heartbeat_frames", "Heartbeat frames "
                                  "answered", value=stats["heartbeatFrames"])

    def _cluster(self) -> Iterator[Metric]:
        if self.peers is not None:
            refused = CounterMetricFamily("artemis_peer_auth_refused", "Calls to the peer-only "
                                          "endpoints refused no-permission, by reason: alone "
                                          "(no peers), missing or wrong cluster secret",
                                          labels=["reason"])
            for reason, count in self.peers.refused.items():
                refused.add_metric([reason], count)
            yield refused
        cluster = self.cluster
        if cluster is None or not cluster.links:
            return
        now = self.node.clock.monotonic()
        up = GaugeMetricFamily("artemis_peer_up", "1 when a peer answered its last status poll "
                               "and serves registry", labels=["peer"])
        queued = GaugeMetricFamily("artemis_replication_queue_depth", "Replication tasks "
                                   "waiting for a peer", labels=["peer"])
        sent = CounterMetricFamily("artemis_replication_sent", "Writes a peer acknowledged",
                                   labels=["peer"])
        coalesced = CounterMetricFamily("artemis_replication_coalesced", "Writes merged into "
                                        "one already queued for the same instance",
                                        labels=["peer"])
        retried = CounterMetricFamily("artemis_replication_retried", "Writes queued again "
                                      "after a failed send", labels=["peer"])
        dropped = CounterMetricFamily("artemis_replication_dropped", "Writes given up, by "
                                      "reason", labels=["peer", "reason"])
        skipped = CounterMetricFamily("artemis_replication_skipped", "Writes not queued "
                                      "because the peer did not answer or was down",
                                      labels=["peer"])
        failures = CounterMetricFamily("artemis_replication_send_failures", "Replication "
                                       "requests that failed as a whole", labels=["peer"])
        lag = GaugeMetricFamily("artemis_replication_lag_seconds", "Time from a write here to "
                                "its acknowledgement by the peer, over the last minute",
                                labels=["peer", "quantile"])
        acknowledged = HistogramMetricFamily(
            "artemis_replication_ack_seconds", "Time from a write here to its acknowledgement "
            "by the peer, every acknowledged write", labels=["peer"])
        repairs = CounterMetricFamily("artemis_anti_entropy_repaired_instances", "Instances "
                                      "changed here by comparing with a peer", labels=["peer"])
        rounds = CounterMetricFamily("artemis_anti_entropy_rounds", "Checksum comparisons "
                                     "with a peer", labels=["peer"])
        for link in cluster.links.values():
            peer = [link.url]
            stats = link.queue.stats
            up.add_metric(peer, 1 if link.state.serves_registry else 0)
            queued.add_metric(peer, len(link.queue))
            sent.add_metric(peer, stats.sent)
            coalesced.add_metric(peer, stats.coalesced)
            retried.add_metric(peer, stats.retried)
            for reason, count in (("overflow", stats.dropped_overflow),
                                  ("expired", stats.dropped_expired),
                                  ("failed", stats.dropped_failed)):
                dropped.add_metric([link.url, reason], count)
            skipped.add_metric(peer, link.skipped)
            failures.add_metric(peer, stats.send_failures)
            summary = link.lag_summary(now)
            for quantile, key in (("0.5", "p50Ms"), ("0.99", "p99Ms"), ("1", "maxMs")):
                lag.add_metric([link.url, quantile], summary[key] / 1000)
            acknowledged.add_metric(peer, _buckets(LAG_BUCKETS, link.lag_counts),
                                    link.lag_seconds)
            repairs.add_metric(peer, link.repaired_instances)
            rounds.add_metric(peer, link.repair_rounds)
        yield from (up, queued, sent, coalesced, retried, dropped, skipped, failures, lag,
                    acknowledged, repairs, rounds)
        yield CounterMetricFamily("artemis_replication_cpu_seconds", "CPU time spent on "
                                  "replication, repair and bootstrap", value=cluster.cpu_seconds)

    def _management(self) -> Iterator[Metric]:
        management = self.management
        if management is None:
            return
        yield GaugeMetricFamily("artemis_management_available", "1 when the management "
                                "database answered the last call", value=int(management.available))
        yield GaugeMetricFamily("artemis_management_version", "Version of the management data "
                                "applied", value=management.loaded_version or 0)
        view = management.view
        pulled = GaugeMetricFamily("artemis_pulled_out", "Keys pulled out of discovery",
                                   labels=["kind"])
        pulled.add_metric(["instance"], len(view.instances))
        pulled.add_metric(["server"], len(view.servers))
        pulled.add_metric(["zone"], len(view.zones))
        yield pulled
        registry = self.node.registry
        yield GaugeMetricFamily("artemis_hidden_instances", "Registered instances that "
                                "management hides from discovery",
                                value=registry.instance_count - registry.visible_count)

    def _runtime(self) -> Iterator[Metric]:
        lag = self.node.lag.summary(60.0)
        loop = GaugeMetricFamily("artemis_event_loop_lag_seconds", "How late the event loop "
                                 "woke up over the last minute", labels=["quantile"])
        loop.add_metric(["0.5"], lag["p50Ms"] / 1000)
        loop.add_metric(["0.99"], lag["p99Ms"] / 1000)
        loop.add_metric(["1"], lag["maxMs"] / 1000)
        yield loop
        steps = GaugeMetricFamily("artemis_longest_step_seconds", "Longest uninterrupted step "
                                  "of background work and garbage collection (CPU time)",
                                  labels=["step"])
        for name, longest in sorted(self.node.steps.longest_cpu.items()):
            steps.add_metric([name], longest)
        yield steps
        collector = self.node.collector
        if collector is not None:
            yield GaugeMetricFamily("artemis_gc_frozen_objects", "Objects moved out of the "
                                    "garbage collector's full passes", value=gc.get_freeze_count())
            yield CounterMetricFamily("artemis_gc_thaws", "Full passes over every frozen "
                                      "object", value=collector.thaws)
        yield from self._connections()

    def _connections(self) -> Iterator[Metric]:
        stats = self.node.connections
        yield GaugeMetricFamily("artemis_connections", "Established client connections at the "
                                "last count", value=stats.open)
        yield GaugeMetricFamily("artemis_connections_busiest_client", "Connections of the "
                                "client address holding the most, at the last count",
                                value=stats.busiest_client)
        yield CounterMetricFamily("artemis_connections_closed_over_limit", "Connections "
                                  "closed because their client address held more than "
                                  "max_connections_per_client", value=stats.closed_over_limit)


def scrape_registry(node: Node, endpoints: dict[str, EndpointStats],
                    push: PushServer | None, cluster: Cluster | None = None,
                    management: Management | None = None,
                    peers: ClusterCredential | None = None) -> CollectorRegistry:
    """The registry /metrics renders: the node's collector and the process's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node, endpoints, push, cluster, management, peers))
    ProcessCollector(registry=registry)  # memory, CPU, open files of the node's process
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
