"""What the CLI tests share: instances as the test node (region SHA, zone zone-1) takes them, calls
to the node, `artemis` in this process (CliRunner) or as a real process read line by line."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from artemis.cli import cli
from tests.process.conftest import RunningNode, poll

SERVICE = "demo.service"
DEADLINE = 10.0
TOKEN = "cli-test-admin-token-0123456789"  # noqa: S105 - a test secret
ENV = {k: v for k, v in os.environ.items() if not k.startswith("ARTEMIS_")}


def instance(instance_id: str, **fields: Any) -> dict[str, Any]:
    """An instance of SERVICE as a client registers it with the test node (region SHA)."""
    number = ord(instance_id[-1]) - ord("a") + 5
    return {"serviceId": SERVICE, "instanceId": instance_id, "url": f"http://10.0.0.{number}:80",
            "ip": f"10.0.0.{number}", "port": 80, "regionId": "SHA", "zoneId": "zone-1",
            "status": "up", **fields}


def row(registered: dict[str, Any], *held: dict[str, Any]) -> dict[str, Any]:
    """The row the CLI shows for a registered instance (down, with what holds it out, if
    `held`)."""
    return {"instanceId": registered["instanceId"], "url": registered["url"],
            "ip": registered["ip"], "port": registered["port"], "zone": registered["zoneId"],
            "status": "down" if held else registered["status"],
            "group": registered.get("groupId"), "pulledOutBy": list(held)}


def hold(kind: str, operation: str = "pull-out", **key: Any) -> dict[str, Any]:
    """One entry of `pulledOutBy`: what holds an instance out of discovery."""
    return {"kind": kind, "key": key, "operation": operation}


def post(node: RunningNode, path: str, body: dict[str, Any]) -> dict[str, Any]:
    with node.client() as client:
        answer: dict[str, Any] = client.post(path, json=body).json()
    return answer


def register(node: RunningNode, *instances: dict[str, Any]) -> None:
    answer = post(node, "/api/registry/register.json", {"instances": list(instances)})
    assert "success" == answer["responseStatus"]["status"], answer


def unregister(node: RunningNode, *instances: dict[str, Any]) -> None:
    answer = post(node, "/api/registry/unregister.json", {"instances": list(instances)})
    assert "success" == answer["responseStatus"]["status"], answer


def listed(node: RunningNode, service: str = SERVICE) -> list[dict[str, Any]]:
    """The instances of `service` a lookup on the node answers now."""
    answer = post(node, "/api/discovery/lookup.json",
                  {"discoveryConfigs": [{"serviceId": service}], "regionId": "SHA"})
    found: list[dict[str, Any]] = answer["services"][0]["instances"]
    return found


def in_snapshot(node: RunningNode, *services: str) -> None:
    """Wait until services.json (a snapshot taken every second) lists `services`."""

    def probe() -> bool | None:
        answer = httpx.get(node.url + "/api/discovery/services.json", timeout=5.0).json()
        return True if {s["serviceId"] for s in answer["services"]} == set(services) else None

    poll(probe, DEADLINE, f"services.json listing {services}")


def invoke(*args: str) -> Result:
    """Run `artemis *args` in this process, with no ARTEMIS_* variable set."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ARTEMIS_")}
    return CliRunner(env=unset).invoke(cli, list(args), prog_name="artemis")


class CliProcess:
    """`python -m artemis *args` with its stdout read line by line with a deadline."""

    def __init__(self, args: list[str], stderr: Path, env: dict[str, str]) -> None:
        self.stderr_path = stderr
        with stderr.open("wb") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "artemis", *args],
                                            stdout=subprocess.PIPE, stderr=err, env=env,
                                            text=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for text in self.process.stdout:
            self._lines.put(text.rstrip("\n"))
        self._lines.put(None)

    def line(self, deadline: float = DEADLINE) -> str:
        """The next line of stdout; fails the test if none comes in time."""
        try:
            text = self._lines.get(timeout=deadline)
        except queue.Empty:
            pytest.fail(f"no output line within {deadline} s; stderr: {self.stderr()}")
        if text is None:
            pytest.fail(f"exited with {self.process.wait()}; stderr: {self.stderr()}")
        return text

    def rest(self) -> list[str]:
        """Every line left, once the process has exited."""
        self._reader.join(DEADLINE)
        out = []
        while (text := self._lines.get_nowait()) is not None:
            out.append(text)
        return out

    def wait(self, deadline: float = DEADLINE) -> int:
        return self.process.wait(timeout=deadline)

    def interrupt(self) -> int:
        """SIGINT, as Ctrl-C sends it; the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.wait()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(DEADLINE)
        self._reader.join(DEADLINE)
        assert self.process.stdout is not None
        self.process.stdout.close()


Spawn = Callable[..., CliProcess]
