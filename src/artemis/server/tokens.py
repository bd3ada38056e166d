"""API tokens and the cluster secret: their syntax, checked when the settings load.

`tokens` is `NAME:ROLES:SECRET,...`: ROLES is read, write (which implies read) or
register=SERVICES (the services the token may register, heartbeat and unregister: ids separated
by |, `x.*` a prefix, `*` all), joined by +. Every secret is at least MIN_SECRET characters, and
no error message quotes one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from artemis.core.ownership import Scope, ScopeError

__all__ = ["MIN_SECRET", "ROLES", "Token", "cluster_secret_problem", "parse_token_list",
           "parse_tokens"]

MIN_SECRET: Final = 16  # the shortest secret: every token's, the admin token's, the cluster's


ROLES: Final = frozenset({"read", "write", "register"})


@dataclass(frozen=True, slots=True)
class Token:
    roles: frozenset[str]
    secret: str
    scope: Scope | None  # the services of the register role


def parse_tokens(text: str) -> dict[str, tuple[frozenset[str], str]]:
    """`NAME:ROLES:SECRET,...` -> {name: (roles, secret)}; write implies read. A role
    `register=SERVICES` is the role `register` (its scope: `Settings.register_scopes`)."""
    return {name: (token.roles, token.secret) for name, token in parse_token_list(text).items()}


def parse_token_list(text: str) -> dict[str, Token]:
    out: dict[str, Token] = {}
    for position, part in enumerate(text.split(","), 1):
        if not part.strip():
            continue
        name, sep, rest = part.strip().partition(":")
        roles_text, sep2, secret = rest.partition(":")
        if not (sep and sep2 and name and secret):  # never quote it: it may hold a secret
            raise ValueError(f"token {position} is not NAME:ROLES:SECRET")
        roles: set[str] = set()
        scope = None
        for raw in roles_text.split("+"):
            role, eq, services = raw.strip().partition("=")
            role = role.strip().lower()
            if not role:
                continue
            if role not in ROLES:
                raise ValueError(f"token {name!r}: unknown role {role!r} (roles: read, write, "
                                 "register=SERVICES, joined by +)")
            if (role == "register") != bool(eq):
                raise ValueError(f"token {name!r}: " + (
                    "register needs its services, for example register=orders.*|payments "
                    "(* for all)" if role == "register" else f"role {role!r} takes no ="))
            if role == "register":
                try:
                    scope = Scope.parse(services)
                except ScopeError as exc:
                    raise ValueError(f"token {name!r}: {exc}") from None
            roles.add(role)
        if not roles:
            raise ValueError(f"token {name!r}: roles are read, write, read+write or "
                             "register=SERVICES")
        if len(secret) < MIN_SECRET:
            raise ValueError(f"token {name!r}: the secret must be at least {MIN_SECRET} "
                             "characters")
        if name in out:
            raise ValueError(f"token {name!r} is given twice")
        out[name] = Token(frozenset(roles | ({"read"} if "write" in roles else set())), secret,
                           scope)
    return out


def cluster_secret_problem(secret: str) -> str:
    """Why `secret` cannot be the cluster secret ('' if it can): it travels in an HTTP header,
    so it is visible ASCII (no spaces), and it is at least 16 characters long."""
    if len(secret) < 16:
        return f"must be at least 16 characters, got {len(secret)}"
    if not all("!" <= c <= "~" for c in secret):
        return "must be visible ASCII characters only (no spaces or control characters)"
    return ""

