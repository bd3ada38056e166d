"""Routes and the common path of every request: find the route, refuse an unknown path (404) or
a wrong method (405), read the body within its limits, call the handler, turn what goes wrong
into the endpoint's Artemis error answer, and encode the answer (gzip when it pays).

Error answers
  * A request to a known endpoint always gets HTTP 200 and a body of that endpoint's shape with
    `responseStatus` saying what went wrong (`bad-request` for malformed JSON, wrong types,
    oversized or broken gzip bodies; the Artemis codes otherwise), as the original answers.
  * An unknown path gets 404 and a wrong method 405 (with `Allow`), each with a JSON body.
  * An exception inside a handler gets `internal-service-error` and is logged; nothing crashes.
    The log line and the answer's `X-Request-Id` header carry the request's id (its own
    `X-Request-Id`, or a new one): only these error paths make or read one.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Final

from artemis.server.http.body import GzipCache, content_length_problem, decompress
from artemis.server.http.cors import Cors
from artemis.server.http.messages import (
    JSON,
    STREAM_GROUP,
    BadRequest,
    Pieces,
    Request,
    Response,
    WsHandler,
    fail_body,
)
from artemis.server.observability.logs import request_id
from artemis.server.observability.metrics import EndpointStats
from artemis.server.observability.tracing import Tracing
from artemis.wire import ErrorCode

__all__ = ["AsyncHandler", "Handler", "Route", "Router"]

log = logging.getLogger("artemis.http")

# A sync handler may answer with a coroutine when its work must give the loop back (a large
# registry batch, run in slices): the shell awaits it.
Handler = Callable[[Request], Response | bytes | Pieces | Awaitable[Response | bytes | Pieces]]
AsyncHandler = Callable[[Request], Awaitable[Response | bytes | Pieces]]
Reader = Callable[[str | None], Awaitable[tuple[bytes, str | None]]]

INTERNAL_ERROR: Final = "the node failed on this request; it is logged"


@dataclass(slots=True)
class Route:
    """One endpoint: its methods, its handler and the null payload of its error answers."""

    methods: frozenset[str]
    handler: Handler | None = None
    async_handler: AsyncHandler | None = None
    null_fields: Mapping[str, Any] = field(default_factory=dict)
    reads_body: bool = True
    stats: EndpointStats | None = None  # set when metrics are on

    def fail(self, code: str, message: str) -> bytes:
        """An error answer of this endpoint (counted by code when metrics are on)."""
        if self.stats is not None:
            self.stats.error(code)
        return fail_body(self.null_fields, code, message)


class Router:
    """Routes requests under a context path to handlers; the interfaces' faces build on it."""

    def __init__(self, routes: Mapping[str, Route], *, context_path: str = "",
                 max_body_bytes: int = 4 * 1024 * 1024, gzip_min_bytes: int = 8192,
                 lifespan: Callable[[], Any] | None = None,
                 websockets: Mapping[str, WsHandler] | None = None,
                 unmatched: EndpointStats | None = None,
                 tracing: Tracing | None = None, cors_origins: Sequence[str] = ()) -> None:
        self.routes = {context_path + path: route for path, route in routes.items()}
        # Prefix routes ("/console/*"): tried, longest first, when no exact route matches; the
        # handler reads the rest of the path from the request.
        self.prefixes = sorted(((path[:-1], route) for path, route in self.routes.items()
                                if path.endswith("/*")), key=lambda pair: -len(pair[0]))
        self.context_path = context_path
        self.max_body_bytes = max_body_bytes
        self.gzip_min_bytes = gzip_min_bytes
        self._lifespan = lifespan
        self.websockets = {context_path + path: handler
                           for path, handler in (websockets or {}).items()}
        # 404 and 405 answers, when metrics are on (routes carry their own stats)
        self.unmatched = unmatched
        self.tracing = tracing  # when OTEL_* variables ask for traces
        self._gzipped = GzipCache()
        self.cors = Cors(cors_origins)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self.routes)} routes under "
                f"{self.context_path or '/'!r})")

    def match(self, path: str) -> Route | None:
        """The route of `path`: its exact route, else the longest prefix route it is under."""
        route = self.routes.get(path)
        if route is None and self.prefixes:
            for prefix, candidate in self.prefixes:
                if path.startswith(prefix):
                    return candidate
        return route

    def _not_found(self, path: str) -> Response:
        if self.unmatched is not None:
            self.unmatched.error("not-found")
        return Response(fail_body({}, ErrorCode.BAD_REQUEST, f"no endpoint at {path}"),
                        status=404)

    def _wrong_method(self, route: Route, method: str, path: str) -> Response:
        if self.unmatched is not None:
            self.unmatched.error("method-not-allowed")
        allowed = ", ".join(sorted(route.methods | {"OPTIONS"}))
        return Response(fail_body({}, ErrorCode.BAD_REQUEST, f"{method} is not allowed on "
                                  f"{path}; use {allowed}"),
                        status=405, headers=[("allow", allowed)])

    def _options(self, route: Route, origin: str | None) -> Response:
        """The answer to OPTIONS: `Allow`, and a CORS preflight's headers for a listed origin."""
        allowed = ", ".join(sorted(route.methods | {"OPTIONS"}))
        return Response(b"", headers=[*self.cors.of(origin).preflight, ("allow", allowed)],
                        content_type="")

    async def _respond(self, route: Route, request: Request) -> Response:
        try:
            if route.async_handler is not None:
                result = await route.async_handler(request)
            else:
                answered = route.handler(request)  # type: ignore[misc]
                result = await answered if inspect.isawaitable(answered) else answered
        except BadRequest as exc:
            return Response(route.fail(ErrorCode.BAD_REQUEST, str(exc)))
        except Exception:
            with request_id(request.header("x-request-id")) as rid:
                log.exception("internal error on %s %s", request.method, request.path)
            return Response(route.fail(ErrorCode.INTERNAL_SERVICE_ERROR, INTERNAL_ERROR),
                            headers=[("x-request-id", rid)])
        return result if isinstance(result, Response) else Response(result)

    async def _encode_out(self, response: Response, accept_encoding: str | None,
                          origin: str | None = None
                          ) -> tuple[list[tuple[str, str]], bytes | Pieces]:
        if not response.content_type:  # an answer to OPTIONS: its headers are complete
            return response.headers, b""
        cors = self.cors.of(origin)
        body = response.body
        if isinstance(body, Pieces) and body.size < STREAM_GROUP:
            body = body.joined()
        size = body.size if isinstance(body, Pieces) else len(body)
        if (size >= self.gzip_min_bytes and accept_encoding and "gzip" in accept_encoding
                and response.content_type == JSON):
            headers = cors.json_gzip
            body = await self._gzipped.get(body)
        elif response.content_type == JSON:
            headers = cors.json
        else:
            headers = [("content-type", response.content_type), *cors.extra]
        if response.headers:
            headers = [*headers, *response.headers]
        return headers, body

    def _observe(self, path: str, started: float) -> None:
        route = self.match(path)
        stats = route.stats if route is not None else self.unmatched
        if stats is not None:
            stats.observe(perf_counter() - started)

    async def _dispatch(self, method: str, path: str, query: str, headers: Any, client: str,
                        read: Reader) -> tuple[Response, bool]:
        """The answer to a request, and whether its connection must close (its body was not
        read to the end); `read(content_length)` reads the body within the size limit."""
        route = self.match(path)
        if route is None:
            return self._not_found(path), False
        if method not in route.methods:
            if method == "OPTIONS":
                return self._options(route, headers.get("origin")), False
            return self._wrong_method(route, method, path), False
        body = b""
        problem = None
        close = False
        if route.reads_body and method != "GET":
            length = headers.get("content-length")
            problem = content_length_problem(length, self.max_body_bytes)
            if problem is None:
                body, problem = await read(length)
                close = problem is not None
            if problem is None:
                try:
                    body = decompress(body, headers.get("content-encoding"),
                                      self.max_body_bytes)
                except BadRequest as exc:
                    problem = str(exc)
        if problem is not None:
            return Response(route.fail(ErrorCode.BAD_REQUEST, problem)), close
        request = Request(method, path, query, headers, body, client)
        return await self._respond(route, request), False
