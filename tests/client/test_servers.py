"""Which node a client talks to (ServerList) and calling it with retries (Caller), without I/O:
a fake clock (its waits pass when the test drives it), an injected random generator, and the
fake transport of conftest."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artemis import wire
from artemis.client import Caller, NoServerAvailable, ServerList, TransportError
from artemis.clock import FakeClock
from tests.client.conftest import (
    FakeTransport,
    instances_answer,
    nodes_answer,
)

T = TypeVar("T")
A, B, C = "http://a:8080", "http://b:8080", "http://c:8080"
PATH = "/api/registry/register.json"
BODY = b'{"instances":[]}'
OK = instances_answer()


class Picks:
    """A random generator whose `choice` takes scripted positions, recording what it chose
    from; `random()` is a seeded generator's."""

    def __init__(self, *positions: int) -> None:
        self.positions = list(positions)
        self.offered: list[list[str]] = []
        self._random = random.Random(7)

    def choice(self, seq: Sequence[str]) -> str:
        self.offered.append(list(seq))
        return seq[self.positions.pop(0) if self.positions else 0]

    def random(self) -> float:
        return self._random.random()


def servers(*seeds: str, picks: Picks | None = None, clock: FakeClock | None = None,
            penalty: float = 10.0, rotate_after: float = 3600.0) -> ServerList:
    return ServerList(list(seeds), clock=clock or FakeClock(100.0),
                      rng=picks or Picks(),  # type: ignore[arg-type]
                      penalty=penalty, rotate_after=rotate_after)


# --- ServerList ---------------------------------------------------------------------------------

def test_current_is_a_random_seed_and_stays() -> None:
    """The first current() chooses at random among the seeds; later calls keep it."""
    picks = Picks(1)
    server_list = servers(A, B, C, picks=picks)
    assert ([B, B, B], [[A, B, C]]) == (
        [server_list.current() for _ in range(3)], picks.offered)


def test_seeded_random_choice_is_the_generators() -> None:
    """With a seeded random.Random the choice is that generator's choice of the seeds."""
    chosen = ServerList([A, B, C], rng=random.Random(42)).current()
    assert random.Random(42).choice([A, B, C]) == chosen


def test_seeds_are_cleaned() -> None:
    """Trailing slashes are trimmed and blank seeds dropped."""
    server_list = ServerList([A + "/", "", "  ", B])
    assert ([A, B], [A, B]) == (server_list.seeds, server_list.known)


@pytest.mark.parametrize("seeds", [[], [""], ["  "]])
def test_no_usable_seed_is_an_error(seeds: list[str]) -> None:
    """A list without any URL is refused at once."""
    with pytest.raises(ValueError, match="at least one server URL"):
        ServerList(seeds)


def test_failed_current_moves_to_another_node() -> None:
    """When the current node fails, another one that did not fail is chosen."""
    picks = Picks(0, 0)
    server_list = servers(A, B, C, picks=picks)
    server_list.current()
    server_list.failed(A)
    assert (B, [[A, B, C], [B, C]]) == (server_list.current(), picks.offered)


def test_failure_of_another_node_keeps_the_current_one() -> None:
    """A failure reported for a node that is not current changes nothing now."""
    server_list = servers(A, B, picks=Picks(0))
    server_list.current()
    server_list.failed(B)
    assert A == server_list.current()


def test_penalized_node_is_avoided_until_the_penalty_ends() -> None:
    """A failed node is not offered for `penalty` seconds, and is again from then on."""
    clock = FakeClock(100.0)
    picks = Picks(0, 0, 0, 0)
    server_list = servers(A, B, C, picks=picks, clock=clock, penalty=10.0)
    chosen = [server_list.current()]  # A
    server_list.failed(A)  # t=100: A avoided until 110
    chosen.append(server_list.current())  # B
    clock.advance(9.9)
    server_list.failed(B)  # t=109.9: A still avoided
    chosen.append(server_list.current())  # C
    clock.advance(0.1)
    server_list.failed(C)  # t=110: A's penalty is over
    chosen.append(server_list.current())  # A
    assert ([A, B, C, A], [[A, B, C], [B, C], [C], [A]]) == (chosen, picks.offered)


def test_when_every_node_is_avoided_the_oldest_failure_is_tried() -> None:
    """With every node penalized, the node that failed longest ago is used."""
    clock = FakeClock(100.0)
    server_list = servers(A, B, C, picks=Picks(0, 0, 0), clock=clock)
    server_list.current()
    for url in (B, C, A):  # A last: B failed longest ago
        clock.advance(1.0)
        server_list.failed(url)
    assert B == server_list.current()


def test_rotation_chooses_again_after_rotate_after() -> None:
    """The current node is chosen again once it has been current for `rotate_after` s."""
    clock = FakeClock(100.0)
    picks = Picks(0, 1)
    server_list = servers(A, B, picks=picks, clock=clock, rotate_after=60.0)
    before = server_list.current()
    clock.advance(59.9)
    still = server_list.current()
    clock.advance(0.1)
    after = server_list.current()
    assert ((A, A, B), [[A, B], [A, B]]) == ((before, still, after), picks.offered)


def test_update_replaces_the_known_nodes() -> None:
    """update() replaces the known nodes (trimmed); an unlisted current node is replaced."""
    server_list = servers(A, picks=Picks(0, 1))
    server_list.current()
    server_list.update([B + "/", C])
    assert ([B, C], C, [A]) == (server_list.known, server_list.current(), server_list.seeds)


def test_update_keeps_a_current_node_that_is_listed() -> None:
    """A current node that is still listed stays current."""
    server_list = servers(A, B, picks=Picks(1, 0))
    server_list.current()
    server_list.update([A, B, C])
    assert B == server_list.current()


def test_update_with_an_empty_list_changes_nothing() -> None:
    """An empty list (or only blanks) from a node leaves the known nodes."""
    server_list = servers(A, B, picks=Picks(0))
    server_list.current()
    server_list.update([])
    server_list.update([""])
    assert ([A, B], A) == (server_list.known, server_list.current())


def test_seeds_are_the_fallback_when_every_listed_node_failed() -> None:
    """When every node of the updated list is avoided, a seed that did not fail is used."""
    picks = Picks(0, 0, 0)
    server_list = servers(A, B, picks=picks)
    server_list.update([C])
    assert C == server_list.current()
    server_list.failed(C)
    assert (A, [[C], [A, B]]) == (server_list.current(), picks.offered)


def test_repr_shows_current_and_known() -> None:
    """The repr names the current node and the known ones."""
    server_list = servers(A, B, picks=Picks(1))
    server_list.current()
    assert f"ServerList(current={B!r}, known={[A, B]!r})" == repr(server_list)


URLS = [A, B, C, "http://d:8080"]
OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("fail"), st.sampled_from(URLS)),
    st.tuples(st.just("advance"), st.floats(0.0, 15.0)),
    st.tuples(st.just("update"), st.lists(st.sampled_from(URLS), max_size=3))), max_size=30)


@given(seeds=st.lists(st.sampled_from(URLS), min_size=1, max_size=3, unique=True),
       operations=OPERATIONS, seed=st.integers(0, 2**16))
def test_current_is_always_usable(seeds: list[str], operations: list[tuple[str, Any]],
                                  seed: int) -> None:
    """current() is always a known node or seed, and not the one just failed if avoidable."""
    clock = FakeClock(100.0)
    server_list = ServerList(seeds, clock=clock, rng=random.Random(seed), penalty=10.0,
                             rotate_after=30.0)
    failures: dict[str, float] = {}
    broken = []
    for op, arg in operations:
        if op == "fail":
            failures[arg] = clock.monotonic()
            server_list.failed(arg)
        elif op == "advance":
            clock.advance(arg)
        else:
            server_list.update(arg)
        current = server_list.current()
        fresh = [u for u in server_list.known + seeds
                 if clock.monotonic() - failures.get(u, -1e18) >= 10.0]
        if current not in server_list.known + seeds or (op == "fail" and fresh
                                                         and current == arg):
            broken.append((op, arg, current))
    assert [] == broken


# --- Caller -------------------------------------------------------------------------------------

class Driven:
    """A Caller on a fake clock, and that clock: `call()` drives the clock through the
    caller's waits (they pass at once, recorded in `clock.slept`)."""

    def __init__(self, caller: Caller, clock: FakeClock) -> None:
        self.caller = caller
        self.clock = clock
        self.servers = caller.servers

    async def call(self, path: str, body: bytes, kind: type[T]) -> T:
        return await self.clock.drive(self.caller.call(path, body, kind))

    async def refresh(self, registry: bool, region: str | None, zone: str | None) -> None:
        await self.clock.drive(self.caller.refresh(registry, region, zone))

    def delay(self, attempt: int) -> float:
        return self.caller.delay(attempt)


def caller(transport: FakeTransport, *seeds: str, retries: int = 5, backoff: float = 0.1,
           max_backoff: float = 2.0, seed: int = 3) -> tuple[Driven, FakeClock]:
    clock = FakeClock(100.0)
    server_list = servers(*(seeds or (A, B, C)), picks=Picks(), clock=clock)
    return Driven(Caller(transport, server_list, retries=retries, backoff=backoff,
                         max_backoff=max_backoff, clock=clock, rng=random.Random(seed)),
                  clock), clock


def expected_delays(count: int, backoff: float, max_backoff: float, seed: int) -> list[float]:
    """The waits the module doc describes: exponential from backoff, capped, jitter in [½, 1]."""
    rng = random.Random(seed)
    return [min(max_backoff, backoff * 2 ** n) * (0.5 + rng.random() / 2) for n in range(count)]


async def test_first_answer_is_returned_without_waiting() -> None:
    """A success is decoded and returned after one call to the current node."""
    transport = FakeTransport(OK)
    call, clock = caller(transport)
    answer = await call.call(PATH, BODY, wire.InstancesResponse)
    assert (wire.decode(OK, wire.InstancesResponse), [(A, PATH, BODY)], []) == (
        answer, transport.calls, clock.slept)


async def test_transport_error_moves_to_another_node() -> None:
    """A node that cannot be reached is marked failed and the next try goes elsewhere."""
    transport = FakeTransport(TransportError("refused"), OK)
    call, clock = caller(transport)
    await call.call(PATH, BODY, wire.InstancesResponse)
    assert ([A, B], expected_delays(1, 0.1, 2.0, 3)) == (transport.urls(), clock.slept)


async def test_unreadable_answer_moves_to_another_node() -> None:
    """An answer that does not decode counts as a failed node."""
    transport = FakeTransport(b"<html>proxy error</html>", OK)
    call, _ = caller(transport)
    await call.call(PATH, BODY, wire.InstancesResponse)
    assert [A, B] == transport.urls()


async def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    """Waits grow as backoff * 2^n, capped, jitter in [1/2, 1]; none after the last try."""
    transport = FakeTransport(*[TransportError(f"down {n}") for n in range(6)])
    call, clock = caller(transport, retries=6, backoff=0.1, max_backoff=0.5, seed=11)
    with pytest.raises(NoServerAvailable):
        await call.call(PATH, BODY, wire.InstancesResponse)
    delays = expected_delays(5, 0.1, 0.5, 11)
    assert (delays, pytest.approx(100.0 + sum(delays))) == (clock.slept, clock.monotonic())


def test_delay_bounds() -> None:
    """delay(n) lies in [½, 1] of min(max_backoff, backoff * 2^n)."""
    call, _ = caller(FakeTransport(), backoff=0.1, max_backoff=2.0, seed=5)
    bases = [min(2.0, 0.1 * 2 ** n) for n in range(10)]
    delays = [call.delay(n) for n in range(10)]
    assert [True] * 10 == [b / 2 <= d <= b for b, d in zip(bases, delays, strict=True)]


@pytest.mark.parametrize("code", ["service-unavailable", "internal-service-error"])
async def test_service_down_codes_move_to_another_node(code: str) -> None:
    """A `fail` with a service-down code marks the node failed and tries another."""
    transport = FakeTransport(instances_answer(code, "not now"), OK)
    call, clock = caller(transport)
    answer = await call.call(PATH, BODY, wire.InstancesResponse)
    assert ("success", [A, B], 1) == (answer.response_status.error_code, transport.urls(),
                                      len(clock.slept))


@pytest.mark.parametrize("code", ["rate-limited", "unknown"])
async def test_rerunnable_codes_wait_and_retry_the_same_node(code: str) -> None:
    """rate-limited (and the SDK's other rerunnable code, unknown) waits and retries the node."""
    transport = FakeTransport(instances_answer(code), instances_answer(code), OK)
    call, clock = caller(transport)
    answer = await call.call(PATH, BODY, wire.InstancesResponse)
    assert ("success", [A, A, A], expected_delays(2, 0.1, 2.0, 3)) == (
        answer.response_status.error_code, transport.urls(), clock.slept)


@pytest.mark.parametrize(("code", "state"), [
    ("bad-request", "fail"), ("no-permission", "fail"), ("data-not-found", "fail"),
    ("partial_fail", "partial_fail"), ("success", "success"),
    ("service-unavailable", "partial_fail"),
])
async def test_other_answers_are_returned_at_once(code: str, state: str) -> None:
    """Any other answer (a service-down code only counts with status fail) is the result."""
    transport = FakeTransport(instances_answer(code, state=state))
    call, clock = caller(transport)
    answer = await call.call(PATH, BODY, wire.InstancesResponse)
    assert ((code, state), [A], []) == (
        (answer.response_status.error_code, answer.response_status.status), transport.urls(),
        clock.slept)


async def test_exhausted_retries_raise_no_server_available_naming_the_last_problems() -> None:
    """After the last try, NoServerAvailable names the path, tries and last three problems."""
    transport = FakeTransport(TransportError("a refused"), instances_answer("rate-limited"),
                              instances_answer("service-unavailable", "starting"),
                              TransportError("c refused"))
    call, _ = caller(transport, retries=4)
    with pytest.raises(NoServerAvailable) as raised:
        await call.call(PATH, BODY, wire.InstancesResponse)
    assert (f"{PATH}: no node answered after 4 tries: {B}: rate-limited; "
            f"{B}: service-unavailable: starting; c refused") == str(raised.value)


async def test_retries_are_at_least_one() -> None:
    """retries=0 still makes one try."""
    transport = FakeTransport(TransportError("down"))
    call, clock = caller(transport, retries=0)
    with pytest.raises(NoServerAvailable, match="after 1 tries: down"):
        await call.call(PATH, BODY, wire.InstancesResponse)
    assert (1, []) == (len(transport.calls), clock.slept)


async def test_every_node_is_tried_before_one_is_tried_again() -> None:
    """Failing nodes are left one after the other; each is tried once before any repeats."""
    transport = FakeTransport(*[TransportError("down")] * 3, OK)
    call, _ = caller(transport, A, B, C, retries=4)
    await call.call(PATH, BODY, wire.InstancesResponse)
    assert [A, B, C, A] == transport.urls()


async def test_refresh_uses_the_listed_up_nodes() -> None:
    """refresh() asks for the up registry nodes, with region and zone, and uses them."""
    transport = FakeTransport(nodes_answer(B + "/", C))
    call, _ = caller(transport, A)
    await call.refresh(True, "SHA", "zone-1")
    assert ([(A, "/api/cluster/up-registry-nodes.json",
              b'{"regionId":"SHA","zoneId":"zone-1"}')], [B, C]) == (
        transport.calls, call.servers.known)


async def test_refresh_of_discovery_asks_for_discovery_nodes() -> None:
    """refresh(False, ...) asks up-discovery-nodes.json."""
    transport = FakeTransport(nodes_answer(B))
    call, _ = caller(transport, A)
    await call.refresh(False, None, None)
    assert (["/api/cluster/up-discovery-nodes.json"], [B]) == (transport.paths(),
                                                               call.servers.known)


@pytest.mark.parametrize("answers", [
    [wire.encode(wire.GetServiceNodesResponse(
        nodes=None, response_status=wire.ResponseStatus(
            error_code="data-not-found", message="No available service nodes.",
            status="fail")))],
    [nodes_answer()],
    [TransportError("down")] * 2,
])
async def test_refresh_that_gets_no_nodes_keeps_the_list(answers: list[bytes]) -> None:
    """No nodes, an empty list or no answer at all leave the known nodes as they were."""
    transport = FakeTransport(*answers)
    call, _ = caller(transport, A, B, retries=2)
    await call.refresh(True, "SHA", None)
    assert [A, B] == call.servers.known
