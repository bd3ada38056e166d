"""Connections per client address: counted, and the newest above the limit closed.

granian accepts connections in its own thread and tells Python nothing until a request arrives,
so it cannot refuse a client that holds too many. Its sockets are this process's own file
descriptors, though, and Linux lists them: every `connection_check_interval` a worker thread
reads /proc/self/net/tcp{,6} (the connections of this process's network namespace, with their
socket inode and peer address) and counts the established connections to the listening port per
peer address. When an address holds more than `max_connections_per_client`, it also lists
/proc/self/fd (which of those sockets this process holds: at 10,000 connections that listing is
most of a scan's cost, so it is skipped when nobody is over) and shuts down the newest ones of
that address above the limit (`shutdown(2)` on a duplicate of the fd: granian sees the
connection end, frees its slot and closes its own descriptor). A connection that never
speaks is closed by granian itself after `idle_timeout`; the total is bounded by granian's
`max_connections` permits.

The decision (`over_limit`) is a pure function; `ConnectionGuard.scan` is the I/O around it and
runs in a worker thread, so the event loop never waits on /proc.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Final

__all__ = ["Connection", "ConnectionGuard", "ConnectionStats", "over_limit", "parse_proc_tcp",
           "parse_proc_tcp_pieces"]

log = logging.getLogger("artemis.connections")

_PROC_TABLES: Final = ("/proc/self/net/tcp", "/proc/self/net/tcp6")
PROC_PIECE: Final = 16_384  # bytes of a table parsed at a time (about 110 rows)
PROC_PAUSE: Final = 0.0005  # seconds the scan lets go of the interpreter after each piece


@dataclass(frozen=True, slots=True)
class Connection:
    """An established connection to the listening port: its socket inode and peer address."""

    inode: int
    client: str


def parse_proc_tcp(text: str, port: int, six: bool) -> Iterator[Connection]:
    """The established connections to local `port` in one /proc/net/tcp or tcp6 table."""
    rows = _rows(port).finditer(text)
    for row in rows:
        inode = int(row[2])
        if inode:
            yield Connection(inode, _address(row[1], six))


def parse_proc_tcp_pieces(pieces: Iterable[bytes], port: int, six: bool
                          ) -> Iterator[Connection]:
    """`parse_proc_tcp` of a table read in pieces cut anywhere: each piece's whole rows are
    parsed as it comes, a cut row is finished by the next piece."""
    cut = b""
    for piece in pieces:
        rows, newline, rest = piece.rpartition(b"\n")
        if newline:
            yield from parse_proc_tcp((cut + rows).decode("ascii"), port, six)
            cut = rest
        else:
            cut += rest
    if cut:
        yield from parse_proc_tcp(cut.decode("ascii"), port, six)


@functools.lru_cache(maxsize=8)
def _rows(port: int) -> re.Pattern[str]:
    """A table's rows of established connections to local `port`: (peer address, inode). The
    columns: sl, local address, peer address, state (01: established), tx:rx queues,
    timer:when, retransmits, uid, timeout, inode."""
    return re.compile(rf"^ *\d+: [0-9A-F]+:{port:04X} ([0-9A-F]+):[0-9A-F]{{4}} 01 "
                      r"(?:\S+ +){5}(\d+)", re.MULTILINE)


@functools.lru_cache(maxsize=4096)
def _address(hexed: str, six: bool) -> str:
    """An address as /proc writes it (32-bit words in host order, little-endian here)."""
    raw = bytes.fromhex(hexed)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    if not six:
        return socket.inet_ntop(socket.AF_INET, words)
    if words[:12] == b"\0" * 10 + b"\xff\xff":  # an IPv4 client of a dual-stack socket
        return socket.inet_ntop(socket.AF_INET, words[12:])
    return socket.inet_ntop(socket.AF_INET6, words)


def over_limit(connections: Iterable[Connection], first_seen: dict[int, int],
               limit: int) -> list[Connection]:
    """The connections to close: for each client address holding more than `limit`, the
    newest ones (by the scan that first saw them, then by inode) beyond the limit."""
    by_client: dict[str, list[Connection]] = {}
    for connection in connections:
        by_client.setdefault(connection.client, []).append(connection)
    excess: list[Connection] = []
    for held in by_client.values():
        if len(held) > limit:
            held.sort(key=lambda c: (first_seen.get(c.inode, 0), c.inode))
            excess.extend(held[limit:])
    return excess


@dataclass(slots=True)
class ConnectionStats:
    """What the last count saw, and what the guard has closed (for /metrics and status)."""

    open: int = 0
    clients: int = 0
    busiest_client: int = 0
    closed_over_limit: int = 0
    scans: int = 0
    failed_scans: int = 0
    closed_by_client: dict[str, int] = field(default_factory=dict)


class ConnectionGuard:
    """Counts the connections to `port` per client address and closes the excess."""

    def __init__(self, port: int, limit: int, stats: ConnectionStats) -> None:
        self.port = port
        self.limit = limit
        self.stats = stats
        self._scan = 0
        self._first_seen: dict[int, int] = {}
        self.last_cpu = 0.0  # CPU seconds the last scan took

    def scan(self) -> list[Connection]:
        """One count (blocking I/O on /proc: run it in a worker thread); the connections it
        closed."""
        started = time.thread_time()
        try:
            return self._scan_once()
        finally:
            self.last_cpu = time.thread_time() - started

    def _scan_once(self) -> list[Connection]:
        self._scan += 1
        self.stats.scans += 1
        try:
            connections = list(self._connections())
            held: dict[int, int] = {}
            if self.limit and _busiest(connections) > self.limit:
                # Someone may be over the limit: which of these sockets are this process's own
                # (a descriptor to shut down)? Listing every descriptor is the scan's dearest
                # part, so it is done only then.
                held = self._held_sockets()
                connections = [c for c in connections if c.inode in held]
        except OSError as exc:
            self.stats.failed_scans += 1
            log.warning("cannot count connections per client: %s", exc)
            return []
        seen = self._first_seen
        current = {c.inode for c in connections}
        for inode in [i for i in seen if i not in current]:
            del seen[inode]
        for c in connections:
            seen.setdefault(c.inode, self._scan)
        per_client: dict[str, int] = {}
        for c in connections:
            per_client[c.client] = per_client.get(c.client, 0) + 1
        self.stats.open = len(connections)
        self.stats.clients = len(per_client)
        self.stats.busiest_client = max(per_client.values(), default=0)
        if not held:
            return []
        closed = [c for c in over_limit(connections, seen, self.limit)
                  if _shutdown(held[c.inode], c.inode)]
        for c in closed:
            self.stats.closed_over_limit += 1
            by_client = self.stats.closed_by_client
            if c.client in by_client or len(by_client) < 100:
                by_client[c.client] = by_client.get(c.client, 0) + 1
        if closed:
            log.warning("closed %s connections of clients over max_connections_per_client %s "
                        "(%s)", len(closed), self.limit,
                        ", ".join(sorted({c.client for c in closed})[:5]))
        return closed

    def _connections(self) -> Iterator[Connection]:
        for path, six in zip(_PROC_TABLES, (False, True), strict=True):
            try:
                table = open(path, "rb", buffering=0)  # noqa: SIM115  # closed below
            except FileNotFoundError:  # no IPv6 in this kernel
                continue
            with table:
                yield from parse_proc_tcp_pieces(_paced(table), self.port, six)

    @staticmethod
    def _held_sockets() -> dict[int, int]:
        """Socket inode -> one file descriptor of this process holding it."""
        held: dict[int, int] = {}
        for entry in os.scandir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # closed since the listing
                target = os.readlink(entry.path)
                if target.startswith("socket:["):
                    held[int(target[8:-1])] = int(entry.name)
        return held

    def __repr__(self) -> str:
        return (f"ConnectionGuard(port={self.port}, limit={self.limit}, "
                f"open={self.stats.open}, closed={self.stats.closed_over_limit})")


def _paced(table: BinaryIO) -> Iterator[bytes]:
    """A table's pieces, with a pause after each that lets the event loop's thread take the
    interpreter. Parsing a table of 20,000 rows at once held it for 26 ms of CPU (longer when
    this thread was descheduled meanwhile), and the loop waited all that time; reading it in
    pieces without a pause was worse: each read gives the interpreter up and takes it back at
    once, so the loop's thread, waiting for it, never saw the holder made to let go. The loop's
    lag beside scans of such a table (benchmarks/bench_guard.py, p99): 13 ms at once, 42 ms in
    pieces, 1.6 ms in pieces with the pause."""
    while piece := table.read(PROC_PIECE):
        yield piece
        time.sleep(PROC_PAUSE)


def _busiest(connections: Iterable[Connection]) -> int:
    """The most connections one client address holds."""
    per_client: dict[str, int] = {}
    for c in connections:
        per_client[c.client] = per_client.get(c.client, 0) + 1
    return max(per_client.values(), default=0)


def _shutdown(fd: int, inode: int) -> bool:
    """Shut down the socket behind `fd` if it still is `inode` (the fd may have been closed and
    reused since the scan); the owner (granian) then sees its connection end."""
    try:
        copy = os.dup(fd)
    except OSError:
        return False
    try:
        if os.fstat(copy).st_ino != inode:
            return False
        with socket.socket(fileno=copy) as sock:
            copy = -1  # the socket object owns and closes the duplicate
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return True
    finally:
        if copy >= 0:
            os.close(copy)
