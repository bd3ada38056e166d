"""The console's files as a node serves them: small, complete, cached by ETag, under a strict
Content-Security-Policy, and reachable only by their own names."""

from __future__ import annotations

import gzip
import re
from html.parser import HTMLParser
from typing import Any, Final

import httpx
import pytest

from artemis.clock import FakeClock
from artemis.server.console import CSP, shipped
from tests.server.conftest import make_parts

MAX_BYTES: Final = 300 * 1024
SECURITY: Final = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


async def fetch(path: str, headers: dict[str, str] | None = None, *,
                context_path: str = "", **settings: Any) -> httpx.Response:
    app = make_parts(FakeClock(), context_path=context_path, **settings).app
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get(path, headers=headers)


def test_the_assets_weigh_less_than_300_kb() -> None:
    """Every file the console is made of, together, is under 300 KB (no library vendored)."""
    assets = shipped()
    assert (True, True) == (assets.total_bytes < MAX_BYTES, "index.html" in assets.files), (
        assets.total_bytes)


def test_the_csp_allows_the_node_alone_and_no_inline_code() -> None:
    """Scripts, styles, images and connections from the node only; nothing inline or eval'd;
    no framing, no base, no form posts."""
    assert ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'") == CSP


class _Markup(HTMLParser):
    """What in an HTML file would need inline script or style."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.inline.append("<script> without src")
        if tag == "style":
            self.inline.append("<style>")
        self.inline += [f"{tag} {name}" for name in names if name.startswith("on")
                        or name == "style"]


@pytest.mark.parametrize("name", sorted(shipped().files), ids=str)
def test_no_file_holds_inline_code_or_html_parsing_or_remote_urls(name: str) -> None:
    """HTML without inline script, style or handlers; scripts that never parse HTML or
    evaluate text; no file refers to another host."""
    text = shipped().files[name].body.decode()
    problems = []
    if name.endswith(".html"):
        parser = _Markup()
        parser.feed(text)
        problems += parser.inline
    if name.endswith(".js"):
        problems += re.findall(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|"
                               r"\beval\(|new Function|setTimeout\(\s*[\"'`]", text)
    problems += re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text)
    if name != "icon.svg":  # the svg's xmlns is a namespace name, not something fetched
        assert [] == problems
    else:
        assert ["http://www.w3.org"] == problems


async def test_files_are_served_with_their_type_and_security_headers() -> None:
    """/console/ is the page, each file has its content type, and every answer the security
    headers and `Cache-Control: no-cache` with an ETag."""
    page = await fetch("/console/")
    script = await fetch("/console/js/main.js")
    style = await fetch("/console/console.css")

    assert [(200, "text/html; charset=utf-8"), (200, "text/javascript; charset=utf-8"),
            (200, "text/css; charset=utf-8")] == [
        (r.status_code, r.headers["content-type"]) for r in (page, script, style)]
    assert (shipped().files["index.html"].body, shipped().files["js/main.js"].body) == (
        page.content, script.content)
    for response in (page, script, style):
        assert {**SECURITY, "cache-control": "no-cache"} == {
            k: response.headers[k] for k in (*SECURITY, "cache-control")}
        assert re.fullmatch(r'"[0-9a-f]{24}(-gz)?"', response.headers["etag"])


async def test_an_unchanged_file_is_revalidated_without_a_body() -> None:
    """A request with the file's ETag gets 304 and no body; gzip has its own ETag."""
    plain = await fetch("/console/js/service.js", {"accept-encoding": "identity"})
    again = await fetch("/console/js/service.js", {"if-none-match": plain.headers["etag"],
                                                   "accept-encoding": "identity"})
    squeezed = await fetch("/console/js/service.js", {"accept-encoding": "gzip"})
    stale = await fetch("/console/js/service.js", {"if-none-match": '"0000"',
                                                   "accept-encoding": "identity"})

    assert (304, b"", plain.headers["etag"]) == (again.status_code, again.content,
                                                 again.headers["etag"])
    assert (plain.headers["etag"][:-1] + '-gz"', "gzip", plain.content) == (
        squeezed.headers["etag"], squeezed.headers["content-encoding"], squeezed.content)
    assert (200, plain.content) == (stale.status_code, stale.content)
    assert len(gzip.compress(plain.content)) < len(plain.content)


async def raw_status(path: str) -> int:
    """The status the app answers to GET `path` sent exactly so (no client normalizes it)."""
    app = make_parts(FakeClock()).app
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
               "query_string": b"", "headers": [], "client": ("127.0.0.1", 1)},
              receive, send)
    status = sent[0]["status"]
    assert isinstance(status, int)
    return status


@pytest.mark.parametrize("path", [
    "/console/nope.js", "/console/js/../index.html", "/console/..%2findex.html",
    "/console/../../pyproject.toml", "/console//etc/passwd", "/console/js/main.js/",
    "/console/%2e%2e/%2e%2e/pyproject.toml", "/console/js/", "/console/static/index.html",
    "/console/JS/MAIN.JS"])
async def test_only_the_files_own_names_find_them(path: str) -> None:
    """Paths that are not a file's own name, traversals among them, answer 404."""
    assert 404 == await raw_status(path)


@pytest.mark.parametrize(("context_path", "path"), [
    ("", "/"), ("", "/console"), ("/artemis-web", "/artemis-web/"),
    ("/artemis-web", "/artemis-web/console")])
async def test_the_root_redirects_to_the_console(context_path: str, path: str) -> None:
    """`/` and `/console` (under the context path) answer 302 to `/console/`."""
    response = await fetch(path, context_path=context_path)

    assert (302, f"{context_path}/console/", "text/html; charset=utf-8") == (
        response.status_code, response.headers["location"], response.headers["content-type"])
    assert 200 == (await fetch(f"{context_path}/console/",
                               context_path=context_path)).status_code


async def test_a_node_with_the_console_off_has_no_console() -> None:
    """`console = off`: no redirect, no page, no console endpoint, and the OpenAPI document
    lists none of them."""
    statuses = [(await fetch(path, console="off")).status_code
                for path in ("/", "/console", "/console/", "/api/console/overview.json")]
    document = (await fetch("/openapi.json", console="off")).json()

    assert ([404, 404, 404, 404], []) == (
        statuses, [p for p in document["paths"] if "console" in p or p == "/"])


async def test_the_openapi_document_lists_the_console_endpoints_not_its_files() -> None:
    """The JSON endpoints and the redirects are documented; the files (a prefix route) not."""
    document = (await fetch("/openapi.json")).json()

    assert ["/", "/api/console/overview.json", "/api/console/service.json",
            "/api/console/services.json", "/api/console/whoami.json", "/console"] == sorted(
        p for p in document["paths"] if "console" in p or p == "/")
