"""Status, cluster, health and admin endpoints over HTTP (§4.4, §4.5), and the context path."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from tests.server.conftest import MakeApi
from tests.server.harness import (
    LOOKUP,
    NODE_URL,
    OK_BODY,
    RATE_LIMITED,
    REGION,
    REGISTER,
    SERVICE,
    SUCCESS,
    ZONE,
    Api,
    describe,
    fail,
    instance,
    lookup_answer,
    service,
    stamp,
)

START_MS = 1_700_000_000_000
ADMIN_TOKEN = "s3cret-admin-token"  # noqa: S105 - a test's own token, not a credential
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ZONE_JSON = {"metadata": None, "regionId": REGION, "zoneId": ZONE}
SELF_PRESERVATION = "/api/admin/self-preservation.json"
ADMIN_REFUSED = fail("no-permission", "this switch needs the admin bearer token "
                     "(or, with no token configured, a call from 127.0.0.1)")
LEASE_NULLS = {"isSafe": False, "isSafeCheckEnabled": False, "leaseCount": 0,
               "leaseUpdateCountLastTimeWindow": 0, "leaseUpdateMaxCount": 0,
               "leaseUpdateMaxCountLastUpdateTime": 0, "leases": None}
NO_NODES = {"nodes": None, "responseStatus": fail("data-not-found", "No available service nodes.")}


def node_status(status: str = "up", can: bool | None = True,
                url: str = NODE_URL) -> dict[str, object]:
    """A ServiceNodeStatus (§3.7) of the test node."""
    return {"allowDiscoveryFromOtherZone": True, "allowRegistryFromOtherZone": True,
            "canServiceDiscovery": can, "canServiceRegistry": can,
            "node": {"url": url, "zone": ZONE_JSON}, "status": status}


def switch_state(enabled: bool = True, legacy: bool = True) -> dict[str, object]:
    return {"enabled": enabled, "isSafe": True, "legacyEnabled": legacy, "legacyIsSafe": True,
            "responseStatus": SUCCESS}


def lease(inst: dict[str, object], renewed_ms: int = START_MS, ttl: int = 20000,
          created_ms: int = START_MS) -> dict[str, object]:
    """A LeaseStatus (§3.9)."""
    return {"creationTime": stamp(created_ms), "evitionTime": stamp(0),
            "instance": describe(inst), "renewalTime": stamp(renewed_ms), "ttl": ttl}


# --- node and cluster ------------------------------------------------------------------------


async def test_node_status(api: Api) -> None:
    """node.json answers Appendix A's shape for an up node."""
    assert {"nodeStatus": node_status(), "responseStatus": SUCCESS} == await api.call(
        "/api/status/node.json")


async def test_node_status_get_form(api: Api) -> None:
    """GET node.json answers as the POST form."""
    response = await api.get("/api/status/node.json")

    assert (200, {"nodeStatus": node_status(), "responseStatus": SUCCESS}) == (
        response.status_code, response.json())


async def test_node_status_of_a_starting_node(make_api: MakeApi) -> None:
    """A node not yet up reports `starting` with unknown (null) capabilities."""
    api = await make_api(up=False)

    assert {"nodeStatus": node_status("starting", None), "responseStatus": SUCCESS} == (
        await api.call("/api/status/node.json"))


async def test_cluster_status_of_a_single_node(api: Api) -> None:
    """cluster.json of a node without peers lists that node alone."""
    assert {"nodeCount": 1, "nodesStatus": [node_status()], "responseStatus": SUCCESS} == (
        await api.call("/api/status/cluster.json"))


async def test_cluster_nodes(api: Api) -> None:
    """/api/cluster/nodes.json lists the status of every node of the cluster (here: one)."""
    assert {"nodes": [node_status()], "responseStatus": SUCCESS} == await api.call(
        "/api/cluster/nodes.json")


@pytest.mark.parametrize("kind", ["registry", "discovery"])
async def test_up_nodes(api: Api, kind: str) -> None:
    """up-registry-nodes / up-discovery-nodes list this node's URL and zone (Appendix A)."""
    assert {"nodes": [{"url": NODE_URL, "zone": ZONE_JSON}], "responseStatus": SUCCESS} == (
        await api.call(f"/api/cluster/up-{kind}-nodes.json", {"regionId": REGION,
                                                               "zoneId": ZONE}))


@pytest.mark.parametrize("kind", ["registry", "discovery"])
async def test_up_nodes_get_form(api: Api, kind: str) -> None:
    """GET up-*-nodes.json?regionId=&zoneId= answers as the POST form."""
    response = await api.get(f"/api/cluster/up-{kind}-nodes.json", {"regionId": REGION,
                                                                      "zoneId": ZONE})

    assert {"nodes": [{"url": NODE_URL, "zone": ZONE_JSON}],
            "responseStatus": SUCCESS} == response.json()


@pytest.mark.parametrize("kind", ["registry", "discovery"])
async def test_up_nodes_of_another_zone_when_not_allowed(make_api: MakeApi, kind: str) -> None:
    """With the other-zone flags off, a client of zone-2 gets `No available service nodes.`."""
    api = await make_api(allow_registry_from_other_zone=False,
                         allow_discovery_from_other_zone=False)

    assert NO_NODES == await api.call(f"/api/cluster/up-{kind}-nodes.json",
                                      {"regionId": REGION, "zoneId": "zone-2"})


@pytest.mark.parametrize("kind", ["registry", "discovery"])
async def test_up_nodes_of_another_region_when_not_allowed(make_api: MakeApi, kind: str) -> None:
    """With the other-zone flags off, the node's zone must equal the request's region and zone
    (§4.4): a client of region FRA, zone zone-1, gets no nodes."""
    api = await make_api(allow_registry_from_other_zone=False,
                         allow_discovery_from_other_zone=False)

    assert NO_NODES == await api.call(f"/api/cluster/up-{kind}-nodes.json",
                                      {"regionId": "FRA", "zoneId": ZONE})


@pytest.mark.parametrize("kind", ["registry", "discovery"])
async def test_up_nodes_of_a_node_not_up(make_api: MakeApi, kind: str) -> None:
    """A node that is still starting lists no up node."""
    api = await make_api(up=False)

    assert NO_NODES == await api.call(f"/api/cluster/up-{kind}-nodes.json",
                                      {"regionId": REGION, "zoneId": ZONE})


@pytest.mark.parametrize("kind", ["registry", "discovery"])
async def test_up_nodes_rate_limited(make_api: MakeApi, kind: str) -> None:
    """The cluster limiter refuses up-*-nodes with a null node list."""
    api = await make_api(rate_limits={f"cluster.up-{kind}-nodes": 0})

    assert {"nodes": None, "responseStatus": RATE_LIMITED} == await api.call(
        f"/api/cluster/up-{kind}-nodes.json", {"regionId": REGION, "zoneId": ZONE})


async def test_status_rate_limits(make_api: MakeApi) -> None:
    """With the status limiter at 0, cluster/config/leases are refused with zero payloads and
    node.json (never limited, used for peer polling) still answers."""
    api = await make_api(rate_limits={"status": 0, "status.get-leases": 0},
                         admin_token=ADMIN_TOKEN)

    assert {"nodeStatus": node_status(), "responseStatus": SUCCESS} == await api.call(
        "/api/status/node.json")
    assert {"nodeCount": 0, "nodesStatus": None, "responseStatus": RATE_LIMITED} == (
        await api.call("/api/status/cluster.json"))
    assert {"properties": None, "responseStatus": RATE_LIMITED, "sources": None} == (
        await api.call("/api/status/config.json", headers=AUTH))
    assert {**LEASE_NULLS, "responseStatus": RATE_LIMITED} == await api.call(
        "/api/status/leases.json")
    assert {**LEASE_NULLS, "responseStatus": RATE_LIMITED} == await api.call(
        "/api/status/legacy-leases.json")


async def test_leases_limited_to_ten_per_window_by_default(seeded: Api) -> None:
    """leases.json is limited to 10 calls per 10 s by default (the shipped `get-leases:10`)."""
    for _ in range(10):
        assert SUCCESS == (await seeded.call("/api/status/leases.json"))["responseStatus"]

    assert {**LEASE_NULLS, "responseStatus": RATE_LIMITED} == await seeded.call(
        "/api/status/leases.json")


async def test_deployment(api: Api) -> None:
    """deployment.json describes where and how this node runs."""
    assert {"appId": "artemis", "ip": "127.0.0.1", "machineName": socket.gethostname(),
            "path": "", "port": 8080, "properties": {}, "protocol": "http", "regionId": REGION,
            "responseStatus": SUCCESS, "sources": {}, "zoneId": ZONE} == await api.call(
        "/api/status/deployment.json")


async def test_deployment_rate_limited_has_zero_payload(make_api: MakeApi) -> None:
    """A rate-limited deployment.json keeps its shape with zero/null payload (§4.5)."""
    api = await make_api(rate_limits={"status.get-deployment": 0})

    assert {"appId": None, "ip": None, "machineName": None, "path": None, "port": 0,
            "properties": None, "protocol": None, "regionId": None,
            "responseStatus": RATE_LIMITED, "sources": None, "zoneId": None} == await api.call(
        "/api/status/deployment.json")


# --- leases ----------------------------------------------------------------------------------


async def test_leases(seeded: Api) -> None:
    """leases.json shows each lease with its times, and the self-preservation counters."""
    seeded.clock.advance(5)
    assert OK_BODY == await seeded.heartbeat(instance())
    seeded.node.registry.check_safety(seeded.clock.monotonic())

    assert {"isSafe": True, "isSafeCheckEnabled": True, "leaseCount": 1,
            "leaseUpdateCountLastTimeWindow": 1, "leaseUpdateMaxCount": 1,
            "leaseUpdateMaxCountLastUpdateTime": START_MS + 5000,
            "leases": {SERVICE: [lease(instance(), renewed_ms=START_MS + 5000)]},
            "responseStatus": SUCCESS} == await seeded.call("/api/status/leases.json")


async def test_leases_of_chosen_services(seeded: Api) -> None:
    """serviceIds (POST) / appIds (GET) choose the services listed; leaseCount stays the total."""
    other = instance("10.0.0.7:80", serviceId="other.service")
    assert OK_BODY == await seeded.register(other)
    base = {"isSafe": True, "isSafeCheckEnabled": True, "leaseCount": 2,
            "leaseUpdateCountLastTimeWindow": 0, "leaseUpdateMaxCount": 0,
            "leaseUpdateMaxCountLastUpdateTime": 0, "responseStatus": SUCCESS}

    assert {**base, "leases": {SERVICE: [lease(instance())]}} == await seeded.call(
        "/api/status/leases.json", {"serviceIds": [SERVICE, "nobody.here"]})
    response = await seeded.get("/api/status/leases.json", {"appIds": "other.service"})
    assert {**base, "leases": {"other.service": [lease(other)]}} == response.json()
    assert {**base, "leases": {SERVICE: [lease(instance())], "other.service": [lease(other)]}
            } == await seeded.call("/api/status/leases.json", {"serviceIds": []})


async def test_legacy_leases(api: Api) -> None:
    """legacy-leases.json lists only the java_registry instances, with their 90 s TTL."""
    legacy = instance("10.0.0.8:80", metadata={"java_registry": "true"})
    assert OK_BODY == await api.register(instance(), legacy)

    assert {"isSafe": True, "isSafeCheckEnabled": True, "leaseCount": 1,
            "leaseUpdateCountLastTimeWindow": 0, "leaseUpdateMaxCount": 0,
            "leaseUpdateMaxCountLastUpdateTime": 0,
            "leases": {SERVICE: [lease(legacy, ttl=90000)]},
            "responseStatus": SUCCESS} == await api.call("/api/status/legacy-leases.json")
    assert {SERVICE: [lease(instance())]} == (await api.call("/api/status/leases.json"))["leases"]


# --- configuration ---------------------------------------------------------------------------


async def test_config_masks_the_admin_token(make_api: MakeApi) -> None:
    """config.json shows every setting as text, with the admin token masked."""
    api = await make_api(admin_token=ADMIN_TOKEN, rate_limits={"registry.register": 5})

    response = await api.post("/api/status/config.json", headers=AUTH)

    assert ADMIN_TOKEN.encode() not in response.content
    assert {"properties": {
        "admin_token": "***", "allow_discovery_from_other_zone": "true",
        "allow_registry_from_other_zone": "true", "change_log_size": "200000",
        "context_path": "", "gzip_min_bytes": "8192", "host": "127.0.0.1", "lease_ttl": "20.0",
        "max_lease_ttl": "300.0", "eureka": "true", "eureka_delta_window": "180.0",
        "legacy_lease_ttl": "90.0", "legacy_self_preservation_window": "60.0",
        "log_level": "info", "max_batch": "5000", "max_body_bytes": "4194304", "port": "8080",
        "max_instances": "1000000", "max_services": "100000",
        "max_instances_per_client": "100000", "max_services_per_client": "10000",
        "change_log_bytes": "134217728",
        "max_connections": "16384", "max_connections_per_client": "512",
        "connection_check_interval": "1.0", "idle_timeout": "20.0", "listen_backlog": "4096",
        "max_header_bytes": "65536", "http2": "false", "ws_send_queue_bytes": "16777216",
        "rate_limit_enabled": "true", "rate_limits": "registry.register=5", "region": REGION,
        "self_preservation": "true", "self_preservation_min_count": "50",
        "self_preservation_percentage": "85", "self_preservation_reset_interval": "600.0",
        "self_preservation_window": "10.0", "shutdown_timeout": "5.0", "metrics": "true",
        "gc_freeze": "true", "gc_thaw_interval": "3600.0",
        "console": "on",
        "log_format": "console", "tls_cert": "", "tls_key": "", "tls_ca": "",
        "tls_min_version": "1.2",
        "snapshot_count": "60",
        "snapshot_interval": "1.0", "sweep_interval": "0.1", "url": "",
        "pause_threshold": "2.0",
        "ws_coalesce_ms": "0", "ws_max_frame_bytes": "1048576", "ws_max_sessions": "10000",
        "ws_max_subscriptions": "1000", "ws_send_queue": "1000", "ws_send_timeout": "10.0",
        "ws_session_ttl": "360.0", "zone": ZONE,
        "peers": "", "peers_dns": "", "peers_dns_interval": "30.0",
        "peer_status_interval": "1.0", "peer_timeout": "2.0", "force_status": "auto",
        "bootstrap_timeout": "10.0", "replication_queue": "100000",
        "replication_batch": "1000", "replication_task_ttl": "10.0",
        "replication_retries": "5", "replication_backoff": "0.05",
        "anti_entropy_interval": "5.0", "wall_clock_offset": "0.0",
        "cluster_secret": "", "cluster_insecure": "false",
        "database": "", "management_poll_interval": "0.25",
        "management_timeout": "2.0", "management_start_timeout": "10.0", "tokens": "",
        "management_open_reads": "false", "cors_origins": "",
        "registration_mode": "open", "rate_limit_per_client": "20000",
        "rate_limits_per_client": "", "rate_limit_clients": "16384"},
        "responseStatus": SUCCESS,
        "sources": {"config-file": 1, "defaults": 0, "environment": 2, "flags": 3},
    } == response.json()


# --- health ----------------------------------------------------------------------------------


async def test_health_of_an_up_node(seeded: Api) -> None:
    """GET /health of an up node is 200 with its status and instance count."""
    response = await seeded.get("/health")

    assert (200, {"instances": 1, "status": "up"}) == (response.status_code, response.json())


async def test_health_of_a_starting_node(make_api: MakeApi) -> None:
    """GET /health of a node not up is 503, so load balancers skip it."""
    api = await make_api(up=False)

    response = await api.get("/health")

    assert (503, {"instances": 0, "status": "starting"}) == (response.status_code,
                                                             response.json())


# --- the self-preservation switch ------------------------------------------------------------


async def test_self_preservation_state(api: Api) -> None:
    """GET self-preservation.json shows both switches (on by default) and both states."""
    response = await api.get(SELF_PRESERVATION)

    assert (200, switch_state()) == (response.status_code, response.json())


async def test_self_preservation_switch_from_loopback(api: Api) -> None:
    """Without an admin token a call from 127.0.0.1 switches it; `legacy` follows unless given."""
    assert switch_state(False, False) == await api.call(SELF_PRESERVATION, {"enabled": False})
    assert {"isSafe": True, "isSafeCheckEnabled": False} == {
        k: v for k, v in (await api.call("/api/status/leases.json")).items()
        if k in ("isSafe", "isSafeCheckEnabled")}
    assert switch_state(True, False) == await api.call(SELF_PRESERVATION,
                                                       {"enabled": True, "legacy": False})
    assert switch_state(True, False) == (await api.get(SELF_PRESERVATION)).json()


async def test_self_preservation_switch_with_token(make_api: MakeApi) -> None:
    """With an admin token, `Authorization: Bearer <token>` switches it from any address."""
    api = await make_api(admin_token=ADMIN_TOKEN, client_host="10.1.2.3")

    assert switch_state(False, False) == await api.call(
        SELF_PRESERVATION, {"enabled": False}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


@pytest.mark.parametrize(("host", "token", "authorization"), [
    ("10.1.2.3", "", None),
    ("10.1.2.3", "", "Bearer anything"),
    ("127.0.0.1", ADMIN_TOKEN, None),
    ("127.0.0.1", ADMIN_TOKEN, "Bearer wrong"),
    ("127.0.0.1", ADMIN_TOKEN, f"Basic {ADMIN_TOKEN}"),
    ("10.1.2.3", ADMIN_TOKEN, f"Bearer {ADMIN_TOKEN}-and-more"),
])
async def test_self_preservation_switch_refused(make_api: MakeApi, host: str, token: str,
                                                authorization: str | None) -> None:
    """A caller without the right to switch gets `no-permission` and the switch does not move
    (remote without a token configured; missing, wrong or non-Bearer token when one is)."""
    api = await make_api(admin_token=token, client_host=host)
    headers = {"Authorization": authorization} if authorization else None

    answer = await api.call(SELF_PRESERVATION, {"enabled": False}, headers=headers)

    assert (ADMIN_REFUSED, switch_state()) == (answer["responseStatus"],
                                               (await api.get(SELF_PRESERVATION)).json())


async def test_self_preservation_refusal_keeps_the_endpoint_shape(make_api: MakeApi) -> None:
    """The refusal is a body of the endpoint's shape (http.py's error-answer rule): its payload
    keys present and null, plus the responseStatus."""
    api = await make_api(client_host="10.1.2.3")

    assert {"enabled": None, "isSafe": None, "legacyEnabled": None, "legacyIsSafe": None,
            "responseStatus": ADMIN_REFUSED} == await api.call(SELF_PRESERVATION,
                                                               {"enabled": False})


async def test_self_preservation_switch_bad_body(api: Api) -> None:
    """A switch body that is not `{"enabled": bool}` is `bad-request` and changes nothing."""
    answer = await api.call(SELF_PRESERVATION, {"enabled": "off"})

    assert (fail("bad-request", "request body: Expected `bool`, got `str` - at `$.enabled`"),
            switch_state()) == (answer["responseStatus"],
                                (await api.get(SELF_PRESERVATION)).json())


# --- context path ----------------------------------------------------------------------------


async def test_context_path_serves_endpoints_only_under_it(make_api: MakeApi) -> None:
    """With context_path /artemis-web every endpoint lives under it and nowhere else; the
    node's URL includes it."""
    api = await make_api(context_path="/artemis-web")

    assert OK_BODY == await api.register(instance())
    assert lookup_answer(service(SERVICE, instance())) == await api.lookup()
    assert {"nodeStatus": node_status(url=NODE_URL + "/artemis-web"),
            "responseStatus": SUCCESS} == await api.call("/api/status/node.json")
    assert 200 == (await api.get("/health")).status_code
    for path in (REGISTER, LOOKUP, "/api/status/node.json", "/health"):
        response = await api.client.post(path, json={})
        assert (404, {"responseStatus": fail("bad-request", f"no endpoint at {path}")}) == (
            response.status_code, response.json())


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"},
                                     {"Authorization": f"Basic {ADMIN_TOKEN}"}])
async def test_config_needs_the_read_role(make_api: MakeApi, headers: dict[str, str]) -> None:
    """config.json answers no-permission, in its shape, to a caller without the read role."""
    api = await make_api(admin_token=ADMIN_TOKEN)

    answer = await api.call("/api/status/config.json", headers=headers)

    assert {"properties": None, "sources": None, "responseStatus": {
        "errorCode": "no-permission", "status": "fail",
        "message": "this call needs a bearer token with the read role"}} == answer


@pytest.mark.parametrize(("url", "shown"), [
    ("mysql://app:hunter2-secret@db/artemis", "mysql://app:***@db/artemis"),
    ("mysql://app:p@ss/w?rd#x@db:3306/artemis", "mysql://app:***@db:3306/artemis"),
    ("postgresql://app:p%40ss%3Aw%2Fd@db/artemis", "postgresql://app:***@db/artemis"),
    ("postgresql://db/artemis?user=app&password=hunter2-secret&sslmode=require",
     "postgresql://db/artemis?user=app&password=***&sslmode=require"),
    ("postgresql://app@db/artemis?sslpassword=hunter2-secret",
     "postgresql://app@db/artemis?sslpassword=***"),
    ("sqlite:///var/lib/artemis.db", "sqlite:///var/lib/artemis.db"),
])
async def test_config_masks_the_database_password(make_api: MakeApi, url: str,
                                                  shown: str) -> None:
    """The database URL shows without its password, whatever form the URL takes."""
    api = await make_api(admin_token=ADMIN_TOKEN)
    api.node.settings = dataclasses.replace(api.node.settings, database=url)

    properties = (await api.call("/api/status/config.json", headers=AUTH))["properties"]

    assert shown == properties["database"]
