"""The ASGI face (in-process tests, any ASGI server): HTTP through the common path, the
lifespan that runs the node's loops, and the ASGI WebSocket.

Paths: a request is routed by its path as sent (`raw_path`, when the server gives it), never by
the decoded `path`: no endpoint's path holds a `%`, so `/api%2Fdiscovery%2Flookup.json` (an
encoded slash that a front proxy's path rules did not see as one) answers 404, as any other
percent-encoded path does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from time import perf_counter
from typing import Any, Final

from opentelemetry import trace

from artemis.server.http.messages import Pieces
from artemis.server.http.routing import Router

__all__ = ["AsgiFace"]

_NO_SPAN: Final = contextlib.nullcontext()


class AsgiFace(Router):
    """The ASGI callable of an `App`."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._asgi_lifespan(receive, send)
            return
        path = _path_as_sent(scope)
        if kind == "websocket":
            handler = self.websockets.get(path)
            message = await receive()
            if handler is None or message["type"] != "websocket.connect":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send({"type": "websocket.accept"})
            client = scope.get("client")
            await handler(_AsgiWebSocket(receive, send, _AsgiHeaders(scope.get("headers", []))),
                          f"{client[0]}:{client[1]}" if client else "")
            return
        started = perf_counter()
        headers = _AsgiHeaders(scope["headers"])
        span = None
        if self.tracing is not None:
            span = self.tracing.start(scope["method"], path, headers)
        with trace.use_span(span, end_on_exit=False) if span is not None else _NO_SPAN:
            status = await self._asgi_http(scope, path, receive, send, headers, started)
        if span is not None and self.tracing is not None:
            self.tracing.end(span, status)

    async def _asgi_http(self, scope: dict[str, Any], path: str, receive: Any, send: Any,
                         headers: _AsgiHeaders, started: float) -> int:
        client = scope.get("client")

        async def read(length: str | None) -> tuple[bytes, str | None]:
            return await self._read_asgi(receive)

        response, close = await self._dispatch(
            scope["method"], path, scope.get("query_string", b"").decode("latin-1"),
            headers, f"{client[0]}:{client[1]}" if client else "", read)
        out_headers, out_body = await self._encode_out(response, headers.get("accept-encoding"),
                                                       headers.get("origin"))
        if close:
            out_headers = [*out_headers, ("connection", "close")]
        await _asgi_send(send, response.status, out_headers, out_body)
        self._observe(path, started)
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


def _path_as_sent(scope: dict[str, Any]) -> str:
    """The path to route by: `raw_path` when it holds a percent-encoding, else `path`."""
    raw = scope.get("raw_path")
    if raw and b"%" in raw:
        return str(raw.decode("latin-1"))
    return str(scope["path"])


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


class _AsgiWebSocket:
    __slots__ = ("_closed", "_headers", "_receive", "_send")

    def __init__(self, receive: Any, send: Any, headers: _AsgiHeaders) -> None:
        self._receive = receive
        self._send = send
        self._headers = headers  # the upgrade request's
        self._closed = False

    def header(self, name: str) -> str | None:
        return self._headers.get(name)

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

    def start_send(self, text: str) -> asyncio.Future[None]:
        if self._closed:
            raise ConnectionError("the WebSocket is closed")
        return asyncio.ensure_future(self.send(text))

    def close(self, code: int) -> None:
        if not self._closed:
            self._closed = True
            task = asyncio.ensure_future(self._send({"type": "websocket.close", "code": code}))
            task.add_done_callback(_ignore_result)


def _ignore_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


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
