"""The in-process harness of the HTTP API tests: sample data, expected answers, and `Api`.

`Api` is one node on a fake clock, its ASGI app and an httpx client talking to it without
sockets. The expected answers here are written from the protocol (§2.3, §3, §4.1, Appendix A),
not from the server's code, so the tests compare the server with the specification.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from hashlib import blake2b
from typing import Any

import httpx

from artemis.clock import FakeClock
from artemis.server.compose import NodeParts

REGION = "SHA"
ZONE = "zone-1"
SERVICE = "demo.service.v1"
NODE_URL = "http://127.0.0.1:8080"

REGISTER = "/api/registry/register.json"
HEARTBEAT = "/api/registry/heartbeat.json"
UNREGISTER = "/api/registry/unregister.json"
LOOKUP = "/api/discovery/lookup.json"
SERVICE_PATH = "/api/discovery/service.json"
SERVICES = "/api/discovery/services.json"
DELTA = "/api/discovery/services-delta.json"

SUCCESS: dict[str, str] = {"errorCode": "success", "message": "", "status": "success"}
PARTIAL: dict[str, str] = {"errorCode": "partial_fail", "message": "", "status": "partial_fail"}
OK_BODY: dict[str, Any] = {"failedInstances": None, "responseStatus": SUCCESS}
RATE_LIMITED: dict[str, str] = {"errorCode": "rate-limited", "message": "Request is rate limited.",
                                "status": "fail"}
NOT_EXISTING = "Instance is not exising! Need re-register."  # sic, the original's text


def fail(code: str, message: str) -> dict[str, str]:
    """A `fail` ResponseStatus."""
    return {"errorCode": code, "message": message, "status": "fail"}


def registry_fail(code: str, message: str) -> dict[str, Any]:
    """A whole register/heartbeat/unregister answer that failed as a whole."""
    return {"failedInstances": None, "responseStatus": fail(code, message)}


def instance(instance_id: str = "10.0.0.5:8080", **fields: Any) -> dict[str, Any]:
    """An Instance as the Java SDK sends it: every key, alphabetical, nulls written (§3.1)."""
    ip = instance_id.split(":")[0]
    data: dict[str, Any] = {
        "groupId": None,
        "healthCheckUrl": f"http://{instance_id}/health",
        "instanceId": instance_id,
        "ip": ip,
        "machineName": "web-" + ip.rsplit(".", 1)[-1],
        "metadata": {"owner": "team-a"},
        "port": 8080,
        "protocol": "http",
        "regionId": REGION,
        "serviceId": SERVICE,
        "status": "up",
        "url": f"http://{instance_id}/api",
        "zoneId": ZONE,
    }
    data.update(fields)
    return data


def full(**fields: Any) -> dict[str, Any]:
    """An Instance as the server writes one it was sent with only `fields`: nulls and 0 filled."""
    base: dict[str, Any] = {
        "groupId": None, "healthCheckUrl": None, "instanceId": None, "ip": None,
        "machineName": None, "metadata": None, "port": 0, "protocol": None, "regionId": None,
        "serviceId": None, "status": None, "url": None, "zoneId": None,
    }
    base.update(fields)
    return base


def service(service_id: str, *instances: dict[str, Any]) -> dict[str, Any]:
    """A Service as a registered service is answered: lists never null, no route rules (§4.2)."""
    return {"instances": list(instances), "logicInstances": [], "metadata": None,
            "routeRules": [], "serviceId": service_id}


def lookup_answer(*services: dict[str, Any]) -> dict[str, Any]:
    return {"responseStatus": SUCCESS, "services": list(services)}


def describe(inst: dict[str, Any]) -> str:
    """`Instance.toString()`: lower-case region/zone/service[/group]/instance (§3.1)."""
    parts = [inst.get("regionId"), inst.get("zoneId"), inst.get("serviceId")]
    group = inst.get("groupId")
    if group and not group.isspace():
        parts.append(group)
    parts.append(inst.get("instanceId"))
    return "/".join("null" if p is None else p for p in parts).lower()


def failed(inst: dict[str, Any], code: str, reason: str) -> dict[str, Any]:
    """One FailedInstance (§3.8); `inst` as the server echoes it."""
    return {"errorCode": code, "errorMessage": f"{describe(inst)}: {reason}", "instance": inst}


def partial(*failures: dict[str, Any]) -> dict[str, Any]:
    """A partial_fail answer (§4.1 step 5)."""
    return {"failedInstances": list(failures), "responseStatus": PARTIAL}


def canonical(inst: dict[str, Any]) -> bytes:
    """An instance's canonical JSON: its keys in order, no spaces, UTF-8."""
    return json.dumps(inst, separators=(",", ":"), ensure_ascii=False).encode()


def checksum(*instances: dict[str, Any]) -> str:
    """The documented checksum: sum mod 2^64 of blake2b-64 (little-endian) of canonical JSON."""
    total = sum(int.from_bytes(blake2b(canonical(i), digest_size=8).digest(), "little")
                for i in instances)
    return f"{total % 2**64:016x}"


def stamp(ms: int) -> str:
    """A lease time as LeaseStatus shows it: local time, `yyyy-MM-dd HH:mm:ss.SSS` (§3.9)."""
    moment = dt.datetime.fromtimestamp(ms / 1000).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def change(kind: str, change_time: int, inst: dict[str, Any]) -> dict[str, Any]:
    """One InstanceChange (§3.5)."""
    return {"changeTime": change_time, "changeType": kind, "instance": inst}


class Api:
    """A node (its parts) on a fake clock and an in-process client of its app."""

    def __init__(self, parts: NodeParts, clock: FakeClock, client: httpx.AsyncClient,
                 prefix: str = "") -> None:
        self.parts = parts
        self.node = parts.node
        self.clock = clock
        self.client = client
        self.prefix = prefix

    async def post(self, path: str, body: Any = None, *, content: Any = None,
                   headers: Any = None) -> httpx.Response:
        """POST `body` as JSON (or raw `content`) to `path` under the context path."""
        if content is None:
            content = json.dumps({} if body is None else body).encode()
        return await self.client.post(self.prefix + path, content=content, headers=headers)

    async def get(self, path: str, params: Any = None) -> httpx.Response:
        return await self.client.get(self.prefix + path, params=params)

    async def call(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        """POST and return the JSON answer, which must be a 200 application/json."""
        response = await self.post(path, body, **kwargs)
        assert (200, "application/json") == (response.status_code,
                                             response.headers["content-type"])
        return response.json()

    async def register(self, *instances: dict[str, Any]) -> Any:
        return await self.call(REGISTER, {"instances": list(instances)})

    async def heartbeat(self, *instances: dict[str, Any]) -> Any:
        return await self.call(HEARTBEAT, {"instances": list(instances)})

    async def unregister(self, *instances: dict[str, Any]) -> Any:
        return await self.call(UNREGISTER, {"instances": list(instances)})

    async def lookup(self, *service_ids: str) -> Any:
        configs = [{"discoveryData": None, "regionId": None, "serviceId": s, "zoneId": None}
                   for s in service_ids or (SERVICE,)]
        return await self.call(LOOKUP, {"discoveryConfigs": configs, "regionId": REGION,
                                        "zoneId": ZONE})

    async def snapshot(self, seconds: float = 1.0) -> int:
        """Let `seconds` pass, take a discovery snapshot and return the newest version."""
        self.clock.advance(seconds)
        await self.node.snapshot_once()
        return self.node.versions.current.version

    def sweep(self, seconds: float) -> None:
        """Let `seconds` pass and run one lease sweep."""
        self.clock.advance(seconds)
        self.node.sweep_once()

    def content(self) -> tuple[int, dict[str, dict[str, bytes]]]:
        """The registry's revision and every stored instance, as the node holds them."""
        return self.node.registry.revision, {
            name: {key: lease.encoded for key, lease in state.leases.items()}
            for name, state in self.node.registry.services.items()
        }

    @contextlib.asynccontextmanager
    async def unchanged(self, *service_ids: str) -> AsyncIterator[None]:
        """Assert that what runs inside changes no registered instance (lookup and store)."""
        before = (await self.lookup(*service_ids), self.content())
        yield
        after = (await self.lookup(*service_ids), self.content())
        assert before == after
