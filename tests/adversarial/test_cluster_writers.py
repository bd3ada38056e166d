"""Ownership across a cluster: the owner of an instance travels with its replicated register and
with the copies of bootstrap and repair, so another client cannot unregister or replace it
through a node that only holds a copy. The victim writes from 127.0.0.1, the attacker from
127.0.0.2 (its client socket bound to that address)."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

from typing import Any

import httpx

from tests.process.cluster import (
    START_DEADLINE,
    StartCluster,
    checksum,
    discover,
    instance,
    instance_ids,
    start_cluster_fixture,
    wait_for,
)
from tests.process.conftest import RunningNode

start_cluster = start_cluster_fixture
NAME = "owned-1"


def write(node: RunningNode, operation: str, *, url: str | None = None,
          address: str = "127.0.0.1") -> list[tuple[str, str]]:
    """The failures of a client's write of NAME at `node` from `address`."""
    body: dict[str, Any] = instance(NAME)
    if url is not None:
        body["url"] = url
    with httpx.Client(base_url=node.url, timeout=5.0,
                      transport=httpx.HTTPTransport(local_address=address)) as client:
        answer = client.post(f"/api/registry/{operation}.json", json={"instances": [body]}).json()
    assert answer["responseStatus"]["errorCode"] in ("success", "partial_fail"), answer
    return [(f["errorCode"], f["errorMessage"].split(": ", 1)[1].split(";")[0])
            for f in answer["failedInstances"] or []]


def url_at(node: RunningNode) -> list[str]:
    service = discover(node)["service"] or {}
    return [i["url"] for i in service.get("instances") or []]


OWNED = [("no-permission", "the instance was registered by another writer and its lease is "
                           "live")]
CHANGED = [("no-permission", "the instance is registered with other data by another writer and "
                             "its lease is live")]


def test_a_copy_on_another_node_is_owned_like_the_original(start_cluster: StartCluster) -> None:
    cluster = start_cluster(names=("A", "B"))
    a, b = cluster["A"], cluster["B"]
    assert [] == write(a, "register")
    wait_for(lambda: instance_ids(b), lambda ids: ids == [NAME], START_DEADLINE, "copy on B")
    # the attacker tries the node that holds only a copy
    assert OWNED == write(b, "unregister", address="127.0.0.2")
    assert CHANGED == write(b, "register", url="http://evil:80/", address="127.0.0.2")
    assert ([NAME], [f"http://10.0.0.1:8080/{NAME}"]) == (instance_ids(b), url_at(b))
    # the owner may change and unregister it through any node
    assert [] == write(b, "register", url="http://10.0.0.1:9090/")
    wait_for(lambda: url_at(a), lambda urls: urls == ["http://10.0.0.1:9090/"], START_DEADLINE,
             "the owner's change replicated to A")
    assert [] == write(b, "unregister")
    wait_for(lambda: instance_ids(a), lambda ids: ids == [], START_DEADLINE, "gone on A")


def test_a_restarted_node_copies_the_owners_with_the_leases(start_cluster: StartCluster
                                                            ) -> None:
    cluster = start_cluster(names=("A", "B"))
    a = cluster["A"]
    assert [] == write(a, "register")
    cluster.kill("B")
    b = cluster.restart("B")  # up only once it copied A's registry
    wait_for(lambda: checksum(b), lambda value: value == checksum(a), START_DEADLINE,
             "B equal to A")
    assert OWNED == write(b, "unregister", address="127.0.0.2")
    assert [NAME] == instance_ids(a) == instance_ids(b)
