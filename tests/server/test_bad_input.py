"""Bad input of every kind: the whole answer, and nothing registered changes.

The rules (server/http.py): a known endpoint always answers HTTP 200 with a body of its own shape
and `bad-request` for unreadable input; per-instance problems are `bad-request` failures inside
`partial_fail`; an unknown path is 404, a wrong method 405 with `Allow`.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artemis.clock import FakeClock
from tests.server.conftest import MakeApi, make_parts
from tests.server.harness import (
    DELTA,
    HEARTBEAT,
    LOOKUP,
    NOT_EXISTING,
    OK_BODY,
    REGION,
    REGISTER,
    SERVICE,
    SERVICE_PATH,
    SERVICES,
    UNREGISTER,
    ZONE,
    Api,
    change,
    fail,
    failed,
    full,
    instance,
    lookup_answer,
    partial,
    registry_fail,
    service,
)

SMALL = 2048  # max_body_bytes of the tests about sizes


def bad_request(message: str) -> dict[str, Any]:
    return registry_fail("bad-request", message)


@pytest.fixture
async def small(make_api: MakeApi) -> Api:
    """A node accepting bodies of at most 2048 bytes and batches of 3, with `instance()`."""
    api = await make_api(max_body_bytes=SMALL, max_batch=3)
    assert OK_BODY == await api.register(instance())
    return api


# --- the body cannot be read -----------------------------------------------------------------


async def test_malformed_json(seeded: Api) -> None:
    """Truncated JSON answers `bad-request` naming the problem."""
    async with seeded.unchanged():
        answer = await seeded.call(REGISTER, content=b'{"instances": [')

    assert bad_request("request body: malformed JSON: Input data was truncated") == answer


async def test_invalid_utf8(seeded: Api) -> None:
    """A body that is not UTF-8 answers `bad-request`."""
    async with seeded.unchanged():
        answer = await seeded.call(REGISTER, content=b'{"instances":[{"serviceId":"\xff"}]}')

    assert bad_request("request body: malformed JSON: Invalid UTF-8 encoded string") == answer


async def test_deeply_nested_json(seeded: Api) -> None:
    """JSON nested 5000 deep (10 KB) is malformed input: `bad-request`, not an internal error."""
    body = b'{"instances":' + b"[" * 5000 + b"]" * 5000 + b"}"

    async with seeded.unchanged():
        answer = await seeded.call(REGISTER, content=body)

    assert bad_request(answer["responseStatus"]["message"]) == answer  # any message


async def test_wrong_type_of_a_field(seeded: Api) -> None:
    """port "x" answers `bad-request` with the JSON path of the bad value; nothing is kept."""
    async with seeded.unchanged():
        answer = await seeded.register(instance("10.0.0.9:80"), instance(port="x"))

    assert bad_request("request body: Expected `int`, got `str` - at `$.instances[1].port`"
                       ) == answer


@pytest.mark.parametrize(("body", "message"), [
    (b'{"instances":"x"}', "Expected `array | null`, got `str` - at `$.instances`"),
    (b'{"instances":[1]}', "Expected `object | null`, got `int` - at `$.instances[0]`"),
    (b'{"instances":[{"metadata":{"k":1}}]}',
     "Expected `str`, got `int` - at `$.instances[0].metadata[...]`"),
    (b'{"instances":[{"port":80.5}]}', "Expected `int`, got `float` - at `$.instances[0].port`"),
    (b"[]", "Expected `object`, got `array`"),
    (b"null", "Expected `object`, got `null`"),
    (b'"instances"', "Expected `object`, got `str`"),
])
async def test_wrong_shape_of_the_body(seeded: Api, body: bytes, message: str) -> None:
    """A body of the wrong shape answers `bad-request` with what was expected where."""
    async with seeded.unchanged():
        answer = await seeded.call(REGISTER, content=body)

    assert bad_request(f"request body: {message}") == answer


@pytest.mark.parametrize("path", [REGISTER, HEARTBEAT, UNREGISTER])
@pytest.mark.parametrize("body", [b"{}", b'{"instances":null}', b""])
async def test_missing_instances(seeded: Api, path: str, body: bytes) -> None:
    """No `instances` (or an empty body) answers the original's `bad-request` message."""
    async with seeded.unchanged():
        answer = await seeded.call(path, content=body)

    assert bad_request("request.instances is null or empty.") == answer


@pytest.mark.parametrize("path", [REGISTER, HEARTBEAT, UNREGISTER])
async def test_empty_batch(seeded: Api, path: str) -> None:
    """An empty batch answers `bad-request`."""
    async with seeded.unchanged():
        answer = await seeded.call(path, {"instances": []})

    assert bad_request("request.instances is null or empty.") == answer


@pytest.mark.parametrize("path", [REGISTER, HEARTBEAT, UNREGISTER])
async def test_batch_over_max_batch(small: Api, path: str) -> None:
    """A batch of 4 where 3 are allowed answers `bad-request`; none of the 4 is applied."""
    batch = [instance(), *(instance(f"10.0.0.{n}:80") for n in range(1, 4))]

    async with small.unchanged():
        answer = await small.call(path, {"instances": batch})

    assert bad_request("request.instances has 4 instances; at most 3 are accepted in one "
                       "request.") == answer


# --- sizes and encodings ---------------------------------------------------------------------


async def test_body_over_the_limit_with_content_length(small: Api) -> None:
    """A body announced larger than max_body_bytes answers `bad-request`."""
    body = json.dumps({"instances": [instance(machineName="m" * SMALL)]}).encode()

    async with small.unchanged():
        response = await small.post(REGISTER, content=body)

    assert int(response.request.headers["content-length"]) > SMALL
    assert bad_request(f"request body is larger than {SMALL} bytes") == response.json()


async def test_body_over_the_limit_without_content_length(small: Api) -> None:
    """A chunked body (no Content-Length) that grows past max_body_bytes answers `bad-request`."""
    body = json.dumps({"instances": [instance(machineName="m" * SMALL)]}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 500):
            yield body[start:start + 500]

    async with small.unchanged():
        response = await small.post(REGISTER, content=chunks())

    assert "content-length" not in response.request.headers
    assert bad_request(f"request body is larger than {SMALL} bytes") == response.json()


async def test_body_within_the_limit_without_content_length(small: Api) -> None:
    """A chunked body within the limit is read whole and registered."""
    other = instance("10.0.0.2:80")
    body = json.dumps({"instances": [other]}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start:start + 100]

    assert OK_BODY == (await small.post(REGISTER, content=chunks())).json()
    assert lookup_answer(service(SERVICE, instance(), other)) == await small.lookup()


async def test_content_length_not_a_number(seeded: Api) -> None:
    """A Content-Length that is not a number answers `bad-request` (raw ASGI call)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b'{"instances":[]}', "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": REGISTER, "query_string": b"",
             "headers": [(b"content-length", b"12abc")], "client": ("127.0.0.1", 1)}
    async with seeded.unchanged():
        await seeded.parts.app(scope, receive, send)

    assert (200, bad_request("Content-Length '12abc' is not a number")) == (
        sent[0]["status"], json.loads(sent[1]["body"]))


async def test_gzip_body_is_inflated(seeded: Api) -> None:
    """A gzip body with `Content-Encoding: gzip` is read as its JSON."""
    other = instance("10.0.0.2:80")
    body = gzip.compress(json.dumps({"instances": [other]}).encode())

    answer = await seeded.call(REGISTER, content=body, headers={"Content-Encoding": "gzip"})

    assert OK_BODY == answer
    assert lookup_answer(service(SERVICE, instance(), other)) == await seeded.lookup()


async def test_broken_gzip(seeded: Api) -> None:
    """A body that is not gzip but says so answers `bad-request`."""
    async with seeded.unchanged():
        answer = await seeded.call(REGISTER, content=b'{"instances":[]}',
                                   headers={"Content-Encoding": "gzip"})

    assert bad_request("request body is not valid gzip: Error -3 while decompressing data: "
                       "incorrect header check") == answer


async def test_truncated_gzip(seeded: Api) -> None:
    """A gzip body cut short answers `bad-request`."""
    body = gzip.compress(json.dumps({"instances": [instance("10.0.0.2:80")]}).encode())

    async with seeded.unchanged():
        answer = await seeded.call(REGISTER, content=body[:-12],
                                   headers={"Content-Encoding": "gzip"})

    assert bad_request("request body is not valid gzip: it ends too early") == answer


async def test_gzip_bomb(seeded: Api) -> None:
    """8 KB of gzip that inflate past the 4 MiB limit answer `bad-request` (inflating stops at
    the limit)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = packer.compress(b'{"instances":[' + b" " * (8 << 20)) + packer.flush()
    assert len(bomb) < 10_000

    async with seeded.unchanged():
        answer = await seeded.call(REGISTER, content=bomb, headers={"Content-Encoding": "gzip"})

    assert bad_request("request body is larger than 4194304 bytes once decompressed") == answer


async def test_gzip_of_two_members(seeded: Api) -> None:
    """A gzip body of two members (RFC 1952 allows a series) is inflated whole."""
    other = instance("10.0.0.2:80")
    text = json.dumps({"instances": [other]}).encode()
    body = gzip.compress(text[:20]) + gzip.compress(text[20:])

    answer = await seeded.call(REGISTER, content=body, headers={"Content-Encoding": "gzip"})

    assert OK_BODY == answer
    assert lookup_answer(service(SERVICE, instance(), other)) == await seeded.lookup()


@pytest.mark.parametrize("encoding", ["br", "deflate", "gzip, br"])
async def test_unsupported_content_encoding(seeded: Api, encoding: str) -> None:
    """A Content-Encoding other than gzip (or identity) answers `bad-request`."""
    async with seeded.unchanged():
        answer = await seeded.call(REGISTER, {"instances": [instance("10.0.0.2:80")]},
                                   headers={"Content-Encoding": encoding})

    assert bad_request(f"Content-Encoding '{encoding}' is not supported; use gzip") == answer


async def test_identity_content_encoding(seeded: Api) -> None:
    """`Content-Encoding: identity` means the body as it is."""
    other = instance("10.0.0.2:80")

    assert OK_BODY == await seeded.call(REGISTER, {"instances": [other]},
                                        headers={"Content-Encoding": "identity"})


# --- every endpoint answers in its own shape -------------------------------------------------


@pytest.mark.parametrize(("path", "nulls"), [
    (REGISTER, {"failedInstances": None}),
    (HEARTBEAT, {"failedInstances": None}),
    (UNREGISTER, {"failedInstances": None}),
    (LOOKUP, {"services": None}),
    (SERVICE_PATH, {"checksum": None, "service": None}),
    (SERVICES, {"checksum": None, "services": None, "version": 0}),
    (DELTA, {"checksum": None, "delta": None, "version": 0}),
    ("/api/status/leases.json", {
        "isSafe": False, "isSafeCheckEnabled": False, "leaseCount": 0,
        "leaseUpdateCountLastTimeWindow": 0, "leaseUpdateMaxCount": 0,
        "leaseUpdateMaxCountLastUpdateTime": 0, "leases": None}),
    ("/api/cluster/up-registry-nodes.json", {"nodes": None}),
    ("/api/cluster/up-discovery-nodes.json", {"nodes": None}),
])
async def test_malformed_json_answers_in_the_endpoint_shape(seeded: Api, path: str,
                                                            nulls: dict[str, Any]) -> None:
    """Malformed JSON to any endpoint answers HTTP 200, its payload null, `bad-request`."""
    async with seeded.unchanged():
        response = await seeded.post(path, content=b"{oops")

    assert (200, {**nulls, "responseStatus": fail(
        "bad-request", "request body: malformed JSON: JSON is malformed: "
        "object keys must be strings (byte 1)")}) == (response.status_code, response.json())


@pytest.mark.parametrize("path", ["/nope", "/api/registry/register", "/api/registry/register.json/",
                                  "/API/REGISTRY/REGISTER.JSON", "/artemis-web" + REGISTER])
async def test_unknown_path_is_404(seeded: Api, path: str) -> None:
    """An unknown path answers 404 with a JSON body naming it."""
    async with seeded.unchanged():
        response = await seeded.post(path, {"instances": [instance("10.0.0.2:80")]})

    assert (404, "application/json", {"responseStatus": fail("bad-request",
                                                             f"no endpoint at {path}")}) == (
        response.status_code, response.headers["content-type"], response.json())


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", REGISTER, "OPTIONS, POST"),
    ("PUT", HEARTBEAT, "OPTIONS, POST"),
    ("DELETE", UNREGISTER, "OPTIONS, POST"),
    ("GET", LOOKUP, "OPTIONS, POST"),
    ("PATCH", SERVICES, "GET, OPTIONS, POST"),
    ("POST", "/health", "GET, HEAD, OPTIONS"),
    ("POST", "/api/status/runtime.json", "GET, OPTIONS"),
])
async def test_wrong_method_is_405_with_allow(seeded: Api, method: str, path: str,
                                              allow: str) -> None:
    """A known path with a wrong method answers 405, `Allow` listing the methods, a JSON body."""
    async with seeded.unchanged():
        response = await seeded.client.request(method, path, json={"instances": [instance()]})

    assert (405, allow, {"responseStatus": fail(
        "bad-request", f"{method} is not allowed on {path}; use {allow}")}) == (
        response.status_code, response.headers["allow"], response.json())


# --- per-instance problems -------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "reason"), [
    ({"port": 70000}, "port 70000 is out of range 0-65535."),
    ({"port": -1}, "port -1 is out of range 0-65535."),
    ({"instanceId": ""}, "instanceId is null or blank."),
    ({"instanceId": "   "}, "instanceId is null or blank."),
    ({"instanceId": None}, "instanceId is null or blank."),
    ({"serviceId": None}, "serviceId is null or blank."),
    ({"serviceId": "\t"}, "serviceId is null or blank."),
    ({"url": None}, "url is null or blank."),
    ({"instanceId": "i" * 257}, "instanceId is longer than 256 characters."),
    ({"serviceId": "s" * 257}, "serviceId is longer than 256 characters."),
    ({"url": "http://h/" + "p" * 2040}, "url is longer than 2048 characters."),
    ({"instanceId": "10.0.0.5:8080\x00"}, "instanceId contains control characters."),
    ({"serviceId": "demo\nservice"}, "serviceId contains control characters."),
    ({"url": "http://h/\x1b[31m"}, "url contains control characters."),
    ({"machineName": "m" * 1025}, "machineName is longer than 1024 characters."),
    ({"metadata": {"note": "n" * 1025}}, "metadata entry 'note' is longer than 1024."),
    ({"metadata": {f"k{n}": "v" for n in range(65)}}, "metadata has more than 64 entries."),
    ({"ip": "10.0.0.5\x00"}, "ip contains control characters."),
    ({"healthCheckUrl": "http://h/\r\nx"}, "healthCheckUrl contains control characters."),
    ({"metadata": {"k": "\x1b[2J"}}, "metadata value of 'k' contains control characters."),
])
@pytest.mark.parametrize("path", [REGISTER, HEARTBEAT, UNREGISTER])
async def test_invalid_instance_fails_alone(seeded: Api, path: str, fields: dict[str, Any],
                                            reason: str) -> None:
    """An invalid instance is a `bad-request` failure inside partial_fail and changes nothing;
    a heartbeat of one the node does not hold is data-not-found (so the SDK registers)."""
    bad = instance(**fields)
    if path == HEARTBEAT and {"instanceId", "serviceId"} & set(fields):  # not held: unknown
        code, reason = "data-not-found", NOT_EXISTING
    else:
        code = "bad-request"

    async with seeded.unchanged():
        answer = await seeded.call(path, {"instances": [bad]})

    assert partial(failed(bad, code, reason)) == answer


async def test_invalid_instance_does_not_stop_the_batch(seeded: Api) -> None:
    """In a batch, the valid instances are registered and only the invalid one fails."""
    good, bad = instance("10.0.0.2:80"), instance("10.0.0.3:80", port=65536)

    answer = await seeded.register(good, bad)

    assert partial(failed(bad, "bad-request", "port 65536 is out of range 0-65535.")) == answer
    assert lookup_answer(service(SERVICE, instance(), good)) == await seeded.lookup()


# --- Jackson habits: lenient reading ---------------------------------------------------------


async def test_keys_are_case_insensitive(seeded: Api) -> None:
    """Keys in any case are read (ACCEPT_CASE_INSENSITIVE_PROPERTIES) and answered canonically."""
    body = {"INSTANCES": [{"ServiceID": SERVICE, "instanceid": "10.0.0.2:80", "URL": "http://x/",
                           "RegionId": REGION, "ZONEID": ZONE, "Port": 81,
                           "MetaData": {"Key": "Value"}}]}

    assert OK_BODY == await seeded.call(REGISTER, body)
    assert lookup_answer(service(SERVICE, instance(), full(
        instanceId="10.0.0.2:80", metadata={"Key": "Value"}, port=81, regionId=REGION,
        serviceId=SERVICE, url="http://x/", zoneId=ZONE))) == await seeded.lookup()


async def test_unknown_keys_are_ignored(seeded: Api) -> None:
    """Unknown keys, at any level, are ignored (FAIL_ON_UNKNOWN_PROPERTIES off)."""
    other = instance("10.0.0.2:80")
    body = {"instances": [{**other, "weight": 5, "tags": ["a"], "nested": {"x": None}}],
            "token": "t", "operatorId": None}

    assert OK_BODY == await seeded.call(REGISTER, body)
    assert lookup_answer(service(SERVICE, instance(), other)) == await seeded.lookup()


async def test_null_for_a_primitive_is_its_default(seeded: Api) -> None:
    """`"port": null` means port 0, as Jackson reads a null primitive."""
    other = instance("10.0.0.2:80", port=None)

    assert OK_BODY == await seeded.register(other)
    assert lookup_answer(service(SERVICE, instance(), {**other, "port": 0})) == (
        await seeded.lookup())


# --- hostile strings -------------------------------------------------------------------------


@pytest.mark.parametrize("service_id", [
    "x'; DROP TABLE service_instance; --",
    "\" OR 1=1 --",
    "服务.发现.v1",
    "🚀.service",
    "שירות.v1",
    "a/b\\c?d#e%20",
    "<script>alert(1)</script>",
])
async def test_hostile_strings_are_plain_data(api: Api, service_id: str) -> None:
    """SQL-like, markup, path-like and non-Latin ids are stored and answered byte for byte, in
    lookups and deltas."""
    odd = instance(serviceId=service_id, machineName=service_id,
                   metadata={service_id: service_id})

    assert OK_BODY == await api.register(odd)
    assert lookup_answer(service(service_id, odd)) == await api.lookup(service_id)
    version = await api.snapshot()
    delta = await api.call(DELTA, {"version": version - 1000})
    assert {service_id: [change("new", version - 1000, odd)]} == delta["delta"]


async def test_unusual_text_is_kept_and_escaped(api: Api) -> None:
    """Text without control characters (line separators, markup, quotes) is kept and comes
    back as valid JSON."""
    odd = instance(machineName="a\u2028b\u00a0c", status="[red]up</script>\"",
                   metadata={"note": "[link=javascript:alert(1)]x[/link]"})

    assert OK_BODY == await api.register(odd)
    response = await api.post(LOOKUP, {"discoveryConfigs": [{"serviceId": SERVICE}],
                                       "regionId": REGION})
    assert b"\x00" not in response.content
    assert lookup_answer(service(SERVICE, odd)) == response.json()


async def test_very_long_instance_id_echo(seeded: Api) -> None:
    """A 100 000 character instanceId fails alone and is echoed back whole."""
    huge = instance("i" * 100_000)

    async with seeded.unchanged():
        answer = await seeded.register(huge)

    assert partial(failed(huge, "bad-request", "instanceId is longer than 256 characters.")) == (
        answer)


# --- fuzz ------------------------------------------------------------------------------------

# The Artemis API's routes; prefix routes speak other protocols (the Eureka API: tests/eureka).
_POST_PATHS = sorted(p for p in make_parts(FakeClock()).app.routes if not p.endswith("/*"))
_KEYS = ["instances", "INSTANCES", "discoveryConfigs", "discoveryconfigs", "discoveryConfig",
         "regionId", "zoneId", "version", "serviceIds", "enabled", "legacy", "serviceId",
         "instanceId", "url", "port", "metadata", "ip", "groupId"]


def _not_our_region(text: str) -> bool:
    return text.strip().lower() != REGION.lower()


_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
            | st.text(max_size=12).filter(_not_our_region))
_json_ish = st.recursive(
    _scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(_KEYS) | st.text(max_size=6), kids, max_size=5),
    max_leaves=20,
)
_instance_ish = st.fixed_dictionaries({}, optional={
    "serviceId": st.sampled_from([SERVICE, SERVICE.upper(), "", " "]) | st.text(max_size=8),
    "instanceId": st.sampled_from(["10.0.0.5:8080", "", "x"]) | st.text(max_size=8),
    "url": st.sampled_from(["http://10.0.0.5:8080/api", "x", ""]) | st.text(max_size=8),
    "regionId": st.sampled_from([None, "", "FRA", "sh", "shaa"]),  # never this node's region
    "zoneId": st.sampled_from([None, ZONE, "zone-2"]),
    "port": st.integers(-(2**66), 2**66) | st.text(max_size=3) | st.none() | st.floats(),
    "metadata": st.none() | st.dictionaries(st.text(max_size=4),
                                            st.text(max_size=4) | st.integers(), max_size=3),
    "Instances": _json_ish,
})
_config_ish = st.none() | st.fixed_dictionaries({}, optional={
    "serviceId": st.sampled_from([SERVICE, "", None]) | st.text(max_size=6),
    "regionId": st.sampled_from([None, REGION, "FRA"]),
    "discoveryData": _json_ish,
})
_payload = st.fixed_dictionaries({}, optional={
    "instances": st.lists(st.none() | _instance_ish | _json_ish, max_size=4) | _json_ish,
    "discoveryConfigs": st.lists(_config_ish, max_size=3) | _json_ish,
    "discoveryConfig": _config_ish | _json_ish,
    "regionId": st.sampled_from([None, REGION, "sha", "FRA", 7]),
    "zoneId": st.sampled_from([None, ZONE, "zone-2", []]),
    "version": st.integers(-(2**70), 2**70) | _json_ish,
    "serviceIds": st.lists(st.text(max_size=6), max_size=3) | _json_ish,
    "enabled": st.booleans() | _json_ish,
})


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


_bodies = st.one_of(
    _payload.map(_dumps),
    _json_ish.map(_dumps),
    st.binary(max_size=64),
    _payload.map(_dumps).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(_POST_PATHS), body=_bodies,
       encoding=st.sampled_from([None, "gzip", "GZIP", "identity", "br"]), packed=st.booleans())
async def test_random_bodies_never_break_an_endpoint(path: str, body: bytes, encoding: str | None,
                                                     packed: bool) -> None:
    """Random JSON-ish bodies POSTed to every endpoint get 200/404/405 and a JSON body with a
    responseStatus, never an internal error; no generated instance names the node's region, so
    the registry never changes (in particular not when the answer is not success)."""
    clock = FakeClock()
    parts = make_parts(clock)
    transport = httpx.ASGITransport(app=parts.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        api = Api(parts, clock, client)
        assert OK_BODY == await api.register(instance())
        before = api.content()
        headers = {"Content-Encoding": encoding} if encoding else {}
        content = gzip.compress(body) if encoding in ("gzip", "GZIP") and packed else body

        response = await client.post(path, content=content, headers=headers)

        answer = response.json()
        status = answer["responseStatus"]
        assert response.status_code in (200, 404, 405)
        assert (str, str, str) == tuple(type(status[k]) for k in ("errorCode", "message",
                                                                  "status"))
        assert status["status"] in ("success", "fail", "partial_fail")
        assert "internal-service-error" != status["errorCode"]
        assert before == api.content()
