"""The Eureka API's bad input against a real node (granian's RSGI face, as in production):
malformed JSON and XML, XML entities and billion-laughs bombs, unknown apps and instances, wrong
methods. Each gets a clear error; nothing changes in the registry; the node stays healthy, its
memory bounded and its log free of internal errors."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import json
from typing import Any

import psutil

from tests.eureka.harness import APP, ID, info
from tests.eureka.test_codec import BILLION_LAUGHS, EXTERNAL
from tests.process.conftest import RunningNode, StartNode

QUADRATIC = (b'<!DOCTYPE i [<!ENTITY a "' + b"x" * 50_000 + b'">]><instance><app>'
             + b"&a;" * 20_000 + b"</app></instance>")
CASES: list[tuple[str, str, dict[str, str], bytes, int, str]] = [
    # (method, path, headers, body, status, a part of the answer)
    ("POST", f"/eureka/apps/{APP}", {"content-type": "application/json"}, b'{"instance": {',
     400, "not valid JSON"),
    ("POST", f"/eureka/apps/{APP}", {"content-type": "application/json"},
     b'{"instance": {"app": "ORDERS", "app": "X"}}', 400, "names 'app' twice"),
    ("POST", f"/eureka/apps/{APP}", {"content-type": "application/json"},
     b"[" * 200_000 + b"]" * 200_000, 400, "nested too deep"),
    ("POST", f"/eureka/apps/{APP}", {"content-type": "application/xml"},
     b"<instance><app>ORDERS</app", 400, "not well-formed XML"),
    ("POST", f"/eureka/apps/{APP}", {"content-type": "application/xml"}, BILLION_LAUGHS,
     400, "holds a DTD"),
    ("POST", f"/eureka/apps/{APP}", {"content-type": "application/xml"}, QUADRATIC,
     400, "holds a DTD"),
    ("POST", f"/eureka/apps/{APP}", {"content-type": "application/xml"}, EXTERNAL,
     400, "holds a DTD"),
    ("POST", f"/eureka/apps/{APP}", {"content-type": "application/xml"},
     b"<instance>" + b"<x>" * 10_000 + b"</x>" * 10_000 + b"</instance>", 400, "too deep"),
    ("POST", f"/eureka/apps/{APP}", {"content-type": "text/plain"}, b"hello", 400,
     "neither JSON nor XML"),
    ("POST", "/eureka/apps/BILLING", {"content-type": "application/json"},
     json.dumps({"instance": info()}).encode(), 400, "Mismatched appName"),
    ("POST", f"/eureka/apps/{APP}", {"content-type": "application/json"},
     json.dumps({"instance": info(hostName="web\x00")}).encode(), 400,
     "control characters"),
    ("PUT", f"/eureka/apps/{APP}/{ID}", {}, b"", 404, "is not registered"),
    ("DELETE", f"/eureka/apps/{APP}/{ID}", {}, b"", 404, "is not registered"),
    ("PUT", f"/eureka/apps/{APP}/{ID}/status?value=OUT_OF_SERVICE", {}, b"", 404,
     "is not registered"),
    ("PUT", f"/eureka/apps/{APP}/{ID}/status?value=%00", {}, b"", 400, "value must be"),
    ("GET", "/eureka/apps/NOBODY", {}, b"", 404, "no application NOBODY"),
    ("GET", f"/eureka/apps/{APP}/nobody", {}, b"", 404, "no instance nobody"),
    ("GET", "/eureka/instances/nobody", {}, b"", 404, "no instance nobody"),
    ("PATCH", f"/eureka/apps/{APP}", {}, b"", 405, "PATCH is not allowed"),
    ("POST", f"/eureka/apps/{APP}/{ID}", {}, b"", 405, "use DELETE, GET, PUT"),
    ("GET", "/eureka/nothing/here", {}, b"", 404, "no Eureka resource"),
]


def state(node: RunningNode) -> tuple[Any, ...]:
    """What the node holds: its registry's revision and instance count, and the instances
    Eureka clients see (id, status, metadata)."""
    with node.client() as client:
        runtime = client.get("/api/status/runtime.json").json()
        apps = client.get("/eureka/apps", headers={"accept": "application/json"}).json()
    return runtime["revision"], runtime["instances"], [
        (i["instanceId"], i["status"], i["metadata"])
        for app in apps["applications"]["application"] for i in app["instance"]]


def test_bad_input_is_refused_clearly_and_changes_nothing(start_node: StartNode) -> None:
    """Every bad request gets its status and a message naming the problem; the registry's
    content is the same afterwards, the node answers /health, its memory stayed bounded and it
    logged no internal error."""
    node = start_node()
    with node.client() as client:
        assert 204 == client.post(f"/eureka/apps/{APP}", json={"instance": info(
            "web-9:orders:8080")}).status_code
    before = state(node)
    process = psutil.Process(node.process.pid)
    rss_before = process.memory_info().rss

    answers = []
    with node.client() as client:
        for method, path, headers, body, _, _ in CASES:
            response = client.request(method, path, headers=headers, content=body)
            answers.append((response.status_code, response.text[:300]))

    assert [(status, True) for _, _, _, _, status, _ in CASES] == [
        (status, part in text) for (status, text), (*_, part) in zip(answers, CASES, strict=True)]
    assert before == state(node)
    with node.client() as client:
        assert 200 == client.get("/health").status_code
    assert process.memory_info().rss - rss_before < 64 * 2**20
    assert [] == [line for line in node.output().splitlines()
                  if "internal error" in line or "Traceback" in line]
