"""The fault proxy of the cluster fault tests, against an echo server on 127.0.0.1: what each mode
does to open and new connections, its counters, and that it stops cleanly and leaves nothing
behind (threads, sockets)."""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.process.conftest import free_port, poll
from tests.process.faultproxy import FaultProxy

DEADLINE = 5.0  # the longest any single wait here may take
QUIET = 0.3  # how long a connection must stay silent to count as getting no answer
DELAY = 0.3


class _EchoHandler(socketserver.BaseRequestHandler):
    server: EchoServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        self.server.track(sock)
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
                self.server.count(len(data))
        except OSError:
            pass  # reset by the proxy: the connection is over
        finally:
            self.server.untrack(sock)


class EchoServer(socketserver.ThreadingTCPServer):
    """Sends every byte back, one thread per connection; `close()` ends every connection and
    joins every thread."""

    daemon_threads = False
    block_on_close = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closing = False
        self.accepted = 0
        self.received = 0  # bytes received and sent back, on every connection
        self.port: int = self.server_address[1]

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self.accepted += 1
            self._open.add(sock)
            if self._closing:
                sock.shutdown(socket.SHUT_RDWR)

    def count(self, received: int) -> None:
        with self._lock:
            self.received += received

    def untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def close(self) -> None:
        """Stop serving (from a thread other than serve_forever's) and join every thread."""
        self.shutdown()
        with self._lock:
            self._closing = True
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self.server_close()


def open_sockets() -> int:
    """How many sockets this process has open."""
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).startswith("socket:")
    return count


@pytest.fixture(autouse=True)
def leaves_nothing_behind() -> Iterator[None]:
    """Every thread and socket a test starts is gone once it ends."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("counts sockets in /proc/self/fd")
    threads = set(threading.enumerate())
    sockets = open_sockets()
    yield

    def clean() -> bool | None:
        left = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
        return True if not left and open_sockets() <= sockets else None

    poll(clean, DEADLINE, "threads and sockets of the test closed")


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="echo-server")
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join(DEADLINE)


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(echo.port) as proxy:
        yield proxy


def connect(proxy: FaultProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read `size` bytes, within DEADLINE s."""
    end = time.monotonic() + DEADLINE
    data = bytearray()
    while len(data) < size:
        sock.settimeout(max(end - time.monotonic(), 0.001))
        chunk = sock.recv(size - len(data))
        if not chunk:
            pytest.fail(f"EOF after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def echoes(sock: socket.socket, payload: bytes) -> bool:
    sock.sendall(payload)
    return recv_exactly(sock, len(payload)) == payload


def assert_silent(sock: socket.socket) -> None:
    """Nothing arrives for QUIET s, and the connection stays open (no EOF, no reset)."""
    sock.settimeout(QUIET)
    with pytest.raises(TimeoutError):
        sock.recv(1)


def connection_end(proxy: FaultProxy) -> str:
    """Connect and tell how the proxy ends the connection, with no data: "reset" or "eof" (the
    reset may come before `connect` returns)."""
    try:
        sock = connect(proxy)
    except ConnectionResetError:
        return "reset"
    with sock:
        return stream_end(sock)


def stream_end(sock: socket.socket) -> str:
    """How the connection ends, within DEADLINE s, with no data before: "reset" or "eof"."""
    sock.settimeout(DEADLINE)
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        return "reset"
    assert b"" == data
    return "eof"


def test_pass_through_echoes_exact_bytes(proxy: FaultProxy, echo: EchoServer) -> None:
    assert "pass_through" == proxy.mode
    assert f"http://127.0.0.1:{proxy.port}" == proxy.url
    payload = bytes(range(256)) * 1024
    with connect(proxy) as sock:
        for start in range(0, len(payload), 65536):
            assert echoes(sock, payload[start:start + 65536])
        assert 1 == proxy.open_connections()
    assert 1 == proxy.connections == echo.accepted
    assert 2 * len(payload) == proxy.bytes_forwarded
    poll(lambda: proxy.open_connections() == 0 or None, DEADLINE, "the relay closed")
    poll(lambda: echo.open_connections() == 0 or None, DEADLINE, "the target side closed")


def test_delay_holds_every_chunk_both_ways_in_order(proxy: FaultProxy) -> None:
    proxy.delay(DELAY)
    assert "delay" == proxy.mode
    with connect(proxy) as first, connect(proxy) as second:
        start = time.monotonic()
        first.sendall(b"ping")
        second.sendall(b"pong")
        assert b"ping" == recv_exactly(first, 4)
        assert 2 * DELAY <= time.monotonic() - start < 3.0  # held DELAY s each way
        assert b"pong" == recv_exactly(second, 4)
        # Each connection and direction has its own queue: had the second waited behind the
        # first, its answer would have come 4 * DELAY s after it was sent, not 2 * DELAY.
        assert time.monotonic() - start < 4 * DELAY

        messages = [f"message {i};".encode() for i in range(10)]
        for message in messages:
            first.sendall(message)
        assert b"".join(messages) == recv_exactly(first, len(b"".join(messages)))

        proxy.heal()
        start = time.monotonic()
        assert echoes(first, b"fast again")
        assert time.monotonic() - start < 2 * DELAY


def test_drop_loses_bytes_and_keeps_connections_open(proxy: FaultProxy,
                                                     echo: EchoServer) -> None:
    with connect(proxy) as old:
        assert echoes(old, b"before")
        proxy.drop()
        assert "drop" == proxy.mode
        old.sendall(b"lost")
        assert_silent(old)
        with connect(proxy) as new:  # accepted, but it does not reach the target
            new.sendall(b"lost too")
            assert_silent(new)
            assert 2 == proxy.open_connections()
            assert 1 == echo.accepted

            proxy.heal()
            assert "pass_through" == proxy.mode
            assert echoes(old, b"after")  # not b"lostafter": what was lost stays lost
            assert echoes(new, b"fresh")
    with connect(proxy) as sock:
        assert echoes(sock, b"a new connection")
    assert 3 == proxy.connections


def test_drop_loses_the_chunks_delay_still_holds(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as sock:
        assert echoes(sock, b"before")
        proxy.delay(DELAY)
        sock.sendall(b"in flight")
        # DELAY s later the target has it and has sent it back, to the proxy's delay queue...
        sent = len(b"before" + b"in flight")
        poll(lambda: echo.received == sent or None, DEADLINE, "the target got it")
        proxy.drop()  # ...where it is lost
        sock.settimeout(DELAY + QUIET)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        proxy.heal()
        assert echoes(sock, b"after")


def test_cut_resets_open_and_new_connections(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as sock:
        assert echoes(sock, b"hello")
        proxy.cut()
        assert "cut" == proxy.mode
        assert 0 == proxy.open_connections()
        assert "reset" == stream_end(sock)
    poll(lambda: echo.open_connections() == 0 or None, DEADLINE, "the target side closed")
    assert "reset" == connection_end(proxy)

    proxy.heal()
    with connect(proxy) as sock:
        assert echoes(sock, b"back")
    assert 3 == proxy.connections
    assert 2 == echo.accepted


def test_target_not_listening_closes_the_client() -> None:
    with FaultProxy(free_port()) as proxy:
        assert connection_end(proxy) in ("reset", "eof")
        assert 1 == proxy.connections
        poll(lambda: proxy.open_connections() == 0 or None, DEADLINE, "the relay closed")
        assert "pass_through" == proxy.mode


def test_stop_is_idempotent_and_closes_everything(echo: EchoServer) -> None:
    proxy = FaultProxy(echo.port).start()
    port = proxy.port
    with connect(proxy) as sock:
        assert echoes(sock, b"x")
        proxy.stop()
        assert stream_end(sock) in ("reset", "eof")
    proxy.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("FaultProxy")]
    assert 0 == proxy.open_connections()
    with pytest.raises(RuntimeError):
        proxy.drop()
    with socket.socket() as sock:
        sock.settimeout(DEADLINE)
        with pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", port))


def test_misuse_is_refused(echo: EchoServer) -> None:
    proxy = FaultProxy(echo.port)
    proxy.stop()  # never started: nothing to do
    with pytest.raises(RuntimeError):
        proxy.cut()
    with pytest.raises(RuntimeError):
        _ = proxy.port
    with proxy:
        with pytest.raises(ValueError, match="delay"):
            proxy.delay(-1)
        with pytest.raises(RuntimeError):
            proxy.start()
        assert "pass_through" == proxy.mode
