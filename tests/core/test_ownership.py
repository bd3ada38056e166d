"""Who may write which instance: registration modes, token scopes, ownership of live instances
(core/ownership.py), through the registry, with time on a FakeClock."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

from typing import Any

import pytest

from artemis import wire
from artemis.clock import FakeClock
from artemis.core.ownership import Mode, Scope, ScopeError, Writer
from artemis.core.registry import NO_PERMISSION, Registry, RegistryConfig
from artemis.wire import Instance

WALL = 1_700_000_000_000
VICTIM = Writer("10.0.0.1")
ATTACKER = Writer("10.0.0.2")


def inst(service: str = "orders", instance: str = "i1", url: str = "http://10.0.0.1:80",
         **fields: Any) -> Instance:
    return Instance(service_id=service, instance_id=instance, ip="10.0.0.1", port=80, url=url,
                    region_id="default", zone_id="default", **fields)


def registry(mode: Mode = Mode.OPEN, ttl: float = 20.0) -> tuple[Registry, FakeClock]:
    return Registry(RegistryConfig(lease_ttl=ttl, registration_mode=mode)), FakeClock(1000.0)


def url_of(reg: Registry, service: str = "orders", instance: str = "i1") -> str | None:
    state = reg.service(service)
    lease = None if state is None else state.leases.get(instance)
    return None if lease is None else lease.instance.url


def test_open_refuses_other_data_from_another_writer_while_live() -> None:
    reg, clock = registry()
    now = clock.monotonic
    assert not reg.register([inst()], now(), WALL, writer=VICTIM).failed
    result = reg.register([inst(url="http://evil:80")], now(), WALL, writer=ATTACKER)
    (failed,) = result.failed
    assert NO_PERMISSION == failed.error_code
    assert "only its owner may change it" in (failed.error_message or "")
    assert "client 10.0.0.2" in (failed.error_message or "")
    assert "http://10.0.0.1:80" == url_of(reg, "orders")
    assert 1 == reg.ownership.refused["owner"]


def test_open_owner_may_change_its_data() -> None:
    reg, clock = registry()
    now = clock.monotonic
    reg.register([inst()], now(), WALL, writer=VICTIM)
    assert not reg.register([inst(url="http://new:80")], now(), WALL, writer=VICTIM).failed
    assert "http://new:80" == url_of(reg)


def test_same_data_from_another_writer_renews_and_keeps_the_owner() -> None:
    reg, clock = registry()
    now = clock.monotonic
    reg.register([inst()], now(), WALL, writer=VICTIM)
    clock.advance(15)
    assert not reg.register([inst()], now(), WALL, writer=ATTACKER).failed
    lease = reg.service("orders").leases["i1"]  # type: ignore[union-attr]
    assert "10.0.0.1" == lease.writer  # never two steps to a takeover
    assert now() == lease.renewed
    assert reg.register([inst(url="http://evil:80")], now(), WALL, writer=ATTACKER).failed


def test_after_expiry_anyone_may_register_and_owns_it() -> None:
    reg, clock = registry(ttl=20.0)
    now = clock.monotonic
    reg.register([inst()], now(), WALL, writer=VICTIM)
    clock.advance(20.5)  # expired, not swept yet
    assert not reg.register([inst(url="http://new:80")], now(), WALL,
                            writer=ATTACKER).failed
    assert "10.0.0.2" == reg.service("orders").leases["i1"].writer  # type: ignore[union-attr]
    assert reg.register([inst()], now(), WALL, writer=VICTIM).failed


def test_open_refuses_an_unregister_by_another_writer_while_live() -> None:
    reg, clock = registry()
    now = clock.monotonic
    reg.register([inst()], now(), WALL, writer=VICTIM)
    (failed,) = reg.unregister([inst()], now(), WALL, writer=ATTACKER).failed
    assert NO_PERMISSION == failed.error_code
    assert "only its owner may unregister it" in (failed.error_message or "")
    assert url_of(reg) is not None
    assert not reg.unregister([inst()], now(), WALL, writer=VICTIM).failed
    assert url_of(reg) is None


def test_heartbeats_are_never_refused_for_ownership() -> None:
    reg, clock = registry()
    now = clock.monotonic
    reg.register([inst()], now(), WALL, writer=VICTIM)
    assert [inst()] == reg.heartbeat([inst()], now(), WALL, writer=ATTACKER).succeeded


def test_a_peers_copy_refuses_other_data_but_may_be_unregistered_by_a_client() -> None:
    reg, clock = registry()
    now = clock.monotonic
    reg.register([inst()], now(), WALL, same_renews=True)  # a peer's write: no writer
    assert "" == reg.service("orders").leases["i1"].writer  # type: ignore[union-attr]
    assert reg.register([inst(url="http://evil:80")], now(), WALL, writer=ATTACKER).failed
    assert not reg.register([inst()], now(), WALL, writer=VICTIM).failed  # same data
    assert not reg.unregister([inst()], now(), WALL, writer=ATTACKER).failed


def test_a_peers_write_keeps_the_owner_and_is_never_checked() -> None:
    reg, clock = registry()
    now = clock.monotonic
    reg.register([inst()], now(), WALL, writer=VICTIM)
    assert not reg.register([inst(url="http://new:80")], now(), WALL,
                            same_renews=True).failed
    assert "10.0.0.1" == reg.service("orders").leases["i1"].writer  # type: ignore[union-attr]
    assert not reg.unregister([inst()], now(), WALL, from_peer=True).failed


def test_a_peers_register_names_the_owner_so_other_writers_are_refused_here_too() -> None:
    """A replicated register carries who owns each instance at the peer: the copy here is owned
    alike, so an unregister or a change by another writer is refused on this node as on the
    one the owner wrote to, and the owner may do both."""
    reg, clock = registry()
    now = clock.monotonic
    other = inst(instance="i2")
    assert not reg.register([inst(), other], now(), WALL, same_renews=True,
                            owners=["10.0.0.1", None]).failed
    assert ["10.0.0.1", ""] == reg.owners([inst(), other])
    assert reg.unregister([inst()], now(), WALL, writer=ATTACKER).failed
    assert reg.register([inst(url="http://evil:80")], now(), WALL, writer=ATTACKER).failed
    assert not reg.register([inst(url="http://new:80")], now(), WALL, writer=VICTIM).failed
    assert not reg.unregister([inst()], now(), WALL, writer=VICTIM).failed
    assert not reg.unregister([other], now(), WALL, writer=ATTACKER).failed  # no owner known


def test_a_same_data_copy_learns_an_owner_it_did_not_know_but_never_changes_one() -> None:
    reg, clock = registry()
    now = clock.monotonic
    reg.register([inst()], now(), WALL, same_renews=True)  # copied without an owner
    reg.register([inst()], now(), WALL, same_renews=True, owners=["10.0.0.1"])
    reg.register([inst()], now(), WALL, same_renews=True, owners=["10.0.0.2"])
    assert ["10.0.0.1"] == reg.owners([inst()])
    assert [""] == reg.owners([inst(instance="nowhere")])


def test_owners_are_ignored_on_a_clients_write() -> None:
    reg, clock = registry()
    now = clock.monotonic
    reg.register([inst()], now(), WALL, writer=ATTACKER, owners=["10.0.0.1"])
    assert ["10.0.0.2"] == reg.owners([inst()])


def test_permissive_is_the_original() -> None:
    reg, clock = registry(Mode.PERMISSIVE)
    now = clock.monotonic
    reg.register([inst()], now(), WALL, writer=VICTIM)
    assert not reg.register([inst(url="http://evil:80")], now(), WALL,
                            writer=ATTACKER).failed
    assert "http://evil:80" == url_of(reg)
    assert not reg.unregister([inst()], now(), WALL, writer=VICTIM).failed
    assert {"owner": 0, "scope": 0, "token": 0} == reg.ownership.refused


def test_a_token_writes_only_its_scope() -> None:
    reg, clock = registry(Mode.TOKEN)
    now = clock.monotonic
    team = Writer("orders-team", Scope.parse("orders.*|billing"), token=True)
    batch = [inst("orders.api"), inst("billing"), inst("payments")]
    result = reg.register(batch, now(), WALL, writer=team)
    assert [batch[0], batch[1]] == result.succeeded
    (failed,) = result.failed
    assert NO_PERMISSION == failed.error_code
    assert "token 'orders-team' may not write service 'payments'" in (
        failed.error_message or "")
    assert "register=billing|orders.*" in (failed.error_message or "")
    assert reg.heartbeat([inst("payments")], now(), WALL, writer=team).failed
    assert reg.unregister([inst("payments")], now(), WALL, writer=team).failed
    assert 3 == reg.ownership.refused["scope"]


def test_a_token_may_not_renew_a_held_instance_out_of_its_scope() -> None:
    """A heartbeat with exactly the data of a live lease is still held to the token's scope."""
    reg, clock = registry(Mode.TOKEN)
    now = clock.monotonic
    every = Writer("ops", Scope.parse("*"), token=True)
    team = Writer("orders-team", Scope.parse("orders.*"), token=True)
    held = inst("payments")
    assert [held] == reg.register([held], now(), WALL, writer=every).succeeded
    (failed,) = reg.heartbeat([held], now(), WALL, writer=team).failed
    assert (NO_PERMISSION, True) == (failed.error_code, "may not write service 'payments'" in (
        failed.error_message or ""))
    assert [held] == reg.heartbeat([held], now(), WALL, writer=every).succeeded


def test_tokens_own_instances_by_name() -> None:
    reg, clock = registry(Mode.TOKEN)
    now = clock.monotonic
    every = Scope.parse("*")
    one, two = Writer("one", every, token=True), Writer("two", every, token=True)
    reg.register([inst()], now(), WALL, writer=one)
    (failed,) = reg.register([inst(url="http://x:1")], now(), WALL, writer=two).failed
    assert "you are token 'two'" in (failed.error_message or "")


@pytest.mark.parametrize(("text", "allowed", "refused"), [
    ("*", ["anything", "ORDERS"], []),
    ("orders", ["orders", "ORDERS"], ["orders.api", "order"]),
    ("orders.*|pay", ["orders.api", "Orders.X", "pay"], ["orders", "payments"]),
])
def test_scope_patterns(text: str, allowed: list[str], refused: list[str]) -> None:
    scope = Scope.parse(text)
    assert all(scope.allows(s) for s in allowed)
    assert not any(scope.allows(s) for s in refused)


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty"), ("orders||pay", "empty"), ("or*ders", "may only end"),
    ("orders pay", "spaces"), ("orders,pay", ", : = +"),
])
def test_bad_scopes_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ScopeError, match=says):
        Scope.parse(text)


def test_a_heartbeat_found_held_exactly_is_all_or_nothing() -> None:
    """`held_exactly` (core/renewal.py) gives the live leases of a batch only when the text sent
    is exactly the JSON those leases hold, joined by commas; `renew_leases` renews and counts
    them once."""
    reg, clock = registry(Mode.OPEN)
    now = clock.monotonic
    batch = [inst("orders.api"), inst("billing")]
    reg.register(batch, now(), WALL)
    held = b",".join(wire.encode(i) for i in batch)
    clock.advance(5)
    leases = reg.held_exactly(batch, held, now())
    assert [reg.service(i.service_id).leases[i.instance_id.lower()]  # type: ignore[union-attr]
            for i in batch] == leases
    other = inst("billing", url="http://elsewhere:1")
    assert [None, None, None, None] == [
        reg.held_exactly(batch, wire.encode(batch[0]) + b"," + wire.encode(other), now()),
        reg.held_exactly(batch, held + b" ", now()),
        reg.held_exactly(batch[:1], held, now()),
        reg.held_exactly([*batch, inst("payments")], held + b",{}", now())]
    assert [now() - 5, now() - 5] == [lease.renewed for lease in leases or []]
    before = reg.safe.status(now()).count_last_window
    reg.renew_leases(leases or [], now())
    assert ([now(), now()], before + 2) == ([lease.renewed for lease in leases or []],
                                            reg.safe.status(now()).count_last_window)
    clock.advance(25)
    assert None is reg.held_exactly(batch[:1], wire.encode(batch[0]), now())  # expired
