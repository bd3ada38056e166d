"""What every client command shares: where it goes (`Target`, from --server, --region, --zone and
--json), one request with retries and failover (`call`), running its coroutine (`run`: any
ArtemisError becomes ONE line on stderr and exit code 1), and stopping on a signal.

Rules
  * `--server` is repeatable and each value (or ARTEMIS_SERVER) may list several URLs,
    comma-separated; none given means DEFAULT_SERVER.
  * The error line is `artemis: cannot reach URL: ...` when no node could be reached, and
    `artemis: <error-code>: <message>` when a node refused; usage errors are click's (exit 2).
  * `watch` and `register` run until SIGINT or SIGTERM (`stop_event`), then clean up and exit 0;
    a second signal stops them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

from artemis import wire
from artemis.client import Caller, NetworkTransport, ServerList
from artemis.client.errors import ArtemisError, TransportError, server_error

__all__ = ["DEFAULT_SERVER", "Target", "call", "client_command", "log_warnings", "run",
           "stop_event"]

T = TypeVar("T")
DEFAULT_SERVER = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Target:
    """Where a client command goes and how it shows what it gets."""

    servers: tuple[str, ...]
    region: str
    zone: str | None
    as_json: bool

    @property
    def retries(self) -> int:
        """Tries of one request: every node once, and at least three."""
        return max(3, len(self.servers) + 1)


def _server_urls(ctx: click.Context, param: click.Parameter,
                 values: tuple[str, ...]) -> tuple[str, ...]:
    """Every --server value (and ARTEMIS_SERVER) may list several URLs, comma-separated."""
    urls = tuple(u for value in values for u in re.split(r"[,\s]+", value) if u)
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise click.BadParameter(f"{url!r} is not an http:// or https:// URL", ctx, param)
    return urls or (DEFAULT_SERVER,)


def client_command(fn: Callable[..., None]) -> Callable[..., None]:
    """Add --server, --region, --zone and --json to `fn`, which gets them as one Target."""

    @functools.wraps(fn)
    def command(servers: tuple[str, ...], region: str, zone: str | None, as_json: bool,
                **rest: Any) -> None:
        fn(Target(servers, region, zone or None, as_json), **rest)

    decorators = [
        click.option("--server", "servers", metavar="URL", multiple=True, callback=_server_urls,
                     envvar="ARTEMIS_SERVER", show_envvar=True,
                     help=f"A node's URL; repeat it (or separate with commas) for several. "
                          f"[default: {DEFAULT_SERVER}]"),
        click.option("--region", envvar="ARTEMIS_REGION", show_envvar=True, default="default",
                     show_default=True, help="Region of the client."),
        click.option("--zone", envvar="ARTEMIS_ZONE", show_envvar=True, default=None,
                     help="Zone of the client (and of a registered instance)."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print JSON (the rows shown) instead of a table."),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def _fail(target: Target, exc: ArtemisError) -> NoReturn:
    parts: list[str] = []
    for part in str(exc).split("; "):  # each try's failure; the same one once, not per try
        if not any(seen.endswith(part) for seen in parts):
            parts.append(part)
    text = "; ".join(parts)
    if isinstance(exc, TransportError):
        text = f"cannot reach {', '.join(target.servers)}: {text}"
    click.echo("artemis: " + " ".join(text.split()), err=True)
    sys.exit(1)


def run(target: Target, main: Coroutine[Any, Any, None]) -> None:
    """Run a client command's coroutine; errors become one line and exit code 1."""
    try:
        asyncio.run(main)
    except KeyboardInterrupt:  # a second Ctrl-C, or one where no signal handler can be set
        sys.exit(0)
    except ArtemisError as exc:
        _fail(target, exc)


def stop_event() -> asyncio.Event:
    """An event set by the first SIGINT or SIGTERM; a second one interrupts at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)

    def first_signal() -> None:
        stop.set()
        for sig in signals:
            loop.remove_signal_handler(sig)

    for sig in signals:
        # Where handlers cannot be set (Windows), Ctrl-C raises KeyboardInterrupt: exit 0 too.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, first_signal)
    return stop


def log_warnings() -> None:
    """Show the client's warnings (a failed heartbeat round...) on stderr, one line each."""
    logging.basicConfig(level=logging.WARNING, format="artemis: %(message)s", stream=sys.stderr)


async def call(target: Target, path: str, request: Any, kind: type[T],
               token: str | None = None) -> T:
    """POST one request with the Caller (retries, failover); a failed answer raises."""
    transport = NetworkTransport(token=token)
    try:
        caller = Caller(transport, ServerList(target.servers), retries=target.retries)
        answer = await caller.call(path, wire.encode(request), kind)
    finally:
        await transport.aclose()
    status: wire.ResponseStatus = answer.response_status  # type: ignore[attr-defined]
    if status.status == "fail":
        raise server_error(status.error_code, status.message)
    return answer
