"""The management store: pulled-out instances, servers and zones, and their audit log, in SQL.

One database is shared by every node: SQLite (the embedded default), MySQL/MariaDB or PostgreSQL,
through SQLAlchemy's asyncio engine (drivers aiosqlite, asyncmy, asyncpg). Nodes keep the
management state in memory and poll `version()` to notice a change.

Rules
  * A plain URL gets the async driver: sqlite:// -> sqlite+aiosqlite, mysql:// and mariadb:// ->
    +asyncmy (with charset=utf8mb4 unless the URL sets one), postgresql:// and postgres:// ->
    postgresql+asyncpg. A URL that names a driver is kept as it is; any other scheme is a
    StoreError. In-memory SQLite is refused (a pool would see one database per connection).
  * `open()` runs the Alembic migrations shipped in `artemis/migrations` up to head, under a lock
    (PostgreSQL advisory lock, MySQL GET_LOCK, SQLite BEGIN IMMEDIATE, and an asyncio lock per
    event loop for Alembic's own globals), so nodes that start together on an empty database do
    not race. An empty database gets the schema; a current one is left as it is.
  * Keys are compared exactly as given: the API lower-cases region, service, instance, zone and
    server ids before calling the store (ids are case-insensitive, §3.1), and the store keeps
    what it is given.
  * Every operate_* call is one transaction: bump the version row first (its row lock serializes
    writers on every backend), read the target's operations, add (complete=False, pull-out) or
    remove (complete=True, pull-in) one, and append an audit row with the operations before and
    after. The version goes up by exactly 1 per call, whether or not anything changed, since the
    audit row is a write too. A concurrent duplicate insert (IntegrityError) retries the call
    once; the retry finds the row present.
  * `load()` and `audit()` read in one snapshot (REPEATABLE READ; one SQLite transaction).
  * Values are always bound parameters. Text must not hold NUL or lone surrogates, and must fit
    its column (checked here, since SQLite does not): ids 256 characters, operation, operator and
    actor 128, reason 1024, extensions 65536.
  * Each call is bounded by `timeout` seconds (`open()` by `timeout` to reach the database, then
    `migration_timeout` to migrate). Errors never escape as driver or SQLAlchemy exceptions:

        StoreError            anything else (a constraint, an SQL error, a broken row)
        ├── StoreValueError   an argument the store cannot take (also a ValueError): a URL of
        │                     no known database, text too long or with NUL, a bad audit filter
        └── StoreUnavailable  the database cannot be reached, lost the connection, is locked or
                              did not answer in time, or the store is not open (yet): the same
                              call may succeed later
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

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
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, RowMapping, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

__all__ = [
    "KIND_INSTANCE",
    "KIND_SERVER",
    "KIND_ZONE",
    "MAX_AUDIT_PAGE",
    "AuditEntry",
    "ManagementData",
    "ManagementStore",
    "StoreError",
    "StoreUnavailable",
    "StoreValueError",
    "async_url",
    "target_key",
]

KIND_INSTANCE: Final = "instance-operation"
KIND_SERVER: Final = "server-operation"
KIND_ZONE: Final = "zone-operation"
MAX_AUDIT_PAGE: Final = 1000
MAX_ID: Final = 256
MAX_NAME: Final = 128  # operation, operator_id, actor
MAX_REASON: Final = 1024
MAX_EXTENSIONS: Final = 65_536
MAX_OFFSET: Final = 2**63 - 1  # the largest OFFSET every backend takes
AUDIT_FILTERS: Final = frozenset({
    "kind", "region_id", "service_id", "instance_id", "server_id", "zone_id", "operation",
    "operator_id", "actor", "complete",
})

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


@dataclass(frozen=True, slots=True)
class ManagementData:
    """Every operation in force, read in one snapshot with the version it belongs to."""

    instance_ops: frozenset[tuple[str, str, str, str]]  # (region, service, instance, operation)
    server_ops: frozenset[tuple[str, str, str]]  # (region, server, operation)
    zone_ops: frozenset[tuple[str, str, str, str]]  # (region, service, zone, operation)
    version: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log; `before`/`after` are the target's operations, sorted."""

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
)


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


def _conditions(filters: Mapping[str, str | bool | None]) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for name, value in filters.items():
        if name not in AUDIT_FILTERS:
            raise StoreValueError(f"the audit log cannot be filtered on {name!r}")
        wanted: type = bool if name == "complete" else str
        if value is not None and type(value) is not wanted:
            raise StoreValueError(f"the audit filter {name} takes {wanted.__name__} or None")
        column = _AUDIT.c[name]
        conditions.append(column.is_(None) if value is None else column == value)
    return conditions


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
            "script_location", str(resources.files("artemis") / "migrations"))
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

    def __repr__(self) -> str:
        state = "open" if self._engine is not None else "closed"
        return (f"ManagementStore({self._url.render_as_string(hide_password=True)!r}, "
                f"{state}, timeout={self._timeout})")

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
        """Connect and migrate the schema to head; a store already open stays as it is."""
        if self._engine is not None:
            return
        engine = self._create_engine()
        try:
            async with self._guard("open", self._timeout), engine.connect() as connection:
                await connection.execute(select(1))
            async with (self._guard("migrate", self._migration_timeout),
                        _local_migration_lock(), engine.connect() as conn):
                if self.backend == "sqlite":
                    await conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
                await conn.run_sync(_migrate)
                await conn.commit()
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        if self.backend == "sqlite":
            self._reader = engine
        else:
            self._reader = engine.execution_options(isolation_level="REPEATABLE READ")

    async def close(self) -> None:
        """Close every connection; the store can be opened again."""
        engine, self._engine, self._reader = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    async def version(self) -> int:
        """The management version: bumped by every write, in the write's own transaction."""
        async with self._guard("version"), self._writer().connect() as connection:
            found = await connection.scalar(select(_META.c.version).where(_META.c.id == 1))
        if found is None:
            raise StoreError("the version row is missing")
        return int(found)

    async def load(self) -> ManagementData:
        """Every operation in force and the version, read in one snapshot."""
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
        if found is None:
            raise StoreError("the version row is missing")
        return ManagementData(instance_ops, server_ops, zone_ops, int(found))

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
        self, filters: Mapping[str, str | bool | None], *, offset: int = 0, limit: int = 100,
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

    # -- internals --------------------------------------------------------------------------

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
        if self._engine is None:
            raise StoreUnavailable("the management store is not open")
        return self._engine

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction whose statements all see one snapshot."""
        if self._reader is None:
            raise StoreUnavailable("the management store is not open")
        async with self._reader.connect() as connection, connection.begin():
            yield connection

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
        _check_text("operator_id", context.operator_id, MAX_NAME)
        _check_text("actor", context.actor, MAX_NAME)
        _check_text("extensions", context.extensions, MAX_EXTENSIONS)
        if context.reason is not None:
            _check_text("reason", context.reason, MAX_REASON)
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
        async with self._writer().begin() as connection:
            bumped = await connection.execute(
                update(_META).where(_META.c.id == 1).values(version=_META.c.version + 1))
            if bumped.rowcount != 1:
                raise StoreError("the version row is missing")
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
        return changed


def _encode(operations: Sequence[str]) -> str:
    return json.dumps(list(operations), ensure_ascii=False)
