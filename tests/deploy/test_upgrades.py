"""What docs/deployment.md says about upgrades, backups and the database user, checked:

  * a node migrates an older schema when it starts, and every migration only adds (tables,
    indexes, nullable or defaulted columns), so nodes of the previous version keep working
    against the new schema during a rolling upgrade;
  * a node of an older version that starts against a newer schema serves, but without
    management, and says why;
  * an online backup of a SQLite management database restores;
  * the SQL of docs/deployment.md makes a MariaDB/MySQL and a PostgreSQL user with enough
    privileges to migrate and to write (when ARTEMIS_TEST_MYSQL_URL / ARTEMIS_TEST_POSTGRES_URL
    name a server, as in tests/server/test_store.py).
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from artemis.server.store import async_url
from artemis.server.store.engine import migration_config
from tests.process.conftest import RunningNode, StartNode, start_node

__all__ = ["start_node"]  # the fixture
ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ROOT / "src" / "artemis" / "server" / "store" / "migrations" / "versions"
ADMIN = "upgrade-admin-token-0123456789"
ADDING = {"create_table", "create_index", "add_column", "bulk_insert"}


def revisions() -> list[tuple[str, Path]]:
    """(revision, module) of every shipped migration, oldest first."""
    found = []
    for path in sorted(VERSIONS.glob("r*.py")):
        match = re.search(r'^revision: Final = "(\w+)"', path.read_text(), re.MULTILINE)
        assert match is not None, path
        found.append((match.group(1), path))
    return found


def upgrade_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    (upgrade,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"]
    return [n for n in ast.walk(upgrade) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
            and n.func.value.id == "op"]


def _adds_safely(call: ast.Call) -> bool:
    """op.add_column(table, Column(..., nullable=True | server_default=...))."""
    column = call.args[1]
    if not isinstance(column, ast.Call):
        return False
    keywords = {k.arg: k.value for k in column.keywords}
    nullable = keywords.get("nullable")
    return "server_default" in keywords or (
        isinstance(nullable, ast.Constant) and nullable.value is True)


def test_every_migration_only_adds() -> None:
    """Each upgrade creates tables and indexes, inserts rows, and adds only columns that may be
    null or have a default: what a node of the previous version never reads, or need not
    write. (A migration that renames, drops or changes a column fails this test, and needs
    the upgrade procedure of docs/deployment.md to change first.)"""
    found = {}
    for revision, path in revisions():
        calls = upgrade_calls(path)
        found[revision] = sorted({c.func.attr for c in calls if c.func.attr not in ADDING}
                                 | {f"unsafe add_column line {c.lineno}" for c in calls
                                    if c.func.attr == "add_column" and not _adds_safely(c)})
    assert {revision: [] for revision, _ in revisions()} == found


def _migrate(path: Path, revision: str) -> None:
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        command.upgrade(migration_config(connection), revision)
    engine.dispose()


def _schema_version(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        (version,) = connection.execute(
            "SELECT version_num FROM artemis_alembic_version").fetchone()
    return str(version)


def _management(node: RunningNode) -> dict[str, Any]:
    with node.client() as client:
        answer: dict[str, Any] = client.get("/api/status/management.json").json()
    return answer


def test_a_node_migrates_an_older_schema(start_node: StartNode, tmp_path: Path) -> None:
    """A database left at each older revision is migrated to the newest by a node that starts
    on it, and serves management."""
    older, head = revisions()[:-1], revisions()[-1][0]
    results = {}
    for revision, _ in older:
        path = tmp_path / f"at-{revision}.db"
        _migrate(path, revision)
        node = start_node("--database", f"sqlite:///{path}", "--admin-token", ADMIN)
        results[revision] = (_management(node)["available"], _schema_version(path))
        node.stop()
    assert {revision: (True, head) for revision, _ in older} == results


def test_an_older_node_against_a_newer_schema(start_node: StartNode, tmp_path: Path) -> None:
    """A node that does not know the database's revision (a node of the previous version
    started after the upgrade migrated the database) comes up after management_start_timeout
    with nothing pulled out, and reports management unavailable with the reason."""
    path = tmp_path / "newer.db"
    _migrate(path, "head")
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE artemis_alembic_version SET version_num = '9999'")
    node = start_node("--database", f"sqlite:///{path}", "--admin-token", ADMIN,
                      "--management-start-timeout", "1")
    status = _management(node)
    with node.client() as client:
        metrics = client.get("/metrics").text
    assert (False, "StoreError: migrate: CommandError: Can't locate revision identified by "
                   "'9999'", True) == (
        status["available"], status["lastError"], "artemis_management_available 0.0" in metrics)


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="needs the sqlite3 command")
def test_an_online_sqlite_backup_restores(start_node: StartNode, tmp_path: Path) -> None:
    """`sqlite3 FILE ".backup COPY"` while the node runs copies what was written; a node
    started on the copy (all nodes stopped, the copy put in place) has it, and not what was
    written after the backup."""
    database, backup = tmp_path / "management.db", tmp_path / "backup.db"
    url = f"sqlite:///{database}"
    node = start_node("--database", url, "--admin-token", ADMIN)
    _pull_out(node, "10.0.0.1")
    subprocess.run(["sqlite3", str(database), f".backup '{backup}'"], check=True, timeout=30,
                   capture_output=True)
    _pull_out(node, "10.0.0.2")
    node.stop()
    for leftover in tmp_path.glob("management.db*"):
        leftover.unlink()
    shutil.copy(backup, database)
    restored = start_node("--database", url, "--admin-token", ADMIN)
    with restored.client() as client:
        servers = client.post("/api/management/all-server-operations.json",
                              json={"regionId": "SHA"},
                              headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert ["10.0.0.1"] == [s["serverKey"]["serverId"]
                            for s in servers["allServerOperations"]]


def _pull_out(node: RunningNode, server: str) -> None:
    with node.client() as client:
        answer = client.post("/api/management/operate-server.json", headers={
            "Authorization": f"Bearer {ADMIN}"}, json={
            "serverKey": {"regionId": "SHA", "serverId": server}, "operation": "pullout",
            "operationComplete": False, "operatorId": "ops"}).json()
    assert "success" == answer["responseStatus"]["status"], answer


def documented_sql(backend: str) -> list[str]:
    """The statements of docs/deployment.md's ```sql block whose first line names `backend`."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    for body in re.findall(r"```sql\n(.*?)```", text, re.DOTALL):
        first, _, rest = body.partition("\n")
        if backend in first:
            return [s.strip() for s in rest.split(";") if s.strip()]
    raise AssertionError(f"no ```sql block for {backend} in docs/deployment.md")


@pytest.mark.parametrize("backend", ["MariaDB", "PostgreSQL"])
def test_the_documented_database_user_can_run_a_node(backend: str, start_node: StartNode,
                                                     tmp_path: Path) -> None:
    """A user made by the documented SQL (on a fresh database of the same name) lets a node
    migrate the empty database and write a pull-out."""
    server = os.environ.get("ARTEMIS_TEST_MYSQL_URL" if backend == "MariaDB"
                            else "ARTEMIS_TEST_POSTGRES_URL")
    if not server:
        pytest.skip(f"no {backend} server named (ARTEMIS_TEST_*_URL)")
    name, password = f"artemis_test_{secrets.token_hex(5)}", secrets.token_hex(12)
    statements = [re.sub(r"\bartemis\b", name, s).replace("'PASSWORD'", f"'{password}'")
                  for s in documented_sql(backend)]
    cleanup = ([f"DROP DATABASE IF EXISTS {name}", f"DROP USER IF EXISTS '{name}'@'%'"]
               if backend == "MariaDB" else
               [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"DROP ROLE IF EXISTS {name}"])
    url = make_url(server).set(username=name, password=password, database=name)
    try:
        asyncio.run(_execute(server, statements))
        node = start_node("--database", url.render_as_string(hide_password=False),
                          "--admin-token", ADMIN)
        _pull_out(node, "10.0.0.1")
        status = _management(node)
        node.stop()
    finally:
        asyncio.run(_execute(server, cleanup))
    assert (True, {"instances": 0, "servers": 1, "zones": 0}) == (
        status["available"], status["pulledOut"])


async def _execute(server: str, statements: list[str]) -> None:
    admin = create_async_engine(async_url(server), poolclass=NullPool,
                                isolation_level="AUTOCOMMIT")
    try:
        mysql = admin.dialect.name in ("mysql", "mariadb")
        async with admin.connect() as connection:
            for statement in statements:  # the MySQL driver formats with %: 'user'@'%' is %%
                await connection.exec_driver_sql(statement.replace("%", "%%") if mysql
                                                 else statement)
    finally:
        await admin.dispose()

