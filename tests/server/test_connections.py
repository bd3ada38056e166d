"""Counting connections per client address from /proc's TCP tables (server/connections.py):
the parsing, whole and in pieces cut anywhere, the choice of what to close, and a guard's scan
of tables read from files in small pieces."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import artemis.server.connections as connections
from artemis.server.connections import (
    Connection,
    ConnectionGuard,
    ConnectionStats,
    over_limit,
    parse_proc_tcp,
    parse_proc_tcp_pieces,
)

PORT = 8080  # 1F90
HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
          "timeout inode")


def row(n: int, local: str, peer: str, state: str, inode: int) -> str:
    """One row as Linux writes it in /proc/net/tcp."""
    return (f"{n:4d}: {local} {peer} {state} 00000000:00000000 00:00000000 00000000     0  "
            f"      0 {inode} 1 0000000000000000 20 4 30 10 -1")


TABLE = "\n".join([
    HEADER,
    row(0, "00000000:1F90", "00000000:0000", "0A", 1000),  # the listening socket
    row(1, "0100007F:1F90", "0100007F:9C40", "01", 1001),  # 127.0.0.1:40000, established
    row(2, "0100007F:9C40", "0100007F:1F90", "01", 1002),  # the client's end of it
    row(3, "0100007F:1F90", "0200007F:9C41", "01", 1003),  # 127.0.0.2
    row(4, "0100007F:1F90", "0100007F:9C42", "06", 0),  # time-wait: no inode
    row(5, "0100007F:1F91", "0100007F:9C43", "01", 1005),  # another local port
    row(6, "0100007F:1F90", "0100007F:9C44", "01", 1006),  # 127.0.0.1 again
    row(7, "0100007F:1F90", "0100007F:9C45", "01", 0),  # established, inode gone
]) + "\n"
EXPECTED = [Connection(1001, "127.0.0.1"), Connection(1003, "127.0.0.2"),
            Connection(1006, "127.0.0.1")]

TABLE6 = "\n".join([
    HEADER,
    # an IPv4 client of a dual-stack socket, then a real IPv6 one (::1)
    row(0, "00000000000000000000000000000000:1F90", "0000000000000000FFFF00000100007F:9C40",
        "01", 2001),
    row(1, "00000000000000000000000000000000:1F90", "00000000000000000000000001000000:9C41",
        "01", 2002),
]) + "\n"


def test_a_table_yields_the_established_connections_to_the_port() -> None:
    assert EXPECTED == list(parse_proc_tcp(TABLE, PORT, six=False))


def test_a_tcp6_table_yields_mapped_ipv4_and_ipv6_clients() -> None:
    assert [Connection(2001, "127.0.0.1"), Connection(2002, "::1")] == list(
        parse_proc_tcp(TABLE6, PORT, six=True))


@pytest.mark.parametrize("size", [1, 2, 7, 64, 133, len(TABLE) - 1, len(TABLE), 1 << 20])
def test_a_table_read_in_pieces_of_any_size_yields_the_same(size: int) -> None:
    data = TABLE.encode()
    pieces = [data[i:i + size] for i in range(0, len(data), size)]
    assert EXPECTED == list(parse_proc_tcp_pieces(pieces, PORT, six=False))


@given(st.lists(st.integers(0, len(TABLE)), max_size=12))
def test_a_table_cut_anywhere_yields_the_same(cuts: list[int]) -> None:
    data = TABLE.encode()
    edges = [0, *sorted(cuts), len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(edges)]
    assert EXPECTED == list(parse_proc_tcp_pieces(pieces, PORT, six=False))


def test_a_table_without_a_last_newline_yields_its_last_row() -> None:
    data = TABLE.rstrip("\n").encode()
    assert EXPECTED == list(parse_proc_tcp_pieces([data[:50], data[50:]], PORT, six=False))


def test_the_newest_connections_beyond_the_limit_are_chosen() -> None:
    held = [Connection(1, "10.0.0.1"), Connection(2, "10.0.0.1"), Connection(3, "10.0.0.1"),
            Connection(4, "10.0.0.2")]
    first_seen = {1: 1, 2: 3, 3: 2, 4: 1}  # inode 2 was seen last
    assert [Connection(2, "10.0.0.1")] == over_limit(held, first_seen, 2)
    assert [] == over_limit(held, first_seen, 3)


def test_a_scan_reads_both_tables_in_small_pieces_and_counts_per_client(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    four, six = tmp_path / "tcp", tmp_path / "tcp6"
    four.write_text(TABLE)
    six.write_text(TABLE6)
    monkeypatch.setattr(connections, "_PROC_TABLES", (str(four), str(six)))
    monkeypatch.setattr(connections, "PROC_PIECE", 100)
    stats = ConnectionStats()
    assert [] == ConnectionGuard(PORT, 0, stats).scan()  # no limit: nothing closed
    assert (5, 3, 3, 1) == (stats.open, stats.clients, stats.busiest_client, stats.scans)


def test_a_scan_lets_go_of_the_interpreter_after_every_piece(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan runs in a worker thread beside the event loop's: after each piece it sleeps,
    which is what lets the loop's thread take the interpreter (a read alone does not)."""
    four = tmp_path / "tcp"
    four.write_text(TABLE)
    monkeypatch.setattr(connections, "_PROC_TABLES", (str(four), str(tmp_path / "none")))
    monkeypatch.setattr(connections, "PROC_PIECE", 256)
    events: list[str] = []
    real_open = open

    class Table:
        def __init__(self, path: str) -> None:
            self.file = real_open(path, "rb", buffering=0)

        def read(self, size: int) -> bytes:
            piece = self.file.read(size)
            events.append(f"read {len(piece)}")
            return piece

        def __enter__(self) -> Table:
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

    def fake_open(path: str, *args: object, **kwargs: object) -> Table:
        if not Path(path).exists():
            raise FileNotFoundError(path)
        return Table(path)

    monkeypatch.setattr(connections, "open", fake_open, raising=False)
    monkeypatch.setattr(connections.time, "sleep", lambda s: events.append(f"pause {s}"))
    stats = ConnectionStats()
    ConnectionGuard(PORT, 0, stats).scan()
    size = len(TABLE.encode())
    pieces = [min(256, size - at) for at in range(0, size, 256)]
    expected = [e for n in pieces for e in (f"read {n}", f"pause {connections.PROC_PAUSE}")]
    assert [*expected, "read 0"] == events
    assert 3 == stats.open
