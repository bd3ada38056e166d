"""The RSGI face (granian, in production): the hot path for a known synchronous endpoint with a
small plain body and a small answer, the general path for everything else, streaming of large
answers and the RSGI WebSocket.

Paths: granian hands RSGI applications the path percent-decoded, with no raw form (granian
2.8: `scope.path` of `/api%2Fdiscovery%2Flookup.json` is `/api/discovery/lookup.json`), so this
face cannot tell an encoded slash from a real one; the ASGI face can and refuses it
(docs/security.md, "Secrets, paths and values", says what a front proxy must do).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from time import perf_counter
from typing import Any

from opentelemetry import trace

from artemis.server.http.messages import BadRequest, Pieces, Request, Response
from artemis.server.http.routing import INTERNAL_ERROR, Router, log
from artemis.server.observability.logs import request_id
from artemis.wire import ErrorCode

__all__ = ["RsgiFace"]


class RsgiFace(Router):
    """The RSGI callable of an `App`."""

    async def __rsgi__(self, scope: Any, proto: Any, traced: bool = False) -> int:
        """Answer one RSGI request; the HTTP status it was answered with (granian ignores it).
        With tracing on, an HTTP request is answered again inside its span (`traced`); without,
        the hot path below is the only coroutine the request runs in the node."""
        started = perf_counter()
        if self.tracing is not None and not traced and scope.proto == "http":
            span = self.tracing.start(scope.method, scope.path, scope.headers)
            if span is not None:
                with trace.use_span(span, end_on_exit=False):
                    status = await self.__rsgi__(scope, proto, True)
                self.tracing.end(span, status)
                return status
        # The hot path: a known sync endpoint, a plain body of known small size, a small answer.
        # Each of granian's scope attributes is made anew when read (the path percent-decoded,
        # the headers copied): each is read once.
        path = scope.path
        kind = scope.proto
        route = self.routes.get(path)
        if route is None and self.prefixes:
            route = self.match(path)
        if route is not None and route.handler is not None and kind == "http":
            method = scope.method
            headers = scope.headers
            length = headers.get("content-length")
            if (method in route.methods and length is not None and len(length) < 7
                    and length.isdigit() and int(length) <= self.max_body_bytes
                    and "content-encoding" not in headers):
                body = await proto() if route.reads_body and method != "GET" else b""
                request = Request(method, path, scope.query_string, headers, body,
                                  scope.client)
                try:
                    answered = route.handler(request)
                    result = (await answered  # a large batch, run in slices
                              if type(answered) is not bytes and inspect.isawaitable(answered)
                              else answered)
                except BadRequest as exc:
                    result = route.fail(ErrorCode.BAD_REQUEST, str(exc))
                except Exception:
                    with request_id(headers.get("x-request-id")) as rid:
                        log.exception("internal error on %s %s", method, path)
                    result = Response(route.fail(ErrorCode.INTERNAL_SERVICE_ERROR,
                                                 INTERNAL_ERROR),
                                      headers=[("x-request-id", rid)])
                status = 200
                if type(result) is bytes and len(result) < self.gzip_min_bytes:
                    cors = self.cors
                    proto.response_bytes(200, cors.of(headers.get("origin")).json
                                         if cors.enabled else cors.plain.json, result)
                else:
                    response = result if isinstance(result, Response) else Response(result)
                    out_headers, out_body = await self._encode_out(
                        response, headers.get("accept-encoding"), headers.get("origin"))
                    await _rsgi_send(proto, response.status, out_headers, out_body)
                    status = response.status
                if route.stats is not None:
                    route.stats.observe(perf_counter() - started)
                return status
        status = await self._rsgi_general(scope, proto)
        if kind == "http":
            self._observe(path, started)
        return status

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
            await handler(_RsgiWebSocket(proto, transport, scope.headers), scope.client)
            return 101

        async def read(length: str | None) -> tuple[bytes, str | None]:
            if length is not None:
                return await proto(), None  # already known to fit
            return await self._read_rsgi(proto)

        headers = scope.headers
        response, close = await self._dispatch(scope.method, scope.path, scope.query_string,
                                               headers, scope.client, read)
        out_headers, out_body = await self._encode_out(response, headers.get("accept-encoding"),
                                                       headers.get("origin"))
        if close:  # tell the client this connection is done, so it does not reuse it
            out_headers = [*out_headers, ("connection", "close")]
        await _rsgi_send(proto, response.status, out_headers, out_body)
        return response.status

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


class _RsgiWebSocket:
    __slots__ = ("_closed", "_headers", "_proto", "_transport")

    def __init__(self, proto: Any, transport: Any, headers: Any) -> None:
        self._proto = proto
        self._transport = transport
        self._headers = headers  # the upgrade request's (granian's scope.headers)
        self._closed = False

    def header(self, name: str) -> str | None:
        value = self._headers.get(name)
        return None if value is None else str(value)

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

    def start_send(self, text: str) -> Any:
        transport = self._transport
        if self._closed or transport is None:
            raise ConnectionError("the WebSocket is closed")
        try:
            return transport.send_str(text)  # granian's future: sent whether awaited or not
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


async def _rsgi_send(proto: Any, status: int, headers: list[tuple[str, str]],
                     body: bytes | Pieces) -> None:
    if isinstance(body, bytes):
        proto.response_bytes(status, headers, body)
        return
    transport = proto.response_stream(status, headers)
    for group in body.groups():
        await transport.send_bytes(group)
        await asyncio.sleep(0)  # send_bytes does not wait: give the loop back between groups
