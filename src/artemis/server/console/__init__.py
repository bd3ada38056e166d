"""The web console: static files shipped in this package (`static/`), served by every node at
`/console/`; the JSON it reads is served by `server/api/console.py`.

Rules
  * The files are read once, when the app is built, and kept in memory with a strong ETag (a
    hash of their bytes) and a gzipped copy when that is smaller. A request names a file only
    by a key of that table: no path is ever joined to a directory, so `..`, encoded slashes or
    absolute paths lead nowhere (404).
  * `/console/` serves `index.html`. Every answer carries the same security headers: a
    Content-Security-Policy that allows scripts, styles and connections from the node itself
    only (no inline script or style, no `eval`), `nosniff`, no referrer, no framing.
  * Caching: `Cache-Control: no-cache` with the ETag. A browser revalidates each file and gets
    `304 Not Modified` without a body while it is unchanged; a node of another version serves
    other ETags, so a page never runs an old script against a new node.
  * Nothing is fetched from elsewhere at run time, and there is no build step: the files are the
    console. No third-party code is vendored.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Final

from artemis.server.http import Request, Response

__all__ = ["CSP", "SECURITY_HEADERS", "Asset", "Assets", "Console", "shipped"]

CSP: Final = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
              "connect-src 'self'; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
SECURITY_HEADERS: Final = (
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
)
TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
_INDEX: Final = "index.html"
_NOT_FOUND: Final = b"no console file at this path\n"


@dataclass(frozen=True, slots=True)
class Asset:
    """One file of the console: its bytes, content type, ETag and gzipped copy (if smaller)."""

    body: bytes
    content_type: str
    etag: str
    gzipped: bytes | None


class Assets:
    """Every file of `static/`, by its path under it (`js/app.js`), read once."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files: dict[str, Asset] = {}
        for name, body in files.items():
            suffix = name[name.rfind("."):] if "." in name else ""
            content_type = TYPES.get(suffix)
            if content_type is None:
                raise ValueError(f"console file {name!r}: no content type for {suffix!r}")
            squeezed = gzip.compress(body, 9, mtime=0)
            digest = hashlib.blake2b(body, digest_size=12).hexdigest()
            self.files[name] = Asset(body, content_type, f'"{digest}"',
                                     squeezed if len(squeezed) < len(body) else None)

    @property
    def total_bytes(self) -> int:
        return sum(len(asset.body) for asset in self.files.values())

    def __repr__(self) -> str:
        return f"Assets({len(self.files)} files, {self.total_bytes} bytes)"


@functools.cache
def shipped() -> Assets:
    """The files shipped in this package (`static/`), read once per process."""
    root = resources.files(__package__ or "artemis.server.console").joinpath("static")
    files: dict[str, bytes] = {}
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                pending.append((entry, f"{prefix}{entry.name}/"))
            elif not entry.name.startswith("."):
                files[prefix + entry.name] = entry.read_bytes()
    return Assets(files)


class Console:
    """The handler of `/console/*` (and of `/console` and `/`, which redirect to it)."""

    def __init__(self, assets: Assets, context_path: str = "") -> None:
        self.assets = assets
        self.base = f"{context_path}/console/"

    def serve(self, request: Request) -> Response:
        name = request.path[len(self.base):] if request.path.startswith(self.base) else None
        asset = self.assets.files.get(name or _INDEX) if name is not None else None
        if asset is None:
            return Response(_NOT_FOUND, status=404, headers=list(SECURITY_HEADERS),
                            content_type="text/plain; charset=utf-8")
        headers = [("cache-control", "no-cache"), *SECURITY_HEADERS]
        wanted = request.header("if-none-match")
        gzipped = asset.gzipped is not None and "gzip" in (request.header("accept-encoding")
                                                             or "")
        etag = asset.etag[:-1] + '-gz"' if gzipped else asset.etag
        headers.append(("etag", etag))
        if asset.gzipped is not None:
            headers.append(("vary", "Accept-Encoding"))
        if wanted is not None and etag in (tag.strip() for tag in wanted.split(",")):
            return Response(b"", status=304, headers=headers, content_type="")
        if gzipped:
            headers.append(("content-encoding", "gzip"))
            return Response(asset.gzipped or b"", headers=headers,
                            content_type=asset.content_type)
        return Response(asset.body, headers=headers, content_type=asset.content_type)

    def redirect(self, request: Request) -> Response:
        """`/` and `/console`: to `/console/` (under the context path)."""
        body = f'<a href="{self.base}">{self.base}</a>\n'.encode()
        return Response(body, status=302, headers=[("location", self.base),
                                                   ("cache-control", "no-cache"),
                                                   *SECURITY_HEADERS],
                        content_type="text/html; charset=utf-8")

    def __repr__(self) -> str:
        return f"Console({self.base!r}, {self.assets!r})"
