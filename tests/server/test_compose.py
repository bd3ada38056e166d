"""The composition root: which parts a node gets from its settings, and how they are wired."""

from __future__ import annotations

from typing import Any

from artemis.clock import FakeClock
from artemis.server.compose import build
from artemis.server.settings import Settings


def _build(**settings: Any) -> Any:
    return build(Settings(**{"region": "SHA", "zone": "zone-1", **settings}), FakeClock())


def test_a_node_alone_has_no_cluster_and_no_management() -> None:
    """Without peers or a database the parts are the node, push and the app only."""
    parts = _build()

    assert (None, None, None, False, parts.push.sessions) == (
        parts.cluster, parts.management, parts.tracing, parts.node.bootstraps, set())


def test_a_node_with_peers_has_a_cluster() -> None:
    """With peers the node bootstraps, and its cluster links every peer but itself."""
    parts = _build(url="http://a.test", peers="zone-1:http://a.test,http://b.test")

    assert parts.cluster is not None
    assert (True, ["http://b.test"], parts.cluster.node_id) == (
        parts.node.bootstraps, list(parts.cluster.links), parts.node.node_id)


def test_a_node_with_a_database_is_held_starting_until_management_loads(tmp_path: Any) -> None:
    """With a database the node has a management, which holds it starting until released."""
    parts = _build(database=f"sqlite:///{tmp_path}/m.db", admin_token="t" * 32)
    parts.node.mark_up()
    held = parts.node.state.status
    parts.node.release("management")

    assert parts.management is not None
    assert ("starting", "up") == (held, parts.node.state.status)
