"""Who may write which instance: registration modes, token scopes and instance ownership.

Modes (the `registration_mode` setting)
  open        the default. Anyone may register, heartbeat and unregister, and the Java SDK works
              unchanged, but a live instance is owned (below): its data cannot be replaced, nor
              the instance unregistered, by another writer while its lease is live.
  permissive  the original's behaviour: anyone replaces or removes anything. No checks here.
  token       every register / heartbeat / unregister needs a bearer token with the `register`
              role; each instance's serviceId must be in the token's scope; ownership as open.

Writers
  A writer is the identity a client write comes from: the name of the token it sent, else the
  client's address without port. `Writer.scope` is the services a token may write (None: any).
  A write from a peer has no writer (None): peers are checked by the cluster credential, not
  here. A peer's copy is owned by whom the peer names (a replicated register's `owners`, a
  lease copy's `owner`), else keeps the owner of the lease it replaces (a new one: "").

Ownership (open and token modes), for one instance whose lease is live (`now` before its
deadline):
  * a register by its owner, or with exactly the data held (a client that reconnected through
    another address), is accepted; a same-data register by another writer renews the lease and
    never changes its owner (else anyone could take an instance over in two steps);
  * a register with other data by another writer is refused `no-permission`, also for a copy
    without an owner (owner ""): its owner is on another node that did not name it;
  * an unregister by another writer is refused, except for a copy without an owner: a client
    may unregister through any node (the Java SDK picks one at random);
  * heartbeats are never refused for ownership: a heartbeat changes no data;
  * once the lease has expired (or the instance was never held) anyone may register it, and
    becomes its owner.
  The refusals are counted by rule (`refused`: owner, scope, token) for /metrics.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from artemis.wire import Instance, encode

if TYPE_CHECKING:
    from artemis.core.service_state import Lease

__all__ = ["MODES", "Mode", "Ownership", "Scope", "ScopeError", "Writer"]

_PATTERN_SEPARATOR: Final = "|"


class Mode(enum.StrEnum):
    """The registration modes (see the module doc)."""

    OPEN = "open"
    PERMISSIVE = "permissive"
    TOKEN = "token"  # noqa: S105 (a mode's name, no secret)


MODES: Final = tuple(m.value for m in Mode)


class ScopeError(ValueError):
    """A scope that cannot be parsed; the message says what is wrong, never the secret."""


@dataclass(frozen=True, slots=True)
class Scope:
    """The services a token may write: exact service ids and prefixes (`orders.*`), lower-case;
    `*` alone is every service."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope:
        """`orders.*|payments|billing-*` -> a Scope; `*` is every service. Patterns are
        separated by `|`; a `*` may only end a pattern."""
        exact: set[str] = set()
        prefixes: list[str] = []
        for raw in text.split(_PATTERN_SEPARATOR):
            pattern = raw.strip().lower()
            if not pattern:
                raise ScopeError("a service pattern is empty (patterns are separated by |, "
                                 "for example register=orders.*|payments)")
            if any(c.isspace() or c in ",:=+" for c in pattern) or not pattern.isprintable():
                raise ScopeError(f"service pattern {raw.strip()!r} may not hold spaces, "
                                 "control characters or any of , : = +")
            if "*" in pattern[:-1]:
                raise ScopeError(f"service pattern {raw.strip()!r}: * may only end a pattern "
                                 "(orders.* is every service whose id starts with orders.)")
            if pattern.endswith("*"):
                prefixes.append(pattern[:-1])
            else:
                exact.add(pattern)
        return cls(frozenset(exact), tuple(prefixes))

    def allows(self, service_id: str) -> bool:
        key = service_id.lower()
        return key in self.exact or any(key.startswith(p) for p in self.prefixes)

    def __str__(self) -> str:
        return _PATTERN_SEPARATOR.join([*sorted(self.exact), *(p + "*" for p in self.prefixes)])


@dataclass(frozen=True, slots=True)
class Writer:
    """Who writes: a token's name or a client's address, and the services it may write
    (None: any)."""

    identity: str
    scope: Scope | None = None
    token: bool = False  # the identity is a token's name


class Ownership:
    """The write rules of one registry: its mode and the refusals it made, by rule."""

    __slots__ = ("mode", "refused")

    def __init__(self, mode: Mode | str = Mode.OPEN) -> None:
        self.mode = Mode(mode)
        self.refused: dict[str, int] = {"owner": 0, "scope": 0, "token": 0}

    @property
    def checks(self) -> bool:
        """Whether writes are checked at all (every mode but permissive)."""
        return self.mode is not Mode.PERMISSIVE

    def count(self, rule: str) -> None:
        self.refused[rule] = self.refused.get(rule, 0) + 1

    def scope_refusal(self, instance: Instance, writer: Writer | None) -> str | None:
        """Why `writer` may not write this instance's service at all, or None."""
        if writer is None or writer.scope is None or not self.checks:
            return None
        if writer.scope.allows(instance.service_id or ""):
            return None
        self.count("scope")
        return (f"token {writer.identity!r} may not write service {instance.service_id!r} "
                f"(its scope is register={writer.scope})")

    def register_refusal(self, lease: Lease | None, instance: Instance, writer: Writer | None,
                         now: float) -> str | None:
        """Why `writer` may not register `instance` over `lease`, the one held now (None:
        none), or None."""
        if (writer is None or lease is None or not self.checks or lease.writer == writer.identity
                or now > lease.renewed + lease.ttl or lease.encoded == encode(instance)):
            return None
        self.count("owner")
        return (f"the instance is registered with other data by another writer and its lease "
                f"is live; only its owner may change it until the lease expires "
                f"({self._ruled(writer)})")

    def unregister_refusal(self, lease: Lease | None, writer: Writer | None,
                           now: float) -> str | None:
        """Why `writer` may not unregister `lease` (None: nothing held), or None."""
        if (writer is None or lease is None or not self.checks or not lease.writer
                or lease.writer == writer.identity or now > lease.renewed + lease.ttl):
            return None
        self.count("owner")
        return (f"the instance was registered by another writer and its lease is live; only "
                f"its owner may unregister it ({self._ruled(writer)})")

    def _ruled(self, writer: Writer) -> str:
        who = f"token {writer.identity!r}" if writer.token else f"client {writer.identity}"
        return f"registration_mode {self.mode.value}: instance ownership; you are {who}"

    @staticmethod
    def owner(lease: Lease | None, writer: Writer | None, now: float) -> str | None:
        """The owner a register by `writer` (accepted) leaves: the writer's identity, or None
        to keep the owner held (a same-data register of a live lease by another writer; a
        peer's write)."""
        if writer is None:
            return None
        if lease is None or lease.writer == writer.identity or now > lease.renewed + lease.ttl:
            return writer.identity
        return None

    def __repr__(self) -> str:
        return f"Ownership(mode={self.mode.value}, refused={self.refused!r})"
