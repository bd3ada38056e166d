"""Helpers of the push benchmark: reading a loopback capture and cutting it into fan-out rounds
(benchmarks/wire_capture.py), and summing the machine's steal over a span (benchmarks/steal.py)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from wire_capture import Packet, fanout_rounds, read_pcap

NODE = 8080
REQUEST = b"POST /api/registry/register.json HTTP/1.1\r\n"


def pcap(packets: list[tuple[float, int, int, bytes]], *, nano: bool = False) -> bytes:
    """A classic pcap of Ethernet/IPv4/TCP packets (time, source port, target port, payload)."""
    out = struct.pack("<IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 128, 1)
    for at, source, target, payload in packets:
        tcp = struct.pack(">HHIIBBHHH", source, target, 0, 0, 8 << 4, 0x18, 0, 0, 0)
        tcp += b"\x01\x01\x08\x0a" + b"\0" * 8  # 12 bytes of options (timestamps), as on lo
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0, 64, 6,
                         0, b"\x7f\0\0\x01", b"\x7f\0\0\x01")
        frame = b"\0" * 12 + b"\x08\x00" + ip + tcp + payload
        seconds = int(at)
        fraction = round((at - seconds) * (1e9 if nano else 1e6))
        out += struct.pack("<IIII", seconds, fraction, len(frame), len(frame)) + frame
    return out


@pytest.mark.parametrize("nano", [False, True])
def test_a_capture_is_read_packet_by_packet(nano: bool) -> None:
    data = pcap([(100.25, 40000, NODE, REQUEST), (100.5, NODE, 40001, b"\x81\x7e{}")],
                nano=nano)
    assert [Packet(100.25, 40000, NODE, REQUEST), Packet(100.5, NODE, 40001, b"\x81\x7e{}")
            ] == read_pcap(data)


def test_a_file_that_is_not_a_capture_is_refused() -> None:
    with pytest.raises(ValueError, match="not a little-endian pcap"):
        read_pcap(b"\0" * 24)


def test_frames_are_counted_in_the_round_of_the_request_before_them() -> None:
    packets = read_pcap(pcap([
        (10.000, 40000, NODE, REQUEST),  # round 1
        (10.001, NODE, 40000, b"HTTP/1.1 200 OK\r\n"),  # the answer: not a frame
        (10.003, NODE, 40001, b"\x81\x7e..."),
        (10.012, NODE, 40002, b"\x81\x7e..."),
        (10.002, 40003, NODE, b"\x81\xfe..."),  # a client's (masked) frame: not the node's
        (10.100, 40000, NODE, REQUEST),  # round 2
        (10.104, NODE, 40001, b"\x81\x7e..."),
        (10.200, 40000, NODE, b"GET /health HTTP/1.1\r\n"),  # not a round's start
        (10.205, NODE, 40002, b"\x81\x7e..."),
    ]))
    rounds = fanout_rounds(packets, NODE, b"POST /api/registry/register.json ")
    assert [[3.0, 12.0], [4.0, 105.0]] == [[round(at, 3) for at in r] for r in rounds]


def test_steal_is_summed_over_a_span_and_its_worst_100_ms_found() -> None:
    from steal import StealWatch

    watch = StealWatch()
    watch._seen = [(10.00, 1), (10.05, 2), (10.12, 1), (10.30, 4), (11.00, 3)]  # ticks
    assert {"stolen_ms": 80, "most_in_100ms_ms": 40} == watch.span(10.0, 10.5)
    assert {"stolen_ms": 30, "most_in_100ms_ms": 30} == watch.span(10.01, 10.2)
    assert {"stolen_ms": 0, "most_in_100ms_ms": 0} == watch.span(10.5, 10.9)
