"""The application of one node: every endpoint under the context path, in one `App`."""

from __future__ import annotations

from artemis.server.api import discovery as api_discovery
from artemis.server.api import groups as api_groups
from artemis.server.api import management as api_management
from artemis.server.api import openapi
from artemis.server.api import registry as api_registry
from artemis.server.api import replication as api_replication
from artemis.server.api import status as api_status
from artemis.server.cluster import Cluster
from artemis.server.http import App, Request, Response, Route
from artemis.server.management import Management
from artemis.server.node import Node
from artemis.server.observability.metrics import (
    CONTENT_TYPE,
    EndpointStats,
    render,
    scrape_registry,
)
from artemis.server.push import PushServer

__all__ = ["build_app"]


def management_routes(node: Node, management: Management) -> dict[str, Route]:
    api = api_management.ManagementApi(node, management)
    api_groups.add_routes(api)
    return api.routes


def build_app(node: Node) -> App:
    """The RSGI/ASGI application serving `node`; its ASGI lifespan runs the node's loops."""
    Cluster(node)  # peers, replication and repair (idle without peers)
    management = Management(node)  # pull-outs from the database (idle without one)
    registry = api_registry.routes(node)
    push = PushServer(node, registry.heartbeat)
    routes = {**registry.routes, **api_discovery.routes(node), **api_status.routes(node, push),
              **api_replication.routes(node), **management_routes(node, management)}
    s = node.settings
    unmatched = None
    if s.metrics:
        endpoints = {path: EndpointStats(path) for path in routes}
        for path, route in routes.items():
            route.stats = endpoints[path]
        unmatched = endpoints["unmatched"] = EndpointStats("unmatched")
        collectors = scrape_registry(node, endpoints, push)

        def scrape(request: Request) -> Response:
            return Response(render(collectors), content_type=CONTENT_TYPE)

        routes["/metrics"] = Route(frozenset({"GET"}), handler=scrape, reads_body=False)
    routes[openapi.PATH] = openapi.openapi_route(routes, s.context_path)  # last: documents all
    app = App(routes, context_path=s.context_path, max_body_bytes=s.max_body_bytes,
              gzip_min_bytes=s.gzip_min_bytes, lifespan=node.running,
              websockets=push.endpoints())
    app.unmatched = unmatched
    return app
