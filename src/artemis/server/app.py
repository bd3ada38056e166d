"""The application of one node: every endpoint under the context path, in one `App`.

`build_app` assembles the routes of the parts the composition root (`compose.build`) made and
hands them to the HTTP layer; it builds no part itself.
"""

from __future__ import annotations

from artemis.server.api import catalog, openapi
from artemis.server.api import status as api_status
from artemis.server.api.registry import RegistryApi
from artemis.server.cluster import Cluster
from artemis.server.cluster.credential import ClusterCredential
from artemis.server.eureka import routes as eureka_routes
from artemis.server.http import App
from artemis.server.management import Management
from artemis.server.node import Node
from artemis.server.observability.metrics import EndpointStats, scrape_registry
from artemis.server.observability.tracing import Tracing
from artemis.server.push import PushServer

__all__ = ["build_app"]


def build_app(node: Node, *, registry: RegistryApi, push: PushServer, cluster: Cluster | None,
              management: Management | None, tracing: Tracing | None,
              peers: ClusterCredential | None = None) -> App:
    """The RSGI/ASGI application serving `node`; its ASGI lifespan runs the node's loops.
    `peers` is the cluster credential the peer-only endpoints check."""
    peers = peers or ClusterCredential(node.settings)
    routes = catalog.routes(node, registry_api=registry, push=push, cluster=cluster,
                            management=management, peers=peers)
    routes.update(eureka_routes(node, registry))  # /eureka/*, unless the eureka setting is off
    s = node.settings
    unmatched = None
    if s.metrics:
        endpoints = {path: EndpointStats(path) for path in routes}
        for path, route in routes.items():
            route.stats = endpoints[path]
        unmatched = endpoints["unmatched"] = EndpointStats("unmatched")
        collectors = scrape_registry(node, endpoints, push, cluster, management, peers)
        routes["/metrics"] = api_status.metrics_route(collectors)
    routes[openapi.PATH] = openapi.openapi_route(routes, s.context_path)  # last: documents all
    return App(routes, context_path=s.context_path, max_body_bytes=s.max_body_bytes,
               gzip_min_bytes=s.gzip_min_bytes, lifespan=node.running,
               websockets=push.endpoints(), unmatched=unmatched, tracing=tracing,
               cors_origins=s.cors_allowed())
