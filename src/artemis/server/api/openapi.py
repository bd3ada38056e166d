"""The OpenAPI 3.1 document of a node's HTTP endpoints, served at `/openapi.json`.

The document is built from the route table the node serves, so it lists exactly those paths and
methods; what each one takes and answers comes from its declaration (`endpoint.Endpoint`, in
the API module that serves it), the schemas from the wire Structs. A served route with no
declaration makes the builder raise: an endpoint cannot be served without being described.
WebSocket endpoints are not OpenAPI operations; the document's description lists them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from artemis import __version__, wire
from artemis.server.api import catalog
from artemis.server.api.endpoint import GET, Endpoint, Query, Role, bind
from artemis.server.http import JSON, Request, Route

__all__ = ["ENDPOINTS", "PATH", "UndocumentedRoute", "openapi_document", "openapi_route"]

PATH: Final = "/openapi.json"


class UndocumentedRoute(LookupError):
    """A route of the table has no declaration."""


class Document:
    """The document of a node, encoded once."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def serve(self, request: Request) -> bytes:
        return self.body


OPENAPI: Final = Endpoint(
    PATH, GET, "This document", None, dict[str, Any], Document.serve, reads_body=False,
    description="The OpenAPI 3.1 description of every HTTP endpoint of the node.")

# Every declaration a node may serve, by path.
ENDPOINTS: Final[Mapping[str, Endpoint]] = {**catalog.ENDPOINTS, PATH: OPENAPI}

_MANAGEMENT: Final = ("Needs the management database (else `service-unavailable`) and a bearer "
                      "token with the {role} role (else `no-permission`).")

_DESCRIPTION: Final = """\
A service registry and discovery server compatible with Ctrip's Artemis.

Bodies are JSON and may be gzip-compressed (`Content-Encoding: gzip`); an empty body reads as
`{{}}`. Keys are read case-insensitively and unknown keys are ignored. Answers to known endpoints
are HTTP 200 with a `responseStatus` (`errorCode` one of `success`, `partial_fail`, `bad-request`,
`rate-limited`, `no-permission`, `data-not-found`, `internal-service-error`,
`service-unavailable`); a failed answer keeps the endpoint's shape with its payload fields null.
Unknown paths answer 404 and wrong methods 405 (with `Allow`), each with a JSON `responseStatus`.
Large answers are gzip-compressed for a client that accepts gzip (`Accept-Encoding`).

WebSockets (not operations of this document; text frames of JSON, `ws://`):

| path | the client sends | the node sends |
|---|---|---|
| `{context}/ws/discovery/instance-change` | a DiscoveryConfig per service to follow, \
optionally with the `revision` of the last change seen | an InstanceChange frame (with its \
`revision`) for every change of those services |
| `{context}/ws/discovery/all-instance-change` | nothing (a frame `{{"revision": ...}}` \
resumes) | every InstanceChange of every service |
| `{context}/ws/registry/heartbeat` | `{{"instances": [Instance]}}` frames | one answer per \
frame, as `heartbeat.json` answers |

Errors on a WebSocket are frames `{{"responseStatus": ...}}`.
"""

_REF: Final = "#/components/schemas/{name}"


def _operation_id(method: str, path: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", path.removeprefix("/api/").removesuffix(".json"))
    return f"{method.lower()}_{slug.strip('_')}"


def _tag(path: str) -> str:
    return path.split("/")[2] if path.startswith("/api/") else "node"


def _content(media: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {media.split(";")[0]: {"schema": schema}}


def _description(entry: Endpoint) -> str:
    """The declared description, and what the read and write roles need."""
    if entry.role not in (Role.READ, Role.WRITE):
        return entry.description
    needs = _MANAGEMENT.format(role=entry.role)
    return f"{entry.description} {needs}" if entry.description else needs


def openapi_document(routes: Mapping[str, Route], context_path: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (paths without the context path) served under
    `context_path`; raise UndocumentedRoute for a route with no declaration in ENDPOINTS.
    Prefix routes (`/console/*`, `/eureka/*`) serve other protocols than the Artemis API and are
    documented in docs/api.md, not here."""
    routes = {path: route for path, route in routes.items() if not path.endswith("/*")}
    missing = sorted(set(routes) - set(ENDPOINTS))
    if missing:
        raise UndocumentedRoute(f"routes without a declaration (api.endpoint.Endpoint): "
                                f"{missing}")
    kinds: list[Any] = [wire.ErrorResponse]
    for path in routes:
        entry = ENDPOINTS[path]
        kinds.append(entry.answer)
        if entry.request is not None:
            kinds.append(entry.request)
    refs, schemas = msgspec.json.schema_components(kinds, ref_template=_REF)
    schema_of = dict(zip(kinds, refs, strict=True))
    error = _content(JSON, schema_of[wire.ErrorResponse])
    paths: dict[str, Any] = {}
    for path, route in routes.items():
        entry = ENDPOINTS[path]
        answer = _content(entry.content_type, schema_of[entry.answer])
        operations: dict[str, Any] = {}
        for method in sorted(route.methods):
            described = {200: entry.summary, **entry.statuses}
            responses: dict[str, Any] = {
                str(status): {"description": text} if method == "HEAD"
                else {"description": text, "content": answer}
                for status, text in described.items()
            }
            responses |= {"404": {"$ref": "#/components/responses/NotFound"},
                          "405": {"$ref": "#/components/responses/MethodNotAllowed"}}
            operation: dict[str, Any] = {
                "operationId": _operation_id(method, path),
                "summary": entry.summary,
                "tags": [_tag(path)],
            }
            description = _description(entry)
            if description:
                operation["description"] = description
            if method in ("GET", "HEAD") and entry.query:
                operation["parameters"] = [_parameter(q) for q in entry.query]
            if method == "POST" and entry.request is not None and route.reads_body:
                operation["requestBody"] = {
                    "required": False,
                    "description": "JSON, optionally gzip-compressed; empty reads as `{}`.",
                    "content": _content(JSON, schema_of[entry.request]),
                }
            if entry.role is Role.ADMIN and entry.guards(method):
                # {}: no token needed on 127.0.0.1 when none is configured
                operation["security"] = [{}, {"adminToken": []}]
            if entry.role is Role.PEER:
                operation["security"] = [{"clusterSecret": []}]
            operation["responses"] = responses
            operations[method.lower()] = operation
        paths[context_path + path] = operations
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Artemis for Python",
            "version": __version__,
            "description": _DESCRIPTION.format(context=context_path),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "NotFound": {"description": "No endpoint at this path (for instance, the "
                             "node serves another context path)", "content": error},
                "MethodNotAllowed": {
                    "description": "The path does not take this method; `Allow` lists those "
                    "it takes",
                    "headers": {"Allow": {"schema": {"type": "string"}}},
                    "content": error,
                },
            },
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": "The node's `admin_token`, for admin switches"},
                "clusterSecret": {"type": "apiKey", "in": "header",
                                  "name": "x-artemis-cluster-secret",
                                  "description": "The cluster's `cluster_secret`, which peers "
                                  "send (not needed with `cluster_insecure`)"},
            },
        },
    }


def _parameter(query: Query) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": query.name, "in": "query", "required": query.required,
                                 "description": query.description, "schema": query.schema}
    if not query.explode:
        parameter |= {"style": "form", "explode": False}
    return parameter


def openapi_route(routes: Mapping[str, Route], context_path: str) -> Route:
    """GET /openapi.json: the document of `routes` and of itself, encoded once."""
    document = Document(b"")
    route = bind(OPENAPI, document)
    document.body = msgspec.json.encode(openapi_document({**routes, PATH: route}, context_path))
    return route
