"""Fixtures of the real-process tests: `python -m artemis server` on 127.0.0.1, one per test.

A node is ready when GET /health answers 200 (polled, with a deadline); it is stopped by its pid,
SIGTERM first and SIGKILL if it does not exit in time. A node serving TLS is started with
`scheme="https"` and `verify=<CA file>`, which its health polls and `client()` use; `extra_env`
adds environment variables (OTEL_* ones, say).
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

START_DEADLINE = 15.0
STOP_DEADLINE = 5.0
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(probe: Callable[[], T | None], deadline: float, what: str,
         interval: float = 0.02) -> T:
    """Call `probe` until it returns something other than None; fail after `deadline` s."""
    end = time.monotonic() + deadline
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {deadline} s")
        time.sleep(interval)


@dataclass
class RunningNode:
    """One `artemis server` process and where it answers."""

    process: subprocess.Popen[bytes]
    port: int
    context_path: str
    log: Path
    scheme: str = "http"
    verify: ssl.SSLContext | bool = True

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{self.context_path}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=5.0, verify=self.verify)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int, deadline: float = STOP_DEADLINE) -> int | None:
        """Send `signum` and wait for the exit code; None if it did not exit in time."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)
        try:
            return self.process.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still running after the deadline."""
        if self.signal(signal.SIGTERM) is None:
            self.process.kill()
            self.process.wait(timeout=STOP_DEADLINE)


StartNode = Callable[..., RunningNode]


def _healthy(node: RunningNode) -> bool | None:
    if node.process.poll() is not None:
        pytest.fail(f"artemis server exited with {node.process.returncode}:\n{node.output()}")
    try:
        response = httpx.get(node.url + "/health", timeout=1.0, verify=node.verify)
    except httpx.TransportError:
        return None
    return True if response.status_code == 200 else None


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., RunningNode]]:
    """Start `artemis server --port <free> --region SHA --zone zone-1 *flags`; the node is up
    (GET /health is 200) when this returns. Every node started is stopped at teardown."""
    started: list[RunningNode] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTEMIS_")}

    def start(*flags: str, context_path: str = "", scheme: str = "http",
              verify: str | bool = True, extra_env: Mapping[str, str] | None = None
              ) -> RunningNode:
        port = free_port()
        log = tmp_path / f"artemis-{port}.log"
        command = [sys.executable, "-m", "artemis", "server", "--port", str(port),
                   "--region", "SHA", "--zone", "zone-1", *flags]
        if context_path:
            command += ["--context-path", context_path]
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                       env={**env, **(extra_env or {})})
        trust = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        node = RunningNode(process, port, context_path, log, scheme, trust)
        started.append(node)
        poll(lambda: _healthy(node), START_DEADLINE, "artemis server answering /health")
        return node

    yield start
    for node in started:
        node.stop()
