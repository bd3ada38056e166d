"""The management API in process: pull-outs of instances, servers and zones, what discovery and
push show of them, the operation reads, the audit log, tokens, bad input and a database that
does not answer (§4.6, §4.8, §4.10).

Nodes run on a fake clock with a SQLite management database (the `managed` fixture, or
`make_managed` for other settings); no background loop runs, so a write is applied by the node
that took it (as the API does) and nothing else polls. Push sessions are driven through the
node's PushServer with an in-memory socket; every wait polls with a deadline.
"""

# STYLE.md has tests read `assert expected == actual`.

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from artemis.clock import FakeClock
from artemis.server.compose import NodeParts
from artemis.server.node import Node
from artemis.server.push import PushServer
from artemis.server.settings import Settings, SettingsError
from artemis.server.store import ManagementStore
from tests.server.conftest import MANAGEMENT_TOKEN, make_parts
from tests.server.harness import (
    DELTA,
    LOOKUP,
    OK_BODY,
    REGION,
    SERVICE,
    SERVICE_PATH,
    SERVICES,
    SUCCESS,
    ZONE,
    Api,
    change,
    checksum,
    describe,
    fail,
    instance,
    lookup_answer,
    service,
    stamp,
)
from tests.server.test_push_sessions import FakeWebSocket

START_MS = 1_700_000_000_000  # FakeClock's wall time when a test's node is built
M = "/api/management"
OPERATE_INSTANCE = f"{M}/operate-instance.json"
OPERATE_SERVER = f"{M}/operate-server.json"
OPERATE_ZONES = f"{M}/zone/operate-zone-operations.json"
INSTANCE_OPERATIONS = f"{M}/instance-operations.json"
SERVER_OPERATIONS = f"{M}/server-operations.json"
ALL_INSTANCE_OPERATIONS = f"{M}/all-instance-operations.json"
ALL_SERVER_OPERATIONS = f"{M}/all-server-operations.json"
INSTANCE_DOWN = f"{M}/instance-down.json"
SERVER_DOWN = f"{M}/server-down.json"
ALL_ZONE_OPERATIONS = f"{M}/zone/get-all-zone-operations.json"
ZONE_OPERATIONS = f"{M}/zone/get-zone-operations.json"
ZONE_OPERATIONS_LIST = f"{M}/zone/get-zone-operations-list.json"
ZONE_DOWN = f"{M}/zone/is-zone-down.json"
INSTANCE_LOGS = f"{M}/log/instance-operation-logs.json"
SERVER_LOGS = f"{M}/log/server-operation-logs.json"
ZONE_LOGS = f"{M}/log/zone-operation-logs.json"
AUDIT = f"{M}/log/audit.json"
NODE_STATUS = "/api/admin/node-status.json"
DISCOVERY_WS = "/ws/discovery/instance-change"

OK: dict[str, Any] = {"responseStatus": SUCCESS}
READ_SECRET = "reader-secret-0123456789"  # noqa: S105 - test secrets
WRITE_SECRET = "writer-secret-0123456789"  # noqa: S105
TOKENS = f"reader:read:{READ_SECRET},ops:write:{WRITE_SECRET}"
ADMIN = f"Bearer {MANAGEMENT_TOKEN}"
INJECTIONS = ["'; DROP TABLE audit_log; --", '" OR 1=1 --']
OTHER_SERVICE = "other.service.v1"

# The payload fields each endpoint answers null (or false/0) when it fails.
NULLS: dict[str, dict[str, Any]] = {
    OPERATE_INSTANCE: {}, OPERATE_SERVER: {}, OPERATE_ZONES: {},
    INSTANCE_OPERATIONS: {"operations": None}, SERVER_OPERATIONS: {"operations": None},
    ALL_INSTANCE_OPERATIONS: {"allInstanceOperations": None},
    ALL_SERVER_OPERATIONS: {"allServerOperations": None},
    INSTANCE_DOWN: {"down": False}, SERVER_DOWN: {"down": False},
    ALL_ZONE_OPERATIONS: {"allZoneOperations": None}, ZONE_OPERATIONS: {"operations": None},
    ZONE_OPERATIONS_LIST: {"zoneOperationsList": None}, ZONE_DOWN: {"down": False},
    INSTANCE_LOGS: {"logs": None, "total": 0}, SERVER_LOGS: {"logs": None, "total": 0},
    ZONE_LOGS: {"logs": None, "total": 0}, AUDIT: {"logs": None, "total": 0},
}
WRITES = [OPERATE_INSTANCE, OPERATE_SERVER, OPERATE_ZONES]
READS = [path for path in NULLS if path not in WRITES]


# --- requests and expected answers -----------------------------------------------------------


def ikey(instance_id: str = "10.0.0.5:8080", service_id: str = SERVICE,
         region: str = REGION) -> dict[str, Any]:
    return {"instanceId": instance_id, "regionId": region, "serviceId": service_id}


def skey(server_id: str = "10.0.0.5", region: str = REGION) -> dict[str, Any]:
    return {"regionId": region, "serverId": server_id}


def zkey(zone_id: str = ZONE, service_id: str = SERVICE, region: str = REGION) -> dict[str, Any]:
    return {"regionId": region, "serviceId": service_id, "zoneId": zone_id}


def operate(key: dict[str, Any], operation: str = "pullout", complete: bool = False,
            operator: str = "alice", **extra: Any) -> dict[str, Any]:
    """An operate-instance.json body."""
    return {"instanceKey": key, "operation": operation, "operationComplete": complete,
            "operatorId": operator, **extra}


def operate_server(key: dict[str, Any], operation: str = "pullout", complete: bool = False,
                   operator: str = "alice", **extra: Any) -> dict[str, Any]:
    return {"operation": operation, "operationComplete": complete, "operatorId": operator,
            "serverKey": key, **extra}


def operate_zones(*keys: dict[str, Any], operation: str = "pullout", complete: bool = False,
                  operator: str = "alice", **extra: Any) -> dict[str, Any]:
    return {"operationComplete": complete, "operatorId": operator,
            "zoneOperationsList": [{"operations": [operation], "zoneKey": k} for k in keys],
            **extra}


def key_of(inst: dict[str, Any]) -> dict[str, Any]:
    return ikey(inst["instanceId"], inst["serviceId"])


def config(service_id: str = SERVICE) -> dict[str, Any]:
    return {"discoveryData": None, "regionId": None, "serviceId": service_id, "zoneId": None}


def shown(service_id: str, *instances: dict[str, Any]) -> dict[str, Any]:
    """A service.json answer listing `instances`."""
    return {"checksum": checksum(*instances), "responseStatus": SUCCESS,
            "service": service(service_id, *instances)}


def services_answer(version: int, *services: dict[str, Any]) -> dict[str, Any]:
    instances = [i for s in services for i in s["instances"]]
    return {"checksum": checksum(*instances), "responseStatus": SUCCESS,
            "services": list(services), "version": version}


def lease(inst: dict[str, Any], renewed_ms: int = START_MS,
          created_ms: int = START_MS) -> dict[str, Any]:
    """A LeaseStatus of leases.json (§3.9)."""
    return {"creationTime": stamp(created_ms), "evitionTime": stamp(0),
            "instance": describe(inst), "renewalTime": stamp(renewed_ms), "ttl": 20000}


def entry(id: int, *, kind: str = "instance-operation", operation: str = "pullout",
          complete: bool = False, before: list[str] | None = None,
          after: list[str] | None = None, actor: str = "admin", operator: str = "alice",
          reason: str | None = None, extensions: str = "{}", created: int = START_MS,
          service_id: str | None = SERVICE, instance_id: str | None = "10.0.0.5:8080",
          server_id: str | None = None, zone_id: str | None = None) -> dict[str, Any]:
    """One audit log entry; `before`/`after` default to a first pull-out (in) of `operation`."""
    if before is None:
        before = [operation] if complete else []
    if after is None:
        after = [] if complete else [operation]
    return {"actor": actor, "after": after, "before": before, "complete": complete,
            "createTime": created, "extensions": extensions, "id": id,
            "instanceId": instance_id, "kind": kind, "operation": operation,
            "operatorId": operator, "reason": reason, "regionId": REGION.lower(),
            "serverId": server_id, "serviceId": service_id, "zoneId": zone_id}


def logs(*entries: dict[str, Any], total: int | None = None) -> dict[str, Any]:
    return {"logs": list(entries), "responseStatus": SUCCESS,
            "total": len(entries) if total is None else total}


def instance_operations(service_id: str, instance_id: str, *operations: str) -> dict[str, Any]:
    return {"instanceKey": {"instanceId": instance_id, "regionId": REGION.lower(),
                            "serviceId": service_id}, "operations": list(operations)}


def server_operations(server_id: str, *operations: str) -> dict[str, Any]:
    return {"operations": list(operations),
            "serverKey": {"regionId": REGION.lower(), "serverId": server_id}}


def zone_operations(service_id: str, zone_id: str, *operations: str) -> dict[str, Any]:
    return {"operations": list(operations), "zoneKey": {
        "regionId": REGION.lower(), "serviceId": service_id, "zoneId": zone_id}}


def failure(path: str, code: str, message: str) -> dict[str, Any]:
    """The failed answer of a management endpoint: its payload null, and the status."""
    return {**NULLS[path], "responseStatus": fail(code, message)}


def read_body(path: str) -> dict[str, Any]:
    """A valid body for each read endpoint."""
    return {
        INSTANCE_OPERATIONS: {"instanceKey": ikey()}, SERVER_OPERATIONS: {"serverKey": skey()},
        INSTANCE_DOWN: {"instance": instance()}, SERVER_DOWN: {"serverKey": skey()},
        ZONE_OPERATIONS: {"zoneKey": zkey()}, ZONE_DOWN: {"zoneKey": zkey()},
    }.get(path, {})


def write_body(path: str) -> dict[str, Any]:
    return {OPERATE_INSTANCE: operate(ikey()), OPERATE_SERVER: operate_server(skey()),
            OPERATE_ZONES: operate_zones(zkey())}[path]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def service_json(api: Api, service_id: str = SERVICE) -> Any:
    return await api.call(SERVICE_PATH, {"discoveryConfig": config(service_id),
                                         "regionId": REGION})


async def pull_out(api: Api, inst: dict[str, Any], operation: str = "pullout") -> None:
    assert OK == await api.call(OPERATE_INSTANCE, operate(key_of(inst), operation))


async def pull_in(api: Api, inst: dict[str, Any], operation: str = "pullout") -> None:
    assert OK == await api.call(OPERATE_INSTANCE, operate(key_of(inst), operation, True))


async def audit_total(api: Api) -> int:
    answer = await api.call(AUDIT, {}, headers={"authorization": ADMIN})
    return int(answer["total"])


async def until(predicate: Callable[[], bool], what: str, within: float = 3.0) -> None:
    """Wait until `predicate()` holds, polling every 5 ms; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


# --- nodes with other settings, and push sessions ---------------------------------------------


Socket = FakeWebSocket  # a WebSocket as the push server sees one


@dataclass
class Managed:
    """A node with a management database, its app, and an Api (whose client sends the admin
    token unless told otherwise)."""

    parts: NodeParts
    clock: FakeClock
    stack: contextlib.AsyncExitStack
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    sockets: list[Socket] = field(default_factory=list)
    api: Api = field(init=False)

    @property
    def app(self) -> Any:
        return self.parts.app

    @property
    def node(self) -> Node:
        return self.parts.node

    @property
    def push(self) -> PushServer:
        return self.app.websockets[DISCOVERY_WS].__self__  # type: ignore[no-any-return]

    async def caller(self, authorization: str | None) -> Api:
        """Another client of the same app, sending `authorization` (none if None)."""
        headers = {} if authorization is None else {"authorization": authorization}
        client = await self.stack.enter_async_context(httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://testserver",
            headers=headers))
        return Api(self.parts, self.clock, client)

    async def subscribe(self, service_id: str = SERVICE) -> Socket:
        """Open a push session subscribed to `service_id`; it ends at teardown."""
        ws = Socket()
        hub = self.push.hub
        before = hub.subscribers(service_id)
        self.tasks.append(asyncio.create_task(self.push.discovery(ws, "127.0.0.1:1")))
        self.sockets.append(ws)
        ws.incoming.put_nowait(json.dumps({"discoveryData": None, "regionId": REGION,
                                           "serviceId": service_id, "zoneId": ZONE}))
        await until(lambda: hub.subscribers(service_id) > before, "the subscription")
        return ws

    def token(self, revision: int) -> str:
        return f"{self.push.hub.run_id}.{revision}"


MakeManaged = Callable[..., Awaitable[Managed]]


@pytest.fixture
async def make_managed(clock: FakeClock, tmp_path: Path) -> AsyncIterator[MakeManaged]:
    """Build an up node with a SQLite management database, its data loaded, and `settings`
    (admin token MANAGEMENT_TOKEN unless given); its Api's client sends `authorization`."""
    async with contextlib.AsyncExitStack() as stack:
        built: list[Managed] = []

        async def make(authorization: str | None = ADMIN, **settings: Any) -> Managed:
            settings = {"database": f"sqlite:///{tmp_path}/m{len(built)}.db",
                        "admin_token": MANAGEMENT_TOKEN, **settings}
            parts = make_parts(clock, **settings)
            management = parts.management
            assert management is not None
            await management.store.open()
            stack.push_async_callback(management.close)
            await management.reload()
            parts.node.release("management")
            managed = Managed(parts, clock, stack)
            managed.api = await managed.caller(authorization)
            built.append(managed)
            return managed

        yield make
        for managed in built:  # the clients go away; every session's handler must end
            for ws in managed.sockets:
                ws.incoming.put_nowait(None)
            results = await asyncio.wait_for(
                asyncio.gather(*managed.tasks, return_exceptions=True), 3.0)
            assert [None] * len(managed.tasks) == results


# --- 1. instances out of discovery and back -----------------------------------------------------


async def test_pull_out_hides_the_instance_from_every_discovery_answer(managed: Api) -> None:
    """A pulled-out instance leaves service, services and lookup; the delta lists its `delete`."""
    api = managed
    a, b = instance("10.0.0.5:8080"), instance("10.0.0.6:8080")
    assert OK_BODY == await api.register(a, b)
    before = await api.snapshot()
    await pull_out(api, a)
    after = await api.snapshot()

    assert shown(SERVICE, b) == await service_json(api)
    assert services_answer(after, service(SERVICE, b)) == await api.call(SERVICES)
    assert lookup_answer(service(SERVICE, b)) == await api.call(LOOKUP, {
        "discoveryConfigs": [config()], "regionId": REGION, "zoneId": ZONE})
    assert {"checksum": checksum(b), "delta": {SERVICE: [change("delete", START_MS + 1000, a)]},
            "responseStatus": SUCCESS, "version": after} == await api.call(
        DELTA, {"version": before})


async def test_a_pulled_out_instance_stays_registered(managed: Api) -> None:
    """Pull-out does not unregister: leases.json keeps the lease and heartbeats renew it."""
    api = managed
    assert OK_BODY == await api.register(instance())
    await pull_out(api, instance())
    api.clock.advance(5)

    assert OK_BODY == await api.heartbeat(instance())
    api.node.registry.check_safety(api.clock.monotonic())
    assert {"isSafe": True, "isSafeCheckEnabled": True, "leaseCount": 1,
            "leaseUpdateCountLastTimeWindow": 1, "leaseUpdateMaxCount": 1,
            "leaseUpdateMaxCountLastUpdateTime": START_MS + 5000,
            "leases": {SERVICE: [lease(instance(), renewed_ms=START_MS + 5000)]},
            "responseStatus": SUCCESS} == await api.call("/api/status/leases.json")
    assert shown(SERVICE) == await service_json(api)


async def test_pull_in_shows_the_instance_again(managed: Api) -> None:
    """Pull-in (`operationComplete: true`) shows the instance again; the delta lists its `new`."""
    api = managed
    a = instance()
    assert OK_BODY == await api.register(a)
    await pull_out(api, a)
    before = await api.snapshot()
    await pull_in(api, a)
    after = await api.snapshot()

    assert shown(SERVICE, a) == await service_json(api)
    assert services_answer(after, service(SERVICE, a)) == await api.call(SERVICES)
    assert lookup_answer(service(SERVICE, a)) == await api.lookup()
    assert {"checksum": checksum(a), "delta": {SERVICE: [change("new", START_MS + 1000, a)]},
            "responseStatus": SUCCESS, "version": after} == await api.call(
        DELTA, {"version": before})


async def test_an_instance_is_back_only_when_every_operation_is_complete(managed: Api) -> None:
    """An instance under two operations is back only when both are completed."""
    api = managed
    assert OK_BODY == await api.register(instance())
    await pull_out(api, instance(), "deploy")
    await pull_out(api, instance(), "maintenance")
    await pull_in(api, instance(), "deploy")

    assert shown(SERVICE) == await service_json(api)
    assert {"operations": instance_operations(SERVICE, "10.0.0.5:8080", "maintenance"),
            "responseStatus": SUCCESS} == await api.call(INSTANCE_OPERATIONS,
                                                         {"instanceKey": ikey()})
    await pull_in(api, instance(), "maintenance")
    assert shown(SERVICE, instance()) == await service_json(api)


async def test_instance_keys_ignore_case(managed: Api) -> None:
    """Region, service and instance ids match whatever their case; reads name them lower-case."""
    api = managed
    mixed = instance("Host-A:8080", serviceId="Demo.Service")
    assert OK_BODY == await api.register(mixed)
    assert OK == await api.call(OPERATE_INSTANCE, operate(ikey("HOST-A:8080", "DEMO.SERVICE",
                                                                "sha")))

    assert shown("Demo.Service") == await service_json(api, "Demo.Service")
    assert {"operations": instance_operations("demo.service", "host-a:8080", "pullout"),
            "responseStatus": SUCCESS} == await api.call(
        INSTANCE_OPERATIONS, {"instanceKey": ikey("host-A:8080", "demo.SERVICE", "Sha")})
    assert OK == await api.call(OPERATE_INSTANCE, operate(ikey("host-a:8080", "demo.service"),
                                                          complete=True))
    assert shown("Demo.Service", mixed) == await service_json(api, "Demo.Service")


async def test_an_instance_pulled_out_before_it_registers_stays_hidden(managed: Api) -> None:
    """An instance pulled out before it registers is hidden from its registration on."""
    api = managed
    await pull_out(api, instance())
    before = await api.snapshot()
    assert OK_BODY == await api.register(instance())
    after = await api.snapshot()

    assert shown(SERVICE) == await service_json(api)
    assert {"checksum": checksum(), "delta": {}, "responseStatus": SUCCESS,
            "version": after} == await api.call(DELTA, {"version": before})
    await pull_in(api, instance())
    assert shown(SERVICE, instance()) == await service_json(api)


# --- 2. push -------------------------------------------------------------------------------------


async def test_subscriber_is_pushed_delete_on_pull_out_and_new_on_pull_in(
        make_managed: MakeManaged) -> None:
    """A push subscriber gets `delete` on pull-out and `new` on pull-in."""
    node = await make_managed()
    api = node.api
    assert OK_BODY == await api.register(instance())
    ws = await node.subscribe()
    api.clock.advance(1)
    await pull_out(api, instance())
    api.clock.advance(1)
    await pull_in(api, instance())
    await until(lambda: len(ws.sent) >= 2, "two frames")

    assert [{"changeTime": START_MS + 1000, "changeType": "delete", "instance": instance(),
             "revision": node.token(2)},
            {"changeTime": START_MS + 2000, "changeType": "new", "instance": instance(),
             "revision": node.token(3)}] == ws.frames()


async def test_registering_a_pulled_out_instance_pushes_nothing(
        make_managed: MakeManaged) -> None:
    """Registering a pulled-out instance pushes nothing."""
    node = await make_managed()
    api = node.api
    await pull_out(api, instance())
    ws = await node.subscribe()
    assert OK_BODY == await api.register(instance())
    visible = instance("10.0.0.6:8080")
    assert OK_BODY == await api.register(visible)
    await until(lambda: len(ws.sent) >= 1, "one frame")

    assert [{"changeTime": START_MS, "changeType": "new", "instance": visible,
             "revision": node.token(1)}] == ws.frames()


async def test_heartbeats_keep_a_pulled_out_lease_and_push_nothing(
        make_managed: MakeManaged) -> None:
    """Heartbeats keep a pulled-out lease past its TTL and push nothing."""
    node = await make_managed()
    api = node.api
    assert OK_BODY == await api.register(instance())
    await pull_out(api, instance())
    ws = await node.subscribe()
    for _ in range(3):
        api.sweep(15)
        assert OK_BODY == await api.heartbeat(instance())
    api.sweep(15)

    assert 1 == api.node.registry.instance_count
    await pull_in(api, instance())
    await until(lambda: len(ws.sent) >= 1, "one frame")
    assert [{"changeTime": START_MS + 60_000, "changeType": "new", "instance": instance(),
             "revision": node.token(3)}] == ws.frames()


async def test_a_pulled_out_lease_that_expires_leaves_without_a_push(
        make_managed: MakeManaged) -> None:
    """A pulled-out lease that expires is removed without a `delete` push."""
    node = await make_managed()
    api = node.api
    assert OK_BODY == await api.register(instance())
    await pull_out(api, instance())
    ws = await node.subscribe()
    api.sweep(21)
    assert OK_BODY == await api.register(instance("10.0.0.6:8080"))
    await until(lambda: len(ws.sent) >= 1, "one frame")

    assert 1 == api.node.registry.instance_count
    assert [{"changeTime": START_MS + 21_000, "changeType": "new",
             "instance": instance("10.0.0.6:8080"), "revision": node.token(3)}] == ws.frames()


# --- 3. servers and zones ------------------------------------------------------------------------


async def test_server_pull_out_hides_its_instances_in_every_service(managed: Api) -> None:
    """A server pull-out hides every instance with that ip, in every service, until pull-in."""
    api = managed
    a = instance("10.0.0.5:8080")
    b = instance("10.0.0.5:9090", serviceId=OTHER_SERVICE)
    c = instance("10.0.0.6:8080")
    assert OK_BODY == await api.register(a, b, c)
    assert OK == await api.call(OPERATE_SERVER, operate_server(skey("10.0.0.5")))

    assert (shown(SERVICE, c), shown(OTHER_SERVICE)) == (
        await service_json(api), await service_json(api, OTHER_SERVICE))
    assert OK == await api.call(OPERATE_SERVER, operate_server(skey("10.0.0.5"), complete=True))
    assert (shown(SERVICE, a, c), shown(OTHER_SERVICE, b)) == (
        await service_json(api), await service_json(api, OTHER_SERVICE))


async def test_an_instance_under_a_server_and_its_own_operation_needs_both_done(
        managed: Api) -> None:
    """An instance out by its key and by its server is back only when both are completed."""
    api = managed
    assert OK_BODY == await api.register(instance())
    await pull_out(api, instance())
    assert OK == await api.call(OPERATE_SERVER, operate_server(skey()))
    await pull_in(api, instance())

    assert shown(SERVICE) == await service_json(api)
    assert OK == await api.call(OPERATE_SERVER, operate_server(skey(), complete=True))
    assert shown(SERVICE, instance()) == await service_json(api)


async def test_zone_pull_out_hides_one_services_instances_in_that_zone(managed: Api) -> None:
    """A zone pull-out hides that service's instances in that zone, nothing else."""
    api = managed
    a = instance("10.0.0.5:8080")
    b = instance("10.0.0.6:8080", zoneId="zone-2")
    c = instance("10.0.0.7:8080", serviceId=OTHER_SERVICE)
    assert OK_BODY == await api.register(a, b, c)
    assert OK == await api.call(OPERATE_ZONES, operate_zones(zkey("ZONE-1")))

    assert (shown(SERVICE, b), shown(OTHER_SERVICE, c)) == (
        await service_json(api), await service_json(api, OTHER_SERVICE))
    assert OK == await api.call(OPERATE_ZONES, operate_zones(zkey(), complete=True))
    assert (shown(SERVICE, a, b), shown(OTHER_SERVICE, c)) == (
        await service_json(api), await service_json(api, OTHER_SERVICE))


async def test_zone_items_without_operations_take_the_bodys_operation(managed: Api) -> None:
    """A zone item with no operations takes the body's `operation`; one body names many zones."""
    api = managed
    body = {"operation": "drill", "operationComplete": False, "operatorId": "alice",
            "zoneOperationsList": [{"operations": [], "zoneKey": zkey("zone-1")},
                                   {"operations": ["a", "b"], "zoneKey": zkey("zone-2")}]}
    assert OK == await api.call(OPERATE_ZONES, body)

    assert {"allZoneOperations": [zone_operations(SERVICE, "zone-1", "drill"),
                                  zone_operations(SERVICE, "zone-2", "a", "b")],
            "responseStatus": SUCCESS} == await api.call(ALL_ZONE_OPERATIONS)


# --- 4. reads ------------------------------------------------------------------------------------


@pytest.fixture
async def operated(managed: Api) -> Api:
    """A managed node with instance, server and zone operations in force:
    10.0.0.5:8080 (deploy, maintenance), other.service.v1/10.0.0.9:80 (pullout), server
    10.0.0.7 (reboot), zone zone-2 of demo.service.v1 (drill)."""
    api = managed
    for body in (operate(ikey(), "maintenance"), operate(ikey(), "deploy"),
                 operate(ikey("10.0.0.9:80", OTHER_SERVICE))):
        assert OK == await api.call(OPERATE_INSTANCE, body)
    assert OK == await api.call(OPERATE_SERVER, operate_server(skey("10.0.0.7"), "reboot"))
    assert OK == await api.call(OPERATE_ZONES, operate_zones(zkey("zone-2"), operation="drill"))
    return api


async def test_instance_operations(operated: Api) -> None:
    """instance-operations lists one instance's operations, sorted; null when none."""
    assert {"operations": instance_operations(SERVICE, "10.0.0.5:8080", "deploy", "maintenance"),
            "responseStatus": SUCCESS} == await operated.call(INSTANCE_OPERATIONS,
                                                              {"instanceKey": ikey()})
    assert {"operations": None, "responseStatus": SUCCESS} == await operated.call(
        INSTANCE_OPERATIONS, {"instanceKey": ikey("10.0.0.6:8080")})


async def test_server_operations(operated: Api) -> None:
    """server-operations lists one machine's operations; null when none."""
    assert {"operations": server_operations("10.0.0.7", "reboot"),
            "responseStatus": SUCCESS} == await operated.call(SERVER_OPERATIONS,
                                                              {"serverKey": skey("10.0.0.7")})
    assert {"operations": None, "responseStatus": SUCCESS} == await operated.call(
        SERVER_OPERATIONS, {"serverKey": skey("10.0.0.5")})


async def test_all_instance_operations_get_and_post(operated: Api) -> None:
    """all-instance-operations lists every instance in GET and POST form; other regions none."""
    every = {"allInstanceOperations": [
        instance_operations(SERVICE, "10.0.0.5:8080", "deploy", "maintenance"),
        instance_operations(OTHER_SERVICE, "10.0.0.9:80", "pullout")],
        "responseStatus": SUCCESS}
    nothing = {"allInstanceOperations": [], "responseStatus": SUCCESS}

    assert [every, every, nothing, every, every, nothing] == [
        (await operated.get(ALL_INSTANCE_OPERATIONS)).json(),
        (await operated.get(ALL_INSTANCE_OPERATIONS, {"regionId": "sha"})).json(),
        (await operated.get(ALL_INSTANCE_OPERATIONS, {"regionId": "FRA"})).json(),
        await operated.call(ALL_INSTANCE_OPERATIONS, {}),
        await operated.call(ALL_INSTANCE_OPERATIONS, {"regionId": REGION}),
        await operated.call(ALL_INSTANCE_OPERATIONS, {"regionId": "FRA"})]


async def test_all_server_operations_get_and_post(operated: Api) -> None:
    """all-server-operations lists every machine in GET and POST form; other regions none."""
    every = {"allServerOperations": [server_operations("10.0.0.7", "reboot")],
             "responseStatus": SUCCESS}
    nothing = {"allServerOperations": [], "responseStatus": SUCCESS}

    assert [every, nothing, every, nothing] == [
        (await operated.get(ALL_SERVER_OPERATIONS, {"regionId": REGION})).json(),
        (await operated.get(ALL_SERVER_OPERATIONS, {"regionId": "FRA"})).json(),
        await operated.call(ALL_SERVER_OPERATIONS, {}),
        await operated.call(ALL_SERVER_OPERATIONS, {"regionId": "fra"})]


async def test_instance_down_by_own_key_server_and_zone(operated: Api) -> None:
    """instance-down is true when the instance's key, server or zone is pulled out."""
    def down(value: bool) -> dict[str, Any]:
        return {"down": value, "responseStatus": SUCCESS}

    asked = [instance(), instance("10.0.0.7:8080"), instance("10.0.0.8:8080", zoneId="Zone-2"),
             instance("10.0.0.8:8080"), instance("10.0.0.5:9090")]
    answers = [await operated.call(INSTANCE_DOWN, {"instance": i}) for i in asked]
    assert [down(True), down(True), down(True), down(False), down(False)] == answers


async def test_server_down(operated: Api) -> None:
    """server-down is true for a machine with an operation in force, whatever the case."""
    assert [{"down": True, "responseStatus": SUCCESS},
            {"down": False, "responseStatus": SUCCESS}] == [
        await operated.call(SERVER_DOWN, {"serverKey": skey("10.0.0.7", "SHA")}),
        await operated.call(SERVER_DOWN, {"serverKey": skey("10.0.0.5")})]


async def test_zone_reads(operated: Api) -> None:
    """The zone reads list, filter and test the zone operations in force."""
    drill = zone_operations(SERVICE, "zone-2", "drill")
    assert [{"allZoneOperations": [drill], "responseStatus": SUCCESS},
            {"allZoneOperations": [], "responseStatus": SUCCESS},
            {"allZoneOperations": [drill], "responseStatus": SUCCESS},
            {"allZoneOperations": [], "responseStatus": SUCCESS}] == [
        (await operated.get(ALL_ZONE_OPERATIONS, {"regionId": REGION})).json(),
        (await operated.get(ALL_ZONE_OPERATIONS, {"regionId": "FRA"})).json(),
        await operated.call(ALL_ZONE_OPERATIONS, {}),
        await operated.call(ALL_ZONE_OPERATIONS, {"regionId": "FRA"})]
    assert [{"operations": drill, "responseStatus": SUCCESS},
            {"operations": None, "responseStatus": SUCCESS}] == [
        await operated.call(ZONE_OPERATIONS, {"zoneKey": zkey("ZONE-2")}),
        await operated.call(ZONE_OPERATIONS, {"zoneKey": zkey("zone-1")})]
    assert [{"responseStatus": SUCCESS, "zoneOperationsList": [drill]},
            {"responseStatus": SUCCESS, "zoneOperationsList": [drill]},
            {"responseStatus": SUCCESS, "zoneOperationsList": []}] == [
        await operated.call(ZONE_OPERATIONS_LIST, {}),
        await operated.call(ZONE_OPERATIONS_LIST, {"regionId": REGION, "serviceId": SERVICE,
                                                   "zoneId": "zone-2"}),
        await operated.call(ZONE_OPERATIONS_LIST, {"serviceId": OTHER_SERVICE})]
    assert [{"down": True, "responseStatus": SUCCESS},
            {"down": False, "responseStatus": SUCCESS}] == [
        await operated.call(ZONE_DOWN, {"zoneKey": zkey("zone-2")}),
        await operated.call(ZONE_DOWN, {"zoneKey": zkey("zone-2", OTHER_SERVICE)})]


# --- 5. the audit log ----------------------------------------------------------------------------


async def test_every_write_is_audited(managed: Api) -> None:
    """Every write is audited with actor, operator, before/after, complete, reason, extensions."""
    api = managed
    assert OK == await api.call(OPERATE_INSTANCE, operate(
        ikey(), reason="deploy 42", extensions='{"ticket":"OPS-1"}'))
    api.clock.advance(1)
    assert OK == await api.call(OPERATE_SERVER, operate_server(skey("10.0.0.7"), "reboot",
                                                               operator="bob"))
    api.clock.advance(1)
    assert OK == await api.call(OPERATE_ZONES, operate_zones(zkey("zone-2"), operation="drill"))
    api.clock.advance(1)
    assert OK == await api.call(OPERATE_INSTANCE, operate(ikey(), complete=True))

    first = entry(1, reason="deploy 42", extensions='{"ticket":"OPS-1"}')
    server = entry(2, kind="server-operation", operation="reboot", operator="bob",
                   created=START_MS + 1000, service_id=None, instance_id=None,
                   server_id="10.0.0.7")
    zone = entry(3, kind="zone-operation", operation="drill", created=START_MS + 2000,
                 instance_id=None, zone_id="zone-2")
    back = entry(4, complete=True, created=START_MS + 3000)
    assert logs(back, zone, server, first) == await api.call(AUDIT, {})
    assert [logs(back, first), logs(server), logs(zone)] == [
        await api.call(INSTANCE_LOGS, {}), await api.call(SERVER_LOGS, {}),
        await api.call(ZONE_LOGS, {})]


async def test_a_repeated_pull_out_is_audited_with_nothing_changed(managed: Api) -> None:
    """A write that changes nothing succeeds and is audited with before equal to after."""
    api = managed
    for body in (operate(ikey()), operate(ikey()), operate(ikey(), "other", complete=True)):
        assert OK == await api.call(OPERATE_INSTANCE, body)

    assert logs(entry(3, operation="other", complete=True, before=["pullout"],
                      after=["pullout"]),
                entry(2, before=["pullout"], after=["pullout"]),
                entry(1)) == await api.call(AUDIT, {})


@pytest.fixture
async def audited(managed: Api) -> Api:
    """Five audited writes, one second apart: pull-outs of i1 (alice), i2 (bob), server
    10.0.0.7 (bob, reboot), zone zone-2 (alice, drill) and the pull-in of i1 (carol)."""
    api = managed
    writes = [(OPERATE_INSTANCE, operate(ikey("I1"))),
              (OPERATE_INSTANCE, operate(ikey("i2"), operator="bob")),
              (OPERATE_SERVER, operate_server(skey("10.0.0.7"), "reboot", operator="bob")),
              (OPERATE_ZONES, operate_zones(zkey("zone-2"), operation="drill")),
              (OPERATE_INSTANCE, operate(ikey("i1"), complete=True, operator="carol"))]
    for path, body in writes:
        assert OK == await api.call(path, body)
        api.clock.advance(1)
    return api


AUDITED = {
    1: entry(1, instance_id="i1"),
    2: entry(2, instance_id="i2", operator="bob", created=START_MS + 1000),
    3: entry(3, kind="server-operation", operation="reboot", operator="bob",
             created=START_MS + 2000, service_id=None, instance_id=None, server_id="10.0.0.7"),
    4: entry(4, kind="zone-operation", operation="drill", created=START_MS + 3000,
             instance_id=None, zone_id="zone-2"),
    5: entry(5, instance_id="i1", complete=True, operator="carol", created=START_MS + 4000),
}


AUDIT_FILTERS: list[tuple[dict[str, Any], list[int]]] = [
    ({"serviceId": "DEMO.Service.V1"}, [5, 4, 2, 1]),
    ({"instanceId": "I1"}, [5, 1]),
    ({"serverId": "10.0.0.7"}, [3]),
    ({"zoneId": "Zone-2"}, [4]),
    ({"regionId": "sha"}, [5, 4, 3, 2, 1]),
    ({"regionId": "FRA"}, []),
    ({"operation": "drill"}, [4]),
    ({"operation": "DRILL"}, []),
    ({"operatorId": "bob"}, [3, 2]),
    ({"complete": True}, [5]),
    ({"complete": False, "operatorId": "alice"}, [4, 1]),
    ({"serviceId": " ", "instanceId": None, "complete": None}, [5, 4, 3, 2, 1]),
]
AUDIT_PAGES: list[tuple[dict[str, Any], list[int]]] = [
    ({"limit": 2}, [5, 4]),
    ({"offset": 2, "limit": 2}, [3, 2]),
    ({"offset": 4, "limit": 2}, [1]),
    ({"offset": 9}, []),
    ({"offset": 2**63 - 1}, []),
    ({"newestFirst": True, "limit": 1}, [5]),
    ({"newestFirst": False}, [1, 2, 3, 4, 5]),
    ({"newestFirst": False, "offset": 1, "limit": 3}, [2, 3, 4]),
]


async def test_audit_filters(audited: Api) -> None:
    """Audit filters are ANDed equalities (ids without case); blank or null ones are ignored."""
    expected = [logs(*(AUDITED[i] for i in ids)) for _, ids in AUDIT_FILTERS]
    assert expected == [await audited.call(AUDIT, filters) for filters, _ in AUDIT_FILTERS]


async def test_audit_paging_and_order(audited: Api) -> None:
    """offset/limit page the audit log, total counts all matches, newestFirst orders it."""
    expected = [logs(*(AUDITED[i] for i in ids), total=5) for _, ids in AUDIT_PAGES]
    assert expected == [await audited.call(AUDIT, page) for page, _ in AUDIT_PAGES]


async def test_the_actor_is_the_tokens_name(make_managed: MakeManaged) -> None:
    """The audit's actor is `admin` for the admin token, else the token's name in `tokens`."""
    node = await make_managed(tokens=TOKENS)
    ops = await node.caller(f"Bearer {WRITE_SECRET}")
    assert OK == await node.api.call(OPERATE_INSTANCE, operate(ikey("i1")))
    assert OK == await ops.call(OPERATE_INSTANCE, operate(ikey("i2"), operator="bob"))

    assert logs(entry(2, actor="ops", operator="bob", instance_id="i2"),
                entry(1, instance_id="i1")) == await node.api.call(AUDIT, {})


# --- 6. tokens -----------------------------------------------------------------------------------


async def test_a_write_without_the_write_role_is_refused(make_managed: MakeManaged) -> None:
    """A write without a write-role token is no-permission and changes nothing."""
    node = await make_managed(tokens=TOKENS)
    assert OK_BODY == await node.api.register(instance())
    authorizations = [None, "Bearer ", "Bearer wrong-token-0123456789",
                      f"Basic {MANAGEMENT_TOKEN}", MANAGEMENT_TOKEN, f"Bearer {READ_SECRET}"]

    answers = []
    for authorization in authorizations:
        caller = await node.caller(authorization)
        answers += [await caller.call(path, write_body(path)) for path in WRITES]
    refused = failure(OPERATE_INSTANCE, "no-permission",
                      "this call needs a bearer token with the write role")
    assert [refused] * 3 * len(authorizations) == answers
    assert (logs(), {"allInstanceOperations": [], "responseStatus": SUCCESS},
            shown(SERVICE, instance())) == (await node.api.call(AUDIT, {}),
                                            await node.api.call(ALL_INSTANCE_OPERATIONS),
                                            await service_json(node.api))


async def test_a_read_without_a_read_token_is_refused(make_managed: MakeManaged) -> None:
    """A read without a read-role token is no-permission, payload null."""
    node = await make_managed(tokens=TOKENS)
    expected = {path: failure(path, "no-permission",
                              "this call needs a bearer token with the read role")
                for path in READS}

    for authorization in (None, "Bearer wrong-token-0123456789"):
        caller = await node.caller(authorization)
        assert expected == {path: await caller.call(path, read_body(path)) for path in READS}


async def test_read_and_write_tokens_can_read(make_managed: MakeManaged) -> None:
    """Read, write (write implies read) and admin tokens can read."""
    node = await make_managed(tokens=TOKENS)
    assert OK == await node.api.call(OPERATE_INSTANCE, operate(ikey()))

    for secret in (READ_SECRET, WRITE_SECRET, MANAGEMENT_TOKEN):
        caller = await node.caller(f"Bearer {secret}")
        assert ({"operations": instance_operations(SERVICE, "10.0.0.5:8080", "pullout"),
                 "responseStatus": SUCCESS}, logs(entry(1))) == (
            await caller.call(INSTANCE_OPERATIONS, {"instanceKey": ikey()}),
            await caller.call(AUDIT, {})), secret


async def test_a_write_token_from_tokens_writes(make_managed: MakeManaged) -> None:
    """A `tokens` entry with the write role writes (the scheme's case does not matter)."""
    node = await make_managed(tokens=TOKENS)
    ops = await node.caller(f"bearer {WRITE_SECRET}")

    assert OK == await ops.call(OPERATE_SERVER, operate_server(skey()))
    assert {"down": True, "responseStatus": SUCCESS} == await ops.call(
        SERVER_DOWN, {"serverKey": skey()})


async def test_open_reads_let_reads_through_but_not_writes(make_managed: MakeManaged) -> None:
    """management_open_reads lets reads through without a token, but not writes."""
    node = await make_managed(management_open_reads=True)
    assert OK == await node.api.call(OPERATE_INSTANCE, operate(ikey()))
    anonymous = await node.caller(None)

    answers = {path: (await anonymous.call(path, read_body(path)))["responseStatus"]
               for path in READS}
    assert dict.fromkeys(READS, SUCCESS) == answers
    assert logs(entry(1)) == await anonymous.call(AUDIT, {})
    assert [failure(OPERATE_INSTANCE, "no-permission",
                    "this call needs a bearer token with the write role")] * 3 == [
        await anonymous.call(path, write_body(path)) for path in WRITES]
    assert 1 == await audit_total(node.api)


def test_a_database_without_a_write_token_is_a_settings_error() -> None:
    """A database without a write-role token is a SettingsError naming `database`."""
    message = ("option --database: database needs a token with the write role (admin_token, "
               "or tokens with NAME:write:SECRET): management writes are never open")
    for extra in ({}, {"tokens": f"reader:read:{READ_SECRET}"}):
        with pytest.raises(SettingsError) as raised:
            Settings.load(overrides={"database": "sqlite:///m.db", **extra})
        assert message == str(raised.value)


def test_a_database_with_a_write_token_loads() -> None:
    """A database with a write-role token (or the admin token) loads."""
    for extra in ({"tokens": "ops:read+write:0123456789abcdef"},
                  {"admin_token": MANAGEMENT_TOKEN}):
        settings = Settings.load(overrides={"database": "sqlite:///m.db", **extra})
        assert "sqlite:///m.db" == settings.database


@pytest.mark.parametrize(("tokens", "problem"), [
    ("ops", "token 1 is not NAME:ROLES:SECRET"),
    ("ops:write", "token 1 is not NAME:ROLES:SECRET"),
    (":write:", "token 1 is not NAME:ROLES:SECRET"),
    ("ops:admin:0123456789abcdef", "token 'ops': unknown role 'admin' (roles: read, write, "
                                   "register=SERVICES, joined by +)"),
    ("ops::0123456789abcdef", "token 'ops': roles are read, write, read+write or "
                              "register=SERVICES"),
    ("ops:write:0123456789abcde", "token 'ops': the secret must be at least 16 characters"),
    ("ops:write:0123456789abcdef,ops:read:0123456789abcdef", "token 'ops' is given twice"),
])
def test_bad_tokens_are_a_settings_error(tokens: str, problem: str) -> None:
    """A `tokens` entry that is not NAME:ROLES:SECRET (secret >= 16) is a SettingsError."""
    with pytest.raises(SettingsError) as raised:
        Settings.load(overrides={"tokens": tokens})
    assert f"option --tokens: tokens {problem}" == str(raised.value)


def test_a_bad_token_entry_does_not_echo_its_secret() -> None:
    """A refused `tokens` entry is not echoed with its secret in the error."""
    with pytest.raises(SettingsError) as raised:
        Settings.load(overrides={"tokens": ":write:hunter2hunter2hunter2"})
    assert "hunter2" not in str(raised.value)


# --- 7. bad input --------------------------------------------------------------------------------


def operate_without(**changes: Any) -> dict[str, Any]:
    """A valid operate-instance body with `changes` (a value of ... drops the field)."""
    body = {**operate(ikey()), **changes}
    return {k: v for k, v in body.items() if v is not ...}


def key_with(**changes: Any) -> dict[str, Any]:
    return operate_without(instanceKey={**ikey(), **changes})


BAD_INSTANCE_WRITES: list[tuple[Any, str]] = [
    (operate_without(instanceKey=...), "instanceKey is null."),
    (operate_without(instanceKey=None), "instanceKey is null."),
    (key_with(serviceId=" "), "serviceId is null or empty."),
    (key_with(instanceId=""), "instanceId is null or empty."),
    (key_with(instanceId=None), "instanceId is null or empty."),
    (key_with(regionId=" "), "regionId is null or empty."),
    (key_with(regionId="FRA"), "regionId 'FRA' is not this node's region 'SHA'."),
    (operate_without(operation=" \t"), "operation is null or empty."),
    (operate_without(operation=...), "operation is null or empty."),
    (operate_without(operatorId=...), "operatorId is null or empty."),
    (operate_without(operatorId=""), "operatorId is null or empty."),
    (key_with(serviceId="s" * 257), "serviceId is longer than 256 characters."),
    (key_with(instanceId="i" * 257), "instanceId is longer than 256 characters."),
    (operate_without(operation="o" * 129), "operation is longer than 128 characters."),
    (operate_without(operatorId="o" * 129), "operatorId is longer than 128 characters."),
    (key_with(instanceId="a\nb"), "instanceId contains control characters."),
    (operate_without(operation="a\x00b"), "operation contains control characters."),
    (operate_without(operatorId="a\x1bb"), "operatorId contains control characters."),
    (operate_without(extensions="not json"), "extensions is not JSON text."),
    (operate_without(extensions='{"a":'), "extensions is not JSON text."),
    (operate_without(extensions="x" * 2049), "extensions is longer than 2048 characters."),
    (operate_without(reason="r" * 1025), "reason is longer than 1024 characters."),
    (operate_without(reason="a\x00b"), "reason contains a NUL character"),
    (operate_without(operation=5), "request body: Expected `str | null`, got `int` - at "
                                   "`$.operation`"),
    (operate_without(operationComplete="yes"), "request body: Expected `bool`, got `str` - "
                                               "at `$.operationComplete`"),
    (operate_without(instanceKey=[1]), "request body: Expected `object | null`, got `array` - "
                                       "at `$.instanceKey`"),
    (key_with(serviceId=3), "request body: Expected `str | null`, got `int` - at "
                            "`$.instanceKey.serviceId`"),
    ([operate(ikey())], "request body: Expected `object`, got `array`"),
]


async def test_bad_instance_writes_are_refused_and_change_nothing(managed: Api) -> None:
    """A bad operate-instance body is bad-request and writes nothing."""
    assert OK_BODY == await managed.register(instance())
    answers = [await managed.call(OPERATE_INSTANCE, body) for body, _ in BAD_INSTANCE_WRITES]

    assert [failure(OPERATE_INSTANCE, "bad-request", message)
            for _, message in BAD_INSTANCE_WRITES] == answers
    assert (0, shown(SERVICE, instance())) == (await audit_total(managed),
                                               await service_json(managed))


async def test_ids_of_exactly_the_limits_are_taken(managed: Api) -> None:
    """Ids of 256 characters and operation/operatorId of 128 are accepted."""
    service_id, instance_id = "S" * 256, "i" * 256
    body = operate(ikey(instance_id, service_id), "o" * 128, operator="p" * 128)
    assert OK == await managed.call(OPERATE_INSTANCE, body)

    assert logs(entry(1, service_id="s" * 256, instance_id=instance_id, operation="o" * 128,
                      operator="p" * 128)) == await managed.call(AUDIT, {})


async def test_malformed_json_is_refused(managed: Api) -> None:
    """A write whose body is not a JSON object is bad-request."""
    contents = [b"{bad", b"", b"\xff\xfe", b'{"instanceKey": {', b"null"]
    answers = [(await managed.post(path, content=content)).json()["responseStatus"]["errorCode"]
               for content in contents for path in WRITES]
    assert (["bad-request"] * 3 * len(contents), 0) == (answers, await audit_total(managed))


BAD_SERVER_AND_ZONE_WRITES: list[tuple[str, dict[str, Any], str]] = [
    (OPERATE_SERVER, {**operate_server(skey()), "serverKey": None}, "serverKey is null."),
    (OPERATE_SERVER, operate_server(skey(" ")), "serverId is null or empty."),
    (OPERATE_SERVER, operate_server(skey("x" * 257)), "serverId is longer than 256 characters."),
    (OPERATE_SERVER, operate_server(skey(region="FRA")),
     "regionId 'FRA' is not this node's region 'SHA'."),
    (OPERATE_SERVER, operate_server(skey(), operator=" "), "operatorId is null or empty."),
    (OPERATE_SERVER, operate_server(skey(), reason="\x00"), "reason contains a NUL character"),
    (OPERATE_ZONES, {**operate_zones(), "zoneOperationsList": None},
     "zoneOperationsList is null or empty."),
    (OPERATE_ZONES, operate_zones(), "zoneOperationsList is null or empty."),
    (OPERATE_ZONES, operate_zones(*[zkey(f"z{n}") for n in range(1001)]),
     "zoneOperationsList has more than 1000 entries."),
    (OPERATE_ZONES, operate_zones(zkey(), zkey(" ")), "zoneId is null or empty."),
    (OPERATE_ZONES, operate_zones(zkey(), zkey(region="FRA")),
     "regionId 'FRA' is not this node's region 'SHA'."),
    (OPERATE_ZONES, operate_zones(zkey(), operation="a\tb"),
     "operation contains control characters."),
    (OPERATE_ZONES, {**operate_zones(), "zoneOperationsList": [
        {"operations": [], "zoneKey": zkey()}]}, "operations is null or empty."),
    (OPERATE_ZONES, {**operate_zones(), "zoneOperationsList": [{"zoneKey": zkey()}]},
     "request body: Object missing required field `operations` - at `$.zoneOperationsList[0]`"),
    (OPERATE_ZONES, {**operate_zones(zkey()), "extensions": "{"}, "extensions is not JSON text."),
]


async def test_bad_server_and_zone_writes_are_refused_and_change_nothing(managed: Api) -> None:
    """A bad server or zone write (any item) is bad-request and writes nothing."""
    answers = [await managed.call(path, body) for path, body, _ in BAD_SERVER_AND_ZONE_WRITES]

    assert [failure(path, "bad-request", message)
            for path, _, message in BAD_SERVER_AND_ZONE_WRITES] == answers
    assert (0, {"allZoneOperations": [], "responseStatus": SUCCESS}) == (
        await audit_total(managed), await managed.call(ALL_ZONE_OPERATIONS))


PAGE = "offset must be from 0 to 9223372036854775807 and limit from 1 to 1000."
BAD_READS: list[tuple[str, dict[str, Any], str]] = [
    (INSTANCE_OPERATIONS, {}, "instanceKey is null."),
    (INSTANCE_OPERATIONS, {"instanceKey": ikey(" ")}, "instanceId is null or empty."),
    (SERVER_OPERATIONS, {"serverKey": skey(region="FRA")},
     "regionId 'FRA' is not this node's region 'SHA'."),
    (ALL_INSTANCE_OPERATIONS, {"regionId": 5},
     "request body: Expected `str | null`, got `int` - at `$.regionId`"),
    (INSTANCE_DOWN, {}, "instance is null."),
    (SERVER_DOWN, {"serverKey": skey("")}, "serverId is null or empty."),
    (ZONE_OPERATIONS, {"zoneKey": zkey("z" * 257)}, "zoneId is longer than 256 characters."),
    (ZONE_OPERATIONS_LIST, {"regionId": "FRA"},
     "regionId 'FRA' is not this node's region 'SHA'."),
    (ZONE_DOWN, {}, "zoneKey is null."),
    (AUDIT, {"limit": 0}, PAGE),
    (AUDIT, {"limit": 1001}, PAGE),
    (AUDIT, {"offset": -1}, PAGE),
    (AUDIT, {"offset": 2**63}, PAGE),
    (AUDIT, {"serviceId": "s" * 257}, "serviceId is longer than 256 characters."),
    (INSTANCE_LOGS, {"complete": "yes"},
     "request body: Expected `bool | null`, got `str` - at `$.complete`"),
]


async def test_bad_reads_are_refused(managed: Api) -> None:
    """A read with a bad key, region, type or page is bad-request."""
    answers = [await managed.call(path, body) for path, body, _ in BAD_READS]

    assert [failure(path, "bad-request", message) for path, _, message in BAD_READS] == answers


async def test_a_bad_audit_filter_is_named_as_sent(managed: Api) -> None:
    """A bad audit filter is named in the error as the caller sent it (operatorId)."""
    assert failure(AUDIT, "bad-request", "operatorId contains control characters.") == (
        await managed.call(AUDIT, {"operatorId": "a\x00"}))


@pytest.mark.parametrize("text", INJECTIONS)
async def test_sql_injection_text_is_stored_verbatim(managed: Api, text: str) -> None:
    """SQL in any text field is stored and read back verbatim, and the tables still work."""
    api = managed
    extensions = json.dumps({"note": text})
    context: dict[str, Any] = {"operator": text, "reason": text, "extensions": extensions}
    assert OK == await api.call(OPERATE_INSTANCE, operate(ikey(text, text), text, **context))
    assert OK == await api.call(OPERATE_SERVER, operate_server(skey(text), text, **context))
    assert OK == await api.call(OPERATE_ZONES, operate_zones(zkey(text, text), operation=text,
                                                             **context))
    assert OK == await api.call(OPERATE_INSTANCE, operate(ikey()))
    lower = text.lower()

    common: dict[str, Any] = {"operation": text, "operator": text, "reason": text,
                              "extensions": extensions}
    injected = [entry(3, kind="zone-operation", service_id=lower, instance_id=None,
                      zone_id=lower, **common),
                entry(2, kind="server-operation", service_id=None, instance_id=None,
                      server_id=lower, **common),
                entry(1, service_id=lower, instance_id=lower, **common)]
    assert logs(entry(4), *injected) == await api.call(AUDIT, {})
    assert logs(*injected) == await api.call(AUDIT, {"operatorId": text})
    assert logs(injected[2]) == await api.call(INSTANCE_LOGS, {"instanceId": text,
                                                               "operation": text})
    assert {"operations": instance_operations(lower, lower, text),
            "responseStatus": SUCCESS} == await api.call(INSTANCE_OPERATIONS,
                                                         {"instanceKey": ikey(text, text)})
    assert {"allServerOperations": [server_operations(lower, text)],
            "responseStatus": SUCCESS} == await api.call(ALL_SERVER_OPERATIONS)
    assert {"responseStatus": SUCCESS, "zoneOperationsList": [
        zone_operations(lower, lower, text)]} == await api.call(ZONE_OPERATIONS_LIST, {
            "serviceId": text})


async def test_a_node_without_a_database_answers_service_unavailable(api: Api) -> None:
    """Without a database every management endpoint is service-unavailable."""
    expected = {path: failure(path, "service-unavailable",
                              "management is not configured on this node (no database)")
                for path in NULLS}
    answers = {path: await api.call(path, write_body(path) if path in WRITES
                                    else read_body(path), headers={"authorization": ADMIN})
               for path in NULLS}
    assert expected == answers


async def test_get_forms_without_a_database_answer_service_unavailable(api: Api) -> None:
    """Without a database the GET forms are service-unavailable too."""
    paths = [ALL_INSTANCE_OPERATIONS, ALL_SERVER_OPERATIONS, ALL_ZONE_OPERATIONS]
    assert [failure(path, "service-unavailable",
                    "management is not configured on this node (no database)")
            for path in paths] == [(await api.get(path)).json() for path in paths]


async def test_a_locked_database_makes_writes_unavailable_and_changes_nothing(
        managed: Api, tmp_path: Path) -> None:
    """A locked database makes writes service-unavailable; the registry goes on."""
    api = managed
    management = api.parts.management
    assert management is not None
    assert OK_BODY == await api.register(instance(), instance("10.0.0.6:8080"))
    await pull_out(api, instance())
    quick = ManagementStore(api.node.settings.database, timeout=0.25)
    await quick.open()
    await management.store.close()
    management.store = quick
    blocker = sqlite3.connect(tmp_path / "management.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("UPDATE artemis_meta SET version = version + 100")
        started = asyncio.get_running_loop().time()
        answers = [await api.call(path, write_body(path)) for path in WRITES]
        elapsed = asyncio.get_running_loop().time() - started
        assert OK_BODY == await api.register(instance("10.0.0.7:8080"))
        assert OK_BODY == await api.heartbeat(instance())
        assert shown(SERVICE, instance("10.0.0.6:8080"), instance("10.0.0.7:8080")) == (
            await service_json(api))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    assert elapsed < 3 * 1.0, f"three refused writes took {elapsed:.2f} s"
    for answer in answers:
        message = answer["responseStatus"]["message"]
        assert message.startswith("the management database does not answer: ")
        assert failure(OPERATE_INSTANCE, "service-unavailable", message) == answer
    assert 1 == await audit_total(api)
    await pull_in(api, instance())
    assert 2 == await audit_total(api)


@pytest.fixture
async def unreachable(managed: Api) -> Api:
    """A managed node with 10.0.0.5:8080 registered and pulled out, 10.0.0.6:8080 registered,
    whose store then points at a database that refuses connections (timeout 0.5 s); the node
    has tried to load from it once (as its poll would)."""
    api = managed
    management = api.parts.management
    assert management is not None
    assert OK_BODY == await api.register(instance(), instance("10.0.0.6:8080"))
    await pull_out(api, instance())
    await management.store.close()
    management.store = ManagementStore(f"mysql://root@127.0.0.1:{closed_port()}/x",
                                       timeout=0.5)
    await management.reload()
    return api


async def test_an_unreachable_database_keeps_the_last_state(unreachable: Api) -> None:
    """With the database unreachable the registry goes on and pull-outs stay applied."""
    api = unreachable
    later = instance("10.0.0.7:8080")
    assert [OK_BODY] * 3 == [await api.register(later), await api.heartbeat(instance()),
                             await api.register(instance())]

    assert lookup_answer(service(SERVICE, instance("10.0.0.6:8080"), later)) == (
        await api.lookup())
    status = (await api.get("/api/status/management.json")).json()
    assert ({"available": False, "enabled": True, "hiddenInstances": 1,
             "lastError": "StoreUnavailable: the management store is not open"},
            {"instances": 1, "servers": 0, "zones": 0}) == (
        {k: status[k] for k in ("available", "enabled", "hiddenInstances", "lastError")},
        status["pulledOut"])


async def test_an_unreachable_database_makes_writes_and_audit_unavailable(
        unreachable: Api) -> None:
    """With the database unreachable, writes and audit-log reads are service-unavailable."""
    api = unreachable
    paths = [*WRITES, INSTANCE_LOGS, SERVER_LOGS, ZONE_LOGS, AUDIT]
    answers = {path: await api.call(path, write_body(path) if path in WRITES else {})
               for path in paths}

    assert {path: failure(path, "service-unavailable", "the management database does not "
                          "answer; discovery goes on with the last data loaded")
            for path in paths} == answers


async def test_an_unreachable_database_makes_operation_reads_unavailable(
        unreachable: Api) -> None:
    """With the database unreachable, the operation reads are service-unavailable too."""
    api = unreachable
    paths = [path for path in READS if "/log/" not in path]
    answers = {path: (await api.call(path, read_body(path)))["responseStatus"]["errorCode"]
               for path in paths}

    assert dict.fromkeys(paths, "service-unavailable") == answers


# --- 8. a node that is not up ----------------------------------------------------------------


async def test_a_node_forced_down_refuses_writes(managed: Api) -> None:
    """A node forced down answers writes service-unavailable and writes nothing."""
    api = managed
    assert "down" == (await api.call(NODE_STATUS, {"status": "down"}))["nodeStatus"]["status"]

    answers = [await api.call(path, write_body(path)) for path in WRITES]
    assert [failure(OPERATE_INSTANCE, "service-unavailable",
                    "Serivce is not in up state. Current status: down")] * 3 == answers
    assert (logs(), {"allInstanceOperations": [], "responseStatus": SUCCESS}) == (
        await api.call(AUDIT, {}), await api.call(ALL_INSTANCE_OPERATIONS))
    assert "up" == (await api.call(NODE_STATUS, {"status": "auto"}))["nodeStatus"]["status"]
    assert OK == await api.call(OPERATE_INSTANCE, operate(ikey()))


async def test_a_node_not_up_checks_the_token_first(make_managed: MakeManaged) -> None:
    """A node not up checks the token before its state: no-permission first."""
    node = await make_managed(tokens=TOKENS)
    assert "down" == (await node.api.call(NODE_STATUS, {"status": "down"}))["nodeStatus"][
        "status"]
    reader = await node.caller(f"Bearer {READ_SECRET}")

    assert failure(OPERATE_INSTANCE, "no-permission",
                   "this call needs a bearer token with the write role") == (
        await reader.call(OPERATE_INSTANCE, operate(ikey())))


async def test_a_node_not_up_checks_the_body_before_its_state(managed: Api) -> None:
    """A node not up checks the body before its state (the documented order)."""
    await managed.call(NODE_STATUS, {"status": "down"})

    assert failure(OPERATE_INSTANCE, "bad-request", "instanceKey is null.") == (
        await managed.call(OPERATE_INSTANCE, {"operation": "x", "operatorId": "alice"}))


async def test_management_reads_on_a_node_forced_down(managed: Api) -> None:
    """A node forced down still answers management reads."""
    await managed.call(NODE_STATUS, {"status": "down"})

    assert ({"allInstanceOperations": [], "responseStatus": SUCCESS}, logs()) == (
        await managed.call(ALL_INSTANCE_OPERATIONS), await managed.call(AUDIT, {}))
