"""A bare granian RSGI application answering fixed bytes: the ceiling of the HTTP stack.

Started by bench_ceiling.py, never by the test suite:

    .venv/bin/python benchmarks/bare_rsgi.py PORT ANSWERS.json

ANSWERS.json maps a path to `{"body": <text>, "headers": [[name, value], ...]}`. Every request
to a known path has its body read (as the node reads it) and is answered 200 with those bytes
and headers; any other path is answered 404. It is served the way `artemis server` serves
(granian's embedded server, RSGI, HTTP/1.1, uvloop, one runtime thread), so the difference to
the node is the node's own work: routing, decoding, the registry and its bookkeeping.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import uvloop


class Bare:
    """Fixed answers by path."""

    def __init__(self, answers: dict[str, tuple[list[tuple[str, str]], bytes]]) -> None:
        self.answers = answers

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        answer = self.answers.get(scope.path)
        if answer is None:
            proto.response_bytes(404, [], b"")
            return
        if scope.method != "GET":
            await proto()
        proto.response_bytes(200, answer[0], answer[1])


async def serve(port: int, answers: dict[str, tuple[list[tuple[str, str]], bytes]]) -> None:
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels
    from granian.server.embed import Server

    server = Server(Bare(answers), address="127.0.0.1", port=port, interface=Interfaces.RSGI,
                    websockets=False, log_level=LogLevels.warning, http=HTTPModes.http1,
                    backlog=4096, backpressure=16_384)
    await server.serve()


def main() -> None:
    port = int(sys.argv[1])
    raw = json.loads(Path(sys.argv[2]).read_text())
    answers = {path: ([(k, v) for k, v in spec["headers"]], spec["body"].encode())
               for path, spec in raw.items()}
    uvloop.run(serve(port, answers))


if __name__ == "__main__":
    main()
