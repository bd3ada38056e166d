"""Peers prove who they are (docs/security.md, "Peers"), against real processes.

A three-node cluster sharing the cluster secret replicates and repairs; a forged replication call
(no secret, a wrong one) is refused `no-permission`, changes nothing and is counted; a node
without peers refuses every replication call; a node with peers and no secret does not start;
with --cluster-insecure it starts, says so in its log and its status, and takes peer calls
without a secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from artemis import wire
from tests.process.cluster import (
    CLUSTER_SECRET,
    REGION,
    SERVICE,
    ZONE,
    Cluster,
    StartCluster,
    checksum,
    instance,
    instance_ids,
    register,
    replication,
    start_cluster_fixture,  # noqa: F401 - the fixture `start_cluster`
    wait_for,
)
from tests.process.conftest import RunningNode, StartNode, free_port

REPLICATE = "/api/replication/registry"
SECRET_HEADER = "x-artemis-cluster-secret"  # noqa: S105 - a header name
DEADLINE = 10.0
PEER_REFUSED = ("this call is for the cluster's nodes: it needs the cluster secret in "
                "x-artemis-cluster-secret")
ALONE_REFUSED = "this node has no peers: it accepts no replication, bootstrap or repair calls"


def _post(url: str, path: str, body: Any, secret: str | None = None) -> dict[str, Any]:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    answer: dict[str, Any] = httpx.post(url + path, json=body, headers=headers,
                                        timeout=5.0).json()
    return answer


def _refused(url: str) -> dict[str, float]:
    """artemis_peer_auth_refused_total by reason, as /metrics shows it."""
    out = {}
    for line in httpx.get(url + "/metrics", timeout=5.0).text.splitlines():
        if line.startswith("artemis_peer_auth_refused_total{"):
            name, _, value = line.rpartition(" ")
            out[name.split('"')[1]] = float(value)
    return out


def _genuine_everywhere(cluster: Cluster) -> tuple[RunningNode, dict[str, str]]:
    """Register "genuine" at node A and wait until every node holds it: node A and every
    node's checksum then."""
    a = cluster["A"]
    register(a, "genuine")
    wait_for(lambda: {instance_ids(cluster[n]) == ["genuine"] for n in cluster.names},
             lambda seen: seen == {True}, DEADLINE, "every node holding the genuine instance")
    return a, {n: checksum(cluster[n]) for n in cluster.names}


def _no_permission(message: str) -> dict[str, Any]:
    return {"failedInstances": None, "responseStatus": {
        "errorCode": "no-permission", "message": message, "status": "fail"}}


def test_a_cluster_with_the_secret_replicates_and_repairs(start_cluster: StartCluster) -> None:
    """Nodes sharing the secret replicate a client's register and repair a write only one of
    them got (a peer's register is never sent on: anti-entropy brings it to the others), and
    say peerAuth secret."""
    cluster = start_cluster()
    a, b, c = (cluster[name] for name in ("A", "B", "C"))
    register(a, "replicated")
    register(b, "repaired", replication=True)
    views = wait_for(lambda: {n.url: instance_ids(n) for n in (a, b, c)},
                     lambda seen: all(v == ["repaired", "replicated"] for v in seen.values()),
                     DEADLINE, "every node holding both instances")
    assert (["secret"] * 3, 1, {"alone": 0.0, "missing": 0.0, "wrong": 0.0}) == (
        [replication(n)["peerAuth"] for n in (a, b, c)],
        len({checksum(n) for n in (a, b, c)}), _refused(a.url)), views


@pytest.mark.parametrize(("secret", "reason"), [(None, "missing"), ("wrong-" * 5, "wrong"),
                                                ("", "missing")])
def test_a_forged_replication_call_is_refused_and_counted(
        start_cluster: StartCluster, secret: str | None, reason: str) -> None:
    """A replicated register, heartbeat, unregister or copy without the cluster secret (or with
    another) is refused no-permission in its endpoint's shape, changes nothing on any node and
    is counted by reason."""
    cluster = start_cluster()
    a, before = _genuine_everywhere(cluster)
    forged = {"instances": [instance("genuine") | {"url": "http://attacker:1/"},
                            instance("forged")]}
    answers = [_post(a.url, f"{REPLICATE}/{op}.json", forged, secret)
               for op in ("register", "heartbeat", "unregister")]
    leases = _post(a.url, f"{REPLICATE}/leases.json", {"regionId": REGION}, secret)
    sums = _post(a.url, f"{REPLICATE}/checksums.json", {"regionId": REGION}, secret)
    raw = httpx.get(f"{a.url}{REPLICATE}/services.json", params={"regionId": REGION},
                    headers={SECRET_HEADER: secret} if secret is not None else {},
                    timeout=5.0).json()
    refused = _no_permission(PEER_REFUSED)["responseStatus"]
    assert ([_no_permission(PEER_REFUSED)] * 3, [None, refused], [None, None, refused],
            [None, refused]) == (
        answers, [leases["leases"], leases["responseStatus"]],
        [sums["checksum"], sums["services"], sums["responseStatus"]],
        [raw["services"], raw["responseStatus"]])
    after = {n: checksum(cluster[n]) for n in cluster.names}
    assert (before, ["genuine"], {"alone": 0.0, "missing": 0.0, "wrong": 0.0} | {reason: 6.0},
            instance("genuine")["url"]) == (
        after, instance_ids(a), _refused(a.url),
        httpx.post(a.url + "/api/discovery/service.json", json={"discoveryConfig": {
            "serviceId": SERVICE, "regionId": REGION, "zoneId": ZONE}}, timeout=5.0
        ).json()["service"]["instances"][0]["url"])


def test_a_peers_heartbeat_framed_as_held_is_checked_as_any_other(
        start_cluster: StartCluster) -> None:
    """A peer's heartbeat (with the secret) framed as the nodes write it but not exactly what
    the node holds, or more than a batch may hold, is answered as the whole path answers it and
    changes nothing on any node; the held JSON itself renews. The node goes on serving."""
    cluster = start_cluster()
    a, before = _genuine_everywhere(cluster)
    # what the node holds: the instance as it decoded and encoded it when it was registered
    held = wire.encode(wire.decode(json.dumps(instance("genuine")).encode(), wire.Instance))
    bodies = [
        b'{"instances":[' + held + b"]}",
        b'{"instances":[' + held[:-1] + b',"url":"http://attacker:1/"}]}',  # url named twice
        b'{"instances":[' + held + b",]}",  # not JSON
        b'{"instances":[{"serviceId":5}]}',  # an id that is not a string
        b'{"instances":[' + b",".join([held] * 5001) + b"]}",  # one more than a batch holds
    ]
    answers = [httpx.post(f"{a.url}{REPLICATE}/heartbeat.json", content=body, timeout=30.0,
                          headers={SECRET_HEADER: CLUSTER_SECRET,
                                   "content-type": "application/json"}).json()
               for body in bodies]

    assert (["success", "bad-request", "bad-request", "bad-request", "bad-request"],
            [True, True, True],
            "request.instances has 5001 instances; at most 5000 are accepted in one request.") == (
        [answer["responseStatus"]["errorCode"] for answer in answers],
        ["duplicate key 'url'" in answers[1]["responseStatus"]["message"],
         "malformed JSON" in answers[2]["responseStatus"]["message"],
         "serviceId" in answers[3]["responseStatus"]["message"]],
        answers[4]["responseStatus"]["message"])
    assert (before, ["genuine"], instance("genuine")["url"]) == (
        {n: checksum(cluster[n]) for n in cluster.names}, instance_ids(a),
        httpx.post(a.url + "/api/discovery/service.json", json={"discoveryConfig": {
            "serviceId": SERVICE, "regionId": REGION, "zoneId": ZONE}}, timeout=5.0
        ).json()["service"]["instances"][0]["url"])


def test_a_node_alone_refuses_every_replication_call(start_node: StartNode) -> None:
    """A node without peers has no peer to believe: every replication write and copy is refused
    no-permission, even with a secret, and counted as `alone`."""
    node = start_node("--cluster-secret", CLUSTER_SECRET)
    body = {"instances": [instance("forged")]}
    answers = [_post(node.url, f"{REPLICATE}/{op}.json", body, secret)
               for op in ("register", "heartbeat", "unregister")
               for secret in (None, CLUSTER_SECRET)]
    leases = _post(node.url, f"{REPLICATE}/leases.json", {"regionId": REGION}, CLUSTER_SECRET)
    health = httpx.get(node.url + "/health", timeout=5.0).json()
    assert ([_no_permission(ALONE_REFUSED)] * 6, ALONE_REFUSED, 0,
            {"alone": 7.0, "missing": 0.0, "wrong": 0.0}, "none") == (
        answers, leases["responseStatus"]["message"], health["instances"],
        _refused(node.url), replication(node)["peerAuth"])


def _server(*flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `artemis server` with `flags` until it exits (it should refuse to start)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ARTEMIS_")}
    return subprocess.run(
        [sys.executable, "-m", "artemis", "server", "--port", str(free_port()), "--region",
         REGION, "--zone", ZONE, *flags], capture_output=True, text=True, timeout=60,
        env={**clean, **(env or {})}, check=False)


def test_a_node_with_peers_and_no_secret_does_not_start() -> None:
    """With peers and neither a secret nor --cluster-insecure the node exits at once with a
    usage error naming both; a secret too short is refused likewise and never printed."""
    peers = f"{ZONE}:http://127.0.0.1:{free_port()}"
    missing = _server("--peers", peers)
    short = _server("--peers", peers, env={"ARTEMIS_CLUSTER_SECRET": "tiny-secret"})
    assert (2, True, True, 2, True, False) == (
        missing.returncode, "needs the cluster secret: set --cluster-secret" in missing.stderr,
        "--cluster-insecure" in missing.stderr, short.returncode,
        "cluster_secret must be at least 16 characters" in short.stderr,
        "tiny-secret" in short.stderr + short.stdout), missing.stderr + short.stderr


def test_cluster_insecure_starts_says_so_and_takes_peer_calls(start_node: StartNode) -> None:
    """--cluster-insecure (next to original Java nodes): the node starts, warns in its log,
    shows peerAuth insecure, and takes a replication call without a secret."""
    node = start_node("--peers", f"{ZONE}:http://127.0.0.1:{free_port()}", "--cluster-insecure",
                      "--bootstrap-timeout", "0", "--peer-timeout", "0.2")
    answer = _post(node.url, f"{REPLICATE}/register.json", {"instances": [instance("java")]})
    assert ("success", "insecure", ["java"], True) == (
        answer["responseStatus"]["status"], replication(node)["peerAuth"], instance_ids(node),
        "cluster_insecure: peer calls" in node.output())
