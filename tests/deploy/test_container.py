"""The Containerfile: its build steps run, and its entry point runs as a container would run it
(read-only root filesystem, unprivileged user, PID 1 of its own PID namespace when the tests
run as root; see conftest.py). No container engine is needed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest

from artemis import __version__
from artemis.server.settings import SETTINGS, env_name
from tests.deploy.conftest import ISOLATED, ROOT, Container, StartContainer, as_user
from tests.deploy.containerfile import Image, parse
from tests.process.conftest import free_port, poll
from tests.process.test_mutual_tls import authority, signed

DOCKER_STOP_GRACE = 10.0  # seconds `docker stop` waits before SIGKILL (Kubernetes: 30)
ADMIN = "container-admin-token-0123456789"
isolated = pytest.mark.skipif(not ISOLATED, reason="needs root, unshare and setpriv")


def health(image: Image, running: Container) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, with the container's environment, as its user."""
    return subprocess.run(as_user(image, image.health), env=running.env, capture_output=True,
                          text=True, timeout=30, check=False, cwd=image.workdir)


def up(running: Container, path: str = "") -> bool | None:
    try:
        answer = httpx.get(f"{running.url}{path}/health", timeout=2.0)
    except httpx.TransportError:
        return None
    return True if answer.status_code == 200 else None


def files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_the_recipe() -> None:
    """Two stages on python:3.11-slim: the build stage makes a wheel; the runtime stage copies
    only the virtual environment and the health check, runs as an unprivileged user, exposes
    the port it sets, stops on SIGTERM, checks /health and runs `artemis server`."""
    args, (build, runtime) = parse((ROOT / "Containerfile").read_text())
    copies = runtime.all("COPY")
    assert ({"PYTHON_IMAGE": "python:3.11-slim-bookworm"}, "build", None,
            ["--from=build /opt/artemis /opt/artemis",
             "deploy/container/healthcheck.py /opt/artemis/healthcheck.py"],
            "10001:10001", "8080", "SIGTERM", '["artemis", "server"]') == (
        args, build.name, runtime.name, copies, runtime.one("USER"), runtime.one("EXPOSE"),
        runtime.one("STOPSIGNAL"), runtime.one("ENTRYPOINT"))
    assert build.base == runtime.base == "python:3.11-slim-bookworm"
    assert "ARTEMIS_PORT=8080" in runtime.one("ENV")


def test_the_build_context_holds_what_the_recipe_copies() -> None:
    """.containerignore lets in every file the COPY steps name and keeps out the virtual
    environment, git and the tests; .dockerignore is the same file."""
    ignore = (ROOT / ".containerignore").read_text()
    assert ignore == (ROOT / ".dockerignore").read_text()
    patterns = [line.strip() for line in ignore.splitlines()
                if line.strip() and not line.startswith("#")]
    _, stages = parse((ROOT / "Containerfile").read_text())
    copied = [word for stage in stages for copy in stage.all("COPY")
              if not copy.startswith("--from") for word in copy.split()[:-1]]
    wanted = [str(p.relative_to(ROOT)) for name in copied
              for p in ([ROOT / name] if (ROOT / name).is_file() else (ROOT / name).rglob("*"))
              if p.is_file() and "__pycache__" not in p.parts]
    assert ([], [".venv/bin/python", ".git/HEAD", "tests/__init__.py",
                 "src/artemis/__pycache__/x.pyc"]) == (
        [f for f in wanted if _ignored(patterns, f)],
        [f for f in (".venv/bin/python", ".git/HEAD", "tests/__init__.py",
                     "src/artemis/__pycache__/x.pyc") if _ignored(patterns, f)])


def _ignored(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        regex = re.escape(body).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*") \
            .replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(regex, c) for c in candidates):
            ignored = not negated
    return ignored


def test_the_build_installs_the_wheel_with_the_server_extras(image: Image) -> None:
    """The build stage made one wheel of this version and installed it with the server, MySQL,
    PostgreSQL and OpenTelemetry extras, from wheels only."""
    venv = image.path("/opt/artemis")
    version = subprocess.run([venv / "bin" / "artemis", "--version"], capture_output=True,
                             text=True, timeout=30, check=False)
    imports = subprocess.run([venv / "bin" / "python", "-c",
                              "import granian, uvloop, sqlalchemy, alembic, aiosqlite, asyncmy, "
                              "asyncpg, opentelemetry.sdk, artemis.server.runner"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert ([f"artemis_registry-{__version__}-py3-none-any.whl"],
            f"artemis, version {__version__}\n", 0, "") == (
        [w.name for w in image.wheels], version.stdout + version.stderr, imports.returncode,
        imports.stderr)


def test_the_image_sets_only_known_settings(image: Image) -> None:
    """Every ARTEMIS_* variable the image sets is a setting of the node."""
    known = {env_name(name) for name in SETTINGS}
    assert [] == [k for k in image.env if k.startswith("ARTEMIS_") and k not in known]


def test_the_entry_point_serves_and_stops_on_sigterm(image: Image,
                                                     start_container: StartContainer) -> None:
    """Configured by ARTEMIS_* variables alone, the node serves (as the image's user, PID 1 of
    its namespace, on a read-only root), its health check passes while it is up and fails once
    it is down, and SIGTERM stops it with exit 0 within `docker stop`'s grace, having written
    nothing into the image."""
    before = files(image.root)
    running = start_container({"ARTEMIS_CONTEXT_PATH": "/artemis-web",
                               "ARTEMIS_REGION": "SHA", "ARTEMIS_ZONE": "sha-z1",
                               "ARTEMIS_LEASE_TTL": "30", "ARTEMIS_ADMIN_TOKEN": ADMIN})
    poll(lambda: up(running, "/artemis-web"), 15.0, "the node answering /health")
    bearer = {"Authorization": f"Bearer {ADMIN}"}
    config = httpx.get(f"{running.url}/artemis-web/api/status/config.json", headers=bearer,
                       timeout=5.0).json()["properties"]
    passing = health(image, running)
    httpx.post(f"{running.url}/artemis-web/api/admin/node-status.json", headers=bearer,
               json={"status": "down"}, timeout=5.0).raise_for_status()
    failing = health(image, running)
    with open(f"/proc/{running.pid}/status") as status:
        lines = dict(line.split(":", 1) for line in status.read().splitlines())
    with open(f"/proc/{running.pid}/mountinfo") as mounts:  # fields: id parent dev root point opts
        root_options = [m.split()[5] for m in mounts.read().splitlines() if m.split()[4] == "/"]
    children = psutil.Process(running.pid).children(recursive=True)
    code = running.stop(signal.SIGTERM, DOCKER_STOP_GRACE)
    assert ({"region": "SHA", "zone": "sha-z1", "context_path": "/artemis-web",
             "lease_ttl": "30.0", "log_format": "json"},
            0, "200", 1, "503") == (
        {k: config[k] for k in ("region", "zone", "context_path", "lease_ttl", "log_format")},
        passing.returncode, passing.stdout.split()[1], failing.returncode,
        failing.stdout.split()[1])
    assert (0, True) == (code, '"artemis node http://127.0.0.1:' in running.output()
                         and 'stopped"' in running.output())
    assert before == files(image.root)
    assert [] == children  # no child process: PID 1 needs no init to reap any
    if ISOLATED:
        uid, gid = image.user
        assert ([str(uid)] * 4, [str(gid)] * 4, "1", "0000000000000000", "ro") == (
            lines["Uid"].split(), lines["Gid"].split(), lines["NSpid"].split()[-1],
            lines["CapEff"].strip(), root_options[-1].split(",")[0])


@isolated
def test_a_volume_holds_the_sqlite_database(image: Image, start_container: StartContainer,
                                            tmp_path: Path) -> None:
    """With the root read-only, a volume at the image's WORKDIR holds a SQLite management
    database: a pull-out is written there and survives a restart of the container."""
    volume = image.workdir / "volume-test"
    volume.mkdir()
    os.chown(volume, *image.user)
    env = {"ARTEMIS_DATABASE": f"sqlite:///{volume}/management.db", "ARTEMIS_ADMIN_TOKEN": ADMIN}
    bearer = {"Authorization": f"Bearer {ADMIN}"}
    pull_out = {"serverKey": {"regionId": "default", "serverId": "10.0.0.9"},
                "operation": "kernel-upgrade", "operationComplete": False, "operatorId": "ops"}
    try:
        first = start_container(env, volumes=(volume,))
        poll(lambda: up(first), 15.0, "the node answering /health")
        wrote = httpx.post(f"{first.url}/api/management/operate-server.json",
                           headers=bearer, json=pull_out, timeout=5.0).json()
        assert 0 == first.stop(signal.SIGTERM, DOCKER_STOP_GRACE)
        second = start_container(env, volumes=(volume,))
        poll(lambda: up(second), 15.0, "the node answering /health")
        held = httpx.get(f"{second.url}/api/status/management.json", timeout=5.0).json()
        assert ("success", {"instances": 0, "servers": 1, "zones": 0}) == (
            wrote["responseStatus"]["status"], held["pulledOut"])
        assert 0 == second.stop(signal.SIGTERM, DOCKER_STOP_GRACE)
    finally:
        subprocess.run(["rm", "-rf", str(volume)], check=True)


def test_the_health_check_fails_when_nothing_answers(image: Image, tmp_path: Path) -> None:
    """No node on the port: the health check exits 1 and says why."""
    env = {**image.env, "ARTEMIS_PORT": str(free_port())}
    done = subprocess.run(image.health, env=env, capture_output=True, text=True, timeout=30,
                          check=False)
    assert (1, "unhealthy: http://127.0.0.1:") == (done.returncode, done.stderr[:28])


@pytest.mark.skipif(subprocess.run(["which", "openssl"], capture_output=True,
                                   check=False).returncode != 0, reason="needs openssl")
def test_the_health_check_under_mutual_tls(image: Image, start_container: StartContainer) -> None:
    """Under mutual TLS (ARTEMIS_TLS_CA) the health check shows the node's own certificate, as
    peers do, and passes; a client without one is refused at the handshake."""
    folder = image.root / "etc" / "artemis" / "tls-test"
    folder.mkdir(parents=True)
    try:
        ca = authority(folder, "cluster")
        cert, key = signed(folder, "node", ca, "serverAuth,clientAuth")
        for path in folder.iterdir():
            path.chmod(0o644)  # a mounted secret the node's user reads
        running = start_container({"ARTEMIS_TLS_CERT": str(cert), "ARTEMIS_TLS_KEY": str(key),
                                   "ARTEMIS_TLS_CA": str(ca[0])})

        checked = poll(lambda: r if (r := health(image, running)).returncode == 0 else None,
                       15.0, "the health check passing")
        try:
            httpx.get(f"https://127.0.0.1:{running.port}/health", verify=False,  # noqa: S501
                      timeout=2.0)
            refused = "answered"
        except httpx.TransportError as exc:
            refused = type(exc).__name__
        assert (f"https://127.0.0.1:{running.port}/health: 200", True) == (
            checked.stdout.split(" {")[0], refused in ("ConnectError", "ReadError"))
        assert 0 == running.stop(signal.SIGTERM, DOCKER_STOP_GRACE)
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=True)
