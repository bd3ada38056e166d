"""The management store: pulled-out instances, servers and zones, and their audit log, in SQL.

One database is shared by every node: SQLite (the embedded default), MySQL/MariaDB or PostgreSQL,
through SQLAlchemy's asyncio engine (drivers aiosqlite, asyncmy, asyncpg). Nodes keep the
management state in memory and poll `version()` to notice a change.

Rules
  * A plain URL gets the async driver: sqlite:// -> sqlite+aiosqlite, mysql:// and mariadb:// ->
    +asyncmy (with charset=utf8mb4 unless the URL sets one), postgresql:// and postgres:// ->
    postgresql+asyncpg. A URL that names a driver is kept as it is; any other scheme is a
    StoreError. In-memory SQLite is refused (a pool would see one database per connection).
  * `open()` runs the Alembic migrations shipped in `artemis/server/store/migrations` up to
    head, under a lock (PostgreSQL advisory lock, MySQL GET_LOCK, SQLite BEGIN IMMEDIATE, and
    an asyncio lock per event loop for Alembic's own globals), so nodes that start together on
    an empty database do not race. An empty database gets the schema; a current one is left as
    it is.
  * Keys are compared exactly as given: the API lower-cases region, service, instance, zone and
    server ids before calling the store (ids are case-insensitive, §3.1), and the store keeps
    what it is given.
  * Every operate_* call is one transaction: bump the version row first (its row lock serializes
    writers on every backend), read the target's operations, add (complete=False, pull-out) or
    remove (complete=True, pull-in) one, and append an audit row with the operations before and
    after. The version goes up by exactly 1 per call, whether or not anything changed, since the
    audit row is a write too. A concurrent duplicate insert (IntegrityError) retries the call
    once; the retry finds the row present.
  * Groups and route rules (§4.7): a group is unique on (service, region, zone, name), a route
    rule on (service, name), both by a target_key hash as above (so keys compare exactly on
    every backend); a route rule's groups are links (rule id, group id) with a released
    `weight` and a staged `unreleased_weight`. `upsert_*` inserts a missing row; an existing
    one is revived (deleted=false) and, with `update=True`, gets the new fields. `delete_*`
    of groups and rules is soft (deleted=true), of links hard. Each write call is one
    transaction that bumps the version once and appends one audit row per entity it found or
    wrote, changed or not (kinds `group`, `route-rule`, `route-rule-group`; unknown ids get
    none): `before`/`after` are [] (no row) or [the row as a JSON object], `detail` the JSON
    object of the fields written ({} if none), `operation` `create` (upsert with update=False,
    create_route_rule, a new link), `update` (update=True, a link's new staged weight),
    `release` or `delete` (`complete` is true for deletes only). A call that refuses an
    argument (a missing or deleted id, a negative weight, a status other than active/inactive)
    writes nothing, not even the version.
  * A group's members (§4.7, §7.3): tags (tag -> value), explicit instance ids and operations
    in force, each unique on (group_id, its text) by target_key(str(group_id), text), and
    deleted for good. Logical instances (§7.5) are unique on (service, instance) by target_key,
    written whole (`upsert_service_instances` inserts or rewrites every field) and deleted for
    good; their `metadata` is a JSON object of text. Every write that names a group needs it
    to exist and not be deleted (StoreValueError naming the id otherwise, nothing written).
    Audit rows as for groups (one per member found or written, changed or not), kinds
    `group-tag` (operation create/update/delete, `name` the tag), `group-instance`
    (create/delete, `instance_id`), `group-operation` (`operation` the group's operation and
    `complete` as given, like the operate_* kinds) and `service-instance` (create/update/delete,
    `service_id`/`instance_id`/`region_id`/`zone_id` of the instance); the member kinds carry
    the group's id, service, region and zone. `load()` shows the members of groups not
    deleted; the reads (`group_tags()` ...) show every row. Text filters and deletes by text
    compare exactly on every backend (rows are matched again in Python).
  * `load()` and `audit()` read in one snapshot (REPEATABLE READ; one SQLite transaction).
  * The database stays the one opened. On SQLite the file's identity (device, inode) is taken
    at `open()` and compared with what the path names before every call; on every backend the
    version never goes below the highest one this store saw before the call began (a write
    checks it in its own transaction, after the bump). Otherwise the store is lost: the file
    was removed or replaced, or the version row is missing or went back (tables dropped and
    created again, another database under the same URL, an older backup restored). A lost
    store reads and writes nothing: every call raises StoreLost until the store is closed and
    opened again (a node opens it when it starts).
  * A SQLite store keeps one plain sqlite3 connection on its file, so a removed or replaced
    file stays readable through it: `rescue()` copies it, once, to `<file>.rescued-<ms>-<pid>`
    beside the path (SQLite's backup API; written under another name, then renamed), closes
    every connection, and removes the -wal and -shm files at the path that are still the lost
    file's (same device and inode as at open): SQLite would apply them to whatever file is
    opened there next. `open()` of a path where no file is puts the newest rescue copy in its
    place first (`restored`; a hard link, so a file another node made meanwhile is never
    overwritten) and lists in `rescue_copies` those it leaves beside an existing file.
  * Values are always bound parameters. Text must not hold NUL or lone surrogates, and must fit
    its column (checked here, since SQLite does not): ids and names 256 characters, operation,
    operator and actor 128, reason and description 1024, extensions 65536, status 32, strategy
    64; weights are 0 to 2**31 - 1; a tag's value 1024, a logical instance's url and
    health_check_url 512, protocol 16, port 0 to 65535, metadata at most 64 entries whose keys
    and values are at most 1024 characters each.
  * Each call is bounded by `timeout` seconds (`open()` by `timeout` to reach the database, then
    `migration_timeout` to migrate). Errors never escape as driver or SQLAlchemy exceptions:

        StoreError            anything else (a constraint, an SQL error, a broken row)
        ├── StoreValueError   an argument the store cannot take (also a ValueError): a URL of
        │                     no known database, text too long or with NUL, a bad audit filter
        └── StoreUnavailable  the database cannot be reached, lost the connection, is locked or
            │                 did not answer in time, or the store is not open (yet): the same
            │                 call may succeed later
            └── StoreLost     the database opened is gone (see above): every call until the
                              store is opened again
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    event,
    false,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, CursorResult, RowMapping, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

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
    "AuditEntry",
    "Group",
    "GroupInstance",
    "GroupOperation",
    "GroupSpec",
    "GroupTag",
    "ManagementData",
    "ManagementStore",
    "RouteRule",
    "RouteRuleGroup",
    "RouteRuleSpec",
    "ServiceInstance",
    "ServiceInstanceSpec",
    "StoreError",
    "StoreLost",
    "StoreUnavailable",
    "StoreValueError",
    "async_url",
    "target_key",
]

KIND_INSTANCE: Final = "instance-operation"
KIND_SERVER: Final = "server-operation"
KIND_ZONE: Final = "zone-operation"
KIND_GROUP: Final = "group"
KIND_ROUTE_RULE: Final = "route-rule"
KIND_ROUTE_RULE_GROUP: Final = "route-rule-group"
KIND_GROUP_TAG: Final = "group-tag"
KIND_GROUP_INSTANCE: Final = "group-instance"
KIND_GROUP_OPERATION: Final = "group-operation"
KIND_SERVICE_INSTANCE: Final = "service-instance"
MAX_AUDIT_PAGE: Final = 1000
MAX_ID: Final = 256
MAX_NAME: Final = 128  # operation, operator_id, actor
MAX_REASON: Final = 1024
MAX_DESCRIPTION: Final = 1024
MAX_STATUS: Final = 32
MAX_STRATEGY: Final = 64
MAX_EXTENSIONS: Final = 65_536
MAX_TAG_VALUE: Final = 1024
MAX_URL: Final = 512  # url, health_check_url
MAX_PROTOCOL: Final = 16
MAX_PORT: Final = 65_535
MAX_METADATA_ENTRIES: Final = 64
MAX_METADATA_TEXT: Final = 1024  # each key and each value
MAX_OFFSET: Final = 2**63 - 1  # the largest OFFSET every backend takes
MAX_ROW_ID: Final = 2**63 - 1  # BIGINT
MAX_WEIGHT: Final = 2**31 - 1  # INT
STATUSES: Final = frozenset({"active", "inactive"})
DEFAULT_STRATEGY: Final = "weighted-round-robin"
AUDIT_FILTERS: Final = frozenset({
    "kind", "region_id", "service_id", "instance_id", "server_id", "zone_id", "operation",
    "operator_id", "actor", "complete", "group_id", "route_rule_id", "name",
})
_INT_FILTERS: Final = frozenset({"group_id", "route_rule_id"})
_CHUNK: Final = 500  # ids per IN (...) list
_T = TypeVar("_T")

_DRIVERS: Final = {
    "sqlite": "sqlite+aiosqlite",
    "mysql": "mysql+asyncmy",
    "mariadb": "mariadb+asyncmy",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}
_MYSQL: Final = frozenset({"mysql", "mariadb"})
_MIGRATION_LOCK: Final = "artemis_migrations"
_PG_LOCK_KEY: Final = 0x4172_7465_6D69_73  # "Artemis": the advisory lock of migrations
_MESSAGE_LIMIT: Final = 300
_RESCUED: Final = re.compile(r"\.rescued-(\d+)-(\d+)")  # after the file's name
# Alembic keeps the running migration in module globals (`alembic.context`, `alembic.op`), so
# two stores of one event loop must not migrate at once: the only state shared between stores.
_LOCAL_MIGRATIONS: Final[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary())


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


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A group to write: its key (service, region, zone, name) and its fields."""

    service_id: str
    region_id: str
    zone_id: str
    name: str
    app_id: str | None = None
    description: str | None = None
    status: str = "active"


@dataclass(frozen=True, slots=True)
class Group:
    """A group (not deleted) as stored."""

    id: int
    service_id: str
    region_id: str
    zone_id: str
    name: str
    app_id: str | None
    description: str | None
    status: str
    created_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class RouteRuleSpec:
    """A route rule to write: its key (service, name) and its fields."""

    service_id: str
    name: str
    description: str | None = None
    status: str = "active"
    strategy: str = DEFAULT_STRATEGY


@dataclass(frozen=True, slots=True)
class RouteRule:
    """A route rule (not deleted) as stored."""

    id: int
    service_id: str
    name: str
    description: str | None
    status: str
    strategy: str
    created_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class RouteRuleGroup:
    """A group of a route rule: the released weight (None until released) and the staged one."""

    id: int
    route_rule_id: int
    group_id: int
    weight: int | None
    unreleased_weight: int | None


@dataclass(frozen=True, slots=True)
class GroupTag:
    """A group's tag and its value."""

    id: int
    group_id: int
    tag: str
    value: str


@dataclass(frozen=True, slots=True)
class GroupInstance:
    """An instance id a group names as a member (explicit membership; canary's members)."""

    id: int
    group_id: int
    instance_id: str


@dataclass(frozen=True, slots=True)
class GroupOperation:
    """An operation in force on a group."""

    id: int
    group_id: int
    operation: str


@dataclass(frozen=True, slots=True)
class ServiceInstanceSpec:
    """A logical instance to write: its key (service, instance) and its fields (all but the
    first three by keyword; `group_id` is the name of the instance's group)."""

    service_id: str
    instance_id: str
    url: str
    _: KW_ONLY
    ip: str | None = None
    machine_name: str | None = None
    metadata: Mapping[str, str] | None = None
    port: int = 0
    protocol: str | None = None
    region_id: str
    zone_id: str | None = None
    group_id: str | None = None
    health_check_url: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceInstance:
    """A logical instance as stored (`metadata` a new dict of each read, or None)."""

    id: int
    service_id: str
    instance_id: str
    url: str
    _: KW_ONLY
    ip: str | None
    machine_name: str | None
    metadata: Mapping[str, str] | None
    port: int
    protocol: str | None
    region_id: str
    zone_id: str | None
    group_id: str | None
    health_check_url: str | None
    description: str | None
    created_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class ManagementData:
    """Every operation in force, group and route rule, read in one snapshot with the version
    it belongs to. Groups and rules are those not deleted, ordered by id; links are those whose
    rule and group are both not deleted, ordered by id; tags, group instances and group
    operations those of groups not deleted, and every logical instance, ordered by id."""

    instance_ops: frozenset[tuple[str, str, str, str]]  # (region, service, instance, operation)
    server_ops: frozenset[tuple[str, str, str]]  # (region, server, operation)
    zone_ops: frozenset[tuple[str, str, str, str]]  # (region, service, zone, operation)
    version: int
    groups: tuple[Group, ...] = ()
    route_rules: tuple[RouteRule, ...] = ()
    route_rule_groups: tuple[RouteRuleGroup, ...] = ()
    group_tags: tuple[GroupTag, ...] = ()
    group_instances: tuple[GroupInstance, ...] = ()
    group_operations: tuple[GroupOperation, ...] = ()
    service_instances: tuple[ServiceInstance, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log; `before`/`after` are the target's operations, sorted (for the
    kinds of groups, route rules, their links, group members and logical instances: [] or [the
    row as a JSON object])."""

    id: int
    created_ms: int
    actor: str
    operator_id: str
    kind: str
    region_id: str
    service_id: str | None
    instance_id: str | None
    server_id: str | None
    zone_id: str | None
    operation: str
    complete: bool
    reason: str | None
    extensions: str
    before: list[str]
    after: list[str]
    group_id: int | None = None
    route_rule_id: int | None = None
    name: str | None = None
    detail: str | None = None  # the JSON of the fields written (the kinds of r0002 and r0003)


@dataclass(frozen=True, slots=True)
class _Target:
    """What an operation applies to: its kind, its table and its ids (column -> value)."""

    kind: str
    table: Table
    ids: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Context:
    """Who asked for an operation, why and when: the audit row's own columns."""

    actor: str
    operator_id: str
    reason: str | None
    extensions: str
    now_ms: int


_METADATA: Final = MetaData()
_META: Final = Table(
    "artemis_meta", _METADATA,
    Column("id", Integer, primary_key=True), Column("version", BigInteger, nullable=False))


def _operation_table(name: str, *ids: str) -> Table:
    return Table(
        name, _METADATA,
        Column("id", BigInteger, primary_key=True),
        Column("target_key", String(64), nullable=False),
        *(Column(column, String(MAX_ID), nullable=False) for column in ids),
        Column("operation", String(MAX_NAME), nullable=False),
        Column("operator_id", String(MAX_NAME), nullable=False),
        Column("created_ms", BigInteger, nullable=False),
    )


_INSTANCE_OPS: Final = _operation_table(
    "instance_operation", "region_id", "service_id", "instance_id")
_SERVER_OPS: Final = _operation_table("server_operation", "region_id", "server_id")
_ZONE_OPS: Final = _operation_table("zone_operation", "region_id", "service_id", "zone_id")
_AUDIT: Final = Table(
    "audit_log", _METADATA,
    Column("id", BigInteger, primary_key=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("actor", String(MAX_NAME), nullable=False),
    Column("operator_id", String(MAX_NAME), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("region_id", String(MAX_ID), nullable=False),
    *(Column(column, String(MAX_ID)) for column in
      ("service_id", "instance_id", "server_id", "zone_id")),
    Column("operation", String(MAX_NAME), nullable=False),
    Column("complete", Boolean, nullable=False),
    Column("reason", String(MAX_REASON)),
    Column("extensions", Text, nullable=False),
    Column("before", Text, nullable=False),
    Column("after", Text, nullable=False),
    Column("group_id", BigInteger),
    Column("route_rule_id", BigInteger),
    Column("name", String(MAX_ID)),
    Column("detail", Text),
)
_GROUPS: Final = Table(
    "service_group", _METADATA,
    Column("id", BigInteger, primary_key=True),
    Column("target_key", String(64), nullable=False),
    *(Column(column, String(MAX_ID), nullable=False)
      for column in ("service_id", "region_id", "zone_id", "name")),
    Column("app_id", String(MAX_ID)),
    Column("description", String(MAX_DESCRIPTION)),
    Column("status", String(MAX_STATUS), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)
_RULES: Final = Table(
    "service_route_rule", _METADATA,
    Column("id", BigInteger, primary_key=True),
    Column("target_key", String(64), nullable=False),
    Column("service_id", String(MAX_ID), nullable=False),
    Column("name", String(MAX_ID), nullable=False),
    Column("description", String(MAX_DESCRIPTION)),
    Column("status", String(MAX_STATUS), nullable=False),
    Column("strategy", String(MAX_STRATEGY), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)
_LINKS: Final = Table(
    "service_route_rule_group", _METADATA,
    Column("id", BigInteger, primary_key=True),
    Column("route_rule_id", BigInteger, nullable=False),
    Column("group_id", BigInteger, nullable=False),
    Column("weight", Integer),
    Column("unreleased_weight", Integer),
)


def _member_table(name: str, *columns: Column[Any]) -> Table:
    return Table(
        name, _METADATA,
        Column("id", BigInteger, primary_key=True),
        Column("target_key", String(64), nullable=False),
        Column("group_id", BigInteger, nullable=False),
        *columns,
    )


_GROUP_TAGS: Final = _member_table(
    "service_group_tag", Column("tag", String(MAX_ID), nullable=False),
    Column("value", String(MAX_TAG_VALUE), nullable=False))
_GROUP_INSTANCES: Final = _member_table(
    "service_group_instance", Column("instance_id", String(MAX_ID), nullable=False))
_GROUP_OPERATIONS: Final = _member_table(
    "service_group_operation", Column("operation", String(MAX_NAME), nullable=False))
_SERVICE_INSTANCES: Final = Table(
    "service_instance", _METADATA,
    Column("id", BigInteger, primary_key=True),
    Column("target_key", String(64), nullable=False),
    Column("service_id", String(MAX_ID), nullable=False),
    Column("instance_id", String(MAX_ID), nullable=False),
    Column("ip", String(MAX_ID)),
    Column("machine_name", String(MAX_ID)),
    Column("metadata", Text),
    Column("port", Integer, nullable=False),
    Column("protocol", String(MAX_PROTOCOL)),
    Column("region_id", String(MAX_ID), nullable=False),
    Column("zone_id", String(MAX_ID)),
    Column("group_id", String(MAX_ID)),
    Column("health_check_url", String(MAX_URL)),
    Column("url", String(MAX_URL), nullable=False),
    Column("description", String(MAX_DESCRIPTION)),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)


@dataclass(frozen=True, slots=True)
class _Entity:
    """A kind of row written by `upsert_*`: its table, key columns (hashed into target_key),
    the fields an update rewrites, and the audit column that names the row's id."""

    kind: str
    table: Table
    keys: tuple[str, ...]
    fields: tuple[str, ...]
    audit_id: str
    filters: dict[str, str]  # filter name -> column


_GROUP: Final = _Entity(
    KIND_GROUP, _GROUPS, ("service_id", "region_id", "zone_id", "name"),
    ("app_id", "description", "status"), "group_id",
    {"group_id": "id", **{name: name for name in (
        "service_id", "region_id", "zone_id", "name", "app_id", "status")}})
_RULE: Final = _Entity(
    KIND_ROUTE_RULE, _RULES, ("service_id", "name"), ("description", "status", "strategy"),
    "route_rule_id", {"route_rule_id": "id", "service_id": "service_id", "name": "name",
                      "status": "status"})
_LINK_FILTERS: Final = {"route_rule_group_id": "id", "route_rule_id": "route_rule_id",
                        "group_id": "group_id"}


@dataclass(frozen=True, slots=True)
class _Member:
    """A kind of a group's member: its table, its text key (hashed with the group id into
    target_key), the fields an upsert rewrites, and the audit column that names the key (None:
    the audit row's `operation`)."""

    kind: str
    table: Table
    key: str
    limit: int
    fields: tuple[str, ...]
    audit_column: str | None


_TAG: Final = _Member(KIND_GROUP_TAG, _GROUP_TAGS, "tag", MAX_ID, ("value",), "name")
_GROUP_INSTANCE: Final = _Member(KIND_GROUP_INSTANCE, _GROUP_INSTANCES, "instance_id", MAX_ID,
                                 (), "instance_id")
_GROUP_OPERATION: Final = _Member(KIND_GROUP_OPERATION, _GROUP_OPERATIONS, "operation",
                                  MAX_NAME, (), None)
_SERVICE_INSTANCE_KEYS: Final = ("service_id", "instance_id")
_SERVICE_INSTANCE_FIELDS: Final = (
    "url", "ip", "machine_name", "metadata", "port", "protocol", "region_id", "zone_id",
    "group_id", "health_check_url", "description")
_SERVICE_INSTANCE_FILTERS: Final = {"service_id": "service_id", "instance_id": "instance_id"}
_GROUP_INSTANCE_FILTERS: Final = {"group_id": "group_id", "instance_id": "instance_id"}


def async_url(url: str) -> str:
    """`url` with the async driver of its database named (see the rules); StoreError if none."""
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError):
        raise StoreValueError("the database URL cannot be parsed") from None
    if "+" not in parsed.drivername:
        driver = _DRIVERS.get(parsed.drivername)
        if driver is None:
            raise StoreValueError(
                f"unsupported database URL scheme {parsed.drivername!r}: "
                "use sqlite, mysql, mariadb or postgresql") from None
        parsed = parsed.set(drivername=driver)
        if parsed.get_backend_name() in _MYSQL and "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StoreValueError("an in-memory SQLite database cannot be shared: name a file")
    return parsed.render_as_string(hide_password=False)


def target_key(*ids: str) -> str:
    """The unique key of an operation's target: SHA-256 (hex) of its ids as a JSON list."""
    encoded = json.dumps(list(ids), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def _check_text(name: str, value: str, limit: int) -> None:
    if not isinstance(value, str):
        raise StoreValueError(f"{name} must be text, not {type(value).__name__}")
    if len(value) > limit:
        raise StoreValueError(f"{name} is longer than {limit} characters")
    if "\x00" in value:
        raise StoreValueError(f"{name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise StoreValueError(f"{name} is not valid Unicode text") from None


def _describe(error: BaseException) -> str:
    """A short message for a database error: the driver's own words, never parameters."""
    cause = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    words = str(cause).strip().splitlines()
    message = f"{type(cause).__name__}: {words[0] if words else ''}".rstrip(": ")
    return message[:_MESSAGE_LIMIT]


def _unavailable(error: Exception) -> bool:
    """Whether a database error means "cannot reach it now" rather than "this call is wrong"."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (
        sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
        sa_exc.DisconnectionError, OSError))


def _decode_operations(column: str, value: str) -> list[str]:
    try:
        decoded = json.loads(value)
    except ValueError:
        decoded = None
    if not isinstance(decoded, list) or not all(isinstance(item, str) for item in decoded):
        raise StoreError(f"audit_log.{column} does not hold a JSON list of operations")
    return decoded


def _entry(row: RowMapping) -> AuditEntry:
    values = dict(row)
    values["before"] = _decode_operations("before", row["before"])
    values["after"] = _decode_operations("after", row["after"])
    values["complete"] = bool(row["complete"])
    return AuditEntry(**values)


def _conditions(filters: Mapping[str, str | int | None]) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for name, value in filters.items():
        if name not in AUDIT_FILTERS:
            raise StoreValueError(f"the audit log cannot be filtered on {name!r}")
        wanted: type = bool if name == "complete" else int if name in _INT_FILTERS else str
        if value is not None and type(value) is not wanted:
            raise StoreValueError(f"the audit filter {name} takes {wanted.__name__} or None")
        column = _AUDIT.c[name]
        if isinstance(value, int) and not isinstance(value, bool) and not (
                -MAX_ROW_ID - 1 <= value <= MAX_ROW_ID):
            conditions.append(false())  # no BIGINT holds it
            continue
        conditions.append(column.is_(None) if value is None else column == value)
    return conditions


def _check_context(context: _Context) -> None:
    _check_text("operator_id", context.operator_id, MAX_NAME)
    _check_text("actor", context.actor, MAX_NAME)
    _check_text("extensions", context.extensions, MAX_EXTENSIONS)
    if context.reason is not None:
        _check_text("reason", context.reason, MAX_REASON)


def _write_context(actor: str, operator_id: str, reason: str | None, extensions: str,
                   now_ms: int) -> _Context:
    """The audit context of a write of groups, route rules or links, once it fits."""
    context = _Context(actor, operator_id, reason, extensions, now_ms)
    _check_context(context)
    if type(now_ms) is not int:
        raise StoreValueError("now_ms must be an int")
    return context


def _check_optional(name: str, value: str | None, limit: int) -> None:
    if value is not None:
        _check_text(name, value, limit)


def _check_status(status: str) -> None:
    _check_text("status", status, MAX_STATUS)
    if status not in STATUSES:
        raise StoreValueError(f"status must be active or inactive, not {status!r}")


def _check_group(spec: GroupSpec) -> dict[str, Any]:
    """The columns of a group to write, once its values fit."""
    if not isinstance(spec, GroupSpec):
        raise StoreValueError(f"a group must be a GroupSpec, not {type(spec).__name__}")
    for name in _GROUP.keys:
        _check_text(name, getattr(spec, name), MAX_ID)
    _check_optional("app_id", spec.app_id, MAX_ID)
    _check_optional("description", spec.description, MAX_DESCRIPTION)
    _check_status(spec.status)
    return asdict(spec)


def _check_rule(spec: RouteRuleSpec) -> dict[str, Any]:
    """The columns of a route rule to write, once its values fit."""
    if not isinstance(spec, RouteRuleSpec):
        raise StoreValueError(f"a route rule must be a RouteRuleSpec, not {type(spec).__name__}")
    for name in _RULE.keys:
        _check_text(name, getattr(spec, name), MAX_ID)
    _check_optional("description", spec.description, MAX_DESCRIPTION)
    _check_status(spec.status)
    _check_text("strategy", spec.strategy, MAX_STRATEGY)
    return asdict(spec)


def _check_row_id(name: str, value: object) -> int:
    if type(value) is not int:
        raise StoreValueError(f"{name} must be an int, not {type(value).__name__}")
    return value


def _check_weight(value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_WEIGHT:
        shown = repr(value) if type(value) is int else type(value).__name__
        raise StoreValueError(f"a weight must be an int from 0 to {MAX_WEIGHT}, not {shown}")
    return value


def _check_pairs(items: Iterable[object], size: int) -> list[tuple[Any, ...]]:
    """Route rule links as tuples of `size` items: (route_rule_id, group_id[, weight])."""
    checked: list[tuple[Any, ...]] = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != size:
            raise StoreValueError(f"a route rule group must be a tuple of {size} values")
        _check_row_id("route_rule_id", item[0])
        _check_row_id("group_id", item[1])
        if size == 3:
            _check_weight(item[2])
        checked.append(item)
    return checked


def _check_ids(name: str, ids: Iterable[object]) -> list[int]:
    """Row ids, each once, in the order given; ids no BIGINT holds cannot exist: dropped."""
    found: dict[int, None] = {}
    for value in ids:
        row_id = _check_row_id(name, value)
        if -MAX_ROW_ID - 1 <= row_id <= MAX_ROW_ID:
            found[row_id] = None
    return list(found)


def _check_members(member: _Member, items: Iterable[object], size: int,
                   ) -> list[dict[str, Any]]:
    """A group's members as columns: tuples of `size` items (group_id, key[, value])."""
    what = member.kind.replace("-", " ")
    checked: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != size:
            raise StoreValueError(f"a {what} must be a tuple of {size} values")
        values = {"group_id": _check_row_id("group_id", item[0]), member.key: item[1]}
        _check_text(member.key, item[1], member.limit)
        if size == 3:
            _check_text("value", item[2], MAX_TAG_VALUE)
            values["value"] = item[2]
        checked.append(values)
    return checked


def _check_metadata(metadata: object) -> dict[str, str] | None:
    """A copy of a logical instance's metadata, once it fits."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise StoreValueError(f"metadata must be a mapping, not {type(metadata).__name__}")
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise StoreValueError(f"metadata holds more than {MAX_METADATA_ENTRIES} entries")
    for key, value in metadata.items():
        _check_text("a metadata key", key, MAX_METADATA_TEXT)
        _check_text("a metadata value", value, MAX_METADATA_TEXT)
    return dict(metadata)


def _check_service_instance(spec: ServiceInstanceSpec) -> dict[str, Any]:
    """The columns of a logical instance to write, once its values fit."""
    if not isinstance(spec, ServiceInstanceSpec):
        raise StoreValueError(
            f"a logical instance must be a ServiceInstanceSpec, not {type(spec).__name__}")
    for name in ("service_id", "instance_id", "region_id"):
        _check_text(name, getattr(spec, name), MAX_ID)
    _check_text("url", spec.url, MAX_URL)
    for name in ("ip", "machine_name", "zone_id", "group_id"):
        _check_optional(name, getattr(spec, name), MAX_ID)
    _check_optional("protocol", spec.protocol, MAX_PROTOCOL)
    _check_optional("health_check_url", spec.health_check_url, MAX_URL)
    _check_optional("description", spec.description, MAX_DESCRIPTION)
    if type(spec.port) is not int or not 0 <= spec.port <= MAX_PORT:
        shown = repr(spec.port) if type(spec.port) is int else type(spec.port).__name__
        raise StoreValueError(f"port must be an int from 0 to {MAX_PORT}, not {shown}")
    values = {name: getattr(spec, name)
              for name in (*_SERVICE_INSTANCE_KEYS, *_SERVICE_INSTANCE_FIELDS)}
    values["metadata"] = _check_metadata(spec.metadata)
    return values


def _chunks(values: Sequence[_T]) -> Iterable[Sequence[_T]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def _filter(table: Table, columns: Mapping[str, str], what: str,
            filters: Mapping[str, str | int | None]) -> list[ColumnElement[bool]]:
    """Equality conditions on `table` (None: the column is empty) of a `what` read."""
    conditions: list[ColumnElement[bool]] = []
    for name, value in filters.items():
        if name not in columns:
            raise StoreValueError(f"{what} cannot be filtered on {name!r}")
        column = table.c[columns[name]]
        if value is None:
            conditions.append(column.is_(None))
        elif isinstance(column.type, BigInteger):
            if type(value) is not int:
                raise StoreValueError(f"the {what} filter {name} takes int or None")
            in_range = -MAX_ROW_ID - 1 <= value <= MAX_ROW_ID
            conditions.append(column == value if in_range else false())
        else:
            if type(value) is not str:
                raise StoreValueError(f"the {what} filter {name} takes str or None")
            _check_text(name, value, MAX_EXTENSIONS)
            conditions.append(column == value)
    return conditions


def _exact(rows: Iterable[Mapping[Any, Any]], columns: Mapping[str, str],
           filters: Mapping[str, object]) -> list[dict[str, Any]]:
    """The rows whose text columns equal the text filters exactly (MariaDB's collation ignores
    trailing spaces when it compares)."""
    wanted = {columns[name]: value for name, value in filters.items() if isinstance(value, str)}
    return [dict(row) for row in rows
            if all(row[column] == value for column, value in wanted.items())]


def _row_json(row: Mapping[str, Any] | None) -> list[str]:
    """An audit row's before/after of a group, rule or link: [] or [the row as JSON]."""
    if row is None:
        return []
    values = {name: bool(value) if name == "deleted" else value
              for name, value in row.items() if name != "target_key"}
    return [json.dumps(values, ensure_ascii=False, sort_keys=True)]


def _audit_row(context: _Context, kind: str, operation: str, before: Mapping[str, Any] | None,
               after: Mapping[str, Any] | None, written: Mapping[str, Any], *,
               service_id: str | None, region_id: str = "", zone_id: str | None = None,
               group_id: int | None = None, route_rule_id: int | None = None,
               name: str | None = None, instance_id: str | None = None,
               complete: bool | None = None) -> dict[str, Any]:
    return {
        "created_ms": context.now_ms, "actor": context.actor,
        "operator_id": context.operator_id, "kind": kind, "region_id": region_id,
        "service_id": service_id, "instance_id": instance_id, "server_id": None,
        "zone_id": zone_id, "operation": operation,
        "complete": operation == "delete" if complete is None else complete,
        "reason": context.reason,
        "extensions": context.extensions, "before": _encode(_row_json(before)),
        "after": _encode(_row_json(after)), "group_id": group_id,
        "route_rule_id": route_rule_id, "name": name,
        "detail": json.dumps(dict(written), ensure_ascii=False, sort_keys=True)}


def _entity_audit(entity: _Entity, context: _Context, operation: str,
                  before: Mapping[str, Any] | None, after: Mapping[str, Any],
                  written: Mapping[str, Any]) -> dict[str, Any]:
    ids = {entity.audit_id: after["id"]}
    if entity is _GROUP:
        ids |= {"region_id": after["region_id"], "zone_id": after["zone_id"]}
    return _audit_row(context, entity.kind, operation, before, after, written,
                      service_id=after["service_id"], name=after["name"], **ids)


def _link_audit(context: _Context, operation: str, before: Mapping[str, Any] | None,
                after: Mapping[str, Any] | None, written: Mapping[str, Any],
                service_id: str | None) -> dict[str, Any]:
    row: Mapping[str, Any] = after or before or {}
    return _audit_row(context, KIND_ROUTE_RULE_GROUP, operation, before, after, written,
                      service_id=service_id, group_id=row["group_id"],
                      route_rule_id=row["route_rule_id"])


def _member_audit(member: _Member, context: _Context, operation: str,
                  before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
                  written: Mapping[str, Any], group_id: int, key: str,
                  groups: Mapping[int, Mapping[str, Any]], complete: bool | None = None,
                  ) -> dict[str, Any]:
    """The audit row of a write of a group's member; `groups` has the group's row (its
    service, region and zone) unless the group is gone."""
    group: Mapping[str, Any] = groups.get(group_id, {})
    return _audit_row(context, member.kind, operation, before, after, written,
                      service_id=group.get("service_id"), region_id=group.get("region_id", ""),
                      zone_id=group.get("zone_id"), group_id=group_id, complete=complete,
                      name=key if member.audit_column == "name" else None,
                      instance_id=key if member.audit_column == "instance_id" else None)


def _service_instance_audit(context: _Context, operation: str, before: Mapping[str, Any] | None,
                            after: Mapping[str, Any] | None, written: Mapping[str, Any],
                            ) -> dict[str, Any]:
    row: Mapping[str, Any] = after or before or {}
    return _audit_row(context, KIND_SERVICE_INSTANCE, operation, before, after, written,
                      service_id=row["service_id"], instance_id=row["instance_id"],
                      region_id=row["region_id"], zone_id=row["zone_id"])


def _group(row: Mapping[Any, Any]) -> Group:
    return Group(**{name: row[name] for name in Group.__dataclass_fields__})


def _rule(row: Mapping[Any, Any]) -> RouteRule:
    return RouteRule(**{name: row[name] for name in RouteRule.__dataclass_fields__})


def _link(row: Mapping[Any, Any]) -> RouteRuleGroup:
    return RouteRuleGroup(**{name: row[name] for name in RouteRuleGroup.__dataclass_fields__})


def _tag(row: Mapping[Any, Any]) -> GroupTag:
    return GroupTag(row["id"], row["group_id"], row["tag"], row["value"])


def _group_instance(row: Mapping[Any, Any]) -> GroupInstance:
    return GroupInstance(row["id"], row["group_id"], row["instance_id"])


def _group_operation(row: Mapping[Any, Any]) -> GroupOperation:
    return GroupOperation(row["id"], row["group_id"], row["operation"])


def _service_instance(row: Mapping[Any, Any]) -> ServiceInstance:
    """A logical instance of a row whose metadata is decoded already (see _instance_row)."""
    values = {name: row[name] for name in ServiceInstance.__dataclass_fields__}
    if values["metadata"] is not None:
        values["metadata"] = dict(values["metadata"])
    return ServiceInstance(**values)


def _decode_metadata(value: str | None) -> dict[str, str] | None:
    if value is None:
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        decoded = None
    if not isinstance(decoded, dict) or not all(
            isinstance(key, str) and isinstance(item, str) for key, item in decoded.items()):
        raise StoreError("service_instance.metadata does not hold a JSON object of text")
    return decoded


def _encode_metadata(metadata: Mapping[str, str]) -> str:
    return json.dumps(dict(metadata), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _instance_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A row of service_instance with its metadata decoded."""
    values = dict(row)
    values["metadata"] = _decode_metadata(values["metadata"])
    return values


def _stored(values: Mapping[str, Any]) -> dict[str, Any]:
    """Columns of service_instance to write: the metadata as JSON text."""
    stored = dict(values)
    if stored.get("metadata") is not None:
        stored["metadata"] = _encode_metadata(stored["metadata"])
    return stored


def _inserted_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None or key[0] is None:
        raise StoreError("the database did not say the id of an inserted row")
    return int(key[0])


async def _insert_audit(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await connection.execute(insert(_AUDIT), rows)


async def _rows_by_id(connection: AsyncConnection, table: Table, ids: Sequence[int],
                      *conditions: ColumnElement[bool]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        rows = await connection.execute(select(table).where(table.c.id.in_(chunk), *conditions))
        found.update((row["id"], dict(row)) for row in rows.mappings())
    return found


async def _upsert(connection: AsyncConnection, entity: _Entity, items: Sequence[dict[str, Any]],
                  update_fields: bool, now_ms: int,
                  ) -> list[tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]]:
    """Insert each missing row, revive each deleted one and, with `update_fields`, write the
    new fields of the rest; (before, after, fields written) of each item, in order."""
    table = entity.table
    keys = [target_key(*(item[name] for name in entity.keys)) for item in items]
    current: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(list(dict.fromkeys(keys))):
        rows = await connection.execute(select(table).where(table.c.target_key.in_(chunk)))
        current.update((row["target_key"], dict(row)) for row in rows.mappings())
    done: list[tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]] = []
    for key, item in zip(keys, items, strict=True):
        before = current.get(key)
        if before is None:
            written = {**item, "deleted": False}
            inserted = await connection.execute(insert(table).values(
                target_key=key, **written, created_ms=now_ms, updated_ms=now_ms))
            after = {"id": _inserted_id(inserted), "target_key": key, **written,
                     "created_ms": now_ms, "updated_ms": now_ms}
        else:
            written = {"deleted": False} if before["deleted"] else {}
            if update_fields:
                written |= {name: item[name] for name in entity.fields
                            if before[name] != item[name]}
            after = before
            if written:
                await connection.execute(update(table).where(table.c.id == before["id"])
                                         .values(**written, updated_ms=now_ms))
                after = {**before, **written, "updated_ms": now_ms}
        current[key] = after
        done.append((before, after, written))
    return done


async def _links(connection: AsyncConnection, rule_ids: Iterable[int],
                 ) -> dict[tuple[int, int], dict[str, Any]]:
    """Every link of the given route rules, by (route_rule_id, group_id)."""
    found: dict[tuple[int, int], dict[str, Any]] = {}
    for chunk in _chunks(list(dict.fromkeys(rule_ids))):
        rows = await connection.execute(select(_LINKS).where(_LINKS.c.route_rule_id.in_(chunk)))
        found.update(((row["route_rule_id"], row["group_id"]), dict(row))
                     for row in rows.mappings())
    return found


async def _set_links(connection: AsyncConnection, items: Sequence[tuple[int, int, int]],
                     ) -> list[tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]]:
    """Set each link's unreleased weight, inserting the missing ones (weight None);
    (before, after, fields written) of each item, in order."""
    current = await _links(connection, (rule_id for rule_id, _, _ in items))
    done: list[tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]] = []
    for rule_id, group_id, weight in items:
        before = current.get((rule_id, group_id))
        written: dict[str, Any]
        if before is None:
            written = {"route_rule_id": rule_id, "group_id": group_id, "weight": None,
                       "unreleased_weight": weight}
            inserted = await connection.execute(insert(_LINKS).values(**written))
            after = {"id": _inserted_id(inserted), **written}
        elif before["unreleased_weight"] != weight:
            written = {"unreleased_weight": weight}
            await connection.execute(
                update(_LINKS).where(_LINKS.c.id == before["id"]).values(**written))
            after = {**before, **written}
        else:
            written, after = {}, before
        current[(rule_id, group_id)] = after
        done.append((before, after, written))
    return done


async def _rule_services(connection: AsyncConnection, rule_ids: Iterable[int]) -> dict[int, str]:
    """The service of each route rule (deleted or not), by id."""
    rows = await _rows_by_id(connection, _RULES, list(dict.fromkeys(rule_ids)))
    return {row_id: row["service_id"] for row_id, row in rows.items()}


def _member_key(member: _Member, item: Mapping[str, Any]) -> str:
    return target_key(str(item["group_id"]), item[member.key])


async def _groups_by_id(connection: AsyncConnection, group_ids: Iterable[int], *,
                        live: bool) -> dict[int, dict[str, Any]]:
    """The groups of the given ids by id (deleted ones too unless `live`); with `live`, a
    StoreValueError names the first id of no group or of a deleted one."""
    ids = list(dict.fromkeys(group_ids))
    in_range = [row_id for row_id in ids if -MAX_ROW_ID - 1 <= row_id <= MAX_ROW_ID]
    conditions = [_GROUPS.c.deleted.is_(False)] if live else []
    found = await _rows_by_id(connection, _GROUPS, in_range, *conditions)
    if live:
        for row_id in ids:
            if row_id not in found:
                raise StoreValueError(f"group {row_id} does not exist or is deleted")
    return found


async def _members_by_key(connection: AsyncConnection, member: _Member,
                          keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    table = member.table
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(list(dict.fromkeys(keys))):
        rows = await connection.execute(select(table).where(table.c.target_key.in_(chunk)))
        found.update((row["target_key"], dict(row)) for row in rows.mappings())
    return found


async def _put_members(connection: AsyncConnection, member: _Member,
                       items: Sequence[dict[str, Any]],
                       ) -> list[tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]]:
    """Insert each missing member and give the others the new fields (tags: the value);
    (before, after, fields written) of each item, in order."""
    table = member.table
    keys = [_member_key(member, item) for item in items]
    current = await _members_by_key(connection, member, keys)
    done: list[tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]] = []
    for key, item in zip(keys, items, strict=True):
        before = current.get(key)
        written: dict[str, Any]
        if before is None:
            written = dict(item)
            inserted = await connection.execute(insert(table).values(target_key=key, **written))
            after = {"id": _inserted_id(inserted), "target_key": key, **written}
        else:
            written = {name: item[name] for name in member.fields if before[name] != item[name]}
            after = before
            if written:
                await connection.execute(
                    update(table).where(table.c.id == before["id"]).values(**written))
                after = {**before, **written}
        current[key] = after
        done.append((before, after, written))
    return done


async def _delete_rows(connection: AsyncConnection, table: Table, ids: Sequence[int]) -> None:
    for chunk in _chunks(ids):
        await connection.execute(delete(table).where(table.c.id.in_(chunk)))


async def _put_service_instances(
        connection: AsyncConnection, items: Sequence[dict[str, Any]], now_ms: int,
) -> list[tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]]:
    """Insert each missing logical instance and rewrite the fields that differ of the others;
    (before, after, fields written) of each item, in order."""
    table = _SERVICE_INSTANCES
    keys = [target_key(*(item[name] for name in _SERVICE_INSTANCE_KEYS)) for item in items]
    current: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(list(dict.fromkeys(keys))):
        rows = await connection.execute(select(table).where(table.c.target_key.in_(chunk)))
        current.update((row["target_key"], _instance_row(row)) for row in rows.mappings())
    done: list[tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]] = []
    for key, item in zip(keys, items, strict=True):
        before = current.get(key)
        written: dict[str, Any]
        if before is None:
            written = dict(item)
            inserted = await connection.execute(insert(table).values(
                target_key=key, **_stored(written), created_ms=now_ms, updated_ms=now_ms))
            after = {"id": _inserted_id(inserted), "target_key": key, **written,
                     "created_ms": now_ms, "updated_ms": now_ms}
        else:
            written = {name: item[name] for name in _SERVICE_INSTANCE_FIELDS
                       if before[name] != item[name]}
            after = before
            if written:
                await connection.execute(update(table).where(table.c.id == before["id"])
                                         .values(**_stored(written), updated_ms=now_ms))
                after = {**before, **written, "updated_ms": now_ms}
        current[key] = after
        done.append((before, after, written))
    return done


async def _live_members(connection: AsyncConnection, table: Table) -> list[RowMapping]:
    """Every row of a member table whose group is not deleted, by id."""
    rows = await connection.execute(
        select(table).join(_GROUPS, _GROUPS.c.id == table.c.group_id)
        .where(_GROUPS.c.deleted.is_(False)).order_by(table.c.id))
    return list(rows.mappings())


def _migrate(connection: Connection) -> None:
    """Upgrade the schema to head under the migration lock (runs inside `run_sync`)."""
    backend = connection.dialect.name
    if backend == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    elif backend in _MYSQL:
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"), {"name": _MIGRATION_LOCK, "wait": 60}).scalar()
        if got != 1:
            raise StoreUnavailable("another node holds the migration lock for over 60 s")
    try:
        config = Config()
        config.set_main_option(
            "script_location", str(resources.files("artemis.server.store") / "migrations"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    finally:
        if backend in _MYSQL:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _MIGRATION_LOCK})


def _local_migration_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _LOCAL_MIGRATIONS.get(loop)
    if lock is None:
        lock = _LOCAL_MIGRATIONS[loop] = asyncio.Lock()
    return lock


def _sqlite_transactions(engine: AsyncEngine) -> None:
    """Make SQLite transactions real: BEGIN at the first statement of any kind (the sqlite3
    module's legacy mode begins only before DML, so reads would not share a snapshot), and
    write-ahead logging so reads never wait for a writer. A connection's `sqlite_begin` option
    replaces BEGIN (migrations use BEGIN IMMEDIATE)."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0] != "wal":
                # the mode is kept in the file; if another connection holds a lock right now,
                # the next connection switches it
                with contextlib.suppress(sqlite3.OperationalError):
                    cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()

    def on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get("sqlite_begin", "BEGIN"))

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)


def _connect_args(url: URL, timeout: float) -> dict[str, Any]:
    """The driver's own connection timeout (the call's asyncio timeout is the real bound)."""
    driver = url.get_driver_name()
    if driver == "asyncpg":
        return {"timeout": timeout}
    if driver in ("asyncmy", "aiomysql"):
        return {"connect_timeout": max(1, round(timeout))}
    if driver == "aiosqlite":
        return {"timeout": timeout}  # how long a write waits for another writer's lock
    return {}


def _sqlite_file(url: URL) -> Path | None:
    """The absolute path of a SQLite database's file (None: not SQLite, or a URI filename)."""
    if url.get_backend_name() != "sqlite" or "uri" in url.query or not url.database:
        return None
    return Path(os.path.abspath(url.database))


def _file_id(path: Path) -> tuple[int, int]:
    found = os.stat(path)
    return found.st_dev, found.st_ino


_SIDECARS: Final = ("-wal", "-shm")


def _sidecar_ids(path: Path) -> dict[str, tuple[int, int]]:
    """The identity of each -wal and -shm file of `path` there is."""
    found = {}
    for suffix in _SIDECARS:
        with contextlib.suppress(OSError):
            found[suffix] = _file_id(path.with_name(path.name + suffix))
    return found


def _drop_sidecars(path: Path, sidecars: Mapping[str, tuple[int, int]]) -> None:
    """Remove the -wal and -shm files of `path` that are still those of `sidecars`."""
    for suffix, identity in sidecars.items():
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(OSError):
            if _file_id(side) == identity:
                side.unlink()


def _rescue_copies(path: Path) -> list[Path]:
    """The rescue copies of `path` beside it, oldest first (none if its folder is missing)."""
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    found: list[tuple[int, int, str]] = []
    for name in names:
        matched = (_RESCUED.fullmatch(name, len(path.name))
                   if name.startswith(path.name) else None)
        if matched is not None:
            found.append((int(matched[1]), int(matched[2]), name))
    return [path.parent / name for _, _, name in sorted(found)]


def _restore(path: Path) -> Path | None:
    """Put the newest rescue copy of `path` in its place when no file is there; the copy used
    (gone now), or None."""
    if os.path.lexists(path):
        return None
    copies = _rescue_copies(path)
    if not copies:
        return None
    newest = copies[-1]
    try:
        os.link(newest, path)
    except FileExistsError:
        return None  # another node put a file there first: use it
    except OSError:  # a file system without hard links
        if os.path.lexists(path):
            return None
        os.rename(newest, path)
        return newest
    os.unlink(newest)
    return newest


def _hold(path: Path) -> sqlite3.Connection:
    """A plain connection on the existing file `path`, with its -wal and -shm files open too
    (a read opens them), so the database stays readable if the path is removed or replaced."""
    holder = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, check_same_thread=False,
                             isolation_level=None)
    try:
        holder.execute("SELECT version FROM artemis_meta").fetchall()
    except BaseException:
        holder.close()
        raise
    return holder


def _copy(holder: sqlite3.Connection, path: Path) -> Path:
    """Copy the database `holder` has open to a new rescue copy of `path`; the copy's path."""
    stamp = f"{time.time_ns() // 1_000_000}-{os.getpid()}"
    partial = path.with_name(f"{path.name}.rescuing-{stamp}")
    target = sqlite3.connect(partial)
    try:
        holder.backup(target)
    except BaseException:
        target.close()
        partial.unlink(missing_ok=True)
        raise
    target.close()
    final = path.with_name(f"{path.name}.rescued-{stamp}")
    os.rename(partial, final)
    return final


class ManagementStore:
    """The management data of every node, in one SQL database (see the module's rules)."""

    def __init__(self, url: str, *, pool_size: int = 5, timeout: float = 2.0,
                 migration_timeout: float = 60.0) -> None:
        if pool_size < 1:
            raise StoreValueError("pool_size must be at least 1")
        if timeout <= 0 or migration_timeout <= 0:
            raise StoreValueError("timeouts must be positive")
        self._url = make_url(async_url(url))
        self._pool_size = pool_size
        self._timeout = timeout
        self._migration_timeout = migration_timeout
        self._engine: AsyncEngine | None = None
        self._reader: AsyncEngine | None = None
        self._file = _sqlite_file(self._url)
        self._holder: sqlite3.Connection | None = None  # on the SQLite file opened
        self._identity: tuple[int, int] | None = None  # (device, inode) of that file
        self._sidecars: dict[str, tuple[int, int]] = {}  # "-wal"/"-shm" -> (device, inode)
        self._high = 0  # the highest version seen since open()
        self._lost: str | None = None  # why every call is refused (see the rules)
        self._file_lost = False  # the SQLite file was removed or replaced
        self._rescued: Path | None = None
        self._rescuing = asyncio.Lock()
        self.restored: Path | None = None  # the rescue copy an open() put in the file's place
        self.rescue_copies: tuple[Path, ...] = ()  # those open() left beside the file

    def __repr__(self) -> str:
        state = ("lost" if self._lost is not None else "open" if self._engine is not None
                 else "closed")
        return (f"ManagementStore({self._url.render_as_string(hide_password=True)!r}, "
                f"{state}, timeout={self._timeout})")

    @property
    def lost(self) -> str | None:
        """Why every call is refused since the store lost its database (None: it has not)."""
        return self._lost

    @property
    def backend(self) -> str:
        """The database's kind: sqlite, mysql, mariadb or postgresql."""
        return self._url.get_backend_name()

    async def __aenter__(self) -> ManagementStore:
        await self.open()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect and migrate the schema to head; a store already open stays as it is. A
        SQLite file that is missing is first restored from its newest rescue copy, if any."""
        if self._engine is not None:
            return
        path = self._file
        if path is not None:
            async with self._guard("restore"):
                restored = _restore(path)  # a few calls on one folder: not worth a thread
            self.restored = restored or self.restored
        engine = self._create_engine()
        holder = None
        try:
            async with self._guard("open", self._timeout), engine.connect() as connection:
                await connection.execute(select(1))
            async with (self._guard("migrate", self._migration_timeout),
                        _local_migration_lock(), engine.connect() as conn):
                if self.backend == "sqlite":
                    await conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
                await conn.run_sync(_migrate)
                await conn.commit()
            if path is not None:
                async with self._guard("open"):
                    holder = await asyncio.to_thread(_hold, path)
                    identity = _file_id(path)
                    sidecars = _sidecar_ids(path)
                    copies = tuple(_rescue_copies(path))
        except BaseException:
            if holder is not None:
                holder.close()
            await engine.dispose()
            raise
        if path is not None:
            self._holder, self._identity, self.rescue_copies = holder, identity, copies
            self._sidecars = sidecars
        self._high, self._lost, self._file_lost, self._rescued = 0, None, False, None
        self._engine = engine
        if self.backend == "sqlite":
            self._reader = engine
        else:
            self._reader = engine.execution_options(isolation_level="REPEATABLE READ")

    async def close(self) -> None:
        """Close every connection; the store can be opened again."""
        engine, self._engine, self._reader = self._engine, None, None
        holder, self._holder, self._identity = self._holder, None, None
        self._sidecars = {}
        if holder is not None:
            holder.close()
        if engine is not None:
            await engine.dispose()

    async def rescue(self) -> Path | None:
        """Let go of a lost database (nothing if the store is not lost): copy what a removed or
        replaced SQLite file held to a rescue copy beside the path (see the rules), then close
        every connection and remove the -wal and -shm files that file left at the path, so that
        nobody opening the path applies them to another file. The copy's path (the same on
        later calls; from then on StoreLost names it), or None when there is nothing to copy.
        StoreError if the copy cannot be written: the rest is done all the same."""
        async with self._rescuing:
            if self._lost is None or (self._engine is None and self._holder is None):
                return self._rescued
            holder, path, sidecars = self._holder, self._file, self._sidecars
            error = None
            if holder is not None and path is not None and self._file_lost:
                try:
                    self._rescued = await asyncio.to_thread(_copy, holder, path)
                except (OSError, sqlite3.Error) as exc:
                    error = StoreError(f"cannot save a rescue copy beside {path}: "
                                       f"{_describe(exc)}")
                else:
                    self._lost = (f"{self._lost}; what it held is saved in {self._rescued}, "
                                  "which a node that starts with no file there puts back")
            await self.close()
            if path is not None and self._file_lost:
                _drop_sidecars(path, sidecars)
            if error is not None:
                raise error
            return self._rescued

    async def version(self) -> int:
        """The management version: bumped by every write, in the write's own transaction."""
        floor = self._high
        async with self._guard("version"), self._writer().connect() as connection:
            found = await connection.scalar(select(_META.c.version).where(_META.c.id == 1))
        return self._expect(found, floor)

    async def load(self) -> ManagementData:
        """Every operation in force, group, route rule, link, group member and logical instance
        (see ManagementData) and the version, read in one snapshot."""
        floor = self._high
        async with self._guard("load"), self._snapshot() as connection:
            found = await connection.scalar(select(_META.c.version).where(_META.c.id == 1))
            instances = await connection.execute(select(
                _INSTANCE_OPS.c.region_id, _INSTANCE_OPS.c.service_id,
                _INSTANCE_OPS.c.instance_id, _INSTANCE_OPS.c.operation))
            instance_ops = frozenset((a, b, c, d) for a, b, c, d in instances)
            servers = await connection.execute(select(
                _SERVER_OPS.c.region_id, _SERVER_OPS.c.server_id, _SERVER_OPS.c.operation))
            server_ops = frozenset((a, b, c) for a, b, c in servers)
            zones = await connection.execute(select(
                _ZONE_OPS.c.region_id, _ZONE_OPS.c.service_id, _ZONE_OPS.c.zone_id,
                _ZONE_OPS.c.operation))
            zone_ops = frozenset((a, b, c, d) for a, b, c, d in zones)
            groups = await connection.execute(
                select(_GROUPS).where(_GROUPS.c.deleted.is_(False)).order_by(_GROUPS.c.id))
            group_rows = tuple(_group(row) for row in groups.mappings())
            rules = await connection.execute(
                select(_RULES).where(_RULES.c.deleted.is_(False)).order_by(_RULES.c.id))
            rule_rows = tuple(_rule(row) for row in rules.mappings())
            links = await connection.execute(
                select(_LINKS)
                .join(_RULES, _RULES.c.id == _LINKS.c.route_rule_id)
                .join(_GROUPS, _GROUPS.c.id == _LINKS.c.group_id)
                .where(_RULES.c.deleted.is_(False), _GROUPS.c.deleted.is_(False))
                .order_by(_LINKS.c.id))
            link_rows = tuple(_link(row) for row in links.mappings())
            tags = tuple(_tag(row) for row in await _live_members(connection, _GROUP_TAGS))
            members = tuple(_group_instance(row)
                            for row in await _live_members(connection, _GROUP_INSTANCES))
            group_ops = tuple(_group_operation(row)
                              for row in await _live_members(connection, _GROUP_OPERATIONS))
            logical = await connection.execute(
                select(_SERVICE_INSTANCES).order_by(_SERVICE_INSTANCES.c.id))
            logical_rows = tuple(_service_instance(_instance_row(row))
                                 for row in logical.mappings())
        version = self._expect(found, floor)
        return ManagementData(instance_ops, server_ops, zone_ops, version, group_rows,
                              rule_rows, link_rows, tags, members, group_ops, logical_rows)

    async def operate_instance(
        self, region: str, service: str, instance: str, operation: str, complete: bool, *,
        actor: str, operator_id: str, reason: str | None = None, extensions: str = "{}",
        now_ms: int,
    ) -> bool:
        """Pull an instance out (complete=False) or back in (True); whether anything changed."""
        target = _Target(KIND_INSTANCE, _INSTANCE_OPS,
                         {"region_id": region, "service_id": service, "instance_id": instance})
        context = _Context(actor, operator_id, reason, extensions, now_ms)
        return await self._operate(target, operation, complete, context)

    async def operate_server(
        self, region: str, server: str, operation: str, complete: bool, *,
        actor: str, operator_id: str, reason: str | None = None, extensions: str = "{}",
        now_ms: int,
    ) -> bool:
        """Pull a server (every instance on that IP or host) out or back in."""
        target = _Target(KIND_SERVER, _SERVER_OPS, {"region_id": region, "server_id": server})
        context = _Context(actor, operator_id, reason, extensions, now_ms)
        return await self._operate(target, operation, complete, context)

    async def operate_zone(
        self, region: str, service: str, zone: str, operation: str, complete: bool, *,
        actor: str, operator_id: str, reason: str | None = None, extensions: str = "{}",
        now_ms: int,
    ) -> bool:
        """Pull a service's instances in one zone out or back in."""
        target = _Target(KIND_ZONE, _ZONE_OPS,
                         {"region_id": region, "service_id": service, "zone_id": zone})
        context = _Context(actor, operator_id, reason, extensions, now_ms)
        return await self._operate(target, operation, complete, context)

    async def audit(
        self, filters: Mapping[str, str | int | None], *, offset: int = 0, limit: int = 100,
        newest_first: bool = True,
    ) -> tuple[list[AuditEntry], int]:
        """One page of the audit log (at most MAX_AUDIT_PAGE rows) and how many rows match;
        each filter is equality on its column (None: the column is empty)."""
        if not 0 <= offset <= MAX_OFFSET or limit < 0:
            raise StoreValueError(f"offset must be 0 to {MAX_OFFSET} and limit at least 0")
        conditions = _conditions(filters)
        order = ((_AUDIT.c.created_ms.desc(), _AUDIT.c.id.desc()) if newest_first
                 else (_AUDIT.c.created_ms.asc(), _AUDIT.c.id.asc()))
        page = (select(_AUDIT).where(*conditions).order_by(*order)
                .offset(offset).limit(min(limit, MAX_AUDIT_PAGE)))
        async with self._guard("audit"), self._snapshot() as connection:
            total = await connection.scalar(
                select(func.count()).select_from(_AUDIT).where(*conditions))
            rows = (await connection.execute(page)).mappings().all()
        return [_entry(row) for row in rows], int(total or 0)

    # -- groups and route rules (§4.7) -------------------------------------------------------

    async def upsert_groups(
        self, groups: Sequence[GroupSpec], *, update: bool, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> list[Group]:
        """Insert each group missing by its key (service, region, zone, name); revive each
        deleted one and, with `update`, give the existing ones the new app_id, description and
        status. The rows after the write, one per spec, in order."""
        items = [_check_group(spec) for spec in groups]
        return [_group(row) for row in await self._upsert_entities(
            _GROUP, items, update, _write_context(actor, operator_id, reason, extensions, now_ms))]

    async def delete_groups(
        self, group_ids: Sequence[int], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Mark groups deleted (their links stay, hidden from `load()`); unknown ids are
        ignored. How many groups were not deleted before."""
        ids = _check_ids("group_id", group_ids)
        return await self._soft_delete(
            _GROUP, ids, _write_context(actor, operator_id, reason, extensions, now_ms))

    async def groups(self, filters: Mapping[str, str | int | None]) -> list[Group]:
        """The groups not deleted that match every filter (group_id, service_id, region_id,
        zone_id, name, app_id, status: equality; None: the column is empty), by id."""
        return [_group(row) for row in await self._read(_GROUP, filters)]

    async def upsert_route_rules(
        self, rules: Sequence[RouteRuleSpec], *, update: bool, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> list[RouteRule]:
        """Insert each route rule missing by its key (service, name); revive each deleted one
        and, with `update`, give the existing ones the new description, status and strategy.
        The rows after the write, one per spec, in order."""
        items = [_check_rule(spec) for spec in rules]
        return [_rule(row) for row in await self._upsert_entities(
            _RULE, items, update, _write_context(actor, operator_id, reason, extensions, now_ms))]

    async def delete_route_rules(
        self, route_rule_ids: Sequence[int], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Mark route rules deleted (their links stay, hidden from `load()`); unknown ids are
        ignored. How many rules were not deleted before."""
        ids = _check_ids("route_rule_id", route_rule_ids)
        return await self._soft_delete(
            _RULE, ids, _write_context(actor, operator_id, reason, extensions, now_ms))

    async def route_rules(self, filters: Mapping[str, str | int | None]) -> list[RouteRule]:
        """The route rules not deleted that match every filter (route_rule_id, service_id,
        name, status), by id."""
        return [_rule(row) for row in await self._read(_RULE, filters)]

    async def upsert_route_rule_groups(
        self, items: Sequence[tuple[int, int, int]], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> list[RouteRuleGroup]:
        """Set the unreleased weight of each (route_rule_id, group_id, weight), inserting the
        missing links (released weight None). Each rule and group must exist and not be
        deleted, each weight be 0 or more: otherwise StoreValueError and nothing is written.
        The links after the write, one per item, in order."""
        links = _check_pairs(items, 3)
        context = _write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> list[RouteRuleGroup]:
            services = await self._live_targets(connection, links)
            done = await _set_links(connection, links)
            await _insert_audit(connection, [
                _link_audit(context, "create" if before is None else "update", before, after,
                            written, services[after["route_rule_id"]])
                for before, after, written in done])
            return [_link(after) for _, after, _ in done]

        return await self._write("upsert route rule groups", write)

    async def release_route_rule_groups(
        self, items: Sequence[tuple[int, int]], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Make the unreleased weight of each link (route_rule_id, group_id) its weight; a pair
        without a link is refused (StoreValueError, nothing written). How many weights
        changed."""
        pairs = _check_pairs(items, 2)
        context = _write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> int:
            current = await _links(connection, (rule_id for rule_id, _ in pairs))
            services = await _rule_services(connection, (rule_id for rule_id, _ in current))
            audits, changed = [], 0
            for rule_id, group_id in pairs:
                if (rule_id, group_id) not in current:
                    raise StoreValueError(f"route rule {rule_id} has no group {group_id}")
            for rule_id, group_id in pairs:
                before = current[(rule_id, group_id)]
                written: dict[str, Any] = {}
                if before["weight"] != before["unreleased_weight"]:
                    written = {"weight": before["unreleased_weight"]}
                    await connection.execute(
                        update(_LINKS).where(_LINKS.c.id == before["id"]).values(**written))
                    changed += 1
                after = current[(rule_id, group_id)] = {**before, **written}
                audits.append(_link_audit(context, "release", before, after, written,
                                          services.get(rule_id)))
            await _insert_audit(connection, audits)
            return changed

        return await self._write("release route rule groups", write)

    async def delete_route_rule_groups(
        self, route_rule_group_ids: Sequence[int], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Delete links by id (for good); unknown ids are ignored. How many were deleted."""
        ids = _check_ids("route_rule_group_id", route_rule_group_ids)
        context = _write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> int:
            found = await _rows_by_id(connection, _LINKS, ids)
            services = await _rule_services(
                connection, (row["route_rule_id"] for row in found.values()))
            gone = [row_id for row_id in ids if row_id in found]
            for chunk in _chunks(gone):
                await connection.execute(delete(_LINKS).where(_LINKS.c.id.in_(chunk)))
            await _insert_audit(connection, [
                _link_audit(context, "delete", found[row_id], None, {},
                            services.get(found[row_id]["route_rule_id"]))
                for row_id in gone])
            return len(gone)

        return await self._write("delete route rule groups", write)

    async def route_rule_groups(self, filters: Mapping[str, int | None]) -> list[RouteRuleGroup]:
        """Every link (deleted rules and groups included) that matches every filter
        (route_rule_group_id, route_rule_id, group_id), by id."""
        conditions = _filter(_LINKS, _LINK_FILTERS, "route rule groups", filters)
        async with self._guard("route rule groups"), self._snapshot() as connection:
            rows = await connection.execute(
                select(_LINKS).where(*conditions).order_by(_LINKS.c.id))
            return [_link(row) for row in rows.mappings()]

    async def create_route_rule(
        self, rule: RouteRuleSpec, groups: Sequence[tuple[GroupSpec, int]], *, actor: str,
        operator_id: str, reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> tuple[RouteRule, list[Group]]:
        """In one transaction: insert or revive the rule, insert or revive each group (of the
        rule's service), and set each link's unreleased weight. The rule and the groups (one
        per item, in order) after the write."""
        rule_item = _check_rule(rule)
        group_items: list[dict[str, Any]] = []
        weights: list[int] = []
        for entry in groups:
            if not isinstance(entry, tuple) or len(entry) != 2:
                raise StoreValueError("a group of a route rule must be a (GroupSpec, weight)")
            group_items.append(_check_group(entry[0]))
            weights.append(_check_weight(entry[1]))
            if group_items[-1]["service_id"] != rule_item["service_id"]:
                raise StoreValueError(
                    f"group {group_items[-1]['name']!r} is not of the route rule's service")
        context = _write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> tuple[RouteRule, list[Group]]:
            [(before, after, written)] = await _upsert(connection, _RULE, [rule_item], False,
                                                       now_ms)
            audits = [_entity_audit(_RULE, context, "create", before, after, written)]
            members = await _upsert(connection, _GROUP, group_items, False, now_ms)
            audits += [_entity_audit(_GROUP, context, "create", *member) for member in members]
            links = await _set_links(connection, [
                (after["id"], member["id"], weight)
                for (_, member, _), weight in zip(members, weights, strict=True)])
            audits += [_link_audit(context, "create" if link_before is None else "update",
                                   link_before, link_after, link_written, after["service_id"])
                       for link_before, link_after, link_written in links]
            await _insert_audit(connection, audits)
            return _rule(after), [_group(member) for _, member, _ in members]

        return await self._write("create route rule", write)

    # -- group members and logical instances (§4.7, §7.3, §7.5) ------------------------------

    async def upsert_group_tags(
        self, items: Sequence[tuple[int, str, str]], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> list[GroupTag]:
        """Give each (group_id, tag, value) its value, inserting the missing tags. Each group
        must exist and not be deleted. The tags after the write, one per item, in order."""
        tags = _check_members(_TAG, items, 3)
        context = _write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> list[GroupTag]:
            groups = await _groups_by_id(connection, (tag["group_id"] for tag in tags),
                                         live=True)
            done = await _put_members(connection, _TAG, tags)
            await _insert_audit(connection, [
                _member_audit(_TAG, context, "create" if before is None else "update", before,
                              after, written, after["group_id"], after["tag"], groups)
                for before, after, written in done])
            return [_tag(after) for _, after, _ in done]

        return await self._write("upsert group tags", write)

    async def delete_group_tags(
        self, group_id: int | None, tag: str | None, value: str | None, *, actor: str,
        operator_id: str, reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Delete (for good) every tag that matches each argument given (None: any): of the
        group (which must exist and not be deleted), with the tag, with the value. At least
        one must be given. How many tags were deleted."""
        if group_id is None and tag is None and value is None:
            raise StoreValueError("deleting every tag is refused: give a group, tag or value")
        if group_id is not None:
            _check_row_id("group_id", group_id)
        _check_optional("tag", tag, MAX_ID)
        _check_optional("value", value, MAX_TAG_VALUE)
        context = _write_context(actor, operator_id, reason, extensions, now_ms)
        filters = {"group_id": group_id, "tag": tag, "value": value}
        columns = {name: name for name in filters}
        conditions = [_GROUP_TAGS.c[name] == wanted for name, wanted in filters.items()
                      if wanted is not None]

        async def write(connection: AsyncConnection) -> int:
            if group_id is not None:
                await _groups_by_id(connection, [group_id], live=True)
            rows = await connection.execute(
                select(_GROUP_TAGS).where(*conditions).order_by(_GROUP_TAGS.c.id))
            found = _exact(rows.mappings(), columns, filters)
            groups = await _groups_by_id(connection, (row["group_id"] for row in found),
                                         live=False)
            await _delete_rows(connection, _GROUP_TAGS, [row["id"] for row in found])
            await _insert_audit(connection, [
                _member_audit(_TAG, context, "delete", row, None, {}, row["group_id"],
                              row["tag"], groups) for row in found])
            return len(found)

        return await self._write("delete group tags", write)

    async def group_tags(self, group_id: int | None) -> list[GroupTag]:
        """The tags of a group (None: of every group; deleted groups' too), by id."""
        filters = {} if group_id is None else {"group_id": group_id}
        rows = await self._rows("group tags", _GROUP_TAGS, {"group_id": "group_id"}, filters)
        return [_tag(row) for row in rows]

    async def insert_group_instances(
        self, items: Sequence[tuple[int, str]], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> list[GroupInstance]:
        """Insert each missing (group_id, instance_id); the present ones stay as they are. Each
        group must exist and not be deleted. The rows, one per item, in order."""
        members = _check_members(_GROUP_INSTANCE, items, 2)
        context = _write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> list[GroupInstance]:
            groups = await _groups_by_id(connection, (item["group_id"] for item in members),
                                         live=True)
            done = await _put_members(connection, _GROUP_INSTANCE, members)
            await _insert_audit(connection, [
                _member_audit(_GROUP_INSTANCE, context, "create", before, after, written,
                              after["group_id"], after["instance_id"], groups)
                for before, after, written in done])
            return [_group_instance(after) for _, after, _ in done]

        return await self._write("insert group instances", write)

    async def delete_group_instances(
        self, group_instance_ids: Sequence[int], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Delete group instances by id (for good); unknown ids are ignored. How many were
        deleted."""
        ids = _check_ids("group_instance_id", group_instance_ids)
        context = _write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> int:
            found = await _rows_by_id(connection, _GROUP_INSTANCES, ids)
            gone = [found[row_id] for row_id in ids if row_id in found]
            groups = await _groups_by_id(connection, (row["group_id"] for row in gone),
                                         live=False)
            await _delete_rows(connection, _GROUP_INSTANCES, [row["id"] for row in gone])
            await _insert_audit(connection, [
                _member_audit(_GROUP_INSTANCE, context, "delete", row, None, {},
                              row["group_id"], row["instance_id"], groups) for row in gone])
            return len(gone)

        return await self._write("delete group instances", write)

    async def group_instances(self, filters: Mapping[str, str | int | None],
                              ) -> list[GroupInstance]:
        """Every group instance (deleted groups' too) that matches every filter (group_id,
        instance_id: equality), by id."""
        rows = await self._rows("group instances", _GROUP_INSTANCES, _GROUP_INSTANCE_FILTERS,
                                filters)
        return [_group_instance(row) for row in rows]

    async def set_group_instances(
        self, group_id: int, instance_ids: Sequence[str], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> tuple[int, int]:
        """Make the group's instances exactly `instance_ids` (canary): delete the others and
        insert the missing ones (audit rows: each deleted, then each id given, once, in
        order). The group must exist and not be deleted. How many were added and how many
        removed."""
        _check_row_id("group_id", group_id)
        if isinstance(instance_ids, str):
            raise StoreValueError("instance_ids must be a sequence of instance ids, not text")
        members = _check_members(_GROUP_INSTANCE, ((group_id, instance_id)
                                                   for instance_id in instance_ids), 2)
        members = list({item["instance_id"]: item for item in members}.values())  # each once
        wanted = {item["instance_id"] for item in members}
        context = _write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> tuple[int, int]:
            groups = await _groups_by_id(connection, [group_id], live=True)
            rows = await connection.execute(select(_GROUP_INSTANCES).where(
                _GROUP_INSTANCES.c.group_id == group_id).order_by(_GROUP_INSTANCES.c.id))
            gone = [dict(row) for row in rows.mappings() if row["instance_id"] not in wanted]
            await _delete_rows(connection, _GROUP_INSTANCES, [row["id"] for row in gone])
            done = await _put_members(connection, _GROUP_INSTANCE, members)
            audits = [_member_audit(_GROUP_INSTANCE, context, "delete", row, None, {},
                                    group_id, row["instance_id"], groups) for row in gone]
            audits += [_member_audit(_GROUP_INSTANCE, context, "create", before, after,
                                     written, group_id, after["instance_id"], groups)
                       for before, after, written in done]
            await _insert_audit(connection, audits)
            return sum(1 for before, _, _ in done if before is None), len(gone)

        return await self._write("set group instances", write)

    async def operate_group_operations(
        self, items: Sequence[tuple[int, str]], complete: bool, *, actor: str,
        operator_id: str, reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Put each (group_id, operation) in force (complete=False; present ones stay) or end
        it (complete=True; missing ones are ignored). Each group must exist and not be
        deleted. How many operations were added or ended."""
        if type(complete) is not bool:
            raise StoreValueError("complete must be a bool")
        operations = _check_members(_GROUP_OPERATION, items, 2)
        context = _write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> int:
            groups = await _groups_by_id(
                connection, (item["group_id"] for item in operations), live=True)
            done: list[tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any]]]
            if not complete:
                done = list(await _put_members(connection, _GROUP_OPERATION, operations))
            else:
                current: dict[str, dict[str, Any] | None] = dict(await _members_by_key(
                    connection, _GROUP_OPERATION,
                    (_member_key(_GROUP_OPERATION, item) for item in operations)))
                done, gone = [], []
                for item in operations:
                    key = _member_key(_GROUP_OPERATION, item)
                    before = current.get(key)
                    if before is not None:
                        gone.append(before["id"])
                        current[key] = None
                    done.append((before, None, {}))
                await _delete_rows(connection, _GROUP_OPERATIONS, gone)
            audits = []
            for item, (before, after, written) in zip(operations, done, strict=True):
                audits.append(_member_audit(
                    _GROUP_OPERATION, context, item["operation"], before, after, written,
                    item["group_id"], item["operation"], groups, complete=complete))
            await _insert_audit(connection, audits)
            return sum(1 for before, after, _ in done if (before is None) != (after is None))

        return await self._write("operate group operations", write)

    async def group_operations(self, group_id: int | None) -> list[GroupOperation]:
        """The operations in force on a group (None: on every group; deleted groups' too), by
        id."""
        filters = {} if group_id is None else {"group_id": group_id}
        rows = await self._rows("group operations", _GROUP_OPERATIONS,
                                {"group_id": "group_id"}, filters)
        return [_group_operation(row) for row in rows]

    async def upsert_service_instances(
        self, items: Sequence[ServiceInstanceSpec], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> list[ServiceInstance]:
        """Insert each logical instance missing by its key (service, instance) and give the
        existing ones every field of the spec. The rows after the write, one per spec, in
        order."""
        specs = [_check_service_instance(spec) for spec in items]
        context = _write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> list[ServiceInstance]:
            done = await _put_service_instances(connection, specs, now_ms)
            await _insert_audit(connection, [
                _service_instance_audit(context, "create" if before is None else "update",
                                        before, after, written)
                for before, after, written in done])
            return [_service_instance(after) for _, after, _ in done]

        return await self._write("upsert service instances", write)

    async def delete_service_instances(
        self, service_instance_ids: Sequence[int], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Delete logical instances by id (for good); unknown ids are ignored. How many were
        deleted."""
        ids = _check_ids("service_instance_id", service_instance_ids)
        context = _write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> int:
            found = await _rows_by_id(connection, _SERVICE_INSTANCES, ids)
            gone = [_instance_row(found[row_id]) for row_id in ids if row_id in found]
            await _delete_rows(connection, _SERVICE_INSTANCES, [row["id"] for row in gone])
            await _insert_audit(connection, [
                _service_instance_audit(context, "delete", row, None, {}) for row in gone])
            return len(gone)

        return await self._write("delete service instances", write)

    async def service_instances(self, filters: Mapping[str, str | int | None],
                                ) -> list[ServiceInstance]:
        """The logical instances that match every filter (service_id, instance_id: equality),
        by id."""
        rows = await self._rows("service instances", _SERVICE_INSTANCES,
                                _SERVICE_INSTANCE_FILTERS, filters)
        return [_service_instance(_instance_row(row)) for row in rows]

    # -- internals --------------------------------------------------------------------------

    async def _rows(self, what: str, table: Table, columns: Mapping[str, str],
                    filters: Mapping[str, str | int | None]) -> list[dict[str, Any]]:
        """The rows of `table` that match every filter exactly (see _filter), by id."""
        conditions = _filter(table, columns, what, filters)
        async with self._guard(what), self._snapshot() as connection:
            rows = await connection.execute(
                select(table).where(*conditions).order_by(table.c.id))
            return _exact(rows.mappings(), columns, filters)

    async def _write(self, what: str,
                     body: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        """Run `body` in one write transaction that first bumps the version, bounded by the
        timeout; a concurrent duplicate insert (IntegrityError) retries it once."""
        async with self._guard(what):
            try:
                return await self._write_once(body)
            except sa_exc.IntegrityError:
                return await self._write_once(body)

    async def _write_once(self, body: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        floor = self._high
        async with self._writer().begin() as connection:
            version = await self._bump(connection, floor)
            result = await body(connection)
        self._high = max(self._high, version)
        return result

    async def _read(self, entity: _Entity,
                    filters: Mapping[str, str | int | None]) -> list[RowMapping]:
        table = entity.table
        conditions = _filter(table, entity.filters, f"{entity.kind}s", filters)
        async with self._guard(f"{entity.kind}s"), self._snapshot() as connection:
            rows = await connection.execute(select(table).where(
                *conditions, table.c.deleted.is_(False)).order_by(table.c.id))
            return list(rows.mappings())

    async def _upsert_entities(self, entity: _Entity, items: list[dict[str, Any]],
                               update_fields: bool, context: _Context) -> list[dict[str, Any]]:
        if type(update_fields) is not bool:
            raise StoreValueError("update must be a bool")
        operation = "update" if update_fields else "create"

        async def write(connection: AsyncConnection) -> list[dict[str, Any]]:
            done = await _upsert(connection, entity, items, update_fields, context.now_ms)
            await _insert_audit(connection, [
                _entity_audit(entity, context, operation, *item) for item in done])
            return [after for _, after, _ in done]

        return await self._write(f"upsert {entity.kind}s", write)

    async def _soft_delete(self, entity: _Entity, ids: list[int], context: _Context) -> int:
        table = entity.table

        async def write(connection: AsyncConnection) -> int:
            found = await _rows_by_id(connection, table, ids)
            live = [row_id for row_id in ids if row_id in found and not found[row_id]["deleted"]]
            for chunk in _chunks(live):
                await connection.execute(update(table).where(table.c.id.in_(chunk)).values(
                    deleted=True, updated_ms=context.now_ms))
            audits = []
            for row_id in ids:
                before = found.get(row_id)
                if before is None:
                    continue
                written = {} if before["deleted"] else {"deleted": True}
                after = {**before, **written, "updated_ms": context.now_ms} if written else before
                audits.append(_entity_audit(entity, context, "delete", before, after, written))
            await _insert_audit(connection, audits)
            return len(live)

        return await self._write(f"delete {entity.kind}s", write)

    @staticmethod
    async def _live_targets(connection: AsyncConnection,
                            links: Sequence[tuple[Any, ...]]) -> dict[int, str]:
        """The service of each link's route rule; StoreValueError names the first rule or
        group that does not exist or is deleted."""
        rule_ids = _check_ids("route_rule_id", (link[0] for link in links))
        group_ids = _check_ids("group_id", (link[1] for link in links))
        rules = await _rows_by_id(connection, _RULES, rule_ids, _RULES.c.deleted.is_(False))
        groups = await _rows_by_id(connection, _GROUPS, group_ids,
                                   _GROUPS.c.deleted.is_(False))
        for link in links:
            if link[0] not in rules:
                raise StoreValueError(f"route rule {link[0]} does not exist or is deleted")
            if link[1] not in groups:
                raise StoreValueError(f"group {link[1]} does not exist or is deleted")
            rule_service, group_service = rules[link[0]]["service_id"], groups[link[1]][
                "service_id"]
            if rule_service != group_service:
                raise StoreValueError(f"group {link[1]} is of service {group_service!r}, not of "
                                      f"route rule {link[0]}'s {rule_service!r}")
        return {row_id: row["service_id"] for row_id, row in rules.items()}


    def _create_engine(self) -> AsyncEngine:
        try:
            engine = create_async_engine(
                self._url, pool_size=self._pool_size, max_overflow=0,
                pool_timeout=self._timeout, pool_pre_ping=True, pool_recycle=3600,
                connect_args=_connect_args(self._url, self._timeout))
        except Exception as exc:  # a driver that is not installed, or not an async one
            raise StoreError(f"cannot use {self._url.drivername}: {_describe(exc)}") from exc
        if self.backend == "sqlite":
            _sqlite_transactions(engine)
        return engine

    def _writer(self) -> AsyncEngine:
        self._verify()
        if self._engine is None:
            raise StoreUnavailable("the management store is not open")
        return self._engine

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction whose statements all see one snapshot."""
        self._verify()
        if self._reader is None:
            raise StoreUnavailable("the management store is not open")
        async with self._reader.connect() as connection, connection.begin():
            yield connection

    def _verify(self) -> None:
        """Refuse the call if the store is lost, or if its SQLite file is no longer what the
        path names (then the store is lost)."""
        if self._lost is not None:
            raise StoreLost(self._lost)
        path = self._file
        if self._identity is None or path is None:
            return
        try:
            identity = _file_id(path)
        except (FileNotFoundError, NotADirectoryError):
            self._lose(f"the SQLite database file {path} was removed", file=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot look at the SQLite database file {path}: "
                                   f"{exc.strerror}") from exc
        if identity != self._identity:
            self._lose(f"the SQLite database file {path} was replaced by another file",
                       file=True)

    def _lose(self, why: str, *, file: bool = False) -> NoReturn:
        self._lost = (f"{why} after this node opened it: nothing is read or written until "
                      "the node restarts")
        self._file_lost = file
        raise StoreLost(self._lost)

    def _expect(self, found: Any, floor: int) -> int:
        """The version read, unless the row is missing or the version is below `floor` (the
        highest seen before the call began): then the store is lost."""
        if found is None:
            if floor:
                self._lose("the version row is missing (tables emptied or dropped)")
            raise StoreError("the version row is missing")
        version = int(found)
        if version < floor:
            self._lose(f"the version went back from {floor} to {version} (another database, "
                       "tables created again, or an older backup)")
        self._high = max(self._high, version)
        return version

    async def _bump(self, connection: AsyncConnection, floor: int) -> int:
        """Bump the version: the first write of every write transaction (its row lock
        serializes the writers); the new version, once the one before is at least `floor`."""
        bumped = await connection.execute(
            update(_META).where(_META.c.id == 1).values(version=_META.c.version + 1))
        found = (await connection.scalar(select(_META.c.version).where(_META.c.id == 1))
                 if bumped.rowcount == 1 else None)
        return self._expect(None if found is None else int(found) - 1, floor) + 1

    @contextlib.asynccontextmanager
    async def _guard(self, what: str, seconds: float | None = None) -> AsyncIterator[None]:
        """Bound the body by `seconds` (default: the store's timeout) and turn every error into
        StoreError or StoreUnavailable."""
        limit = self._timeout if seconds is None else seconds
        try:
            async with asyncio.timeout(limit):
                yield
        except StoreError:
            raise
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"{what}: the database did not answer within {limit:g} s") from exc
        except Exception as exc:
            kind = StoreUnavailable if _unavailable(exc) else StoreError
            raise kind(f"{what}: {_describe(exc)}") from exc

    async def _operate(self, target: _Target, operation: str, complete: bool,
                       context: _Context) -> bool:
        for column, value in target.ids.items():
            _check_text(column, value, MAX_ID)
        _check_text("operation", operation, MAX_NAME)
        _check_context(context)
        if type(complete) is not bool or type(context.now_ms) is not int:
            raise StoreValueError("complete must be a bool and now_ms an int")
        async with self._guard(f"{target.kind} {operation}"):
            try:
                return await self._operate_once(target, operation, complete, context)
            except sa_exc.IntegrityError:
                # another node inserted the same row first: the retry finds it present
                return await self._operate_once(target, operation, complete, context)

    async def _operate_once(self, target: _Target, operation: str, complete: bool,
                            context: _Context) -> bool:
        table = target.table
        key = target_key(*target.ids.values())
        floor = self._high
        async with self._writer().begin() as connection:
            version = await self._bump(connection, floor)
            found = await connection.execute(
                select(table.c.operation).where(table.c.target_key == key))
            before = sorted(row[0] for row in found)
            changed = (operation in before) == complete
            if changed and complete:
                await connection.execute(delete(table).where(
                    table.c.target_key == key, table.c.operation == operation))
            elif changed:
                await connection.execute(insert(table).values(
                    target_key=key, **target.ids, operation=operation,
                    operator_id=context.operator_id, created_ms=context.now_ms))
            after = sorted(set(before) - {operation} if complete else {*before, operation})
            await connection.execute(insert(_AUDIT).values(
                created_ms=context.now_ms, actor=context.actor,
                operator_id=context.operator_id, kind=target.kind, **target.ids,
                operation=operation, complete=complete, reason=context.reason,
                extensions=context.extensions, before=_encode(before), after=_encode(after)))
        self._high = max(self._high, version)
        return changed


def _encode(operations: Sequence[str]) -> str:
    return json.dumps(list(operations), ensure_ascii=False)
