"""Heartbeats sent with exactly the JSON the node holds are renewed without being decoded
(core/renewal.py, `sent_as_held` in server/api/registry.py); every other body takes the whole
path and is answered as before."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest

from artemis.core.renewal import HELD_BATCH_MIN, batch_key
from artemis.server.api import registry as registry_api
from artemis.server.api.registry import sent_as_held
from artemis.server.http import Request
from artemis.server.observability.collector import Collector
from tests.server.conftest import MakeApi
from tests.server.harness import (
    HEARTBEAT,
    NOT_EXISTING,
    OK_BODY,
    RATE_LIMITED,
    REGISTER,
    SERVICE,
    Api,
    canonical,
    failed,
    instance,
    lookup_answer,
    partial,
    service,
)

FLEET = [instance(f"10.0.0.{n}:8080") for n in range(1, 4)]


def as_held(*instances: dict[str, Any]) -> bytes:
    """A heartbeat body as clients send it: canonical, each instance exactly as registered."""
    return b'{"instances":[' + b",".join(canonical(i) for i in instances) + b"]}"


async def beat(api: Api, content: bytes) -> Any:
    response = await api.post(HEARTBEAT, content=content)
    assert 200 == response.status_code
    return response.json()


def renewed(api: Api) -> dict[str, float]:
    state = api.node.registry.service(SERVICE)
    return {} if state is None else {k: lease.renewed for k, lease in state.leases.items()}


def test_a_body_in_the_canonical_form_is_read_for_its_ids_and_its_instances_text() -> None:
    """Its ids and the text between its brackets, which the core compares with what it holds;
    a body that does not start and end as clients write it, or names no instance, is not."""
    one, two = canonical(FLEET[0]), canonical(FLEET[1])
    read = sent_as_held(as_held(*FLEET[:2]))
    assert ([(SERVICE, "10.0.0.1:8080"), (SERVICE, "10.0.0.2:8080")], one + b"," + two) == (
        [(i.service_id, i.instance_id) for i in read[0]] if read else None,
        bytes(read[1]) if read else None)
    assert [None, None, None, None, None] == [sent_as_held(body) for body in (
        b'{"instances": [' + one + b"]}",  # a space
        b'{"instances":[' + one + b"] }",
        b'{"instances":[]}',
        b'{"instances":[{"serviceId":5}]}',  # an id that is not a string
        b'{"instances":[' + one + b",]}",  # not JSON
    )]


async def test_a_heartbeat_sent_as_held_is_renewed_without_decoding(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    assert OK_BODY == await api.register(*FLEET)
    api.clock.advance(15)

    def refuse(*_: Any) -> None:
        raise AssertionError("the body was decoded")

    with monkeypatch.context() as patched:
        patched.setattr(Request, "json", refuse)
        assert OK_BODY == await beat(api, as_held(*FLEET))
    now = api.clock.monotonic()
    assert {i["instanceId"]: now for i in FLEET} == renewed(api)
    api.sweep(10)  # past the registration's deadline, not the renewal's
    assert lookup_answer(service(SERVICE, *FLEET)) == await api.lookup()


async def test_any_other_heartbeat_is_answered_as_before(api: Api) -> None:
    """An unknown instance among held ones, other data, a key named twice inside an instance:
    the whole path answers each as it always did, and renews only what it renews."""
    assert OK_BODY == await api.register(*FLEET[:2])
    api.clock.advance(5)
    unknown = FLEET[2]
    assert partial(failed(unknown, "data-not-found", NOT_EXISTING)) == await beat(
        api, as_held(FLEET[0], unknown))
    assert api.clock.monotonic() == renewed(api)["10.0.0.1:8080"]
    assert api.clock.monotonic() - 5 == renewed(api)["10.0.0.2:8080"]

    twice = canonical(FLEET[1])[:-1] + b',"ip":"10.9.9.9"}'
    answer = await beat(api, b'{"instances":[' + twice + b"]}")
    assert ("bad-request", True) == (answer["responseStatus"]["errorCode"],
                                     "duplicate key 'ip'" in answer["responseStatus"]["message"])
    answer = await beat(api, as_held(FLEET[1])[:-1] + b',"instances":[]}')
    assert "duplicate key 'instances'" in answer["responseStatus"]["message"]
    assert api.clock.monotonic() - 5 == renewed(api)["10.0.0.2:8080"]


async def test_a_heartbeat_sent_as_held_is_rate_limited_once(make_api: MakeApi) -> None:
    api = await make_api(rate_limits={"registry.heartbeat": 2})
    assert OK_BODY == await api.register(FLEET[0])
    assert [OK_BODY, OK_BODY] == [await beat(api, as_held(FLEET[0])) for _ in range(2)]
    api.clock.advance(1)
    assert {"failedInstances": None, "responseStatus": RATE_LIMITED} == await beat(
        api, as_held(FLEET[0]))
    assert api.clock.monotonic() - 1 == renewed(api)["10.0.0.1:8080"]


async def test_the_batch_limit_holds_for_a_heartbeat_sent_as_held(make_api: MakeApi) -> None:
    api = await make_api(max_batch=2)
    assert OK_BODY == await api.register(*FLEET[:2])
    assert OK_BODY == await api.register(FLEET[2])
    answer = await beat(api, as_held(*FLEET))
    assert {"errorCode": "bad-request", "status": "fail",
            "message": "request.instances has 3 instances; at most 2 are accepted in one "
                       "request."} == answer["responseStatus"]


def test_json_of_the_fleet_is_what_the_node_holds(api: Api) -> None:
    """The premise of these tests: `canonical` is the JSON the node keeps of an instance."""
    assert json.loads(canonical(FLEET[0])) == FLEET[0]


async def test_a_heartbeat_sent_as_held_meets_the_writers_rules(make_api: MakeApi) -> None:
    """Only a request without a token, on a node where one is not needed, is renewed before its
    writer is resolved: in token mode the same bytes without a token are refused and renew
    nothing, with a token they renew; in open mode an unknown token is refused."""
    secret = "orders-secret-0123456789"  # noqa: S105 (a test token)
    api = await make_api(registration_mode="token", tokens=f"orders:register=orders.*:{secret}")
    mine = instance("10.0.0.1:8080", serviceId="orders.api")
    bearer = {"authorization": f"Bearer {secret}"}
    assert OK_BODY == (await api.post(REGISTER, {"instances": [mine]}, headers=bearer)).json()
    api.clock.advance(5)
    refused = {"failedInstances": None, "responseStatus": {
        "errorCode": "no-permission", "status": "fail",
        "message": "registration_mode is token: register, heartbeat and unregister need a "
                   "bearer token with the register role"}}
    assert refused == await beat(api, as_held(mine))
    state = api.node.registry.service("orders.api")
    assert api.clock.monotonic() - 5 == (state.leases["10.0.0.1:8080"].renewed if state else 0)
    answer = await api.post(HEARTBEAT, content=as_held(mine), headers=bearer)
    assert OK_BODY == answer.json()
    assert api.clock.monotonic() == state.leases["10.0.0.1:8080"].renewed

    other = await make_api()
    assert OK_BODY == await other.register(FLEET[0])
    other.clock.advance(5)
    answer = await other.post(HEARTBEAT, content=as_held(FLEET[0]),
                              headers={"authorization": "Bearer not-a-token-of-this-node"})
    assert "no-permission" == answer.json()["responseStatus"]["errorCode"]
    assert other.clock.monotonic() - 5 == renewed(other)["10.0.0.1:8080"]


async def test_a_heartbeat_not_as_held_is_compared_once(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A canonical body whose text is not what the node holds is compared with it once, then
    decoded and answered by the whole path (which renews it: the data is the same)."""
    assert OK_BODY == await api.register(FLEET[0])
    api.clock.advance(5)
    registry = api.node.registry
    compared = []
    original = registry.held_exactly

    def counted(*args: Any, **kwargs: Any) -> Any:
        compared.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(registry, "held_exactly", counted)
    reordered = json.dumps(dict(reversed(FLEET[0].items())), separators=(",", ":")).encode()
    assert reordered != canonical(FLEET[0])  # the same data, its keys in another order
    assert OK_BODY == await beat(api, b'{"instances":[' + reordered + b"]}")
    assert ([reordered], api.clock.monotonic()) == (
        [bytes(text) for text in compared], renewed(api)["10.0.0.1:8080"])


BATCH = [instance(f"10.0.{n // 200}.{n % 200 + 1}:8080") for n in range(HELD_BATCH_MIN)]


async def test_a_large_batch_renewed_before_is_renewed_again_without_its_ids_read(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client's batch of HELD_BATCH_MIN instances sent as held is remembered once renewed;
    sent again, it is renewed from its text alone (neither its ids read nor the body decoded),
    also once one of its instances is registered again with the same data."""
    assert OK_BODY == await api.register(*BATCH)
    assert OK_BODY == await beat(api, as_held(*BATCH))
    api.clock.advance(5)

    def refuse(*_: Any) -> None:
        raise AssertionError("the body was read")

    with monkeypatch.context() as patched:
        patched.setattr(registry_api, "sent_as_held", refuse)
        patched.setattr(Request, "json", refuse)
        assert OK_BODY == await beat(api, as_held(*BATCH))
    now = api.clock.monotonic()
    assert {i["instanceId"]: now for i in BATCH} == renewed(api)
    assert (1, 1) == (api.node.registry.held_batches.hits, len(api.node.registry.held_batches))

    assert OK_BODY == await api.register(BATCH[5])  # a new lease, the same data
    api.clock.advance(5)
    with monkeypatch.context() as patched:
        patched.setattr(registry_api, "sent_as_held", refuse)
        assert OK_BODY == await beat(api, as_held(*BATCH))
    assert ({i["instanceId"]: api.clock.monotonic() for i in BATCH}, 2) == (
        renewed(api), api.node.registry.held_batches.hits)
    runtime = (await api.client.get("/api/status/runtime.json")).json()
    assert {"batches": 1, "forgotten": 0, "hits": 2, "leases": HELD_BATCH_MIN,
            "made": 1} == runtime["heldBatches"]


async def test_a_batch_found_again_meets_the_same_limits(make_api: MakeApi) -> None:
    """Found again, a batch is still admitted by the rate limit: the third is found and
    refused, and renews nothing."""
    api = await make_api(rate_limits={"registry.heartbeat": 2})
    assert OK_BODY == await api.register(*BATCH)
    assert [OK_BODY, OK_BODY] == [await beat(api, as_held(*BATCH)) for _ in range(2)]
    api.clock.advance(1)
    assert {"failedInstances": None, "responseStatus": RATE_LIMITED} == await beat(
        api, as_held(*BATCH))
    assert {i["instanceId"]: api.clock.monotonic() - 1 for i in BATCH} == renewed(api)
    assert 2 == api.node.registry.held_batches.hits


async def test_a_batch_remembered_leaves_the_young_generations_at_once(api: Api) -> None:
    """Where the node runs its collector policy, a newly remembered batch's list of leases is
    frozen at once (observability/collector.py), so no young pass walks it; a batch found
    again freezes nothing more."""
    collector = api.node.collector = Collector()
    try:
        assert OK_BODY == await api.register(*BATCH)
        assert OK_BODY == await beat(api, as_held(*BATCH))
        frozen = collector.freezes
        remembered = api.node.registry.held_batches.take(batch_key(as_held(*BATCH)[14:-2]))
        assert remembered is not None
        young = [o for generation in (0, 1, 2) for o in gc.get_objects(generation)
                 if o is remembered]
        api.node.registry.held_batches.keep(batch_key(as_held(*BATCH)[14:-2]), remembered,
                                            api.clock.monotonic(), 300.0)
        assert OK_BODY == await beat(api, as_held(*BATCH))
        assert (1, [], 1) == (frozen, young, collector.freezes)
    finally:
        api.node.collector = None
        gc.unfreeze()
