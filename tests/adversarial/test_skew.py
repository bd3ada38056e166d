"""Clock skew plus a partition must not make stale data win for good (finding 7 of issue 11).

Three real `artemis server` processes; node B's wall clock runs an hour ahead
(`--wall-clock-offset 3600`) and every connection to and from B goes through a fault proxy. An
instance registered with its old URL reaches all three; B is partitioned off; the instance
registers again on A with a new URL (B misses it) and heartbeats with it; the partition heals.
Before the fix, A's repair took B's copy (its registration time, read on B's clock, was "later"),
the heartbeats renewed whatever data a node held, and every node served the old URL for good.
Now repair weighs how recently each copy was renewed, and a heartbeat never renews other data
than it carries: every node serves the new URL, and keeps it through further repair rounds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.process.cluster import (
    FAST,
    NAMES,
    REGION,
    SERVICE,
    SUCCESS,
    ZONE,
    Cluster,
    discover,
    peer_view,
    post,
    replication,
    wait_for,
)

SKEWED = "B"
OFFSET = 3600.0  # seconds B's wall clock runs ahead
OLD, NEW = "http://10.0.0.7:8080/old", "http://10.0.0.8:8080/new"
DEADLINE = 15.0


class SkewedCluster(Cluster):
    """A cluster whose node `SKEWED` is started with its wall clock `OFFSET` seconds ahead."""

    def command(self, name: str) -> list[str]:
        extra = ["--wall-clock-offset", str(OFFSET)] if name == SKEWED else []
        return [*super().command(name), *extra]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SkewedCluster]:
    """A, B (an hour ahead) and C, every link to and from B through a proxy; all up."""
    started = SkewedCluster(tmp_path, NAMES, FAST)
    try:
        for other in ("A", "C"):
            started.add_proxy(other, SKEWED)
            started.add_proxy(SKEWED, other)
        started.start()
        yield started
    finally:
        started.stop()


def instance(url: str) -> dict[str, Any]:
    return {"serviceId": SERVICE, "instanceId": "moving", "ip": url[7:15], "port": 8080,
            "url": url, "regionId": REGION, "zoneId": ZONE}


def client_write(cluster: Cluster, operation: str, url: str) -> dict[str, Any]:
    return post(cluster["A"], f"/api/registry/{operation}.json",
                {"instances": [instance(url)]})


def heartbeat(cluster: Cluster, url: str) -> None:
    """What the SDK does: heartbeat, and register again whatever the node says it lacks."""
    answer = client_write(cluster, "heartbeat", url)
    if answer != SUCCESS:
        codes = [f["errorCode"] for f in answer.get("failedInstances") or ()]
        assert ["data-not-found"] == codes, answer
        assert SUCCESS == client_write(cluster, "register", url)


def urls(cluster: Cluster) -> dict[str, list[str]]:
    """The URLs each node serves for the service."""
    return {name: sorted(i["url"] for i in discover(cluster[name])["service"]["instances"])
            for name in cluster.names}


def peer_statuses(cluster: Cluster) -> dict[str, dict[str, str]]:
    """How each node sees each of its peers."""
    out: dict[str, dict[str, str]] = {}
    for name in cluster.names:
        by_url = {p["url"]: p["status"] for p in replication(cluster[name])["peers"]}
        out[name] = {other: by_url[cluster.peer_url(name, other)]
                     for other in cluster.names if other != name}
    return out


def repair_rounds(cluster: Cluster) -> dict[str, int]:
    """The fewest checksum comparisons each node has made with one of its peers."""
    return {name: min(p["repair"]["rounds"] for p in replication(cluster[name])["peers"])
            for name in cluster.names}


def set_partition(cluster: Cluster, cut: bool) -> None:
    for proxy in cluster.proxies.values():
        if cut:
            proxy.drop()
        else:
            proxy.heal()


def test_after_a_partition_every_node_serves_what_the_instance_heartbeats(
        cluster: SkewedCluster) -> None:
    """A node an hour ahead that kept an old URL through a partition does not win: after the
    heal every node serves the URL the instance heartbeats with, through three more repairs."""
    polled_by_b = peer_view(cluster[SKEWED], cluster.peer_url(SKEWED, "A"))["lastAnswerTime"]
    assert polled_by_b > (time.time() + OFFSET - 600) * 1000, "B's wall clock is not ahead"
    assert SUCCESS == client_write(cluster, "register", OLD)
    wait_for(lambda: urls(cluster), lambda seen: all(u == [OLD] for u in seen.values()),
             DEADLINE, "the old URL on every node")

    set_partition(cluster, cut=True)
    wait_for(lambda: peer_statuses(cluster), lambda seen: seen == {
        "A": {"B": "unknown", "C": "up"}, "B": {"A": "unknown", "C": "unknown"},
        "C": {"A": "up", "B": "unknown"}}, DEADLINE, "B cut off from A and C, and they from B")
    assert SUCCESS == client_write(cluster, "register", NEW)
    wait_for(lambda: urls(cluster), lambda seen: seen == {"A": [NEW], "B": [OLD], "C": [NEW]},
             DEADLINE, "the new URL on A and C, the old one on B")

    set_partition(cluster, cut=False)
    wait_for(lambda: peer_statuses(cluster),
             lambda seen: all(set(s.values()) == {"up"} for s in seen.values()),
             DEADLINE, "every node seeing its peers up again")

    def heartbeating() -> dict[str, list[str]]:
        heartbeat(cluster, NEW)
        return urls(cluster)

    def rounds_heartbeating() -> dict[str, int]:
        heartbeat(cluster, NEW)
        return repair_rounds(cluster)

    wait_for(heartbeating, lambda seen: all(u == [NEW] for u in seen.values()), DEADLINE,
             "the new URL, the one the instance heartbeats with, on every node")
    settled = repair_rounds(cluster)
    wait_for(rounds_heartbeating, lambda rounds: all(
        rounds[n] >= settled[n] + 3 for n in rounds), DEADLINE,
        "three more repair rounds on every node")
    assert {name: [NEW] for name in NAMES} == urls(cluster)
