"""Rate limits (§5.5): a sliding 10 s window of 1 s buckets per identity."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

from artemis.core.ratelimit import RateLimiter

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
