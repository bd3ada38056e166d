"""What the registry holds of one service: its leases, each with the instance's JSON encoded once,
its checksums and its discovery answer, encoded once per revision when it is asked for (a
lookup). Snapshots keep `frozen()` instead: the answer's tail and references to the instances'
JSON, so a million instances are not held twice (once per lease, once joined per service).

A lease's checksum contribution is blake2b-64 of its canonical JSON; checksums add up modulo 2**64,
so a lease is counted in or out in O(1). An instance whose metadata carries `java_registry` is a
legacy instance: its lease has the legacy TTL and its own self-preservation. An instance whose
metadata carries `artemis.lease_ttl` states its own lease duration (seconds; rules in
core/lease.py).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from hashlib import blake2b
from typing import TYPE_CHECKING, Final

import msgspec

from artemis import wire
from artemis.core.versions import decode_instance
from artemis.wire import Instance

if TYPE_CHECKING:
    from artemis.core.expiry import Filed

__all__ = ["LEASE_TTL_KEY", "LEGACY_KEY", "MASK64", "Lease", "ServiceState", "encode_service",
           "instance_hash", "is_legacy", "lease_ttl", "same_data", "service_tail",
           "stated_ttl"]

LEGACY_KEY: Final = "java_registry"
LEASE_TTL_KEY: Final = "artemis.lease_ttl"  # the lease duration an instance states (seconds)
MASK64: Final = (1 << 64) - 1  # checksums add up modulo 2**64


def instance_hash(encoded: bytes) -> int:
    """The checksum contribution of one instance: blake2b-64 of its canonical JSON."""
    return int.from_bytes(blake2b(encoded, digest_size=8).digest(), "little")


def is_legacy(instance: Instance) -> bool:
    """Whether the instance is a legacy one (`java_registry` in its metadata)."""
    metadata = instance.metadata
    return bool(metadata and (metadata.get(LEGACY_KEY) or "").strip())


def stated_ttl(instance: Instance) -> float | None:
    """The lease duration (seconds) the instance states in its metadata (`artemis.lease_ttl`):
    None when it states none; NaN when the value is not a positive number of seconds (the
    checks of core/validation.py refuse such an instance)."""
    metadata = instance.metadata
    if not metadata:
        return None
    text = metadata.get(LEASE_TTL_KEY)
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return math.nan
    return seconds if 0 < seconds < math.inf else math.nan


def lease_ttl(instance: Instance, normal: float, legacy: float, longest: float) -> float:
    """The lease duration of `instance`: the one it states, within 1 s to `longest`, else the
    node's `legacy` or `normal` one (rules in core/lease.py)."""
    stated = stated_ttl(instance)
    if stated is None or stated != stated:  # none, or not a number (validation refuses it)
        return legacy if is_legacy(instance) else normal
    return min(max(stated, 1.0), longest)


class Lease(msgspec.Struct, gc=False):
    """One registered instance: its JSON (encoded once, hashed once) and when it was renewed.

    Only the encoded form is kept (the decoded Instance is rebuilt on demand): it is what every
    answer needs, and it halves the memory of a registry. Never tracked by the garbage collector.
    """

    encoded: bytes
    hash: int
    service: str
    key: str
    created_ms: int
    renewed: float
    ttl: float
    legacy: bool
    due: Filed | None = None  # the tick's entries of core/expiry.py it is filed in
    ip: str = ""  # lower-case, for server (machine) pull-outs
    zone: str = ""  # lower-case, for zone pull-outs
    group: str = ""  # lower-case groupId, for group pull-outs
    hidden: bool = False  # pulled out by management: kept, renewed, not discovered
    owner: str = ""  # the client address that registered it ("" from a peer): per-client caps
    writer: str = ""  # who owns it: token name or client address ("" from a peer), ownership.py

    @property
    def instance(self) -> Instance:
        return decode_instance(self.encoded)


_DATA_FIELDS: Final = ("group_id", "health_check_url", "ip", "machine_name", "protocol",
                       "status", "url", "zone_id")


def same_data(lease: Lease, instance: Instance) -> bool:
    """Whether a heartbeat's `instance` agrees with the lease's: every field the heartbeat
    carries equals the held one. A field it leaves out (null, port 0) says nothing, as in the
    original, where a heartbeat needs only the instance's key; metadata order and the case of
    the ids do not count."""
    held = lease.instance
    for name in _DATA_FIELDS:
        value = getattr(instance, name)
        if value is not None and value != getattr(held, name):
            return False
    if instance.port and instance.port != held.port:
        return False
    return instance.metadata is None or instance.metadata == held.metadata


RECENT: Final = 8  # revisions of a service's latest changes it keeps


class ServiceState(msgspec.Struct, gc=False):
    """The live instances of one service, with its checksum and its encoded answer.

    Never tracked by the garbage collector (it holds only strings, numbers, bytes and a dict of
    untracked leases), so ten thousand services add nothing to a full collection.
    """

    key: str
    service_id: str  # as first registered; answers echo the id asked for
    leases: dict[str, Lease] = msgspec.field(default_factory=dict)
    checksum: int = 0  # of every lease
    revision: int = 0
    cached_body: bytes | None = None
    visible_checksum: int = 0  # of the leases discovery shows
    visible: int = 0  # how many leases discovery shows
    rules: bytes = b"[]"  # its encoded routeRules, from management
    logic: bytes = b"[]"  # its encoded logicInstances, from management
    # The revisions of its latest changes (at most RECENT, oldest first, 8 bytes each, made at
    # its first change): every change of this service after `known_since` is one of them, so a
    # resume from a revision not older than that finds them without reading the log
    # (core/subscriptions.py).
    recent: array[int] | None = None
    known_since: int = 0  # the registry's revision when this state was made, or later

    def body(self) -> bytes:
        """The Service JSON of this service as discovery shows it, encoded once per revision."""
        body = self.cached_body
        if body is None:
            body = self.cached_body = encode_service(
                self.service_id,
                (lease.encoded for lease in self.leases.values() if not lease.hidden),
                self.rules, self.logic)
        return body

    def frozen(self) -> tuple[bytes, ...]:
        """The service as discovery shows it now, for a snapshot: its answer's tail
        (`service_tail`) then the JSON of each instance shown, the very bytes the leases hold."""
        return (service_tail(self.service_id, self.rules, self.logic),
                *(lease.encoded for lease in self.leases.values() if not lease.hidden))

    def touched(self, revision: int) -> None:
        """A change of this service was recorded at `revision`."""
        self.revision = revision
        self.cached_body = None
        recent = self.recent
        if recent is None:
            recent = self.recent = array("q")
        elif len(recent) >= RECENT:
            drop = len(recent) - RECENT + 1
            self.known_since = recent[drop - 1]  # changes after it are still all in `recent`
            del recent[:drop]
        recent.append(revision)


def encode_service(service_id: str, instances: Iterable[bytes], rules: bytes = b"[]",
                   logic: bytes = b"[]") -> bytes:
    """A Service as a registered service answers it: filters applied, lists never null (§4.2);
    `rules` and `logic` are its encoded `routeRules` and `logicInstances` lists."""
    return b"".join((b'{"instances":[', b",".join(instances),
                     service_tail(service_id, rules, logic)))


def service_tail(service_id: str, rules: bytes = b"[]", logic: bytes = b"[]") -> bytes:
    """What follows a Service's instances in its JSON: `encode_service` is
    `{"instances":[` + the instances joined by commas + this."""
    return b"".join((b'],"logicInstances":', logic, b',"metadata":null,"routeRules":', rules,
                     b',"serviceId":', wire.encode(service_id), b"}"))
