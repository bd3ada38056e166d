"""The client's one exception tree. Users never catch httpx or websockets errors:

    ArtemisError
    ├── TransportError            a node could not be reached, or answered something unreadable
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
