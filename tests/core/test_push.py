"""The push hub: routing, revision tokens, replay and reload, bounded queues, coalescing, limits."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from artemis.core import subscriptions as push_module
from artemis.core.registry import Registry, RegistryConfig
from artemis.core.subscriptions import DISCOVERY, EVERYTHING, Frame, PushHub, PushSession, Refused
from artemis.core.versions import Change, ChangeLog
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
    """What waits for the session (pending reloads, then queued frames), left waiting."""
    return texts(PushHub(RUN).peek(session))


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

    def step(self, session: PushSession) -> int:
        """One step of the session's replay, at the current revision."""
        return self.hub.replay(session, self.registry.log, self.registry.revision, RELOAD_WALL,
                               self.services())

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


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The services whose id the hub read back from a frame (the work of a queue overflow)."""
    seen: list[str] = []
    original = push_module._service_id

    def counting(frame: Frame) -> str:
        seen.append(frame.service)
        return original(frame)

    monkeypatch.setattr(push_module, "_service_id", counting)
    return seen


def test_burst_past_the_queue_reads_each_frame_once(decodes: list[str]) -> None:
    """5,000 changes of 5,000 services in one batch to an all-changes queue of 1,000: the
    1,000 queued frames become 1,000 reloads, each frame read once, the session is too slow, and
    the 4,000 frames after that cost nothing more."""
    world = World(max_queue=1000)
    session = world.everything()
    world.register(*(inst(f"svc-{n}", "i1") for n in range(5000)))
    expected = (1000, [f"svc-{n}" for n in range(1000)], True, 1,
                reload_text("svc-999", 1000, WALL + 1000), 0)
    assert expected == (session.waiting, decodes, session.too_slow,
                        world.hub.sessions_too_slow, queued(session)[-1], session.dropped)


def test_backlog_of_a_few_services_reads_each_service_once(decodes: list[str]) -> None:
    """A session that never drains while 9 services change 300 times, with a queue of 10, holds
    one reload per service (its latest change but the newest) and the newest frame; each
    service's id was read once, however long the backlog grew."""
    world = World(max_queue=10)
    session = world.session(*(f"svc-{k}" for k in range(9)))
    changes = [c for r in range(1, 301)
               for c in world.register(inst(f"svc-{(r - 1) % 9}", "i1", port=8080 + r))]
    latest = {k: max(r for r in range(1, 300) if (r - 1) % 9 == k) for k in range(9)}
    expected = ([*(reload_text(f"svc-{k}", latest[k], WALL + 1000 * latest[k])
                   for k in range(9)), change_text(changes[-1])],
                [f"svc-{k}" for k in range(9)], 290, False)
    assert expected == (queued(session), decodes, session.dropped, session.too_slow)


def test_queue_past_its_bytes_becomes_reloads_and_drains_to_zero_bytes() -> None:
    """With room for six frames' bytes, a seventh turns the six into one reload of their
    service and is queued after it; once drained, the session holds no bytes."""
    size = len(change_text(World().register(inst("svc-a", "i1", port=8081))[0]))
    world = World(max_bytes=6 * size + 10)
    session = world.session("svc-a")
    changes = [c for n in range(1, 8) for c in world.register(inst("svc-a", "i1", port=8080 + n))]
    before = (queued(session), session.dropped, session.queued_bytes)
    drained = texts(world.hub.drain(session))
    expected = ([reload_text("svc-a", 6, WALL + 6000), change_text(changes[6])], 5,
                world.hub._reload_size + len("svc-a") + size)
    assert (expected, expected[0], 0) == (before, drained, session.queued_bytes)


def test_frame_larger_than_the_byte_bound_becomes_a_reload() -> None:
    """A frame bigger than ws_send_queue_bytes itself is sent as a reload of its service."""
    world = World(max_bytes=0)  # raised to the least that holds two reloads
    session = world.session("svc-a")
    big = Instance(instance_id="i1", ip="10.0.0.1", port=80, service_id="Svc-A",
                   url="http://10.0.0.1/", region_id="SHA", zone_id="zone-1",
                   metadata={f"k{n}": "x" * 1000 for n in range(5)})
    world.register(big)
    assert ([reload_text("Svc-A", 1, WALL + 1000)], False) == (queued(session),
                                                               session.too_slow)


def test_frames_after_a_reload_follow_it_and_later_ones_join_it_when_full(
        decodes: list[str]) -> None:
    """When even reloads fill the queue, a frame of a service with a reload pending joins that
    reload (its revision moves on) instead of closing the session."""
    world = World(max_queue=2)
    session = world.everything()
    world.register(inst("svc-a", "i1"))
    world.register(inst("svc-b", "i1"))
    world.register(inst("svc-a", "i2"))  # queue full: a and b become reloads, no room after
    world.register(inst("svc-b", "i2"))
    expected = ([reload_text("svc-a", 3, WALL + 3000), reload_text("svc-b", 4, WALL + 4000)],
                False, 2, ["svc-a", "svc-b"])
    assert expected == (queued(session), session.too_slow, session.dropped, decodes)


# --- draining --------------------------------------------------------------------------------

def test_drain_takes_reloads_first_then_frames_up_to_the_limit() -> None:
    """Pending reloads are taken first, then queued frames, `limit` at a time (with a queue of
    3: a1 b1 a2 become reloads at b2, which then joins b's reload at a3)."""
    world = World(max_queue=3)
    session = world.session("svc-a", "svc-b")
    changes = [*world.register(inst("svc-a", "i1")), *world.register(inst("svc-b", "i1")),
               *world.register(inst("svc-a", "i2")), *world.register(inst("svc-b", "i2")),
               *world.register(inst("svc-a", "i3"))]
    first = texts(world.hub.drain(session, limit=2))
    rest = texts(world.hub.drain(session, limit=2))
    expected = ([reload_text("svc-a", 3, WALL + 3000), reload_text("svc-b", 4, WALL + 4000)],
                [change_text(changes[4])], 0)
    assert expected == (first, rest, session.waiting)


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


# --- replay in steps ---------------------------------------------------------------------------

def test_replay_reads_the_log_in_steps_and_live_changes_wait_for_it() -> None:
    """A replay reads `replay_chunk` log entries per step; a change of its service published
    meanwhile is queued by the replay, in order and once, and after the last step changes are
    queued live again."""
    world = World(replay_chunk=2)
    missed = [c for n in range(3) for c in (*world.register(inst("svc-a", f"i{n}")),
                                            *world.register(inst("svc-b", f"i{n}")))]
    session = world.hub.open(DISCOVERY, T0)
    counts = [world.subscribe(session, "svc-a", "run1.0")]  # reads revisions 1, 2
    during = world.register(inst("svc-a", "i9"))  # revision 7: left to the replay
    while session.replay is not None:
        counts.append(world.step(session))
    after = world.register(inst("svc-a", "i10"))  # live
    mine = [c for c in [*missed, *during] if c.service == "svc-a"]
    expected = ([1, 1, 1, 1], [change_text(c) for c in [*mine, *after]])
    assert expected == (counts, queued(session))


def test_replay_that_loses_its_place_in_the_log_sends_a_reload() -> None:
    """If the changes a replay has still to read leave the log between two steps, its service
    gets one reload at the current revision, then live changes."""
    world = World(log_size=3, replay_chunk=1)
    first = world.register(inst("svc-a", "i1"))
    world.register(inst("svc-a", "i2"))
    session = world.hub.open(DISCOVERY, T0)
    world.subscribe(session, "svc-a", "run1.0")  # reads revision 1
    for n in range(3, 7):
        world.register(inst("svc-a", f"i{n}"))  # revision 2 leaves the log
    world.step(session)
    after = world.register(inst("svc-a", "i7"))
    expected = ([change_text(first[0]), reload_text("svc-a", 6), change_text(after[0])], None)
    assert expected == (queued(session), session.replay)


def test_all_changes_replay_that_loses_its_place_reloads_every_service() -> None:
    """An all-changes replay whose place leaves the log reloads every service it is given."""
    world = World(log_size=2, replay_chunk=1)
    first = world.register(inst("svc-a", "i1"))
    world.register(inst("svc-b", "i1"))
    session = world.everything()
    world.hub.resume_all(session, "run1.0", world.registry.log, world.registry.revision,
                         RELOAD_WALL, world.services())
    world.register(inst("svc-c", "i1"), inst("svc-c", "i2"))
    world.step(session)
    expected = [change_text(first[0]), reload_text("svc-a", 4), reload_text("svc-b", 4),
                reload_text("svc-c", 4)]
    assert expected == queued(session)


def test_subscribing_during_a_replay_goes_back_without_repeating_frames() -> None:
    """A second subscription with an older token while a replay is under way reads the log
    again from there: the first service's frames are not repeated, the second's all come."""
    world = World(replay_chunk=1)
    changes = [c for n in range(3) for c in (*world.register(inst("svc-a", f"i{n}")),
                                             *world.register(inst("svc-b", f"i{n}")))]
    session = world.hub.open(DISCOVERY, T0)
    world.subscribe(session, "svc-a", "run1.0")
    world.step(session)
    world.step(session)  # read revisions 1..3
    world.subscribe(session, "svc-b", "run1.0")
    while session.replay is not None:
        world.step(session)
    by_service = {s: [change_text(c) for c in changes if c.service == s]
                  for s in ("svc-a", "svc-b")}
    frames = queued(session)
    assert (by_service["svc-a"], by_service["svc-b"]) == (
        [f for f in frames if '"serviceId":"svc-a"' in f],
        [f for f in frames if '"serviceId":"svc-b"' in f])


class UnreadableLog(ChangeLog):
    """A change log a test forbids reading past its first revision."""

    def since(self, revision: int) -> Any:
        raise AssertionError("the log was read")


def test_service_unchanged_since_the_token_reads_no_log(world: World) -> None:
    """A subscription whose token is not older than the service's latest change (the caller
    knows it) queues nothing and reads no log; an older one replays."""
    world.register(inst("svc-a", "i1"))
    later = world.register(inst("svc-b", "i1"), inst("svc-a", "i2"))
    log = UnreadableLog(10)
    log.append(later[0])
    quiet, busy = world.hub.open(DISCOVERY, T0), world.hub.open(DISCOVERY, T0)
    counts = (world.hub.subscribe(quiet, "svc-b", "run1.2", log, 3, RELOAD_WALL, changed_at=2),
              world.hub.subscribe(busy, "svc-a", "run1.1", world.registry.log, 3, RELOAD_WALL,
                                  changed_at=3))
    assert ((0, 1), [], [change_text(later[1])], None) == (counts, queued(quiet), queued(busy),
                                                             quiet.replay)


def resume(world: World, session: PushSession, service: str, token: str) -> int:
    """Subscribe as the push server does: with what the service's state knows of its changes."""
    state = world.registry.services[service]
    return world.hub.subscribe(session, service, token, world.registry.log,
                               world.registry.revision, RELOAD_WALL, changed_at=state.revision,
                               recent=(state.recent, state.known_since))


def test_a_resume_its_services_recent_changes_cover_reads_no_log() -> None:
    """A resume from a revision after which the service's state knows every change of it is
    sent exactly those changes, in order, at once, without reading the log (which other
    services' changes fill meanwhile); one from before that replays from the log, with the same
    frames a resume reading the log would send."""
    world = World()
    world.registry.log = UnreadableLog(200_000)
    world.register(inst("svc-a", "i1"))  # revision 1
    world.register(*(inst(f"svc-{n}", "i1") for n in range(200)))  # 2-201
    later = world.register(inst("svc-a", "i2")) + world.unregister(inst("svc-a", "i1"))
    covered = world.hub.open(DISCOVERY, world.now)
    count = resume(world, covered, "svc-a", "run1.1")
    assert (2, [change_text(change) for change in later], None) == (
        count, queued(covered), covered.replay)


def test_a_resume_from_before_what_the_state_knows_replays_the_log() -> None:
    world = World()
    first = world.register(inst("svc-a", "i0"))
    changes = [world.register(inst("svc-a", f"i{n}"))[0] for n in range(1, 21)]
    state = world.registry.services["svc-a"]
    session = world.hub.open(DISCOVERY, world.now)
    count = resume(world, session, "svc-a", "run1.1")
    while session.replay is not None:
        count += world.step(session)
    assert (8, changes[11].revision, 20, [change_text(change) for change in changes], 1) == (
        len(state.recent), state.known_since, count, queued(session), first[0].revision)


def test_all_changes_resume_with_too_many_services_stops_at_the_queue(
        decodes: list[str]) -> None:
    """An unusable all-changes token with more services than the queue holds reloads until it
    is full, marks the session too slow, and reads no further service."""
    world = World(max_queue=10)
    world.register(*(inst(f"svc-{n}", "i1") for n in range(100)))
    session = world.everything()
    read: list[str] = []

    def services() -> Any:
        for key, service_id in world.services():
            read.append(key)
            yield key, service_id

    world.hub.resume_all(session, "run0.1", world.registry.log, world.registry.revision,
                         RELOAD_WALL, services())
    assert (True, 10, 11, 10) == (session.too_slow, session.waiting, len(read), len(decodes))


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
            "PushSession(1, discovery, services=1, queued=1, reloads=0, bytes=317, dropped=0, "
            "replaying=None)") == (
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


HUB_WALL = 7  # the change time of the reloads the hub makes in the stepped property below


def by_service(frames: list[str]) -> dict[str, list[str]]:
    """Frames grouped by their service, in order."""
    grouped: dict[str, list[str]] = {}
    for text in frames:
        grouped.setdefault(json.loads(text)["instance"]["serviceId"].lower(), []).append(text)
    return grouped


def hub_reload(text: str) -> int | None:
    """The revision of a reload the hub made (not one of the registry's), else None."""
    frame = json.loads(text)
    return int(frame["revision"].split(".")[1]) if frame["changeTime"] == HUB_WALL else None


def check_resumed(got: list[str], changes: list[Change], reloaded_all: int | None = None) -> str:
    """One service's frames from a subscriber that resumed: exactly its changes, or, if the
    hub sent a reload, exactly its changes up to some point, the reload at revision R, then
    exactly its changes after R. When an all-changes session was sent a reload of every service
    at revision `reloaded_all`, a service it did not name (it had no instances then) gets a
    prefix of its changes and then exactly those after that revision. Names which it was."""
    exact = [change_text(c) for c in changes]
    reloads = [n for n, text in enumerate(got) if hub_reload(text) is not None]
    if reloads:
        last = reloads[-1]
        revision = hub_reload(got[last])
        assert exact[:last] == got[:last]
        assert [change_text(c) for c in changes if c.revision > (revision or 0)] == got[last + 1:]
        return "reloaded"
    if reloaded_all is None:
        assert exact == got
        return "replayed"
    tail = [change_text(c) for c in changes if c.revision > reloaded_all]
    head = got[:len(got) - len(tail)]
    assert (exact[:len(head)], tail) == (head, got[len(head):])
    return "vanished before a reload of every service"


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.integers(1, 3))
def test_resuming_with_a_replay_in_steps_misses_and_repeats_nothing(
        scenario: tuple[list[tuple[str, int, int, int]], int, int, int], chunk: int) -> None:
    """With a replay reading `chunk` log entries per step and one step after each operation,
    a resumed subscriber gets each service's changes exactly, in order, once; or, where the
    replay lost its place in the log, a prefix of them, one reload, and exactly what followed
    the reload; likewise for all-changes sessions."""
    ops, cut, back_at, log_size = scenario
    world = World(log_size=log_size, replay_chunk=chunk)
    hub, log = world.hub, world.registry.log
    leaving, leaving_all = world.session("svc-0"), world.everything()
    back, back_all = world.hub.open(DISCOVERY, T0), world.hub.open(DISCOVERY, T0)
    changes: list[Change] = []
    before: list[str] = []
    before_all: list[str] = []
    reloaded_all: list[int] = []  # the revision at which every service was reloaded

    def services() -> Iterator[tuple[str, str]]:
        reloaded_all.append(world.registry.revision)  # runs only if the hub reads them
        yield from world.services()

    def step() -> None:
        for session in (back, back_all):
            hub.replay(session, log, world.registry.revision, HUB_WALL, services())

    for n in range(len(ops) + 1):
        if n == cut:
            before, before_all = texts(hub.drain(leaving)), texts(hub.drain(leaving_all))
            hub.close(leaving)
            hub.close(leaving_all)
        if n == back_at:
            last = json.loads(before[-1])["revision"] if before else hub.token(0)
            last_all = json.loads(before_all[-1])["revision"] if before_all else hub.token(0)
            hub.subscribe(back, "Svc-0", last, log, world.registry.revision, HUB_WALL)
            back_all = world.everything()
            hub.resume_all(back_all, last_all, log, world.registry.revision, HUB_WALL,
                           services())
        if n < len(ops):
            changes += apply(world, ops[n])
            step()
    while back.replay is not None or back_all.replay is not None:
        step()
    mine = by_service(before + texts(hub.drain(back))).get("svc-0", [])
    event("discovery: " + check_resumed(mine, [c for c in changes if c.service == "svc-0"]))
    every = by_service(before_all + texts(hub.drain(back_all)))
    for service in {c.service for c in changes} | set(every):
        event("all changes: " + check_resumed(every.get(service, []),
                                              [c for c in changes if c.service == service],
                                              reloaded_all[0] if reloaded_all else None))
