"""The management store: pulled-out instances, servers and zones, groups and route rules, their
members, logical instances and the audit log of every write, in one SQL database.

One database is shared by every node: SQLite (the embedded default), MySQL/MariaDB or PostgreSQL,
through SQLAlchemy's asyncio engine (drivers aiosqlite, asyncmy, asyncpg). Nodes keep the
management state in memory and poll `version()` to notice a change: every write bumps it once,
in its own transaction.

The modules, each with its own rules:

    store.py       ManagementStore: the concepts below composed over one database, and load()
    engine.py      the URL, engine, migrations, version, one snapshot, and a lost database
    rescue.py      a SQLite file's identity; the rescue copy of a removed or replaced file
    errors.py      StoreError and its subclasses, drawn as a tree
    schema.py      the tables (what the migrations in migrations/ create)
    limits.py      the bounds of every value, shared with the API
    validation.py  the checks of every argument before anything is written
    records.py     the specs of rows to write, tags, group operations, ManagementData
    queries.py     the SQL every concept shares (ids in chunks, exact filters)
    audit.py       the audit log
    operations.py  pull-outs of instances, servers and zones
    groups.py      groups, route rules and their groups' weights
    members.py     a group's tags, explicit instances and operations
    instances.py   logical instances

Rows the API shows are read as the wire types themselves (`wire.Group`,
`wire.ServiceRouteRule`, `wire.RouteRuleGroup`, `wire.GroupInstance`, `wire.ServiceInstance`,
`wire.AuditEntry`).
"""

from __future__ import annotations

from artemis.server.store.audit import (
    KIND_GROUP,
    KIND_GROUP_INSTANCE,
    KIND_GROUP_OPERATION,
    KIND_GROUP_TAG,
    KIND_INSTANCE,
    KIND_ROUTE_RULE,
    KIND_ROUTE_RULE_GROUP,
    KIND_SERVER,
    KIND_SERVICE_INSTANCE,
    KIND_ZONE,
)
from artemis.server.store.engine import async_url
from artemis.server.store.errors import StoreError, StoreLost, StoreUnavailable, StoreValueError
from artemis.server.store.limits import MAX_AUDIT_PAGE, MAX_METADATA_ENTRIES
from artemis.server.store.records import (
    DEFAULT_STRATEGY,
    GroupOperation,
    GroupSpec,
    GroupTag,
    ManagementData,
    RouteRuleSpec,
    ServiceInstanceSpec,
)
from artemis.server.store.schema import target_key
from artemis.server.store.store import ManagementStore
from artemis.server.store.validation import STATUSES

__all__ = [
    "DEFAULT_STRATEGY",
    "KIND_GROUP",
    "KIND_GROUP_INSTANCE",
    "KIND_GROUP_OPERATION",
    "KIND_GROUP_TAG",
    "KIND_INSTANCE",
    "KIND_ROUTE_RULE",
    "KIND_ROUTE_RULE_GROUP",
    "KIND_SERVER",
    "KIND_SERVICE_INSTANCE",
    "KIND_ZONE",
    "MAX_AUDIT_PAGE",
    "MAX_METADATA_ENTRIES",
    "STATUSES",
    "GroupOperation",
    "GroupSpec",
    "GroupTag",
    "ManagementData",
    "ManagementStore",
    "RouteRuleSpec",
    "ServiceInstanceSpec",
    "StoreError",
    "StoreLost",
    "StoreUnavailable",
    "StoreValueError",
    "async_url",
    "target_key",
]
