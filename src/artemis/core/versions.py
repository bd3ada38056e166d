"""The change log, versioned snapshots, deltas and checksums.

Rules
  * Every change of the registry has a revision (one counter per node) and enters a log bounded
    in entries and in bytes; the oldest entries leave first.
  * A snapshot is the encoded answer of every service with instances at one revision, labelled
    with a version: epoch milliseconds when it was taken, strictly increasing. A snapshot is taken
    only when something changed; the newest `keep` snapshots are kept.
  * The delta from a kept version to the newest is the log between their revisions folded per
    instance: absent before and present after is `new`, present before and absent after is
    `delete`, present on both sides with other data is `change`; anything else cancels out.
    A version that is not kept, or whose revision has left the log, has no delta
    (`data-not-found`); the client then fetches the whole set again.
  * The checksum of a set of instances is the sum mod 2^64 of blake2b-64 of each instance's
    canonical JSON; it does not depend on order, and is kept up to date on each change.
  * Building a snapshot and folding a delta are generators that yield between chunks, so the
    shell can give the event loop back; the result is exact as of one revision.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec

from artemis import wire
from artemis.wire import Instance

if TYPE_CHECKING:
    from artemis.core.registry import Registry

__all__ = ["ENTRY_BYTES", "Change", "ChangeLog", "Delta", "ServicesAnswer", "Snapshot",
           "Versions", "checksum_hex", "drive", "entry_bytes"]

SUCCESS_STATUS: Final = b'{"errorCode":"success","message":"","status":"success"}'
DELTA_CACHE_BYTES: Final = 64 * 1024 * 1024  # deltas are cached until the next snapshot, up to this
# A snapshot step takes `chunk` services, or fewer whose leases add up to `chunk` times this.
_STEP_LEASES_PER_SERVICE: Final = 40
_CATCH_UP: Final = 4  # a build behind the writes takes steps up to this many times larger
# A snapshot's services are spread over SHARDS maps by the hash of their key, so that no step
# copies or grows one map of every service.
SHARDS: Final = 64
_SHARD_MASK: Final = SHARDS - 1
_SHARDS_A_STEP: Final = 8
Shards = list[dict[str, tuple[bytes, ...]]]


_instance_decoder: Final = msgspec.json.Decoder(Instance)


def decode_instance(encoded: bytes) -> Instance:
    """An Instance back from the canonical JSON the core keeps."""
    return _instance_decoder.decode(encoded)


class Change(msgspec.Struct, frozen=True, gc=False):
    """One change of the registry, as the log keeps it (never tracked by the GC)."""

    revision: int
    kind: str  # "new" | "delete" | "reload"
    change_time: int  # epoch ms
    service: str  # lower-case service id
    key: str  # lower-case instance id
    prev_hash: int | None  # hash of the instance this change replaced or removed
    hash: int | None  # hash of the instance after this change (None after delete)
    encoded: bytes  # the instance's canonical JSON
    service_checksum: int  # checksum of the service right after this change

    @property
    def instance(self) -> Instance:
        return decode_instance(self.encoded)

    def encode(self, kind: str | None = None) -> bytes:
        """This change as an InstanceChange JSON object."""
        return b"".join((b'{"changeTime":', str(self.change_time).encode(), b',"changeType":"',
                         (kind or self.kind).encode(), b'","instance":', self.encoded, b"}"))


def checksum_hex(checksum: int) -> str:
    return f"{checksum:016x}"


ENTRY_BYTES: Final = 256  # what one entry costs besides its instance's JSON (struct, ints, slot)


def entry_bytes(change: Change) -> int:
    """What one change is counted for against the log's byte bound."""
    return ENTRY_BYTES + len(change.encoded)


class ChangeLog:
    """The last changes, oldest first: at most `capacity` of them, and at most `max_bytes`
    counted by `entry_bytes` (the newest change is always kept).

    Each change holds its instance's JSON: the very bytes of the live lease while it lives (shared,
    not copied), and the log's own reference once the lease has gone. The byte bound is what keeps
    churn with large instances from growing memory; each entry is counted in full, so bytes a
    registration and its removal share count twice and the memory held is at most the bound.
    """

    __slots__ = ("_entries", "bytes", "max_bytes", "trimmed")

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        self._entries: deque[Change] = deque(maxlen=max(1, capacity))
        self.max_bytes = max_bytes
        self.bytes = 0  # the kept entries, counted by entry_bytes
        self.trimmed = 0  # entries dropped early to stay within max_bytes

    def append(self, change: Change) -> None:
        entries = self._entries
        if len(entries) == entries.maxlen:
            self.bytes -= entry_bytes(entries[0])  # the deque drops it on append
        entries.append(change)
        self.bytes += entry_bytes(change)
        limit = self.max_bytes
        if limit is not None:
            while self.bytes > limit and len(entries) > 1:
                self.bytes -= entry_bytes(entries.popleft())
                self.trimmed += 1

    def since(self, revision: int) -> Iterator[Change] | None:
        """The changes after `revision`, or None if some of them have left the log."""
        entries = self._entries
        if not entries:
            return iter(())
        first = entries[0].revision
        if revision < first - 1:
            return None
        return islice(entries, max(0, revision - first + 1), None)

    def at(self, revision: int) -> Change | None:
        """The change recorded at `revision`, if the log still has it."""
        entries = self._entries
        if not entries:
            return None
        index = revision - entries[0].revision
        return entries[index] if 0 <= index < len(entries) else None

    def newest_first(self) -> Iterator[Change]:
        """The kept changes, newest first (the Eureka API's delta reads back to a time); the
        log must not change while this is iterated."""
        return reversed(self._entries)

    @property
    def first_revision(self) -> int | None:
        return self._entries[0].revision if self._entries else None

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (f"ChangeLog(size={len(self._entries)}, first={self.first_revision}, "
                f"bytes={self.bytes})")


@dataclass(slots=True)
class Snapshot:
    """One version of the discovery answer. Only the newest keeps its services (each as
    `ServiceState.frozen()`: its answer's tail, then references to its instances' JSON); an older
    one is kept for its revision (where its delta starts) and drops them when superseded."""

    version: int
    revision: int
    services: Shards | None  # lower-case service id -> frozen Service, in SHARDS maps
    checksum: int
    instance_count: int

    def answer(self, chunk: int = 250) -> Generator[None, None, tuple[ServicesAnswer, int]]:
        """The whole services.json answer for this version, made as it is sent (see
        ServicesAnswer), and its size, counted `chunk` services at a time, yielding between
        two (the shell keeps the result)."""
        answer = ServicesAnswer(self)
        size = len(answer.head) + len(answer.end)
        count = 0
        for shard in answer.services:
            for frozen in shard.values():
                size += len(_NEXT_HEAD) + sum(map(len, frozen)) + max(len(frozen) - 2, 0)
                count += 1
                if count % chunk == 0:
                    yield
        return answer, size - (1 if count else 0)  # the first head has no comma

    def body(self) -> bytes:
        """The whole answer in one buffer (tests and small registries)."""
        return b"".join(ServicesAnswer(self))

    def supersede(self) -> None:
        self.services = None


class ServicesAnswer:
    """services.json of one snapshot, made part after part as it is sent and never kept whole:
    a list of its parts would hold two references an instance (two million at a million
    instances), which the garbage collector walks at every collection while it is young (40 to
    100 ms at a time). Holds the snapshot's services, so it stays whole once superseded."""

    __slots__ = ("end", "head", "services")

    def __init__(self, snapshot: Snapshot) -> None:
        services = snapshot.services
        if services is None:
            raise RuntimeError(f"snapshot {snapshot.version} is superseded: it keeps no data")
        self.services = services
        self.head = (b'{"checksum":"' + checksum_hex(snapshot.checksum).encode()
                     + b'","responseStatus":' + SUCCESS_STATUS + b',"services":[')
        self.end = b'],"version":' + str(snapshot.version).encode() + b"}"

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        head = _FIRST_HEAD
        for shard in self.services:
            for frozen in shard.values():
                yield head
                head = _NEXT_HEAD
                if len(frozen) > 1:
                    yield b",".join(islice(frozen, 1, None))  # one service: a few kilobytes
                yield frozen[0]
        yield self.end

    def __repr__(self) -> str:
        return f"ServicesAnswer({sum(map(len, self.services))} services)"


_FIRST_HEAD: Final = b'{"instances":['
_NEXT_HEAD: Final = b',{"instances":['


@dataclass(frozen=True, slots=True)
class Delta:
    from_version: int
    version: int
    parts: list[bytes]  # the whole services-delta.json answer, in parts
    changes: int
    size: int

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)


T = TypeVar("T")
DELTA_PART: Final = 64 * 1024  # a delta answer is kept in parts of about this size


def _released(*maps: dict[str, Any], step: int) -> Generator[None, None, None]:
    """Empty these (large) maps `step` entries at a time, yielding between two: freeing a
    hundred thousand entries at once, each a dict of its own, stalls the loop for milliseconds."""
    for one in maps:
        while one:
            for _ in range(min(step, len(one))):
                one.popitem()
            yield


def drive(gen: Generator[None, None, T]) -> T:
    """Run a chunked computation to its end without yielding to anything (tests, small data)."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


class Versions:
    """The kept snapshots of one registry and the deltas between them."""

    def __init__(self, registry: Registry, keep: int, wall_ms: int, chunk: int = 250) -> None:
        self._registry = registry
        self._keep = max(1, keep)
        self._chunk = max(1, chunk)
        registry.dirty.clear()
        services: Shards = [{} for _ in range(SHARDS)]
        for key, state in registry.services.items():
            if state.visible:
                services[hash(key) & _SHARD_MASK][key] = state.frozen()
        first = Snapshot(wall_ms, registry.revision, services, registry.visible_checksum,
                         registry.visible_count)
        self._snapshots: deque[Snapshot] = deque([first], maxlen=self._keep)
        self._deltas: dict[int, Delta] = {}
        self._delta_bytes = 0  # the cached deltas' size, bounded by DELTA_CACHE_BYTES

    @property
    def current(self) -> Snapshot:
        return self._snapshots[-1]

    @property
    def versions(self) -> list[int]:
        return [s.version for s in self._snapshots]

    def find(self, version: int) -> Snapshot | None:
        for snapshot in self._snapshots:
            if snapshot.version == version:
                return snapshot
        return None

    def cached_delta(self, from_version: int) -> Delta | None:
        """The delta from `from_version` if it is cached for the current snapshot."""
        return self._deltas.get(from_version)

    def build(self, wall_ms: int) -> Generator[None, None, Snapshot | None]:
        """Take a snapshot if anything changed since the last one; yields between chunks."""
        reg = self._registry
        prev = self.current
        if reg.revision == prev.revision:
            return None
        # The copy, a few shards a step: one map of 100,000 services took 2-8 ms to copy, and
        # 10-14 ms to grow when a new service made it outgrow its table.
        services: Shards = []
        for shard in prev.services or [{} for _ in range(SHARDS)]:
            services.append(dict(shard))
            if len(services) % _SHARDS_A_STEP == 0:
                yield
        chunk = self._chunk
        rounds = 0
        # Rounds take the services changed since the round before, yielding between steps,
        # until few enough are left to take in one step that ends exactly at reg.revision.
        # Writes go on meanwhile; from the fourth round a step takes twice as many services
        # again, up to _CATCH_UP times the usual, so that the builder gains on a storm of them.
        while reg.dirty and (rounds == 0 or len(reg.dirty) > chunk):
            size = chunk * min(_CATCH_UP, 1 << max(0, rounds - 2))
            budget = size * _STEP_LEASES_PER_SERVICE  # leases whose bytes one step joins
            pending, reg.dirty = reg.dirty, set()
            done = joined = 0
            for key in pending:
                joined += self._take(services, key)
                done += 1
                if done >= size or joined >= budget:  # many services, or a few large ones
                    done = joined = 0
                    yield
            rounds += 1
        pending, reg.dirty = reg.dirty, set()
        for key in pending:  # the rest (at most `chunk`), without yielding: exact as of now
            self._take(services, key)
        snapshot = Snapshot(max(prev.version + 1, wall_ms), reg.revision, services,
                            reg.visible_checksum, reg.visible_count)
        prev.supersede()
        self._snapshots.append(snapshot)
        self._deltas.clear()
        self._delta_bytes = 0
        return snapshot

    def _take(self, services: Shards, key: str) -> int:
        """Take this service as it is now into `services`; how many leases it looked at."""
        state = self._registry.services.get(key)
        if state is None or not state.visible:  # gone, or every instance pulled out
            services[hash(key) & _SHARD_MASK].pop(key, None)
            return 0
        services[hash(key) & _SHARD_MASK][key] = state.frozen()
        return len(state.leases)

    def delta(self, from_version: int) -> Generator[None, None, Delta | None]:
        """The delta from a kept version to the newest; None if there is none (rules above)."""
        cached = self._deltas.get(from_version)
        if cached is not None:
            return cached
        start = self.find(from_version)
        if start is None:
            return None
        target = self.current
        since = self._registry.log.since(start.revision)
        if since is None:
            return None
        # Copied first: the log grows while this generator yields.
        entries = list(islice(since, target.revision - start.revision))
        # Per service, per instance: the prev_hash of its first change and the position of its
        # last change in `entries`. Keys are the strings the changes already hold and values are
        # ints, so folding 100,000 changes allocates almost nothing and nothing the garbage
        # collector has to walk (which would stall the loop on a large registry).
        first: dict[str, dict[str, int | None]] = {}
        last_of: dict[str, dict[str, int]] = {}
        step = self._chunk * 2
        for i, change in enumerate(entries):
            if change.kind != "reload":
                seen = first.get(change.service)
                if seen is None:
                    seen = first[change.service] = {}
                    last_of[change.service] = {}
                if change.key not in seen:
                    seen[change.key] = change.prev_hash
                last_of[change.service][change.key] = i
            if i % step == 0:
                yield
        if self.current is not target:  # a newer snapshot appeared meanwhile: start over
            yield from _released(first, last_of, step=step)
            return (yield from self.delta(from_version))
        services = self._registry.services
        # The answer in parts of about DELTA_PART bytes: a part per service would be hundreds of
        # thousands of objects at a million instances, each counted, joined and freed.
        parts = [b'{"checksum":"' + checksum_hex(target.checksum).encode() + b'","delta":{']
        buf = bytearray()
        count = done = 0
        written = False  # a service is in the answer: the next one follows a comma
        for service, positions in last_of.items():
            firsts = first[service]
            out = bytearray()
            for key, position in positions.items():
                last = entries[position]
                prev_hash = firsts[key]
                if last.kind == "delete":
                    if prev_hash is None:
                        continue  # came and went between the two versions
                    kind = b"delete"
                elif prev_hash is None:
                    kind = b"new"
                elif prev_hash != last.hash:
                    kind = b"change"
                else:
                    continue
                out += b',{"changeTime":' if out else b'{"changeTime":'
                out += str(last.change_time).encode()
                out += b',"changeType":"'
                out += kind
                out += b'","instance":'
                out += last.encoded
                out += b"}"
                count += 1
            done += len(positions)
            if out:
                state = services.get(service)
                name = (state.service_id if state is not None
                        else entries[next(iter(positions.values()))].instance.service_id or service)
                if written:
                    buf += b","
                written = True
                buf += wire.encode(name)
                buf += b":["
                buf += out
                buf += b"]"
                if len(buf) >= DELTA_PART:
                    parts.append(bytes(buf))
                    buf.clear()
            if done >= step:
                done = 0
                yield
        # Freed in steps too: at a million instances these are a hundred thousand dicts.
        yield from _released(first, last_of, step=step)
        del entries
        buf += b'},"responseStatus":'
        buf += SUCCESS_STATUS
        buf += b',"version":'
        buf += str(target.version).encode()
        buf += b"}"
        parts.append(bytes(buf))
        size = sum(map(len, parts))
        delta = Delta(from_version, target.version, parts, count, size)
        if self.current is target and self._delta_bytes + size <= DELTA_CACHE_BYTES:
            self._deltas[from_version] = delta
            self._delta_bytes += size
        return delta

    def __repr__(self) -> str:
        return f"Versions(versions={self.versions}, revision={self.current.revision})"
