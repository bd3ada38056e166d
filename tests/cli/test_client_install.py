"""The light client install: the distribution's base dependencies are all `import artemis.client`
and the client commands of `artemis` need.

A fresh virtual environment gets the project (`pip install --no-deps`) and the base dependencies
pyproject.toml declares, nothing else; there the client imports, the client commands answer a
real node (started from this environment), the server's libraries are absent, and `artemis server`
says which extra to install. It needs the package index (CI has it): without it, pip fails and so
does the test, with pip's output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from artemis.cli import cli, server
from tests.process.conftest import StartNode

ROOT = Path(__file__).resolve().parents[2]
PIP_DEADLINE = 300.0
SERVER_ONLY = ("granian", "uvloop", "aiohttp", "prometheus_client", "opentelemetry",
               "sqlalchemy", "alembic", "aiosqlite", "asyncmy", "asyncpg")
DRIVERS = ("asyncmy", "asyncpg")


def base_dependencies() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements: list[str] = project["dependencies"]
    return requirements


def run(*command: str | Path, deadline: float = 60.0,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True,
                          timeout=deadline, env=env, check=False)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, done.args))} exited with {done.returncode}:\n"
                    f"{done.stdout}\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ of a venv with the project and its base dependencies only."""
    venv = tmp_path_factory.mktemp("light") / "venv"
    ok(run(sys.executable, "-m", "venv", venv))
    pip = [venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "--quiet",
           "install"]
    ok(run(*pip, "--no-deps", ROOT, deadline=PIP_DEADLINE))
    ok(run(*pip, *base_dependencies(), deadline=PIP_DEADLINE))
    return venv / "bin"


def test_base_dependencies_are_the_clients() -> None:
    """The base dependencies are the client's five libraries; the server's are extras."""
    names = sorted(r.split(">")[0].split("[")[0].split(";")[0].strip()
                   for r in base_dependencies())
    assert ["click", "httpx", "msgspec", "rich", "websockets"] == names


def test_the_client_imports_without_the_servers_libraries(light: Path) -> None:
    """`import artemis.client` works; none of the server's libraries is there to import."""
    probe = ("import importlib.util, json, sys\n"
             "import artemis.client, artemis.cli\n"
             f"print(json.dumps([m for m in {list(SERVER_ONLY)!r} "
             "if importlib.util.find_spec(m) is not None]))\n")
    assert [] == json.loads(ok(run(light / "python", "-c", probe)))


def test_version_and_help_work(light: Path) -> None:
    """`artemis --version` is the package's version; `artemis services --help` answers."""
    from artemis import __version__

    version = ok(run(light / "artemis", "--version"))
    helped = ok(run(light / "artemis", "services", "--help"))
    assert (f"artemis, version {__version__}\n", True) == (
        version, helped.startswith("Usage: artemis services"))


def test_client_commands_answer_a_real_node(light: Path, start_node: StartNode) -> None:
    """`artemis instances` of the light install reads a node's instances, and a management
    command reports the node's refusal."""
    node = start_node()
    item = {"serviceId": "light.demo", "instanceId": "a", "url": "http://10.0.0.1:80",
            "ip": "10.0.0.1", "port": 80, "regionId": "SHA", "zoneId": "zone-1", "status": "up"}
    answer = httpx.post(node.url + "/api/registry/register.json", json={"instances": [item]},
                        timeout=5.0).json()
    assert "success" == answer["responseStatus"]["status"], answer
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTEMIS_")}
    found = ok(run(light / "artemis", "instances", "light.demo", "--server", node.url,
                   "--region", "SHA", "--json", env=env))
    refused = run(light / "artemis", "pulled-out", "--server", node.url, "--region", "SHA",
                  env=env)
    assert ([{"instanceId": "a", "url": "http://10.0.0.1:80", "ip": "10.0.0.1", "port": 80,
              "zone": "zone-1", "status": "up", "group": None, "pulledOutBy": []}],
            (1, "artemis: service-unavailable: management is not configured on this node "
                "(no database)\n")) == (json.loads(found), (refused.returncode, refused.stderr))


def test_server_without_the_server_extra_names_it(light: Path) -> None:
    """`artemis server` in the light install exits 1 with one line: install the extra."""
    done = run(light / "artemis", "server", "--port", "0")
    said = done.stderr.splitlines()
    assert (1, "", 1, True, True) == (
        done.returncode, done.stdout, len(said),
        said[0].startswith("artemis: artemis server needs artemis-registry[server] (missing: "),
        said[0].endswith(": pip install 'artemis-registry[server]'"))


@pytest.mark.parametrize(("database", "missing"), [
    ("", {}),
    ("sqlite:////tmp/artemis.db", {}),
    ("mysql://root@127.0.0.1/artemis", {"mysql": ["asyncmy"]}),
    ("mariadb://root@127.0.0.1/artemis", {"mysql": ["asyncmy"]}),
    ("postgresql://postgres@127.0.0.1/artemis", {"postgres": ["asyncpg"]}),
    ("postgres+asyncpg://postgres@127.0.0.1/artemis", {"postgres": ["asyncpg"]}),
])
def test_a_database_needs_its_drivers_extra(monkeypatch: pytest.MonkeyPatch, database: str,
                                            missing: dict[str, list[str]]) -> None:
    """A database URL needs its driver's extra: mysql/mariadb [mysql], postgresql [postgres]."""
    monkeypatch.setattr(server, "_installed", lambda module: module not in DRIVERS)
    assert missing == server.missing_extras(database)


def test_server_with_a_database_whose_driver_is_missing_names_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`artemis server --database mysql://...` without asyncmy: one line, exit 1, no node."""
    monkeypatch.setattr(server, "_installed", lambda module: module not in DRIVERS)
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ARTEMIS_")}
    done = CliRunner(env=unset).invoke(cli, ["server", "--database", "mysql://root@db/artemis",
                                             "--admin-token", "t" * 16], prog_name="artemis")
    assert (1, "artemis: artemis server needs artemis-registry[mysql] (missing: asyncmy): "
               "pip install 'artemis-registry[mysql]'\n") == (done.exit_code, done.stderr)


def test_extra_of_names_the_extra_of_a_module() -> None:
    """Drivers are their databases' extras, the OpenTelemetry SDK and exporter [otel], the rest
    [server]."""
    assert ["mysql", "postgres", "otel", "otel", "server", "server"] == [
        server.extra_of(m) for m in ("asyncmy", "asyncpg", "opentelemetry.sdk.trace",
                                     "opentelemetry.exporter.otlp", "opentelemetry", "granian")]
