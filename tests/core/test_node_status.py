"""The node status table (§5.7): allowed moves, capabilities and what a node serves."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import pytest

from artemis.core.node_status import DOWN, STARTING, UNKNOWN, UP, IllegalMove, NodeState

ALLOWED = {
    (STARTING, UP): NodeState(UP, True, True),
    (STARTING, DOWN): NodeState(DOWN, False, False),
    (UP, DOWN): NodeState(DOWN, False, False),
    (DOWN, UP): NodeState(UP, True, True),
    (DOWN, STARTING): NodeState(STARTING, None, None),
}
STATUSES = [STARTING, UP, DOWN]


def test_a_node_starts_starting_and_serves_nothing() -> None:
    """A new node is `starting` with unknown capabilities and serves neither side."""
    state = NodeState()
    assert (NodeState(STARTING, None, None), False, False) == (
        state, state.serves_registry, state.serves_discovery)


@pytest.mark.parametrize(("start", "end"), [(a, b) for a in STATUSES for b in STATUSES if a != b])
def test_moves_follow_the_table(start: str, end: str) -> None:
    """Allowed moves give the table's state; any other move raises and changes nothing."""
    state = NodeState(start, True, False) if start != DOWN else NodeState(DOWN, False, False)
    if (start, end) in ALLOWED:
        assert ALLOWED[start, end] == state.move(end)
    else:
        with pytest.raises(IllegalMove, match=f"^a node cannot go from {start} to {end}$"):
            state.move(end)
        assert state == (NodeState(start, True, False) if start != DOWN
                         else NodeState(DOWN, False, False))


@pytest.mark.parametrize("status", STATUSES)
def test_moving_to_the_same_status_keeps_the_state(status: str) -> None:
    """A move to the current status is no move: the same state comes back."""
    state = NodeState(status, True, None)
    assert state is state.move(status)


@pytest.mark.parametrize("end", STATUSES)
def test_a_peer_of_unknown_status_cannot_move(end: str) -> None:
    """`unknown` (a peer not polled yet) has no moves of its own."""
    with pytest.raises(IllegalMove, match=f"^a node cannot go from unknown to {end}$"):
        NodeState(UNKNOWN).move(end)


def test_capabilities_while_starting_decide_what_is_served() -> None:
    """A starting node serves registry or discovery when told it can (the original predicates)."""
    state = NodeState().with_capabilities(registry=True)
    assert (NodeState(STARTING, True, None), True, False) == (
        state, state.serves_registry, state.serves_discovery)
    state = state.with_capabilities(discovery=True, registry=False)
    assert (NodeState(STARTING, False, True), False, True) == (
        state, state.serves_registry, state.serves_discovery)


def test_an_up_node_serves_both_whatever_its_flags() -> None:
    """`up` serves registry and discovery even if a flag was later cleared."""
    state = NodeState().move(UP).with_capabilities(registry=False, discovery=False)
    assert (NodeState(UP, False, False), True, True) == (
        state, state.serves_registry, state.serves_discovery)


def test_a_down_node_serves_nothing_and_takes_no_capabilities() -> None:
    """`down` serves nothing, and capabilities cannot be set until forced up."""
    state = NodeState().move(UP).move(DOWN)
    assert (False, False) == (state.serves_registry, state.serves_discovery)
    with pytest.raises(IllegalMove,
                       match=r"^a node that is down serves nothing until it is forced up$"):
        state.with_capabilities(registry=True)
    assert (False, False) == (state.serves_registry,
                              NodeState(DOWN, True, True).serves_discovery)
