"""Which node to talk to, and calling it with retries (the original SDK's §6.6, improved).

Rules
  * The client starts from seed URLs. It asks a node for `up-registry-nodes.json` (or
    `up-discovery-nodes.json`) and from then on talks to the URLs listed there; the seeds stay as
    the fallback when the list cannot be had or is empty.
  * One node is current, chosen at random; it is replaced when it fails, and after `rotate_after`
    seconds (so clients spread again over the nodes).
  * A node that failed is avoided for `penalty` seconds; when every node is avoided the one that
    failed longest ago is tried again.
  * A call is tried up to `retries` times: a transport error or a `service-unavailable` /
    `internal-service-error` answer moves to another node; `rate-limited` waits and tries again;
    any other answer is returned. Waits grow exponentially from `backoff` to `max_backoff`, with
    jitter. When every try failed, NoServerAvailable.
  * With `retry_refused=False` (a person at a command line, for whom a refusal is an answer): a
    node that answers `service-unavailable` / `internal-service-error`, or an HTTP 4xx error
    without an Artemis answer, is asked no more in that call; other nodes are tried, each once
    for such a refusal, and when none is left to ask the refusal is the result: the answer is
    returned (its caller raises its code), the HTTP error raised. No node answered at all:
    NoServerAvailable, as above.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from artemis import wire
from artemis.client.errors import HttpStatusError, NoServerAvailable, TransportError
from artemis.client.transport import Transport
from artemis.clock import Clock, SystemClock

__all__ = ["Caller", "ServerList"]

T = TypeVar("T")


class ServerList:
    """The nodes a client may use and the one it uses now (rules in the module doc)."""

    def __init__(self, seeds: Sequence[str], *, clock: Clock | None = None,
                 rng: random.Random | None = None, penalty: float = 10.0,
                 rotate_after: float = 3600.0) -> None:
        cleaned = [u.rstrip("/") for u in seeds if u and u.strip()]
        if not cleaned:
            raise ValueError("at least one server URL is needed")
        self.seeds = cleaned
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._penalty = penalty
        self._rotate_after = rotate_after
        self._known: list[str] = list(cleaned)
        self._failed: dict[str, float] = {}
        self._current: str | None = None
        self._chosen_at = 0.0

    @property
    def known(self) -> list[str]:
        return list(self._known)

    def current(self) -> str:
        now = self._clock.monotonic()
        if self._current is None or now - self._chosen_at >= self._rotate_after:
            return self._choose(now)
        return self._current

    def failed(self, url: str) -> None:
        now = self._clock.monotonic()
        self._failed[url] = now
        if url == self._current:
            self._choose(now)

    def update(self, urls: Sequence[str]) -> None:
        """The cluster's up nodes, as a node listed them; an empty list changes nothing."""
        cleaned = [u.rstrip("/") for u in urls if u]
        if cleaned and cleaned != self._known:
            self._known = cleaned
            if self._current not in cleaned:
                self._current = None

    def _choose(self, now: float) -> str:
        fresh = [u for u in self._known if now - self._failed.get(u, -1e18) >= self._penalty]
        if not fresh:
            fresh = [u for u in self.seeds if now - self._failed.get(u, -1e18) >= self._penalty]
        if fresh:
            chosen = self._rng.choice(fresh)
        else:
            chosen = min(self._known, key=lambda u: self._failed.get(u, 0.0))
        self._current = chosen
        self._chosen_at = now
        return chosen

    def __repr__(self) -> str:
        return f"ServerList(current={self._current!r}, known={self._known!r})"


class Caller:
    """POSTs a request to the current node, with retries and failover."""

    def __init__(self, transport: Transport, servers: ServerList, *, retries: int = 5,
                 backoff: float = 0.1, max_backoff: float = 2.0, clock: Clock | None = None,
                 rng: random.Random | None = None, retry_refused: bool = True) -> None:
        """`clock` is what the waits between tries sleep on; `retry_refused` False asks each
        node at most once after it refused (module rules)."""
        self.transport = transport
        self.servers = servers
        self.retries = max(1, retries)
        self.retry_refused = retry_refused
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()

    async def call(self, path: str, body: bytes, kind: type[T]) -> T:
        """The first answer that is not a reason to try elsewhere (module rules)."""
        problems: list[str] = []
        refused: dict[str, T | HttpStatusError] = {}  # retry_refused False: url -> its refusal
        for attempt in range(self.retries):
            url = self.servers.current()
            try:
                raw = await self.transport.post(url, path, body)
                answer = wire.decode(raw, kind, unique_keys=False)  # a node's answer
            except HttpStatusError as exc:
                problems.append(str(exc))
                self.servers.failed(url)
                if not self.retry_refused and exc.status_code < 500:
                    refused[url] = exc
            except (TransportError, wire.DecodeError) as exc:
                problems.append(str(exc))
                self.servers.failed(url)
            else:
                status: wire.ResponseStatus = answer.response_status  # type: ignore[attr-defined]
                code = status.error_code
                if status.status == "fail" and code in wire.SERVICE_DOWN:
                    problems.append(f"{url}: {code}: {status.message}")
                    self.servers.failed(url)
                    if not self.retry_refused:
                        refused[url] = answer
                elif code in wire.RERUNNABLE:
                    problems.append(f"{url}: {code}")
                else:
                    return answer
            if refused and (self.servers.current() in refused or attempt + 1 == self.retries):
                break  # every node was asked: the refusal is the answer
            if attempt + 1 < self.retries:
                await self._clock.sleep(self.delay(attempt))
        if refused:
            last = list(refused.values())[-1]
            if isinstance(last, HttpStatusError):
                raise last
            return last
        raise NoServerAvailable(f"{path}: no node answered after {self.retries} tries: "
                                + "; ".join(problems[-3:]))

    def delay(self, attempt: int) -> float:
        base = min(self._max_backoff, self._backoff * (2 ** attempt))
        return float(base * (0.5 + self._rng.random() / 2))

    async def refresh(self, registry: bool, region: str | None, zone: str | None) -> None:
        """Ask for the cluster's up nodes and use them from now on (errors leave the list)."""
        path = ("/api/cluster/up-registry-nodes.json" if registry
                else "/api/cluster/up-discovery-nodes.json")
        body = wire.encode(wire.GetServiceNodesRequest(region_id=region, zone_id=zone))
        try:
            answer = await self.call(path, body, wire.GetServiceNodesResponse)
        except NoServerAvailable:
            return
        if answer.nodes:
            self.servers.update([n.url for n in answer.nodes])

