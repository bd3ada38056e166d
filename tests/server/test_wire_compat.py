"""What the Java SDK sends and expects (§2, §13, Appendix A and C), through the ASGI app."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.server.conftest import MakeApi
from tests.server.harness import (
    DELTA,
    HEARTBEAT,
    LOOKUP,
    NODE_URL,
    NOT_EXISTING,
    OK_BODY,
    REGION,
    REGISTER,
    SERVICE,
    SERVICE_PATH,
    SERVICES,
    SUCCESS,
    UNREGISTER,
    ZONE,
    Api,
    failed,
    full,
    instance,
    lookup_answer,
    partial,
    service,
)

# Maps (not beans): Jackson writes their keys in insertion order, so they are not checked.
_MAPS = {"metadata", "delta", "leases", "properties", "sources", "discoveryData"}
_SDK_LOOKUP = {"discoveryConfigs": [{"discoveryData": None, "regionId": None,
                                     "serviceId": SERVICE, "zoneId": None}],
               "regionId": REGION, "zoneId": ZONE}


def jackson(value: Any) -> bytes:
    """JSON as Jackson writes it: keys sorted, nulls written, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def sdk_headers() -> list[tuple[str, str]]:
    """The SDK's headers (§13): Content-Type and Accept each twice, a gzip body."""
    return [("Content-Type", "application/json"), ("Accept", "application/json"),
            ("Content-Type", "application/json"), ("Accept", "application/json"),
            ("Content-Encoding", "gzip"), ("User-Agent", "Apache-HttpClient/4.5.2 (Java/1.8)")]


def chunked(data: bytes, size: int = 64) -> AsyncIterator[bytes]:
    """`data` sent in chunks of unknown total length (Transfer-Encoding: chunked)."""

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start:start + size]

    return chunks()


async def sdk_post(api: Api, path: str, body: Any) -> Any:
    """POST `body` the SDK's way and return the JSON answer (HTTP 200 required)."""
    response = await api.client.post(path, content=chunked(gzip.compress(jackson(body))),
                                     headers=sdk_headers())
    assert ("chunked", 200) == (response.request.headers["transfer-encoding"],
                                response.status_code)
    return response.json()


def sorted_beans(pairs: list[tuple[str, Any]], where: str = "$") -> list[str]:
    """Paths of the JSON objects (maps excepted) whose keys are not in alphabetical order."""
    problems = []
    keys = [k for k, _ in pairs]
    if keys != sorted(keys):
        problems.append(where)
    for key, value in pairs:
        problems += _unsorted(value, f"{where}.{key}", map_keys=key in _MAPS)
    return problems


def _unsorted(value: Any, where: str, *, map_keys: bool = False) -> list[str]:
    if isinstance(value, list) and value and isinstance(value[0], tuple):
        if map_keys:
            return [p for k, v in value for p in _unsorted(v, f"{where}.{k}")]
        return sorted_beans(value, where)
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _unsorted(v, f"{where}[{i}]")]
    return []


def unsorted_keys(raw: bytes) -> list[str]:
    return sorted_beans(json.loads(raw, object_pairs_hook=lambda pairs: pairs))


# --- the SDK's requests ----------------------------------------------------------------------


async def test_sdk_register_gzip_chunked_duplicate_headers(api: Api) -> None:
    """A register sent as the SDK sends it (gzip, chunked, headers twice) succeeds."""
    assert OK_BODY == await sdk_post(api, REGISTER, {"instances": [instance()]})
    assert lookup_answer(service(SERVICE, instance())) == await api.lookup()


async def test_sdk_lookup_gzip_chunked_duplicate_headers(seeded: Api) -> None:
    """The SDK's lookup (§13 step 5: per-config region/zone null) answers Appendix A's shape."""
    assert lookup_answer(service(SERVICE, instance())) == await sdk_post(seeded, LOOKUP,
                                                                         _SDK_LOOKUP)


async def test_sdk_start_up_flow(api: Api) -> None:
    """Appendix C.1: up-registry-nodes, unregister, heartbeat -> data-not-found, register,
    heartbeat -> success, up-discovery-nodes, lookup."""
    where = {"regionId": REGION, "zoneId": ZONE}
    nodes = {"nodes": [{"url": NODE_URL, "zone": {"metadata": None, "regionId": REGION,
                                                   "zoneId": ZONE}}], "responseStatus": SUCCESS}
    batch = {"instances": [instance()]}

    assert nodes == await sdk_post(api, "/api/cluster/up-registry-nodes.json", where)
    assert OK_BODY == await sdk_post(api, UNREGISTER, batch)
    assert partial(failed(instance(), "data-not-found", NOT_EXISTING)) == await sdk_post(
        api, HEARTBEAT, batch)
    assert OK_BODY == await sdk_post(api, REGISTER, batch)
    assert OK_BODY == await sdk_post(api, HEARTBEAT, batch)
    assert nodes == await sdk_post(api, "/api/cluster/up-discovery-nodes.json", where)
    assert lookup_answer(service(SERVICE, instance())) == await sdk_post(api, LOOKUP, _SDK_LOOKUP)


async def test_x_gzip_is_gzip(api: Api) -> None:
    """`Content-Encoding: x-gzip` (an old alias) is inflated as gzip."""
    body = gzip.compress(jackson({"instances": [instance()]}))

    assert OK_BODY == await api.call(REGISTER, content=body,
                                     headers={"Content-Encoding": "x-gzip"})


async def test_content_type_is_not_checked(api: Api) -> None:
    """The body is read as JSON whatever Content-Type says (documented difference)."""
    assert OK_BODY == await api.call(REGISTER, {"instances": [instance()]},
                                     headers={"Content-Type": "text/plain"})


async def test_lookup_request_keys_in_any_case(seeded: Api) -> None:
    """Lookup request keys are read case-insensitively, at every level."""
    body = {"DiscoveryConfigs": [{"SERVICEID": SERVICE, "discoverydata": {"appid": "1"}}],
            "REGIONID": "sha", "zoneid": ZONE}

    assert lookup_answer(service(SERVICE, instance())) == await seeded.call(LOOKUP, body)


async def test_lookup_answers_follow_the_registry(api: Api) -> None:
    """The same lookup body asked again sees every register, unregister and expiry at once."""
    a, b = instance("10.0.0.1:80"), instance("10.0.0.2:80")
    assert lookup_answer(service(SERVICE)) == await api.lookup()
    assert OK_BODY == await api.register(a)
    assert lookup_answer(service(SERVICE, a)) == await api.lookup()
    assert OK_BODY == await api.register(b)
    assert lookup_answer(service(SERVICE, a, b)) == await api.lookup()
    assert OK_BODY == await api.register({**a, "port": 81})
    assert lookup_answer(service(SERVICE, {**a, "port": 81}, b)) == await api.lookup()
    assert OK_BODY == await api.unregister(a)
    assert lookup_answer(service(SERVICE, b)) == await api.lookup()
    api.sweep(21)
    assert lookup_answer(service(SERVICE)) == await api.lookup()


# --- the shapes of the answers ---------------------------------------------------------------


async def test_minimal_instance_is_answered_with_every_key(api: Api) -> None:
    """An instance sent with four keys is answered with all 13, nulls written and port 0."""
    sent = {"instanceId": "i-1", "regionId": REGION, "serviceId": SERVICE, "url": "http://h/"}
    assert OK_BODY == await api.register(sent)

    response = await api.post(LOOKUP, _SDK_LOOKUP)

    assert jackson(lookup_answer(service(SERVICE, full(**sent)))) == response.content


async def test_answers_have_bean_keys_in_alphabetical_order(seeded: Api) -> None:
    """Every answer's objects have their keys sorted (SORT_PROPERTIES_ALPHABETICALLY)."""
    await seeded.snapshot()
    calls = [
        (REGISTER, {"instances": [instance(), instance(regionId="FRA")]}),
        (HEARTBEAT, {"instances": [instance("10.9.9.9:1")]}),
        (LOOKUP, _SDK_LOOKUP),
        (SERVICE_PATH, {"discoveryConfig": {"serviceId": SERVICE}}),
        (SERVICES, {}),
        (DELTA, {"version": 1_700_000_000_000}),
        (DELTA, {"version": 1}),
        ("/api/status/node.json", {}),
        ("/api/status/cluster.json", {}),
        ("/api/status/leases.json", {}),
        ("/api/status/config.json", {}),
        ("/api/status/deployment.json", {}),
        ("/api/cluster/nodes.json", {}),
        ("/api/cluster/up-registry-nodes.json", {}),
        ("/api/admin/self-preservation.json", {"enabled": True}),
        (LOOKUP, {"discoveryConfigs": []}),
        ("/nowhere", {}),
    ]
    for path, body in calls:
        response = await seeded.post(path, body)
        assert (path, []) == (path, unsorted_keys(response.content))


async def test_no_cors_headers_by_default(api: Api) -> None:
    """Unlike the original (`*` on every answer, §2.1), no answer carries a CORS header unless
    cors_origins lists the caller's origin; OPTIONS answers with Allow only
    (docs/compatibility.md)."""
    answer = await api.post(REGISTER, {"instances": [instance()]},
                            headers={"Origin": "http://ui"})
    preflight = await api.client.options(REGISTER, headers={
        "Origin": "http://ui", "Access-Control-Request-Method": "POST"})

    assert [] == [k for k in answer.headers if k.startswith("access-control-")]
    assert (200, "OPTIONS, POST", []) == (
        preflight.status_code, preflight.headers["allow"],
        [k for k in preflight.headers if k.startswith("access-control-")])


# --- gzip answers ----------------------------------------------------------------------------


async def test_large_answer_is_gzipped_for_clients_that_accept_it(api: Api) -> None:
    """An answer of 8 KiB or more goes gzip-compressed to a client sending Accept-Encoding: gzip
    and plain to one that does not."""
    fleet = [instance(f"10.0.{n // 250}.{n % 250}:8080") for n in range(60)]
    assert OK_BODY == await api.register(*fleet)
    version = await api.snapshot()
    expected = {"checksum": (await api.call(SERVICE_PATH, {"discoveryConfig": {
        "serviceId": SERVICE}}))["checksum"], "responseStatus": SUCCESS,
        "services": [service(SERVICE, *fleet)], "version": version}

    packed = await api.client.post(SERVICES, json={}, headers={"Accept-Encoding": "gzip"})
    plain = await api.client.post(SERVICES, json={}, headers={"Accept-Encoding": "identity"})

    assert len(plain.content) >= 8192
    assert (("gzip", "Accept-Encoding"), expected) == (
        (packed.headers["content-encoding"], packed.headers["vary"]), packed.json())
    assert ("content-encoding" not in plain.headers, expected) == (True, plain.json())


@pytest.mark.parametrize("minimum", [0, 1_000_000])
async def test_gzip_threshold_is_a_setting(make_api: MakeApi, minimum: int) -> None:
    """gzip_min_bytes decides which answers are compressed: 0 means all, 1 MB means none here."""
    api = await make_api(gzip_min_bytes=minimum)

    response = await api.client.post(REGISTER, json={"instances": [instance()]},
                                     headers={"Accept-Encoding": "gzip"})

    assert (minimum == 0, OK_BODY) == ("content-encoding" in response.headers, response.json())
