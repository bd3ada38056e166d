"""CORS: which browser origins may read the node's answers, as header lists built once.

Rules
  * No origin configured (the default): no CORS header on any answer. An OPTIONS request to a
    known path is answered 200 with `Allow` only, so a browser on another origin cannot read
    an answer nor send a preflighted call (JSON bodies, `Authorization`).
  * With `cors_origins`: every answer carries `Vary: Origin` (a cache must not hand one
    origin's answer to another); an answer to a request whose `Origin` is listed also carries
    `Access-Control-Allow-Origin: <that origin>` and exposes `X-Request-Id`. A preflight
    (OPTIONS) from a listed origin gets the methods (GET, POST), the request headers
    (Authorization, Content-Type, Content-Encoding, X-Request-Id) and a max-age of an hour; from
    any other origin, no CORS header. Credentials (cookies) are never allowed: the API's
    credential is a bearer token, which a page sends explicitly.
  * Origins compare as browsers send them: scheme and host in lower case, no default port.
  * Every list is built once per configuration: a request costs one dict lookup of its
    `Origin` header when origins are configured, nothing when not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple

__all__ = ["JSON", "Cors", "HeaderSet", "normalize_origin"]

JSON: Final = "application/json"
Headers = list[tuple[str, str]]
_DEFAULT_PORTS: Final = {"http": ":80", "https": ":443"}
_ALLOW: Final = [
    ("access-control-allow-methods", "GET, POST"),
    ("access-control-allow-headers",
     "Authorization, Content-Type, Content-Encoding, X-Request-Id"),
    ("access-control-max-age", "3600"),
]


class HeaderSet(NamedTuple):
    """The headers of one kind of caller (an origin, or none): JSON answers, gzipped JSON
    answers, what other answers add after their content type, and a preflight's."""

    json: Headers
    json_gzip: Headers
    extra: Headers
    preflight: Headers


def normalize_origin(origin: str) -> str:
    """`origin` as a browser sends it: lower-case scheme and host, no default port, no slash."""
    origin = origin.strip().rstrip("/").lower()
    scheme, _, host = origin.partition("://")
    default = _DEFAULT_PORTS.get(scheme)
    if default and host.endswith(default):
        origin = origin[: -len(default)]
    return origin


def _header_set(cors: Headers, preflight: Headers, vary: bool) -> HeaderSet:
    varies = [("vary", "Origin")] if vary else []
    gzip = [("content-encoding", "gzip"),
            ("vary", "Accept-Encoding, Origin" if vary else "Accept-Encoding")]
    return HeaderSet(json=[("content-type", JSON), *cors, *varies],
                     json_gzip=[("content-type", JSON), *cors, *gzip],
                     extra=[*cors, *varies], preflight=[*preflight, *varies])


class Cors:
    """The header sets of a configuration (see the module doc)."""

    __slots__ = ("_by_origin", "plain")

    def __init__(self, origins: Sequence[str] = ()) -> None:
        allowed = list(dict.fromkeys(normalize_origin(o) for o in origins if o.strip()))
        vary = bool(allowed)
        self.plain = _header_set([], [], vary)
        self._by_origin = {
            origin: _header_set(
                [("access-control-allow-origin", origin),
                 ("access-control-expose-headers", "X-Request-Id")],
                [("access-control-allow-origin", origin), *_ALLOW], vary)
            for origin in allowed}

    @property
    def enabled(self) -> bool:
        return bool(self._by_origin)

    def of(self, origin: str | None) -> HeaderSet:
        """The header set of a request whose `Origin` header is `origin`."""
        if origin is None or not self._by_origin:
            return self.plain
        return self._by_origin.get(origin, self.plain)

    def __repr__(self) -> str:
        return f"Cors({sorted(self._by_origin)!r})"
