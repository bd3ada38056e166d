"""The replication sender: every client write that succeeded here, sent on to every peer.

A write is queued for every peer that answers and is not down (`core.replication.PeerQueue`
coalesces, bounds and retries; this module does the I/O). One sender task per peer sends batches
(one request per operation, all under way at once), so batches grow while a request is in flight
and a quiet node sends at once. A failed send backs the peer off; a peer that stopped answering
has its queue dropped (anti-entropy brings it up to date when it answers again).
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from artemis import wire
from artemis.core.replication import Task, instance_key, retryable
from artemis.server.cluster.links import REPLICATION, PeerLink, Peers, failure_text, guarded
from artemis.server.cluster.peers import PeerError
from artemis.server.observability.tracing import Tracing
from artemis.wire import ErrorCode, Instance

__all__ = ["ReplicationSender"]

log = logging.getLogger("artemis.cluster")

_GZIP_MIN: Final = 64 * 1024


class ReplicationSender:
    """Queues client writes per peer and sends them (see the module doc)."""

    def __init__(self, peers: Peers, tracing: Tracing | None = None) -> None:
        self.peers = peers
        self.tracing = tracing  # client spans of replication requests, when traced

    def replicate(self, operation: str, instances: Sequence[Instance | msgspec.Raw],
                  owners: Sequence[str] | None = None, keys: Sequence[str] | None = None) -> None:
        """Queue a client write that succeeded here for every peer that takes writes
        (`keys`: see PeerQueue.submit)."""
        now = self.peers.node.clock.monotonic()
        for link in self.peers.links.values():
            if link.target:
                link.queue.submit(operation, instances, now, owners, keys)
                link.wake.set()
            else:
                link.skipped += len(instances)

    def start(self) -> None:
        """Start a sender for every peer that has none running."""
        for link in self.peers.links.values():
            if link.sender is None or link.sender.done():
                link.sender = asyncio.create_task(self._send_loop(link),
                                                  name=f"replication to {link.url}")

    def stop(self) -> None:
        for link in self.peers.links.values():
            link.stop_sender()

    def queued(self) -> int:
        return sum(len(link.queue) for link in self.peers.links.values())

    async def flush(self) -> None:
        """Send everything queued now, to every peer, ignoring backoff (tests, shutdown)."""
        peers = self.peers
        for link in list(peers.links.values()):
            while len(link.queue):
                tasks = link.queue.take(peers.settings.replication_batch,
                                        peers.node.clock.monotonic())
                if tasks:
                    await self._send(link, tasks)

    async def _send_loop(self, link: PeerLink) -> None:
        queue = link.queue
        clock = self.peers.node.clock
        batch = self.peers.settings.replication_batch
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
                    await guarded(self._send(link, tasks), f"replication to {link.url}")

    async def _send(self, link: PeerLink, tasks: list[Task]) -> None:
        groups: dict[str, list[Task]] = {}
        for task in tasks:
            groups.setdefault(task.operation, []).append(task)
        results = await asyncio.gather(*(self._send_group(link, op, group)
                                         for op, group in groups.items()))
        now = self.peers.node.clock.monotonic()
        if all(results):
            link.queue.sent_ok()
        else:
            delay = link.queue.send_failed(now)
            log.debug("replication to %s failed; next attempt in %.3f s", link.url, delay)

    async def _send_group(self, link: PeerLink, operation: str, tasks: list[Task]) -> bool:
        """Send one operation's tasks; False if the peer must be backed off."""
        peers = self.peers
        cpu = time.thread_time()
        owners = [t.owner or None for t in tasks] if operation == "register" else None
        # A renewal's instance may be its JSON as held (msgspec.Raw): it is encoded as is.
        instances: list[Any] = [t.instance for t in tasks]
        body = wire.encode(
            wire.ReplicatedInstancesRequest(instances=instances, owners=owners)
            if owners and any(owners) else wire.InstancesRequest(instances=instances))
        headers: dict[str, str] = {}
        if len(body) >= _GZIP_MIN:
            body = gzip.compress(body, compresslevel=1)
            headers["content-encoding"] = "gzip"
        url = f"{link.url}{REPLICATION}/{operation}.json"
        tracing = self.tracing
        span, trace_headers = (tracing.start_client(f"replicate {operation}", url)
                               if tracing is not None else (None, {}))
        headers.update(trace_headers)
        peers.cpu_seconds += time.thread_time() - cpu
        link.requests += 1
        status = 0
        try:
            response = await peers.post(url, body, headers, peers.settings.peer_timeout)
            status = response.status
            cpu = time.thread_time()
            answer = wire.decode(response.body, wire.InstancesResponse)
        except (PeerError, wire.DecodeError) as exc:
            link.last_error = failure_text(exc)
            self._retry(link, tasks)
            return False
        finally:
            if span is not None and tracing is not None:
                tracing.end(span, status)
        now = peers.node.clock.monotonic()
        code = answer.response_status.error_code
        ok = True
        if code == ErrorCode.SUCCESS:
            done = tasks
        elif code == ErrorCode.PARTIAL_FAIL:
            failed = {instance_key(f.instance): f.error_code
                      for f in answer.failed_instances or () if f.instance is not None}
            done, again, lost = [], [], []
            for task in tasks:
                problem = failed.get(task.key)
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
        link.acknowledged(now, [t.submitted for t in done])
        peers.cpu_seconds += time.thread_time() - cpu
        return ok

    def _retry(self, link: PeerLink, tasks: list[Task]) -> None:
        """Failed tasks go back to their peer's queue, unless the peer stopped answering
        meanwhile: then they are dropped with its queue (repair brings it up to date)."""
        if link.target:
            link.queue.retry(tasks, self.peers.node.clock.monotonic())
        else:
            link.queue.give_up(tasks)

    def __repr__(self) -> str:
        return f"ReplicationSender({len(self.peers.links)} peers, queued={self.queued()})"
