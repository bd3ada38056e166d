"""The push hub: routing, revision tokens, replay and reload, bounded queues, coalescing, limits."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from artemis.core.push import DISCOVERY, EVERYTHING, Frame, PushHub, PushSession, Refused
from artemis.core.registry import Registry, RegistryConfig
from artemis.core.versions import Change
from artemis.wire import Instance

RUN = "run1"
T0 = 1000.0
WALL = 1_700_000_000_000
RELOAD_WALL = 1_700_000_999_000  # the wall clock a replay or reload is asked at


# --- expected data, written from §3.1 / §3.5 and the push rules ----------------------------

def inst_json(service: str = "svc-a", instance: str = "i1", port: int = 8080) -> dict[str, Any]:
    """An Instance as the wire writes it: every key, alphabetical, nulls written (§3.1)."""
    return {
        "groupId": None, "healthCheckUrl": None, "instanceId": instance, "ip": "10.0.0.1",
        "machineName": None, "metadata": None, "port": port, "protocol": "http",
        "regionId": "SHA", "serviceId": service, "status": None,
        "url": f"http://10.0.0.1:{port}/{instance}", "zoneId": "zone-1",
    }


def inst(service: str = "svc-a", instance: str = "i1", port: int = 8080) -> Instance:
    data = inst_json(service, instance, port)
    return Instance(group_id=None, health_check_url=None, instance_id=data["instanceId"],
                    ip=data["ip"], machine_name=None, metadata=None, port=port,
                    protocol="http", region_id="SHA", service_id=service, status=None,
                    url=data["url"], zone_id="zone-1")


def reload_json(service: str) -> dict[str, Any]:
    """The original's fake instance of a reload change (§3.5)."""
    return {
        "groupId": None, "healthCheckUrl": None, "instanceId": "reload", "ip": "0.0.0.0",
        "machineName": None, "metadata": None, "port": 0, "protocol": None, "regionId": None,
        "serviceId": service, "status": None, "url": "http://serviceId/reload", "zoneId": None,
    }


def frame_text(kind: str, change_time: int, instance: dict[str, Any], revision: int,
               run: str = RUN) -> str:
    """One push frame: an InstanceChange (§3.5) plus the `revision` token, compact JSON."""
    return json.dumps({"changeTime": change_time, "changeType": kind, "instance": instance,
                       "revision": f"{run}.{revision}"}, separators=(",", ":"))


def reload_text(service: str, revision: int, change_time: int = RELOAD_WALL) -> str:
    return frame_text("reload", change_time, reload_json(service), revision)


def change_text(change: Change, run: str = RUN) -> str:
    """The frame a change becomes: its kind, time and stored instance, and its token."""
    return frame_text(change.kind, change.change_time, json.loads(change.encoded),
                      change.revision, run)


def texts(frames: list[Frame]) -> list[str]:
    return [frame.text for frame in frames]


def queued(session: PushSession) -> list[str]:
    return [frame.text for frame in session.queue]


# --- fixtures --------------------------------------------------------------------------------

class World:
    """A registry, a hub of run RUN, and the wall clock the changes are stamped with."""

    def __init__(self, log_size: int = 200_000, **hub: Any) -> None:
        self.registry = Registry(RegistryConfig(region="SHA", zone="zone-1",
                                                change_log_size=log_size))
        self.hub = PushHub(RUN, **hub)
        self.wall = WALL
        self.now = T0

    def tick(self) -> int:
        self.wall += 1000
        self.now += 1.0
        return self.wall

    def publish(self, changes: list[Change]) -> list[Change]:
        self.hub.publish(changes)
        return changes

    def register(self, *instances: Instance) -> list[Change]:
        wall = self.tick()
        return self.publish(self.registry.register(list(instances), self.now, wall).changes)

    def unregister(self, *instances: Instance) -> list[Change]:
        wall = self.tick()
        return self.publish(self.registry.unregister(list(instances), self.now, wall).changes)

    def reload(self, service_id: str) -> list[Change]:
        return self.publish([self.registry.reload(service_id, self.tick())])

    def sweep(self, seconds: float) -> list[Change]:
        self.now += seconds
        self.wall += round(seconds * 1000)
        return self.publish(self.registry.sweep(self.now, self.wall))

    def session(self, *services: str, token: str | None = None) -> PushSession:
        session = self.hub.open(DISCOVERY, self.now)
        for service in services:
            self.subscribe(session, service, token)
        return session

    def subscribe(self, session: PushSession, service: str, token: str | None) -> int:
        return self.hub.subscribe(session, service, token, self.registry.log,
                                  self.registry.revision, RELOAD_WALL)

    def everything(self) -> PushSession:
        return self.hub.open(EVERYTHING, self.now)

    def services(self) -> list[tuple[str, str]]:
        return [(key, state.service_id) for key, state in self.registry.services.items()]


@pytest.fixture
def world() -> World:
    return World()


# --- frames and tokens -----------------------------------------------------------------------

def test_frame_is_the_instance_change_plus_its_revision_token(world: World) -> None:
    """A change becomes a frame: the InstanceChange JSON with `"revision":"<run>.<n>"` added."""
    [change] = world.register(inst("Svc-A", "I1"))
    expected = Frame("svc-a", "i1", "new", 1, WALL + 1000,
                     frame_text("new", WALL + 1000, inst_json("Svc-A", "I1"), 1))
    assert expected == world.hub.frame(change)


def test_delete_and_reload_frames(world: World) -> None:
    """An unregister is a `delete` frame of the stored instance; a registry reload is a
    `reload` frame with the fake reload instance (§3.5)."""
    world.register(inst())
    [delete] = world.unregister(inst())
    [reload] = world.reload("Svc-A")
    expected = [
        Frame("svc-a", "i1", "delete", 2, WALL + 2000,
              frame_text("delete", WALL + 2000, inst_json(), 2)),
        Frame("svc-a", "reload", "reload", 3, WALL + 3000,
              frame_text("reload", WALL + 3000, reload_json("Svc-A"), 3)),
    ]
    assert expected == [world.hub.frame(delete), world.hub.frame(reload)]


def test_token_names_the_run_and_the_revision(world: World) -> None:
    """`token(n)` is "<run>.<n>"; `revision_of` reads back only this run's tokens."""
    hub = world.hub
    assert ("run1.7", 7, 0) == (hub.token(7), hub.revision_of("run1.7"), hub.revision_of("run1.0"))


@pytest.mark.parametrize("token", [
    None, "", "7", "run2.7", "run1", "run1.", "run1.x", "run1.-1", "run1.7.1", ".7",
    "run1.\u00b2", "run1." + "9" * 5000,
], ids=["none", "empty", "bare number", "other run", "run only", "no number", "letters",
        "negative", "two dots", "no run", "superscript digit", "5000 digits"])
def test_revision_of_refuses_what_is_not_a_token_of_this_run(world: World,
                                                             token: str | None) -> None:
    """Tokens of another run, without a number, or with something other than decimal digits
    name no revision (None), and never raise."""
    assert world.hub.revision_of(token) is None


# --- routing ---------------------------------------------------------------------------------

def test_each_session_gets_the_changes_of_its_services(world: World) -> None:
    """Frames go to the sessions subscribed to the change's service, and only to them."""
    a, b, both, none = (world.session("svc-a"), world.session("svc-b"),
                        world.session("svc-a", "svc-b"), world.session())
    ca = world.register(inst("svc-a", "i1"))
    cb = world.register(inst("svc-b", "i2"))
    expected = {
        "a": [change_text(ca[0])],
        "b": [change_text(cb[0])],
        "both": [change_text(ca[0]), change_text(cb[0])],
        "none": [],
    }
    assert expected == {"a": queued(a), "b": queued(b), "both": queued(both),
                        "none": queued(none)}


def test_service_ids_match_whatever_their_case(world: World) -> None:
    """A subscription to "SVC-A" gets the changes of "svc-A": ids compare lower-case."""
    session = world.session("SVC-A")
    changes = world.register(inst("svc-A", "i1"))
    assert [change_text(changes[0])] == queued(session)


def test_publish_returns_the_sessions_it_woke(world: World) -> None:
    """publish names exactly the sessions that got a frame."""
    a, b, everything = world.session("svc-a"), world.session("svc-b"), world.everything()
    woken = world.hub.publish(world.registry.register([inst("svc-a")], T0, WALL).changes)
    assert ({a, everything}, []) == (woken, queued(b))


def test_all_changes_session_gets_every_change(world: World) -> None:
    """An all-changes session gets the changes of every service, in revision order."""
    everything = world.everything()
    changes = [*world.register(inst("svc-a", "i1"), inst("svc-b", "i1")),
               *world.unregister(inst("svc-a", "i1")), *world.reload("svc-c")]
    assert [change_text(c) for c in changes] == queued(everything)


def test_frames_are_queued_in_revision_order(world: World) -> None:
    """register, re-register, unregister, sweep and reload reach a session in revision order."""
    session = world.session("svc-a")
    changes = [
        *world.register(inst("svc-a", "i1"), inst("svc-a", "i2")),
        *world.register(inst("svc-a", "i1", port=9090)),
        *world.unregister(inst("svc-a", "i2")),
        *world.reload("svc-a"),
        *world.sweep(60.0),  # i1's lease (20 s) is over
    ]
    expected = [
        frame_text("new", WALL + 1000, inst_json("svc-a", "i1"), 1),
        frame_text("new", WALL + 1000, inst_json("svc-a", "i2"), 2),
        frame_text("new", WALL + 2000, inst_json("svc-a", "i1", 9090), 3),
        frame_text("delete", WALL + 3000, inst_json("svc-a", "i2"), 4),
        frame_text("reload", WALL + 4000, reload_json("svc-a"), 5),
        frame_text("delete", WALL + 64000, inst_json("svc-a", "i1", 9090), 6),
    ]
    assert (expected, [1, 2, 3, 4, 5, 6]) == (queued(session), [c.revision for c in changes])


def test_subscribers_counts_service_and_all_changes_sessions(world: World) -> None:
    """subscribers(service) counts the sessions of that service plus all-changes sessions."""
    world.session("svc-a")
    world.session("SVC-A", "svc-b")
    world.everything()
    hub = world.hub
    assert (3, 2, 1) == (hub.subscribers("Svc-A"), hub.subscribers("svc-b"),
                         hub.subscribers("svc-z"))


# --- replay and reload -----------------------------------------------------------------------

def test_subscribe_with_a_token_replays_the_missed_changes_of_that_service(world: World) -> None:
    """A token replays that service's changes after it, from the log, and none of others."""
    seen = world.register(inst("svc-a", "i1"))
    world.register(inst("svc-b", "i1"))
    missed = [*world.register(inst("svc-a", "i2")), *world.unregister(inst("svc-a", "i1"))]
    world.register(inst("svc-b", "i2"))
    session = world.hub.open(DISCOVERY, T0)
    count = world.subscribe(session, "SVC-A", world.hub.token(seen[0].revision))
    assert (2, [change_text(c) for c in missed]) == (count, queued(session))


def test_subscribe_with_the_current_token_queues_nothing(world: World) -> None:
    """A client that saw the last change is sent nothing on subscribing."""
    world.register(inst("svc-a", "i1"))
    session = world.hub.open(DISCOVERY, T0)
    count = world.subscribe(session, "svc-a", world.hub.token(world.registry.revision))
    assert (0, []) == (count, queued(session))


def test_subscribe_without_a_token_queues_nothing_but_gets_later_changes(world: World) -> None:
    """Without a token nothing is replayed; later changes of the service still arrive."""
    world.register(inst("svc-a", "i1"))
    session = world.hub.open(DISCOVERY, T0)
    count = world.subscribe(session, "svc-a", None)
    later = world.register(inst("svc-a", "i2"))
    assert (0, [change_text(later[0])]) == (count, queued(session))


def test_token_zero_replays_everything_the_log_holds(world: World) -> None:
    """Token "<run>.0" (subscribed before any change) replays the service's whole history."""
    changes = [*world.register(inst("svc-a", "i1")), *world.register(inst("svc-b", "i1")),
               *world.unregister(inst("svc-a", "i1"))]
    session = world.hub.open(DISCOVERY, T0)
    world.subscribe(session, "svc-a", "run1.0")
    assert [change_text(changes[0]), change_text(changes[2])] == queued(session)


@pytest.mark.parametrize("token", [
    "run0.2", "not-a-token", "", "run1.", "run1.-1", "run1.\u00b2", "run1." + "9" * 5000,
    "run1.6", "run1.99999999999999999999",
], ids=["another run", "garbage", "empty", "no number", "negative", "superscript digit",
        "5000 digits", "next revision", "far future"])
def test_unusable_token_gets_one_reload(world: World, token: str) -> None:
    """A token of another run, unreadable, or past the current revision gets one reload of the
    service at the current revision, with the fake reload instance (§3.5)."""
    world.register(inst("Svc-A", "i1"), inst("svc-b", "i1"))
    world.register(inst("svc-a", "i2"), inst("svc-a", "i3"))
    world.unregister(inst("svc-a", "i3"))  # revision 5
    session = world.hub.open(DISCOVERY, T0)
    count = world.subscribe(session, "Svc-A", token)
    assert (1, [reload_text("Svc-A", 5)]) == (count, queued(session))


def test_token_that_left_the_log_gets_a_reload_and_one_still_in_it_a_replay() -> None:
    """With a log of 3 changes and revision 5, token 2 still replays 3..5 but token 1 (change
    2 has left the log) gets a reload."""
    world = World(log_size=3)
    changes = [c for n in range(1, 6) for c in world.register(inst("svc-a", f"i{n}"))]
    replay, reload = world.hub.open(DISCOVERY, T0), world.hub.open(DISCOVERY, T0)
    counts = (world.subscribe(replay, "svc-a", "run1.2"),
              world.subscribe(reload, "svc-a", "run1.1"))
    expected = ((3, 1), [change_text(c) for c in changes[2:]], [reload_text("svc-a", 5)])
    assert expected == (counts, queued(replay), queued(reload))


def test_subscribing_and_replaying_is_one_step(world: World) -> None:
    """A change published right after the replay is queued once, after the replayed ones."""
    first = world.register(inst("svc-a", "i1"))
    session = world.hub.open(DISCOVERY, T0)
    world.subscribe(session, "svc-a", "run1.0")
    after = world.register(inst("svc-a", "i2"))
    assert [change_text(first[0]), change_text(after[0])] == queued(session)


def test_resume_all_replays_every_change_after_the_token(world: World) -> None:
    """An all-changes session resuming with a token gets every change after it, in order."""
    seen = world.register(inst("svc-a", "i1"))
    missed = [*world.register(inst("svc-b", "i1")), *world.unregister(inst("svc-a", "i1")),
              *world.reload("svc-c")]
    session = world.everything()
    count = world.hub.resume_all(session, world.hub.token(seen[0].revision), world.registry.log,
                                 world.registry.revision, RELOAD_WALL, world.services())
    assert (3, [change_text(c) for c in missed]) == (count, queued(session))


@pytest.mark.parametrize("token", ["run0.1", "garbage", "run1.9"])
def test_resume_all_with_an_unusable_token_reloads_every_service(world: World,
                                                                 token: str) -> None:
    """An all-changes session whose token cannot be replayed gets a reload of every service
    the caller names, each at the current revision."""
    world.register(inst("Svc-A", "i1"), inst("SVC-B", "i1"))
    session = world.everything()
    count = world.hub.resume_all(session, token, world.registry.log, world.registry.revision,
                                 RELOAD_WALL, world.services())
    assert (2, [reload_text("Svc-A", 2), reload_text("SVC-B", 2)]) == (count, queued(session))


def test_resume_all_with_a_token_that_left_the_log_reloads() -> None:
    """An all-changes token older than the log reloads every service."""
    world = World(log_size=2)
    for n in range(4):
        world.register(inst("svc-a", f"i{n}"))
    session = world.everything()
    world.hub.resume_all(session, "run1.1", world.registry.log, world.registry.revision,
                         RELOAD_WALL, world.services())
    assert [reload_text("svc-a", 4)] == queued(session)


# --- bounded queues --------------------------------------------------------------------------

def test_full_queue_is_compacted_to_one_reload_per_service() -> None:
    """When a frame would pass max_queue, each service's queued frames become one reload
    carrying that service's latest revision and change time; the new frame follows."""
    world = World(max_queue=4)
    session = world.session("svc-a", "svc-b")
    world.register(inst("Svc-A", "i1"))  # 1
    world.register(inst("svc-b", "i1"))  # 2
    world.register(inst("Svc-A", "i2"))  # 3
    world.unregister(inst("svc-b", "i1"))  # 4
    last = world.register(inst("Svc-A", "i3"))  # 5: does not fit
    expected = ([reload_text("Svc-A", 3, WALL + 3000), reload_text("svc-b", 4, WALL + 4000),
                 change_text(last[0])], 2, False)
    assert expected == (queued(session), session.dropped, session.too_slow)


def test_compaction_keeps_room_for_more_frames() -> None:
    """After a compaction the queue takes frames again until it is full, then compacts again,
    `dropped` adding up the frames replaced."""
    world = World(max_queue=3)
    session = world.session("svc-a")
    changes = [c for n in range(7) for c in world.register(inst("svc-a", f"i{n}"))]
    # 1,2,3 queued; 4 -> [R3, 4]; 5 -> [R3, 4, 5]; 6 -> [R5, 6]; 7 -> [R5, 6, 7]
    expected = ([reload_text("svc-a", 5, WALL + 5000), change_text(changes[5]),
                 change_text(changes[6])], 2 + 2, False)
    assert expected == (queued(session), session.dropped, session.too_slow)


def test_session_is_too_slow_when_even_reloads_do_not_fit() -> None:
    """With max_queue 2 and a third service changing, the reloads of two services fill the
    queue: the new frame is not queued and the session is marked too slow (counted once)."""
    world = World(max_queue=2)
    session = world.everything()
    world.register(inst("svc-a", "i1"))
    world.register(inst("svc-b", "i1"))
    world.register(inst("svc-c", "i1"))
    world.register(inst("svc-d", "i1"))
    expected = ([reload_text("svc-a", 1, WALL + 1000), reload_text("svc-b", 2, WALL + 2000)],
                True, 0, 1)
    assert expected == (queued(session), session.too_slow, session.dropped,
                        world.hub.sessions_too_slow)


def test_too_slow_session_does_not_hold_back_the_others() -> None:
    """One session falling behind changes nothing for another one that is drained."""
    world = World(max_queue=2)
    slow, fast = world.everything(), world.everything()
    received: list[str] = []
    changes: list[Change] = []
    for service in ("svc-a", "svc-b", "svc-c", "svc-d"):
        changes += world.register(inst(service, "i1"))
        received += texts(world.hub.drain(fast))
    assert ([change_text(c) for c in changes], True, False) == (received, slow.too_slow,
                                                                 fast.too_slow)


def test_max_queue_is_at_least_two() -> None:
    """A queue smaller than two could not hold a reload and a frame: it is raised to two."""
    assert 2 == PushHub(RUN, max_queue=0).max_queue


# --- draining --------------------------------------------------------------------------------

def test_drain_takes_frames_in_order_up_to_the_limit(world: World) -> None:
    """Without coalescing a drain takes the oldest `limit` frames and leaves the rest."""
    session = world.session("svc-a")
    changes = [c for n in range(5) for c in world.register(inst("svc-a", f"i{n}"))]
    first = texts(world.hub.drain(session, limit=3))
    rest = texts(world.hub.drain(session, limit=3))
    assert ([change_text(c) for c in changes[:3]], [change_text(c) for c in changes[3:]], []) == (
        first, rest, queued(session))


def test_coalescing_drain_keeps_the_last_frame_of_each_instance(world: World) -> None:
    """With coalescing, all queued frames are taken but only the last one of each instance is
    sent, in queue order."""
    session = world.session("svc-a", "svc-b")
    world.register(inst("svc-a", "i1"))  # 1
    world.register(inst("svc-a", "i2"))  # 2
    gone = world.unregister(inst("svc-a", "i1"))  # 3
    other = world.register(inst("svc-b", "i1"))  # 4: same instance id, other service
    again = world.register(inst("svc-a", "i2", port=9090))  # 5
    expected = ([change_text(gone[0]), change_text(other[0]), change_text(again[0])], [])
    assert expected == (texts(world.hub.drain(session, coalesce=True, limit=1)), queued(session))


def test_coalescing_drain_drops_a_service_before_its_reload(world: World) -> None:
    """With coalescing nothing of a service from before its reload is sent; other services
    and what came after the reload are."""
    session = world.session("svc-a", "svc-b")
    world.register(inst("svc-a", "i1"))
    other = world.register(inst("svc-b", "i1"))
    world.reload("svc-a")
    world.unregister(inst("svc-a", "i1"))  # before the second reload: dropped too
    reload = world.reload("svc-a")
    after = world.register(inst("svc-a", "i2"))
    expected = [change_text(other[0]), change_text(reload[0]), change_text(after[0])]
    assert expected == texts(world.hub.drain(session, coalesce=True))


def test_coalescing_drain_treats_an_instance_named_reload_as_an_instance(world: World) -> None:
    """An instance whose id is "reload" is an ordinary instance: its `new` is no reload, so
    the service's earlier frames of other instances are still sent."""
    session = world.session("svc-a")
    first = world.register(inst("svc-a", "i1"))
    named = world.register(inst("svc-a", "Reload"))
    expected = [change_text(first[0]), change_text(named[0])]
    assert expected == texts(world.hub.drain(session, coalesce=True))


# --- limits and closing ----------------------------------------------------------------------

def test_sessions_past_the_limit_are_refused() -> None:
    """max_sessions sessions open; one more raises Refused saying why and changes nothing."""
    hub = PushHub(RUN, max_sessions=2)
    first, second = hub.open(DISCOVERY, T0), hub.open(EVERYTHING, T0)
    with pytest.raises(Refused) as refused:
        hub.open(DISCOVERY, T0)
    assert ("this node already has 2 push sessions, its limit", {1: first, 2: second}) == (
        str(refused.value), hub.sessions)


def test_a_closed_session_frees_its_place() -> None:
    """Closing a session makes room for another one under max_sessions."""
    hub = PushHub(RUN, max_sessions=1)
    hub.close(hub.open(DISCOVERY, T0))
    session = hub.open(DISCOVERY, T0)
    assert {2: session} == hub.sessions


def test_subscriptions_past_the_limit_are_refused(world: World) -> None:
    """max_subscriptions services per session; a new one past it raises Refused and changes
    nothing, while subscribing again to one it has (any case) is fine."""
    world.hub.max_subscriptions = 2
    session = world.session("svc-a", "svc-b")
    with pytest.raises(Refused) as refused:
        world.subscribe(session, "svc-c", None)
    again = world.subscribe(session, "SVC-A", None)
    world.register(inst("svc-c", "i1"))
    assert ("a session subscribes to at most 2 services", 0, {"svc-a", "svc-b"}, 0, []) == (
        str(refused.value), again, session.services, world.hub.subscribers("svc-c"),
        queued(session))


def test_close_removes_the_session_from_routing(world: World) -> None:
    """A closed session is sent nothing more and counts nowhere; the others are unaffected."""
    closed, kept, everything = world.session("svc-a"), world.session("svc-a"), world.everything()
    first = world.register(inst("svc-a", "i1"))
    world.hub.close(closed)
    world.hub.close(everything)
    changes = world.registry.register([inst("svc-a", "i2")], world.now, WALL).changes
    woken = world.hub.publish(changes)
    expected = ({kept}, [], [], set(), {kept.id: kept}, 1,
                [change_text(first[0]), change_text(changes[0])])
    assert expected == (woken, queued(closed), queued(everything), closed.services,
                        world.hub.sessions, world.hub.subscribers("svc-a"), queued(kept))


def test_closing_twice_is_harmless(world: World) -> None:
    """close() of a session already closed changes nothing."""
    session = world.session("svc-a")
    world.hub.close(session)
    world.hub.close(session)
    assert ({}, 0) == (world.hub.sessions, world.hub.subscribers("svc-a"))


def test_repr_shows_the_state(world: World) -> None:
    """Hub and session reprs show their counts."""
    session = world.session("svc-a")
    world.register(inst("svc-a", "i1"))
    assert ("PushHub(sessions=1, services=1, everything=0)",
            "PushSession(1, discovery, services=1, queued=1, dropped=0)") == (
        repr(world.hub), repr(session))


# --- property: a resumed subscriber misses nothing -------------------------------------------

SERVICES = ("Svc-0", "svc-1", "SVC-2")
OPS = st.lists(st.one_of(
    st.tuples(st.just("register"), st.integers(0, 2), st.integers(0, 2), st.integers(1, 3)),
    st.tuples(st.just("unregister"), st.integers(0, 2), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("reload"), st.integers(0, 2), st.just(0), st.just(0)),
    st.tuples(st.just("sweep"), st.just(0), st.just(0), st.integers(1, 30)),
), max_size=40)


def apply(world: World, op: tuple[str, int, int, int]) -> list[Change]:
    kind, s, i, n = op
    service, instance = SERVICES[s], f"i{i}"
    if kind == "register":
        return world.register(inst(service, instance, port=8080 + n))
    if kind == "unregister":
        return world.unregister(inst(service, instance))
    if kind == "reload":
        return world.reload(service)
    return world.sweep(float(n))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[tuple[str, int, int, int]], int, int, int]:
    """(operations, disconnect before operation `cut`, resubscribe before operation `back`,
    change log size)."""
    ops = draw(OPS)
    cut = draw(st.integers(0, len(ops)))
    back = draw(st.integers(cut, len(ops)))
    return ops, cut, back, draw(st.integers(1, 6))


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_resubscribing_with_the_last_token_misses_nothing(
        scenario: tuple[list[tuple[str, int, int, int]], int, int, int]) -> None:
    """A subscriber that disconnects and later resubscribes with its last token gets, before
    and after, exactly an always-connected subscriber's frames while the log kept the missed
    changes, else one reload then the later frames; likewise for all-changes sessions."""
    ops, cut, back_at, log_size = scenario
    world = World(log_size=log_size)
    hub = world.hub
    always, always_all = world.session("svc-0"), world.everything()
    leaving, leaving_all = world.session("svc-0"), world.everything()
    changes: list[Change] = []
    before: list[str] = []
    before_all: list[str] = []
    after: list[str] = []
    after_all: list[str] = []
    resumed_at = -1
    reload_services: list[tuple[str, str]] = []
    back: PushSession | None = None
    back_all: PushSession | None = None
    for step in range(len(ops) + 1):
        if step == cut:  # disconnect: what was sent so far is all it saw
            before, before_all = texts(hub.drain(leaving)), texts(hub.drain(leaving_all))
            hub.close(leaving)
            hub.close(leaving_all)
        if step == back_at:
            last = json.loads(before[-1])["revision"] if before else hub.token(0)
            last_all = json.loads(before_all[-1])["revision"] if before_all else hub.token(0)
            resumed_at = world.registry.revision
            back, back_all = world.session(), world.everything()
            world.subscribe(back, "svc-0", last)
            hub.resume_all(back_all, last_all, world.registry.log, resumed_at, RELOAD_WALL,
                           world.services())
            reload_services = world.services()
        if step < len(ops):
            changes += apply(world, ops[step])
    assert back is not None
    assert back_all is not None
    after, after_all = texts(hub.drain(back)), texts(hub.drain(back_all))
    mine = [c for c in changes if c.service == "svc-0"]
    expected = [change_text(c) for c in mine]
    expected_all = [change_text(c) for c in changes]
    assert (expected, expected_all) == (texts(hub.drain(always)), texts(hub.drain(always_all)))
    oldest_kept = max(1, resumed_at - log_size + 1)  # the log holds oldest_kept..resumed_at

    def seen(frames: list[str]) -> int:
        return int(json.loads(frames[-1])["revision"].split(".")[1]) if frames else 0

    later = [change_text(c) for c in mine if c.revision > resumed_at]
    later_all = [change_text(c) for c in changes if c.revision > resumed_at]
    event("discovery: " + ("replayed" if seen(before) >= oldest_kept - 1 else "reloaded"))
    event("all changes: " + ("replayed" if seen(before_all) >= oldest_kept - 1 else "reloaded"))
    if seen(before) >= oldest_kept - 1:
        assert expected == before + after
    else:
        assert [reload_text("svc-0", resumed_at), *later] == after
    if seen(before_all) >= oldest_kept - 1:
        assert expected_all == before_all + after_all
    else:
        reloads = [reload_text(service_id, resumed_at) for _, service_id in reload_services]
        assert [*reloads, *later_all] == after_all
