"""Fair limits per client against real nodes: one address hammering past its own limit is
refused `rate-limited` while another address keeps being answered, over HTTP and heartbeat
frames; the refusals are counted per client in /metrics and runtime.json.

The node listens on 127.0.0.1; the quiet client binds 127.0.0.2 (Linux routes all of 127/8 to
loopback). Every hammer is bounded by a count of requests, never by time: with the limit at 200
per 10 s, whatever passes beyond it within one window would be a bug.

The in-process tests at the end check `Node.allowed`: a call refused by the operation's limit is
not counted against its client, and peers (the replication limiter) are never limited per client.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from artemis.clock import FakeClock
from artemis.server.node import Node
from artemis.server.settings import Settings, SettingsError
from tests.process.conftest import RunningNode, StartNode

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets")

HEARTBEAT = "/api/registry/heartbeat.json"
REGISTER = "/api/registry/register.json"
LOOKUP = "/api/discovery/lookup.json"
LIMIT = 200
QUIET = "127.0.0.2"


def instance(n: int) -> dict[str, Any]:
    return {"instanceId": f"10.0.0.{n}:8080", "ip": f"10.0.0.{n}", "port": 8080,
            "url": f"http://10.0.0.{n}:8080/api", "regionId": "SHA", "zoneId": "zone-1",
            "serviceId": "fair.service.v1", "status": "up"}


def quiet_client(node: RunningNode) -> httpx.Client:
    """A client whose TCP peer address is 127.0.0.2."""
    return httpx.Client(base_url=node.url, timeout=5.0,
                        transport=httpx.HTTPTransport(local_address=QUIET))


def code(answer: httpx.Response) -> str:
    return str(answer.json()["responseStatus"]["errorCode"])


def client_refusals(node: RunningNode) -> dict[str, dict[str, int]]:
    with node.client() as client:
        limited = client.get("/api/status/runtime.json").json()["rateLimited"]
    return {k: v for k, v in limited.items() if k.startswith("client.") and v}


def metric(node: RunningNode, name: str, labels: str) -> float:
    with node.client() as client:
        text = client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_hammering_address_is_limited_while_another_keeps_heartbeating(
        start_node: StartNode) -> None:
    """127.0.0.1 sends 1,000 heartbeats as fast as it can with a per-client limit of 200: at
    most 200 of its registry calls pass within the window, the rest are `rate-limited`; the
    heartbeats 127.0.0.2 sends in between all succeed. Refusals are counted per client."""
    node = start_node("--rate-limit-per-client", str(LIMIT))
    with node.client() as hammer, quiet_client(node) as quiet:
        assert "success" == code(quiet.post(REGISTER, json={"instances": [instance(2)]}))
        assert "success" == code(hammer.post(REGISTER, json={"instances": [instance(1)]}))
        started = time.monotonic()
        codes: dict[str, int] = {}
        quiet_codes = []
        for n in range(1000):
            got = code(hammer.post(HEARTBEAT, json={"instances": [instance(1)]}))
            codes[got] = codes.get(got, 0) + 1
            if n % 50 == 49:
                quiet_codes.append(code(quiet.post(HEARTBEAT, json={"instances": [instance(2)]})))
        elapsed = time.monotonic() - started
    assert ["success"] * 20 == quiet_codes
    assert {"success", "rate-limited"} == set(codes)
    if elapsed < 9.0:  # all of it inside one window: exactly the limit passed (1 register)
        assert {"success": LIMIT - 1, "rate-limited": 1001 - LIMIT} == codes
    refused = codes["rate-limited"]
    assert {"client.registry": {"heartbeat": refused}} == client_refusals(node)
    assert refused == metric(node, "artemis_rate_limited_total",
                             'limiter="registry",operation="heartbeat",scope="client"')
    assert 0 == metric(node, "artemis_rate_limited_total",
                       'limiter="registry",operation="heartbeat",scope="operation"')


def test_heartbeat_frames_are_limited_per_client(start_node: StartNode) -> None:
    """Heartbeat frames on the WebSocket count against their connection's address: 300 frames
    from 127.0.0.1 get at most 200 answers `success`, then `rate-limited`, while 127.0.0.2's
    HTTP heartbeats keep succeeding."""
    node = start_node("--rate-limit-per-client", str(LIMIT))
    with node.client() as client, quiet_client(node) as quiet:
        assert "success" == code(client.post(REGISTER, json={"instances": [instance(1)]}))
        assert "success" == code(quiet.post(REGISTER, json={"instances": [instance(2)]}))

    async def frames() -> list[str]:
        url = node.url.replace("http://", "ws://") + "/ws/registry/heartbeat"
        frame = json.dumps({"instances": [instance(1)]})
        out = []
        async with websockets.connect(url) as ws:
            for _ in range(300):
                await ws.send(frame)
                out.append(json.loads(await ws.recv())["responseStatus"]["errorCode"])
        return out

    started = time.monotonic()
    answers = asyncio.run(frames())
    elapsed = time.monotonic() - started
    with quiet_client(node) as quiet:
        after = [code(quiet.post(HEARTBEAT, json={"instances": [instance(2)]}))
                 for _ in range(5)]
    assert ["success"] * 5 == after
    assert "rate-limited" == answers[-1]
    if elapsed < 9.0:
        assert ["success"] * (LIMIT - 1) + ["rate-limited"] * (301 - LIMIT) == answers
    assert answers.count("rate-limited") == client_refusals(node)["client.registry"]["heartbeat"]


def test_lookups_are_limited_per_client(start_node: StartNode) -> None:
    """Discovery has its own per-client window: 127.0.0.1 past 200 lookups is `rate-limited`
    (its registry window untouched: it still registers), 127.0.0.2 still looks up."""
    node = start_node("--rate-limit-per-client", str(LIMIT))
    body = {"discoveryConfigs": [{"serviceId": "fair.service.v1"}], "regionId": "SHA",
            "zoneId": "zone-1"}
    with node.client() as hammer, quiet_client(node) as quiet:
        codes = [code(hammer.post(LOOKUP, json=body)) for _ in range(LIMIT + 50)]
        assert "rate-limited" == codes[-1]
        assert "success" == code(quiet.post(LOOKUP, json=body))
        assert "success" == code(hammer.post(REGISTER, json={"instances": [instance(1)]}))
    assert codes.count("rate-limited") == client_refusals(node)["client.discovery"]["lookup"]


# --- in process: Node.allowed ------------------------------------------------------------------


def node_with(**settings: Any) -> Node:
    return Node(Settings(region="SHA", zone="zone-1", **settings), FakeClock())


def test_a_call_refused_by_the_operation_limit_costs_its_client_nothing() -> None:
    """With the operation's limit below the client's, the refusals are the operation's and the
    client's window counts only what passed."""
    node = node_with(rate_limits={"registry.heartbeat": 3}, rate_limit_per_client=5)
    passed = [node.allowed("registry", "heartbeat", "10.0.0.1") for _ in range(6)]
    assert ([True] * 3 + [False] * 3, 3, {"heartbeat": 3}, {}) == (
        passed, node.client_limiters["registry"].count("10.0.0.1", node.clock.monotonic()),
        node.limiters["registry"].rejected, node.client_limiters["registry"].rejected)


def test_peers_and_unlimited_calls_are_never_limited_per_client() -> None:
    """The replication limiter has no per-client family (a peer carries many clients' writes),
    and a call without a client key skips the per-client check."""
    node = node_with(rate_limit_per_client=1)
    assert ([True] * 5, [True] * 5, [True, False]) == (
        [node.allowed("replication", "register", "10.0.0.9") for _ in range(5)],
        [node.allowed("registry", "heartbeat") for _ in range(5)],
        [node.allowed("registry", "heartbeat", "10.0.0.9") for _ in range(2)])


def test_family_limits_and_their_defaults() -> None:
    """Each family takes rate_limit_per_client unless named; cluster is capped at 2,000 (below
    its per-operation limit); 0 turns a family's per-client limit off; rate_limit_enabled=false
    turns every limit off."""
    settings = Settings(rate_limit_per_client=20_000,
                        rate_limits_per_client={"status": 10, "discovery": 0})
    assert ({"registry": 20_000, "discovery": 0, "cluster": 2_000, "status": 10}, False) == (
        {f: settings.client_rate_limit(f) for f in ("registry", "discovery", "cluster",
                                                     "status")},
        node_with(rate_limit_enabled=False).client_limiters["registry"].enabled)
    assert 500 == Settings(rate_limit_per_client=500).client_rate_limit("cluster")


def test_an_unknown_family_is_refused_at_start() -> None:
    """`--rate-limits-per-client` names families only; a typo stops the node from starting."""
    with pytest.raises(SettingsError, match="rate_limits_per_client has lookup=5"):
        Settings.load(overrides={"rate_limits_per_client": "lookup=5"})


def test_per_client_settings_from_a_toml_file(tmp_path: Path) -> None:
    """`[rate_limit] per_client` flattens like any table; `[rate_limits_per_client]` stays a map
    of families."""
    path = tmp_path / "artemis.toml"
    path.write_text("[rate_limit]\nper_client = 300\nclients = 1000\n\n"
                    "[rate_limits_per_client]\nstatus = 5\n", encoding="utf-8")
    loaded = Settings.load(path)
    assert (300, 1000, {"status": 5}) == (loaded.rate_limit_per_client,
                                          loaded.rate_limit_clients,
                                          loaded.rate_limits_per_client)
