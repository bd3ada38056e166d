"""Run a node: granian's embedded RSGI server and the node's loops in one event loop.

One process, one event loop, one copy of the registry (granian's own I/O thread parses HTTP).

Start order: logging, tracing (when OTEL_* variables ask for it), bind the listening socket (TLS
when `tls_cert` and `tls_key` are set), build the node's parts (`compose.build`), start the
node's loops (the node is then `up`, or bootstraps), serve.

Stop order on SIGTERM or SIGINT (the composition root's doc gives the node's side of it):
  1. close every WebSocket session (1001, going away): they never end by themselves; wait (at
     most a second) until their handlers have returned, then a moment more for granian's thread
     to send their close frames (granian drops a WebSocket still open when it stops); a session
     opened from now on is closed at once;
  2. stop accepting connections (granian); idle keep-alive connections are closed;
  3. let requests in flight finish, for at most `shutdown_timeout` seconds (then they are cut);
  4. stop the node: the cluster hands peers what is still queued (at most a second) and closes
     its connections, management closes its store, then the node's loops are cancelled;
  5. flush and stop tracing (spans still buffered are exported);
  the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import signal
import socket
import ssl
import sys
from collections.abc import Mapping
from pathlib import Path

import uvloop

from artemis.server import compose
from artemis.server.connections import ConnectionGuard, ConnectionStats
from artemis.server.observability import tracing
from artemis.server.observability.collector import Collector
from artemis.server.observability.logs import logging_config, setup_logging
from artemis.server.settings import Settings

__all__ = ["PortInUse", "claim_port", "raise_open_files", "run", "serve", "tls_authority",
           "tls_files"]

log = logging.getLogger("artemis.server")
# Granian sends a close frame from its own thread once the session's handler has returned, and
# tells Python nothing when it is out: this is how long it gets before granian stops.
CLOSE_FRAMES_GRACE = 0.1
GUARD_SHARE = 0.02  # of the process's time, at most, spent counting connections per client


async def serve(settings: Settings, *, traces: tracing.Tracing | None = None,
                ready: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or until the task is cancelled); requests are traced by
    `traces` when given."""
    from granian.constants import HTTPModes, Interfaces, SSLProtocols
    from granian.http import HTTP1Settings, HTTP2Settings
    from granian.log import LogLevels
    from granian.server.embed import Server

    cert, key = tls_files(settings)
    ca = tls_authority(settings)
    port_lock = claim_port(settings.host, settings.port)
    raise_open_files(settings.max_connections)
    parts = compose.build(settings, tracing=traces)
    node, push = parts.node, parts.push
    # Everything loaded so far (modules, the app) lives as long as the process, and so do most
    # objects that survive two passes of the collector (sessions, caches): keep them out of its
    # full passes, which would otherwise walk them every time (observability/collector.py).
    if settings.gc_freeze:
        collector = node.collector = Collector()
        collector.install()
        if settings.gc_thaw_interval > 0:
            node.add_loop("collector thaw", settings.gc_thaw_interval,
                          lambda: node.steps.record("thaw", *collector.thaw()))
    server = Server(
        parts.app,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.RSGI,
        websockets=True,
        log_enabled=True,
        log_level=LogLevels(settings.log_level),
        log_dictconfig=logging_config(settings),  # granian applies it again: keep ours
        log_access=False,
        http=HTTPModes.auto if settings.http2 else HTTPModes.http1,
        # hyper's header read timeout runs from the moment a connection is accepted and again
        # between two requests of a keep-alive connection: a connection that never speaks, or
        # dribbles its headers, is closed after idle_timeout.
        http1_settings=HTTP1Settings(header_read_timeout=int(settings.idle_timeout * 1000),
                                     max_buffer_size=settings.max_header_bytes),
        http2_settings=HTTP2Settings(max_headers_size=settings.max_header_bytes,
                                     max_concurrent_streams=100),
        backlog=settings.listen_backlog,
        # granian holds one of these permits per connection, for the connection's life
        backpressure=settings.max_connections,
        ssl_cert=cert,
        ssl_key=key,
        ssl_protocol_min=SSLProtocols.tls12 if settings.tls_min_version == "1.2"
        else SSLProtocols.tls13,
        # mutual TLS: every connection shows a certificate the operator's authority signed
        ssl_ca=ca,
        ssl_client_verify=ca is not None,
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
        had_sessions = bool(push.sessions)
        try:
            # 1. WebSockets first: they never end by themselves; closing them waits for their
            # handlers (a second at most), then granian's thread gets a moment for the frames.
            await push.close_all()
            if had_sessions:
                await asyncio.sleep(CLOSE_FRAMES_GRACE)
            if push.sessions:
                log.warning("%s WebSocket sessions still open: granian drops them",
                            len(push.sessions))
        finally:
            server.stop()  # type: ignore[no-untyped-call]  # 2. and 3.: granian

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop)
    async with node.running():  # on exit: 4. the node stops (closers, then loops)
        log.info("artemis node %s serving on %s:%s (region %s, zone %s)",
                 settings.node_url, settings.host, settings.port, settings.region, settings.zone)
        if ready is not None:
            ready.set()
        serving = asyncio.ensure_future(server.serve())
        guarding = asyncio.ensure_future(guard_connections(settings, node.connections))
        try:
            await serving
        except asyncio.CancelledError:
            if not cut:
                raise
        finally:
            guarding.cancel()
            if port_lock is not None:
                port_lock.close()
    log.info("artemis node %s stopped", settings.node_url)


async def guard_connections(settings: Settings, stats: ConnectionStats) -> None:
    """Count connections per client address and close the excess, every
    connection_check_interval (or longer, see GUARD_SHARE), in a worker thread (Linux only:
    elsewhere only granian's total and idle limits apply)."""
    if not sys.platform.startswith("linux") or not settings.port:
        return
    guard = ConnectionGuard(settings.port, settings.max_connections_per_client, stats)
    pause = settings.connection_check_interval
    while True:
        await asyncio.sleep(pause)
        try:
            await asyncio.to_thread(guard.scan)
        except Exception:  # a scan that fails unexpectedly must not end the guard
            log.exception("counting connections per client failed")
        # A scan parses every row of the host's table (about 26 ms of CPU at 20,000 rows,
        # in pieces the loop's thread gets the interpreter between): the pause grows with it,
        # so scans take at most GUARD_SHARE of the process's time, whatever the number of
        # connections.
        pause = max(settings.connection_check_interval, guard.last_cpu / GUARD_SHARE)


class PortInUse(OSError):
    """Another process listens on the node's address and port."""


def claim_port(host: str, port: int) -> socket.socket | None:
    """Make sure this node alone serves `host:port`, before granian binds it.

    granian binds with SO_REUSEPORT, so a second node on a port already served would start
    without error and share it, the kernel handing each connection to either registry. Two
    checks refuse that: a bind without SO_REUSEPORT fails while anything listens there, and an
    abstract Unix socket named after the address, held for the process's life, closes the race
    between two nodes starting at once. Returns that socket (keep it open), or None where
    abstract sockets do not exist. Port 0 (any free port) needs neither."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve listen address {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(exc.errno, f"address {host}:{port} is already in use: another "
                                           "process serves it") from None
            raise
    if not sys.platform.startswith("linux"):
        return None
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(f"\0artemis-node:{address[0]}:{port}")
    except OSError as exc:
        lock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(exc.errno, f"address {host}:{port} is already in use: another "
                                       "artemis node is starting on it") from None
        raise
    return lock


def raise_open_files(connections: int) -> None:
    """Let the process hold `connections` sockets plus its own files: raise the soft limit on
    open files towards the hard one (a soft limit of 1,024 is common and would cap the node
    below its max_connections); warn when even the hard limit is lower."""
    want = connections + 1024
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover - no such limit on this platform
        return
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < want:
        log.warning("open files are limited to %s, below max_connections %s plus the node's "
                    "own files: raise the limit (ulimit -n, LimitNOFILE=) or lower "
                    "max_connections", soft, connections)


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


def tls_authority(settings: Settings) -> Path | None:
    """The certificate authority file of mutual TLS, or None; loaded once here so that a missing
    or broken one stops the start with an OSError that names it."""
    if not settings.tls_ca:
        return None
    ca = Path(settings.tls_ca)
    try:
        ssl.create_default_context(cafile=ca)
    except OSError as exc:
        raise OSError(f"cannot load TLS certificate authority {ca}: "
                      f"{exc.strerror or exc}") from None
    log.info("mutual TLS: every connection must show a certificate signed by %s", ca)
    return ca


def run(settings: Settings, env: Mapping[str, str]) -> None:
    """Blocking entry point of `artemis server`; `env` holds the OTEL_* variables of tracing."""
    setup_logging(settings)
    traces = tracing.configure(env)
    try:
        uvloop.run(serve(settings, traces=traces))
    finally:
        if traces is not None:
            traces.shutdown()  # 5. export the spans still buffered
