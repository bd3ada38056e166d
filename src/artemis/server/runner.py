"""Run a node: granian's embedded RSGI server and the node's loops in one event loop.

One process, one event loop, one copy of the registry (granian's own I/O thread parses HTTP).

Start order: bind the listening socket, start the node's loops (the node is then `up`), serve.
Stop order on SIGTERM or SIGINT: stop accepting and let in-flight requests finish (granian, for at
most `shutdown_timeout` seconds; then they are cut), then stop the node's loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys

import uvloop

from artemis.server.app import build_app
from artemis.server.node import Node
from artemis.server.settings import Settings

__all__ = ["run", "serve"]

log = logging.getLogger("artemis.server")


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or until the task is cancelled)."""
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server.embed import Server

    node = Node(settings)
    app = build_app(node)
    # Everything loaded so far (modules, the app) lives as long as the process: keep it out of
    # the garbage collector's full passes, which would otherwise walk it every time.
    gc.collect()
    gc.freeze()
    server = Server(
        app,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.RSGI,
        websockets=True,
        log_enabled=True,
        log_level=LogLevels(settings.log_level),
        log_access=False,
        backlog=1024,
    )
    loop = asyncio.get_running_loop()
    serving: asyncio.Future[None] | None = None
    cut = False

    def cut_in_flight() -> None:
        nonlocal cut
        if serving is not None and not serving.done():
            log.warning("requests still in flight after %ss: closing them",
                        settings.shutdown_timeout)
            cut = True
            serving.cancel()

    def stop() -> None:
        log.info("stopping: closing WebSocket sessions, no new connections, finishing requests")
        closing = asyncio.ensure_future(node.closing())  # WebSockets first: they never end
        closing.add_done_callback(lambda _: server.stop())  # type: ignore[no-untyped-call]
        loop.call_later(settings.shutdown_timeout, cut_in_flight)

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop)
    async with node.running():
        log.info("artemis node %s serving on %s:%s (region %s, zone %s)",
                 settings.node_url, settings.host, settings.port, settings.region, settings.zone)
        if ready is not None:
            ready.set()
        serving = asyncio.ensure_future(server.serve())
        try:
            await serving
        except asyncio.CancelledError:
            if not cut:
                raise
    log.info("artemis node %s stopped", settings.node_url)


def run(settings: Settings) -> None:
    """Blocking entry point of `artemis server`."""
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    uvloop.run(serve(settings))
