"""The cluster credential: how a node proves to its peers that it is one of them, and checks it.

Every node of a cluster is given the same `cluster_secret`. A node sends it on every call to a
peer (replication writes, status polls, bootstrap and repair copies) in the header
`x-artemis-cluster-secret`, and the endpoints only peers call (role `peer`, see
`server/api/endpoint.py`) answer a caller only when it sends the same secret, compared in
constant time. Modes (`mode`, shown as `peerAuth` in /api/status/replication.json):

  secret    peers with the secret are answered, every other caller gets `no-permission`;
  insecure  `cluster_insecure`: peer calls are answered without a secret (next to original Java
            nodes, which cannot send one); the secret, if set, is still sent;
  none      a node without peers: no one is a peer, every peer call gets `no-permission`.

Every refusal is counted by reason (`refused`: `alone`, `missing`, `wrong`), for /metrics
(`artemis_peer_auth_refused_total`).
"""

from __future__ import annotations

import hmac
from typing import Final

from artemis.server.http import Request
from artemis.server.settings import Settings

__all__ = ["SECRET_HEADER", "ClusterCredential"]

SECRET_HEADER: Final = "x-artemis-cluster-secret"  # noqa: S105 - a header name
REASONS: Final = ("alone", "missing", "wrong")


class ClusterCredential:
    """The node's cluster credential: what it sends to peers and what it asks of them."""

    __slots__ = ("_headers", "_secret", "has_peers", "insecure", "refused")

    def __init__(self, settings: Settings) -> None:
        secret = settings.cluster_secret
        self._secret = secret.encode()
        self._headers = {SECRET_HEADER: secret} if secret else {}
        self.has_peers = bool(settings.peers or settings.peers_dns)
        self.insecure = settings.cluster_insecure
        self.refused = dict.fromkeys(REASONS, 0)  # refused peer calls, by reason

    @property
    def mode(self) -> str:
        """`secret`, `insecure` or `none` (see the module doc)."""
        if not self.has_peers:
            return "none"
        return "insecure" if self.insecure else "secret"

    def headers(self) -> dict[str, str]:
        """The headers every call to a peer carries (none without a secret)."""
        return dict(self._headers)

    def admits(self, request: Request) -> bool:
        """Whether `request` comes from a peer; a refusal is counted by its reason."""
        reason = self._refusal(request)
        if reason is None:
            return True
        self.refused[reason] += 1
        return False

    def _refusal(self, request: Request) -> str | None:
        if not self.has_peers:
            return "alone"
        if self.insecure:
            return None
        given = (request.header(SECRET_HEADER) or "").strip().encode()
        if not given:
            return "missing"
        if not self._secret or not hmac.compare_digest(given, self._secret):
            return "wrong"
        return None

    def refusal_message(self) -> str:
        """The message of a `no-permission` answer to a caller that is not a peer."""
        if not self.has_peers:
            return "this node has no peers: it accepts no replication, bootstrap or repair calls"
        return (f"this call is for the cluster's nodes: it needs the cluster secret in "
                f"{SECRET_HEADER}")

    def __repr__(self) -> str:
        return f"ClusterCredential(mode={self.mode!r}, refused={self.refused})"
