"""Self-preservation (the SafeChecker alone, then driving the sweeper); the node's own pauses."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from artemis.core.lease import (
    Pause,
    PauseWatch,
    SafeChecker,
    SafeCheckerConfig,
    SafeCheckerStatus,
)
from artemis.core.registry import Registry, RegistryConfig
from artemis.core.versions import Change
from artemis.wire import Instance

T0 = 1000.0
Sweep = Callable[..., list[Change]]  # the guarded sweep of conftest.py


def checker_with_peak(peak: int = 100, **config: Any) -> SafeChecker:
    """A checker whose baseline was raised to `peak` at T0."""
    checker = SafeChecker(SafeCheckerConfig(**config))
    checker.renewed(T0, peak)
    checker.check(T0)
    return checker


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "corrected"), [
    (SafeCheckerConfig(), SafeCheckerConfig()),
    (SafeCheckerConfig(window=5.0), SafeCheckerConfig(window=10.0)),
    (SafeCheckerConfig(window=12.9), SafeCheckerConfig(window=12.0)),
    (SafeCheckerConfig(window=301.0), SafeCheckerConfig(window=300.0)),
    (SafeCheckerConfig(percentage_threshold=49), SafeCheckerConfig(percentage_threshold=85)),
    (SafeCheckerConfig(percentage_threshold=101), SafeCheckerConfig(percentage_threshold=85)),
    (SafeCheckerConfig(percentage_threshold=50), SafeCheckerConfig(percentage_threshold=50)),
    (SafeCheckerConfig(percentage_threshold=100), SafeCheckerConfig(percentage_threshold=100)),
    (SafeCheckerConfig(max_count_threshold=-3), SafeCheckerConfig(max_count_threshold=0)),
    (SafeCheckerConfig(max_count_reset_interval=59.0),
     SafeCheckerConfig(max_count_reset_interval=60.0)),
    (SafeCheckerConfig(enabled=False), SafeCheckerConfig(enabled=False)),
])
def test_config_is_corrected_as_the_original_corrects_it(
        given: SafeCheckerConfig, corrected: SafeCheckerConfig) -> None:
    """Window 10-300 whole seconds, percentage 50-100 (else 85), reset interval at least 60 s."""
    assert corrected == given.corrected()


def test_corrected_window_is_used() -> None:
    """A checker counts renewals over the corrected window (5 s becomes 10 s)."""
    checker = SafeChecker(SafeCheckerConfig(window=5.0))
    checker.renewed(T0, 7)
    assert 7 == checker.status(T0 + 9.5).count_last_window
    assert 0 == checker.status(T0 + 10.0).count_last_window


# --- the decision ------------------------------------------------------------------------------


def test_new_checker_is_safe_with_no_baseline() -> None:
    """A fresh checker is safe, enabled, and has counted nothing."""
    assert SafeCheckerStatus(is_safe=True, enabled=True, count_last_window=0, max_count=0,
                             max_count_updated_at=0.0) == SafeChecker(
        SafeCheckerConfig()).status(T0)


def test_count_above_baseline_raises_it_and_decides_nothing() -> None:
    """A count above the peak becomes the new peak, stamped with the time of the check."""
    checker = checker_with_peak(100)
    checker.renewed(T0 + 1, 20)
    checker.check(T0 + 1)
    assert SafeCheckerStatus(is_safe=True, enabled=True, count_last_window=120, max_count=120,
                             max_count_updated_at=T0 + 1) == checker.status(T0 + 1)


def test_drop_under_85_percent_of_peak_is_unsafe_and_recovery_is_safe() -> None:
    """84 renewals against a peak of 100 are unsafe; 85 are safe again."""
    checker = checker_with_peak(100)
    checker.renewed(T0 + 10, 84)  # the peak's bucket has left the 10 s window
    checker.check(T0 + 10)
    assert SafeCheckerStatus(is_safe=False, enabled=True, count_last_window=84, max_count=100,
                             max_count_updated_at=T0) == checker.status(T0 + 10)
    checker.renewed(T0 + 10, 1)
    checker.check(T0 + 10)
    assert (True, 100) == (checker.is_safe, checker.status(T0 + 10).max_count)


def test_no_decision_while_peak_is_below_max_count_threshold() -> None:
    """With a peak under 50 renewals, even a fall to zero decides nothing."""
    checker = checker_with_peak(49)
    checker.check(T0 + 30)
    assert SafeCheckerStatus(is_safe=True, enabled=True, count_last_window=0, max_count=49,
                             max_count_updated_at=T0) == checker.status(T0 + 30)


def test_below_max_count_threshold_the_state_is_left_as_it_was() -> None:
    """An unsafe checker whose peak shrinks under 50 stays unsafe: no decision is made."""
    checker = checker_with_peak(100)
    checker.check(T0 + 20)
    assert not checker.is_safe
    checker.departed(T0 + 20, 2)  # peak 100 -> 50
    checker.departed(T0 + 20, 2)  # peak 50 -> 25
    checker.check(T0 + 40)
    assert (False, 25) == (checker.is_safe, checker.status(T0 + 40).max_count)


def test_stale_peak_drops_to_the_count_after_the_reset_interval() -> None:
    """When safe, a peak set more than 600 s ago drops to the current count."""
    checker = checker_with_peak(100)
    checker.renewed(T0 + 600, 90)
    checker.check(T0 + 600)
    assert (True, 100, T0) == (checker.is_safe, checker.status(T0 + 600).max_count,
                               checker.status(T0 + 600).max_count_updated_at)
    checker.renewed(T0 + 601, 0)
    checker.check(T0 + 601)
    assert SafeCheckerStatus(is_safe=True, enabled=True, count_last_window=90, max_count=90,
                             max_count_updated_at=T0 + 601) == checker.status(T0 + 601)


def test_stale_peak_is_kept_while_unsafe() -> None:
    """An unsafe checker keeps its peak however old it is."""
    checker = checker_with_peak(100)
    checker.renewed(T0 + 700, 10)
    checker.check(T0 + 700)
    assert (False, 100) == (checker.is_safe, checker.status(T0 + 700).max_count)


# --- departures --------------------------------------------------------------------------------


def test_departure_shrinks_peak_by_one_share() -> None:
    """Each departure from a fleet of n takes 1/n of the peak away (rounded down)."""
    checker = checker_with_peak(1000)
    checker.departed(T0, 100)
    assert 990 == checker.status(T0).max_count
    checker.departed(T0, 99)
    assert 980 == checker.status(T0).max_count
    checker.departed(T0, 0)
    assert 980 == checker.status(T0).max_count
    checker.departed(T0, 1)
    assert 0 == checker.status(T0).max_count


def test_peak_is_not_raised_for_one_window_after_a_departure() -> None:
    """Renewals of the instance that left still count for a window, so they raise nothing."""
    checker = checker_with_peak(100)
    checker.departed(T0 + 1, 10)  # peak 90, blocked until T0 + 11
    checker.renewed(T0 + 5, 95)
    checker.check(T0 + 5)
    checker.check(T0 + 10.9)
    assert (90, T0) == (checker.status(T0 + 10.9).max_count,
                        checker.status(T0 + 10.9).max_count_updated_at)
    checker.check(T0 + 11)
    assert (95, T0 + 11) == (checker.status(T0 + 11).max_count,
                             checker.status(T0 + 11).max_count_updated_at)


# --- the switch --------------------------------------------------------------------------------


def test_switching_off_makes_safe_and_resets_the_peak() -> None:
    """Turning the check off makes an unsafe checker safe at once and forgets the peak."""
    checker = checker_with_peak(100)
    checker.check(T0 + 20)
    assert not checker.is_safe
    checker.set_enabled(False)
    checker.check(T0 + 21)
    assert SafeCheckerStatus(is_safe=True, enabled=False, count_last_window=0, max_count=0,
                             max_count_updated_at=T0) == checker.status(T0 + 21)


def test_disabled_checker_is_safe_whatever_it_counts() -> None:
    """A checker disabled by config is safe even when renewals collapse."""
    checker = checker_with_peak(100, enabled=False)
    checker.check(T0 + 20)
    assert (True, False) == (checker.is_safe, checker.enabled)


def test_switching_on_starts_from_a_fresh_baseline() -> None:
    """Turning the check on again makes the checker safe with a zero peak that then grows."""
    checker = checker_with_peak(100, enabled=False)
    checker.check(T0 + 20)
    checker.set_enabled(True)
    assert SafeCheckerStatus(is_safe=True, enabled=True, count_last_window=0, max_count=0,
                             max_count_updated_at=T0) == checker.status(T0 + 20)
    checker.renewed(T0 + 21, 60)
    checker.check(T0 + 21)
    assert (True, 60) == (checker.is_safe, checker.status(T0 + 21).max_count)


def test_repr_shows_the_state() -> None:
    """The checker's repr shows safety, the switch and the peak."""
    assert "SafeChecker(safe=True, enabled=True, max=100)" == repr(checker_with_peak(100))


# --- driving the registry ----------------------------------------------------------------------


def fleet(n: int, prefix: str = "i", **fields: Any) -> list[Instance]:
    return [Instance(region_id="default", zone_id="default", service_id="svc",
                     instance_id=f"{prefix}{k}", url=f"http://10.0.0.{k}:80", **fields)
            for k in range(n)]


def run_seconds(registry: Registry, sweep: Sweep, beating: list[Instance], start: float,
                seconds: int) -> tuple[list[bool], list[Change]]:
    """Each second: heartbeat `beating`, the once-a-second check, then a sweep half a second on.

    Returns the safety seen after each check and the changes of the sweeps.
    """
    states: list[bool] = []
    changes: list[Change] = []
    for k in range(1, seconds + 1):
        now = start + k
        registry.heartbeat(beating, now, 0)
        registry.check_safety(now)
        states.append(registry.safe.is_safe)
        changes += sweep(registry, now + 0.5, 0)
    return states, changes


def partitioned(sweep: Sweep) -> tuple[Registry, list[Instance], list[Instance]]:
    """100 instances beat for 12 s (peak 1000), then only 60 of them for 28 s more."""
    registry = Registry(RegistryConfig())
    instances = fleet(100)
    registry.register(instances, T0, 0)
    run_seconds(registry, sweep, instances, T0, 12)
    states, changes = run_seconds(registry, sweep, instances[:60], T0 + 12, 28)
    assert ([True] * 3 + [False] * 25, []) == (states, changes)
    return registry, instances[:60], instances[60:]


def test_expired_leases_are_held_while_renewals_are_under_85_percent(sweep: Sweep) -> None:
    """When 40 of 100 instances stop at once, their leases expire but are not removed."""
    registry, _, silent = partitioned(sweep)
    assert (100, 0, 1000) == (registry.instance_count, registry.evicted_total,
                              registry.safe.status(T0 + 40).max_count)
    failed = registry.heartbeat(silent[:1], T0 + 40.6, 0).failed
    assert ["data-not-found"] == [f.error_code for f in failed]


def test_held_leases_are_removed_once_renewals_recover(sweep: Sweep) -> None:
    """When renewals come back above 85 % of the peak, the held expired leases go."""
    registry, beating, silent = partitioned(sweep)
    newcomers = fleet(40, prefix="n")
    registry.register(newcomers, T0 + 40.6, 0)
    states, changes = run_seconds(registry, sweep, beating + newcomers, T0 + 40, 10)
    assert (["delete"] * 40, {c.key for c in changes}) == (
        [c.kind for c in changes], {i.instance_id for i in silent})
    assert (True, 100) == (states[-1], registry.instance_count)


def test_unregister_removes_even_while_unsafe(sweep: Sweep) -> None:
    """Self-preservation holds expired leases only; an unregister removes at once."""
    registry, beating, _ = partitioned(sweep)
    result = registry.unregister(beating[:1], T0 + 40.6, 0)
    assert (["delete"], 99) == ([c.kind for c in result.changes], registry.instance_count)


def test_switching_off_releases_held_leases(sweep: Sweep) -> None:
    """Turning self-preservation off lets the next sweep remove the held leases; on holds again."""
    registry, _, silent = partitioned(sweep)
    registry.safe.set_enabled(False)
    changes = sweep(registry, T0 + 41.6, 0)  # held leases are looked at again each second
    assert ({i.instance_id for i in silent}, 60, True) == (
        {c.key for c in changes}, registry.instance_count, registry.safe.is_safe)
    registry.safe.set_enabled(True)
    assert (True, True, 0) == (registry.safe.is_safe, registry.safe.enabled,
                               registry.safe.status(T0 + 41.6).max_count)


def test_slow_attrition_by_unregister_stays_safe(sweep: Sweep) -> None:
    """One of 100 instances leaving each second for 30 s never makes the node unsafe."""
    registry = Registry(RegistryConfig())
    instances = fleet(100)
    registry.register(instances, T0, 0)
    run_seconds(registry, sweep, instances, T0, 12)
    bare = SafeChecker(SafeCheckerConfig())  # the same renewals, but told of no departure
    for k in range(1, 13):
        bare.renewed(T0 + k, 100)
        bare.check(T0 + k)
    states, bare_states = [], []
    for k in range(13, 43):
        now = T0 + k
        registry.unregister(instances[:1], now, 0)
        instances = instances[1:]
        registry.heartbeat(instances, now, 0)
        registry.check_safety(now)
        states.append(registry.safe.is_safe)
        bare.renewed(now, len(instances))
        bare.check(now)
        bare_states.append(bare.is_safe)
    assert (True, False) == (all(states), all(bare_states))
    after, _ = run_seconds(registry, sweep, instances, T0 + 42, 15)
    status = registry.safe.status(T0 + 57)
    assert (True, 70, 700, 700) == (all(after), registry.instance_count,
                                    status.count_last_window, status.max_count)


def test_slow_attrition_by_eviction_stays_safe(sweep: Sweep) -> None:
    """Instances dying one every 3 s and evicted by the sweeper never make the node unsafe."""
    registry = Registry(RegistryConfig())
    instances = fleet(100)
    registry.register(instances, T0, 0)
    run_seconds(registry, sweep, instances, T0, 12)
    states: list[bool] = []
    evicted: list[Change] = []
    alive = instances
    for k in range(13, 103):
        if k % 3 == 0:
            alive = alive[1:]
        s, c = run_seconds(registry, sweep, alive, T0 + k - 1, 1)
        states += s
        evicted += c
    assert (True, 23, 23) == (all(states), len(evicted), registry.evicted_total)


def test_eviction_while_safe_shrinks_the_peak(sweep: Sweep) -> None:
    """An instance evicted from a fleet of 100 takes 1/100 of the peak away."""
    registry = Registry(RegistryConfig())
    instances = fleet(100)
    registry.register(instances, T0, 0)
    run_seconds(registry, sweep, instances, T0, 12)
    states, changes = run_seconds(registry, sweep, instances[1:], T0 + 12, 21)
    assert (True, ["i0"], 990) == (all(states), [c.key for c in changes],
                                   registry.safe.status(T0 + 33).max_count)


def test_legacy_leases_have_their_own_self_preservation(sweep: Sweep) -> None:
    """Legacy leases are held by their own checker while normal leases expire as usual."""
    registry = Registry(RegistryConfig(legacy_lease_ttl=30.0,
                                       legacy_safe_checker=SafeCheckerConfig(window=10.0)))
    legacy = fleet(60, prefix="old", metadata={"java_registry": "1"})
    plain = fleet(1, prefix="new")
    registry.register(legacy + plain, T0, 0)
    run_seconds(registry, sweep, legacy + plain, T0, 12)
    assert (600, 10) == (registry.legacy_safe.status(T0 + 12).max_count,
                         registry.safe.status(T0 + 12).max_count)
    _, changes = run_seconds(registry, sweep, [], T0 + 12, 40)
    assert (["new0"], False, True) == ([c.key for c in changes], registry.legacy_safe.is_safe,
                                       registry.safe.is_safe)
    assert (60, 0) == (registry.legacy_lease_count, registry.lease_count)


# --- the node's own pauses ---------------------------------------------------------------------


def ticking(threshold: float = 2.0, at: float = T0) -> PauseWatch:
    """A watch whose node last ran its loop at `at`."""
    watch = PauseWatch(threshold)
    watch.tick(at)
    return watch


def test_nothing_is_a_pause_before_the_first_tick() -> None:
    """Until the node's loop has ticked once, any gap is just time passing."""
    watch = PauseWatch(2.0)
    assert (0.0, 0.0, T0 + 2.0) == (watch.missed(T0 + 1e6), watch.tick(T0), watch.deadline)


def test_gaps_up_to_the_threshold_are_not_pauses() -> None:
    """Ticks 2 s apart (the threshold itself) find nothing; each moves the deadline on."""
    watch = ticking()
    assert ([0.0, 0.0, 0.0], T0 + 6.0, 0) == (
        [watch.tick(T0 + 2.0), watch.missed(T0 + 4.0), watch.tick(T0 + 4.0)], watch.deadline,
        watch.count)


def test_a_longer_gap_is_a_pause_from_the_last_tick() -> None:
    """An operation 30 s after the last tick finds a 30 s pause; the next one finds none."""
    watch = ticking()
    assert (30.0, 0.0, T0 + 32.0) == (watch.missed(T0 + 30.0), watch.missed(T0 + 30.5),
                                      watch.deadline)


def test_a_tick_finds_a_pause_too() -> None:
    """The loop's own tick after a stall reports the gap since the tick before it."""
    watch = ticking()
    assert (5.0, T0 + 7.0) == (watch.tick(T0 + 5.0), watch.deadline)


def test_threshold_zero_turns_the_watch_off() -> None:
    """With a threshold of 0 nothing is ever a pause."""
    watch = ticking(0.0)
    assert (0.0, 0.0, math.inf) == (watch.tick(T0 + 100.0), watch.missed(T0 + 1e6),
                                    watch.deadline)


def test_credit_gives_a_live_lease_the_gap_back() -> None:
    """A lease renewed 1 s before a 30 s pause gets the 30 s back: it has its 19 s left."""
    watch = ticking()
    assert T0 + 29.0 == watch.credit(T0 - 1.0, 20.0, T0 + 30.0, 30.0)


def test_credit_skips_a_lease_that_expired_before_the_pause() -> None:
    """A lease whose deadline had passed when the node stopped gets nothing back."""
    watch = ticking()
    assert (None, T0 + 10.0) == (watch.credit(T0 - 20.5, 20.0, T0 + 30.0, 30.0),
                          watch.credit(T0 - 20.0, 20.0, T0 + 30.0, 30.0))


def test_credit_stays_below_the_time_the_pause_was_found() -> None:
    """A lease renewed at the last tick is credited to just below `now`, never to it."""
    watch = ticking()
    assert math.nextafter(T0 + 30.0, 0.0) == watch.credit(T0, 20.0, T0 + 30.0, 30.0)


def test_a_silent_lease_is_credited_once_a_renewed_one_each_time() -> None:
    """After a pause, only leases renewed since it ended get the next pause back: a node that
    keeps stalling still expires instances whose clients went silent."""
    watch = ticking()
    silent = watch.credit(T0 - 1.0, 20.0, T0 + 30.0, 30.0)
    assert silent is not None
    first = watch.credited(T0 + 30.0, 30.0, 1)
    watch.tick(T0 + 35.0)
    assert (Pause(T0, 30.0, 1), None, T0 + 36.0) == (
        first, watch.credit(silent, 20.0, T0 + 40.0, 5.0),
        watch.credit(T0 + 31.0, 20.0, T0 + 40.0, 5.0))


def test_credited_counts_the_pauses_and_their_seconds() -> None:
    """count, seconds_total and last follow every pause recorded."""
    watch = ticking()
    watch.credited(T0 + 30.0, 30.0, 4)
    watch.credited(T0 + 40.0, 2.5, 3)
    assert (2, 32.5, Pause(T0 + 37.5, 2.5, 3), T0 + 40.0) == (
        watch.count, watch.seconds_total, watch.last, watch.resumed)
