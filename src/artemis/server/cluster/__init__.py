"""The cluster shell: polls peers, bootstraps, replicates client writes and repairs differences.

The decisions live in the core (`core.cluster` for peers and bootstrap, `core.replication` for
the per-peer queues, `Registry.merge` for repairs); this module does the I/O around them:

  * peers come from `--peers` or from `--peers-dns` (resolved again every
    `peers_dns_interval`); a peer that answers with this node's own id is this node and is
    dropped from the list;
  * every `peer_status_interval` each peer's `/api/status/node.json` is polled; a peer that does
    not answer is `unknown`, and its replication queue is emptied (repair brings it up to date
    when it answers again, so a dead peer costs nothing but its polls);
  * a starting node copies the leases of an up peer (same zone first) and is then up
    (`core.cluster.bootstrap_plan` decides when it may come up without one);
  * every client write that succeeded is queued for every peer that answers and is not down;
    one sender per peer sends batches (one request per operation, all under way at once), so
    batches grow while a request is in flight and a quiet node sends at once;
  * every `anti_entropy_interval` the registry checksum is compared with each up peer's; when
    they differ, the services whose checksums differ are fetched and merged, and instances the
    peer still holds after this node unregistered them are unregistered there.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from artemis import wire
from artemis.core.membership import (
    PeerSpec,
    PeerState,
    bootstrap_plan,
    parse_peers,
    peers_from_addresses,
    split_self,
)
from artemis.core.node_status import DOWN, STARTING
from artemis.core.replication import (
    UNREGISTER,
    PeerQueue,
    QueueConfig,
    Task,
    instance_key,
    retryable,
)
from artemis.server.cluster.peers import AiohttpPeers, PeerClient, PeerError
from artemis.server.node import Node, drive_async, percentiles_ms
from artemis.wire import Instance

__all__ = ["NODE_ID_HEADER", "Cluster", "PeerLink"]

log = logging.getLogger("artemis.cluster")

NODE_ID_HEADER: Final = "x-artemis-node-id"
REPLICATION: Final = "/api/replication/registry"
_COPY_TIMEOUT: Final = 60.0  # seconds for a whole registry copy (bootstrap)
_MERGE_CHUNK: Final = 2_000  # copies merged between two yields to the event loop
_REPAIR_SERVICES: Final = 2_000  # services repaired from one peer per round
_LAG_KEEP: Final = 20_000
_GZIP_MIN: Final = 64 * 1024
_CLOSE_FLUSH: Final = 1.0  # seconds a stopping node spends sending what is still queued


def _describe(exc: Exception) -> str:
    """A failure as `lastError` shows it (PeerError messages already name their cause)."""
    text = str(exc) if isinstance(exc, PeerError) else f"{type(exc).__name__}: {exc}"
    return text[:300]


def _checksum_text(value: int) -> str:
    return f"{value:016x}"


@dataclass(slots=True)
class PeerLink:
    """One peer: its status as last polled, its replication queue, and what went on."""

    spec: PeerSpec
    queue: PeerQueue
    state: PeerState = field(default_factory=PeerState)
    polled_ms: int = 0  # wall clock of the last answer
    last_error: str = ""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sender: asyncio.Task[None] | None = None
    lag: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=_LAG_KEEP))
    skipped: int = 0  # instances not queued because the peer did not answer or was down
    requests: int = 0
    repair_rounds: int = 0
    repaired_services: int = 0
    repaired_instances: int = 0
    stale_unregistered: int = 0
    in_sync_rounds: int = 0

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def target(self) -> bool:
        """Whether writes are queued for this peer: it answered and is not down (a starting
        peer takes replication while it copies, so it misses nothing)."""
        return self.state.answered and self.state.status != DOWN

    def lag_summary(self, now: float, window: float = 60.0) -> dict[str, float]:
        return percentiles_ms(lag for when, lag in self.lag if now - when <= window)


class Cluster:
    """The node's view of its cluster and the work it does with it (see the module doc)."""

    def __init__(self, node: Node, client: PeerClient | None = None,
                 resolve: Callable[[str, int], Any] | None = None) -> None:
        self.node = node
        s = node.settings
        self.settings = s
        self.node_id = os.urandom(8).hex()
        self.queue_config = QueueConfig(limit=s.replication_queue, ttl=s.replication_task_ttl,
                                        max_attempts=s.replication_retries,
                                        backoff=s.replication_backoff)
        self.links: dict[str, PeerLink] = {}
        self.me: PeerSpec | None = None
        self.not_me: set[str] = set()  # URLs that answered with this node's id
        self._client = client
        self._resolve = resolve or _resolve
        self.polled = asyncio.Event()  # set after the first poll that knew the peers
        self._resolved = not s.peers_dns  # DNS peers: after the first resolution
        self.bootstrap: dict[str, Any] = {"state": "not started"}
        self.cpu_seconds = 0.0  # CPU time of replication, repair and bootstrap on the loop
        self.tracing: Any = None  # set by the runner when requests are traced
        self._running = False
        if s.peers:
            self.set_peers(parse_peers(s.peers, s.zone))
        configured = bool(s.peers or s.peers_dns)
        if not configured:
            self.bootstrap = {"state": "done", "reason": "no peers: a cluster of one"}
        node.bootstraps = configured
        node.cluster = self
        if configured:
            node.replicate = self.replicate
            node.add_task("cluster", self.run)
            node.on_close(self.close)

    # --- peers ---------------------------------------------------------------------------

    def set_peers(self, peers: Sequence[PeerSpec]) -> None:
        """Take a new list of the cluster's nodes (this node among them or not)."""
        me, others = split_self(peers, self.settings.node_url)
        self.me = me
        wanted = {p.url: p for p in others if p.url not in self.not_me}
        for url in list(self.links):
            if url not in wanted:
                link = self.links.pop(url)
                if link.sender is not None:
                    link.sender.cancel()
                log.info("peer %s left the configuration", url)
        for url, spec in wanted.items():
            if url not in self.links:
                self.links[url] = PeerLink(spec, PeerQueue(self.queue_config))
                log.info("peer %s (zone %s) joined the configuration", url, spec.zone)
            elif self.links[url].spec != spec:
                self.links[url].spec = spec
        if self._running:
            self._start_senders()

    @property
    def client(self) -> PeerClient:
        if self._client is None:
            self._client = AiohttpPeers({"content-type": "application/json",
                                         NODE_ID_HEADER: self.node_id})
        return self._client

    # --- run -----------------------------------------------------------------------------

    async def run(self) -> None:
        self._running = True
        self._start_senders()
        loops = [self._poll_loop(), self._bootstrap_loop()]
        if self.settings.peers_dns:
            loops.append(self._dns_loop())
        if self.settings.anti_entropy_interval > 0:
            loops.append(self._repair_loop())
        await asyncio.gather(*loops)

    async def close(self) -> None:
        """The node is stopping: hand peers what is still queued (for at most a second), then
        stop the senders and close the connections."""
        self._running = False
        for link in self.links.values():
            if link.sender is not None:
                link.sender.cancel()
        queued = sum(len(link.queue) for link in self.links.values())
        if queued:
            try:
                await asyncio.wait_for(self.flush(), _CLOSE_FLUSH)
            except (TimeoutError, PeerError):
                log.warning("stopping with %d replication tasks not sent; peers repair them",
                            sum(len(link.queue) for link in self.links.values()))
        if self._client is not None:
            await self._client.close()

    def _start_senders(self) -> None:
        for link in self.links.values():
            if link.sender is None or link.sender.done():
                link.sender = asyncio.create_task(self._send_loop(link),
                                                  name=f"replication to {link.url}")

    async def _dns_loop(self) -> None:
        name, _, port = self.settings.peers_dns.rpartition(":")
        while True:
            try:
                addresses = await self._resolve(name, int(port))
                s = self.settings
                scheme = "https" if s.tls_cert else "http"
                self.set_peers(peers_from_addresses(addresses, int(port), s.zone, scheme,
                                                    s.context_path))
            except OSError as exc:
                log.warning("cannot resolve peers %s: %s; keeping %d known peers",
                            self.settings.peers_dns, exc, len(self.links))
            self._resolved = True
            await _guarded(self.poll_once(), "peer status poll")
            await asyncio.sleep(self.settings.peers_dns_interval)

    # --- status polling ------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while True:
            await _guarded(self.poll_once(), "peer status poll")
            await asyncio.sleep(self.settings.peer_status_interval)

    async def poll_once(self) -> None:
        links = list(self.links.values())
        await asyncio.gather(*(self._poll(link) for link in links))
        if self._resolved:
            self.polled.set()

    async def _poll(self, link: PeerLink) -> None:
        try:
            response = await self.client.post(link.url + "/api/status/node.json", b"{}", {},
                                              self.settings.peer_timeout)
            if response.headers.get(NODE_ID_HEADER) == self.node_id:
                self._found_self(link)
                return
            answer = wire.decode(response.body, wire.GetClusterNodeStatusResponse)
            status = answer.node_status
            if response.status != 200 or status is None:
                raise ValueError(f"HTTP {response.status}")
            state = PeerState(status.status, status.can_service_registry,
                              status.can_service_discovery,
                              status.allow_registry_from_other_zone,
                              status.allow_discovery_from_other_zone)
            link.polled_ms = self.node.clock.wall_ms()
            link.last_error = ""
        except (PeerError, wire.DecodeError, ValueError) as exc:
            state = PeerState()
            link.last_error = _describe(exc)
        if state != link.state:
            log.info("peer %s is now %s (was %s)", link.url, state.status, link.state.status)
            link.state = state
        if not link.target and len(link.queue):
            dropped = link.queue.clear()
            log.info("peer %s does not answer: %d queued writes dropped (repair will bring it "
                     "up to date)", link.url, dropped)

    def _found_self(self, link: PeerLink) -> None:
        log.info("%s is this node: not a peer", link.url)
        self.not_me.add(link.url)
        self.links.pop(link.url, None)
        if link.sender is not None:
            link.sender.cancel()

    # --- bootstrap -----------------------------------------------------------------------

    async def _bootstrap_loop(self) -> None:
        while True:
            if self.node.state.status == STARTING and not self.node.up_pending:
                await _guarded(self._bootstrap(), "bootstrap")
            await asyncio.sleep(0.2)

    async def _bootstrap(self) -> None:
        node = self.node
        started = node.clock.monotonic()
        self.bootstrap = {"state": "waiting for peers"}
        await self.polled.wait()
        while node.state.status == STARTING and not node.up_pending:
            if await self.bootstrap_step(node.clock.monotonic() - started):
                return
            await asyncio.sleep(self.settings.peer_status_interval)

    async def bootstrap_step(self, waited: float) -> bool:
        """One bootstrap attempt of a starting node `waited` seconds after it started: copy
        from an up peer or come up as the plan says; True once the node is up."""
        node = self.node
        specs = [link.spec for link in self.links.values()]
        states = {link.url: link.state for link in self.links.values()}
        plan = bootstrap_plan(specs, states, self.settings.zone, waited,
                              self.settings.bootstrap_timeout)
        for source in plan.sources:
            link = self.links.get(source.url)
            if link is None:
                continue
            started = node.clock.monotonic()
            copied = await self._copy_from(link)
            if copied is not None:
                self._come_up(f"copied {copied} instances from {source.url}", source=source.url,
                              instances=copied,
                              seconds=round(node.clock.monotonic() - started, 3))
                return True
        if plan.come_up:
            self._come_up(plan.reason, waited=round(waited, 3))
            return True
        self.bootstrap = {"state": plan.reason if not plan.sources
                          else "every up peer failed; trying again"}
        return False

    def _come_up(self, reason: str, **facts: Any) -> None:
        if self.node.state.status == STARTING:
            self.node.mark_up()  # up now, or once management data is loaded
        self.bootstrap = {"state": "done", "reason": reason, **facts}
        log.info("node is up: %s", reason)

    async def _copy_from(self, link: PeerLink) -> int | None:
        """Copy every lease of `link`'s node; the number copied, or None if it failed."""
        asked = self.node.clock.monotonic()
        try:
            copies = await self._leases(link, None)
        except (PeerError, wire.DecodeError, ValueError) as exc:
            log.warning("bootstrap from %s failed: %s", link.url, exc)
            return None
        await self._merge(link, copies, asked)
        return len(copies)

    # --- replication ---------------------------------------------------------------------

    def replicate(self, operation: str, instances: Sequence[Instance]) -> None:
        """Queue a client write that succeeded here for every peer that takes writes."""
        now = self.node.clock.monotonic()
        for link in self.links.values():
            if link.target:
                link.queue.submit(operation, instances, now)
                link.wake.set()
            else:
                link.skipped += len(instances)

    async def flush(self) -> None:
        """Send everything queued now, to every peer, ignoring backoff (tests, shutdown)."""
        for link in list(self.links.values()):
            while len(link.queue):
                tasks = link.queue.take(self.settings.replication_batch,
                                        self.node.clock.monotonic())
                if tasks:
                    await self._send(link, tasks)

    async def _send_loop(self, link: PeerLink) -> None:
        queue = link.queue
        clock = self.node.clock
        batch = self.settings.replication_batch
        while True:
            await link.wake.wait()
            link.wake.clear()
            while len(queue):
                now = clock.monotonic()
                if queue.ready_at > now:
                    await asyncio.sleep(queue.ready_at - now)
                    continue
                if not link.target:
                    queue.clear()  # the peer stopped answering: repair will bring it up to date
                    break
                tasks = queue.take(batch, now)
                if tasks:
                    await _guarded(self._send(link, tasks), f"replication to {link.url}")

    async def _send(self, link: PeerLink, tasks: list[Task]) -> None:
        groups: dict[str, list[Task]] = {}
        for task in tasks:
            groups.setdefault(task.operation, []).append(task)
        results = await asyncio.gather(*(self._send_group(link, op, group)
                                         for op, group in groups.items()))
        now = self.node.clock.monotonic()
        if all(results):
            link.queue.sent_ok()
        else:
            delay = link.queue.send_failed(now)
            log.debug("replication to %s failed; next attempt in %.3f s", link.url, delay)

    async def _send_group(self, link: PeerLink, operation: str, tasks: list[Task]) -> bool:
        """Send one operation's tasks; False if the peer must be backed off."""
        cpu = time.thread_time()
        body = wire.encode(wire.InstancesRequest(instances=[t.instance for t in tasks]))
        headers: dict[str, str] = {}
        if len(body) >= _GZIP_MIN:
            body = gzip.compress(body, compresslevel=1)
            headers["content-encoding"] = "gzip"
        url = f"{link.url}{REPLICATION}/{operation}.json"
        span, trace_headers = (self.tracing.start_client(f"replicate {operation}", url)
                               if self.tracing is not None else (None, {}))
        headers.update(trace_headers)
        self.cpu_seconds += time.thread_time() - cpu
        link.requests += 1
        status = 0
        try:
            response = await self.client.post(url, body, headers, self.settings.peer_timeout)
            status = response.status
            cpu = time.thread_time()
            answer = wire.decode(response.body, wire.InstancesResponse)
        except (PeerError, wire.DecodeError) as exc:
            link.last_error = _describe(exc)
            self._retry(link, tasks)
            return False
        finally:
            if span is not None:
                self.tracing.end(span, status)
        now = self.node.clock.monotonic()
        code = answer.response_status.error_code
        ok = True
        if code == "success":
            done = tasks
        elif code == "partial_fail":
            failed = {instance_key(f.instance): f.error_code
                      for f in answer.failed_instances or () if f.instance is not None}
            done, again, lost = [], [], []
            for task in tasks:
                problem = failed.get(instance_key(task.instance))
                if problem is None:
                    done.append(task)
                elif retryable(problem):
                    again.append(task)
                else:
                    lost.append(task)
            self._retry(link, again)
            link.queue.give_up(lost)
        else:
            done = []
            link.last_error = f"{code}: {answer.response_status.message}"[:300]
            if retryable(code):
                self._retry(link, tasks)
                ok = False
            else:
                link.queue.give_up(tasks)
        link.queue.done(done)
        link.lag.extend((now, now - t.submitted) for t in done)
        self.cpu_seconds += time.thread_time() - cpu
        return ok

    def _retry(self, link: PeerLink, tasks: list[Task]) -> None:
        """Failed tasks go back to their peer's queue, unless the peer stopped answering
        meanwhile: then they are dropped with its queue (repair brings it up to date)."""
        if link.target:
            link.queue.retry(tasks, self.node.clock.monotonic())
        else:
            link.queue.give_up(tasks)

    # --- anti-entropy --------------------------------------------------------------------

    async def _repair_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.anti_entropy_interval)
            if not self.node.state.serves_registry:
                continue
            for link in list(self.links.values()):
                if link.state.serves_registry:
                    try:
                        await self.repair(link)
                    except (PeerError, wire.DecodeError, ValueError) as exc:
                        link.last_error = "repair: " + _describe(exc)
                    except Exception:
                        log.exception("repair with %s failed; it runs again next round",
                                      link.url)

    async def repair(self, link: PeerLink) -> int:
        """Compare checksums with one peer and merge what differs; returns how many instances
        changed here."""
        registry = self.node.registry
        s = self.settings
        request = wire.encode(wire.ChecksumsRequest(checksum=_checksum_text(registry.checksum),
                                                    region_id=s.region))
        response = await self.client.post(f"{link.url}{REPLICATION}/checksums.json", request,
                                          {}, self.settings.peer_timeout)
        answer = wire.decode(response.body, wire.ChecksumsResponse)
        if answer.response_status.error_code != "success":
            raise ValueError(f"checksums: {answer.response_status.error_code}")
        link.repair_rounds += 1
        theirs = answer.services
        if theirs is None:
            link.in_sync_rounds += 1
            return 0
        cpu = time.thread_time()
        mine = registry.checksums()
        differ = [key for key, text in theirs.items()
                  if mine.get(key) != int(text, 16)][:_REPAIR_SERVICES]
        self.cpu_seconds += time.thread_time() - cpu
        if not differ:
            return 0
        asked = self.node.clock.monotonic()
        copies = await self._leases(link, differ)
        changed = await self._merge(link, copies, asked)
        link.repaired_services += len(differ)
        return changed

    # --- copies --------------------------------------------------------------------------

    async def _leases(self, link: PeerLink,
                      services: list[str] | None) -> list[wire.LeaseCopy]:
        body = wire.encode(wire.LeasesRequest(region_id=self.settings.region,
                                              service_ids=services))
        response = await self.client.post(f"{link.url}{REPLICATION}/leases.json", body, {},
                                          _COPY_TIMEOUT)
        cpu = time.thread_time()
        answer = wire.decode(response.body, wire.LeasesResponse)
        self.cpu_seconds += time.thread_time() - cpu
        if answer.response_status.error_code != "success":
            raise ValueError(f"leases: {answer.response_status.error_code}: "
                             f"{answer.response_status.message}")
        return answer.leases or []

    async def _merge(self, link: PeerLink, copies: list[wire.LeaseCopy], asked: float) -> int:
        """Merge copies in chunks (the event loop runs between them); stale instances are
        unregistered at the peer. Returns how many instances changed here. `asked` is when the
        copies were asked for: their ages count from then, so the time the answer took makes a
        copy older, never fresher, when it is weighed against a lease here."""
        node = self.node

        def chunks() -> Any:
            changed = 0
            for start in range(0, len(copies), _MERGE_CHUNK):
                clock = node.clock
                result = node.registry.merge(copies[start:start + _MERGE_CHUNK],
                                             clock.monotonic(), clock.wall_ms(), asked=asked)
                node.publish(result.changes)
                changed += result.imported
                if result.stale_at_peer:
                    link.queue.submit(UNREGISTER, result.stale_at_peer, clock.monotonic())
                    link.stale_unregistered += len(result.stale_at_peer)
                    link.wake.set()
                yield
            return changed

        cpu = time.thread_time()
        changed: int = await drive_async(chunks(), node.steps, "merge")
        self.cpu_seconds += time.thread_time() - cpu
        link.repaired_instances += changed
        return changed

    # --- views ---------------------------------------------------------------------------

    def peer_statuses(self) -> list[tuple[PeerLink, PeerState]]:
        return [(link, link.state) for link in self.links.values()]

    def status(self) -> dict[str, Any]:
        now = self.node.clock.monotonic()
        peers = []
        for link in self.links.values():
            stats = link.queue.stats
            peers.append({
                "url": link.url, "zone": link.spec.zone, "status": link.state.status,
                "canServiceRegistry": link.state.can_service_registry,
                "canServiceDiscovery": link.state.can_service_discovery,
                "lastAnswerTime": link.polled_ms, "lastError": link.last_error,
                "queued": len(link.queue), "submitted": stats.submitted,
                "coalesced": stats.coalesced, "sent": stats.sent, "retried": stats.retried,
                "droppedOverflow": stats.dropped_overflow,
                "droppedExpired": stats.dropped_expired,
                "droppedFailed": stats.dropped_failed, "sendFailures": stats.send_failures,
                "skipped": link.skipped, "requests": link.requests,
                "backoffFailures": link.queue.failures,
                "lag": link.lag_summary(now),
                "repair": {"rounds": link.repair_rounds, "inSync": link.in_sync_rounds,
                           "services": link.repaired_services,
                           "instances": link.repaired_instances,
                           "staleUnregistered": link.stale_unregistered},
            })
        bootstrap = self.bootstrap
        if bootstrap.get("state") != "done" and self.node.state.status != STARTING:
            bootstrap = {"state": "done", "reason": f"forced {self.node.state.status}"}
        return {"nodeId": self.node_id,
                "self": self.me.url if self.me else self.settings.node_url,
                "bootstrap": bootstrap, "cpuSeconds": round(self.cpu_seconds, 6),
                "peers": peers}


async def _guarded(step: Coroutine[Any, Any, Any], what: str) -> None:
    """Run one step of a background loop; an unexpected failure is logged, and the loop goes
    on (a loop that died would leave the node deaf to its peers without a word)."""
    try:
        await step
    except Exception:
        log.exception("%s failed; it runs again", what)


async def _resolve(name: str, port: int) -> list[str]:
    """The addresses of `name`: IPv4 ones if it has any, else IPv6."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    v4 = {str(info[4][0]) for info in infos if info[0] == socket.AF_INET}
    v6 = {str(info[4][0]) for info in infos if info[0] == socket.AF_INET6}
    return sorted(v4 or v6)

