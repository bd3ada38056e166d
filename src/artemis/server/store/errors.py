"""The store's one exception tree, and how a database error is told and worded.

Errors never escape the store as driver or SQLAlchemy exceptions:

    StoreError            anything else (a constraint, an SQL error, a broken row)
    ├── StoreValueError   an argument the store cannot take (also a ValueError): a URL of
    │                     no known database, text too long or with NUL, a bad audit filter
    └── StoreUnavailable  the database cannot be reached, lost the connection, is locked or
        │                 did not answer in time, or the store is not open (yet): the same
        │                 call may succeed later
        └── StoreLost     the database opened is gone (see engine.py): every call until the
                          store is opened again
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import exc as sa_exc

__all__ = ["StoreError", "StoreLost", "StoreUnavailable", "StoreValueError", "describe",
           "unavailable"]

_MESSAGE_LIMIT: Final = 300


class StoreError(Exception):
    """A store call failed; the message says why. Never a driver's or SQLAlchemy's exception."""


class StoreValueError(StoreError, ValueError):
    """An argument the store cannot take; the message names it. Nothing was written."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or did not answer in time, or the store is not open; the
    call may succeed later."""


class StoreLost(StoreUnavailable):
    """The database this store opened is gone: its SQLite file was removed or replaced, or its
    version row is missing or went back. Every call raises it until the store is opened again."""


def describe(error: BaseException) -> str:
    """A short message for a database error: the driver's own words, never parameters."""
    cause = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    words = str(cause).strip().splitlines()
    message = f"{type(cause).__name__}: {words[0] if words else ''}".rstrip(": ")
    return message[:_MESSAGE_LIMIT]


def unavailable(error: Exception) -> bool:
    """Whether a database error means "cannot reach it now" rather than "this call is wrong"."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (
        sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
        sa_exc.DisconnectionError, OSError))
