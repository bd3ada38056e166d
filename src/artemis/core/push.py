"""Push: which session gets which change, in what order, and what happens when one falls behind.

Rules
  * A discovery session subscribes to services (by id, case-insensitively); an all-changes session
    gets every change of every service. Each session has one FIFO queue of frames, so changes reach
    it in registry (revision) order.
  * Every frame is an InstanceChange with one more key, `revision`: a token `"<run>.<n>"` naming the
    node's run and the change's revision. A session that subscribes with the last token it saw gets
    the changes of that service after it, from the change log; a token of another run, one that has
    left the log, or one that is not understood gets a `reload` of the service instead. Replay and
    subscription happen in one step, so nothing falls between them.
  * A queue never grows past `max_queue` frames: when it would, every service's queued frames are
    replaced by one `reload` of that service (the changes were dropped, the client fetches the
    service again). If even that does not fit, the session is marked too slow: the shell closes it.
  * With coalescing on, a drain keeps only the last frame of each instance, and nothing of a
    service from before its `reload`.
  * At most `max_sessions` sessions, and `max_subscriptions` services per session; more is refused.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Final

import msgspec

from artemis import wire
from artemis.core.versions import Change, ChangeLog
from artemis.wire import Instance

__all__ = ["DISCOVERY", "EVERYTHING", "Frame", "PushHub", "PushSession", "Refused",
           "reload_instance"]

DISCOVERY: Final = "discovery"
EVERYTHING: Final = "all"


class Refused(Exception):
    """A session or a subscription the hub will not take; the message says why."""


class Frame(msgspec.Struct, frozen=True, gc=False):
    service: str  # lower-case service id
    key: str  # lower-case instance id ("reload" for a reload: see `kind`)
    kind: str  # "new", "delete" or "reload"
    revision: int
    change_time: int  # epoch ms
    text: str  # the InstanceChange JSON with its revision token


class PushSession:
    """One WebSocket session's subscriptions and queue (the shell owns the socket)."""

    __slots__ = ("created", "dropped", "id", "kind", "queue", "services", "too_slow")

    def __init__(self, session_id: int, kind: str, created: float) -> None:
        self.id = session_id
        self.kind = kind
        self.created = created
        self.services: set[str] = set()
        self.queue: deque[Frame] = deque()
        self.dropped = 0  # frames replaced by reloads
        self.too_slow = False

    def __repr__(self) -> str:
        return (f"PushSession({self.id}, {self.kind}, services={len(self.services)}, "
                f"queued={len(self.queue)}, dropped={self.dropped})")


def reload_instance(service_id: str) -> bytes:
    """The original's fake instance of a reload change (§3.5)."""
    return wire.encode(Instance(service_id=service_id, instance_id="reload", ip="0.0.0.0",
                                url="http://serviceId/reload"))


class PushHub:
    """Sessions, subscriptions and queues of one node (rules in the module doc)."""

    def __init__(self, run_id: str, *, max_queue: int = 1000, max_sessions: int = 10_000,
                 max_subscriptions: int = 1000) -> None:
        self.run_id = run_id
        self.max_queue = max(2, max_queue)
        self.max_sessions = max_sessions
        self.max_subscriptions = max_subscriptions
        self.sessions: dict[int, PushSession] = {}
        self._by_service: dict[str, set[PushSession]] = {}
        self._everything: set[PushSession] = set()
        self._next_id = 0
        self.frames_queued = 0
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

    # --- subscribing ---------------------------------------------------------------------

    def subscribe(self, session: PushSession, service_id: str, token: str | None,
                  log: ChangeLog, revision: int, wall_ms: int) -> int:
        """Subscribe `session` to a service and queue what it missed since `token`: the
        service's changes from the log, or a reload. Returns how many frames were queued."""
        key = service_id.lower()
        if key not in session.services:
            if len(session.services) >= self.max_subscriptions:
                raise Refused(f"a session subscribes to at most {self.max_subscriptions} "
                              "services")
            session.services.add(key)
            self._by_service.setdefault(key, set()).add(session)
        if token is None:
            return 0
        return self._replay(session, token, log, revision, wall_ms, key, service_id)

    def resume_all(self, session: PushSession, token: str, log: ChangeLog, revision: int,
                   wall_ms: int, services: Iterable[tuple[str, str]]) -> int:
        """For an all-changes session: every change after `token`, or a reload of every
        service (lower-case key, id) when the token cannot be replayed."""
        since = self._since(token, log, revision)
        if since is None:
            count = 0
            for key, service_id in services:
                self._enqueue(session, self._reload(key, service_id, revision, wall_ms))
                count += 1
            return count
        count = 0
        for change in since:
            self._enqueue(session, self.frame(change))
            count += 1
        return count

    def _since(self, token: str, log: ChangeLog, revision: int) -> Iterable[Change] | None:
        start = self.revision_of(token)
        if start is None or start > revision:
            return None
        return log.since(start)

    def _replay(self, session: PushSession, token: str, log: ChangeLog, revision: int,
                wall_ms: int, key: str, service_id: str) -> int:
        since = self._since(token, log, revision)
        if since is None:
            self._enqueue(session, self._reload(key, service_id, revision, wall_ms))
            return 1
        count = 0
        for change in since:
            if change.service == key:
                self._enqueue(session, self.frame(change))
                count += 1
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
        """Queue each change for its service's subscribers and the all-changes sessions;
        return the sessions that have something new to send."""
        woken: set[PushSession] = set()
        everything = self._everything
        by_service = self._by_service
        for change in changes:
            subscribers = by_service.get(change.service)
            if not subscribers and not everything:
                continue
            frame = self.frame(change)
            for group in (subscribers or (), everything):
                for session in group:
                    self._enqueue(session, frame)
                    woken.add(session)
        return woken

    def _enqueue(self, session: PushSession, frame: Frame) -> None:
        queue = session.queue
        if len(queue) >= self.max_queue:
            self._compact(session)
            if len(queue) >= self.max_queue:
                if not session.too_slow:
                    session.too_slow = True
                    self.sessions_too_slow += 1
                return
        queue.append(frame)
        self.frames_queued += 1

    def _compact(self, session: PushSession) -> None:
        """Replace every service's queued frames by one reload of that service."""
        latest: dict[str, Frame] = {}
        names: dict[str, str] = {}
        for frame in session.queue:  # in revision order: the last one of a service is its latest
            latest[frame.service] = frame
            if frame.service not in names:
                names[frame.service] = _service_id(frame)
        dropped = len(session.queue)
        session.queue.clear()
        for service, frame in sorted(latest.items(), key=lambda item: item[1].revision):
            session.queue.append(self._reload(service, names[service], frame.revision,
                                              frame.change_time))
        session.dropped += dropped - len(session.queue)

    # --- draining ------------------------------------------------------------------------

    @staticmethod
    def drain(session: PushSession, coalesce: bool = False, limit: int = 256) -> list[Frame]:
        """Take up to `limit` frames to send (all queued ones when coalescing), in order."""
        queue = session.queue
        if not coalesce:
            return [queue.popleft() for _ in range(min(limit, len(queue)))]
        frames = list(queue)
        queue.clear()
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

    def __repr__(self) -> str:
        return (f"PushHub(sessions={len(self.sessions)}, services={len(self._by_service)}, "
                f"everything={len(self._everything)})")


def _service_id(frame: Frame) -> str:
    """The service id as the frame's instance names it."""
    data = msgspec.json.decode(frame.text)
    instance = data.get("instance") or {}
    return str(instance.get("serviceId") or frame.service)

