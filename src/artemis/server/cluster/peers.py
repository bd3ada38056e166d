"""How a node calls its peers: one POST, its answer as bytes, every failure as `PeerError`.

Two implementations of one seam:
  * `AiohttpPeers`, what a node uses: aiohttp's client costs about 90 µs of CPU per request
    where httpx costs about 575 µs (measured on this project's machine kind, 100-instance
    replication bodies, see docs/performance.md), and a node makes a request per batch per peer;
  * `HttpxPeers`, over any httpx.AsyncClient: in-process tests route it to other nodes' ASGI
    faces, without sockets.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx

__all__ = ["AiohttpPeers", "HttpxPeers", "PeerAnswer", "PeerClient", "PeerError", "peer_tls"]


class PeerError(Exception):
    """A peer could not be reached, did not answer in time, or broke the connection."""


@dataclass(frozen=True, slots=True)
class PeerAnswer:
    status: int
    body: bytes
    headers: Mapping[str, str]


class PeerClient(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   seconds: float) -> PeerAnswer:
        """POST `body` (JSON) to `url`; raise PeerError if no answer came within `seconds`."""
        ...

    async def close(self) -> None: ...


class AiohttpPeers:
    """Keep-alive connections to every peer (at most `per_peer` at once to each)."""

    def __init__(self, default_headers: Mapping[str, str], per_peer: int = 8,
                 tls: ssl.SSLContext | None = None) -> None:
        self._headers = dict(default_headers)
        self._per_peer = per_peer
        self._tls: ssl.SSLContext | bool = True if tls is None else tls
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=self._per_peer,
                                               keepalive_timeout=30.0, ssl=self._tls),
                headers=self._headers, trust_env=False, skip_auto_headers=("User-Agent",))
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   seconds: float) -> PeerAnswer:
        session = self._open()
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(
                                        total=seconds, connect=min(seconds, 1.0))) as response:
                return PeerAnswer(response.status, await response.read(),
                                  {k.lower(): v for k, v in response.headers.items()})
        except Exception as exc:  # whatever breaks a call to a peer is that peer's failure
            raise PeerError(f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def peer_tls(cert: str, key: str, ca: str) -> ssl.SSLContext | None:
    """The TLS context of calls to https:// peers under mutual TLS (`ca` set): peers are trusted
    only with a certificate `ca` signed, and this node shows its own (`cert`, `key`). None
    without `ca`: the system's trusted authorities, no client certificate."""
    if not ca:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    return context


class HttpxPeers:
    """The same seam over an httpx client (tests route it to in-process nodes)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   seconds: float) -> PeerAnswer:
        try:
            response = await self.client.post(url, content=body, headers=dict(headers),
                                              timeout=seconds)
        except httpx.HTTPError as exc:
            raise PeerError(f"{type(exc).__name__}: {exc}") from None
        return PeerAnswer(response.status_code, response.content,
                          {k.lower(): v for k, v in response.headers.items()})

    async def close(self) -> None:
        await self.client.aclose()
