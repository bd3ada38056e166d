"""Push: which session gets which change, in what order, and what happens when one falls behind.

Rules
  * A discovery session subscribes to services (by id, case-insensitively); an all-changes session
    gets every change of every service. Each session has one FIFO queue of frames, so the changes
    of a service reach it in registry (revision) order.
  * Every frame is an InstanceChange with one more key, `revision`: a token `"<run>.<n>"` naming the
    node's run and the change's revision. A session that subscribes with the last token it saw gets
    the changes of that service after it, from the change log; a token of another run, one that has
    left the log, or one that is not understood gets a `reload` of the service instead.
  * A replay reads the log from the token on, at most `REPLAY_CHUNK` changes per step, and reaches
    its end in the step that finishes it. While it runs, the changes of the services it replays are
    not queued live: they are in the log, and the replay queues them in order. So nothing falls
    between replay and live changes, and no step's work grows with the log. (Every change is
    published in the step that records it in the log.) If what it still has to read leaves the log
    meanwhile, its services get a `reload` instead. A service whose latest change the caller knows
    to be no newer than the token needs no replay at all.
  * A queue holds at most `max_queue` frames and `max_bytes` bytes of frames. When a frame would
    pass either, every queued frame is moved into its service's pending `reload` (one per service,
    carrying the service's latest revision and change time; reloads are sent before the queued
    frames, so a service's later frames follow its reload). Each frame is moved at most once, so
    this is O(1) per change however far behind a session is. A reload counts as one frame and as
    its size. If no room is left even then, a frame whose service has a reload pending joins it; any
    other marks the session too slow: nothing more is queued for it and the shell closes it.
  * With coalescing on, a drain keeps only the last frame of each instance, and nothing of a
    service from before its `reload`.
  * At most `max_sessions` sessions, and `max_subscriptions` services per session; more is refused.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Final

import msgspec

from artemis import wire
from artemis.core.versions import Change, ChangeLog
from artemis.wire import Instance

__all__ = ["DISCOVERY", "EVERYTHING", "REPLAY_CHUNK", "Frame", "PushHub", "PushSession",
           "Recent", "Refused", "reload_instance"]

DISCOVERY: Final = "discovery"
EVERYTHING: Final = "all"
REPLAY_CHUNK: Final = 2000  # log entries a replay reads per step
# A service's latest changes' revisions and the revision after which they are all of its changes
# (ServiceState.recent and known_since).
Recent = tuple[Sequence[int], int]


class Refused(Exception):
    """A session or a subscription the hub will not take; the message says why."""


class Frame(msgspec.Struct, frozen=True, gc=False):
    service: str  # lower-case service id
    key: str  # lower-case instance id ("reload" for a reload: see `kind`)
    kind: str  # "new", "delete" or "reload"
    revision: int
    change_time: int  # epoch ms
    text: str  # the InstanceChange JSON with its revision token


class _Reload:
    """A service's pending reload: its queued frames were dropped, the client fetches it again."""

    __slots__ = ("change_time", "key", "revision", "service_id", "size")

    def __init__(self, key: str, service_id: str, revision: int, change_time: int,
                 size: int) -> None:
        self.key = key
        self.service_id = service_id
        self.revision = revision
        self.change_time = change_time
        self.size = size  # bytes counted for it


class _Replay:
    """A replay under way: the next revision to read, and what it queues."""

    __slots__ = ("cursor", "everything", "starts")

    def __init__(self, cursor: int, everything: bool) -> None:
        self.cursor = cursor
        self.everything = everything  # every change (an all-changes session)
        self.starts: dict[str, tuple[int, str]] = {}  # service -> (after revision, service id)

    def covers(self, service: str) -> bool:
        return self.everything or service in self.starts

    def __repr__(self) -> str:
        return (f"_Replay(cursor={self.cursor}, everything={self.everything}, "
                f"services={len(self.starts)})")


class PushSession:
    """One WebSocket session's subscriptions and queue (the shell owns the socket)."""

    __slots__ = ("created", "dropped", "id", "kind", "queue", "queued_bytes", "reload_order",
                 "reloads", "replay", "services", "too_slow")

    def __init__(self, session_id: int, kind: str, created: float) -> None:
        self.id = session_id
        self.kind = kind
        self.created = created
        self.services: set[str] = set()
        self.queue: deque[Frame] = deque()
        self.reloads: dict[str, _Reload] = {}  # pending reloads, sent before the queue
        self.reload_order: deque[_Reload] = deque()  # the same, in the order they are sent
        self.queued_bytes = 0  # of the queued frames and the pending reloads
        self.replay: _Replay | None = None
        self.dropped = 0  # frames replaced by reloads
        self.too_slow = False

    @property
    def waiting(self) -> int:
        """How many frames are waiting to be sent (queued frames and pending reloads)."""
        return len(self.queue) + len(self.reload_order)

    def __repr__(self) -> str:
        return (f"PushSession({self.id}, {self.kind}, services={len(self.services)}, "
                f"queued={len(self.queue)}, reloads={len(self.reloads)}, "
                f"bytes={self.queued_bytes}, dropped={self.dropped}, replaying={self.replay})")


def reload_instance(service_id: str) -> bytes:
    """The original's fake instance of a reload change (§3.5)."""
    return wire.encode(Instance(service_id=service_id, instance_id="reload", ip="0.0.0.0",
                                url="http://serviceId/reload"))


class PushHub:
    """Sessions, subscriptions and queues of one node (rules in the module doc)."""

    def __init__(self, run_id: str, *, max_queue: int = 1000, max_bytes: int = 16 * 1024 * 1024,
                 max_sessions: int = 10_000, max_subscriptions: int = 1000,
                 replay_chunk: int = REPLAY_CHUNK) -> None:
        self.run_id = run_id
        self.max_queue = max(2, max_queue)
        self.max_sessions = max_sessions
        self.max_subscriptions = max_subscriptions
        self.replay_chunk = max(1, replay_chunk)
        self.sessions: dict[int, PushSession] = {}
        self._by_service: dict[str, set[PushSession]] = {}
        self._everything: set[PushSession] = set()
        self._next_id = 0
        # a reload's frame is this long plus its service id (a 13-digit time, 12-digit revision)
        self._reload_size = len(self._reload("", "", 10**11, 10**12).text)
        self.max_bytes = max(2 * (self._reload_size + 256), max_bytes)
        self.frames_queued = 0
        self.frames_dropped = 0
        self.frames_replayed = 0
        self.sessions_too_slow = 0

    # --- sessions ------------------------------------------------------------------------

    def open(self, kind: str, now: float) -> PushSession:
        if len(self.sessions) >= self.max_sessions:
            raise Refused(f"this node already has {len(self.sessions)} push sessions, "
                          f"its limit")
        self._next_id += 1
        session = PushSession(self._next_id, kind, now)
        self.sessions[session.id] = session
        if kind == EVERYTHING:
            self._everything.add(session)
        return session

    def close(self, session: PushSession) -> None:
        self.sessions.pop(session.id, None)
        self._everything.discard(session)
        for service in session.services:
            subscribers = self._by_service.get(service)
            if subscribers is not None:
                subscribers.discard(session)
                if not subscribers:
                    del self._by_service[service]
        session.services.clear()
        session.queue.clear()
        session.reloads.clear()
        session.reload_order.clear()
        session.queued_bytes = 0
        session.replay = None

    def subscribers(self, service: str) -> int:
        return len(self._by_service.get(service.lower(), ())) + len(self._everything)

    # --- tokens --------------------------------------------------------------------------

    def token(self, revision: int) -> str:
        return f"{self.run_id}.{revision}"

    def revision_of(self, token: str | None) -> int | None:
        """The revision a token names, if it is one of this run; else None."""
        if not token:
            return None
        run, _, number = token.rpartition(".")
        if run != self.run_id or not (number.isascii() and number.isdigit()) or len(number) > 19:
            return None
        return int(number)

    # --- subscribing and replaying -------------------------------------------------------

    def subscribe(self, session: PushSession, service_id: str, token: str | None,
                  log: ChangeLog, revision: int, wall_ms: int,
                  changed_at: int | None = None, recent: Recent | None = None) -> int:
        """Subscribe `session` to a service and queue what it missed since `token`: the
        service's changes from the log, or a reload. `changed_at`, when known, is the revision
        of the service's latest change (a token not older needs no replay); `recent`, when
        known, the revisions of its latest changes and since when they are all of them (then a
        session with no replay under way is sent them at once, without reading the log).
        Otherwise the replay's first step runs now (`replay` runs the others). Returns how many
        frames were queued."""
        key = service_id.lower()
        if key not in session.services:
            if len(session.services) >= self.max_subscriptions:
                raise Refused(f"a session subscribes to at most {self.max_subscriptions} "
                              "services")
            session.services.add(key)
            self._by_service.setdefault(key, set()).add(session)
        if token is None:
            return 0
        start = self._start(token, log, revision)
        replay = session.replay
        if start is None:
            if replay is not None:
                replay.starts.pop(key, None)  # the reload replaces what it still had to queue
            return self._enqueue(session, self._reload(key, service_id, revision, wall_ms))
        if start >= revision or (changed_at is not None and changed_at <= start
                                 and not (replay is not None and key in replay.starts)):
            return 0
        if replay is None and recent is not None and start >= recent[1]:
            changes = [log.at(r) for r in recent[0] if r > start]
            if None not in changes:
                count = 0
                for change in changes:
                    count += self._enqueue(session, self.frame(change))  # type: ignore[arg-type]
                    if session.too_slow:
                        break
                self.frames_replayed += count
                return count
        replay = self._replay_from(session, start, everything=False)
        replay.starts[key] = (start, service_id)
        return self.replay(session, log, revision, wall_ms)

    def resume_all(self, session: PushSession, token: str, log: ChangeLog, revision: int,
                   wall_ms: int, services: Iterable[tuple[str, str]]) -> int:
        """For an all-changes session: every change after `token`, or a reload of every
        service (lower-case key, id) when the token cannot be replayed. The replay's first
        step runs now (`replay` runs the others); returns how many frames were queued."""
        start = self._start(token, log, revision)
        if start is None:
            session.replay = None
            return self._reload_all(session, services, revision, wall_ms)
        if start >= revision:
            return 0
        self._replay_from(session, start, everything=True)
        return self.replay(session, log, revision, wall_ms, services)

    def replay(self, session: PushSession, log: ChangeLog, revision: int, wall_ms: int,
               services: Iterable[tuple[str, str]] = ()) -> int:
        """One step of the session's replay: read at most `replay_chunk` changes of the log
        and queue those it replays; the replay ends when it reads the log's last change.
        `services` (key, id) are reloaded if an all-changes replay lost its place in the log.
        Returns how many frames were queued."""
        replay = session.replay
        if replay is None:
            return 0
        if session.too_slow:
            session.replay = None
            return 0
        since = log.since(replay.cursor - 1)
        if since is None:  # what it still had to read has left the log
            session.replay = None
            if replay.everything:
                return self._reload_all(session, services, revision, wall_ms)
            count = 0
            for key, (_, service_id) in replay.starts.items():
                count += self._enqueue(session, self._reload(key, service_id, revision,
                                                             wall_ms))
            return count
        count = read = 0
        everything, starts = replay.everything, replay.starts
        for change in islice(since, self.replay_chunk):
            read += 1
            if not everything:
                start = starts.get(change.service)
                if start is None or change.revision <= start[0]:
                    continue
            count += self._enqueue(session, self.frame(change))
            if session.too_slow:
                session.replay = None
                break
        replay.cursor += read
        if read < self.replay_chunk:
            session.replay = None  # it read the last change: from now on changes come live
        self.frames_replayed += count
        return count

    def _start(self, token: str, log: ChangeLog, revision: int) -> int | None:
        """The revision a replay starts after, or None if it cannot replay (a reload then)."""
        start = self.revision_of(token)
        if start is None or start > revision:
            return None
        first = log.first_revision
        if first is not None and start < first - 1:
            return None  # some of the changes after it have left the log
        return start

    @staticmethod
    def _replay_from(session: PushSession, start: int, *, everything: bool) -> _Replay:
        """The session's replay, made to read from `start` on: a replay already under way goes
        back to there, its services going on from where it had got to."""
        replay = session.replay
        if replay is None:
            replay = session.replay = _Replay(start + 1, everything)
        elif start + 1 < replay.cursor:
            read = replay.cursor - 1
            replay.starts = {key: (max(after, read), service_id)
                             for key, (after, service_id) in replay.starts.items()}
            replay.cursor = start + 1
        replay.everything = replay.everything or everything
        return replay

    def _reload_all(self, session: PushSession, services: Iterable[tuple[str, str]],
                    revision: int, wall_ms: int) -> int:
        count = 0
        for key, service_id in services:
            count += self._enqueue(session, self._reload(key, service_id, revision, wall_ms))
            if session.too_slow:
                break
        return count

    # --- publishing ----------------------------------------------------------------------

    def frame(self, change: Change) -> Frame:
        text = b"".join((change.encode()[:-1], b',"revision":"',
                         self.token(change.revision).encode(), b'"}')).decode()
        return Frame(change.service, change.key, change.kind, change.revision, change.change_time,
                     text)

    def _reload(self, key: str, service_id: str, revision: int, wall_ms: int) -> Frame:
        text = b"".join((b'{"changeTime":', str(wall_ms).encode(),
                         b',"changeType":"reload","instance":', reload_instance(service_id),
                         b',"revision":"', self.token(revision).encode(), b'"}')).decode()
        return Frame(key, "reload", "reload", revision, wall_ms, text)

    def publish(self, changes: Sequence[Change]) -> set[PushSession]:
        """Queue each change for its service's subscribers and the all-changes sessions
        (except those replaying its service: their replay queues it); return the sessions
        that have something new to send."""
        woken: set[PushSession] = set()
        everything = self._everything
        by_service = self._by_service
        for change in changes:
            subscribers = by_service.get(change.service)
            if not subscribers and not everything:
                continue
            frame: Frame | None = None
            for group in (subscribers or (), everything):
                for session in group:
                    replay = session.replay
                    if replay is not None and replay.covers(change.service):
                        continue
                    if frame is None:
                        frame = self.frame(change)
                    self._enqueue(session, frame)
                    woken.add(session)
        return woken

    def _enqueue(self, session: PushSession, frame: Frame) -> int:
        """Queue one frame (see the rules for a full queue); 1 if it was queued or joined its
        service's reload, 0 if the session is too slow."""
        if session.too_slow:
            return 0
        size = len(frame.text)
        queue = session.queue
        if (len(queue) + len(session.reload_order) >= self.max_queue
                or session.queued_bytes + size > self.max_bytes):
            self._collapse(session)
            if (len(session.reload_order) >= self.max_queue
                    or session.queued_bytes + size > self.max_bytes):
                return self._join_reload(session, frame)
        queue.append(frame)
        session.queued_bytes += size
        self.frames_queued += 1
        return 1

    def _collapse(self, session: PushSession) -> None:
        """Move every queued frame into its service's pending reload: O(frames moved)."""
        queue = session.queue
        dropped = 0
        for frame in queue:
            session.queued_bytes -= len(frame.text)
            if self._add_to_reload(session, frame):
                dropped += 1
        queue.clear()
        session.dropped += dropped
        self.frames_dropped += dropped

    def _join_reload(self, session: PushSession, frame: Frame) -> int:
        """A frame with no room in the queue joins its service's reload, if there is room for
        that; else the session is too slow."""
        if frame.service not in session.reloads and (
                len(session.reload_order) >= self.max_queue
                or session.queued_bytes + self._reload_size + len(frame.service)
                > self.max_bytes):
            session.too_slow = True
            self.sessions_too_slow += 1
            return 0
        if self._add_to_reload(session, frame):
            session.dropped += 1
            self.frames_dropped += 1
        return 1

    def _add_to_reload(self, session: PushSession, frame: Frame) -> bool:
        """Fold a frame into its service's pending reload; True if the reload was already
        pending (the frame is dropped), False if this made it."""
        reload = session.reloads.get(frame.service)
        if reload is not None:
            reload.revision, reload.change_time = frame.revision, frame.change_time
            return True
        service_id = _service_id(frame)
        reload = _Reload(frame.service, service_id, frame.revision, frame.change_time,
                         self._reload_size + len(service_id.encode()))
        session.reloads[frame.service] = reload
        session.reload_order.append(reload)
        session.queued_bytes += reload.size
        return False

    # --- draining ------------------------------------------------------------------------

    def drain(self, session: PushSession, coalesce: bool = False,
              limit: int = 256) -> list[Frame]:
        """Take up to `limit` frames to send (all waiting ones when coalescing), in order:
        pending reloads first, then queued frames."""
        order, queue = session.reload_order, session.queue
        take = session.waiting if coalesce else min(limit, session.waiting)
        frames: list[Frame] = []
        while order and len(frames) < take:
            reload = order.popleft()
            del session.reloads[reload.key]
            session.queued_bytes -= reload.size
            frames.append(self._reload(reload.key, reload.service_id, reload.revision,
                                       reload.change_time))
        while queue and len(frames) < take:
            frame = queue.popleft()
            session.queued_bytes -= len(frame.text)
            frames.append(frame)
        return _coalesce(frames) if coalesce else frames

    def peek(self, session: PushSession) -> list[Frame]:
        """Every frame waiting for the session, in the order a drain takes them, left waiting."""
        return [*(self._reload(r.key, r.service_id, r.revision, r.change_time)
                  for r in session.reload_order), *session.queue]

    def __repr__(self) -> str:
        return (f"PushHub(sessions={len(self.sessions)}, services={len(self._by_service)}, "
                f"everything={len(self._everything)})")


def _coalesce(frames: list[Frame]) -> list[Frame]:
    """The last frame of each instance, and nothing of a service from before its reload."""
    last: dict[tuple[str, str, bool], int] = {}
    reloaded: dict[str, int] = {}
    for position, frame in enumerate(frames):
        is_reload = frame.kind == "reload"
        last[(frame.service, frame.key, is_reload)] = position
        if is_reload:
            reloaded[frame.service] = position
    return [frame for position, frame in enumerate(frames)
            if last[(frame.service, frame.key, frame.kind == "reload")] == position
            and position >= reloaded.get(frame.service, -1)]


class _ServiceOf(msgspec.Struct, rename={"service_id": "serviceId"}):
    service_id: str | None = None


class _Named(msgspec.Struct):
    instance: _ServiceOf | None = None


_named: Final = msgspec.json.Decoder(_Named)


def _service_id(frame: Frame) -> str:
    """The service id as the frame's instance names it (only that key is decoded)."""
    try:
        instance = _named.decode(frame.text).instance
    except msgspec.DecodeError:
        return frame.service
    return (instance.service_id if instance is not None else None) or frame.service
