"""The console on a large registry (10,000 services) in a real browser, and a node with the
console switched off."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import httpx
import pytest
from playwright.sync_api import Response

from tests.console.conftest import MakeTab, instance, register, start
from tests.process.conftest import RunningNode

TEAMS: Final = 100
PER_TEAM: Final = 100  # 10,000 services


@pytest.fixture(scope="module")
def large_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """A node holding 10,000 services of one instance each (leases of an hour)."""
    node = start(tmp_path_factory.mktemp("large"), "--lease-ttl", "3600", "--max-batch", "5000",
                 "--max-services-per-client", "0", "--max-instances-per-client", "0")
    batch = []
    for team in range(TEAMS):
        for number in range(PER_TEAM):
            n = team * PER_TEAM + number
            batch.append(instance(f"team{team:02d}.svc{number:03d}", "i-1",
                                  f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"))
        if len(batch) >= 5000:
            register(node, *batch)
            batch = []
    yield node
    node.stop()


def test_a_search_among_10000_services_reads_one_page(make_tab: MakeTab,
                                                      large_node: RunningNode) -> None:
    """Typing a prefix among 10,000 services shows the first page of the services it names
    and their count; every answer the page fetched is one page, never the registry. The time
    from the keystroke to the rendered page is printed (docs/performance.md records it)."""
    tab = make_tab(large_node)
    sizes: list[int] = []

    def on_response(response: Response) -> None:
        if "/api/console/services.json" in response.url:
            sizes.append(len(response.body()))

    tab.page.on("response", on_response)
    tab.open("#/services")
    tab.page.locator("table.services").wait_for()
    tab.page.fill("#service-search", "team42")
    tab.page.locator("table.services[data-prefix='team42']").wait_for()
    summary = tab.page.inner_text("main p.dim")
    rows = tab.page.locator("table.services tbody tr").count()
    first = tab.page.inner_text("table.services tbody tr >> nth=0")
    measured: list[dict[str, Any]] = tab.evaluate("""() => performance
      .getEntriesByName("artemis-console:search")
      .map((m) => ({ms: m.duration, prefix: m.detail.prefix, total: m.detail.total}))""")

    print(f"\nconsole: search among 10,000 services rendered "
          f"{measured[-1]['ms']:.0f} ms after the keystroke")
    assert ("Services 1-50 of 100 starting with \"team42\" (10,000 in all)", 50,
            {"prefix": "team42", "total": 100}) == (
        summary, rows, {k: measured[-1][k] for k in ("prefix", "total")})
    assert first.startswith("team42.svc000")
    assert [] == [size for size in sizes if size > 16_000]
    assert [] == tab.problems()


def test_a_node_with_the_console_off_serves_none_of_it(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """`--console off`: no page, no redirect, no console endpoint (404 each)."""
    node = start(tmp_path_factory.mktemp("off"), "--console", "off")
    try:
        statuses = {path: httpx.get(node.url + path, timeout=5).status_code
                    for path in ("/", "/console", "/console/", "/console/js/main.js",
                                 "/api/console/overview.json")}
    finally:
        node.stop()
    assert dict.fromkeys(("/", "/console", "/console/", "/console/js/main.js",
                          "/api/console/overview.json"), 404) == statuses


def test_the_console_works_under_a_context_path(make_tab: MakeTab,
                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    """Under `--context-path /artemis-web` the console is at /artemis-web/console/, asks the
    API and the push under the same path, and `/artemis-web/` redirects to it."""
    node = start(tmp_path_factory.mktemp("context"), context_path="/artemis-web")
    try:
        register(node, instance("under.context", "i-1"))
        tab = make_tab(node)
        tab.page.goto(node.url + "/")
        tab.page.wait_for_selector("#node .badge.up")
        landed = tab.page.url
        tab.open("#/service/under.context")
        tab.page.wait_for_selector('tr[data-instance-id="i-1"]')
        tab.page.wait_for_selector("span.live[data-state=live]")
        problems = tab.problems()
    finally:
        node.stop()
    assert (f"http://127.0.0.1:{node.port}/artemis-web/console/", []) == (landed, problems)
