"""The Eureka REST API (v2) under `/eureka/` (and `/eureka/v2/`): one prefix route.

| path                                  | method | does                                  |
|---------------------------------------|--------|---------------------------------------|
| /eureka/apps                          | GET    | every application (full fetch)        |
| /eureka/apps/delta                    | GET    | the changes of the last few minutes   |
| /eureka/apps/{APP}                    | GET    | one application (404: none)           |
|                                       | POST   | register (204)                        |
| /eureka/apps/{APP}/{ID}               | GET    | one instance (404: none)              |
|                                       | PUT    | renew (200; 404: register again)      |
|                                       | DELETE | cancel (200; 404: none)               |
| /eureka/apps/{APP}/{ID}/status        | PUT    | override the status (?value=)         |
|                                       | DELETE | remove the override (?value= new one) |
| /eureka/apps/{APP}/{ID}/metadata      | PUT    | set metadata entries (?key=value)     |
| /eureka/instances/{ID}                | GET    | one instance, by id alone             |
| /eureka/vips/{VIP}, /eureka/svips/{V} | GET    | the instances of a (secure) VIP       |

Answers are JSON when Accept says json, else XML (Eureka's choice); errors are plain text with
the HTTP status Eureka clients act on: 400 a body or value they cannot send again as it is, 403
refused by the node's trust model (registration_mode, tokens, ownership), 404 not held (renew:
register again), 405 a path that takes other methods (`Allow`), 429 over a rate limit, 503 a
node that does not serve (starting, or down). A request that fails changes nothing.

Writes are the registry's own (core/registry.py) with the caller as writer, exactly as the
Artemis API's: the same leases, caps, ownership, checks, rate limits (the `registry` family and
its register / heartbeat / unregister limits), the same changes published to push and replicated
to peers. A bearer token, or a Basic password (what a Eureka client's `user:password@` URL
sends), is the writer's token. Reads are held to the caller's `discovery` limit.

The route has a synchronous handler, which the RSGI hot path calls for requests with a small
declared body (renewals: the hot path of Eureka clients), and an asynchronous one for the rest,
which builds large answers in chunks (views.py) instead of at once.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Final
from urllib.parse import parse_qsl, unquote

from artemis.core.ownership import Writer
from artemis.core.ratelimit import client_key
from artemis.core.registry import BatchResult, Lease
from artemis.server.api.registry import RegistryApi, client_address
from artemis.server.eureka.codec import (
    JSON_TYPE,
    XML_TYPE,
    app_answer,
    instance_answer,
    read_instance,
    wants_json,
)
from artemis.server.eureka.mapping import (
    STATUSES,
    UNKNOWN,
    Invalid,
    dirty_of,
    eureka_status,
    override_of,
    to_artemis,
    with_metadata,
    with_status,
)
from artemis.server.eureka.views import Answer, Item, Views
from artemis.server.http import Request, Response, Route
from artemis.server.http.body import GzipCache
from artemis.server.node import Node
from artemis.wire import ErrorCode, Instance

__all__ = ["PATHS", "EurekaApi"]

log = logging.getLogger("artemis.eureka")

PATHS: Final = ("/eureka/*",)
METHODS: Final = frozenset({"GET", "POST", "PUT", "DELETE"})
TEXT: Final = "text/plain; charset=utf-8"
_HTTP_OF: Final[dict[str, int]] = {ErrorCode.BAD_REQUEST: 400, ErrorCode.NO_PERMISSION: 403,
                   ErrorCode.DATA_NOT_FOUND: 404, ErrorCode.RATE_LIMITED: 429}
_ALLOWED: Final[dict[tuple[str, ...], tuple[str, ...]]] = {  # by path shape ({}: any segment)
    ("apps",): ("GET",), ("apps", "delta"): ("GET",), ("apps", "{}"): ("GET", "POST"),
    ("apps", "{}", "{}"): ("DELETE", "GET", "PUT"),
    ("apps", "{}", "{}", "status"): ("DELETE", "PUT"), ("apps", "{}", "{}", "metadata"): ("PUT",),
    ("instances", "{}"): ("GET",), ("vips", "{}"): ("GET",), ("svips", "{}"): ("GET",),
}
_RENEWED: Final = Response(b"", status=200, content_type="")  # shared: nothing changes it
_NOT_EUREKA: Final = ("this instance was registered through the Artemis API: its data is what "
                      "its client heartbeats, so it cannot be changed here (pull it out with "
                      "the management API)")


def text(status: int, message: str) -> Response:
    return Response(message.encode(), status=status, content_type=TEXT)


def empty(status: int, headers: list[tuple[str, str]] | None = None) -> Response:
    """A body-less answer (204, a renew's 200, 304)."""
    return Response(b"", status=status, headers=headers or [], content_type="")


def valid_status(value: str | None) -> str | None:
    """The status a `value` query parameter names (any case), else None."""
    name = (value or "").strip().upper()
    return name if name in STATUSES else None


def _bad_status(value: str | None) -> Response:
    return text(400, f"value must be one of {', '.join(STATUSES)}; got {value!r}")


def authorization(header: str | None) -> str | None:
    """The Authorization header as the registry API reads it: a Basic password is taken as a
    bearer token (Eureka clients send `user:password@` URLs as Basic)."""
    if header is None or header[:6].lower() != "basic ":
        return header
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    password = decoded.partition(":")[2]
    return f"Bearer {password}" if password else None


def shape(parts: list[str]) -> tuple[str, ...]:
    """The path shape of `parts`, as the keys of _ALLOWED name them."""
    if not parts:
        return ()
    if parts[0] != "apps":
        return (parts[0], *("{}" for _ in parts[1:]))
    if parts == ["apps", "delta"]:
        return ("apps", "delta")
    return ("apps", *("{}" for _ in parts[1:3]), *parts[3:])


class EurekaApi:
    """The Eureka API of one node (see the module doc)."""

    def __init__(self, node: Node, registry_api: RegistryApi) -> None:
        self.node = node
        self.registry = node.registry
        self.clock = node.clock
        self.views = Views(node)
        self.writers = registry_api.writers
        self.replicate = registry_api.register.replicate
        settings = node.settings
        self.region, self.zone = settings.region, settings.zone
        self.base = settings.context_path + "/eureka"
        self.gzip_min = settings.gzip_min_bytes
        self._gzip = GzipCache()
        self.route = Route(METHODS, handler=self.handle, async_handler=self.handle_async)

    def routes(self) -> dict[str, Route]:
        return dict.fromkeys(PATHS, self.route)

    # --- dispatch ------------------------------------------------------------------------------

    def parts(self, request: Request) -> list[str]:
        rest = request.path[len(self.base):].strip("/")
        parts = rest.split("/") if rest else []
        if "%" in rest:
            parts = [unquote(p) for p in parts]
        return parts[1:] if parts[:1] == ["v2"] else parts

    async def handle_async(self, request: Request) -> Response:
        parts = self.parts(request)
        if request.method == "GET" and (parts in (["apps"], ["apps", "delta"])
                                        or (len(parts) == 2 and parts[0] in ("vips", "svips"))):
            try:
                refused = self._read_refusal(request)
                if refused is not None:
                    return refused
                as_json = wants_json(request.header("accept"))
                if parts == ["apps"]:
                    return await self._send(request, await self.views.full(as_json), as_json)
                if parts[1] == "delta":
                    delta = await self.views.delta(as_json)
                    return self._no_delta() if delta is None else await self._send(
                        request, delta, as_json)
                answer = await self.views.vip(parts[1], parts[0] == "svips", as_json)
                return await self._send(request, answer, as_json)
            except Exception:
                return self._failed(request)
        return self.handle(request)

    def handle(self, request: Request) -> Response:
        """Every request, answered at once (large answers from what is kept, else built)."""
        try:
            return self._dispatch(request, self.parts(request))
        except Exception:
            return self._failed(request)

    def _failed(self, request: Request) -> Response:
        log.exception("internal error on %s %s", request.method, request.path)
        return text(500, "the node failed on this request; it is logged")

    def _dispatch(self, request: Request, parts: list[str]) -> Response:
        allowed = _ALLOWED.get(shape(parts))
        if allowed is None:
            return text(404, f"no Eureka resource at {request.path}")
        method = request.method
        if method not in allowed:
            allow = ", ".join(allowed)
            return Response(f"{method} is not allowed on {request.path}; use {allow}".encode(),
                            status=405, headers=[("allow", allow)], content_type=TEXT)
        if method == "GET":
            return self._read(request, parts)
        if method == "POST":
            return self._register(request, parts[1])
        app, instance_id = parts[1], parts[2]
        if len(parts) == 3:
            if method == "PUT":
                return self._renew(request, app, instance_id)
            return self._cancel(request, app, instance_id)
        if parts[3] == "metadata":
            return self._metadata(request, app, instance_id)
        if method == "PUT":
            return self._override(request, app, instance_id)
        return self._remove_override(request, app, instance_id)

    # --- reads ---------------------------------------------------------------------------------

    def _read_refusal(self, request: Request) -> Response | None:
        node = self.node
        if not node.allowed("discovery", "eureka", client_address(request.client)):
            return text(429, "Request is rate limited.")
        if not node.state.serves_discovery:
            return text(503, f"Service discovery is not in up state. Current status: "
                             f"{node.state.status}")
        return None

    def _read(self, request: Request, parts: list[str]) -> Response:
        refused = self._read_refusal(request)
        if refused is not None:
            return refused
        as_json = wants_json(request.header("accept"))
        views = self.views
        kind = parts[0]
        if parts == ["apps"]:
            return self._send_now(request, views.full_now(as_json), as_json)
        if parts == ["apps", "delta"]:
            delta = views.delta_now(as_json)
            return self._no_delta() if delta is None else self._send_now(request, delta,
                                                                         as_json)
        if kind in ("vips", "svips"):
            return self._send_now(request, views.vip_now(parts[1], kind == "svips", as_json),
                                  as_json)
        content = JSON_TYPE if as_json else XML_TYPE
        if kind == "instances":
            lease = self._find(parts[1])
        elif len(parts) == 3:
            lease = self._live(parts[1], parts[2], shown=True)
        else:
            state = self.registry.service(parts[1])
            app = None if state is None else views.app(state)
            if app is None or not app.items:
                return text(404, f"no application {parts[1].upper()}")
            body = app_answer(app.name, [views.part(i, as_json) for i in app.items], as_json)
            return Response(body, content_type=content)
        if lease is None:
            return text(404, f"no instance {parts[-1]}")
        return Response(instance_answer(views.part(Item.of(lease), as_json), as_json),
                        content_type=content)

    def _no_delta(self) -> Response:
        return text(403, "the change log no longer reaches back eureka_delta_window: fetch "
                         "the full registry")

    async def _send(self, request: Request, answer: Answer, as_json: bool) -> Response:
        if self._unchanged(request, answer):
            return empty(304, [("etag", answer.etag)])
        headers = [("etag", answer.etag)]
        body = answer.body
        if as_json:  # the HTTP layer gzips JSON (once per answer)
            return Response(body, headers=headers, content_type=JSON_TYPE)
        if body.size >= self.gzip_min and "gzip" in (request.header("accept-encoding") or ""):
            return Response(await self._gzip.get(body), content_type=XML_TYPE,
                            headers=[*headers, ("content-encoding", "gzip")])
        return Response(body, headers=headers, content_type=XML_TYPE)

    def _send_now(self, request: Request, answer: Answer, as_json: bool) -> Response:
        if self._unchanged(request, answer):
            return empty(304, [("etag", answer.etag)])
        return Response(answer.body, headers=[("etag", answer.etag)],
                        content_type=JSON_TYPE if as_json else XML_TYPE)

    @staticmethod
    def _unchanged(request: Request, answer: Answer) -> bool:
        match = request.header("if-none-match")
        return match is not None and answer.etag in match

    def _live(self, app: str, instance_id: str, *, shown: bool = False) -> Lease | None:
        """The live lease of APP/ID (`shown`: only one discovery shows), else None."""
        state = self.registry.service(app)
        lease = None if state is None else state.leases.get(instance_id.lower())
        if lease is None or self.clock.monotonic() > lease.renewed + lease.ttl:
            return None
        return None if shown and lease.hidden else lease

    def _find(self, instance_id: str) -> Lease | None:
        key = instance_id.lower()
        for state in self.registry.services.values():
            lease = state.leases.get(key)
            if lease is not None and not lease.hidden:
                return self._live(state.key, key, shown=True)
        return None

    # --- writes --------------------------------------------------------------------------------

    def _writer(self, request: Request, identity: str) -> tuple[str, Writer] | Response:
        """Who writes, after the rate limit and the node's status; else the refusal."""
        client = client_address(request.client)
        writer = self.writers.resolve(authorization(request.header("authorization")), client)
        token = writer.identity if isinstance(writer, Writer) and writer.token else None
        node = self.node
        if not node.allowed("registry", identity, client_key(client, token)):
            return text(429, "Request is rate limited.")
        if isinstance(writer, str):
            return text(403, writer)
        if not node.state.serves_registry:
            return text(503, f"Serivce registry is not in up state. Current status: "
                             f"{node.state.status}")
        return client, writer

    def _done(self, result: BatchResult, identity: str, status: int) -> Response:
        """Publish and replicate what a write did; its answer."""
        self.node.publish(result.changes)
        if result.failed:
            failure = result.failed[0]
            return text(_HTTP_OF.get(failure.error_code, 500), failure.error_message)
        if self.replicate is not None and result.succeeded:
            owners = self.registry.owners(result.succeeded) if identity == "register" else None
            self.replicate(identity, result.succeeded, owners)
        return empty(status)

    def _store(self, instance: Instance, client: str, writer: Writer,
               status: int = 200) -> Response:
        clock = self.clock
        result = self.registry.register([instance], clock.monotonic(), clock.wall_ms(),
                                        client=client, writer=writer)
        return self._done(result, "register", status)

    def _keep(self, instance: Instance, writer: Writer, status: int = 200) -> Response:
        clock = self.clock
        result = self.registry.heartbeat([instance], clock.monotonic(), clock.wall_ms(),
                                         writer=writer)
        return self._done(result, "heartbeat", status)

    def _register(self, request: Request, app: str) -> Response:
        who = self._writer(request, "register")
        if isinstance(who, Response):
            return who
        client, writer = who
        try:
            info = read_instance(request.body, request.header("content-type"))
            if info.app.upper() != app.upper():
                raise Invalid(f"Mismatched appName, expecting {app.upper()} but was "
                              f"{info.app.upper()}")
            held = self._live(app, info.id)
            override = UNKNOWN
            if held is not None:
                instance = held.instance
                dirty = dirty_of(instance)
                if dirty is not None and dirty > info.last_dirty:
                    return self._keep(instance, writer, 204)  # Eureka keeps the newer data
                override = override_of(instance)
            instance = to_artemis(info, self.region, self.zone, override)
        except Invalid as exc:
            return text(400, str(exc))
        return self._store(instance, client, writer, 204)

    def _renew(self, request: Request, app: str, instance_id: str) -> Response:
        who = self._writer(request, "heartbeat")
        if isinstance(who, Response):
            return who
        lease = self._live(app, instance_id)
        if lease is None:
            return text(404, f"{app}/{instance_id} is not registered: register it again")
        instance = lease.instance
        given = request.query("lastDirtyTimestamp") if request.query_string else None
        if given is not None and given.isdigit():
            held = dirty_of(instance)
            if held is not None and int(given) > held:
                return text(404, "the client holds newer data: register it again")
        if eureka_status(instance.status) == UNKNOWN:
            return text(404, "the status is UNKNOWN (an override was removed): register again")
        renewed, refusal = self.registry.renew(app, instance_id, self.clock.monotonic(), who[1])
        if refusal is not None:
            return text(403, refusal)
        if renewed is None:
            return text(404, f"{app}/{instance_id} is not registered: register it again")
        if self.replicate is not None:
            self.replicate("heartbeat", [instance], None)
        return _RENEWED

    def _cancel(self, request: Request, app: str, instance_id: str) -> Response:
        who = self._writer(request, "unregister")
        if isinstance(who, Response):
            return who
        lease = self._live(app, instance_id)
        if lease is None:
            return text(404, f"{app}/{instance_id} is not registered")
        clock = self.clock
        result = self.registry.unregister([lease.instance], clock.monotonic(), clock.wall_ms(),
                                          writer=who[1])
        return self._done(result, "unregister", 200)

    def _eureka_lease(self, request: Request, app: str, instance_id: str
                      ) -> tuple[str, Writer, Instance] | Response:
        """The writer and the held instance of a change to a Eureka-registered instance."""
        who = self._writer(request, "register")
        if isinstance(who, Response):
            return who
        lease = self._live(app, instance_id)
        if lease is None:
            return text(404, f"{app}/{instance_id} is not registered")
        instance = lease.instance
        if dirty_of(instance) is None:
            return text(409, _NOT_EUREKA)
        return who[0], who[1], instance

    def _override(self, request: Request, app: str, instance_id: str) -> Response:
        value = request.query("value")
        status = valid_status(value)
        if status is None:
            return _bad_status(value)
        held = self._eureka_lease(request, app, instance_id)
        if isinstance(held, Response):
            return held
        client, writer, instance = held
        instance = self._dirtied(request, instance)
        if eureka_status(instance.status) == status and override_of(instance) == status:
            return self._keep(instance, writer)
        return self._store(with_status(instance, status, status), client, writer)

    def _remove_override(self, request: Request, app: str, instance_id: str) -> Response:
        value = request.query("value")
        status = UNKNOWN if value is None else valid_status(value)
        if status is None:
            return _bad_status(value)
        held = self._eureka_lease(request, app, instance_id)
        if isinstance(held, Response):
            return held
        client, writer, instance = held
        instance = self._dirtied(request, instance)
        if override_of(instance) == UNKNOWN:
            return self._keep(instance, writer)
        return self._store(with_status(instance, status, UNKNOWN), client, writer)

    def _metadata(self, request: Request, app: str, instance_id: str) -> Response:
        held = self._eureka_lease(request, app, instance_id)
        if isinstance(held, Response):
            return held
        client, writer, instance = held
        entries: dict[str, str] = {}
        for key, value in parse_qsl(request.query_string, keep_blank_values=True):
            entries.setdefault(key, value)  # the first of a repeated key, as Eureka
        try:
            changed = with_metadata(instance, entries)
        except Invalid as exc:
            return text(400, str(exc))
        if changed == instance:
            return self._keep(instance, writer)
        return self._store(changed, client, writer)

    def _dirtied(self, request: Request, instance: Instance) -> Instance:
        given = request.query("lastDirtyTimestamp")
        if given is None or not given.isdigit():
            return instance
        return with_metadata(instance, {}, int(given))

    def __repr__(self) -> str:
        return f"EurekaApi({self.base}/, {self.views!r})"
