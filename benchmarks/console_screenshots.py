"""The console's screenshots in docs/images/, made from a real run. Run by hand (needs Debian's
`chromium`), never by the test suite:

    .venv/bin/python benchmarks/console_screenshots.py    # writes docs/images/console-*.png

It starts two `artemis server` nodes on free 127.0.0.1 ports (peers of one cluster, sharing one
SQLite management database), registers a few services whose instances keep heartbeating, pulls
one instance out, makes a route rule with released and staged weights, opens the console in
headless Chromium, signs in with a write token, and saves one picture per page. Both nodes are
stopped by their pid at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
REGION = "sha"
TOKEN = "ops-" + secrets.token_hex(12)
SERVICES = {  # service -> (instances, zones)
    "orders.api": (6, ("zone-a", "zone-b")),
    "orders.worker": (3, ("zone-a",)),
    "payments.gateway": (4, ("zone-a", "zone-b")),
    "inventory.api": (5, ("zone-b",)),
    "search.query": (8, ("zone-a", "zone-b")),
    "users.profile": (2, ("zone-a",)),
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def cluster(directory: Path) -> Iterator[list[str]]:
    """Two nodes, peers of each other, sharing a management database; their URLs."""
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTEMIS_")}
    env["ARTEMIS_CLUSTER_SECRET"] = secrets.token_hex(24)
    processes = []
    for port, zone in zip(ports, ("zone-a", "zone-b"), strict=True):
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "artemis", "server", "--port", str(port), "--region",
             REGION, "--zone", zone, "--url", f"http://127.0.0.1:{port}",
             "--peers", f"zone-a:{urls[0]};zone-b:{urls[1]}",
             "--database", f"sqlite:///{directory}/management.db",
             "--tokens", f"ops:read+write:{TOKEN}", "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=(directory / f"node-{port}.log").open("wb"),
            env=env))
    try:
        deadline = time.monotonic() + 30
        for url in urls:
            while True:
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    logs = "".join(p.read_text() for p in directory.glob("node-*.log"))
                    raise RuntimeError(f"{url} did not come up:\n{logs[-3000:]}")
                time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


def fleet() -> list[dict[str, Any]]:
    out = []
    n = 0
    for service, (count, zones) in SERVICES.items():
        for i in range(count):
            n += 1
            ip = f"10.20.{n // 200}.{n % 200 + 10}"
            zone = zones[i % len(zones)]
            out.append({
                "serviceId": service, "instanceId": f"{ip}:8080", "ip": ip, "port": 8080,
                "url": f"http://{ip}:8080/", "healthCheckUrl": f"http://{ip}:8080/health",
                "regionId": REGION, "zoneId": zone, "groupId": "canary" if i == 0 else None,
                "machineName": f"host-{n:03d}", "protocol": "http", "status": "up",
                "metadata": {"version": "2.4.1" if i % 3 else "2.5.0", "owner": "team-" +
                             service.split(".")[0]}})
    return out


def call(url: str, path: str, body: Any, token: str | None = None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer: dict[str, Any] = httpx.post(url + path, json=body, headers=headers,
                                        timeout=10).json()
    if answer["responseStatus"]["errorCode"] != "success":
        raise RuntimeError(f"{path}: {answer['responseStatus']}")
    return answer


def keep_alive(url: str, instances: list[dict[str, Any]], stop: threading.Event) -> None:
    while not stop.wait(3.0):
        call(url, "/api/registry/heartbeat.json", {"instances": instances})


def prepare(url: str, instances: list[dict[str, Any]]) -> None:
    """Registrations, a pull-out, a route rule with released and staged weights."""
    call(url, "/api/registry/register.json", {"instances": instances})
    first = next(i for i in instances if i["serviceId"] == "orders.api" and not i["groupId"])
    write = {"operatorId": "alice"}
    call(url, "/api/management/operate-instance.json", {
        "instanceKey": {"regionId": REGION, "serviceId": "orders.api",
                        "instanceId": first["instanceId"]},
        "operation": "pull-out", "reason": "disk almost full", **write}, TOKEN)
    group = {"serviceId": "orders.api", "regionId": REGION, "zoneId": "zone-a",
             "status": "active"}
    call(url, "/api/management/group/create-route-rule.json", {
        "routeRule": {"serviceId": "orders.api", "name": "release-2.5", "status": "active",
                      "strategy": "weighted-round-robin"},
        "groups": [{**group, "name": "default", "weight": 90},
                   {**group, "name": "canary", "weight": 10}],
        "reason": "roll out 2.5.0", **write}, TOKEN)
    links = call(url, "/api/management/group/get-all-route-rule-groups.json", {},
                 TOKEN)["routeRuleGroups"]
    call(url, "/api/management/group/release-route-rule-groups.json", {
        "routeRuleGroups": [{"routeRuleId": x["routeRuleId"], "groupId": x["groupId"]}
                            for x in links], **write}, TOKEN)
    canary = max(links, key=lambda x: x["groupId"])
    call(url, "/api/management/group/update-route-rule-groups.json", {
        "routeRuleGroups": [{"routeRuleId": canary["routeRuleId"], "groupId": canary["groupId"],
                             "unreleasedWeight": 25}], "reason": "more canary", **write}, TOKEN)


def shoot(url: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    made = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                    headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 820})

        def save(name: str) -> None:
            page.wait_for_timeout(300)  # the fonts and the last render settle
            path = out / f"console-{name}.png"
            page.screenshot(path=str(path))
            made.append(path)

        page.goto(url + "/")
        page.wait_for_selector("main .card table")
        page.wait_for_function("document.querySelectorAll('main .badge.up').length >= 2")
        save("overview")
        page.goto(url + "/console/#/services")
        page.wait_for_selector("table.services")
        save("services")
        page.goto(url + "/console/#/service/orders.api")
        page.click("#identity button")
        page.fill("#sign-in input[name=token]", TOKEN)
        page.fill("#sign-in input[name=operator]", "alice")
        page.click("#sign-in button[type=submit]")
        page.wait_for_selector("button[data-action=pull-in]")
        page.wait_for_selector("span.live[data-state=live]")
        save("service")
        page.locator("tr.out button[data-action=pull-in]").click()
        page.fill("#operate input[name=reason]", "disk replaced")
        save("operate")
        page.keyboard.press("Escape")
        page.goto(url + "/console/#/groups?service=orders.api")
        page.wait_for_selector("section.rule table")
        save("groups")
        page.goto(url + "/console/#/audit")
        page.wait_for_selector("table.audit")
        save("audit")
        browser.close()
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"),
                        help="folder of the pictures (docs/images)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as directory, cluster(Path(directory)) as urls:
        instances = fleet()
        prepare(urls[0], instances)
        stop = threading.Event()
        beats = threading.Thread(target=keep_alive, args=(urls[0], instances, stop),
                                 daemon=True)
        beats.start()
        try:
            made = shoot(urls[0], out)
        finally:
            stop.set()
            beats.join(5)
    for path in made:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
