"""The management store, on SQLite always and on MariaDB/MySQL and PostgreSQL when
ARTEMIS_TEST_MYSQL_URL / ARTEMIS_TEST_POSTGRES_URL name a server (its database is only used to
create and drop one fresh `artemis_test_<hex>` database per test)."""

# STYLE.md has tests read `assert expected == actual`.

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import column, inspect, table, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from artemis import wire
from artemis.server.store import (
    KIND_INSTANCE,
    KIND_SERVER,
    KIND_ZONE,
    MAX_AUDIT_PAGE,
    ManagementData,
    ManagementStore,
    StoreError,
    StoreLost,
    StoreUnavailable,
    StoreValueError,
    async_url,
)

MYSQL_ENV = "ARTEMIS_TEST_MYSQL_URL"
POSTGRES_ENV = "ARTEMIS_TEST_POSTGRES_URL"
CONTEXT: dict[str, Any] = {
    "actor": "token-ops", "operator_id": "alice", "reason": "deploy",
    "extensions": '{"ticket":"OPS-1"}',
}
TABLES = ["artemis_alembic_version", "artemis_meta", "audit_log", "instance_operation",
          "server_operation", "service_group", "service_group_instance",
          "service_group_operation", "service_group_tag", "service_instance",
          "service_route_rule", "service_route_rule_group", "zone_operation"]
INJECTIONS = ["'; DROP TABLE audit_log; --", '" OR 1=1 --', "\\'; DROP TABLE artemis_meta; --",
              "%", "_"]
EMPTY = ManagementData(frozenset(), frozenset(), frozenset(), 0)


def engine(url: str) -> AsyncEngine:
    """A plain engine of our own (no store) for setting up and looking behind the store."""
    return create_async_engine(async_url(url), poolclass=NullPool)


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """Create a uniquely named database on the server, yield its plain URL, then drop it."""
    name = f"artemis_test_{secrets.token_hex(6)}"
    server = make_url(server_url)
    admin = create_async_engine(
        async_url(server_url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    drop = f"DROP DATABASE {name}"
    if server.get_backend_name() == "postgresql":
        drop += " WITH (FORCE)"
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f"CREATE DATABASE {name}")
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as connection:
                await connection.exec_driver_sql(drop)
    finally:
        await admin.dispose()


def _server(variable: str, what: str) -> str:
    url = os.environ.get(variable, "")
    if not url:
        pytest.skip(f"{variable} is not set: no {what} server to test against")
    return url


@pytest.fixture(params=["sqlite", "mysql", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The plain URL of an empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'management.db'}"
        return
    variable, what = ((MYSQL_ENV, "MariaDB/MySQL") if request.param == "mysql"
                      else (POSTGRES_ENV, "PostgreSQL"))
    async with fresh_database(_server(variable, what)) as url:
        yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[ManagementStore]:
    async with ManagementStore(db_url) as opened:
        yield opened


def instance_entry(id: int, created_ms: int, operation: str, complete: bool, before: list[str],
                   after: list[str], service: str = "svc", instance: str = "i1",
                   **fields: Any) -> wire.AuditEntry:
    values: dict[str, Any] = {
        **CONTEXT, "id": id, "create_time": created_ms, "kind": KIND_INSTANCE,
        "region_id": "sha", "service_id": service, "instance_id": instance, "server_id": None,
        "zone_id": None, "operation": operation, "complete": complete, "before": before,
        "after": after, **fields}
    return wire.AuditEntry(**values)


async def table_names(url: str) -> list[str]:
    db = engine(url)
    try:
        async with db.connect() as connection:
            names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await db.dispose()
    return sorted(names)


async def scalars(url: str, query: str) -> list[Any]:
    db = engine(url)
    try:
        async with db.connect() as connection:
            return list((await connection.execute(text(query))).scalars())
    finally:
        await db.dispose()


# -- opening and migrating ------------------------------------------------------------------


async def test_an_empty_database_gets_the_schema(db_url: str) -> None:
    """open() on an empty database creates every table, the version row at 0, and nothing else."""
    async with ManagementStore(db_url) as store:
        assert 0 == await store.version()
        assert EMPTY == await store.load()
        assert ([], 0) == await store.audit({})
    assert TABLES == await table_names(db_url)
    assert ["0003"] == await scalars(db_url, "SELECT version_num FROM artemis_alembic_version")
    assert [0] == await scalars(db_url, "SELECT version FROM artemis_meta")


async def test_reopening_keeps_data_and_migrates_nothing(db_url: str) -> None:
    """Opening again (and again) finds the schema current and the data as it was left."""
    async with ManagementStore(db_url) as store:
        await store.operate_server("sha", "10.0.0.1", "pullout", False, **CONTEXT, now_ms=5)
        written = await store.load()
    for _ in range(2):
        async with ManagementStore(db_url) as store:
            assert written == await store.load()
            entries, total = await store.audit({})
            assert ([KIND_SERVER], 1) == ([entry.kind for entry in entries], total)
    assert ["0003"] == await scalars(db_url, "SELECT version_num FROM artemis_alembic_version")
    assert [1] == await scalars(db_url, "SELECT version FROM artemis_meta")


async def test_a_store_can_be_closed_and_opened_again(db_url: str) -> None:
    """close() then open() on the same object works; calls while it is not open are
    StoreUnavailable (a node retries them)."""
    store = ManagementStore(db_url)
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.version()
    await store.open()
    await store.open()  # already open: nothing happens
    await store.operate_zone("sha", "svc", "zone-1", "pullout", False, **CONTEXT, now_ms=1)
    await store.close()
    await store.close()
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.load()
    await store.open()
    try:
        assert 1 == await store.version()
        assert frozenset({("sha", "svc", "zone-1", "pullout")}) == (await store.load()).zone_ops
    finally:
        await store.close()


async def test_nodes_that_open_an_empty_database_together_all_succeed(db_url: str) -> None:
    """Concurrent migrations are serialized by the migration lock: one migrates, the rest find
    the schema current."""
    stores = [ManagementStore(db_url, timeout=10.0) for _ in range(3)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        assert [0, 0, 0] == [await store.version() for store in stores]
    finally:
        for store in stores:
            await store.close()
    assert [0] == await scalars(db_url, "SELECT version FROM artemis_meta")


async def test_another_applications_alembic_history_is_left_alone(db_url: str) -> None:
    """The store keeps its schema version in its own table, never in `alembic_version`."""
    db = engine(db_url)
    try:
        async with db.begin() as connection:
            await connection.execute(text(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            await connection.execute(text("INSERT INTO alembic_version VALUES ('theirs')"))
    finally:
        await db.dispose()
    async with ManagementStore(db_url) as store:
        assert 0 == await store.version()
    assert ["theirs"] == await scalars(db_url, "SELECT version_num FROM alembic_version")


# -- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("sqlite:///path/file.db", "sqlite+aiosqlite:///path/file.db"),
    ("sqlite:////var/lib/artemis/file.db", "sqlite+aiosqlite:////var/lib/artemis/file.db"),
    ("mysql://user@host/db", "mysql+asyncmy://user@host/db?charset=utf8mb4"),
    ("mysql://user:pw@host:3306/db", "mysql+asyncmy://user:pw@host:3306/db?charset=utf8mb4"),
    ("mysql://user:p%40ss@host/db", "mysql+asyncmy://user:p%40ss@host/db?charset=utf8mb4"),
    ("mysql://user@host/db?charset=utf8", "mysql+asyncmy://user@host/db?charset=utf8"),
    ("mariadb://user@host/db", "mariadb+asyncmy://user@host/db?charset=utf8mb4"),
    ("postgresql://host/db", "postgresql+asyncpg://host/db"),
    ("postgres://user:pw@host:5432/db", "postgresql+asyncpg://user:pw@host:5432/db"),
    ("postgresql+asyncpg://host/db", "postgresql+asyncpg://host/db"),
    ("postgresql+psycopg://host/db", "postgresql+psycopg://host/db"),
    ("mysql+aiomysql://user@host/db", "mysql+aiomysql://user@host/db"),
    ("sqlite+aiosqlite:///file.db", "sqlite+aiosqlite:///file.db"),
])
def test_plain_urls_get_the_async_driver(given: str, expected: str) -> None:
    """A plain URL names the async driver of its database; one that names a driver is kept."""
    assert expected == async_url(given)


@pytest.mark.parametrize(("given", "message"), [
    ("oracle://host/db", "unsupported database URL scheme 'oracle'"),
    ("http://host/db", "unsupported database URL scheme 'http'"),
    ("not a url", "cannot be parsed"),
    ("sqlite://", "in-memory"),
    ("sqlite:///:memory:", "in-memory"),
])
def test_other_urls_are_refused(given: str, message: str) -> None:
    """An unknown scheme, a non-URL or an in-memory SQLite database is a clear StoreError."""
    with pytest.raises(StoreValueError, match=message):
        ManagementStore(given)


# -- operations -----------------------------------------------------------------------------


async def test_pulling_an_instance_out_and_in(store: ManagementStore) -> None:
    """Add, add again, remove, remove again: each call is one version and one audit row, and
    returns whether it changed anything."""
    assert [True, False] == [
        await store.operate_instance("sha", "svc", "i1", "pullout", False, **CONTEXT, now_ms=t)
        for t in (10, 11)]
    assert 2 == await store.version()
    assert ManagementData(frozenset({("sha", "svc", "i1", "pullout")}), frozenset(),
                          frozenset(), 2) == await store.load()
    assert [True, False] == [
        await store.operate_instance("sha", "svc", "i1", "pullout", True, **CONTEXT, now_ms=t)
        for t in (12, 13)]
    assert ManagementData(frozenset(), frozenset(), frozenset(), 4) == await store.load()
    expected = [
        instance_entry(1, 10, "pullout", False, [], ["pullout"]),
        instance_entry(2, 11, "pullout", False, ["pullout"], ["pullout"]),
        instance_entry(3, 12, "pullout", True, ["pullout"], []),
        instance_entry(4, 13, "pullout", True, [], []),
    ]
    assert (expected, 4) == await store.audit({}, newest_first=False)


async def test_an_instance_holds_several_operations(store: ManagementStore) -> None:
    """Operations of one target add up; before/after list all of them, sorted."""
    for operation, t in (("pullout", 1), ("canary", 2)):
        await store.operate_instance("sha", "svc", "i1", operation, False, **CONTEXT, now_ms=t)
    await store.operate_instance("sha", "svc", "i2", "pullout", False, **CONTEXT, now_ms=3)
    await store.operate_instance("sha", "svc", "i1", "pullout", True, **CONTEXT, now_ms=4)
    expected = [
        instance_entry(1, 1, "pullout", False, [], ["pullout"]),
        instance_entry(2, 2, "canary", False, ["pullout"], ["canary", "pullout"]),
        instance_entry(3, 3, "pullout", False, [], ["pullout"], instance="i2"),
        instance_entry(4, 4, "pullout", True, ["canary", "pullout"], ["canary"]),
    ]
    assert (expected, 4) == await store.audit({}, newest_first=False)
    assert frozenset({("sha", "svc", "i1", "canary"), ("sha", "svc", "i2", "pullout")}) == (
        await store.load()).instance_ops


async def test_server_and_zone_operations(store: ManagementStore) -> None:
    """Servers and zones are pulled out and in like instances, with their own audit kinds."""
    ctx = {**CONTEXT, "reason": None, "extensions": "{}"}
    assert await store.operate_server("sha", "10.0.0.7", "pullout", False, **ctx, now_ms=1)
    assert await store.operate_zone("sha", "svc", "zone-2", "pullout", False, **ctx, now_ms=2)
    assert await store.operate_zone("sha", "svc", "zone-3", "pullout", False, **ctx, now_ms=3)
    assert await store.operate_zone("sha", "svc", "zone-3", "pullout", True, **ctx, now_ms=4)
    assert not await store.operate_server("sha", "10.0.0.8", "pullout", True, **ctx, now_ms=5)
    assert ManagementData(
        frozenset(), frozenset({("sha", "10.0.0.7", "pullout")}),
        frozenset({("sha", "svc", "zone-2", "pullout")}), 5) == await store.load()
    common = {**ctx, "region_id": "sha", "instance_id": None, "operation": "pullout"}
    server = {**common, "kind": KIND_SERVER, "service_id": None, "zone_id": None}
    zone = {**common, "kind": KIND_ZONE, "service_id": "svc", "server_id": None}
    expected = [
        wire.AuditEntry(id=1, create_time=1, server_id="10.0.0.7", complete=False, before=[],
                   after=["pullout"], **server),
        wire.AuditEntry(id=2, create_time=2, zone_id="zone-2", complete=False, before=[],
                   after=["pullout"], **zone),
        wire.AuditEntry(id=3, create_time=3, zone_id="zone-3", complete=False, before=[],
                   after=["pullout"], **zone),
        wire.AuditEntry(id=4, create_time=4, zone_id="zone-3", complete=True, before=["pullout"],
                   after=[], **zone),
        wire.AuditEntry(id=5, create_time=5, server_id="10.0.0.8", complete=True, before=[],
                   after=[], **server),
    ]
    assert (expected, 5) == await store.audit({}, newest_first=False)


async def test_load_returns_exactly_what_was_written(store: ManagementStore) -> None:
    """A random run of adds and removes over a few targets ends in exactly the model's state,
    with one version per call."""
    rng = random.Random(7)
    model: dict[str, set[tuple[str, ...]]] = {"instance": set(), "server": set(), "zone": set()}
    calls = 60
    for t in range(calls):
        region, op, complete = rng.choice(["sha", "fra"]), rng.choice(["pullout", "x"]), (
            rng.random() < 0.4)
        kind = rng.choice(["instance", "server", "zone"])
        if kind == "instance":
            key: tuple[str, ...] = (region, rng.choice(["a", "b"]), rng.choice(["i1", "i2"]), op)
            changed = await store.operate_instance(*key[:3], op, complete, **CONTEXT, now_ms=t)
        elif kind == "server":
            key = (region, rng.choice(["10.0.0.1", "host-b"]), op)
            changed = await store.operate_server(*key[:2], op, complete, **CONTEXT, now_ms=t)
        else:
            key = (region, rng.choice(["a", "b"]), rng.choice(["z1", "z2"]), op)
            changed = await store.operate_zone(*key[:3], op, complete, **CONTEXT, now_ms=t)
        assert ((key in model[kind]) if complete else (key not in model[kind])) == changed
        (model[kind].discard if complete else model[kind].add)(key)
    expected = ManagementData(frozenset(model["instance"]), frozenset(model["server"]),
                              frozenset(model["zone"]), calls)
    assert expected == await store.load()
    assert calls == (await store.audit({}, limit=0))[1]


async def test_concurrent_identical_pull_outs_change_once(store: ManagementStore) -> None:
    """Eight nodes pulling the same instance out at once: one changes it, all are audited."""
    results = await asyncio.gather(*(
        store.operate_instance("sha", "svc", "i1", "pullout", False, **CONTEXT, now_ms=t)
        for t in range(8)))
    assert [True] + [False] * 7 == sorted(results, reverse=True)
    assert ManagementData(frozenset({("sha", "svc", "i1", "pullout")}), frozenset(),
                          frozenset(), 8) == await store.load()
    entries, total = await store.audit({}, newest_first=False)
    assert (8, [[]] + [["pullout"]] * 7) == (total, sorted(entry.before for entry in entries))


async def test_ids_are_kept_and_compared_exactly(store: ManagementStore) -> None:
    """Case, accents and 4-byte characters are kept: 'Svc', 'svc', 'café', 'cafe' and '🚀' are
    five services (the API lower-cases ids before calling the store)."""
    services = ["Svc", "svc", "café", "cafe", "🚀"]
    for t, service in enumerate(services):
        assert await store.operate_instance("sha", service, "i1", "pullout", False, **CONTEXT,
                                            now_ms=t)
    assert {("sha", service, "i1", "pullout") for service in services} == (
        await store.load()).instance_ops
    for service in services:
        entries, total = await store.audit({"service_id": service})
        assert (1, [service]) == (total, [entry.service_id for entry in entries])


async def test_text_that_does_not_fit_is_refused_and_changes_nothing(
        store: ManagementStore) -> None:
    """Values longer than their column, with NUL or with lone surrogates are StoreValueErrors,
    on every backend alike; 256-character ids fit."""
    longest = "s" * 256
    assert await store.operate_instance(longest, longest, longest, "o" * 128, False,
                                        actor="a" * 128, operator_id="p" * 128,
                                        reason="r" * 1024, now_ms=1)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"service": "s" * 257}, "service_id is longer than 256"),
        ({"operation": "o" * 129}, "operation is longer than 128"),
        ({"actor": "a" * 129}, "actor is longer than 128"),
        ({"reason": "r" * 1025}, "reason is longer than 1024"),
        ({"extensions": "e" * 2049}, "extensions is longer than 2048"),
        ({"instance": "i\x00"}, "NUL"),
        ({"instance": "i\ud800"}, "not valid Unicode"),
    ]
    for change, message in bad:
        call = {"region": "sha", "service": "svc", "instance": "i1", "operation": "pullout",
                "complete": False, **CONTEXT, "now_ms": 2, **change}
        with pytest.raises(StoreValueError, match=message):
            await store.operate_instance(**call)
    assert 1 == await store.version()
    assert 1 == (await store.audit({}))[1]


# -- audit ----------------------------------------------------------------------------------


async def _audit_fixture(store: ManagementStore) -> None:
    """Six rows: ids 1-6, created at 100, 200, 200, 300, 400, 500."""
    await store.operate_instance("sha", "a", "i1", "pullout", False, **CONTEXT, now_ms=100)
    await store.operate_instance("sha", "a", "i1", "pullout", True, **CONTEXT, now_ms=200)
    await store.operate_server("sha", "10.0.0.1", "pullout", False, actor="token-b",
                               operator_id="bob", now_ms=200)
    await store.operate_zone("fra", "b", "z1", "pullout", False, **CONTEXT, now_ms=300)
    await store.operate_instance("sha", "b", "i2", "canary", False, **CONTEXT, now_ms=400)
    await store.operate_server("fra", "10.0.0.1", "pullout", True, **CONTEXT, now_ms=500)


async def ids(store: ManagementStore, filters: dict[str, Any], **page: Any) -> tuple[list[int],
                                                                                    int]:
    entries, total = await store.audit(filters, **page)
    return [entry.id for entry in entries], total


async def test_audit_filters(store: ManagementStore) -> None:
    """Each filter is equality on its column, None means empty, and filters combine."""
    await _audit_fixture(store)
    cases: list[tuple[dict[str, Any], list[int]]] = [
        ({}, [6, 5, 4, 3, 2, 1]),
        ({"kind": KIND_INSTANCE}, [5, 2, 1]),
        ({"kind": KIND_SERVER}, [6, 3]),
        ({"kind": KIND_ZONE}, [4]),
        ({"region_id": "fra"}, [6, 4]),
        ({"service_id": "a"}, [2, 1]),
        ({"service_id": None}, [6, 3]),
        ({"instance_id": "i2"}, [5]),
        ({"server_id": "10.0.0.1"}, [6, 3]),
        ({"zone_id": "z1"}, [4]),
        ({"operation": "canary"}, [5]),
        ({"operator_id": "bob"}, [3]),
        ({"actor": "token-b"}, [3]),
        ({"complete": True}, [6, 2]),
        ({"complete": False}, [5, 4, 3, 1]),
        ({"kind": KIND_INSTANCE, "complete": False, "service_id": "a"}, [1]),
        ({"service_id": "A"}, []),
    ]
    for filters, expected in cases:
        assert (expected, len(expected)) == await ids(store, filters), filters


async def test_bad_audit_filters_are_refused(store: ManagementStore) -> None:
    """An unknown column, a value of the wrong type or a page out of range is a
    StoreValueError; the largest offset is fine."""
    for filters, page in [({"token": "x"}, {}), ({"complete": "true"}, {}),
                          ({"service_id": True}, {}), ({}, {"offset": -1}),
                          ({}, {"offset": 2**63}), ({}, {"limit": -1})]:
        with pytest.raises(StoreValueError):
            await store.audit(filters, **page)
    assert ([], 0) == await store.audit({}, offset=2**63 - 1)


async def test_audit_paging_and_order(store: ManagementStore) -> None:
    """offset/limit cut the ordered rows (created_ms, then id) and total counts them all."""
    await _audit_fixture(store)
    assert ([5, 4], 6) == await ids(store, {}, offset=1, limit=2)
    assert ([2, 3], 6) == await ids(store, {}, offset=1, limit=2, newest_first=False)
    assert ([1, 2, 3, 4, 5, 6], 6) == await ids(store, {}, newest_first=False)
    assert ([], 6) == await ids(store, {}, offset=6)
    assert ([], 6) == await ids(store, {}, limit=0)
    assert ([3], 2) == await ids(store, {"server_id": "10.0.0.1"}, offset=1)


async def test_audit_pages_hold_at_most_a_thousand_rows(db_url: str,
                                                        store: ManagementStore) -> None:
    """A larger limit is cut to MAX_AUDIT_PAGE; the total still counts every row."""
    names = ["created_ms", "actor", "operator_id", "kind", "region_id", "operation", "complete",
             "extensions", "before", "after"]
    audit_log = table("audit_log", *(column(name) for name in names))
    row = {"actor": "t", "operator_id": "o", "kind": KIND_SERVER, "region_id": "sha",
           "operation": "pullout", "complete": False, "extensions": "{}", "before": "[]",
           "after": "[]"}
    db = engine(db_url)
    try:
        async with db.begin() as connection:
            await connection.execute(audit_log.insert(),
                                     [{**row, "created_ms": t} for t in range(1005)])
    finally:
        await db.dispose()
    entries, total = await store.audit({}, limit=5000, newest_first=False)
    assert (MAX_AUDIT_PAGE, 1005, 0, 999) == (
        len(entries), total, entries[0].create_time, entries[-1].create_time)


async def test_injection_strings_are_just_data(store: ManagementStore, db_url: str) -> None:
    """Quotes, comments and wildcards in every text field are stored, found and read back as
    they were; no table goes anywhere."""
    for t, evil in enumerate(INJECTIONS):
        ctx = {"actor": evil, "operator_id": evil, "reason": evil, "extensions": evil}
        assert await store.operate_instance(evil, evil, evil, evil, False, **ctx, now_ms=t)
        assert await store.operate_server(evil, evil, evil, False, **ctx, now_ms=t)
        assert await store.operate_zone(evil, evil, evil, evil, False, **ctx, now_ms=t)
    assert ManagementData(
        frozenset((e, e, e, e) for e in INJECTIONS), frozenset((e, e, e) for e in INJECTIONS),
        frozenset((e, e, e, e) for e in INJECTIONS), 3 * len(INJECTIONS)) == await store.load()
    for evil in INJECTIONS:
        for name in ("region_id", "service_id", "operation", "operator_id", "actor"):
            entries, total = await store.audit({name: evil}, newest_first=False)
            assert (3 if name != "service_id" else 2) == total, (name, evil)
            entry = entries[0]
            assert (evil, evil, evil, evil, evil, evil, evil, [evil]) == (
                entry.region_id, entry.service_id, entry.instance_id, entry.operation,
                entry.operator_id, entry.actor, entry.reason, entry.after)
            assert evil == entry.extensions
    assert TABLES == await table_names(db_url)


# -- failures -------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def assert_unavailable(call: Callable[[], Awaitable[object]], within: float) -> str:
    start = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        await call()
    assert time.monotonic() - start < within
    return str(raised.value)


@pytest.mark.parametrize("scheme", ["mysql", "mariadb", "postgresql"])
async def test_a_database_that_is_down_is_unavailable(scheme: str) -> None:
    """A refused connection is StoreUnavailable at once, and the message hides the password."""
    store = ManagementStore(f"{scheme}://root:sekrit@127.0.0.1:{closed_port()}/db", timeout=1.0)
    message = await assert_unavailable(store.open, within=1.5)
    assert "sekrit" not in message


async def test_an_sqlite_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    """A database file in a directory that does not exist is StoreUnavailable."""
    before = set(threading.enumerate())
    store = ManagementStore(f"sqlite:///{tmp_path / 'missing' / 'm.db'}", timeout=1.0)
    await assert_unavailable(store.open, within=1.5)
    # aiosqlite stops the thread of a failed connection in the background: let it finish
    # while this test's event loop still runs
    deadline = time.monotonic() + 5.0
    while set(threading.enumerate()) - before:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("scheme", ["mysql", "postgresql"])
async def test_a_database_that_never_answers_is_unavailable_within_the_timeout(
        scheme: str) -> None:
    """A server that accepts the connection and then says nothing cannot hang open()."""
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        store = ManagementStore(f"{scheme}://root@127.0.0.1:{port}/db", timeout=0.3)
        message = await assert_unavailable(store.open, within=1.3)
        assert "did not answer within 0.3 s" in message
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_write_blocked_by_a_lock_gives_up_within_the_timeout(db_url: str) -> None:
    """While another transaction holds the version row, a write fails with StoreUnavailable
    within the timeout and leaves nothing; once the lock goes, the store works again."""
    async with ManagementStore(db_url, timeout=0.5) as store:
        blocker = engine(db_url)
        try:
            async with blocker.connect() as connection:
                transaction = await connection.begin()
                await connection.execute(text("UPDATE artemis_meta SET version = version + 100"))
                await assert_unavailable(lambda: store.operate_instance(
                    "sha", "svc", "i1", "pullout", False, **CONTEXT, now_ms=1), within=1.5)
                await transaction.rollback()
        finally:
            await blocker.dispose()
        assert await store.operate_instance("sha", "svc", "i1", "pullout", False, **CONTEXT,
                                            now_ms=2)
        assert ManagementData(frozenset({("sha", "svc", "i1", "pullout")}), frozenset(),
                              frozenset(), 1) == await store.load()
        assert [2] == [entry.create_time for entry in (await store.audit({}))[0]]


async def test_mariadb_urls_and_binary_collation() -> None:
    """On MariaDB, a mariadb:// URL works too, and every table of the store is utf8mb4 with the
    binary collation (so ids compare exactly, as on the other backends)."""
    async with fresh_database(_server(MYSQL_ENV, "MariaDB/MySQL")) as url:
        mariadb_url = url.replace("mysql://", "mariadb://", 1)
        try:
            async with ManagementStore(mariadb_url) as store:
                assert store.backend == "mariadb"
                assert await store.operate_instance("sha", "Svc", "i1", "pullout", False,
                                                    **CONTEXT, now_ms=1)
                assert (0, 1) == ((await store.audit({"service_id": "svc"}))[1],
                                  (await store.audit({"service_id": "Svc"}))[1])
        except StoreError as exc:
            if "MariaDB" in str(exc):
                pytest.skip("the MySQL test server is not MariaDB")
            raise
        collations = await scalars(url, (
            "SELECT DISTINCT table_collation FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name <> 'artemis_alembic_version'"))
        assert ["utf8mb4_bin"] == collations



# -- a database that is no longer the one opened --------------------------------------------


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def rescue_copies(folder: Path) -> list[Path]:
    return sorted(folder.glob("m.db.rescued-*"))


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


async def lost_message(call: Callable[[], Awaitable[object]]) -> str:
    with pytest.raises(StoreLost) as raised:
        await call()
    return str(raised.value)


def every_call(store: ManagementStore) -> list[Callable[[], Awaitable[object]]]:
    """A read of each kind and a write of each kind."""
    return [store.version, store.load, lambda: store.audit({}), lambda: store.groups({}),
            lambda: store.operate_instance("sha", "svc", "i2", "pullout", False, **CONTEXT,
                                           now_ms=9),
            lambda: store.delete_groups([1], **CONTEXT, now_ms=9)]


async def test_a_removed_sqlite_file_is_never_recreated_and_its_data_is_rescued(
        tmp_path: Path) -> None:
    """Once its file is removed, every call is StoreLost, no file appears at the path, and
    rescue() copies what the store still holds (audit log included) beside it, once, and
    removes the -wal and -shm files the removed file left."""
    path = tmp_path / "m.db"
    async with ManagementStore(sqlite_url(path)) as store:
        await store.operate_instance("sha", "svc", "i1", "pullout", False, **CONTEXT, now_ms=5)
        written = await store.load()
        path.unlink()
        why = (f"the SQLite database file {path} was removed after this node opened it: "
               "nothing is read or written until the node restarts")
        assert [why] * 6 == [await lost_message(call) for call in every_call(store)]
        assert (False, why) == (path.exists(), store.lost)
        assert ["m.db-shm", "m.db-wal"] == names(tmp_path)
        rescued = await store.rescue()
        assert rescued is not None
        assert [rescued, rescued] == [await store.rescue(), *rescue_copies(tmp_path)]
        assert [rescued.name] == names(tmp_path)
        assert (f"{why}; what it held is saved in {rescued}, which a node that starts with no "
                "file there puts back") == await lost_message(store.load)
    async with ManagementStore(sqlite_url(rescued)) as copy:
        assert written == await copy.load()
        assert [5] == [entry.create_time for entry in (await copy.audit({}))[0]]


async def test_a_replaced_sqlite_file_is_neither_read_nor_written(tmp_path: Path) -> None:
    """A file moved in place of the one opened (an empty database another node made, say) is
    StoreLost: the store reads nothing from it and writes nothing to it."""
    path, other = tmp_path / "m.db", tmp_path / "other.db"
    async with ManagementStore(sqlite_url(path)) as store:
        await store.operate_server("sha", "10.0.0.1", "pullout", False, **CONTEXT, now_ms=1)
        async with ManagementStore(sqlite_url(other)) as empty:
            assert 0 == await empty.version()
        os.replace(other, path)
        why = f"the SQLite database file {path} was replaced by another file after"
        assert [why] * 6 == [(await lost_message(call))[:len(why)]
                             for call in every_call(store)]
        rescued = await store.rescue()
        assert rescued is not None
    assert ([0], [0]) == (await scalars(sqlite_url(path), "SELECT version FROM artemis_meta"),
                          await scalars(sqlite_url(path), "SELECT count(*) FROM audit_log"))
    assert [1] == await scalars(sqlite_url(rescued), "SELECT version FROM artemis_meta")


async def test_a_removed_folder_is_lost_and_says_the_rescue_failed(tmp_path: Path) -> None:
    """With the file's whole folder gone, the store is lost and rescue() is a StoreError that
    names the place it could not write."""
    folder = tmp_path / "gone"
    folder.mkdir()
    async with ManagementStore(sqlite_url(folder / "m.db")) as store:
        for name in os.listdir(folder):
            (folder / name).unlink()
        folder.rmdir()
        assert "was removed" in await lost_message(store.version)
        with pytest.raises(StoreError, match=f"cannot save a rescue copy beside {folder}"):
            await store.rescue()
    assert not folder.exists()


async def test_opening_a_missing_file_puts_back_the_newest_rescue_copy(tmp_path: Path) -> None:
    """open() where no file is moves the newest rescue copy in its place (`restored`); beside
    an existing file it touches none and lists them (`rescue_copies`)."""
    path = tmp_path / "m.db"
    copies = [tmp_path / f"m.db.rescued-{ms}-7" for ms in (900, 1000)]
    for writes, copy in enumerate(copies, start=1):
        async with ManagementStore(sqlite_url(copy)) as store:
            for t in range(writes):
                await store.operate_zone("sha", "svc", "z", f"op{t}", False, **CONTEXT, now_ms=t)
    async with ManagementStore(sqlite_url(path)) as store:
        assert (2, copies[1], (copies[0],)) == (
            await store.version(), store.restored, store.rescue_copies)
    assert [copies[0]] == rescue_copies(tmp_path)
    async with ManagementStore(sqlite_url(path)) as store:
        assert (2, None, (copies[0],)) == (
            await store.version(), store.restored, store.rescue_copies)


async def test_a_version_that_goes_back_is_a_lost_database(db_url: str) -> None:
    """A version below one the store saw (its tables emptied and made anew, another database)
    is StoreLost: writes refuse in their transaction and leave nothing; reopening accepts the
    database as it is."""
    store = ManagementStore(db_url)
    await store.open()
    try:
        for t in range(2):
            await store.operate_instance("sha", "svc", f"i{t}", "pullout", False, **CONTEXT,
                                         now_ms=t)
        db = engine(db_url)
        try:
            async with db.begin() as connection:
                for name in ("instance_operation", "audit_log"):
                    await connection.execute(text(f"DELETE FROM {name}"))  # noqa: S608
                await connection.execute(text("UPDATE artemis_meta SET version = 0"))
        finally:
            await db.dispose()
        why = ("the version went back from 2 to 0 (another database, tables created again, or "
               "an older backup) after this node opened it: nothing is read or written until "
               "the node restarts")
        assert [why] * 6 == [await lost_message(call) for call in every_call(store)]
        assert [0] == await scalars(db_url, "SELECT version FROM artemis_meta")
        assert await store.rescue() is None
        await store.close()
        await store.open()
        assert (0, EMPTY) == (await store.version(), await store.load())
    finally:
        await store.close()


async def test_a_missing_version_row_is_a_lost_database_once_one_was_seen(db_url: str) -> None:
    """The version row gone from under a store that read it is StoreLost; a store that never
    read one says only that the row is missing."""
    async with ManagementStore(db_url) as store:
        await store.operate_instance("sha", "svc", "i1", "pullout", False, **CONTEXT, now_ms=1)
        db = engine(db_url)
        try:
            async with db.begin() as connection:
                await connection.execute(text("DELETE FROM artemis_meta"))
        finally:
            await db.dispose()
        async with ManagementStore(db_url) as fresh:
            with pytest.raises(StoreError, match="the version row is missing") as raised:
                await fresh.version()
            assert StoreError is type(raised.value)
        assert "the version row is missing" in await lost_message(store.load)


async def test_loads_and_writes_racing_never_look_like_a_version_going_back(
        db_url: str) -> None:
    """A load whose snapshot began before a write of the same store committed reads an older
    version; that is not a lost database."""
    async with ManagementStore(db_url, timeout=10.0) as store:
        async def write(t: int) -> object:
            return await store.operate_instance("sha", "svc", f"i{t}", "pullout", False,
                                                **CONTEXT, now_ms=t)

        results = await asyncio.gather(*(call for t in range(30) for call in (
            write(t), store.load(), store.version())), return_exceptions=True)
        assert [] == [r for r in results if isinstance(r, BaseException)]
        assert (30, None) == (await store.version(), store.lost)
