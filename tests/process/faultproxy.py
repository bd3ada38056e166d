"""A fault-injecting TCP proxy for cluster fault tests.

`FaultProxy(target_port)` listens on 127.0.0.1, on a free port, and relays every connection it
accepts to 127.0.0.1:target_port. Its asyncio loop runs in a daemon thread of its own, so a
synchronous test changes what the network does from its own thread, between two requests or in
the middle of one:

- `pass_through()` (the default; `heal()` is the same): bytes flow both ways.
- `delay(seconds)`: every chunk, both ways, is delivered `seconds` after the proxy read it, in
  order; each connection and direction has its own queue, so no connection waits for another.
- `drop()`: a black hole, like a partitioned network. Connections stay open and new ones are
  accepted, but nothing is forwarded either way: the bytes read are discarded, and stay lost when
  the mode changes back. A connection accepted meanwhile reaches the target only once the mode
  changes back. The end of a stream (EOF, or a reset) is not lost but held, as TCP retransmits
  a FIN until it is acknowledged: it goes through once the mode is no longer `drop`.
- `cut()`: every open connection is reset at once, on both sides (SO_LINGER 0), and every new
  one is reset as soon as it is accepted, until the mode changes.

Chunks already queued by `delay` keep their delivery time when the mode changes (they are in
flight), unless the new mode is `drop` or `cut`, which lose them. Every control method is
thread-safe and returns once its mode is in effect; it raises TimeoutError if the loop does not
answer within CONTROL_TIMEOUT seconds. A connection that ends in error (a reset, a target that
does not answer) is reset on both sides; nothing is raised out of the loop thread, and the only
logging is at DEBUG level.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

__all__ = ["CONTROL_TIMEOUT", "FaultProxy", "Mode"]

HOST: Final = "127.0.0.1"
CONTROL_TIMEOUT: Final = 5.0  # the longest a control method waits for the loop thread
CLOSE_TIMEOUT: Final = 3.0  # the longest the loop waits for connections to close
CONNECT_TIMEOUT: Final = 3.0  # the longest a connection to the target may take
CHUNK_SIZE: Final = 65536
QUEUED_CHUNKS: Final = 1024  # per connection and direction: past that, reading pauses
_RESET_ON_CLOSE: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST

Mode = Literal["pass_through", "delay", "drop", "cut"]
T = TypeVar("T")

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Chunk:
    """What one direction of a connection delivers at `due` (loop time): bytes, or its end."""

    due: float
    data: bytes  # empty at the end of the stream
    reset: bool = False  # the stream ended with an error rather than with EOF


class _PeerReset(ConnectionError):
    """One side of a connection was reset: the proxy resets the other side too."""


class _Connection:
    """A client's connection and, once the target accepted it, the connection to the target."""

    def __init__(self, client: asyncio.StreamWriter, task: asyncio.Task[Any] | None) -> None:
        self.writers = [client]
        self.task = task  # the task relaying this connection
        self.closing = False

    def abort(self, *, reset: bool) -> None:
        """Close both sides now, dropping whatever is buffered; with `reset`, as a TCP reset.

        The task relaying the connection is cancelled unless it is the one calling.
        """
        self.closing = True
        for writer in self.writers:
            if reset:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):  # already closed
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
            writer.transport.abort()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    async def wait_closed(self) -> None:
        """Return once the sockets of both sides are closed.

        Several tasks may wait for the same connection (its own, closing it, and `cut()` or
        `stop()`): each waits through a shield, so that cancelling one of them does not cancel
        the future they share and with it the others' waits.
        """
        for writer in self.writers:
            with contextlib.suppress(Exception):  # how it was lost does not matter here
                await asyncio.shield(writer.wait_closed())


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler: a failing connection is part of the job, not news."""
    _log.debug("fault proxy: %s", context.get("message"), exc_info=context.get("exception"))


class FaultProxy:
    """A TCP proxy from 127.0.0.1:`port` to 127.0.0.1:`target_port` whose faults a test sets.

    Use it as `with FaultProxy(target_port) as proxy:` or call `start()` and `stop()`.
    """

    def __init__(self, target_port: int) -> None:
        self.target: Final = (HOST, target_port)
        self._lock = threading.Lock()  # start() and stop()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stopped = False
        self._port = 0
        # Written by the loop thread only; reading one is atomic.
        self._mode: Mode = "pass_through"
        self._delay = 0.0
        self._accepted = 0
        self._forwarded = 0
        # Loop-side state (asyncio events bind to the loop that first waits on them).
        self._connections: set[_Connection] = set()
        self._forwarding = asyncio.Event()  # set unless the mode is drop or cut
        self._stopping = asyncio.Event()

    # Life cycle

    def start(self) -> FaultProxy:
        """Start the loop thread; return `self` once the proxy listens."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("a FaultProxy is started once")
            self._thread = threading.Thread(
                target=self._run, name=f"FaultProxy->{self.target[1]}", daemon=True)
            self._thread.start()
        if not self._ready.wait(CONTROL_TIMEOUT):
            self.stop()
            raise TimeoutError(f"the fault proxy did not listen within {CONTROL_TIMEOUT} s")
        if self._startup_error is not None:
            self.stop()
            raise RuntimeError("the fault proxy could not start") from self._startup_error
        return self

    def stop(self) -> None:
        """Close the listener and every connection, stop the loop and join its thread.

        Idempotent; a proxy never started has nothing to stop.
        """
        with self._lock:
            thread, loop = self._thread, self._loop
            if thread is None or self._stopped:
                return
            self._stopped = True
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop has already ended
                    loop.call_soon_threadsafe(self._stopping.set)
            thread.join(CONTROL_TIMEOUT + CLOSE_TIMEOUT)
            if thread.is_alive():
                raise TimeoutError("the fault proxy's thread did not end in time")

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # What it is

    @property
    def port(self) -> int:
        """The port the proxy listens on, on 127.0.0.1."""
        if not self._port:
            raise RuntimeError("the fault proxy is not started")
        return self._port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://{HOST}:{self.port}"

    @property
    def mode(self) -> str:
        """`pass_through`, `delay`, `drop` or `cut` (a `Mode`)."""
        return self._mode

    @property
    def connections(self) -> int:
        """How many connections the proxy accepted, in every mode."""
        return self._accepted

    @property
    def bytes_forwarded(self) -> int:
        """How many bytes the proxy delivered, both ways added up."""
        return self._forwarded

    def open_connections(self) -> int:
        """How many connections are open (being relayed) now; 0 once stopped."""
        if not self._running():
            return 0
        return self._call(self._count_connections())

    # Modes

    def pass_through(self) -> None:
        """Forward bytes both ways as they come."""
        self._call(self._switch("pass_through"))

    def heal(self) -> None:
        """The same as `pass_through()`: the network is back."""
        self.pass_through()

    def delay(self, seconds: float) -> None:
        """Deliver every chunk, both ways, `seconds` after it was read, in order."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a delay is a finite number of seconds >= 0, not {seconds!r}")
        self._call(self._switch("delay", float(seconds)))

    def drop(self) -> None:
        """Forward nothing and lose what is read; connections stay open, new ones are accepted."""
        self._call(self._switch("drop"))

    def cut(self) -> None:
        """Reset every open connection on both sides, and every new one, until the mode changes."""
        self._call(self._switch("cut"))

    # The calling thread's side

    def _running(self) -> bool:
        return self._loop is not None and not self._stopped and self._loop.is_running()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` in the loop thread and return its result (within CONTROL_TIMEOUT s)."""
        loop = self._loop
        if loop is None or not self._running():
            coro.close()
            raise RuntimeError("the fault proxy is not running")
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop closed in between
            coro.close()
            raise
        try:
            return future.result(timeout=CONTROL_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(
                f"the fault proxy did not answer within {CONTROL_TIMEOUT} s") from None

    def _run(self) -> None:
        """The loop thread: serve until `stop()`; nothing is raised out of it."""
        try:
            asyncio.run(self._main())
        except (Exception, asyncio.CancelledError) as error:
            _log.debug("fault proxy loop ended in error", exc_info=True)
            if not self._ready.is_set():
                self._startup_error = error
        finally:
            self._ready.set()

    # The loop's side

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_log_loop_error)
        server = await asyncio.start_server(self._accept, HOST, 0)
        self._port = int(server.sockets[0].getsockname()[1])
        self._forwarding.set()
        self._loop = loop
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            await self._close_all(reset=False)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await server.wait_closed()

    async def _count_connections(self) -> int:
        return len(self._connections)

    async def _switch(self, mode: Mode, delay: float = 0.0) -> None:
        """Put `mode` in effect: a chunk read from now on sees it, and so does a chunk due now."""
        if self._mode == "drop" and mode != "drop":
            # Let reads the selector already has ready go first, so that the bytes sent before
            # the network came back stay lost (a read takes a few loop iterations to land).
            for _ in range(3):
                await asyncio.sleep(0)
        self._mode = mode
        self._delay = delay
        if mode in ("drop", "cut"):
            self._forwarding.clear()
        else:
            self._forwarding.set()
        if mode == "cut":
            await self._close_all(reset=True)

    async def _close_all(self, *, reset: bool) -> None:
        """Abort every open connection and wait until its sockets and its task are done."""
        connections = list(self._connections)
        for connection in connections:
            connection.abort(reset=reset)
        tasks = {c.task for c in connections if c.task is not None}
        async with asyncio.timeout(CLOSE_TIMEOUT):
            for connection in connections:
                await connection.wait_closed()
            if tasks:
                await asyncio.wait(tasks)

    async def _accept(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        """Relay one accepted connection until both ways ended, or reset it."""
        connection = _Connection(client_writer, asyncio.current_task())
        self._accepted += 1
        if self._mode == "cut":
            connection.abort(reset=True)
            return
        self._connections.add(connection)
        try:
            await self._relay(connection, client_reader)
        except Exception:  # a reset, a target that refused: the whole connection goes
            _log.debug("fault proxy: connection reset", exc_info=True)
            connection.abort(reset=True)
        finally:
            if not connection.closing:  # cancelled
                connection.abort(reset=False)
            self._connections.discard(connection)

    async def _relay(self, connection: _Connection, client_reader: asyncio.StreamReader) -> None:
        client_writer = connection.writers[0]
        to_target: asyncio.Queue[_Chunk] = asyncio.Queue(QUEUED_CHUNKS)
        to_client: asyncio.Queue[_Chunk] = asyncio.Queue(QUEUED_CHUNKS)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._pump(client_reader, to_target))
            await self._forwarding.wait()  # a partitioned network does not reach the target
            async with asyncio.timeout(CONNECT_TIMEOUT):
                target_reader, target_writer = await asyncio.open_connection(*self.target)
            connection.writers.append(target_writer)
            group.create_task(self._deliver(to_target, target_writer))
            group.create_task(self._pump(target_reader, to_client))
            group.create_task(self._deliver(to_client, client_writer))
        # Both ways ended with EOF: close both sides once what is buffered is sent.
        connection.closing = True
        for writer in connection.writers:
            writer.close()
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await connection.wait_closed()

    async def _pump(self, reader: asyncio.StreamReader, queue: asyncio.Queue[_Chunk]) -> None:
        """Read one way until its end, queueing each chunk with its delivery time (or losing it,
        in drop mode)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await reader.read(CHUNK_SIZE)
            except OSError:
                await queue.put(_Chunk(loop.time() + self._delay, b"", reset=True))
                return
            if data and self._mode == "drop":
                continue
            await queue.put(_Chunk(loop.time() + self._delay, data))
            if not data:
                return

    async def _deliver(self, queue: asyncio.Queue[_Chunk], writer: asyncio.StreamWriter) -> None:
        """Write one way's chunks when they are due, until its end."""
        loop = asyncio.get_running_loop()
        while True:
            chunk = await queue.get()
            wait = chunk.due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if chunk.data:
                if self._mode == "drop":
                    continue  # lost, as the bytes read in drop mode are
                writer.write(chunk.data)
                self._forwarded += len(chunk.data)
                await writer.drain()
                continue
            await self._forwarding.wait()  # the end of a stream is held, not lost
            if chunk.reset:
                raise _PeerReset("the other side was reset")
            if writer.can_write_eof():
                writer.write_eof()
            return
