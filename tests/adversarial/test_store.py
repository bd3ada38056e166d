"""The management database removed under a running node: nothing pulled out comes back, nothing
is lost without a word.

A real `artemis server` on a SQLite file pulls an instance out; the file is then deleted (`rm
m.db`, as a careless operator or a cleanup job would). The node notices at its next look at the
database: it answers management calls `service-unavailable`, says in its status and log that the
file was removed, keeps the instance out of discovery, and saves what it still holds open next to
the file. Restarted, it puts that copy back in place: the pull-out and its audit row are there.
"""

# STYLE.md has tests read `assert expected == actual`.

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.process.conftest import RunningNode, StartNode, poll
from tests.process.conftest import start_node as start_node  # the fixture, here too

SECRET = "adversarial-store-token-0123456789"  # noqa: S105 - a test secret
AUTH = {"authorization": f"Bearer {SECRET}"}
SERVICE = "store.service.v1"
SUCCESS = {"errorCode": "success", "message": "", "status": "success"}
INSTANCE = {"groupId": None, "healthCheckUrl": None, "instanceId": "10.0.0.5:8080",
            "ip": "10.0.0.5", "machineName": None, "metadata": None, "port": 8080,
            "protocol": "http", "regionId": "SHA", "serviceId": SERVICE, "status": "up",
            "url": "http://10.0.0.5:8080/api", "zoneId": "zone-1"}
OTHER = {**INSTANCE, "instanceId": "10.0.0.6:8080", "ip": "10.0.0.6",
         "url": "http://10.0.0.6:8080/api"}
KEY = {"instanceId": "10.0.0.5:8080", "regionId": "SHA", "serviceId": SERVICE}
M = "/api/management"
DEADLINE = 10.0


def call(node: RunningNode, path: str, body: Any) -> Any:
    """POST `body` with the admin token; the answer must be 200 JSON."""
    response = httpx.post(node.url + path, json=body, headers=AUTH, timeout=5.0)
    assert 200 == response.status_code, response.text
    return response.json()


def operate(node: RunningNode, complete: bool) -> Any:
    return call(node, f"{M}/operate-instance.json", {
        "instanceKey": KEY, "operation": "pullout", "operationComplete": complete,
        "operatorId": "alice", "reason": "disk full"})["responseStatus"]


def discovered(node: RunningNode) -> list[str]:
    """The instance ids lookup.json answers for the service."""
    answer = call(node, "/api/discovery/lookup.json", {
        "discoveryConfigs": [{"serviceId": SERVICE}], "regionId": "SHA"})
    assert SUCCESS == answer["responseStatus"]
    return sorted(i["instanceId"] for s in answer["services"] for i in s["instances"] or ())


def status(node: RunningNode) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(node.url + "/api/status/management.json",
                                       timeout=5.0).json()
    return answer


def audit(node: RunningNode) -> list[tuple[str, str, bool, str]]:
    logs = call(node, f"{M}/log/audit.json", {"newestFirst": False})["logs"] or []
    return [(e["instanceId"], e["operation"], e["complete"], e["reason"]) for e in logs]


def start(start_node: StartNode, database: Path) -> RunningNode:
    node = start_node("--database", f"sqlite:///{database}", "--admin-token", SECRET,
                      "--management-poll-interval", "0.1")
    registered = call(node, "/api/registry/register.json", {"instances": [INSTANCE, OTHER]})
    assert SUCCESS == registered["responseStatus"]
    return node


def test_a_removed_database_file_refuses_writes_keeps_pull_outs_and_loses_nothing(
        start_node: StartNode, tmp_path: Path) -> None:
    """Deleting the SQLite file under a running node: writes answer service-unavailable, status
    says why, the pulled-out instance stays out, and after a restart the pull-out and the audit
    log are back."""
    database = tmp_path / "m.db"
    node = start(start_node, database)
    assert SUCCESS == operate(node, complete=False)
    assert ["10.0.0.6:8080"] == discovered(node)

    database.unlink()  # the -wal and -shm files stay, as after `rm m.db`

    def noticed() -> dict[str, Any] | None:
        seen = status(node)
        return None if seen["available"] else seen

    seen = poll(noticed, DEADLINE, "the node noticing its database file is gone")
    assert "was removed" in seen["lastError"], seen["lastError"]
    refused = operate(node, complete=True)  # a pull-in would bring the instance back
    assert ("fail", "service-unavailable") == (refused["status"], refused["errorCode"])
    assert ["10.0.0.6:8080"] == discovered(node)
    assert not database.exists(), "the node made a new (empty) database in its place"
    rescued = sorted(p.name for p in tmp_path.glob("m.db.rescued-*"))
    assert 1 == len(rescued), sorted(p.name for p in tmp_path.iterdir())
    assert "was removed" in node.output()

    node.stop()
    again = start(start_node, database)
    assert ["10.0.0.6:8080"] == discovered(again)
    assert [("10.0.0.5:8080", "pullout", False, "disk full")] == audit(again)
    assert (True, "") == (status(again)["available"], status(again)["lastError"])
    assert [] == sorted(p.name for p in tmp_path.glob("m.db.rescued-*"))
    assert SUCCESS == operate(again, complete=True)
    assert ["10.0.0.5:8080", "10.0.0.6:8080"] == discovered(again)
