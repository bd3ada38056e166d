"""Fixtures of the console's tests: real `artemis server` processes on 127.0.0.1 and Debian's
Chromium driven by Playwright (never a downloaded browser).

Chromium runs headless with a fresh profile per launch (Playwright gives each launch a new
user-data-dir) and without background networking: on a closed network its own connections to
the outside are refused, and nothing but the node under test may be reached. Each test gets a
new browser context (its own sessionStorage, cookies and cache) and a `Tab` that records every
console message and uncaught error of its page.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    sync_playwright,
)

from tests.process.conftest import START_DEADLINE, RunningNode, free_port, poll

CHROMIUM: Final = "/usr/bin/chromium"
CHROMIUM_ARGS: Final = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync"]
REGION: Final = "SHA"
OPS_TOKEN: Final = "console-ops-secret-0123456789"  # noqa: S105 - a test secret
VIEWER_TOKEN: Final = "console-viewer-secret-0123456789"  # noqa: S105 - a test secret
TOKENS: Final = f"ops:read+write:{OPS_TOKEN},viewer:read:{VIEWER_TOKEN}"
DEADLINE: Final = 20.0  # seconds a page has to show something (a busy 2-core machine)


def start(directory: Path, *flags: str, context_path: str = "") -> RunningNode:
    """`artemis server` on a free port of 127.0.0.1 with `flags` (and `context_path`), up
    when this returns."""
    port = free_port()
    log = directory / f"artemis-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTEMIS_")}
    command = [sys.executable, "-m", "artemis", "server", "--port", str(port), "--region",
               REGION, "--zone", "zone-1", *flags]
    if context_path:
        command += ["--context-path", context_path]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    node = RunningNode(process, port, context_path, log)

    def healthy() -> bool | None:
        if process.poll() is not None:
            pytest.fail(f"artemis server exited with {process.returncode}:\n{node.output()}")
        try:
            return True if httpx.get(node.url + "/health", timeout=1.0).status_code == 200 \
                else None
        except httpx.TransportError:
            return None

    try:
        poll(healthy, START_DEADLINE, "artemis server answering /health")
    except BaseException:
        node.stop()
        raise
    return node


@pytest.fixture(scope="module")
def managed_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """One node for a module's tests: a SQLite management database, an `ops` token (read and
    write) and a `viewer` token (read only)."""
    directory = tmp_path_factory.mktemp("console-node")
    node = start(directory, "--database", f"sqlite:///{directory}/management.db",
                 "--tokens", TOKENS)
    yield node
    node.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless; the tests fail (not skip) without it."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                         headless=True)
    yield browser
    browser.close()


@dataclass
class Tab:
    """A page of the console and what it said: console messages and uncaught errors."""

    page: Page
    base: str
    messages: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def open(self, route: str = "#/overview") -> None:
        self.page.goto(f"{self.base}/console/{route}")

    def problems(self) -> list[str]:
        """Console errors and warnings, and uncaught exceptions, of the page so far."""
        return [f"{kind}: {text}" for kind, text in self.messages
                if kind in ("error", "warning")] + [f"pageerror: {e}" for e in self.errors]

    def sign_in(self, token: str, operator: str = "alice") -> None:
        page = self.page
        page.click("#identity button")
        page.fill("#sign-in input[name=token]", token)
        page.fill("#sign-in input[name=operator]", operator)
        page.click("#sign-in button[type=submit]")

    def evaluate(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)


MakeTab = Callable[[RunningNode], Tab]


@pytest.fixture
def make_tab(browser: Browser) -> Iterator[MakeTab]:
    """`make_tab(node)`: a page in a fresh browser context (its own sessionStorage, cookies
    and cache) on `node`; every context is closed at teardown."""
    contexts: list[BrowserContext] = []

    def make(node: RunningNode) -> Tab:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        contexts.append(context)
        context.set_default_timeout(DEADLINE * 1000)
        page = context.new_page()
        opened = Tab(page, node.url)

        def on_console(message: ConsoleMessage) -> None:
            opened.messages.append((message.type, message.text))

        page.on("console", on_console)
        page.on("pageerror", lambda error: opened.errors.append(str(error)))
        page.on("request", lambda request: opened.requests.append(request.url))
        return opened

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def tab(make_tab: MakeTab, managed_node: RunningNode) -> Tab:
    """A fresh page on the module's managed node."""
    return make_tab(managed_node)


def instance(service: str, instance_id: str, ip: str = "10.0.0.5", zone: str = "zone-1",
             **extra: Any) -> dict[str, Any]:
    return {"serviceId": service, "instanceId": instance_id, "ip": ip, "port": 8080,
            "url": f"http://{ip}:8080/api", "regionId": REGION, "zoneId": zone, **extra}


def post(node: RunningNode, path: str, body: Any, token: str | None = None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = httpx.post(node.url + path, json=body, headers=headers, timeout=10.0)
    answer.raise_for_status()
    data: dict[str, Any] = answer.json()
    return data


def register(node: RunningNode, *instances: dict[str, Any]) -> None:
    status = post(node, "/api/registry/register.json", {"instances": list(instances)})
    assert "success" == status["responseStatus"]["errorCode"], status


def unregister(node: RunningNode, *instances: dict[str, Any]) -> None:
    status = post(node, "/api/registry/unregister.json", {"instances": list(instances)})
    assert "success" == status["responseStatus"]["errorCode"], status


def looked_up(node: RunningNode, service: str) -> list[str]:
    """The instance ids lookup.json answers for `service`."""
    answer = post(node, "/api/discovery/lookup.json",
                  {"discoveryConfigs": [{"serviceId": service}], "regionId": REGION})
    services = answer["services"] or []
    return sorted(i["instanceId"] for s in services for i in (s["instances"] or []))
