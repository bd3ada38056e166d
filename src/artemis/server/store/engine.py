"""The connection to the management database: its URL, engine, migrations, version and loss.

Rules
  * A plain URL gets the async driver: sqlite:// -> sqlite+aiosqlite, mysql:// and mariadb:// ->
    +asyncmy (with charset=utf8mb4 unless the URL sets one), postgresql:// and postgres:// ->
    postgresql+asyncpg. A URL that names a driver is kept as it is; any other scheme is a
    StoreValueError. In-memory SQLite is refused (a pool would see one database per connection).
  * `open()` runs the Alembic migrations shipped in `artemis/server/store/migrations` up to
    head, under a lock (PostgreSQL advisory lock, MySQL GET_LOCK, SQLite BEGIN IMMEDIATE, and
    an asyncio lock per event loop for Alembic's own globals), so nodes that start together on
    an empty database do not race. An empty database gets the schema; a current one is left as
    it is.
  * Every write is one transaction that bumps the version row first (its row lock serializes
    writers on every backend); a concurrent duplicate insert (IntegrityError) retries the
    write once, and the retry finds the row present. Reads that must agree (`load()`,
    `audit()`) run in one snapshot (REPEATABLE READ; one SQLite transaction).
  * The database stays the one opened. On SQLite the file's identity (device, inode) is taken
    at `open()` and compared with what the path names before every call; on every backend the
    version never goes below the highest one this store saw before the call began (a write
    checks it in its own transaction, after the bump). Otherwise the store is lost: the file
    was removed or replaced, or the version row is missing or went back (tables dropped and
    created again, another database under the same URL, an older backup restored). A lost
    store reads and writes nothing: every call raises StoreLost until the store is closed and
    opened again (a node opens it when it starts). `rescue()` saves what a lost SQLite file
    held (see rescue.py); `open()` of a path where no file is puts the newest rescue copy in
    its place first (`restored`) and lists in `rescue_copies` those it leaves beside a file.
  * Each call is bounded by `timeout` seconds (`open()` by `timeout` to reach the database, then
    `migration_timeout` to migrate), and every error becomes a StoreError (see errors.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from sqlalchemy import event, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from artemis.server.masking import MASK, MIN_VALUE, mask_text
from artemis.server.store import rescue as files
from artemis.server.store.errors import (
    StoreError,
    StoreLost,
    StoreUnavailable,
    StoreValueError,
    describe,
    unavailable,
)
from artemis.server.store.schema import META

__all__ = ["Database", "async_url"]

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
# Alembic keeps the running migration in module globals (`alembic.context`, `alembic.op`), so
# two stores of one event loop must not migrate at once: the only state shared between stores.
_LOCAL_MIGRATIONS: Final[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary())


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


def migration_config(connection: Connection) -> Config:
    """The Alembic configuration of the shipped migrations, on `connection`."""
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("artemis.server.store") / "migrations"))
    config.attributes["connection"] = connection
    return config


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
        command.upgrade(migration_config(connection), "head")
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


class Database:
    """One management database, opened, watched for loss and closed (see the module's rules);
    what every concept of the store reads and writes through."""

    def __init__(self, url: str, *, pool_size: int = 5, timeout: float = 2.0,
                 migration_timeout: float = 60.0) -> None:
        if pool_size < 1:
            raise StoreValueError("pool_size must be at least 1")
        if timeout <= 0 or migration_timeout <= 0:
            raise StoreValueError("timeouts must be positive")
        self.url = make_url(async_url(url))
        self.timeout = timeout
        self._pool_size = pool_size
        self._migration_timeout = migration_timeout
        self._engine: AsyncEngine | None = None
        self._reader: AsyncEngine | None = None
        self._file = files.sqlite_file(self.url)
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

    @property
    def state(self) -> str:
        """lost, open or closed."""
        if self._lost is not None:
            return "lost"
        return "closed" if self._engine is None else "open"

    @property
    def lost(self) -> str | None:
        """Why every call is refused since the store lost its database (None: it has not)."""
        return self._lost

    @property
    def backend(self) -> str:
        """The database's kind: sqlite, mysql, mariadb or postgresql."""
        return self.url.get_backend_name()

    @property
    def high(self) -> int:
        """The highest version seen since open(): a call's floor (see `expect`)."""
        return self._high

    async def open(self) -> None:
        """Connect and migrate the schema to head; a database already open stays as it is. A
        SQLite file that is missing is first restored from its newest rescue copy, if any."""
        if self._engine is not None:
            return
        path = self._file
        if path is not None:
            async with self.guard("restore"):
                restored = files.restore(path)  # a few calls on one folder: not worth a thread
            self.restored = restored or self.restored
        engine = self._create_engine()
        holder = None
        try:
            async with self.guard("open", self.timeout), engine.connect() as connection:
                await connection.execute(select(1))
            async with (self.guard("migrate", self._migration_timeout),
                        _local_migration_lock(), engine.connect() as conn):
                if self.backend == "sqlite":
                    await conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
                await conn.run_sync(_migrate)
                await conn.commit()
            if path is not None:
                async with self.guard("open"):
                    holder = await asyncio.to_thread(files.hold, path)
                    identity = files.file_id(path)
                    sidecars = files.sidecar_ids(path)
                    copies = tuple(files.rescue_copies(path))
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
        """Close every connection; the database can be opened again."""
        engine, self._engine, self._reader = self._engine, None, None
        holder, self._holder, self._identity = self._holder, None, None
        self._sidecars = {}
        if holder is not None:
            holder.close()
        if engine is not None:
            await engine.dispose()

    async def rescue(self) -> Path | None:
        """Let go of a lost database (nothing if it is not lost): copy what a removed or
        replaced SQLite file held to a rescue copy beside the path (see rescue.py), then close
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
                    self._rescued = await asyncio.to_thread(files.copy, holder, path)
                except (OSError, sqlite3.Error) as exc:
                    error = StoreError(f"cannot save a rescue copy beside {path}: "
                                       f"{describe(exc)}")
                else:
                    self._lost = (f"{self._lost}; what it held is saved in {self._rescued}, "
                                  "which a node that starts with no file there puts back")
            await self.close()
            if path is not None and self._file_lost:
                files.drop_sidecars(path, sidecars)
            if error is not None:
                raise error
            return self._rescued

    async def version(self) -> int:
        """The management version: bumped by every write, in the write's own transaction."""
        floor = self._high
        async with self.guard("version"), self._writer().connect() as connection:
            found = await connection.scalar(select(META.c.version).where(META.c.id == 1))
        return self.expect(found, floor)

    async def write(self, what: str, body: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        """Run `body` in one write transaction that first bumps the version, bounded by the
        timeout; a concurrent duplicate insert (IntegrityError) retries it once."""
        async with self.guard(what):
            try:
                return await self._write_once(body)
            except sa_exc.IntegrityError:
                # another node inserted the same row first: the retry finds it present
                return await self._write_once(body)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction whose statements all see one snapshot."""
        self._verify()
        if self._reader is None:
            raise StoreUnavailable("the management store is not open")
        async with self._reader.connect() as connection, connection.begin():
            yield connection

    @contextlib.asynccontextmanager
    async def guard(self, what: str, seconds: float | None = None) -> AsyncIterator[None]:
        """Bound the body by `seconds` (default: the store's timeout) and turn every error into
        StoreError or StoreUnavailable."""
        limit = self.timeout if seconds is None else seconds
        try:
            async with asyncio.timeout(limit):
                yield
        except StoreError:
            raise
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"{what}: the database did not answer within {limit:g} s") from exc
        except Exception as exc:
            kind = StoreUnavailable if unavailable(exc) else StoreError
            raise kind(f"{what}: {self._masked(describe(exc))}") from exc

    def _masked(self, message: str) -> str:
        """A database error's words with the URL's password masked (a driver may quote its
        connection string), whatever its spelling."""
        password = self.url.password
        if password and len(str(password)) >= MIN_VALUE:
            for spelling in sorted({str(password), quote(str(password), safe="")},
                                   key=len, reverse=True):
                message = message.replace(spelling, MASK)
        return mask_text(message)

    def expect(self, found: Any, floor: int) -> int:
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

    # -- internals --------------------------------------------------------------------------

    async def _write_once(self, body: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        floor = self._high
        async with self._writer().begin() as connection:
            version = await self._bump(connection, floor)
            result = await body(connection)
        self._high = max(self._high, version)
        return result

    async def _bump(self, connection: AsyncConnection, floor: int) -> int:
        """Bump the version: the first write of every write transaction (its row lock
        serializes the writers); the new version, once the one before is at least `floor`."""
        bumped = await connection.execute(
            update(META).where(META.c.id == 1).values(version=META.c.version + 1))
        found = (await connection.scalar(select(META.c.version).where(META.c.id == 1))
                 if bumped.rowcount == 1 else None)
        return self.expect(None if found is None else int(found) - 1, floor) + 1

    def _create_engine(self) -> AsyncEngine:
        try:
            engine = create_async_engine(
                self.url, pool_size=self._pool_size, max_overflow=0,
                pool_timeout=self.timeout, pool_pre_ping=True, pool_recycle=3600,
                connect_args=_connect_args(self.url, self.timeout))
        except Exception as exc:  # a driver that is not installed, or not an async one
            raise StoreError(f"cannot use {self.url.drivername}: "
                             f"{self._masked(describe(exc))}") from exc
        if self.backend == "sqlite":
            _sqlite_transactions(engine)
        return engine

    def _writer(self) -> AsyncEngine:
        self._verify()
        if self._engine is None:
            raise StoreUnavailable("the management store is not open")
        return self._engine

    def _verify(self) -> None:
        """Refuse the call if the store is lost, or if its SQLite file is no longer what the
        path names (then the store is lost)."""
        if self._lost is not None:
            raise StoreLost(self._lost)
        path = self._file
        if self._identity is None or path is None:
            return
        try:
            identity = files.file_id(path)
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
