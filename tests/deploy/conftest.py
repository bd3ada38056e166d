"""Fixtures of the deployment tests: the Containerfile carried out once per session (see
containerfile.py), and its entry point run the way a container runs it.

As root, `run_container` starts the entry point as PID 1 of a new PID namespace, in a mount
namespace whose root filesystem is read-only, under the image's USER (numeric ids, no
capabilities, no new privileges): what `docker run --read-only` or a Kubernetes pod with
`readOnlyRootFilesystem` gives. Not as root, it starts the entry point as a plain process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.deploy.containerfile import Image, build
from tests.process.conftest import free_port, poll

ROOT = Path(__file__).resolve().parents[2]
ISOLATED = os.geteuid() == 0 and shutil.which("unshare") is not None \
    and shutil.which("setpriv") is not None


@pytest.fixture(scope="session")
def image() -> Iterator[Image]:
    """The Containerfile's build carried out in a fresh folder (world-readable, so that the
    image's unprivileged user can read it)."""
    workspace = Path(tempfile.mkdtemp(prefix="artemis-image-"))
    workspace.chmod(0o755)
    try:
        yield build(ROOT / "Containerfile", ROOT, workspace / "image")
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def as_user(image: Image, command: list[str]) -> list[str]:
    """`command` under the image's USER when we are root (as `docker exec` runs a check)."""
    if os.geteuid() != 0:
        return command
    uid, gid = image.user
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *command]


@dataclass
class Container:
    """The entry point running; `pid` is the node's process (PID 1 inside when isolated)."""

    process: subprocess.Popen[bytes]
    pid: int
    port: int
    log: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, signum: int, deadline: float) -> int | None:
        """Send `signum` to the node (as the engine does) and wait for the exit code."""
        if self.process.poll() is None:
            os.kill(self.pid, signum)
        try:
            return self.process.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            return None


def run_container(image: Image, log: Path, env: Mapping[str, str],
                  volumes: tuple[Path, ...] = ()) -> Container:
    """Start the image's entry point with its ENV plus `env` (as `docker run -e`), on a free
    port of 127.0.0.1, `volumes` left writable; returns once the node's process exists."""
    port = free_port()
    full_env = {**image.env, "ARTEMIS_HOST": "127.0.0.1", "ARTEMIS_PORT": str(port), **env}
    command = image.entrypoint
    if ISOLATED:
        binds = "".join(f'mount --bind "{v}" "{v}" && ' for v in volumes)
        script = binds + 'mount -o remount,bind,ro / && exec "$@"'
        command = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                   "--mount-proc", "/bin/sh", "-c", script, "sh", *as_user(image, command)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env=full_env, cwd=image.workdir)
    if not ISOLATED:
        return Container(process, process.pid, port, log, full_env)

    def node_pid() -> int | None:
        if process.poll() is not None:
            pytest.fail(f"the entry point exited {process.returncode}: {log.read_text()}")
        for child in psutil.Process(process.pid).children(recursive=True):
            try:
                if child.uids().real == image.user[0] and "artemis" in " ".join(child.cmdline()):
                    return child.pid
            except psutil.NoSuchProcess:
                continue
        return None

    return Container(process, poll(node_pid, 10.0, "the node's process"), port, log, full_env)


StartContainer = Callable[..., Container]


@pytest.fixture
def start_container(image: Image, tmp_path: Path) -> Iterator[StartContainer]:
    """Start the image's entry point (see run_container); every container still running at
    teardown is killed."""
    started: list[Container] = []

    def start(env: Mapping[str, str] | None = None,
              volumes: tuple[Path, ...] = ()) -> Container:
        running = run_container(image, tmp_path / f"container-{len(started)}.log", env or {},
                                volumes)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.stop(signal.SIGKILL, 10.0)
