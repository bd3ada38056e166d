"""One declaration per endpoint, and what is derived from it.

An `Endpoint` says everything about one HTTP endpoint: its path and methods, the request body it
reads, the answer it gives, the role a caller needs, the function that handles it, and the text
that documents it. From it come:

  * the `Route` the HTTP shell serves (`bind`), its handler bound to the object that serves it;
  * the null payload of its error answers (`Endpoint.null_fields`): the answer type's fields
    other than `responseStatus`, null, or their default when the wire type gives one (the
    original's Java primitives: `0`, `false`), camelCase as the wire encodes them;
  * its authorization, checked in one place (`Access`, applied by `bind`) from the role;
  * its entry in the OpenAPI document (`server/api/openapi.py`).

Roles
  none    anyone.
  read    a bearer token with the read role (`tokens`, or `admin_token`, which has every role),
          unless `management_open_reads` opens reads to anyone.
  write   a bearer token with the write role.
  admin   the `admin_token` as a bearer token; with none configured, a caller on the loopback
          address. The admin switches guard their POST only (GET shows the state).
  peer    a node of the cluster: the cluster secret in `x-artemis-cluster-secret`
          (`server/cluster/credential.py`), or anyone with `cluster_insecure`; on a node without
          peers, no one. The replication, bootstrap and repair endpoints.
  A caller without the role gets `no-permission` in the endpoint's shape. A protected family may
  put a check before the role's (`Gate.closed`: management without a database answers
  `service-unavailable` whoever calls) and around the handler (`Gate.run`).
"""

from __future__ import annotations

import enum
import hmac
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MethodType
from typing import Any, Final, NamedTuple, Protocol

import msgspec

from artemis.server.cluster.credential import ClusterCredential
from artemis.server.http import JSON, Request, Route
from artemis.server.settings import Settings
from artemis.wire import ErrorCode

__all__ = ["ANONYMOUS", "GET", "GET_POST", "POST", "REGION_QUERY", "ZONE_QUERY", "Access", "Call",
           "Endpoint", "Gate", "Query", "Role", "bind", "null_fields"]

ANONYMOUS: Final = "anonymous"  # the actor of a call no role was asked of
GET: Final = frozenset({"GET"})
POST: Final = frozenset({"POST"})
GET_POST: Final = frozenset({"GET", "POST"})
_LOOPBACK: Final = ("127.0.0.1", "::1", "localhost", "")


class Role(enum.StrEnum):
    """What a caller needs to be answered (see the module's docstring)."""

    NONE = "none"
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    PEER = "peer"


class Query(NamedTuple):
    """A query parameter of an endpoint's GET form."""

    name: str
    schema: dict[str, Any]
    description: str
    required: bool = False
    explode: bool = True


REGION_QUERY: Final = Query("regionId", {"type": "string"},
                            "Region asked for; another than the node's is refused "
                            "`no-permission`, none means the node's.")
ZONE_QUERY: Final = Query("zoneId", {"type": "string"}, "Zone asked for; none means the node's.")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One HTTP endpoint.

    `handler` is a function of the object that serves the endpoint (an unbound method):
    `(api, request)`, or `(api, request, actor)` when the endpoint has a role; sync or async.
    `request` is the body its POST reads (None: none is read), `answer` its 200 answer (a Struct
    or any type msgspec can describe); `guarded` the methods the role guards (None: all);
    `statuses` other HTTP statuses it answers with the same shape; `bare_errors` makes its error
    answers `responseStatus` alone (the node's own pages, where zeros would mislead).
    """

    path: str
    methods: frozenset[str]
    summary: str
    request: type[msgspec.Struct] | None
    answer: Any
    handler: Callable[..., Any]
    role: Role = Role.NONE
    guarded: frozenset[str] | None = None
    query: tuple[Query, ...] = ()
    description: str = ""
    content_type: str = JSON
    statuses: Mapping[int, str] = field(default_factory=dict)
    reads_body: bool = True
    bare_errors: bool = False

    @property
    def null_fields(self) -> dict[str, Any]:
        """The payload of this endpoint's error answers."""
        return {} if self.bare_errors else null_fields(self.answer)

    def guards(self, method: str) -> bool:
        """Whether a call with `method` needs the role."""
        return self.role is not Role.NONE and (self.guarded is None or method in self.guarded)


def null_fields(answer: Any) -> dict[str, Any]:
    """The fields of an answer type other than responseStatus, by wire name: null, or the
    field's default when it has one that is not null (`0`, `false`)."""
    if not (isinstance(answer, type) and issubclass(answer, msgspec.Struct)):
        return {}
    out: dict[str, Any] = {}
    for f in msgspec.structs.fields(answer):
        if f.name != "response_status":
            default = f.default
            out[f.encode_name] = default if isinstance(default, bool | int | float) else None
    return out


class Access:
    """The one authorization check of protected endpoints, driven by their role."""

    __slots__ = ("_admin_token", "_open_reads", "_tokens", "peers")

    def __init__(self, settings: Settings, peers: ClusterCredential | None = None) -> None:
        self.peers = peers or ClusterCredential(settings)  # the `peer` role's check
        self._tokens = {name: (roles, secret.encode())
                        for name, (roles, secret) in settings.api_tokens().items()}
        self._admin_token = settings.admin_token
        self._open_reads = settings.management_open_reads

    def actor(self, request: Request, role: Role) -> str | None:
        """Who calls, if the caller has `role`: the name of its token (`admin` for the admin
        token or a loopback caller, `anonymous` for open reads); None if it has not."""
        if role is Role.NONE:
            return ANONYMOUS
        if role is Role.ADMIN:
            return "admin" if self._admin(request) else None
        if role is Role.PEER:
            return "peer" if self.peers.admits(request) else None
        if role is Role.READ and self._open_reads:
            return ANONYMOUS
        secret = _bearer(request)
        if not secret:
            return None
        found = None
        for name, (roles, expected) in self._tokens.items():  # every token compared, in
            if hmac.compare_digest(secret, expected) and role in roles:  # constant time each
                found = name
        return found

    def token_of(self, request: Request) -> tuple[str, frozenset[str]] | None:
        """The name and roles of the bearer token `request` carries, if it is one of the
        node's (every token compared, in constant time each); None otherwise."""
        secret = _bearer(request)
        if not secret:
            return None
        found = None
        for name, (roles, expected) in self._tokens.items():
            if hmac.compare_digest(secret, expected):
                found = (name, roles)
        return found

    def _admin(self, request: Request) -> bool:
        if not self._admin_token:
            host = request.client.rsplit(":", 1)[0].strip("[]")
            return host in _LOOPBACK
        given = request.header("authorization") or ""
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                                  self._admin_token.encode())

    def refusal(self, role: Role) -> str:
        """The message of a `no-permission` answer to a caller without `role`."""
        if role is Role.PEER:
            return self.peers.refusal_message()
        if role is Role.ADMIN:
            return ("this switch needs the admin bearer token (or, with no token configured, "
                    "a call from 127.0.0.1)")
        return f"this call needs a bearer token with the {role} role"

    def __repr__(self) -> str:
        return (f"Access({len(self._tokens)} tokens, admin token "
                f"{'set' if self._admin_token else 'unset'}, open reads {self._open_reads})")


def _bearer(request: Request) -> bytes:
    given = request.header("authorization") or ""
    scheme, _, value = given.partition(" ")
    return value.strip().encode() if scheme.lower() == "bearer" else b""


Answer = Any  # Response | bytes | Pieces
Call = Callable[[Request, str], Awaitable[Answer]]


class Gate(Protocol):
    """What a family of protected endpoints checks besides the role (management: its
    database)."""

    def closed(self) -> tuple[str, str] | None:
        """(code, message) when the family cannot answer anyone; checked before the role."""

    async def run(self, route: Route, call: Call, request: Request, actor: str) -> Answer:
        """`call(request, actor)`, with the family's own checks and error answers around it."""


def bind(endpoint: Endpoint, api: object, access: Access | None = None,
         gate: Gate | None = None) -> Route:
    """The route serving `endpoint` with `api`'s handler; a protected endpoint's handler is
    called once its caller has the role (`access` is then required)."""
    handler = MethodType(endpoint.handler, api)  # no wrapper on a public route
    route = Route(endpoint.methods, null_fields=endpoint.null_fields,
                  reads_body=endpoint.reads_body)
    is_async = inspect.iscoroutinefunction(endpoint.handler)
    if endpoint.role is Role.NONE:
        if is_async:
            route.async_handler = handler
        else:
            route.handler = handler
        return route
    if access is None:
        raise ValueError(f"{endpoint.path} needs the {endpoint.role} role: bind it with access")
    role = endpoint.role
    refusal = access.refusal(role)
    if is_async:
        call: Call = handler

        async def protected(request: Request) -> Answer:
            if gate is not None:
                closed = gate.closed()
                if closed is not None:
                    return route.fail(*closed)
            actor = ANONYMOUS
            if endpoint.guards(request.method):
                found = access.actor(request, role)
                if found is None:
                    return route.fail(ErrorCode.NO_PERMISSION, refusal)
                actor = found
            if gate is not None:
                return await gate.run(route, call, request, actor)
            return await call(request, actor)

        route.async_handler = protected
        return route
    if gate is not None:
        raise ValueError(f"{endpoint.path}: a gate needs an async handler")

    def protected_sync(request: Request) -> Answer:
        actor = ANONYMOUS
        if endpoint.guards(request.method):
            found = access.actor(request, role)
            if found is None:
                return route.fail(ErrorCode.NO_PERMISSION, refusal)
            actor = found
        return handler(request, actor)

    route.handler = protected_sync
    return route
