"""The bounds of every value the management API takes and the store keeps, stated once.

The API refuses a value out of bounds with a 400 naming the field; the store refuses it with
StoreValueError (its own callers may skip the API); the schema's columns are as wide as these
(SQLite does not check widths, so the store does). Where the API and the store once disagreed,
the API's bound is kept: it is what clients see.
"""

from __future__ import annotations

from typing import Final

from artemis.core import visibility

__all__ = [
    "MAX_AUDIT_PAGE",
    "MAX_DESCRIPTION",
    "MAX_EXTENSIONS",
    "MAX_ID",
    "MAX_METADATA_ENTRIES",
    "MAX_METADATA_TEXT",
    "MAX_NAME",
    "MAX_OFFSET",
    "MAX_PORT",
    "MAX_PROTOCOL",
    "MAX_REASON",
    "MAX_ROW_ID",
    "MAX_STATUS",
    "MAX_STRATEGY",
    "MAX_TAG_VALUE",
    "MAX_URL",
    "MAX_WEIGHT",
]

MAX_ID: Final = 256  # region, service, instance, zone, server ids; group and rule names
MAX_NAME: Final = 128  # operation, operator_id, actor
MAX_REASON: Final = 1024
MAX_DESCRIPTION: Final = 1024
MAX_STATUS: Final = 32
MAX_STRATEGY: Final = 64
MAX_EXTENSIONS: Final = 2048
MAX_TAG_VALUE: Final = 1024
MAX_URL: Final = 512  # url, health_check_url
MAX_PROTOCOL: Final = 16
MAX_PORT: Final = 65_535
MAX_METADATA_ENTRIES: Final = 64
MAX_METADATA_TEXT: Final = 1024  # each key and each value
MAX_WEIGHT: Final = visibility.MAX_WEIGHT  # a group's weight in a route rule (10,000)
MAX_AUDIT_PAGE: Final = 1000  # rows of one page of the audit log
MAX_OFFSET: Final = 2**63 - 1  # the largest OFFSET every backend takes
MAX_ROW_ID: Final = 2**63 - 1  # BIGINT
