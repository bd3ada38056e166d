"""Run a node: granian's embedded RSGI server and the node's loops in one event loop.

One process, one event loop, one copy of the registry (granian's own I/O thread parses HTTP).

Start order: logging, tracing (when OTEL_* variables ask for it), bind the listening socket (TLS
when `tls_cert` and `tls_key` are set), start the node's loops (the node is then `up`), serve.

Stop order on SIGTERM or SIGINT:
  1. close every WebSocket session (1001, going away): they never end by themselves; wait (at
     most a second) until their handlers have returned, then a moment more for granian's thread
     to send their close frames (granian drops a WebSocket still open when it stops); a session
     opened from now on is closed at once;
  2. stop accepting connections (granian); idle keep-alive connections are closed;
  3. let requests in flight finish, for at most `shutdown_timeout` seconds (then they are cut);
  4. stop the node's loops;
  5. flush and stop tracing (spans still buffered are exported);
  the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
from collections.abc import Mapping
from pathlib import Path

import uvloop

from artemis.server import tracing
from artemis.server.app import build_app
from artemis.server.logs import logging_config, setup_logging
from artemis.server.node import Node
from artemis.server.settings import Settings

__all__ = ["run", "serve", "tls_files"]

log = logging.getLogger("artemis.server")
# Granian sends a close frame from its own thread once the session's handler has returned, and
# tells Python nothing when it is out: this is how long it gets before granian stops.
CLOSE_FRAMES_GRACE = 0.1


async def serve(settings: Settings, *, traces: tracing.Tracing | None = None,
                ready: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or until the task is cancelled); requests are traced by
    `traces` when given."""
    from granian.constants import Interfaces, SSLProtocols
    from granian.log import LogLevels
    from granian.server.embed import Server

    cert, key = tls_files(settings)
    node = Node(settings)
    app = build_app(node)
    app.tracing = traces
    node.cluster.tracing = traces
    node.management.tracing = traces
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
        log_dictconfig=logging_config(settings),  # granian applies it again: keep ours
        log_access=False,
        backlog=1024,
        ssl_cert=cert,
        ssl_key=key,
        ssl_protocol_min=SSLProtocols.tls12 if settings.tls_min_version == "1.2"
        else SSLProtocols.tls13,
    )
    loop = asyncio.get_running_loop()
    serving: asyncio.Future[None] | None = None
    stopping = cut = False

    def cut_in_flight() -> None:
        nonlocal cut
        if serving is not None and not serving.done():
            log.warning("requests still in flight after %ss: closing them",
                        settings.shutdown_timeout)
            cut = True
            serving.cancel()

    def stop() -> None:
        nonlocal stopping
        if stopping:  # a second signal changes nothing: the first one's grace still runs
            return
        stopping = True
        log.info("stopping: closing WebSocket sessions, no new connections, finishing requests")
        loop.call_later(settings.shutdown_timeout, cut_in_flight)
        closing = asyncio.ensure_future(close_then_stop())
        closing.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def close_then_stop() -> None:
        had_sessions = node.open_sessions() > 0
        try:
            # WebSockets first: they never end by themselves; closing them waits for their
            # handlers (a second at most), then granian's thread gets a moment for the frames.
            await node.closing()
            if had_sessions:
                await asyncio.sleep(CLOSE_FRAMES_GRACE)
            if node.open_sessions():
                log.warning("%s WebSocket sessions still open: granian drops them",
                            node.open_sessions())
        finally:
            server.stop()  # type: ignore[no-untyped-call]

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


def tls_files(settings: Settings) -> tuple[Path | None, Path | None]:
    """The TLS certificate and key files, or (None, None) without TLS; loaded once here so that a
    missing or broken one stops the start with an OSError that names both files."""
    if not (settings.tls_cert and settings.tls_key):
        return None, None
    cert, key = Path(settings.tls_cert), Path(settings.tls_key)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except OSError as exc:  # ssl.SSLError is one too
        reason = exc.strerror or str(exc)
        raise OSError(f"cannot load TLS certificate {cert} with key {key}: {reason}") from None
    return cert, key


def run(settings: Settings, env: Mapping[str, str]) -> None:
    """Blocking entry point of `artemis server`; `env` holds the OTEL_* variables of tracing."""
    setup_logging(settings)
    traces = tracing.configure(env)
    try:
        uvloop.run(serve(settings, traces=traces))
    finally:
        if traces is not None:
            traces.shutdown()  # export the spans still buffered
