"""The Python client of Artemis: register and keep alive, discover and watch, balance.

    from artemis.client import DiscoveryClient, Instance, RegistryClient

Async first (`RegistryClient`, `DiscoveryClient`), blocking faces in `SyncRegistryClient` and
`SyncDiscoveryClient`. Every error is an `ArtemisError` (see artemis.client.errors).
"""

from artemis.client.balancer import (
    Balancer,
    RandomBalancer,
    RoundRobinBalancer,
    WeightedBalancer,
    ZoneFirstBalancer,
)
from artemis.client.discovery import DiscoveryClient, Listener
from artemis.client.errors import (
    ArtemisError,
    BadRequest,
    ClientClosed,
    DataNotFound,
    HttpStatusError,
    InternalServerError,
    NoPermission,
    NoServerAvailable,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
)
from artemis.client.registration import RegistryClient
from artemis.client.servers import Caller, ServerList
from artemis.client.sync import SyncDiscoveryClient, SyncRegistryClient
from artemis.client.transport import (
    ClientWebSocket,
    InProcessTransport,
    NetworkTransport,
    Transport,
)
from artemis.wire import Instance, Service

__all__ = [
    "ArtemisError",
    "BadRequest",
    "Balancer",
    "Caller",
    "ClientClosed",
    "ClientWebSocket",
    "DataNotFound",
    "DiscoveryClient",
    "HttpStatusError",
    "InProcessTransport",
    "Instance",
    "InternalServerError",
    "Listener",
    "NetworkTransport",
    "NoPermission",
    "NoServerAvailable",
    "RandomBalancer",
    "RateLimited",
    "RegistryClient",
    "RoundRobinBalancer",
    "ServerError",
    "ServerList",
    "Service",
    "ServiceUnavailable",
    "SyncDiscoveryClient",
    "SyncRegistryClient",
    "Transport",
    "TransportError",
    "WeightedBalancer",
    "ZoneFirstBalancer",
]
