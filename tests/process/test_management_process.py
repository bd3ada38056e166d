"""Management across real `artemis server` processes: two nodes sharing one management database
apply each other's pull-outs within a second (SQLite always; MariaDB and PostgreSQL when
ARTEMIS_TEST_MYSQL_URL / ARTEMIS_TEST_POSTGRES_URL name a server, on a fresh database created for
the test and dropped after), and a node whose database is down still comes up and serves.

Nodes are independent (no peers): only the database joins them. Every wait polls with a
deadline; the measured propagation times are printed (run with -s to see them).
"""

# STYLE.md has tests read `assert expected == actual`.

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.process.conftest import RunningNode, StartNode, poll
from tests.server.test_store import fresh_database

SECRET = "process-admin-token-0123456789"  # noqa: S105 - a test secret
AUTH = {"authorization": f"Bearer {SECRET}"}
SERVICE = "demo.service.v1"
SUCCESS = {"errorCode": "success", "message": "", "status": "success"}
OK = {"responseStatus": SUCCESS}
OK_BODY = {"failedInstances": None, "responseStatus": SUCCESS}
INSTANCE = {"groupId": None, "healthCheckUrl": "http://10.0.0.5:8080/health",
            "instanceId": "10.0.0.5:8080", "ip": "10.0.0.5", "machineName": "web-5",
            "metadata": {"owner": "team-a"}, "port": 8080, "protocol": "http", "regionId": "SHA",
            "serviceId": SERVICE, "status": "up", "url": "http://10.0.0.5:8080/api",
            "zoneId": "zone-1"}
KEY = {"instanceId": "10.0.0.5:8080", "regionId": "SHA", "serviceId": SERVICE}
PROPAGATION_DEADLINE = 1.0
M = "/api/management"
WRITE_PATHS = {
    f"{M}/operate-instance.json": {"instanceKey": KEY, "operation": "pullout",
                                   "operatorId": "alice"},
    f"{M}/operate-server.json": {"operation": "pullout", "operatorId": "alice",
                                 "serverKey": {"regionId": "SHA", "serverId": "10.0.0.5"}},
    f"{M}/zone/operate-zone-operations.json": {"operatorId": "alice", "zoneOperationsList": [
        {"operations": ["pullout"], "zoneKey": {"regionId": "SHA", "serviceId": SERVICE,
                                                "zoneId": "zone-1"}}]},
}
LOG_PATHS = {f"{M}/log/audit.json": {}, f"{M}/log/instance-operation-logs.json": {}}
READ_PATHS = {
    f"{M}/instance-operations.json": {"instanceKey": KEY},
    f"{M}/all-instance-operations.json": {},
    f"{M}/instance-down.json": {"instance": INSTANCE},
    f"{M}/zone/get-all-zone-operations.json": {},
}
NOT_OPEN = {"errorCode": "service-unavailable", "status": "fail",
            "message": "the management database does not answer; discovery goes on with the "
                       "last data loaded"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def call(node: RunningNode, path: str, body: Any) -> Any:
    """POST `body` with the admin token; the answer must be 200 JSON."""
    response = httpx.post(node.url + path, json=body, headers=AUTH, timeout=5.0)
    assert 200 == response.status_code, response.text
    return response.json()


def listed(node: RunningNode) -> list[Any]:
    """The instances service.json of `node` lists for the service."""
    answer = call(node, "/api/discovery/service.json", {
        "discoveryConfig": {"serviceId": SERVICE}, "regionId": "SHA"})
    assert SUCCESS == answer["responseStatus"]
    return list(answer["service"]["instances"])


def operate(node: RunningNode, complete: bool) -> None:
    body = {"instanceKey": KEY, "operation": "pullout", "operationComplete": complete,
            "operatorId": "alice"}
    assert OK == call(node, f"{M}/operate-instance.json", body)


def propagation(node: RunningNode, expected: list[Any], what: str) -> float:
    """Seconds from now until service.json of `node` lists `expected`; fails (naming the time
    waited) past PROPAGATION_DEADLINE."""
    started = time.monotonic()
    while True:
        seen = listed(node)
        elapsed = time.monotonic() - started
        if seen == expected:
            return elapsed
        if elapsed > PROPAGATION_DEADLINE:
            pytest.fail(f"{what}: node B still lists {seen} after {elapsed:.3f} s "
                        f"(deadline {PROPAGATION_DEADLINE} s)")
        time.sleep(0.01)


def check_propagation(start_node: StartNode, database: str) -> tuple[float, float]:
    """Two independent nodes on `database` (started together, so they migrate an empty database
    at once), the same instance registered on both: a pull-out through A is applied by A at
    once and by B within the deadline; the pull-in likewise. Returns the two measured times."""
    flags = ("--database", database, "--admin-token", SECRET)
    with ThreadPoolExecutor(2) as starting:  # both start (and migrate) at once
        a, b = starting.map(lambda _: start_node(*flags), range(2))
    for node in (a, b):
        assert OK_BODY == call(node, "/api/registry/register.json", {"instances": [INSTANCE]})
    assert ([INSTANCE], [INSTANCE]) == (listed(a), listed(b))

    operate(a, complete=False)
    out = propagation(b, [], "pull-out")
    assert [] == listed(a)
    operate(a, complete=True)
    back = propagation(b, [INSTANCE], "pull-in")
    assert [INSTANCE] == listed(a)

    audit = call(b, f"{M}/log/audit.json", {"newestFirst": False})
    assert [(False, [], ["pullout"]), (True, ["pullout"], [])] == [
        (e["complete"], e["before"], e["after"]) for e in audit["logs"]]
    print(f"\n{database.split(':')[0]}: pull-out applied by B after {out * 1000:.0f} ms, "
          f"pull-in after {back * 1000:.0f} ms")
    return out, back


# --- two nodes on one database -------------------------------------------------------------------


def test_two_nodes_on_one_sqlite_file_apply_each_others_writes(start_node: StartNode,
                                                                tmp_path: Path) -> None:
    """Nodes sharing a SQLite file apply each other's pull-out and pull-in within 1 s."""
    out, back = check_propagation(start_node, f"sqlite:///{tmp_path / 'm.db'}")
    assert out <= PROPAGATION_DEADLINE, f"pull-out applied by B after {out:.3f} s"
    assert back <= PROPAGATION_DEADLINE, f"pull-in applied by B after {back:.3f} s"


def server_url(variable: str, what: str) -> str:
    url = os.environ.get(variable, "")
    if not url:
        pytest.skip(f"{variable} is not set: no {what} server to test against")
    return url


@pytest.fixture(params=["mysql", "postgresql"])
async def server_database(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh, uniquely named database on the MariaDB/PostgreSQL server of the environment,
    dropped after the test (skipped when the variable is not set)."""
    variable, what = (("ARTEMIS_TEST_MYSQL_URL", "MariaDB/MySQL") if request.param == "mysql"
                      else ("ARTEMIS_TEST_POSTGRES_URL", "PostgreSQL"))
    async with fresh_database(server_url(variable, what)) as url:
        yield url


def test_two_nodes_on_one_database_server_apply_each_others_writes(
        server_database: str, start_node: StartNode) -> None:
    """Nodes sharing a MariaDB/PostgreSQL database apply each other's writes within 1 s."""
    # start_node comes after server_database: the nodes stop before the database is dropped
    out, back = check_propagation(start_node, server_database)
    assert out <= PROPAGATION_DEADLINE, f"pull-out applied by B after {out:.3f} s"
    assert back <= PROPAGATION_DEADLINE, f"pull-in applied by B after {back:.3f} s"


# --- a database that is down when the node starts ------------------------------------------------


def start_without_database(start_node: StartNode, database: str) -> tuple[RunningNode, float]:
    """Start a node whose database does not answer, with a 1 s start timeout; return it and
    how long it took to be up."""
    started = time.monotonic()
    node = start_node("--database", database, "--admin-token", SECRET,
                      "--management-start-timeout", "1", "--management-poll-interval", "0.1")
    return node, time.monotonic() - started


def test_a_node_whose_database_is_down_comes_up_and_serves(start_node: StartNode) -> None:
    """A node whose database is down comes up after its start timeout, serves, refuses writes."""
    node, took = start_without_database(start_node, f"mysql://root@127.0.0.1:{closed_port()}/x")

    assert took >= 1.0, f"the node was up after {took:.2f} s, before its start timeout"
    assert [OK_BODY, OK_BODY] == [
        call(node, "/api/registry/register.json", {"instances": [INSTANCE]}),
        call(node, "/api/registry/heartbeat.json", {"instances": [INSTANCE]})]
    assert [INSTANCE] == listed(node)
    status = httpx.get(node.url + "/api/status/management.json", timeout=5.0).json()
    assert (False, True, None) == (status["available"], status["enabled"], status["version"])
    answers = {path: call(node, path, body)["responseStatus"]
               for path, body in {**WRITE_PATHS, **LOG_PATHS}.items()}
    assert dict.fromkeys(answers, NOT_OPEN) == answers


def test_a_node_whose_database_is_down_answers_reads_unavailable(
        start_node: StartNode) -> None:
    """A node whose database is down answers the operation reads service-unavailable."""
    node, _ = start_without_database(start_node, f"mysql://root@127.0.0.1:{closed_port()}/x")

    answers = {path: call(node, path, body)["responseStatus"]["errorCode"]
               for path, body in READ_PATHS.items()}
    assert dict.fromkeys(answers, "service-unavailable") == answers


def test_a_database_that_comes_later_is_applied(start_node: StartNode, tmp_path: Path) -> None:
    """A database that answers only after the start is opened, migrated and used."""
    folder = tmp_path / "later"
    node, _ = start_without_database(start_node, f"sqlite:///{folder / 'm.db'}")
    assert OK_BODY == call(node, "/api/registry/register.json", {"instances": [INSTANCE]})
    folder.mkdir()

    def available() -> bool | None:
        status = httpx.get(node.url + "/api/status/management.json", timeout=5.0).json()
        return True if status["available"] else None

    poll(available, 5.0, "the node opening its database")
    operate(node, complete=False)
    assert [] == listed(node)


def route_rules(node: RunningNode) -> list[Any]:
    answer = call(node, "/api/discovery/service.json", {
        "discoveryConfig": {"serviceId": SERVICE}, "regionId": "SHA"})
    return list(answer["service"]["routeRules"])


def test_route_rules_reach_the_other_node_within_a_second(start_node: StartNode,
                                                           tmp_path: Path) -> None:
    """A route rule created and released through node A is in node B's answers within 1 s."""
    flags = ("--database", f"sqlite:///{tmp_path / 'm.db'}", "--admin-token", SECRET)
    with ThreadPoolExecutor(2) as starting:
        a, b = starting.map(lambda _: start_node(*flags), range(2))
    for node in (a, b):
        assert OK_BODY == call(node, "/api/registry/register.json", {"instances": [INSTANCE]})
    group = {"serviceId": SERVICE, "regionId": "SHA", "zoneId": "zone-1", "status": "active"}
    assert OK == call(a, f"{M}/group/create-route-rule.json", {
        "routeRule": {"serviceId": SERVICE, "name": "split", "status": "active"},
        "groups": [{**group, "name": "blue", "weight": 80}, {**group, "name": "green",
                                                              "weight": 20}],
        "operatorId": "alice"})
    links = call(a, f"{M}/group/get-all-route-rule-groups.json", {})["routeRuleGroups"]
    assert OK == call(a, f"{M}/group/release-route-rule-groups.json", {
        "routeRuleGroups": [{"routeRuleId": link["routeRuleId"], "groupId": link["groupId"]}
                            for link in links], "operatorId": "alice"})
    expected = [{"groups": [
        {"groupKey": f"{SERVICE}/sha/zone-1/blue".lower(), "instanceIds": None,
         "instances": None, "metadata": None, "weight": 80},
        {"groupKey": f"{SERVICE}/sha/zone-1/green".lower(), "instanceIds": None,
         "instances": None, "metadata": None, "weight": 20}],
        "routeId": "split", "strategy": "weighted-round-robin"}]
    released = time.monotonic()
    assert expected == route_rules(a)
    while route_rules(b) != expected:
        assert time.monotonic() - released <= PROPAGATION_DEADLINE, route_rules(b)
        time.sleep(0.01)
