"""The HTTP shell's part in trust: CORS only for listed origins, paths routed as sent (an
encoded slash is not a separator), duplicated JSON keys refused, through the ASGI face."""

from __future__ import annotations

from typing import Any

import pytest

from artemis.server.http.cors import Cors, normalize_origin
from tests.server.conftest import MakeApi
from tests.server.harness import LOOKUP, REGION, REGISTER, fail, instance

UI = "https://console.example.com"
ALLOWED_HEADERS = "Authorization, Content-Type, Content-Encoding, X-Request-Id"


def cors_headers(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("access-control-") or k == "vary"}


async def test_listed_origin_gets_its_own_origin_back(make_api: MakeApi) -> None:
    """An answer to a listed Origin names that origin (never *), exposes X-Request-Id and
    varies by Origin; small and large (gzipped) answers alike."""
    api = await make_api(cors_origins=f"{UI},http://other.example:8080", gzip_min_bytes=0)

    small = await api.post(REGISTER, {"instances": [instance()]},
                           headers={"Origin": UI, "Accept-Encoding": "identity"})
    gzipped = await api.client.post(LOOKUP, json={"discoveryConfigs": [], "regionId": REGION},
                                    headers={"Origin": UI, "Accept-Encoding": "gzip"})

    expected = {"access-control-allow-origin": UI,
                "access-control-expose-headers": "X-Request-Id", "vary": "Origin"}
    assert expected == cors_headers(small.headers)
    assert {**expected, "vary": "Accept-Encoding, Origin"} == cors_headers(gzipped.headers)


@pytest.mark.parametrize("origin", [None, "https://evil.example", "https://console.example.com.evil",
                                    "null"])
async def test_unlisted_origin_gets_no_cors_header(make_api: MakeApi, origin: str | None) -> None:
    """Another origin (or none) gets no access-control header, only Vary: Origin."""
    api = await make_api(cors_origins=UI)
    headers = {"Origin": origin} if origin else {}

    answer = await api.post(REGISTER, {"instances": [instance()]}, headers=headers)
    preflight = await api.client.options(REGISTER, headers={
        **headers, "Access-Control-Request-Method": "POST"})

    assert {"vary": "Origin"} == cors_headers(answer.headers)
    assert (200, {"vary": "Origin"}) == (preflight.status_code, cors_headers(preflight.headers))


async def test_preflight_of_a_listed_origin(make_api: MakeApi) -> None:
    """A listed origin's preflight gets the methods, the headers (Authorization among them) and a
    max-age; never allow-credentials."""
    api = await make_api(cors_origins=UI)

    preflight = await api.client.options(REGISTER, headers={
        "Origin": UI, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})

    assert (200, "OPTIONS, POST", {
        "access-control-allow-origin": UI, "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": ALLOWED_HEADERS, "access-control-max-age": "3600",
        "vary": "Origin"}) == (preflight.status_code, preflight.headers["allow"],
                               cors_headers(preflight.headers))


async def test_no_cors_configured_means_no_cors_header_even_on_errors(make_api: MakeApi) -> None:
    """Without cors_origins, 404 and 405 answers carry no CORS header either."""
    api = await make_api()

    missing = await api.post("/nowhere", {}, headers={"Origin": UI})
    wrong = await api.client.get(REGISTER, headers={"Origin": UI})

    assert ({}, {}) == (cors_headers(missing.headers), cors_headers(wrong.headers))


def test_origins_compare_as_browsers_send_them() -> None:
    """Scheme and host in lower case, the default port dropped; the header sets are built once."""
    cors = Cors(["HTTPS://Console.Example.com:443/", "http://b.example:80"])

    assert ("https://console.example.com", "http://b.example") == (
        normalize_origin("HTTPS://Console.Example.com:443/"), normalize_origin("http://b.example:80"))
    assert cors.of("https://console.example.com") is cors.of("https://console.example.com")
    assert cors.plain is cors.of("https://console.example.com:443")
    assert not Cors().enabled


@pytest.mark.parametrize("raw", [b"/api%2Fdiscovery%2Flookup.json", b"/api%2fdiscovery/lookup.json",
                                 b"/api/discovery%2Flookup.json", b"/api/discovery/lookup%2Ejson"])
async def test_an_encoded_slash_is_not_a_separator(make_api: MakeApi, raw: bytes) -> None:
    """A path whose raw form holds a percent-encoding is routed as sent: 404, not lookup.json,
    although the decoded `path` the ASGI server gives would name it."""
    api = await make_api()
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "method": "POST", "path": "/api/discovery/lookup.json",
             "raw_path": raw, "query_string": b"", "headers": [], "client": ("127.0.0.1", 1)}
    body = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return body.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await api.parts.app(scope, receive, send)

    assert 404 == sent[0]["status"]
    assert b'"no endpoint at ' + raw + b'"' in sent[1]["body"]


@pytest.mark.parametrize(("body", "problem"), [
    (b'{"instances":[{"url":"http://a","url":"http://b"}]}', "duplicate key 'url'"),
    (b'{"instances":[{"url":"http://a","URL":"http://b"}]}',
     "duplicate key 'URL' (also given as 'url')"),
    (b'{"instances":[],"instances":[{"url":"http://b"}]}', "duplicate key 'instances'"),
    (b'{"instances":[{"metadata":{"k":"1","k":"2"}}]}', "duplicate key 'k'"),
])
async def test_duplicated_keys_are_refused(make_api: MakeApi, body: bytes, problem: str) -> None:
    """A body naming a key twice (or two spellings of a field) is bad-request naming the key."""
    api = await make_api()

    async with api.unchanged():
        answer = await api.call(REGISTER, content=body)

    assert {"failedInstances": None,
            "responseStatus": fail("bad-request", f"request body: {problem}")} == answer
