"""When pushed frames reach their subscribers' sockets, read from a capture of the loopback
interface: the kernel's timestamp of each packet, taken as the sending thread hands it to the
loopback device, which delivers it to the receiving socket in the same step. Used by
bench_push_scale.py, where 1,000 subscribers are Python processes sharing two cores with the
node: the time their event loops take to read the frames is theirs, not the node's, and the
capture shows when each frame was there to be read.

tcpdump (the Debian package of that name) writes the capture; it needs root (CAP_NET_RAW).
Only packets with data (PSH) to or from the node's port are kept, and only their first 128
bytes, so the capture costs the sending thread a copy of 128 bytes a packet.
"""

from __future__ import annotations

import bisect
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

WS_TEXT_FINAL = 0x81  # the first byte of a complete text frame, sent unmasked by a server
_LINK_HEADER = {1: 14, 113: 16, 276: 20}  # Ethernet (lo), Linux cooked v1 and v2
_MAGIC = {0xA1B2C3D4: 1e-6, 0xA1B23C4D: 1e-9}  # classic pcap, micro- or nanosecond stamps


def unavailable() -> str | None:
    """Why a capture cannot be taken here, or None if it can."""
    if shutil.which("tcpdump") is None:
        return "tcpdump is not installed (apt-get install tcpdump)"
    if os.geteuid() != 0:
        return "capturing packets needs root"
    return None


@dataclass(frozen=True)
class Packet:
    at: float  # seconds since the epoch (the kernel's clock)
    source_port: int
    target_port: int
    payload: bytes  # the first bytes of the TCP payload


class Capture:
    """tcpdump on `lo` for one node port, from `start()` until `stop()`, then its packets."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._dir = tempfile.TemporaryDirectory(prefix="wire-capture-")
        self.path = Path(self._dir.name) / "capture.pcap"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, within: float = 10.0) -> None:
        """Start tcpdump and wait until it says it is listening."""
        self._proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "-s", "128", "-B", "65536", "-w", str(self.path),
             f"tcp port {self.port} and tcp[tcpflags] & tcp-push != 0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self._proc.stderr is not None
        os.set_blocking(self._proc.stderr.fileno(), False)
        said = b""
        deadline = time.monotonic() + within
        while b"listening on" not in said:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tcpdump did not start: {said.decode(errors='replace')}")
            said += self._proc.stderr.read() or b""
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop tcpdump (SIGINT, by its pid: it writes out what it holds and exits)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def packets(self) -> list[Packet]:
        return read_pcap(self.path.read_bytes())

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


def read_pcap(data: bytes) -> list[Packet]:
    """The IPv4 TCP packets of a classic pcap file (as tcpdump -w writes it), in file order."""
    magic = struct.unpack_from("<I", data)[0]
    if magic not in _MAGIC:
        raise ValueError(f"not a little-endian pcap file (magic {magic:#x})")
    unit = _MAGIC[magic]
    link = struct.unpack_from("<I", data, 20)[0]
    if link not in _LINK_HEADER:
        raise ValueError(f"link type {link} is not one this reader knows")
    skip = _LINK_HEADER[link]
    packets: list[Packet] = []
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, kept, _ = struct.unpack_from("<IIII", data, offset)
        offset += 16
        frame = data[offset:offset + kept]
        offset += kept
        ip = frame[skip:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:  # IPv4, TCP
            continue
        tcp = ip[(ip[0] & 15) * 4:]
        if len(tcp) < 20:
            continue
        source, target = struct.unpack_from(">HH", tcp)
        packets.append(Packet(seconds + fraction * unit, source, target,
                              tcp[(tcp[12] >> 4) * 4:]))
    return packets


def fanout_rounds(packets: list[Packet], port: int, request_prefix: bytes,
                  ) -> list[list[float]]:
    """Per round, when each frame reached its subscriber, in ms from the round's start.

    A round starts with the first packet of a request to the node whose payload begins with
    `request_prefix`; its frames are the WebSocket text frames the node sent from then until
    the next round's start (the rounds do not overlap: the caller waits between them)."""
    starts = sorted(p.at for p in packets
                    if p.target_port == port and p.payload.startswith(request_prefix))
    frames = sorted(p.at for p in packets
                    if p.source_port == port and p.payload[:1] == bytes([WS_TEXT_FINAL]))
    rounds: list[list[float]] = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else float("inf")
        first, last = bisect.bisect_left(frames, start), bisect.bisect_left(frames, end)
        rounds.append([(at - start) * 1000 for at in frames[first:last]])
    return rounds
