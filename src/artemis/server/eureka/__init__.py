"""The Eureka REST API: Eureka clients (Spring Cloud Netflix, py-eureka-client) register, renew
and discover in this node's registry unchanged; their instances are instances of the registry
like any other (docs/eureka.md, docs/compatibility.md).

  mapping.py   how a Eureka instance is an instance of the registry, and how any instance looks
               to Eureka (statuses, fields, what is kept in metadata); no I/O
  codec.py     InstanceInfo read from JSON and from XML (safe from entities and bombs), answers
               written in both
  views.py     what Eureka clients read, kept encoded: applications, the full fetch, the delta
               of recent changes from the change log, VIPs, apps__hashcode
  api.py       the routes under /eureka/: reads, and writes through the registry's own
               operations with the node's trust model
"""

from __future__ import annotations

from artemis.server.api.registry import RegistryApi
from artemis.server.eureka.api import PATHS, EurekaApi
from artemis.server.http import Route
from artemis.server.node import Node

__all__ = ["PATHS", "EurekaApi", "routes"]


def routes(node: Node, registry_api: RegistryApi) -> dict[str, Route]:
    """The Eureka API's routes (empty when the `eureka` setting is off)."""
    if not node.settings.eureka:
        return {}
    return EurekaApi(node, registry_api).routes()
