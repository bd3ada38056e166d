"""Large registry bodies against a real node (granian's RSGI face, as in production): a body over
256 KB in the canonical form clients send is decoded in steps, and a malformed one is answered
exactly as the same body written any other way, with nothing registered."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from tests.process.conftest import RunningNode, StartNode

COUNT = 1_200  # about 300 KB: over the 256 KB above which a canonical body is decoded in steps
BAD = 900  # in the second step of 500


def instance(i: int, **fields: Any) -> dict[str, Any]:
    return {"groupId": None, "healthCheckUrl": None, "instanceId": f"10.1.{i // 250}.{i % 250}:80",
            "ip": f"10.1.{i // 250}.{i % 250}", "machineName": None, "metadata": {"n": str(i)},
            "port": 80, "protocol": "http", "regionId": "SHA", "serviceId": f"big.{i % 40}",
            "status": "up", "url": f"http://10.1.{i // 250}.{i % 250}:80/api", "zoneId": "zone-1",
            **fields}


def canonical(instances: list[dict[str, Any]]) -> bytes:
    """As clients write it: no space, `instances` the only key."""
    return b'{"instances":[' + b",".join(map(msgspec.json.encode, instances)) + b"]}"


def post(node: RunningNode, body: bytes) -> dict[str, Any]:
    with node.client() as client:
        answer: dict[str, Any] = client.post(
            "/api/registry/register.json", content=body,
            headers={"content-type": "application/json"}).json()
    return answer


def registered(node: RunningNode) -> int:
    with node.client() as client:
        return int(client.get("/api/status/runtime.json").json()["instances"])


def test_a_large_malformed_body_is_answered_as_the_same_body_spaced(start_node: StartNode
                                                                      ) -> None:
    """Instance 900's port is a string: the canonical body (decoded in steps, then whole when a
    step fails) gets exactly the answer of the same instances written with spaces (decoded
    whole), naming the instance by its place in the whole body; neither registers anything."""
    node = start_node()
    instances = [instance(i) for i in range(COUNT)]
    instances[BAD] = instance(BAD, port="eighty")
    stepped = canonical(instances)
    spaced = json.dumps({"instances": instances}).encode()
    assert len(stepped) > 256 * 1024
    answers = post(node, stepped), post(node, spaced)
    status = answers[0]["responseStatus"]
    assert (answers[1], "bad-request", True, 0) == (
        answers[0], status["errorCode"], f"$.instances[{BAD}].port" in status["message"],
        registered(node)), status


def test_a_large_canonical_body_registers_every_instance(start_node: StartNode) -> None:
    node = start_node()
    answer = post(node, canonical([instance(i) for i in range(COUNT)]))
    assert ({"errorCode": "success", "message": "", "status": "success"}, COUNT) == (
        answer["responseStatus"], registered(node))
