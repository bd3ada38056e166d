"""Registry endpoints: register, heartbeat and unregister of instance batches (§4.1).

Processing order, as the original: rate limit, then the request's shape, then the node's status,
then each instance on its own (failures are per instance, `partial_fail` overall). A register is
counted against its caller's address (the TCP peer, without port) for the per-client caps.

Who writes (`Writers`, rules in core/ownership.py): the name of the bearer token a client sends,
else its address. In `token` mode a request without a token with the register role, and in
`open` and `token` modes one with a token this node does not know, is refused `no-permission`
as a whole (after the rate limit); each instance is then held to the token's scope and to the
ownership of live instances. `permissive` checks nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, Protocol

import msgspec

from artemis import wire
from artemis.core.ownership import Mode, Ownership, Writer
from artemis.core.ratelimit import client_key
from artemis.core.registry import BatchResult
from artemis.core.renewal import HELD_BATCH_MIN
from artemis.core.service_state import Lease
from artemis.server.api.endpoint import POST, Endpoint, bind
from artemis.server.http import BadRequest, Request, status_bytes
from artemis.server.node import Node
from artemis.wire import ErrorCode, InstancesRequest

__all__ = ["ENDPOINTS", "SLICE", "Answer", "InstancesOperation", "RegistryApi", "Writers",
           "client_address", "routes"]

log = logging.getLogger("artemis.registry")

SUCCESS_BODY: Final = b'{"failedInstances":null,"responseStatus":' + status_bytes(
    ErrorCode.SUCCESS, "", "success") + b"}"
_PARTIAL: Final = wire.ResponseStatus(error_code=ErrorCode.PARTIAL_FAIL, message="",
                                      status="partial_fail")

Operation = Callable[..., BatchResult]  # (instances, now, wall_ms[, client=address])
class Replicate(Protocol):
    """Hands a client write that succeeded here to the cluster (`Cluster.replicate`):
    instances may be JSON already encoded (msgspec.Raw), with their instance keys."""

    def __call__(self, operation: str, instances: Sequence[wire.Instance | msgspec.Raw],
                 owners: Sequence[str] | None = None, keys: Sequence[str] | None = None
                 ) -> None: ...


@functools.lru_cache(maxsize=4096)  # every request reads it; a connection's peer repeats
def client_address(peer: str) -> str:
    """The address of a request's TCP peer without its port: `10.0.0.5:51234` -> `10.0.0.5`,
    `[::1]:51234` -> `::1`."""
    host, sep, port = peer.rpartition(":")
    if not sep or not port.isdigit():
        return peer
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


class Writers:
    """Who a client write comes from (see the module doc): a `Writer`, or the message of a
    refusal of the whole request (a str)."""

    __slots__ = ("_anyone", "_mode", "_scopes", "_tokens", "ownership")

    def __init__(self, node: Node) -> None:
        settings = node.settings
        self.ownership: Ownership = node.registry.ownership
        self._mode = self.ownership.mode
        self._tokens = [(name, secret.encode())
                        for name, (_, secret) in settings.api_tokens().items()]
        self._scopes = settings.register_scopes()
        self._anyone = self._mode is not Mode.TOKEN

    @property
    def open(self) -> bool:
        """Whether a request without a token writes as its address (every mode but `token`)."""
        return self._anyone

    def resolve(self, authorization: str | None, client: str) -> Writer | str:
        """The writer of a request with this Authorization header from this address."""
        secret = b""
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                secret = value.strip().encode()
        if not secret:
            if self._anyone:
                return Writer(client)
            return self._refuse("registration_mode is token: register, heartbeat and "
                                "unregister need a bearer token with the register role")
        found = None
        for name, expected in self._tokens:  # every token compared, in constant time each
            if hmac.compare_digest(secret, expected):
                found = name
        if found is None:
            if self._mode is Mode.PERMISSIVE:
                return Writer(client)
            return self._refuse("the bearer token is not one of this node's tokens")
        scope = self._scopes.get(found)
        if scope is None and not self._anyone:
            return self._refuse(f"token {found!r} has no register role (registration_mode is "
                                "token; tokens NAME:register=SERVICES:SECRET)")
        return Writer(found, scope, token=True)

    def _refuse(self, message: str) -> str:
        self.ownership.count("token")
        return message


# A batch larger than this runs in slices of it, and a body larger than GATED_BODY is decoded,
# behind the node's batch gate: one large batch at a time, its slices run until STEP_BUDGET has
# passed and the event loop is then served before the next ones (`InstancesOperation.run`).
SLICE: Final = 100
GATED_BODY: Final = 256 * 1024
STEP_BUDGET: Final = 0.004  # seconds of slices between two turns of the event loop

Answer = bytes | Coroutine[Any, Any, bytes]  # a coroutine for a batch run in slices


def answer(result: BatchResult) -> bytes:
    """The InstancesResponse of a batch: the pre-encoded success, or partial_fail with details."""
    if not result.failed:
        return SUCCESS_BODY
    return wire.encode(wire.InstancesResponse(failed_instances=result.failed,
                                              response_status=_PARTIAL))


class _Ids(msgspec.Struct, rename="camel", gc=False):
    """Only the ids of an instance; every other key is skipped."""

    instance_id: str | None = None
    service_id: str | None = None


class _IdsRequest(msgspec.Struct):
    instances: list[_Ids]


_IDS: Final = msgspec.json.Decoder(_IdsRequest)
_HEAD: Final = b'{"instances":['


def _framed(body: bytes) -> bool:
    """Whether `body` starts and ends as an InstancesRequest clients write (no space, one key)."""
    return body.startswith(_HEAD) and body.endswith(b"]}")

# A heartbeat body's instances' ids, and the text of its instances as sent (between the brackets)
Sent = tuple[list[_Ids], bytes]


def sent_as_held(body: bytes) -> Sent | None:
    """A body that starts and ends as a canonical InstancesRequest (what clients send), read
    for its instances' ids only, with the text of its instances, which `held_exactly`
    compares with what the node holds (a space, a second key, anything but the held JSON
    fails that comparison); None for any other body."""
    if not _framed(body):
        return None
    try:
        ids = _IDS.decode(body).instances
    except msgspec.DecodeError:  # not JSON, or ids that are not strings: the whole path says
        return None
    if not ids:
        return None
    return ids, body[len(_HEAD):-2]  # a copy, compared by memcmp (a memoryview: byte by byte)


class _RawRequest(msgspec.Struct):
    instances: list[msgspec.Raw]


_RAWS: Final = msgspec.json.Decoder(_RawRequest)
# A body this large, at least, may be a batch `held_again` remembers (64 instances or more).
HELD_AGAIN_BYTES: Final = 4096
DECODE_SLICE: Final = 500  # instances of a large body decoded in one step (about 1 ms)


async def _decode_in_steps(request: Request) -> InstancesRequest:
    """A large InstancesRequest body decoded DECODE_SLICE instances a step, the loop served
    between two (a 5,000-instance body, 2 MB, is 10 ms decoded at once). Only a body in the
    canonical form is cut (nothing in it but its instances, each found by a raw pass); any
    other body, and any slice that does not decode, is decoded whole, as it always was, so
    every error is answered exactly as before."""
    body = request.body
    raws: list[msgspec.Raw] | None = None
    if _framed(body):
        with contextlib.suppress(msgspec.DecodeError):
            raws = _RAWS.decode(body).instances
    if not raws or len(body) != len(_HEAD) + 1 + len(raws) + sum(map(len, raws)):
        return request.json(InstancesRequest)  # type: ignore[no-any-return]
    instances: list[wire.Instance | None] = []
    for start in range(0, len(raws), DECODE_SLICE):
        piece = _HEAD + b",".join(raws[start:start + DECODE_SLICE]) + b"]}"
        try:
            instances += wire.decode(piece, InstancesRequest).instances or ()
        except wire.DecodeError:
            return request.json(InstancesRequest)  # type: ignore[no-any-return]
        await asyncio.sleep(0)
    return InstancesRequest(instances=instances)


class InstancesOperation:
    """One of register / heartbeat / unregister, shared by HTTP, the heartbeat WebSocket and
    the replication endpoints (`limiter="replication"`, accepted while the node starts, and no
    `replicate`: a replicated write is never replicated again). `replicate` is the cluster's,
    for client writes on a node with peers."""

    def __init__(self, node: Node, endpoint: Endpoint, identity: str, operation: Operation, *,
                 limiter: str = "registry", needs_up: bool = True,
                 replicate: Replicate | None = None, limit_batch: bool = True,
                 per_client: bool = False, writers: Writers | None = None,
                 exact: bool = False, check_zone: bool = True) -> None:
        self.node = node
        self.exact = exact  # a heartbeat: try `renew_exact` on the body before decoding it
        # a client's heartbeat: its large batches are remembered (core/renewal.py held_again)
        self.remember = exact and writers is not None
        self.check_zone = check_zone  # the zone rule of `held_exactly` (a peer's: region only)
        self.writers = writers  # a client write's (None: a peer's, never checked here)
        self.identity = identity
        self.operation = operation
        self.limiter = limiter
        self.needs_up = needs_up
        self.replicate = replicate
        self.per_client = per_client  # the operation takes client=<address> (register)
        # Peers' batches follow their own replication_batch, not this node's max_batch (the
        # body size limit still applies to them).
        self.max_batch = node.settings.max_batch if limit_batch else None
        self._open = writers is not None and writers.open  # a client may write without a token
        self.route = bind(endpoint, self)

    def handle(self, request: Request) -> Answer:
        client = client_address(request.client)
        quick = (self.exact and self._open and len(request.body) <= GATED_BODY
                 and request.header("authorization") is None)
        if quick:
            # The usual heartbeat: no token, on a node that needs none (the writer could only
            # be Writer(address), unscoped), sent as the node holds it. Tried once: when it is
            # not that, the whole path below decodes it.
            if len(request.body) >= HELD_AGAIN_BYTES:  # the one-instance beat skips the call
                again = self._renew_again(request.body, client, None, None)
                if again is not None:
                    return again
            sent = sent_as_held(request.body)
            if sent is not None:
                renewed = self._renew_held(sent, client, None, None)
                if renewed is not None:
                    return renewed
        writer = (None if self.writers is None
                  else self.writers.resolve(request.header("authorization"), client))
        token = writer.identity if isinstance(writer, Writer) and writer.token else None
        if len(request.body) > GATED_BODY:
            return self._decode_gated(request, client, token, writer)
        if self.exact and not quick:
            renewed = self._renew_exact(request.body, client, token, writer)
            if renewed is not None:
                return renewed
        return self.run(request.json(InstancesRequest), client, token, writer)

    def _renew_exact(self, body: bytes, client: str, token: str | None,
                     writer: Writer | str | None) -> bytes | None:
        """A heartbeat whose every instance is sent with exactly the JSON its live lease holds
        (what clients send), renewed without decoding it (core/renewal.py); None when the body
        is not that: it is then decoded and run as any other."""
        again = self._renew_again(body, client, token, writer)
        if again is not None:
            return again
        items = self._sent_as_held(body, writer)
        return None if items is None else self._renew_held(items, client, token, writer)

    def _sent_as_held(self, body: bytes, writer: Writer | str | None) -> Sent | None:
        """`sent_as_held(body)` for a writer that may take the quick path: a scoped writer's
        instances are checked one by one, a refused writer's refusal is answered in full."""
        if isinstance(writer, str) or (writer is not None and writer.scope is not None):
            return None
        return sent_as_held(body)

    def _renew_again(self, body: bytes, client: str, token: str | None,
                     writer: Writer | str | None) -> bytes | None:
        """A client's large batch sent as held, as it was when renewed before, renewed
        without its ids being read (core/renewal.py `held_again`); None when it is not that."""
        if (not self.remember or len(body) < HELD_AGAIN_BYTES or not _framed(body)
                or isinstance(writer, str) or (writer is not None and writer.scope is not None)):
            return None
        now = self.node.clock.monotonic()
        leases = self.node.registry.held_again(body[len(_HEAD):-2], now,
                                               check_zone=self.check_zone)
        return None if leases is None else self._renew_leases(leases, client, token, writer, now)

    def _renew_held(self, sent: Sent, client: str,
                    token: str | None, writer: Writer | str | None) -> bytes | None:
        registry, now = self.node.registry, self.node.clock.monotonic()
        ids, text = sent
        if self.remember and len(ids) >= HELD_BATCH_MIN:
            return self._renew_remembered(ids, text, client, token, writer, now)
        leases = registry.held_exactly(ids, text, now, check_zone=self.check_zone)
        return None if leases is None else self._renew_leases(leases, client, token, writer, now)

    def _renew_remembered(self, ids: list[_Ids], text: bytes, client: str, token: str | None,
                          writer: Writer | str | None, now: float) -> bytes | None:
        """`_renew_held` of a client's large batch: remembered once found (core/renewal.py)."""
        registry = self.node.registry
        made = registry.held_batches.made
        leases = registry.held_exactly(ids, text, now, check_zone=self.check_zone,
                                       remember=True)
        if leases is None:
            return None
        if registry.held_batches.made != made and self.node.collector is not None:
            # A batch remembered: its list of leases lives on, so it leaves the young
            # generations now (observability/collector.py), not after a few passes over it.
            self.node.collector.freeze()
        return self._renew_leases(leases, client, token, writer, now)

    def _renew_leases(self, leases: list[Lease], client: str, token: str | None,
                      writer: Writer | str | None, now: float) -> bytes:
        registry = self.node.registry
        refusal = self._admit(len(leases), client, token, writer, now)
        if refusal is not None:
            return refusal
        registry.renew_leases(leases, now)
        if self.replicate is not None:  # the held JSON as is: peers get what clients sent
            self.replicate(self.identity, [msgspec.Raw(lease.encoded) for lease in leases],
                           None, [f"{lease.service}\x1f{lease.key}" for lease in leases])
        return SUCCESS_BODY

    async def _decode_gated(self, request: Request, client: str, token: str | None,
                            writer: Writer | str | None) -> bytes:
        """A large body is read behind the batch gate, then run there: the loop is served
        between reading it and the first slice."""
        async with self.node.batch_gate:
            if self.exact:
                again = self._renew_again(request.body, client, token, writer)
                if again is not None:
                    return again
                items = self._sent_as_held(request.body, writer)
                if items is not None:
                    await asyncio.sleep(0)
                    renewed = self._renew_held(items, client, token, writer)
                    if renewed is not None:
                        return renewed
            body = await _decode_in_steps(request)
            await asyncio.sleep(0)
            answer = self.run(body, client, token, writer, gated=True)
            return answer if isinstance(answer, bytes) else await answer

    def run(self, body: InstancesRequest, client: str = "", token: str | None = None,
            writer: Writer | str | None = None,
            owners: Sequence[str | None] | None = None, *, gated: bool = False) -> Answer:
        """Run one batch from `client` (its address) as `writer` (None: a peer; a str: the
        message of a refusal of the whole request, see `Writers`); `owners`: a peer's
        replicated register's owners (`Registry.register`). A batch of more than SLICE
        instances is answered by a coroutine that runs it in slices behind the node's batch
        gate (`gated`: the caller holds it already)."""
        instances = body.instances
        refusal = self._admit(len(instances) if instances else 0, client, token, writer)
        if refusal is not None:
            return refusal
        return self._execute(instances or [], client, writer, owners, gated)  # type: ignore[arg-type]

    def _admit(self, count: int, client: str, token: str | None,
               writer: Writer | str | None, now: float | None = None) -> bytes | None:
        """The checks of a whole batch of `count` instances, in order: the rate limits (the
        call is counted when it passes them, at `now`), the writer's refusal, an empty or too
        large batch (BadRequest), a node not serving; the failure answer, or None."""
        node = self.node
        # Limited per client too (its token's name when it sends one: the hook for scoped
        # tokens, else its address); a peer's replicated write never is (no "replication"
        # family in node.client_limiters).
        if not node.allowed(self.limiter, self.identity,
                            client_key(client, token) if client or token else None, now):
            return self.route.fail(ErrorCode.RATE_LIMITED, "Request is rate limited.")
        if isinstance(writer, str):
            return self.route.fail(ErrorCode.NO_PERMISSION, writer)
        if not count:
            raise BadRequest("request.instances is null or empty.")
        limit = self.max_batch
        if limit is not None and count > limit:
            raise BadRequest(f"request.instances has {count} instances; "
                             f"at most {limit} are accepted in one request.")
        if self.needs_up and not node.state.serves_registry:
            return self.route.fail(ErrorCode.SERVICE_UNAVAILABLE,
                                   f"Serivce registry is not in up state. Current status: "
                                   f"{node.state.status}")
        return None

    def _execute(self, instances: Sequence[wire.Instance | None], client: str,
                 writer: Writer | None, owners: Sequence[str | None] | None,
                 gated: bool) -> Answer:
        """Run an admitted batch: at once, or in slices when it is large."""
        if len(instances) > SLICE:
            return self._in_slices(instances, client, writer, owners, gated)
        return self._answer(self._apply(instances, client, writer, owners))

    def _answer(self, result: BatchResult) -> bytes:
        if result.failed and self.route.stats is not None:
            self.route.stats.error(ErrorCode.PARTIAL_FAIL)
        return answer(result)

    def _apply(self, instances: Sequence[wire.Instance | None], client: str,
               writer: Writer | None, owners: Sequence[str | None] | None) -> BatchResult:
        """Run the operation on `instances` (all checks of the request done), publish its
        changes and replicate what succeeded."""
        node = self.node
        clock = node.clock
        if self.per_client:
            result = self.operation(instances, clock.monotonic(), clock.wall_ms(), client=client,
                                    writer=writer)
        elif self.writers is not None:
            result = self.operation(instances, clock.monotonic(), clock.wall_ms(), writer=writer)
        elif owners:
            result = self.operation(instances, clock.monotonic(), clock.wall_ms(), owners=owners)
        else:
            result = self.operation(instances, clock.monotonic(), clock.wall_ms())
        node.publish(result.changes)
        if self.replicate is not None and result.succeeded:
            self.replicate(self.identity, result.succeeded,
                           node.registry.owners(result.succeeded) if self.per_client else None)
        return result

    async def _in_slices(self, instances: Sequence[wire.Instance | None], client: str,
                         writer: Writer | None, owners: Sequence[str | None] | None,
                         gated: bool) -> bytes:
        """Run a large batch SLICE instances at a time behind the node's batch gate (one large
        batch at a time, so concurrent ones do not add up in one turn of the loop), giving
        the event loop back whenever STEP_BUDGET has passed; one answer with every slice's
        failures, in the batch's order. Each slice is a batch of its own to the registry
        (instances of a batch are independent)."""
        if not gated:
            async with self.node.batch_gate:
                return await self._in_slices(instances, client, writer, owners, True)
        failed: list[wire.FailedInstance] = []
        clock = time.perf_counter
        until = clock() + STEP_BUDGET
        for start in range(0, len(instances), SLICE):
            if start and clock() >= until:
                await asyncio.sleep(0)
                until = clock() + STEP_BUDGET
            part = self._apply(instances[start:start + SLICE], client, writer,
                               owners[start:start + SLICE] if owners else None)
            failed += part.failed
        return self._answer(BatchResult(failed=failed))


class RegistryApi:
    """The three registry operations; heartbeat is shared with the heartbeat WebSocket."""

    def __init__(self, node: Node, replicate: Replicate | None = None) -> None:
        registry = node.registry
        self.writers = writers = Writers(node)
        self.register = InstancesOperation(node, REGISTER, "register", registry.register,
                                           replicate=replicate, per_client=True,
                                           writers=writers)
        self.heartbeat = InstancesOperation(node, HEARTBEAT, "heartbeat", registry.heartbeat,
                                            replicate=replicate, writers=writers, exact=True)
        self.unregister = InstancesOperation(node, UNREGISTER, "unregister",
                                             registry.unregister, replicate=replicate,
                                             writers=writers)
        mode = registry.ownership.mode
        (log.warning if mode is Mode.PERMISSIVE else log.info)(
            "registration mode %s%s", mode.value,
            ": anyone may replace or unregister any instance" if mode is Mode.PERMISSIVE else "")
        self.routes = {
            REGISTER.path: self.register.route,
            HEARTBEAT.path: self.heartbeat.route,
            UNREGISTER.path: self.unregister.route,
        }


def routes(node: Node, replicate: Replicate | None = None) -> RegistryApi:
    return RegistryApi(node, replicate)


BATCH: Final = ("A batch is checked as a whole first (rate limit, `instances` missing, empty or "
                "over `max_batch`, node not serving), then each instance on its own: a failing "
                "one is listed in `failedInstances` and the answer is `partial_fail`.")

REGISTER: Final = Endpoint(
    "/api/registry/register.json", POST, "Register instances", wire.InstancesRequest,
    wire.InstancesResponse, InstancesOperation.handle,
    description="Creates (or replaces) the lease of each instance. " + BATCH)
HEARTBEAT: Final = Endpoint(
    "/api/registry/heartbeat.json", POST, "Renew the leases of instances", wire.InstancesRequest,
    wire.InstancesResponse, InstancesOperation.handle,
    description="An unknown or expired instance fails `data-not-found` (register it again). "
    + BATCH)
UNREGISTER: Final = Endpoint(
    "/api/registry/unregister.json", POST, "Unregister instances", wire.InstancesRequest,
    wire.InstancesResponse, InstancesOperation.handle,
    description="Removes each lease at once; an unknown instance is a success. " + BATCH)
ENDPOINTS: Final = (REGISTER, HEARTBEAT, UNREGISTER)
