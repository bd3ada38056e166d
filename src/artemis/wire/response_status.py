"""The status every answer carries: `ResponseStatus`, the protocol's error codes (§2) and the
answers that carry nothing else."""

from __future__ import annotations

import enum
from typing import Final

from artemis.wire.codec import _Wire

__all__ = [
    "RERUNNABLE",
    "SERVICE_DOWN",
    "ErrorCode",
    "ErrorResponse",
    "ResponseStatus",
    "StatusOnlyResponse",
]


class ErrorCode(enum.StrEnum):
    """Every `errorCode` of the protocol (§2), the one place server, client and CLI name them.
    A member is its text (`ErrorCode.BAD_REQUEST == "bad-request"`) and encodes as it."""

    SUCCESS = "success"
    PARTIAL_FAIL = "partial_fail"
    BAD_REQUEST = "bad-request"
    RATE_LIMITED = "rate-limited"
    NO_PERMISSION = "no-permission"
    DATA_NOT_FOUND = "data-not-found"
    INTERNAL_SERVICE_ERROR = "internal-service-error"
    SERVICE_UNAVAILABLE = "service-unavailable"
    UNKNOWN = "unknown"


# The original's classes of codes (common/ErrorCodes.java): worth another try, and a sign the node
# cannot serve (only with status "fail").
RERUNNABLE: Final = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNKNOWN})


SERVICE_DOWN: Final = frozenset({ErrorCode.INTERNAL_SERVICE_ERROR, ErrorCode.SERVICE_UNAVAILABLE})


class ResponseStatus(_Wire, kw_only=True, frozen=True, gc=False):
    error_code: str
    message: str
    status: str


class ErrorResponse(_Wire, kw_only=True, frozen=True):
    """A failed answer without an endpoint's payload: 404 and 405, or an endpoint with none."""

    response_status: ResponseStatus


class StatusOnlyResponse(_Wire, kw_only=True, frozen=True):
    response_status: ResponseStatus
