"""The client's one exception tree. Users never catch httpx or websockets errors:

    ArtemisError
    ├── TransportError            a node could not be reached, or answered something unreadable
    │   ├── HttpStatusError       a node (or a proxy before it) answered an HTTP error status
    │   │                         without an Artemis answer (`.status_code`, `.url`)
    │   └── NoServerAvailable     every known node failed, after the retries
    ├── ServerError               a node answered with a failed responseStatus (`.code`, `.message`)
    │   ├── BadRequest            bad-request
    │   ├── NoPermission          no-permission (another region or zone)
    │   ├── DataNotFound          data-not-found
    │   ├── RateLimited           rate-limited
    │   ├── ServiceUnavailable    service-unavailable (the node cannot serve now)
    │   └── InternalServerError   internal-service-error
    └── ClientClosed              the client was closed
"""

from __future__ import annotations

from typing import Final

from artemis.wire import ErrorCode

__all__ = [
    "ArtemisError",
    "BadRequest",
    "ClientClosed",
    "DataNotFound",
    "HttpStatusError",
    "InternalServerError",
    "NoPermission",
    "NoServerAvailable",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "server_error",
]


class ArtemisError(Exception):
    """Every error this client raises."""


class TransportError(ArtemisError):
    """A node could not be reached, or its answer could not be read."""


class HttpStatusError(TransportError):
    """A node, or a proxy before it, answered an HTTP error status (4xx, 5xx) without an
    Artemis answer (an empty body, an HTML page): `status_code` and the `url` asked."""

    def __init__(self, url: str, status_code: int, reason: str = "") -> None:
        super().__init__(f"{url}: HTTP {status_code}" + (f" {reason}" if reason else ""))
        self.url = url
        self.status_code = status_code


class NoServerAvailable(TransportError):
    """Every known node failed, after the retries."""


class ClientClosed(ArtemisError):
    """The client was closed."""


class ServerError(ArtemisError):
    """A node answered with a failed `responseStatus`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class BadRequest(ServerError):
    pass


class NoPermission(ServerError):
    pass


class DataNotFound(ServerError):
    pass


class RateLimited(ServerError):
    pass


class ServiceUnavailable(ServerError):
    pass


class InternalServerError(ServerError):
    pass


_BY_CODE: Final[dict[str, type[ServerError]]] = {
    ErrorCode.BAD_REQUEST: BadRequest,
    ErrorCode.NO_PERMISSION: NoPermission,
    ErrorCode.DATA_NOT_FOUND: DataNotFound,
    ErrorCode.RATE_LIMITED: RateLimited,
    ErrorCode.SERVICE_UNAVAILABLE: ServiceUnavailable,
    ErrorCode.INTERNAL_SERVICE_ERROR: InternalServerError,
}


def server_error(code: str, message: str) -> ServerError:
    """The exception for an Artemis error code (the one place codes become exceptions)."""
    return _BY_CODE.get(code, ServerError)(code, message)
