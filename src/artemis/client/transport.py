"""The client's one I/O seam: POST a JSON body to a node, open a WebSocket to a node.

Two implementations ship: `NetworkTransport` (httpx and websockets, for real nodes) and
`InProcessTransport` (an app in the same process, through its ASGI face; no sockets), used by
tests and by anyone embedding a node. Lower-layer errors become `TransportError` here and nowhere
else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from typing import Any, Protocol

import httpx
import websockets

from artemis.client.errors import HttpStatusError, TransportError

__all__ = ["ClientWebSocket", "InProcessTransport", "NetworkTransport", "Transport"]


class ClientWebSocket(Protocol):
    async def send(self, text: str) -> None: ...

    async def recv(self) -> str:
        """The next text frame; raises TransportError once the socket is closed."""

    async def close(self) -> None: ...


class Transport(Protocol):
    async def post(self, base_url: str, path: str, body: bytes) -> bytes:
        """POST `body` (JSON) to `base_url + path`; the answer's body."""

    async def connect(self, base_url: str, path: str) -> ClientWebSocket:
        """Open a WebSocket to `base_url + path` (http -> ws, https -> wss)."""

    async def aclose(self) -> None: ...


def ws_url(base_url: str, path: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://"):] + path
    if base_url.startswith("http://"):
        return "ws://" + base_url[len("http://"):] + path
    return base_url + path


class NetworkTransport:
    """Real nodes over HTTP/1.1 (httpx, connections pooled) and WebSockets (websockets)."""

    def __init__(self, *, timeout: float = 5.0, connect_timeout: float = 2.0,
                 verify: str | bool | ssl.SSLContext = True, token: str | None = None) -> None:
        """`verify` says which https:// and wss:// nodes to trust: True, the usual certificate
        authorities; a path, the CA certificate(s) in that PEM file (or directory); an
        SSLContext, as it says; False, any certificate (tests only). `token` is sent as a
        bearer token with every HTTP request and WebSocket upgrade (the management API needs
        one, and the registry's writes in registration_mode token)."""
        context = _ssl_context(verify)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self._ws_headers: dict[str, str] = {}
        if token:
            headers["Authorization"] = self._ws_headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=connect_timeout), headers=headers,
            verify=True if context is None else context)
        self._ssl = context
        self._connect_timeout = connect_timeout

    async def post(self, base_url: str, path: str, body: bytes) -> bytes:
        """The answer's body. A 5xx status, or a 4xx one without a JSON object in the body (a
        proxy's page, an empty 404), raises HttpStatusError naming the status: an Artemis
        node's own refusals are JSON answers, read by the caller."""
        try:
            answer = await self._http.post(base_url + path, content=body)
        except httpx.HTTPError as exc:
            raise TransportError(f"{base_url}: {type(exc).__name__}: {exc}") from None
        return _content(base_url + path, answer)

    async def get(self, base_url: str, path: str) -> bytes:
        """GET `base_url + path` (the GET-only status endpoints); errors as `post`'s."""
        try:
            answer = await self._http.get(base_url + path)
        except httpx.HTTPError as exc:
            raise TransportError(f"{base_url}: {type(exc).__name__}: {exc}") from None
        return _content(base_url + path, answer)

    async def connect(self, base_url: str, path: str) -> ClientWebSocket:
        url = ws_url(base_url, path)
        tls: dict[str, Any] = {}
        if self._ssl is not None and url.startswith("wss://"):  # ws:// refuses an ssl argument
            tls["ssl"] = self._ssl
        try:
            ws = await websockets.connect(url, max_size=None, open_timeout=self._connect_timeout,
                                          additional_headers=self._ws_headers or None, **tls)
        except (OSError, websockets.WebSocketException, TimeoutError) as exc:
            raise TransportError(f"{base_url}: WebSocket: {exc}") from None
        return _NetworkWebSocket(ws)

    async def aclose(self) -> None:
        await self._http.aclose()


def _content(url: str, answer: httpx.Response) -> bytes:
    """The body of an answer that is the node's; HttpStatusError for an HTTP error that is not
    (5xx, or 4xx without a JSON object)."""
    code = answer.status_code
    if code >= 500 or (code >= 400 and not answer.content.lstrip().startswith(b"{")):
        raise HttpStatusError(url, code, answer.reason_phrase)
    return answer.content


def _ssl_context(verify: str | bool | ssl.SSLContext) -> ssl.SSLContext | None:
    """The TLS context `verify` asks for; None for the libraries' own defaults."""
    if verify is True:
        return None
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, ssl.SSLContext):
        return verify
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


class _NetworkWebSocket:
    __slots__ = ("_ws",)

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    async def send(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except websockets.WebSocketException as exc:
            raise TransportError(f"WebSocket: {exc}") from None

    async def recv(self) -> str:
        try:
            message = await self._ws.recv()
        except websockets.WebSocketException as exc:
            raise TransportError(f"WebSocket: {exc}") from None
        return message if isinstance(message, str) else message.decode()

    async def close(self) -> None:
        with contextlib.suppress(websockets.WebSocketException, OSError):
            await self._ws.close()


class InProcessTransport:
    """A node's app in this process, through its ASGI face: HTTP and WebSockets, no sockets."""

    def __init__(self, app: Any, *, token: str | None = None) -> None:
        """`token`: sent as a bearer token, as NetworkTransport's."""
        self._app = app
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                       base_url="http://in-process", headers=self._headers)
        self._sockets: set[_InProcessWebSocket] = set()

    async def post(self, base_url: str, path: str, body: bytes) -> bytes:
        try:
            answer = await self._http.post(path, content=body)
        except (httpx.HTTPError, RuntimeError) as exc:  # RuntimeError: used after aclose()
            raise TransportError(f"in-process: {exc}") from None
        return answer.content

    async def connect(self, base_url: str, path: str) -> ClientWebSocket:
        ws = _InProcessWebSocket(self._app, path, self._sockets.discard, self._headers)
        await ws.open()
        self._sockets.add(ws)
        return ws

    async def aclose(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        await self._http.aclose()


class _InProcessWebSocket:
    """One ASGI WebSocket session of the app, driven through two queues."""

    def __init__(self, app: Any, path: str, forget: Any,
                 headers: dict[str, str] | None = None) -> None:
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1"))
               for k, v in (headers or {}).items()]
        scope = {"type": "websocket", "path": path, "headers": raw, "query_string": b"",
                 "client": ("127.0.0.1", 0), "subprotocols": []}
        self._task = asyncio.ensure_future(app(scope, self._to_app.get, self._from_app.put))
        self._closed = False
        self._told_app = False
        self._forget = forget

    async def open(self) -> None:
        await self._to_app.put({"type": "websocket.connect"})
        message = await self._from_app.get()
        if message["type"] != "websocket.accept":
            raise TransportError(f"in-process WebSocket refused: {message}")

    async def send(self, text: str) -> None:
        if self._closed or self._task.done():
            raise TransportError("in-process WebSocket is closed")
        await self._to_app.put({"type": "websocket.receive", "text": text})

    async def recv(self) -> str:
        if self._closed:
            raise TransportError("in-process WebSocket is closed")
        message = await self._from_app.get()
        if message["type"] != "websocket.send":
            await self.close()  # the app closed it: tell the app the client is gone, as a server
            raise TransportError(f"in-process WebSocket closed: {message.get('code')}")
        text: str = message.get("text") or message.get("bytes", b"").decode()
        return text

    async def close(self) -> None:
        self._closed = True
        self._forget(self)
        # a recv() waiting now raises, as on a real socket closed under it
        self._from_app.put_nowait({"type": "websocket.close", "code": 1000})
        if not self._told_app:
            self._told_app = True
            await self._to_app.put({"type": "websocket.disconnect", "code": 1000})
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 2)
