"""The messages a handler sees and returns: `Request`, `Response`, `Pieces` (a large answer in
parts), `BadRequest`, the Artemis error answer (`fail_body`) and the `WebSocket` a push handler
talks to, whatever the interface (RSGI or ASGI) under them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import parse_qs

import msgspec

from artemis import wire

__all__ = [
    "JSON",
    "BadRequest",
    "Pieces",
    "Request",
    "Response",
    "SendFuture",
    "WebSocket",
    "WsHandler",
    "fail_body",
    "status_bytes",
]

JSON: Final = "application/json"
STREAM_GROUP: Final = 256 * 1024  # answers larger than this are streamed in groups this big
JSON_HEADERS: Final = [("content-type", JSON)]  # without CORS (cors.py gives the others)


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
    on the event loop (copying tens of megabytes at once stalls it for tens of milliseconds).
    The parts may be made as they are sent (services.json's are): any iterable that can be
    iterated again, once per send."""

    __slots__ = ("gzipped", "parts", "size")

    def __init__(self, parts: Iterable[bytes], size: int | None = None) -> None:
        self.parts = parts
        self.size = sum(map(len, parts)) if size is None else size
        self.gzipped: Pieces | None = None  # compressed once, kept as long as this answer

    def joined(self) -> bytes:
        return b"".join(self.parts)

    def groups(self, target: int = STREAM_GROUP) -> Iterator[bytes]:
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
        return f"Pieces({self.size} bytes)"


@dataclass(slots=True)
class Response:
    """An answer; `content_type` empty means a body-less answer whose headers are complete."""

    body: bytes | Pieces
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSON




class SendFuture(Protocol):
    """What `WebSocket.start_send` returns: an asyncio future or one like it (granian's)."""

    def add_done_callback(self, callback: Callable[[Any], object], /) -> None: ...

    def done(self) -> bool: ...

    def exception(self) -> BaseException | None: ...


class WebSocket(Protocol):
    """One accepted WebSocket, whatever the interface: text and binary messages in, text out."""

    async def receive(self) -> str | bytes | None:
        """The next message; None once the peer has closed."""

    async def send(self, text: str) -> None:
        """Send a text frame; raises ConnectionError once the socket is closed."""

    def start_send(self, text: str) -> SendFuture:
        """Start sending a text frame without waiting: its future is done once the frame is
        written (its exception() set when it could not be); raises ConnectionError at once when
        the socket is closed."""

    def close(self, code: int) -> None:
        """Close with `code` (the reason travels in a last frame: RSGI carries none)."""

    def header(self, name: str) -> str | None:
        """A header of the upgrade request (`name` lower-case), None when it has none."""


WsHandler = Callable[[WebSocket, str], Awaitable[None]]
