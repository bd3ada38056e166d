"""Lease deadlines by the second (core/expiry.py) and the sweep that uses them, with a fake
clock: only leases due are looked at, each lease is filed once, and a sweep in steps is exact."""

from __future__ import annotations

import gc
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from artemis.core.expiry import Expiry
from artemis.core.registry import Registry, RegistryConfig
from artemis.core.versions import drive
from artemis.wire import Instance

T0 = 1000.0
WALL = 1_700_000_000_000


def inst(n: int, **fields: Any) -> Instance:
    return Instance(region_id="default", zone_id="default", service_id=f"svc{n % 3}",
                    instance_id=f"i{n}", ip=f"10.0.0.{n % 250}", port=80,
                    url=f"http://10.0.0.{n % 250}/", status="up", **fields)


def registry(ttl: float = 20.0) -> Registry:
    reg = Registry(RegistryConfig(lease_ttl=ttl))
    reg.safe.set_enabled(False)  # these tests are about expiry, not self-preservation
    return reg


def live(reg: Registry) -> set[str]:
    return {lease.key for lease in reg.leases()}


def test_each_lease_is_filed_once_however_often_it_is_registered() -> None:
    reg = registry()
    fleet = [inst(n) for n in range(10)]
    for _ in range(5):
        reg.register(fleet, T0, WALL)
    reg.sweep(T0 + 19.95, WALL)  # their tick is taken and looked at: each is filed again
    assert 10 == len(reg._expiry)


def test_a_sweep_removes_exactly_the_leases_past_their_deadline() -> None:
    reg = registry()
    reg.register([inst(n) for n in range(6)], T0, WALL)
    reg.register([inst(n) for n in range(6, 12)], T0 + 0.4, WALL)  # the same second
    reg.heartbeat([inst(n) for n in range(3)], T0 + 10, WALL)
    assert [] == reg.sweep(T0 + 20.0, WALL)  # deadline T0 + 20 is not past at T0 + 20
    removed = reg.sweep(T0 + 20.1, WALL)
    assert ({f"i{n}" for n in range(3, 6)}, {f"i{n}" for n in [*range(3), *range(6, 12)]}) == (
        {c.key for c in removed}, live(reg))
    assert {f"i{n}" for n in range(6, 12)} == {c.key for c in reg.sweep(T0 + 20.5, WALL)}
    assert {f"i{n}" for n in range(3)} == {c.key for c in reg.sweep(T0 + 30.1, WALL)}
    assert (set(), 0) == (live(reg), len(reg._expiry))


def test_a_sweep_in_steps_gives_the_loop_back_and_judges_what_changed_meanwhile() -> None:
    reg = registry()
    fleet = [inst(n) for n in range(12)]
    reg.register(fleet, T0, WALL)
    steps = reg.sweeping(T0 + 21, WALL, step=5)
    next(steps)  # four looked at, the fifth not yet
    reg.heartbeat([fleet[11]], T0 + 0.5, WALL)  # renewed meanwhile, its deadline still past
    reg.unregister([fleet[10]], T0 + 21, WALL)  # removed meanwhile: skipped
    reg.register([fleet[9]], T0 + 21, WALL)  # replaced meanwhile: the new lease is not due
    next(steps)
    changes = drive(steps)
    assert ({f"i{n}" for n in [*range(9), 11]}, {"i9"}) == (
        {c.key for c in changes}, live(reg))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 19), st.floats(0, 40), st.sampled_from(["reg", "hb"])),
                max_size=40),
       st.lists(st.floats(0, 80), min_size=1, max_size=8))
def test_the_sweep_agrees_with_the_leases_own_deadlines(
        ops: list[tuple[int, float, str]], sweeps: list[float]) -> None:
    """Whatever was registered and renewed when, a sweep at `t` leaves exactly the leases whose
    deadline is not past (the model: renewed + ttl >= t)."""
    reg = registry(ttl=10.0)
    events = sorted([(at, "op", n, kind) for n, at, kind in ops]
                    + [(at, "sweep", 0, "") for at in sweeps])
    deadline: dict[str, float] = {}
    for at, what, n, kind in events:
        now = T0 + at
        if what == "sweep":
            reg.sweep(now, WALL)
            deadline = {k: d for k, d in deadline.items() if d >= now}
            assert set(deadline) == live(reg)
        elif kind == "reg":
            reg.register([inst(n)], now, WALL)
            deadline[f"i{n}"] = now + 10.0
        elif f"i{n}" in deadline and deadline[f"i{n}"] >= now:
            assert reg.heartbeat([inst(n)], now, WALL).succeeded
            deadline[f"i{n}"] = now + 10.0


def test_a_ticks_entries_are_sealed_into_tuples_the_collector_leaves_alone() -> None:
    """3,000 leases due in one tick: their 6,000 strings come back in filing order, all but
    the last 880 sealed in tuples of 1,024 that a collection stops tracking."""
    reg = registry()
    reg.register([inst(n) for n in range(3000)], T0, WALL)
    expiry = Expiry()
    for lease in sorted(reg.leases(), key=lambda lease: int(lease.key[1:])):
        expiry.file(T0 + 20, lease)
    (filed,) = expiry.take(T0 + 20)
    gc.collect()

    assert ([s for n in range(3000) for s in (f"svc{n % 3}", f"i{n}")],
            [1024] * 5, 880, [False] * 5) == (
        list(filed), [len(t) for t in filed.sealed], len(filed.open),
        [gc.is_tracked(t) for t in filed.sealed])
