"""Writers against real nodes: the hijack of another client's instance (register with its id and
another URL, unregister it) in each registration mode, token scopes over HTTP and the heartbeat
WebSocket, and the Python client sending its token. A second client address on one machine is
127.0.0.2 (the client socket bound to it)."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import websockets

from artemis import wire
from artemis.client import NoPermission, RegistryClient
from artemis.wire import Instance
from tests.process.conftest import RunningNode, StartNode

REGISTER = "/api/registry/register.json"
HEARTBEAT = "/api/registry/heartbeat.json"
UNREGISTER = "/api/registry/unregister.json"
SECRET = "orders-secret-0123456789"  # noqa: S105 (a test token)
OTHER_SECRET = "payments-secret-0123456789"  # noqa: S105 (a test token)
ADMIN = "admin-secret-0123456789"


def instance(url: str = "http://10.0.0.5:8080/api", service: str = "orders.api",
             instance_id: str = "10.0.0.5:8080") -> dict[str, Any]:
    return {"serviceId": service, "instanceId": instance_id, "ip": "10.0.0.5", "port": 8080,
            "url": url, "regionId": "SHA", "zoneId": "zone-1", "status": "up"}


def body(*instances: dict[str, Any]) -> dict[str, Any]:
    return {"instances": list(instances)}


def attacker(node: RunningNode) -> httpx.Client:
    return httpx.Client(base_url=node.url, timeout=5.0,
                        transport=httpx.HTTPTransport(local_address="127.0.0.2"))


def urls(node: RunningNode, service: str = "orders.api") -> list[str]:
    with node.client() as client:
        answer = client.get("/api/discovery/service.json",
                            params={"serviceId": service, "regionId": "SHA", "zoneId": "zone-1"})
    service_data = answer.json()["service"] or {}
    return [i["url"] for i in service_data.get("instances") or []]


def failures(answer: httpx.Response) -> list[tuple[str, str]]:
    return [(f["errorCode"], f["errorMessage"]) for f in answer.json()["failedInstances"] or []]


def refused_writes(node: RunningNode, rule: str) -> float:
    with node.client() as client:
        text = client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(f'artemis_writes_refused_total{{rule="{rule}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no artemis_writes_refused for {rule} in /metrics")


def test_open_mode_refuses_the_hijack_while_the_victim_heartbeats(start_node: StartNode) -> None:
    node = start_node("--admin-token", ADMIN)
    victim_url, evil = "http://10.0.0.5:8080/api", "http://evil.example:80/api"
    with node.client() as victim, attacker(node) as thief:
        assert [] == failures(victim.post(REGISTER, json=body(instance(victim_url))))
        answer = thief.post(REGISTER, json=body(instance(evil)))
        ((code, message),) = failures(answer)
        assert "no-permission" == code
        assert "only its owner may change it" in message
        assert "127.0.0.2" in message
        assert [] == failures(victim.post(HEARTBEAT, json=body(instance(victim_url))))
        assert [victim_url] == urls(node)
        ((code, message),) = failures(thief.post(UNREGISTER, json=body(instance(victim_url))))
        assert "no-permission" == code
        assert "only its owner may unregister it" in message
        assert [victim_url] == urls(node)
        # the same data from another address (a client behind a new NAT address) renews it
        assert [] == failures(thief.post(REGISTER, json=body(instance(victim_url))))
        assert 2 == refused_writes(node, "owner")
        config = victim.get("/api/status/config.json",
                            headers={"Authorization": f"Bearer {ADMIN}"}).json()
        assert "open" == config["properties"]["registration_mode"]
        assert [] == failures(victim.post(UNREGISTER, json=body(instance(victim_url))))
        assert [] == urls(node)


def test_open_mode_after_expiry_anyone_may_register(start_node: StartNode) -> None:
    node = start_node("--lease-ttl", "1", "--no-self-preservation")
    with node.client() as victim, attacker(node) as other:
        assert [] == failures(victim.post(REGISTER, json=body(instance())))
        time.sleep(1.3)  # the victim stopped heartbeating: its lease expired
        assert [] == failures(other.post(REGISTER, json=body(instance("http://new:80/api"))))
        assert ["http://new:80/api"] == urls(node)
        # now the first address is the other writer
        ((code, _),) = failures(victim.post(REGISTER, json=body(instance())))
        assert "no-permission" == code


def test_permissive_mode_is_the_originals_behaviour(start_node: StartNode) -> None:
    node = start_node("--registration-mode", "permissive")
    with node.client() as victim, attacker(node) as thief:
        assert [] == failures(victim.post(REGISTER, json=body(instance())))
        assert [] == failures(thief.post(REGISTER, json=body(instance("http://evil:80/api"))))
        assert ["http://evil:80/api"] == urls(node)
        assert [] == failures(thief.post(UNREGISTER, json=body(instance())))
        assert [] == urls(node)
    assert "registration mode permissive" in node.output()


def token_node(start_node: StartNode) -> RunningNode:
    return start_node("--registration-mode", "token", "--tokens",
                      f"orders:register=orders.*:{SECRET},payments:register=payments:"
                      f"{OTHER_SECRET}")


def test_token_mode_refuses_no_token_and_writes_outside_the_scope(start_node: StartNode) -> None:
    node = token_node(start_node)
    bearer = {"Authorization": f"Bearer {SECRET}"}
    with node.client() as client:
        answer = client.post(REGISTER, json=body(instance())).json()
        assert "no-permission" == answer["responseStatus"]["errorCode"]
        assert "need a bearer token with the register role" in answer["responseStatus"]["message"]
        answer = client.post(REGISTER, json=body(instance()),
                             headers={"Authorization": "Bearer not-a-token-of-this-node"}).json()
        assert "not one of this node's tokens" in answer["responseStatus"]["message"]
        mixed = body(instance(), instance(service="payments"))
        ((code, message),) = failures(client.post(REGISTER, json=mixed, headers=bearer))
        assert "no-permission" == code
        assert "may not write service 'payments'" in message
        assert [] == failures(client.post(HEARTBEAT, json=body(instance()), headers=bearer))
        # another token, even with the same data, cannot unregister what it may not write
        other = {"Authorization": f"Bearer {OTHER_SECRET}"}
        ((code, _),) = failures(client.post(UNREGISTER, json=body(instance()), headers=other))
        assert "no-permission" == code
        assert 2 == refused_writes(node, "token")
        assert 2 == refused_writes(node, "scope")
        assert [] == failures(client.post(UNREGISTER, json=body(instance()), headers=bearer))


def test_a_heartbeat_sent_exactly_as_held_is_still_held_to_the_token_scope(
        start_node: StartNode) -> None:
    """A heartbeat of canonical JSON, each instance exactly as the node holds it, is renewed
    without being decoded, but never without a token in token mode, nor for a token whose
    scope does not cover the service."""
    node = token_node(start_node)
    payments = instance(service="payments")
    held = wire.encode(wire.decode(json.dumps(payments).encode(), wire.Instance))
    exact = b'{"instances":[' + held + b"]}"
    with node.client() as client:
        assert [] == failures(client.post(REGISTER, json=body(payments), headers={
            "Authorization": f"Bearer {OTHER_SECRET}"}))
        anonymous = client.post(HEARTBEAT, content=exact).json()
        assert ("no-permission", None) == (anonymous["responseStatus"]["errorCode"],
                                           anonymous["failedInstances"])
        ((code, message),) = failures(client.post(HEARTBEAT, content=exact, headers={
            "Authorization": f"Bearer {SECRET}"}))
        assert ("no-permission", True) == (code, "may not write service 'payments'" in message)
        assert [] == failures(client.post(HEARTBEAT, content=exact, headers={
            "Authorization": f"Bearer {OTHER_SECRET}"}))


def test_token_mode_heartbeat_websocket(start_node: StartNode) -> None:
    node = token_node(start_node)
    with node.client() as client:
        client.post(REGISTER, json=body(instance()),
                    headers={"Authorization": f"Bearer {SECRET}"})
    ws_url = node.url.replace("http://", "ws://") + "/ws/registry/heartbeat"

    async def beat(headers: dict[str, str] | None, frame: dict[str, Any] | None
                   ) -> dict[str, Any]:
        async with websockets.connect(ws_url, additional_headers=headers) as ws:
            if frame is not None:
                await ws.send(json.dumps(frame))
            reply: dict[str, Any] = json.loads(await ws.recv())
            return reply

    refused = asyncio.run(beat(None, None))  # told at the handshake, before any frame
    assert "no-permission" == refused["responseStatus"]["errorCode"]
    assert "session closed, code 4003" in refused["responseStatus"]["message"]
    bearer = {"Authorization": f"Bearer {SECRET}"}
    assert "success" == asyncio.run(beat(bearer, body(instance())))["responseStatus"]["status"]
    scoped = asyncio.run(beat(bearer, body(instance(service="payments"))))
    assert ["no-permission"] == [f["errorCode"] for f in scoped["failedInstances"]]


def test_python_client_sends_its_token(start_node: StartNode) -> None:
    node = token_node(start_node)
    mine = Instance(service_id="orders.api", instance_id="py-1", url="http://10.0.0.9:80",
                    ip="10.0.0.9", port=80)

    async def main() -> dict[str, int]:
        async with RegistryClient(node.url, region="SHA", zone="zone-1", token=SECRET,
                                  heartbeat_interval=0.1) as registry:
            await registry.register(mine)
            await asyncio.sleep(0.5)
            stats = dict(registry.stats)
        async with RegistryClient(node.url, region="SHA", zone="zone-1",
                                  token=OTHER_SECRET) as wrong:
            try:
                await wrong.register(mine)
            except NoPermission:
                stats["refused"] = 1
        return stats

    stats = asyncio.run(main())
    assert stats["frames"] >= 2
    assert 0 == stats["websocket_failures"] + stats["reregistered"] + stats["errors"]
    assert 1 == stats.get("refused")
