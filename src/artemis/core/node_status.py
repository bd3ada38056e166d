"""The status of a node (§5.7), as a table of allowed moves.

Rules
  * A node starts `starting`; it becomes `up` when it is ready to serve both registry and
    discovery (a single node at once; a cluster node after its bootstrap).
  * `down` is entered by an operator's force-down, and left only by force-up or a restart.
  * An illegal move raises and changes nothing.
  * Registry is served when the status is `up`, or not `down` with can_service_registry set;
    discovery likewise (the original's predicates).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

__all__ = ["DOWN", "STARTING", "UNKNOWN", "UP", "IllegalMove", "NodeState"]

STARTING: Final = "starting"
UP: Final = "up"
DOWN: Final = "down"
UNKNOWN: Final = "unknown"  # a peer not (yet) polled successfully

_MOVES: Final[dict[str, frozenset[str]]] = {
    STARTING: frozenset({UP, DOWN}),
    UP: frozenset({DOWN}),
    DOWN: frozenset({UP, STARTING}),
}


class IllegalMove(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class NodeState:
    status: str = STARTING
    can_service_registry: bool | None = None
    can_service_discovery: bool | None = None

    def move(self, status: str) -> NodeState:
        if status == self.status:
            return self
        if status not in _MOVES.get(self.status, frozenset()):
            raise IllegalMove(f"a node cannot go from {self.status} to {status}")
        if status == UP:
            return NodeState(UP, True, True)
        if status == DOWN:
            return NodeState(DOWN, False, False)
        return NodeState(STARTING, None, None)

    def with_capabilities(self, *, registry: bool | None = None,
                          discovery: bool | None = None) -> NodeState:
        if self.status == DOWN:
            raise IllegalMove("a node that is down serves nothing until it is forced up")
        return replace(
            self,
            can_service_registry=self.can_service_registry if registry is None else registry,
            can_service_discovery=self.can_service_discovery if discovery is None else discovery,
        )

    @property
    def serves_registry(self) -> bool:
        return self.status == UP or (self.status != DOWN and self.can_service_registry is True)

    @property
    def serves_discovery(self) -> bool:
        return self.status == UP or (self.status != DOWN and self.can_service_discovery is True)
