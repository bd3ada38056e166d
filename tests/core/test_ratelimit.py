"""Rate limits (§5.5): a sliding 10 s window of 1 s buckets per identity; per-client limits."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import tracemalloc

from artemis.core.ratelimit import CLIENT_WINDOW_BYTES, ClientLimiter, RateLimiter, client_key

T0 = 1000.0


def calls(limiter: RateLimiter, identity: str, times: list[float]) -> list[bool]:
    return [limiter.allow(identity, t) for t in times]


def test_allows_up_to_the_limit_within_ten_seconds() -> None:
    """Three calls pass, the fourth within the same 10 s window is refused."""
    limiter = RateLimiter("artemis.service.registry", 3)
    assert [True, True, True, False, False] == calls(
        limiter, "register", [T0, T0 + 0.5, T0 + 1.0, T0 + 1.5, T0 + 9.9])
    assert {"register": 2} == limiter.rejected


def test_window_slides_by_whole_seconds() -> None:
    """Calls become possible again as the seconds that held earlier calls leave the window."""
    limiter = RateLimiter("artemis.service.registry", 3)
    calls(limiter, "heartbeat", [T0, T0 + 0.5, T0 + 1.0])
    assert [False, True, True, False, True, False] == calls(
        limiter, "heartbeat", [T0 + 9.99, T0 + 10.0, T0 + 10.5, T0 + 10.9, T0 + 11.0, T0 + 11.1])


def test_refused_calls_are_not_counted() -> None:
    """A refused call costs nothing: hammering while refused does not push the next pass later."""
    limiter = RateLimiter("artemis.service.registry", 2)
    calls(limiter, "register", [T0, T0])
    refused = calls(limiter, "register", [T0 + k / 10 for k in range(1, 100)])
    assert ([False] * 99, [True, True, False]) == (
        refused, calls(limiter, "register", [T0 + 10.0, T0 + 10.0, T0 + 10.0]))
    assert {"register": 100} == limiter.rejected


def test_each_identity_has_its_own_window_and_limit() -> None:
    """Identities are counted apart; a per-identity limit overrides the default."""
    limiter = RateLimiter("artemis.service.status", 2, {"get-leases": 1})
    assert ([True, True, False], [True, False], [True, True, False]) == (
        calls(limiter, "get-cluster", [T0] * 3),
        calls(limiter, "get-leases", [T0] * 2),
        calls(limiter, "get-config", [T0] * 3),
    )
    assert ({"get-cluster": 1, "get-leases": 1, "get-config": 1}, 1, 2) == (
        limiter.rejected, limiter.limit("get-leases"), limiter.limit("get-deployment"))


def test_zero_limit_refuses_everything() -> None:
    """A limit of 0 refuses every call of that identity."""
    limiter = RateLimiter("artemis.service.cluster", 10, {"up-registry-nodes": 0})
    assert [False, False, True] == (calls(limiter, "up-registry-nodes", [T0, T0 + 20])
                                    + calls(limiter, "up-discovery-nodes", [T0]))


def test_disabled_limiter_allows_everything_and_counts_nothing() -> None:
    """A disabled limiter lets every call through and records no refusal."""
    limiter = RateLimiter("artemis.service.registry", 1, enabled=False)
    assert ([True] * 50, {}, False) == (calls(limiter, "register", [T0] * 50),
                                       limiter.rejected, limiter.enabled)


def test_other_window_length() -> None:
    """The window length can be chosen (here 20 s)."""
    limiter = RateLimiter("artemis.client.websocket-session", 1, window=20.0)
    assert [True, False, True] == calls(limiter, "connect", [T0, T0 + 19.5, T0 + 20.0])


def test_repr_shows_limits_and_refusals() -> None:
    """The repr shows the limiter's name, switch, limits and refusals."""
    limiter = RateLimiter("artemis.service.status", 0, {"get-leases": 10})
    limiter.allow("get-cluster", T0)
    assert ("RateLimiter('artemis.service.status', enabled=True, default=0, "
            "limits={'get-leases': 10}, rejected={'get-cluster': 1})") == repr(limiter)


# --- per client -------------------------------------------------------------------------------


def hammer(limiter: ClientLimiter, client: str, n: int, now: float = T0) -> list[bool]:
    return [limiter.allow(client, "heartbeat", now) for _ in range(n)]


def test_a_client_over_its_limit_leaves_the_others_theirs() -> None:
    """One client past its limit is refused; another client keeps its whole limit, and the
    refusals are counted by operation."""
    limiter = ClientLimiter("artemis.client.registry", 3)
    assert ([True] * 3 + [False] * 7, [True] * 3 + [False]) == (
        hammer(limiter, "10.0.0.1", 10), hammer(limiter, "10.0.0.2", 4))
    assert ({"heartbeat": 8}, 3, 3) == (limiter.rejected, limiter.count("10.0.0.1", T0),
                                        limiter.count("10.0.0.2", T0))


def test_a_client_window_slides_and_refusals_are_not_counted() -> None:
    """Refused calls do not push the client's next pass later: ten seconds on, it has its whole
    limit again."""
    limiter = ClientLimiter("artemis.client.discovery", 2)
    hammer(limiter, "10.0.0.1", 2)
    refused = [limiter.allow("10.0.0.1", "lookup", T0 + k / 10) for k in range(1, 90)]
    assert ([False] * 89, [True, True, False]) == (refused, hammer(limiter, "10.0.0.1", 3,
                                                                   T0 + 10.0))


def test_least_recently_seen_client_is_forgotten_beyond_capacity() -> None:
    """At most `capacity` windows are kept: a new client evicts the least recently seen one
    (a call refreshes a client), which then starts again with an empty window."""
    limiter = ClientLimiter("artemis.client.registry", 1, capacity=2)
    hammer(limiter, "a", 1)
    hammer(limiter, "b", 1)
    assert [False] == hammer(limiter, "a", 1)  # a is now the most recently seen
    hammer(limiter, "c", 1)  # evicts b
    assert (2, 1, [False], [True]) == (len(limiter), limiter.evicted, hammer(limiter, "a", 1),
                                       hammer(limiter, "b", 1))


def test_refund_takes_back_a_call_refused_afterwards() -> None:
    """A call the client limit let through but the operation's limit refused is taken back;
    a refund never takes a window below zero."""
    limiter = ClientLimiter("artemis.client.registry", 2)
    hammer(limiter, "10.0.0.1", 2)
    limiter.refund("10.0.0.1", T0)
    limiter.refund("10.0.0.9", T0)  # not kept: nothing happens
    assert [True, False] == hammer(limiter, "10.0.0.1", 2)
    limiter.refund("10.0.0.1", T0 + 30.0)
    assert 0 == limiter.count("10.0.0.1", T0 + 30.0)


def test_limit_zero_or_disabled_lets_everyone_through_and_keeps_nothing() -> None:
    """A family without a per-client limit (0) or with rate limits off keeps no window."""
    for limiter in (ClientLimiter("artemis.client.status", 0),
                    ClientLimiter("artemis.client.status", 1, enabled=False)):
        assert ([True] * 20, 0, {}, False) == (hammer(limiter, "10.0.0.1", 20), len(limiter),
                                               limiter.rejected, limiter.enabled)


def test_client_key_is_the_token_when_there_is_one() -> None:
    """A call with a token counts against the token (every address using it shares it); one
    without counts against its address; a token's key is never an address."""
    assert ("10.0.0.1", "token billing", "::1") == (
        client_key("10.0.0.1"), client_key("10.0.0.1", "billing"), client_key("::1", None))


def test_a_kept_client_costs_at_most_client_window_bytes() -> None:
    """The memory bound the docs give (rate_limit_clients x CLIENT_WINDOW_BYTES) holds."""
    limiter = ClientLimiter("artemis.client.registry", 100, capacity=5000)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for k in range(10_000):  # IPv6 keys, the longest addresses, made as requests make them
        limiter.allow(f"2001:db8:ffff:ffff:ffff:ffff:{k // 65536:x}:{k % 65536:x}", "heartbeat",
                      T0 + k / 1000)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert (5000, 5000) == (len(limiter), limiter.evicted)
    assert used <= 5000 * CLIENT_WINDOW_BYTES, used


def test_client_limiter_repr() -> None:
    limiter = ClientLimiter("artemis.client.registry", 1, capacity=4)
    hammer(limiter, "10.0.0.1", 2)
    assert ("ClientLimiter('artemis.client.registry', enabled=True, limit=1, clients=1/4, "
            "evicted=0, rejected={'heartbeat': 1})") == repr(limiter)
