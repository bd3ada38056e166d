"""`artemis cluster` against a real two-node cluster: a peer that stopped answering is `down`,
with how long it has not answered (the node itself calls it `unknown`)."""

from __future__ import annotations

import json
from typing import Any

from tests.cli.helpers import DEADLINE, invoke
from tests.process.cluster import (
    StartCluster,
    start_cluster_fixture,  # noqa: F401 - the fixture `start_cluster`
)
from tests.process.conftest import poll


def test_a_peer_that_stopped_answering_is_down_with_for_how_long(
        start_cluster: StartCluster) -> None:
    """After B is killed, `cluster` asked of A shows B down (reported `unknown`), with a time it
    has not answered that grows, and the error of the last poll; A stays up."""
    cluster = start_cluster(names=("A", "B"))
    a, b = cluster.url("A"), cluster.url("B")
    cluster.kill("B")

    def view() -> dict[str, Any] | None:
        result = invoke("cluster", "--server", a, "--region", "SHA", "--json")
        rows = {r["url"]: r for r in json.loads(result.stdout)}
        return rows if rows[b]["status"] == "down" else None

    first = poll(view, DEADLINE, "B shown down")

    def longer() -> dict[str, Any] | None:
        rows = view()
        return rows if rows is not None and rows[b]["downFor"] > first[b]["downFor"] else None

    later = poll(longer, DEADLINE, "B's time down growing")
    assert (("up", "up", None), ("down", "unknown", True, True)) == (
        (first[a]["status"], first[a]["reportedStatus"], first[a]["downFor"]),
        (later[b]["status"], later[b]["reportedStatus"], later[b]["downFor"] > 0,
         bool(later[b]["lastError"])))
