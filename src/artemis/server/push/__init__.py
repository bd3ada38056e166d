"""The WebSocket endpoints: push of instance changes, and heartbeats (§4.11).

  /ws/discovery/instance-change      the client sends DiscoveryConfig frames (optionally with
                                     `revision`, the last token it saw); it is sent InstanceChange
                                     frames of those services
  /ws/discovery/all-instance-change  every change of every service (a frame with `revision`
                                     resumes from it)
  /ws/registry/heartbeat             each HeartbeatRequest frame is answered by one
                                     HeartbeatResponse frame, exactly as heartbeat.json answers;
                                     the writer (the bearer token of the upgrade request, else
                                     the client's address) is decided once, at the handshake: a
                                     refused one (registration_mode token without a register
                                     token, an unknown token) is sent a no-permission error
                                     frame and closed (4003); each frame's instances are held
                                     to the token's scope

Closing: a session is closed when it reaches its maximum age (the client reconnects, to any node),
when the node shuts down, for a binary frame, a frame too large, too many sessions, or a subscriber
too slow to keep up. Before a close for a reason other than age or shutdown, the session is sent an
error frame `{"responseStatus": {...}}` whose message names the reason and the close code meant
(1003, 1009, 1013, 4003, 4008). Granian's RSGI interface sends no code or reason in the close frame
itself (clients see 1005, "no status"), so the error frame is where a client reads why; age and
shutdown closes send no frame, since the Java SDK reads every frame as an InstanceChange.
A malformed or refused subscription gets an error frame and the session goes on.

The core decides what is queued for each push session (artemis.core.subscriptions); the server
sends it, one frame under way per session, from callbacks rather than a task per session (see
the sending section of PushServer). A resume is replayed by the session's handler in bounded
steps, the loop given back between them, before it reads the next frame. Sessions stuck in a
send and sessions past their age are closed by a sweeper every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Final

from artemis import wire
from artemis.core.subscriptions import (
    DISCOVERY,
    EVERYTHING,
    Frame,
    PushHub,
    PushSession,
    Refused,
)
from artemis.core.versions import Change
from artemis.server.api.registry import InstancesOperation, client_address
from artemis.server.http import BadRequest, SendFuture, WebSocket, WsHandler, status_bytes
from artemis.server.node import Node
from artemis.wire import ErrorCode

__all__ = ["PushServer"]

log = logging.getLogger("artemis.push")

CLOSE_AGE: Final = 1000
CLOSE_SHUTDOWN: Final = 1001
CLOSE_BINARY: Final = 1003
CLOSE_TOO_BIG: Final = 1009
CLOSE_FULL: Final = 1013
CLOSE_TOO_SLOW: Final = 4008
CLOSE_FORBIDDEN: Final = 4003
SEND_STEP: Final = 0.004  # seconds of sends started before the loop is given back


def error_frame(code: str, message: str, close: int | None = None) -> str:
    """An error answer on a WebSocket; with `close`, the message says the session closes."""
    if close is not None:
        message = f"{message} (session closed, code {close})"
    return (b'{"responseStatus":' + status_bytes(code, message) + b"}").decode()


class _Session:
    """The shell's side of one WebSocket session: its socket and, for push, where its sending
    stands. A push session has no task of its own: the server sends its frames one at a time
    from callbacks (see PushServer's sending section), so an idle session is a few objects."""

    __slots__ = ("at", "batch", "closed", "closing", "created", "hooked", "kind", "push",
                 "ready", "sending", "sending_since", "ws")

    def __init__(self, ws: WebSocket, kind: str, push: PushSession | None,
                 created: float = 0.0) -> None:
        self.ws = ws
        self.kind = kind
        self.push = push
        self.created = created  # the node's monotonic clock when the session opened
        self.batch: Sequence[Frame] = ()  # frames drained from the hub, sent from `at` on
        self.at = 0
        self.ready = False  # waiting in the server's ready queue (or its coalescing timer)
        self.sending: SendFuture | None = None  # the last send started, until it is settled
        self.sending_since = 0.0  # monotonic time it started
        self.hooked = False  # its end calls the server back (to send what waits behind it)
        self.closed = False
        self.closing: asyncio.Task[None] | None = None  # last words being sent before a close

    def close(self, code: int, frame: str | None = None) -> None:
        """Close now; `frame` (an error frame) is sent first, after a send under way, if the
        socket takes both within a second."""
        if self.closed:
            return
        self.closed = True
        self.batch = ()
        if frame is not None:
            self.closing = asyncio.ensure_future(self._last_words(code, frame))
            self.closing.add_done_callback(lambda t: t.cancelled() or t.exception())
            return
        self.ws.close(code)

    async def _last_words(self, code: int, frame: str) -> None:
        try:
            async with asyncio.timeout(1.0):
                sending = self.sending
                if sending is not None and not sending.done():  # it goes after that frame
                    idle = asyncio.get_running_loop().create_future()
                    sending.add_done_callback(functools.partial(_resolve, idle))
                    await idle
                await self.ws.send(frame)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self.ws.close(code)


def _resolve(idle: asyncio.Future[None], _: object) -> None:
    if not idle.done():
        idle.set_result(None)


class PushServer:
    """The three WebSocket endpoints of one node. The composition root hands it the node's
    changes (`on_changes`), runs `sweep` every second and `close_all` when the node stops.
    Every time it keeps (session age, a send under way) is the node's monotonic clock."""

    def __init__(self, node: Node, heartbeat: InstancesOperation) -> None:
        s = node.settings
        self.node = node
        self.heartbeat_op = heartbeat
        self.hub = PushHub(secrets.token_hex(8), max_queue=s.ws_send_queue,
                           max_bytes=s.ws_send_queue_bytes, max_sessions=s.ws_max_sessions,
                           max_subscriptions=s.ws_max_subscriptions)
        self.sessions: set[_Session] = set()
        self._by_push: dict[int, _Session] = {}
        self._ready: deque[_Session] = deque()  # sessions with frames to send, in turn
        self._flushing = False  # a callback taking sessions off _ready is scheduled
        self.frames_sent = 0
        self.closed_too_slow = 0
        self.heartbeat_frames = 0
        self._emptied: asyncio.Event | None = None  # set when the last session ends, on close
        self.closing = False

    def endpoints(self) -> dict[str, WsHandler]:
        return {
            "/ws/discovery/instance-change": self.discovery,
            "/ws/discovery/all-instance-change": self.all_changes,
            "/ws/registry/heartbeat": self.heartbeat,
        }

    def counts(self) -> dict[str, int]:
        registry = sum(1 for s in self.sessions if s.kind == "registry")
        return {"registry": registry, "discovery": len(self.sessions) - registry}

    # --- fan-out ---------------------------------------------------------------------------

    def on_changes(self, changes: Sequence[Change]) -> None:
        for push in self.hub.publish(changes):
            session = self._by_push.get(push.id)
            if session is None:
                continue
            if push.too_slow:
                self._too_slow(session, f"{push.waiting} changes queued and still behind")
            else:
                self._wake(session)

    def _too_slow(self, session: _Session, why: str) -> None:
        if not session.closed:
            self.closed_too_slow += 1
            log.warning("closing push session %s: too slow (%s)", session.push, why)
            session.close(CLOSE_TOO_SLOW, error_frame("too-slow", f"too slow: {why}",
                                                      CLOSE_TOO_SLOW))

    # --- sending ---------------------------------------------------------------------------
    # A session with frames waiting joins the ready queue; one callback at a time takes
    # sessions off it for up to SEND_STEP seconds (then gives the loop back) and starts each
    # one's next send without waiting for it. A send with more frames behind it calls back
    # when it ends, to start the next; the last one is looked at only when the session has
    # something new (hooked then if still under way). So each session has at most one send under
    # way (its frames leave in order), a slow reader holds up only itself, and a fan-out to
    # 1,000 sessions is 1,000 calls into the socket layer in a few steps of the loop: no task
    # woken, no callback when the frames have left.

    def _wake(self, session: _Session) -> None:
        """Frames may wait for `session`: queue it, unless it is queued or a send is under way
        (whose end looks again)."""
        if session.ready or session.closed or self._under_way(session):
            return
        session.ready = True
        coalesce = self.node.settings.ws_coalesce_ms
        if coalesce:
            asyncio.get_running_loop().call_later(coalesce / 1000, self._queue, session)
        else:
            self._queue(session)

    def _queue(self, session: _Session) -> None:
        self._ready.append(session)
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        ready = self._ready
        deadline = time.perf_counter() + SEND_STEP
        while ready:
            session = ready.popleft()
            session.ready = False
            self._send_next(session)
            if ready and time.perf_counter() >= deadline:
                asyncio.get_running_loop().call_soon(self._flush)
                return
        self._flushing = False

    def _under_way(self, session: _Session) -> bool:
        """Whether the session's last send is still under way (then hooked, so that its end
        sends what waits); a finished one is settled."""
        sending = session.sending
        if sending is None:
            return False
        if not sending.done():
            if not session.hooked:
                session.hooked = True
                sending.add_done_callback(functools.partial(self._sent, session))
            return True
        self._settle(session, sending)
        return False

    @staticmethod
    def _settle(session: _Session, sending: SendFuture) -> None:
        session.sending, session.sending_since, session.hooked = None, 0.0, False
        try:
            failed = sending.exception() is not None
        except BaseException:  # cancelled: the socket is gone
            failed = True
        if failed:
            session.closed = True
            session.batch = ()

    def _sent(self, session: _Session, sending: SendFuture) -> None:
        if session.sending is sending:
            self._settle(session, sending)
        self._send_next(session)

    def _send_next(self, session: _Session) -> None:
        """Start the session's next send, if a frame waits and none is under way."""
        push = session.push
        if session.closed or push is None or self._under_way(session):
            return
        if session.at >= len(session.batch):
            session.batch, session.at = (), 0
            if not push.waiting:
                return
            session.batch = self.hub.drain(push, self.node.settings.ws_coalesce_ms > 0)
            if not session.batch:
                return
        frame = session.batch[session.at]
        session.at += 1
        try:
            sending = session.ws.start_send(frame.text)
        except ConnectionError:
            session.closed = True
            return
        self.frames_sent += 1
        session.sending, session.sending_since = sending, self.node.clock.monotonic()
        if session.at < len(session.batch) or push.waiting:  # its end sends the next
            session.hooked = True
            sending.add_done_callback(functools.partial(self._sent, session))

    # --- sessions --------------------------------------------------------------------------

    def _open(self, ws: WebSocket, kind: str) -> _Session | None:
        if self.closing:
            ws.close(CLOSE_SHUTDOWN)  # the node is stopping: go elsewhere
            return None
        if len(self.sessions) >= self.node.settings.ws_max_sessions:
            refusal = _Session(ws, kind, None)
            refusal.close(CLOSE_FULL, error_frame(
                ErrorCode.SERVICE_UNAVAILABLE, f"this node already holds {len(self.sessions)} "
                "WebSocket sessions, its limit; try another node or later", CLOSE_FULL))
            return None
        push = None
        if kind != "registry":
            try:
                push = self.hub.open(kind, self.node.clock.monotonic())
            except Refused as exc:
                _Session(ws, kind, None).close(CLOSE_FULL, error_frame(
                    ErrorCode.SERVICE_UNAVAILABLE, str(exc), CLOSE_FULL))
                return None
        session = _Session(ws, kind, push, self.node.clock.monotonic())
        self.sessions.add(session)
        if push is not None:
            self._by_push[push.id] = session
        return session

    async def _end(self, session: _Session) -> None:
        """The session's handler is done: forget it, and close its socket (with the code of a
        close already under way, once its error frame is sent)."""
        self.sessions.discard(session)
        if not self.sessions and self._emptied is not None:
            self._emptied.set()
        if session.push is not None:
            self._by_push.pop(session.push.id, None)
            self.hub.close(session.push)
        session.close(CLOSE_AGE)  # nothing if a close is already under way
        closing = session.closing
        session.closing = None  # no cycle left through the task
        if closing is not None:
            await asyncio.gather(closing, return_exceptions=True)

    async def _frames(self, session: _Session) -> list[str]:
        """The next text frame, or [] when the session is over (closed, or closed here for a
        binary or oversized frame)."""
        message = await session.ws.receive()
        if message is None or session.closed:
            return []
        if isinstance(message, bytes):
            session.close(CLOSE_BINARY, error_frame(
                ErrorCode.BAD_REQUEST, "binary frames are not understood; send JSON text frames",
                CLOSE_BINARY))
            return []
        limit = self.node.settings.ws_max_frame_bytes
        if len(message) > limit:
            session.close(CLOSE_TOO_BIG, error_frame(
                ErrorCode.BAD_REQUEST, f"a frame of {len(message)} characters is over the limit of "
                f"{limit}", CLOSE_TOO_BIG))
            return []
        return [message]

    # --- endpoints -------------------------------------------------------------------------

    async def discovery(self, ws: WebSocket, client: str) -> None:
        await self._push_session(ws, DISCOVERY)

    async def all_changes(self, ws: WebSocket, client: str) -> None:
        await self._push_session(ws, EVERYTHING)

    async def _push_session(self, ws: WebSocket, kind: str) -> None:
        session = self._open(ws, kind)
        if session is None or session.push is None:
            return
        push = session.push
        try:
            while frames := await self._frames(session):
                problem = self._subscribe(session, push, frames[0])
                if problem is not None:
                    await self._reply(session, problem)
                self._wake(session)
                await self._replay(session, push)
        finally:
            await self._end(session)

    async def _replay(self, session: _Session, push: PushSession) -> None:
        """Run the session's replay to its end, one bounded step at a time, giving the loop
        back between steps; the next subscription frame is read once it is done."""
        registry = self.node.registry
        while push.replay is not None and not push.too_slow and not session.closed:
            await asyncio.sleep(0)
            self.hub.replay(push, registry.log, registry.revision, self.node.clock.wall_ms(),
                            self._services())
            self._wake(session)
        if push.too_slow:
            self._too_slow(session, "the changes it asked to be replayed do not fit")

    def _services(self) -> Iterator[tuple[str, str]]:
        """(key, id) of every service, read lazily: a reload of each stops once a queue is
        full."""
        return ((key, state.service_id) for key, state in self.node.registry.services.items())

    def _subscribe(self, session: _Session, push: PushSession, text: str) -> str | None:
        """Apply one subscription frame; an error frame to answer, or None."""
        try:
            sub = wire.decode(text.encode(), wire.Subscription)
        except wire.DecodeError as exc:
            return error_frame(ErrorCode.BAD_REQUEST, f"subscription frame: {exc}")
        node = self.node
        registry = node.registry
        wall = node.clock.wall_ms()
        if session.kind == EVERYTHING:
            if sub.revision:
                self.hub.resume_all(push, sub.revision, registry.log, registry.revision, wall,
                                    self._services())
            return None
        service_id = sub.service_id
        if service_id is None or not service_id or service_id.isspace():
            return error_frame(ErrorCode.BAD_REQUEST,
                               "subscription frame: serviceId is null or blank")
        if len(service_id) > 256 or not service_id.isprintable():
            return error_frame(ErrorCode.BAD_REQUEST, "subscription frame: serviceId is longer "
                               "than 256 characters or has control characters")
        region = sub.region_id
        if region is not None and region.lower() != node.settings.region.lower():
            return error_frame(ErrorCode.NO_PERMISSION, f"regionId is not the same as the "
                               f"discovery node. regionId: {region}, discovery node.regionId: "
                               f"{node.settings.region}")
        state = registry.service(service_id)  # its revision: its latest change, if it had one
        changed_at = state.revision if state is not None and state.revision > 0 else None
        recent = ((state.recent or (), state.known_since) if state is not None else None)
        try:
            self.hub.subscribe(push, service_id, sub.revision, registry.log, registry.revision,
                               wall, changed_at, recent)
        except Refused as exc:
            return error_frame(ErrorCode.BAD_REQUEST, str(exc))
        return None

    async def _reply(self, session: _Session, frame: str) -> None:
        try:
            await session.ws.send(frame)
        except ConnectionError:
            session.closed = True

    async def heartbeat(self, ws: WebSocket, client: str) -> None:
        session = self._open(ws, "registry")
        if session is None:
            return
        op = self.heartbeat_op
        address = client_address(client)  # each frame counts against its client's rate limit
        writer = (None if op.writers is None
                  else op.writers.resolve(ws.header("authorization"), address))
        if isinstance(writer, str):  # refused at the handshake
            session.close(CLOSE_FORBIDDEN, error_frame(ErrorCode.NO_PERMISSION, writer,
                                                       CLOSE_FORBIDDEN))
            await self._end(session)
            return
        token = writer.identity if writer is not None and writer.token else None
        try:
            while frames := await self._frames(session):
                try:
                    body = wire.decode(frames[0].encode(), wire.InstancesRequest)
                    answer = op.run(body, address, token, writer)
                    if not isinstance(answer, bytes):  # a large batch, run in slices
                        answer = await answer
                except (wire.DecodeError, BadRequest) as exc:
                    text = str(exc)
                    prefix = "" if isinstance(exc, BadRequest) else "heartbeat frame: "
                    answer = op.route.fail(ErrorCode.BAD_REQUEST, prefix + text)
                self.heartbeat_frames += 1
                await self._reply(session, answer.decode())
        finally:
            await self._end(session)

    # --- housekeeping ----------------------------------------------------------------------

    def sweep(self) -> None:
        """Close sessions past their maximum age and push sessions stuck in a send."""
        s = self.node.settings
        now = self.node.clock.monotonic()
        for session in list(self.sessions):
            if session.closed:
                continue
            if now - session.created >= s.ws_session_ttl:
                session.close(CLOSE_AGE)
            elif (session.sending is not None and not session.sending.done()
                  and now - session.sending_since >= s.ws_send_timeout):
                self._too_slow(session, f"one frame took over {s.ws_send_timeout}s to send")

    def close_sessions(self, code: int = CLOSE_AGE) -> None:
        """Close every open session now (clients reconnect, to this node or another)."""
        for session in list(self.sessions):
            session.close(code)

    async def close_all(self, wait: float = 1.0) -> None:
        """The node is stopping: close every session with 1001 (going away), refuse new ones,
        and wait up to `wait` seconds for their handlers to end."""
        self.closing = True
        self._emptied = asyncio.Event()
        self.close_sessions(CLOSE_SHUTDOWN)
        if self.sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), wait)

    def __repr__(self) -> str:
        return (f"PushServer(sessions={self.counts()}, frames_sent={self.frames_sent}, "
                f"closing={self.closing})")

    def stats(self) -> dict[str, int]:
        return {**self.counts(), "framesSent": self.frames_sent,
                "framesQueued": self.hub.frames_queued, "framesDropped": self.hub.frames_dropped,
                "framesReplayed": self.hub.frames_replayed, "closedTooSlow": self.closed_too_slow,
                "heartbeatFrames": self.heartbeat_frames}
