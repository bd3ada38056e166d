"""Bodies in and out: a request body's declared size checked against the limit, gzip request
bodies undone within it (several members allowed), and answers gzip-compressed once (`GzipCache`:
large ones in a worker thread, so the event loop does not wait on zlib)."""

from __future__ import annotations

import asyncio
import zlib
from typing import Final

from artemis.server.http.messages import BadRequest, Pieces

__all__ = ["GzipCache", "content_length_problem", "decompress"]

_GZIP_CACHE_BYTES: Final = 16 * 1024 * 1024  # sources and copies together
_GZIP_IN_THREAD: Final = 256 * 1024


def content_length_problem(value: str | None, limit: int) -> str | None:
    """Why a request's Content-Length is refused (not a number, over `limit`), or None."""
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return f"Content-Length {value!r} is not a number"
    if length > limit:
        return f"request body is larger than {limit} bytes"
    return None


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """`body` with its Content-Encoding undone, at most `limit` bytes once decompressed;
    BadRequest for an encoding other than gzip, broken gzip or too large a result."""
    if not encoding or encoding.strip().lower() in ("identity", ""):
        return body
    if encoding.strip().lower() not in ("gzip", "x-gzip"):
        raise BadRequest(f"Content-Encoding {encoding!r} is not supported; use gzip")
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


class GzipCache:
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

    def __repr__(self) -> str:
        return f"GzipCache({len(self._entries)} answers)"


def _gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()
