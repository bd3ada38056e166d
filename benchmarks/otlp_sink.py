"""A do-nothing OTLP/HTTP receiver on 127.0.0.1, so a traced benchmark exports for real:

    .venv/bin/python benchmarks/otlp_sink.py 4318 &      # stop it by its pid

It answers every POST with 200 and counts the bytes it was sent (printed on exit).
"""

from __future__ import annotations

import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received = {"requests": 0, "bytes": 0}


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        received["requests"] += 1
        received["bytes"] += length
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except SystemExit:
        pass
    finally:
        server.server_close()
        print(received, flush=True)


def _stop(*_: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
