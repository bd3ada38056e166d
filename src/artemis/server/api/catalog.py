"""Every HTTP endpoint of a node: the declarations of the API modules gathered by path, and the
routes bound from them (`routes`), in the order the OpenAPI document lists them.

/metrics (on when metrics are) and /openapi.json (last: it documents every route served) are
added by whoever assembles the app, with `status.metrics_route` and `openapi.openapi_route`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from artemis.server.api import (
    console,
    discovery,
    group_members,
    groups,
    management,
    prometheus_sd,
    registry,
    replication,
    status,
)
from artemis.server.api.endpoint import Access, Endpoint
from artemis.server.api.group_members import MemberApi
from artemis.server.api.management import ManagementApi
from artemis.server.api.registry import RegistryApi
from artemis.server.cluster import Cluster
from artemis.server.cluster.credential import ClusterCredential
from artemis.server.http import Route
from artemis.server.management import Management
from artemis.server.node import Node
from artemis.server.push import PushServer

__all__ = ["ENDPOINTS", "routes"]


def _by_path(*families: tuple[Endpoint, ...]) -> dict[str, Endpoint]:
    table: dict[str, Endpoint] = {}
    for family in families:
        for endpoint in family:
            if endpoint.path in table:
                raise ValueError(f"{endpoint.path} is declared twice")
            table[endpoint.path] = endpoint
    return table


ENDPOINTS: Final[Mapping[str, Endpoint]] = _by_path(
    registry.ENDPOINTS, discovery.ENDPOINTS, prometheus_sd.ENDPOINTS, status.ENDPOINTS,
    replication.ENDPOINTS, management.ENDPOINTS, groups.ENDPOINTS, group_members.ENDPOINTS,
    (status.METRICS,), console.ENDPOINTS)


def routes(node: Node, *, registry_api: RegistryApi, push: PushServer, cluster: Cluster | None,
           management: Management | None,
           peers: ClusterCredential | None = None) -> dict[str, Route]:
    """The routes of every endpoint of a node but /metrics and /openapi.json; protected ones
    share one `Access` made from the node's settings (and its cluster credential, `peers`)."""
    access = Access(node.settings, peers)
    managed = ManagementApi(node, management, access)
    members = MemberApi(managed)
    managed.add(groups.ENDPOINTS, members)
    managed.add(group_members.ENDPOINTS, members)
    return {**registry_api.routes, **discovery.routes(node), **prometheus_sd.routes(node),
            **status.routes(node, push, access, cluster, management),
            **replication.routes(node, access), **managed.routes,
            **console.routes(node, push, cluster, management, access)}
