"""The connection guard's scan beside the event loop: how long the loop waits for the
interpreter while a worker thread scans a TCP table of --rows rows. Run by hand, never by the
test suite:

    .venv/bin/python benchmarks/bench_guard.py               # 20,000 rows, 8 s per way

The table is written to a temporary file in /proc/net/tcp's format: half the rows are the
clients' ends of the connections (another local port), half the node's, as on loopback with
10,000 sessions. Three ways of scanning it run in turn, each over and over in a worker thread
for --seconds while the event loop (uvloop) runs a 1 ms timer and a little work after each
tick; the loop lag is how late each tick came:

  whole    the table read at once and parsed (what the guard did before)
  pieces   read and parsed 16 KB at a time, no pause
  paced    the node's ConnectionGuard.scan as it is (pieces, a pause after each)

The lag is that of a loop that wants the interpreter every millisecond; a node's loop, idle
between requests, waits as long when a request comes during a scan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import uvloop

import artemis.server.connections as connections
from artemis.server.connections import (
    ConnectionGuard,
    ConnectionStats,
    parse_proc_tcp,
    parse_proc_tcp_pieces,
)

PORT = 38821
HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
          "timeout inode")


def table(rows: int) -> str:
    lines = [HEADER]
    half = rows // 2
    for k in range(rows):
        local, peer = (40000 + k % half, PORT) if k < half else (PORT, 40000 + k % half)
        lines.append(f"{k:5d}: 0100007F:{local:04X} 0100007F:{peer:04X} 01 00000000:00000000 "
                     f"00:00000000 00000000     0        0 {100000 + k} 1 0000000000000000 20 "
                     "4 30 10 -1")
    return "\n".join(lines) + "\n"


def ways(path: Path) -> dict[str, Callable[[], int]]:
    def whole() -> int:
        with path.open(encoding="ascii") as file:
            text = file.read()
        return sum(1 for _ in parse_proc_tcp(text, PORT, False))

    def pieces() -> int:
        with path.open("rb", buffering=0) as file:
            read = iter(lambda: file.read(connections.PROC_PIECE), b"")
            return sum(1 for _ in parse_proc_tcp_pieces(read, PORT, False))

    guard = ConnectionGuard(PORT, 0, ConnectionStats())

    def paced() -> int:
        guard.scan()
        return guard.stats.open

    return {"whole": whole, "pieces": pieces, "paced": paced}


async def measure(scan: Callable[[], int], expected: int, seconds: float) -> dict[str, float]:
    lags: list[float] = []
    scans = 0
    stop = time.monotonic() + seconds

    async def scanner() -> None:
        nonlocal scans
        while time.monotonic() < stop:
            found = await asyncio.to_thread(scan)
            if found != expected:
                raise AssertionError(f"a scan found {found} connections, not {expected}")
            scans += 1

    task = asyncio.create_task(scanner())
    while time.monotonic() < stop:
        before = time.perf_counter()
        await asyncio.sleep(0.001)
        sum(range(2000))  # a little work after each tick, as a loop does
        lags.append((time.perf_counter() - before - 0.001) * 1000)
    await task
    lags.sort()
    return {"scans": scans, "lag_p50_ms": round(lags[len(lags) // 2], 2),
            "lag_p99_ms": round(lags[int(len(lags) * 0.99)], 2),
            "lag_max_ms": round(lags[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tcp"
        path.write_text(table(args.rows))
        connections._PROC_TABLES = (str(path), str(Path(folder) / "tcp6"))  # type: ignore[misc]
        results = {}
        for name, scan in ways(path).items():
            results[name] = uvloop.run(measure(scan, args.rows // 2, args.seconds))
            print(json.dumps({name: results[name]}), flush=True)


if __name__ == "__main__":
    main()
