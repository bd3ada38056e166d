"""The HTTP shell: requests in, routes, Artemis error answers, gzip, and the RSGI and ASGI faces.

One `App` serves both interfaces: RSGI under granian in production (the fastest stack measured on
this machine kind), ASGI for in-process tests and for any ASGI server. Handlers see a `Request` and
return a `Response`; they never touch the interface.

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

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Final, Protocol
from urllib.parse import parse_qs

import msgspec
from opentelemetry import trace

from artemis import wire
from artemis.server.observability.logs import request_id
from artemis.server.observability.metrics import EndpointStats
from artemis.server.observability.tracing import Tracing

__all__ = [
    "App",
    "BadRequest",
    "Request",
    "Response",
    "Route",
    "WebSocket",
    "WsHandler",
    "fail_body",
    "status_bytes",
]

log = logging.getLogger("artemis.http")

JSON: Final = "application/json"
_STREAM_GROUP: Final = 256 * 1024  # answers larger than this are streamed in groups this big
_CORS: Final = [("access-control-allow-origin", "*")]
_JSON_HEADERS: Final = [("content-type", JSON), *_CORS]
_JSON_GZIP_HEADERS: Final = [
    *_JSON_HEADERS, ("content-encoding", "gzip"), ("vary", "Accept-Encoding"),
]
_PREFLIGHT_HEADERS: Final = [
    *_CORS,
    ("access-control-allow-methods", "*"),
    ("access-control-allow-headers", "*"),
    ("access-control-expose-headers", "*"),
    ("access-control-allow-credentials", "true"),
    ("access-control-max-age", "3600"),
]


def status_bytes(code: str, message: str = "", status: str = "fail") -> bytes:
    return wire.encode(wire.ResponseStatus(error_code=code, message=message, status=status))


_sorted_encoder: Final = msgspec.json.Encoder(order="sorted")


def fail_body(null_fields: Mapping[str, Any], code: str, message: str) -> bytes:
    """An error answer in the shape of an endpoint: its payload fields null, keys sorted."""
    status = msgspec.Raw(status_bytes(code, message))
    return _sorted_encoder.encode({**null_fields, "responseStatus": status})


class BadRequest(Exception):
    """The request cannot be read; the message names the problem (answered `bad-request`)."""


class Request:
    """One HTTP request, body already read, gzip undone."""

    __slots__ = ("_headers", "_query", "body", "client", "method", "path", "query_string")

    def __init__(self, method: str, path: str, query_string: str, headers: Any, body: bytes,
                 client: str) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self._headers = headers  # anything with .get(lower-case name)
        self.body = body
        self.client = client
        self._query: dict[str, list[str]] | None = None

    def header(self, name: str) -> str | None:
        value = self._headers.get(name)
        return None if value is None else str(value)

    def query(self, name: str) -> str | None:
        values = self.query_all(name)
        return values[0] if values else None

    def query_all(self, name: str) -> list[str]:
        if self._query is None:
            self._query = parse_qs(self.query_string, keep_blank_values=True)
        return self._query.get(name, [])

    def json(self, kind: type[Any]) -> Any:
        """The body decoded as `kind`; an empty body means `{}` (the original's GET forms)."""
        try:
            return wire.decode(self.body or b"{}", kind)
        except wire.DecodeError as exc:
            raise BadRequest(f"request body: {exc}") from None

    def __repr__(self) -> str:
        return f"Request({self.method} {self.path}, {len(self.body)} bytes from {self.client})"


class Pieces:
    """An answer in parts: sent part group by part group when large, never joined in one piece
    on the event loop (copying tens of megabytes at once stalls it for tens of milliseconds)."""

    __slots__ = ("gzipped", "parts", "size")

    def __init__(self, parts: list[bytes], size: int | None = None) -> None:
        self.parts = parts
        self.size = sum(map(len, parts)) if size is None else size
        self.gzipped: Pieces | None = None  # compressed once, kept as long as this answer

    def groups(self, target: int = _STREAM_GROUP) -> Iterator[bytes]:
        group: list[bytes] = []
        size = 0
        for part in self.parts:
            group.append(part)
            size += len(part)
            if size >= target:
                yield b"".join(group)
                group, size = [], 0
        if group:
            yield b"".join(group)

    def __repr__(self) -> str:
        return f"Pieces({len(self.parts)} parts, {self.size} bytes)"


@dataclass(slots=True)
class Response:
    body: bytes | Pieces
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSON


_PREFLIGHT: Final = Response(b"")
_NO_SPAN: Final = contextlib.nullcontext()  # the answer to a CORS preflight (OPTIONS)

class WebSocket(Protocol):
    """One accepted WebSocket, whatever the interface: text and binary messages in, text out."""

    async def receive(self) -> str | bytes | None:
        """The next message; None once the peer has closed."""

    async def send(self, text: str) -> None:
        """Send a text frame; raises ConnectionError once the socket is closed."""

    def close(self, code: int) -> None:
        """Close with `code` (the reason travels in a last frame: RSGI carries none)."""


WsHandler = Callable[[WebSocket, str], Awaitable[None]]


class _RsgiWebSocket:
    __slots__ = ("_closed", "_proto", "_transport")

    def __init__(self, proto: Any, transport: Any) -> None:
        self._proto = proto
        self._transport = transport
        self._closed = False

    async def receive(self) -> str | bytes | None:
        transport = self._transport
        if self._closed or transport is None:
            return None
        try:
            message = await transport.receive()
        except Exception:  # granian's protocol errors: the socket is gone
            return None
        if message.kind == 0:  # close
            return None
        data: str | bytes = message.data
        return data

    async def send(self, text: str) -> None:
        transport = self._transport
        if self._closed or transport is None:
            raise ConnectionError("the WebSocket is closed")
        try:
            await transport.send_str(text)
        except Exception as exc:
            raise ConnectionError(str(exc)) from None

    def close(self, code: int) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self._proto.close(code)
            # granian finishes the closing handshake once nothing holds the transport any more
            self._transport = None
            self._proto = None


class _AsgiWebSocket:
    __slots__ = ("_closed", "_receive", "_send")

    def __init__(self, receive: Any, send: Any) -> None:
        self._receive = receive
        self._send = send
        self._closed = False

    async def receive(self) -> str | bytes | None:
        if self._closed:
            return None
        message = await self._receive()
        if message["type"] != "websocket.receive":
            return None
        text: str | None = message.get("text")
        return text if text is not None else message.get("bytes", b"")

    async def send(self, text: str) -> None:
        if self._closed:
            raise ConnectionError("the WebSocket is closed")
        try:
            await self._send({"type": "websocket.send", "text": text})
        except Exception as exc:
            raise ConnectionError(str(exc)) from None

    def close(self, code: int) -> None:
        if not self._closed:
            self._closed = True
            task = asyncio.ensure_future(self._send({"type": "websocket.close", "code": code}))
            task.add_done_callback(_ignore_result)


def _ignore_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


Handler = Callable[[Request], Response | bytes | Pieces]
AsyncHandler = Callable[[Request], Awaitable[Response | bytes | Pieces]]


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


class _Gzipped:
    """Compressed copies of the last few large answers.

    An answer in Pieces keeps its own compressed copy (handlers hand out the same Pieces for the
    same snapshot or delta, so it lives exactly as long as they do); single buffers are kept here,
    the newest first, up to _GZIP_CACHE_BYTES.
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: list[tuple[bytes, bytes]] = []

    async def get(self, body: bytes | Pieces) -> bytes | Pieces:
        if isinstance(body, Pieces):
            if body.gzipped is None:
                # Part group by part group in a worker thread: zlib lets go of the GIL.
                packer = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
                out = [await asyncio.to_thread(packer.compress, group) for group in body.groups()]
                out.append(packer.flush())
                body.gzipped = Pieces(out)
            return body.gzipped
        for source, compressed in self._entries:
            if source is body:
                return compressed
        if len(body) >= _GZIP_IN_THREAD:
            result = await asyncio.to_thread(_gzip, body)
        else:
            result = _gzip(body)
        kept = [(body, result)]
        total = len(body) + len(result)
        for entry in self._entries:
            total += len(entry[0]) + len(entry[1])
            if total > _GZIP_CACHE_BYTES or len(kept) >= 8:
                break
            kept.append(entry)
        self._entries = kept
        return result


_GZIP_CACHE_BYTES: Final = 16 * 1024 * 1024  # sources and copies together


_GZIP_IN_THREAD: Final = 256 * 1024


def _gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


class App:
    """Routes requests under a context path to handlers; RSGI and ASGI callable."""

    def __init__(self, routes: Mapping[str, Route], *, context_path: str = "",
                 max_body_bytes: int = 4 * 1024 * 1024, gzip_min_bytes: int = 8192,
                 lifespan: Callable[[], Any] | None = None,
                 websockets: Mapping[str, WsHandler] | None = None) -> None:
        self.routes = {context_path + path: route for path, route in routes.items()}
        self.context_path = context_path
        self.max_body_bytes = max_body_bytes
        self.gzip_min_bytes = gzip_min_bytes
        self._lifespan = lifespan
        self.websockets = {context_path + path: handler
                           for path, handler in (websockets or {}).items()}
        # 404 and 405 answers, when metrics are on (routes carry their own stats)
        self.unmatched: EndpointStats | None = None
        self.tracing: Tracing | None = None  # set when OTEL_* variables ask for traces
        self._gzipped = _Gzipped()

    # --- the common path -----------------------------------------------------------------

    def _not_found(self, path: str) -> Response:
        if self.unmatched is not None:
            self.unmatched.error("not-found")
        return Response(fail_body({}, "bad-request", f"no endpoint at {path}"), status=404)

    def _wrong_method(self, route: Route, method: str, path: str) -> Response:
        if self.unmatched is not None:
            self.unmatched.error("method-not-allowed")
        allowed = ", ".join(sorted(route.methods | {"OPTIONS"}))
        return Response(fail_body({}, "bad-request", f"{method} is not allowed on {path}; "
                                  f"use {allowed}"), status=405, headers=[("allow", allowed)])

    def _decompress(self, body: bytes, encoding: str | None) -> bytes:
        if not encoding or encoding.strip().lower() in ("identity", ""):
            return body
        if encoding.strip().lower() not in ("gzip", "x-gzip"):
            raise BadRequest(f"Content-Encoding {encoding!r} is not supported; use gzip")
        limit = self.max_body_bytes
        parts: list[bytes] = []
        size = 0
        rest = body
        while True:  # a gzip body may be several members, one after another (RFC 1952)
            unpacker = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                data = unpacker.decompress(rest, limit + 1 - size)
            except zlib.error as exc:
                raise BadRequest(f"request body is not valid gzip: {exc}") from None
            size += len(data)
            if size > limit:
                raise BadRequest(f"request body is larger than {limit} bytes once decompressed")
            if not unpacker.eof:
                raise BadRequest("request body is not valid gzip: it ends too early")
            parts.append(data)
            rest = unpacker.unused_data
            if not rest:
                return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _respond(self, route: Route, request: Request) -> Response:
        try:
            if route.async_handler is not None:
                result = await route.async_handler(request)
            else:
                result = route.handler(request)  # type: ignore[misc]
        except BadRequest as exc:
            return Response(route.fail("bad-request", str(exc)))
        except Exception:
            with request_id(request.header("x-request-id")) as rid:
                log.exception("internal error on %s %s", request.method, request.path)
            return Response(route.fail("internal-service-error",
                                       "the node failed on this request; it is logged"),
                            headers=[("x-request-id", rid)])
        return result if isinstance(result, Response) else Response(result)

    async def _encode_out(self, response: Response, accept_encoding: str | None
                          ) -> tuple[list[tuple[str, str]], bytes | Pieces]:
        if response is _PREFLIGHT:
            return _PREFLIGHT_HEADERS, b""
        body = response.body
        if isinstance(body, Pieces) and body.size < _STREAM_GROUP:
            body = b"".join(body.parts)
        size = body.size if isinstance(body, Pieces) else len(body)
        if (size >= self.gzip_min_bytes and accept_encoding and "gzip" in accept_encoding
                and response.content_type == JSON):
            headers = _JSON_GZIP_HEADERS
            body = await self._gzipped.get(body)
        elif response.content_type == JSON:
            headers = _JSON_HEADERS
        else:
            headers = [("content-type", response.content_type), *_CORS]
        if response.headers:
            headers = [*headers, *response.headers]
        return headers, body

    def _content_length_problem(self, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            length = int(value)
        except ValueError:
            return f"Content-Length {value!r} is not a number"
        if length > self.max_body_bytes:
            return f"request body is larger than {self.max_body_bytes} bytes"
        return None

    # --- RSGI ----------------------------------------------------------------------------

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        # The hot path: a known sync endpoint, a plain body of known small size, a small answer.
        started = perf_counter()
        if self.tracing is not None and scope.proto == "http":
            span = self.tracing.start(scope.method, scope.path, scope.headers)
            if span is not None:
                with trace.use_span(span, end_on_exit=False):
                    status = await self._rsgi_traced(scope, proto, started)
                self.tracing.end(span, status)
                return
        await self._rsgi_traced(scope, proto, started)

    async def _rsgi_traced(self, scope: Any, proto: Any, started: float) -> int:
        """Answer one RSGI request; the HTTP status it was answered with."""
        route = self.routes.get(scope.path)
        if route is not None and route.handler is not None and scope.proto == "http":
            method = scope.method
            headers = scope.headers
            length = headers.get("content-length")
            if (method in route.methods and length is not None and len(length) < 7
                    and length.isdigit() and int(length) <= self.max_body_bytes
                    and "content-encoding" not in headers):
                body = await proto() if route.reads_body and method != "GET" else b""
                request = Request(method, scope.path, scope.query_string, headers, body,
                                  scope.client)
                try:
                    result = route.handler(request)
                except BadRequest as exc:
                    result = route.fail("bad-request", str(exc))
                except Exception:
                    with request_id(headers.get("x-request-id")) as rid:
                        log.exception("internal error on %s %s", method, scope.path)
                    result = Response(route.fail("internal-service-error",
                                                 "the node failed on this request; it is logged"),
                                      headers=[("x-request-id", rid)])
                status = 200
                if type(result) is bytes and len(result) < self.gzip_min_bytes:
                    proto.response_bytes(200, _JSON_HEADERS, result)
                else:
                    response = result if isinstance(result, Response) else Response(result)
                    out_headers, out_body = await self._encode_out(
                        response, headers.get("accept-encoding"))
                    await _rsgi_send(proto, response.status, out_headers, out_body)
                    status = response.status
                if route.stats is not None:
                    route.stats.observe(perf_counter() - started)
                return status
        status = await self._rsgi_general(scope, proto)
        if scope.proto == "http":
            self._observe(scope.path, started)
        return status

    def _observe(self, path: str, started: float) -> None:
        route = self.routes.get(path)
        stats = route.stats if route is not None else self.unmatched
        if stats is not None:
            stats.observe(perf_counter() - started)

    async def _rsgi_general(self, scope: Any, proto: Any) -> int:
        if scope.proto != "http":
            handler = self.websockets.get(scope.path) if scope.proto == "ws" else None
            if handler is None:
                # Before the upgrade is accepted, RSGI's close takes the HTTP status of the
                # refusal (a WebSocket close code such as 1008 makes granian abort the process).
                proto.close(404)
                return 404
            try:
                transport = await proto.accept()
            except Exception:  # the client went away during the handshake
                return 400
            await handler(_RsgiWebSocket(proto, transport), scope.client)
            return 101

        async def read(length: str | None) -> tuple[bytes, str | None]:
            if length is not None:
                return await proto(), None  # already known to fit
            return await self._read_rsgi(proto)

        headers = scope.headers
        response, close = await self._dispatch(scope.method, scope.path, scope.query_string,
                                               headers, scope.client, read)
        out_headers, out_body = await self._encode_out(response, headers.get("accept-encoding"))
        if close:  # tell the client this connection is done, so it does not reuse it
            out_headers = [*out_headers, ("connection", "close")]
        await _rsgi_send(proto, response.status, out_headers, out_body)
        return response.status

    async def _dispatch(self, method: str, path: str, query: str, headers: Any, client: str,
                        read: Callable[[str | None], Awaitable[tuple[bytes, str | None]]]
                        ) -> tuple[Response, bool]:
        """The answer to a request, and whether its connection must close (its body was not
        read to the end); `read(content_length)` reads the body within the size limit."""
        route = self.routes.get(path)
        if route is None:
            return self._not_found(path), False
        if method not in route.methods:
            if method == "OPTIONS":
                return _PREFLIGHT, False
            return self._wrong_method(route, method, path), False
        body = b""
        problem = None
        close = False
        if route.reads_body and method != "GET":
            length = headers.get("content-length")
            problem = self._content_length_problem(length)
            if problem is None:
                body, problem = await read(length)
                close = problem is not None
            if problem is None:
                try:
                    body = self._decompress(body, headers.get("content-encoding"))
                except BadRequest as exc:
                    problem = str(exc)
        if problem is not None:
            return Response(route.fail("bad-request", problem)), close
        request = Request(method, path, query, headers, body, client)
        return await self._respond(route, request), False

    async def _read_rsgi(self, proto: Any) -> tuple[bytes, str | None]:
        limit = self.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in proto:
            size += len(chunk)
            if size > limit:
                return b"", f"request body is larger than {limit} bytes"
            chunks.append(chunk)
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), None

    # --- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._asgi_lifespan(receive, send)
            return
        if kind == "websocket":
            handler = self.websockets.get(scope["path"])
            message = await receive()
            if handler is None or message["type"] != "websocket.connect":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send({"type": "websocket.accept"})
            client = scope.get("client")
            await handler(_AsgiWebSocket(receive, send),
                          f"{client[0]}:{client[1]}" if client else "")
            return
        started = perf_counter()
        headers = _AsgiHeaders(scope["headers"])
        span = None
        if self.tracing is not None:
            span = self.tracing.start(scope["method"], scope["path"], headers)
        with trace.use_span(span, end_on_exit=False) if span is not None else _NO_SPAN:
            status = await self._asgi_http(scope, receive, send, headers, started)
        if span is not None and self.tracing is not None:
            self.tracing.end(span, status)

    async def _asgi_http(self, scope: dict[str, Any], receive: Any, send: Any,
                         headers: _AsgiHeaders, started: float) -> int:
        client = scope.get("client")

        async def read(length: str | None) -> tuple[bytes, str | None]:
            return await self._read_asgi(receive)

        response, close = await self._dispatch(
            scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"),
            headers, f"{client[0]}:{client[1]}" if client else "", read)
        out_headers, out_body = await self._encode_out(response, headers.get("accept-encoding"))
        if close:
            out_headers = [*out_headers, ("connection", "close")]
        await _asgi_send(send, response.status, out_headers, out_body)
        self._observe(scope["path"], started)
        return response.status

    async def _read_asgi(self, receive: Any) -> tuple[bytes, str | None]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", "client went away"
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", f"request body is larger than {self.max_body_bytes} bytes"
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None

    async def _asgi_lifespan(self, receive: Any, send: Any) -> None:
        context = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self._lifespan is not None:
                    context = self._lifespan()
                    await context.__aenter__()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if context is not None:
                    await context.__aexit__(None, None, None)
                await send({"type": "lifespan.shutdown.complete"})
                return


class _AsgiHeaders:
    """ASGI headers with `.get(name)`; a header sent twice (as the Java SDK sends Content-Type
    and Accept) gives its first value."""

    __slots__ = ("_map",)

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._map: dict[str, str] = {}
        for key, value in raw:
            self._map.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._map.get(name, default)


async def _rsgi_send(proto: Any, status: int, headers: list[tuple[str, str]],
                     body: bytes | Pieces) -> None:
    if isinstance(body, bytes):
        proto.response_bytes(status, headers, body)
        return
    transport = proto.response_stream(status, headers)
    for group in body.groups():
        await transport.send_bytes(group)
        await asyncio.sleep(0)  # send_bytes does not wait: give the loop back between groups


async def _asgi_send(send: Any, status: int, headers: list[tuple[str, str]],
                     body: bytes | Pieces) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    })
    if isinstance(body, bytes):
        await send({"type": "http.response.body", "body": body})
        return
    for group in body.groups():
        await send({"type": "http.response.body", "body": group, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
