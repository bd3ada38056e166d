"""A client's large batch sent as held, found again by its text alone (core/renewal.py
`held_again`, `HeldBatches`), with a fake clock."""

from __future__ import annotations

from typing import Any

from artemis import wire
from artemis.clock import FakeClock
from artemis.core.registry import Registry, RegistryConfig
from artemis.core.renewal import HELD_BATCH_MIN, HeldBatches, batch_key
from artemis.core.service_state import Lease
from artemis.wire import Instance

WALL = 1_700_000_000_000


def inst(n: int, service: str = "orders", **fields: Any) -> Instance:
    values: dict[str, Any] = {"region_id": "default", "zone_id": "default",
                              "service_id": service, "instance_id": f"i{n}",
                              "url": f"http://10.0.{n // 250}.{n % 250}:80"}
    values.update(fields)
    return Instance(**values)


def registry(**config: Any) -> tuple[Registry, FakeClock]:
    return Registry(RegistryConfig(**config)), FakeClock(1000.0, WALL)


def text(batch: list[Instance]) -> bytes:
    return b",".join(wire.encode(i) for i in batch)


def live(reg: Registry, batch: list[Instance]) -> list[Lease]:
    return [reg.services[i.service_id.lower()].leases[i.instance_id.lower()]  # type: ignore[union-attr]
            for i in batch]


def test_a_large_batch_held_exactly_is_found_again_by_its_text_alone() -> None:
    """A client's batch of HELD_BATCH_MIN instances is remembered and found again, with the same
    leases, from its text; a smaller one, or a peer's (no `remember`), is not."""
    reg, clock = registry()
    now = clock.monotonic
    batch = [inst(n) for n in range(HELD_BATCH_MIN)]
    small = [inst(n, "billing") for n in range(HELD_BATCH_MIN - 1)]
    reg.register(batch + small, now(), WALL)
    peer = [inst(n, "peer") for n in range(HELD_BATCH_MIN)]
    reg.register(peer, now(), WALL)
    assert [None, None, None] == [reg.held_again(text(b), now()) for b in (batch, small, peer)]
    assert live(reg, batch) == reg.held_exactly(batch, text(batch), now(), remember=True)
    assert live(reg, small) == reg.held_exactly(small, text(small), now(), remember=True)
    assert live(reg, peer) == reg.held_exactly(peer, text(peer), now())
    clock.advance(5)
    assert (live(reg, batch), None, None) == (reg.held_again(text(batch), now()),
                                              reg.held_again(text(small), now()),
                                              reg.held_again(text(peer), now()))
    assert (1, HELD_BATCH_MIN, 1) == (len(reg.held_batches), reg.held_batches.leases,
                                      reg.held_batches.hits)


def test_what_is_found_again_is_checked_as_held_exactly_checks_it() -> None:
    """Found again, a batch must be the same text and each lease still its key's live one, or
    one registered again with the very same JSON, which takes its place: a lease registered
    again with other data, removed, expired, or in another zone on a node that refuses other
    zones gives None, and the batch is forgotten until `held_exactly` finds it again."""
    reg, clock = registry(allow_registry_from_other_zone=False, lease_ttl=20.0)
    now = clock.monotonic
    batch = [inst(n) for n in range(HELD_BATCH_MIN)]
    reg.register(batch, now(), WALL)

    def remembered() -> None:
        assert reg.held_exactly(batch, text(batch), now(), remember=True) is not None

    remembered()
    reg.register([batch[7]], now(), WALL)  # the same data: a new lease, found in its place
    assert (live(reg, batch), 1) == (reg.held_again(text(batch), now()), len(reg.held_batches))
    reg.register([inst(7, url="http://10.9.9.9:80")], now(), WALL)  # other data
    assert (None, 0) == (reg.held_again(text(batch), now()), len(reg.held_batches))
    reg.register([batch[7]], now(), WALL)
    remembered()
    assert live(reg, batch) == reg.held_again(text(batch), now())

    reg.unregister([batch[3]], now(), WALL)
    assert None is reg.held_again(text(batch), now())
    reg.register([batch[3]], now(), WALL)
    remembered()
    clock.advance(21)  # every lease expired
    assert None is reg.held_again(text(batch), now())

    other = [inst(n, "pay", zone_id="elsewhere") for n in range(HELD_BATCH_MIN)]
    reg.register(other, now(), WALL, check_zone=False)  # as a peer's copy would bring them
    assert reg.held_exactly(other, text(other), now(), check_zone=False, remember=True)
    assert None is reg.held_again(text(other), now())  # a client's: the zone rule holds
    assert 3 <= reg.held_batches.forgotten


def test_a_text_found_under_another_texts_hash_is_compared_in_full() -> None:
    """Two texts of one key (the same length and ends, another middle): the leases remembered
    for one are not the other's."""
    reg, clock = registry()
    now = clock.monotonic
    batch = [inst(n) for n in range(HELD_BATCH_MIN)]
    reg.register(batch, now(), WALL)
    leases = reg.held_exactly(batch, text(batch), now(), remember=True)
    assert leases is not None
    held = text(batch)
    middle = len(held) // 2
    forged = held[:middle] + (b"x" if held[middle:middle + 1] != b"x" else b"y") + held[
        middle + 1:]
    assert (batch_key(held), True) == (batch_key(forged), forged != held)
    assert None is reg.held_again(forged, now())


def test_batches_are_bounded_in_leases_and_forgotten_when_unused() -> None:
    """The least recently found go first: over `max_leases`, or unused for longer than the
    longest lease."""
    batches = HeldBatches(max_leases=100)
    a = [Lease(b"{}", 0, "s", "a", 0, 0.0, 20.0, False)]
    b = [Lease(b"{}", 0, "s", f"b{n}", 0, 0.0, 20.0, False) for n in range(99)]
    batches.keep(1, a, 0.0, 300.0)
    batches.keep(2, b, 1.0, 300.0)
    assert (2, 100) == (len(batches), batches.leases)
    assert a == batches.take(1)  # found: it leaves until kept again
    batches.keep(1, a, 2.0, 300.0)  # now the most recently found
    batches.keep(3, a, 3.0, 300.0)  # 101 leases: the least recently found (2) goes
    assert (None, 2, 1) == (batches.take(2), len(batches), batches.forgotten)
    batches.keep(4, a, 400.0, 300.0)  # 1 and 3 were last found over 300 s before
    assert ([None, None, a], 3) == ([batches.take(1), batches.take(3), batches.take(4)],
                                    batches.forgotten)
