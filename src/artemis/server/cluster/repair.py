"""Anti-entropy: every `anti_entropy_interval` the registry is compared with each up peer's.

The registry checksum is compared with each up peer's; when they differ, the services whose
checksums differ are fetched (`leases.json`) and merged (`Registry.merge` decides), and instances
the peer still holds after this node unregistered them are unregistered there. Bootstrap copies
a whole registry the same way (`copy`), a page of _COPY_SERVICES services a request, the next page
asked for while this one is merged: neither node ever holds the whole registry as JSON, nor as
decoded copies (at 1,000,000 instances that was 500 MB of JSON and a second registry's worth of
objects, decoded in one step of seconds).

A page's answer is read in steps too: one raw pass finds its copies, which are decoded and merged
_MERGE_CHUNK at a time, the loop served between two.

Totals that differ while writes are in flight (a register replicated a moment ago) usually agree
a moment later: the total is asked again after RECHECK_DELAY before every service's checksum is
asked for, built and compared (4 MB and some 250 ms of CPU on the two nodes at 100,000
services). That comparison runs in steps of _COMPARE_STEP services, the loop served between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Generator, Sequence
from typing import Final

import msgspec

from artemis import wire
from artemis.core.replication import UNREGISTER
from artemis.server.cluster.links import REPLICATION, PeerLink, Peers, failure_text
from artemis.server.cluster.peers import PeerError
from artemis.server.observability.loop import drive_async
from artemis.wire import ErrorCode

__all__ = ["AntiEntropy"]

log = logging.getLogger("artemis.cluster")

_COPY_TIMEOUT: Final = 60.0  # seconds for one page of a registry copy (bootstrap)
_COPY_SERVICES: Final = 1_000  # services a page of a copy (10,000 instances: some 5 MB)
_MERGE_CHUNK: Final = 500  # copies merged between two yields to the event loop (some 10 ms)
_REPAIR_SERVICES: Final = 2_000  # services repaired from one peer per round
RECHECK_DELAY: Final = 0.2  # seconds before the total is asked again, when it differed
_COMPARE_STEP: Final = 2_000  # services compared between two yields to the event loop


def _checksum_text(value: int) -> str:
    return f"{value:016x}"


class _RawLeases(msgspec.Struct, rename="camel"):
    """A LeasesResponse read for where each copy is, not for what it says."""

    response_status: wire.ResponseStatus
    leases: list[msgspec.Raw] | None = None


_RAW_LEASES: Final = msgspec.json.Decoder(_RawLeases)
Copies = list[msgspec.Raw] | list[wire.LeaseCopy]  # as `_leases` found them


class AntiEntropy:
    """Compares this node's registry with its peers' and merges what differs."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers

    async def run(self) -> None:
        peers = self.peers
        while True:
            await asyncio.sleep(peers.settings.anti_entropy_interval)
            if not peers.node.state.serves_registry:
                continue
            for link in list(peers.links.values()):
                if link.state.serves_registry:
                    try:
                        await self.repair(link)
                    except (PeerError, wire.DecodeError, ValueError) as exc:
                        link.last_error = "repair: " + failure_text(exc)
                    except Exception:
                        log.exception("repair with %s failed; it runs again next round",
                                      link.url)

    async def repair(self, link: PeerLink) -> int:
        """Compare checksums with one peer and merge what differs; returns how many instances
        changed here."""
        theirs = await self._differing(link)
        if theirs is not None:  # maybe only writes in flight: ask again a moment later
            await asyncio.sleep(RECHECK_DELAY)
            theirs = await self._differing(link)
        link.repair_rounds += 1
        if theirs is None:
            link.in_sync_rounds += 1
            return 0
        peers = self.peers
        services = peers.node.registry.services

        def compare() -> Generator[None, None, list[str]]:
            differ: list[str] = []
            for n, (key, text) in enumerate(theirs.items()):
                state = services.get(key)
                if state is None or state.checksum != int(text, 16):
                    differ.append(key)
                    if len(differ) >= _REPAIR_SERVICES:
                        break
                if n % _COMPARE_STEP == _COMPARE_STEP - 1:
                    yield
            return differ

        cpu = time.thread_time()
        differ = await drive_async(compare(), peers.node.steps, "compare")
        peers.cpu_seconds += time.thread_time() - cpu
        if not differ:
            return 0
        asked = peers.node.clock.monotonic()
        copies = await self._leases(link, differ)
        changed = await self._merge(link, copies, asked)
        link.repaired_services += len(differ)
        return changed

    async def _differing(self, link: PeerLink) -> dict[str, str] | None:
        """The peer's checksum of every service if its registry's differs from this one's."""
        peers = self.peers
        s = peers.settings
        request = wire.encode(wire.ChecksumsRequest(
            checksum=_checksum_text(peers.node.registry.checksum), region_id=s.region))
        response = await peers.post(f"{link.url}{REPLICATION}/checksums.json", request, {},
                                    s.peer_timeout)
        cpu = time.thread_time()
        # a peer's answer: read without the duplicate-key check (a third of the decoding)
        answer = wire.decode(response.body, wire.ChecksumsResponse, unique_keys=False)
        peers.cpu_seconds += time.thread_time() - cpu
        if answer.response_status.error_code != ErrorCode.SUCCESS:
            raise ValueError(f"checksums: {answer.response_status.error_code}")
        return answer.services

    async def copy(self, link: PeerLink) -> int | None:
        """Copy every lease of `link`'s node (bootstrap), in pages (module doc); the number
        copied, or None if it failed (what was merged stays: a later copy or repair merges
        again, and a merge of what is held already changes nothing)."""
        try:
            theirs = await self._differing(link)
        except (PeerError, wire.DecodeError, ValueError) as exc:
            log.warning("bootstrap from %s failed: %s", link.url, exc)
            return None
        keys = list(theirs or ())  # None: the registries are equal already
        pages = [keys[start:start + _COPY_SERVICES]
                 for start in range(0, len(keys), _COPY_SERVICES)]
        clock = self.peers.node.clock
        copied = 0

        def ask(page: list[str]) -> tuple[float, asyncio.Future[Copies]]:
            return clock.monotonic(), asyncio.ensure_future(self._leases(link, page))

        following = iter(pages[1:])
        pending = ask(pages[0]) if pages else None
        try:
            while pending is not None:
                asked, fetch = pending
                pending = None
                copies = await fetch
                page = next(following, None)
                if page is not None:  # the peer builds the next page while this one merges
                    pending = ask(page)
                await self._merge(link, copies, asked)
                copied += len(copies)
        except (PeerError, wire.DecodeError, ValueError) as exc:
            log.warning("bootstrap from %s failed after %s instances: %s", link.url, copied,
                        exc)
            return None
        finally:
            if pending is not None:  # a page asked for ahead of a failure: not wanted now
                unwanted = pending[1]
                unwanted.cancel()
                unwanted.add_done_callback(lambda done: done.cancelled() or done.exception())
        return copied

    async def _leases(self, link: PeerLink, services: list[str]) -> Copies:
        """The leases of `services` at `link`'s node: each copy's JSON, found by one raw pass
        and decoded by `_merge` a chunk at a time; decoded whole (leniently) when the answer
        is not written as our nodes write it."""
        peers = self.peers
        body = wire.encode(wire.LeasesRequest(region_id=peers.settings.region,
                                              service_ids=services))
        response = await peers.post(f"{link.url}{REPLICATION}/leases.json", body, {},
                                    _COPY_TIMEOUT)
        cpu = time.thread_time()
        try:
            try:
                found = _RAW_LEASES.decode(response.body)
            except msgspec.DecodeError:
                pass  # not as our nodes write it: read it whole below, leniently
            else:
                _succeeded(found.response_status)
                return found.leases or []
            answer = wire.decode(response.body, wire.LeasesResponse, unique_keys=False)
            _succeeded(answer.response_status)
            return answer.leases or []
        finally:
            peers.cpu_seconds += time.thread_time() - cpu

    async def _merge(self, link: PeerLink, copies: Sequence[msgspec.Raw | wire.LeaseCopy],
                     asked: float) -> int:
        """Merge copies (decoded, or their JSON, decoded here) in chunks, the event loop served
        between them; stale instances are unregistered at the peer. Returns how many instances
        changed here. `asked` is when the copies were asked for: their ages count from then, so
        the time the answer took makes a copy older, never fresher, when it is weighed against
        a lease here."""
        node = self.peers.node

        def chunks() -> Generator[None, None, int]:
            changed = 0
            for start in range(0, len(copies), _MERGE_CHUNK):
                clock = node.clock
                chunk = _decoded(copies[start:start + _MERGE_CHUNK])
                result = node.registry.merge(chunk, clock.monotonic(), clock.wall_ms(),
                                             asked=asked)
                node.publish(result.changes)
                changed += result.imported
                if result.stale_at_peer:
                    link.queue.submit(UNREGISTER, result.stale_at_peer, clock.monotonic())
                    link.stale_unregistered += len(result.stale_at_peer)
                    link.wake.set()
                yield
            return changed

        cpu = time.thread_time()
        changed = await drive_async(chunks(), node.steps, "merge")
        self.peers.cpu_seconds += time.thread_time() - cpu
        link.repaired_instances += changed
        return changed

    def __repr__(self) -> str:
        return f"AntiEntropy({len(self.peers.links)} peers)"


def _succeeded(status: wire.ResponseStatus) -> None:
    if status.error_code != ErrorCode.SUCCESS:
        raise ValueError(f"leases: {status.error_code}: {status.message}")


def _decoded(copies: Sequence[msgspec.Raw | wire.LeaseCopy]) -> Sequence[wire.LeaseCopy]:
    """Copies as LeaseCopy: those read raw are decoded here (DecodeError if one is not)."""
    if not copies or not isinstance(copies[0], msgspec.Raw):
        return copies  # type: ignore[return-value]
    return wire.decode(b"[" + b",".join(copies) + b"]",  # type: ignore[arg-type]
                       list[wire.LeaseCopy], unique_keys=False)
