"""Prefix routes: a route declared as `/some/*` answers every path under it that no exact route
takes, the longest prefix first, under the context path, on both faces' common path."""

from __future__ import annotations

import httpx

from artemis.server.http import App, Request, Response, Route

ANY = frozenset({"GET", "POST", "PUT", "DELETE"})


def echo(name: str) -> Route:
    def handler(request: Request) -> Response:
        return Response(f"{name} {request.method} {request.path}".encode(),
                        content_type="text/plain")
    return Route(ANY, handler=handler)


def app(context_path: str = "") -> App:
    return App({"/exact": echo("exact"), "/a/*": echo("a"), "/a/b/*": echo("ab"),
                "/a/b/fixed": echo("fixed")}, context_path=context_path)


async def answers(application: App, *requests: tuple[str, str]) -> list[tuple[int, str]]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application),
                                 base_url="http://testserver") as client:
        out = []
        for method, path in requests:
            answer = await client.request(method, path)
            out.append((answer.status_code, answer.text if answer.status_code == 200 else ""))
        return out


async def test_prefix_routes_take_what_no_exact_route_does_longest_first() -> None:
    assert [(200, "exact GET /exact"), (200, "a GET /a/x"), (200, "a PUT /a/x/y"),
            (200, "ab DELETE /a/b/c"), (200, "fixed GET /a/b/fixed"), (200, "ab POST /a/b/"),
            (404, ""), (404, ""), (404, "")] == await answers(
        app(), ("GET", "/exact"), ("GET", "/a/x"), ("PUT", "/a/x/y"), ("DELETE", "/a/b/c"),
        ("GET", "/a/b/fixed"), ("POST", "/a/b/"), ("GET", "/a"), ("GET", "/ab"),
        ("GET", "/exact/more"))


async def test_prefix_routes_live_under_the_context_path() -> None:
    assert [(200, "a GET /ctx/a/x"), (404, "")] == await answers(
        app("/ctx"), ("GET", "/ctx/a/x"), ("GET", "/a/x"))


async def test_a_wrong_method_on_a_prefix_route_is_405() -> None:
    only_get = App({"/g/*": Route(frozenset({"GET"}), handler=lambda r: b"{}")})
    assert [(200, "{}"), (405, "")] == await answers(only_get, ("GET", "/g/1"), ("POST", "/g/1"))
