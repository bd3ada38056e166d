"""Leases an instance states for itself (metadata `artemis.lease_ttl`, where the Eureka API keeps a
client's `leaseInfo.durationInSecs`): their duration, bounds, expiry, merge and tombstones, on a
fake clock."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

from collections.abc import Callable

import pytest

from artemis import wire
from artemis.core.lease import SafeCheckerConfig
from artemis.core.ownership import Scope, Writer
from artemis.core.registry import BAD_REQUEST, DATA_NOT_FOUND, Registry, RegistryConfig
from artemis.core.versions import Change
from artemis.wire import Instance, LeaseCopy

T0 = 1000.0
Sweep = Callable[..., list[Change]]  # the guarded sweep of conftest.py
OFF = SafeCheckerConfig(enabled=False)  # expiry alone, no self-preservation


def registry(**config: object) -> Registry:
    return Registry(RegistryConfig(region="sha", lease_ttl=20.0, legacy_lease_ttl=90.0,
                                   safe_checker=OFF, legacy_safe_checker=OFF,
                                   **config))  # type: ignore[arg-type]


def inst(ttl: str | None = None, instance_id: str = "i-1", **metadata: str) -> Instance:
    meta = dict(metadata)
    if ttl is not None:
        meta["artemis.lease_ttl"] = ttl
    return Instance(region_id="sha", service_id="svc", instance_id=instance_id,
                    url="http://10.0.0.1:80", metadata=meta or None)


@pytest.mark.parametrize(("ttl", "legacy", "expected"), [
    (None, False, 20.0),
    (None, True, 90.0),
    ("45", False, 45.0),
    ("2.5", False, 2.5),
    ("45", True, 45.0),  # a stated duration wins over the legacy lease
    ("0.2", False, 1.0),  # at least one second
    ("100000", False, 300.0),  # at most max_lease_ttl
])
def test_a_lease_lasts_what_the_instance_states_within_bounds(
        ttl: str | None, legacy: bool, expected: float) -> None:
    """The lease's ttl is the stated duration cut to 1 s .. max_lease_ttl, else the node's."""
    reg = registry()
    extra = {"java_registry": "yes"} if legacy else {}

    result = reg.register([inst(ttl, **extra)], T0, 0)

    assert ([], expected) == (result.failed, reg.services["svc"].leases["i-1"].ttl)


@pytest.mark.parametrize("ttl", ["soon", "0", "-5", "nan", "inf", ""])
def test_a_stated_duration_that_is_not_a_positive_number_is_refused(ttl: str) -> None:
    """An instance stating no positive number of seconds fails alone with bad-request."""
    reg = registry()

    result = reg.register([inst(ttl), inst("30", instance_id="i-2")], T0, 0)

    assert [(BAD_REQUEST, f"sha/null/svc/i-1: metadata artemis.lease_ttl must be a positive "
                          f"number of seconds, got {ttl!r}.")] == [
        (f.error_code, f.error_message) for f in result.failed]
    assert ["i-2"] == list(reg.services["svc"].leases)


def test_a_stated_lease_expires_at_its_own_deadline(sweep: Sweep) -> None:
    """A 60 s lease outlives the node's 20 s one and goes at 60 s without a heartbeat."""
    reg = registry()
    reg.register([inst("60"), inst(None, instance_id="i-2")], T0, 0)

    assert ["i-2"] == [c.key for c in sweep(reg, T0 + 20.5)]
    assert [] == sweep(reg, T0 + 59.5)
    assert ["i-1"] == [c.key for c in sweep(reg, T0 + 60.5)]


def test_a_heartbeat_renews_a_stated_lease_for_its_own_duration(sweep: Sweep) -> None:
    """Renewed at 50 s, a 60 s lease lives until 110 s; after that a heartbeat finds nothing."""
    reg = registry()
    reg.register([inst("60")], T0, 0)

    renewed = reg.heartbeat([inst("60")], T0 + 50.0, 0)

    assert ([], []) == (renewed.failed, sweep(reg, T0 + 109.0))
    assert ["i-1"] == [c.key for c in sweep(reg, T0 + 110.5)]
    assert [DATA_NOT_FOUND] == [f.error_code for f in
                                reg.heartbeat([inst("60")], T0 + 111.0, 0).failed]


def test_a_peer_copy_keeps_the_stated_duration() -> None:
    """A merged copy aged 30 s of a 60 s lease is imported (a 20 s node lease would be gone)
    with the stated duration."""
    reg = registry()
    copy = LeaseCopy(instance=inst("60"), age_ms=30_000, created_ms=5)

    result = reg.merge([copy], T0, 0)

    lease = reg.services["svc"].leases["i-1"]
    assert (1, 60.0, T0 - 30.0) == (result.imported, lease.ttl, lease.renewed)


def test_tombstones_outlive_the_longest_lease_granted() -> None:
    """Tombstones are kept the node's longest lease (90 s), then the longest stated one."""
    reg = registry()
    assert 90.0 == reg.tombstones.keep

    reg.register([inst("200")], T0, 0)

    assert 200.0 == reg.tombstones.keep


def test_the_stated_duration_is_part_of_the_data() -> None:
    """The duration is metadata: stored and answered with the instance, as sent."""
    reg = registry()
    reg.register([inst("45")], T0, 0)

    assert {"artemis.lease_ttl": "45"} == wire.decode(
        reg.services["svc"].leases["i-1"].encoded, Instance).metadata


# --- renewal by key alone (the Eureka API's renewals) --------------------------------------


def test_renew_by_key_renews_a_live_lease_and_counts_it(sweep: Sweep) -> None:
    """renew(service, id) renews as a heartbeat does: the lease lives a full ttl more, and the
    renewal counts for self-preservation."""
    reg = registry()
    reg.register([inst("30")], T0, 0)

    lease, refusal = reg.renew("SVC", "I-1", T0 + 20.0)

    assert (T0 + 20.0, None, 1) == (
        lease.renewed if lease else None, refusal,
        reg.safe.status(T0 + 20.0).count_last_window)
    assert [] == sweep(reg, T0 + 49.0)


def test_renew_by_key_of_nothing_live_is_none() -> None:
    """An unknown or expired lease is (None, None): the client registers again."""
    reg = registry()
    reg.register([inst("30")], T0, 0)

    assert [(None, None), (None, None)] == [reg.renew("svc", "i-9", T0 + 1.0),
                                            reg.renew("svc", "i-1", T0 + 31.0)]


def test_renew_by_key_holds_a_token_to_its_scope() -> None:
    """A writer whose token may not write the service is refused, and nothing is renewed."""
    reg = registry()
    reg.register([inst("30")], T0, 0)

    lease, refusal = reg.renew("svc", "i-1", T0 + 5.0,
                               Writer("ci", Scope.parse("orders.*"), token=True))

    assert (None, "token 'ci' may not write service 'svc' (its scope is register=orders.*)",
            T0) == (lease, refusal, reg.services["svc"].leases["i-1"].renewed)
