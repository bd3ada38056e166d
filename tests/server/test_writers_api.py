"""Writers in process: the token list with register scopes (settings, errors at start), the
registry endpoints in each registration mode, and the client's token over the in-process
transport (HTTP and the heartbeat WebSocket's upgrade)."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

from typing import Any

import httpx
import pytest

from artemis.client import InProcessTransport, NoPermission, RegistryClient
from artemis.server.settings import Settings, SettingsError
from artemis.server.tokens import parse_tokens
from artemis.wire import Instance
from tests.server.conftest import MakeApi
from tests.server.harness import REGISTER, instance

SECRET = "orders-secret-0123456789"  # noqa: S105 (a test token)
TOKENS = f"orders:read+register=orders.*|demo.service.v1:{SECRET},viewer:read:{'v' * 16}"


def test_register_role_with_services_parses() -> None:
    assert {"orders": (frozenset({"read", "register"}), SECRET),
            "viewer": (frozenset({"read"}), "v" * 16)} == parse_tokens(TOKENS)
    scopes = Settings.load(overrides={"tokens": TOKENS}).register_scopes()
    assert ["orders"] == list(scopes)
    assert "demo.service.v1|orders.*" == str(scopes["orders"])


@pytest.mark.parametrize(("tokens", "says"), [
    (f"ci:register:{SECRET}", "register needs its services, for example register=orders.*"),
    (f"ci:register=:{SECRET}", "a service pattern is empty"),
    (f"ci:register=or*ders:{SECRET}", "* may only end a pattern"),
    (f"ci:read=x:{SECRET}", "role 'read' takes no ="),
    (f"ci:publish:{SECRET}", "unknown role 'publish'"),
])
def test_bad_token_lists_are_refused_at_start_without_the_secret(tokens: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.load(overrides={"tokens": tokens})
    assert says in str(caught.value)
    assert SECRET not in str(caught.value)


def test_token_mode_needs_a_register_token() -> None:
    with pytest.raises(SettingsError, match="registration_mode token needs a token with the "
                                            "register role"):
        Settings.load(overrides={"registration_mode": "token"})
    with pytest.raises(SettingsError, match="must be one of open, permissive, token"):
        Settings.load(overrides={"registration_mode": "closed"})


async def test_open_mode_owner_by_address(make_api: MakeApi) -> None:
    victim = await make_api()
    assert "open" == victim.node.settings.registration_mode
    assert (await victim.register(instance()))["failedInstances"] is None
    # the same node (app) called from another address
    transport = httpx.ASGITransport(app=victim.parts.app, client=("10.9.9.9", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        evil = instance(url="http://evil/api")
        answer = (await other.post(REGISTER, json={"instances": [evil]})).json()
        assert ["no-permission"] == [f["errorCode"] for f in answer["failedInstances"]]
    assert 1 == victim.node.registry.ownership.refused["owner"]


async def test_token_mode_with_the_client(make_api: MakeApi) -> None:
    api = await make_api(registration_mode="token", tokens=TOKENS)
    mine = Instance(service_id="orders.api", instance_id="a", url="http://a:1", ip="10.0.0.1",
                    port=1, region_id="SHA", zone_id="zone-1")
    wrong = Instance(service_id="payments", instance_id="b", url="http://b:1", ip="10.0.0.1",
                     port=1, region_id="SHA", zone_id="zone-1")
    transport = InProcessTransport(api.parts.app, token=SECRET)
    client = RegistryClient("http://in-process", transport=transport, clock=api.clock)
    try:
        await client.register(mine)
        await client.heartbeat_once()  # over the heartbeat WebSocket, token at the upgrade
        assert 0 == client.stats["websocket_failures"]
        with pytest.raises(NoPermission, match="may not write service 'payments'"):
            await client.register(wrong)
    finally:
        await client.close()
        await transport.aclose()
    anonymous: dict[str, Any] = await api.register(instance())
    assert "no-permission" == anonymous["responseStatus"]["errorCode"]


def test_a_token_goes_to_the_transport_given() -> None:
    with pytest.raises(ValueError, match="give the token to the transport"):
        RegistryClient("http://x", transport=InProcessTransport(object()), token=SECRET)
