"""What every client command shares: where it goes (`Target`, from --server, --region, --zone and
--json), its options in one style (`option`), the conversation with the node (`Node`: calls with
failover, a refusal taken as the answer), running its coroutine (`run`: every error one line on
stderr and its exit code, see errors.py), and stopping on a signal (`stop_event`).

Rules
  * `--server` is repeatable and each value (or ARTEMIS_SERVER) may list several URLs,
    comma-separated; none given means DEFAULT_SERVER.
  * A request that gets no answer moves to another node and is tried again (at least three tries,
    every node once); a node's refusal (`service-unavailable` from a node without a database, an
    HTTP 404 from a wrong URL) is asked of each other node once, then reported as it is, not as
    a connection failure.
  * The error line is `artemis: cannot reach URL: ...` when no node answered (exit 3),
    `artemis: <error-code>: <message>` when a node refused, `artemis: URL: HTTP <status>` when
    it answered an HTTP error (exit 1), and the command's own words when it stops before
    sending anything (exit 4, 5); usage errors are click's (exit 2).
  * `watch` and `register` run until SIGINT or SIGTERM (`stop_event`), then clean up and exit 0.
    Further signals are ignored while they clean up: timeout(1) sends its signal to the command
    and again to its process group, and a terminal's Ctrl-C reaches every process of a pipeline,
    so one stop often arrives twice. The clean-up is bounded (`register` tries to unregister for
    at most UNREGISTER_DEADLINE seconds).
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
from typing import Any, NoReturn, Self, TypeVar

import click

from artemis import wire
from artemis.cli.errors import Exit, Stop
from artemis.client import Caller, NetworkTransport, ServerList
from artemis.client.errors import (
    ArtemisError,
    HttpStatusError,
    ServerError,
    TransportError,
    server_error,
)

__all__ = ["DEFAULT_SERVER", "Node", "Target", "client_command", "fail", "key_values",
           "log_warnings", "option", "run", "stop_event", "token_option"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
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


class HintedOption(click.Option):
    """An option whose help text carries its own hints, `[env: VAR; default: VALUE]`, in the
    style of `artemis server`'s (click's own `[env var: ...]`, `[default: ...]` and range hints
    are not added)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        return None if record is None else (record[0], self.help or "")


def option(*decls: str, help: str, env: str | None = None, default: Any = None,
           shown: str | None = None, required: bool = False,
           **kwargs: Any) -> Callable[[F], F]:
    """A click option in the commands' one style: a metavar naming what it takes (required for
    options with a value), and `[required; env: VAR; default: VALUE]` after the help text."""
    if not kwargs.get("is_flag") and "metavar" not in kwargs and not (
            decls and "/" in decls[0]):
        raise TypeError(f"option {decls[0]} needs a metavar")
    if kwargs.get("is_flag") and default is None and not (decls and "/" in decls[0]):
        default = False
    hints = ["required"] if required else []
    if env:
        hints.append(f"env: {env}")
    if shown is None and default not in (None, False, (), ""):
        shown = str(default)
    if shown:
        hints.append(f"default: {shown}")
    text = f"{help} [{'; '.join(hints)}]" if hints else help
    return click.option(*decls, cls=HintedOption, help=text, envvar=env, default=default,
                        required=required, **kwargs)


def token_option(what: str) -> Callable[[F], F]:
    """--token (ARTEMIS_TOKEN), the management API's bearer token; `what` says the role."""
    return option("--token", metavar="TOKEN", env="ARTEMIS_TOKEN",
                  help=f"Bearer token of the management API ({what}).")


def key_values(ctx: click.Context, param: click.Parameter,
               values: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE arguments (repeatable options) as a dict; a value without `=` is refused."""
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", ctx, param)
        pairs[key] = item
    return pairs


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
        option("--server", "servers", metavar="URL", multiple=True, callback=_server_urls,
               env="ARTEMIS_SERVER", shown=DEFAULT_SERVER,
               help="A node's URL; repeat it (or separate with commas) for several."),
        option("--region", metavar="REGION", env="ARTEMIS_REGION", default="default",
               help="Region of the client: a node answers only its own."),
        option("--zone", metavar="ZONE", env="ARTEMIS_ZONE",
               help="Zone of the client (and of a registered instance)."),
        option("--json", "as_json", is_flag=True,
               help="Print JSON (the rows shown, with structured fields) instead of a table."),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


class Node:
    """The conversation of one command with the cluster: one transport (with the token, if
    any), one Caller that keeps to the same node for every call unless that node fails, and
    refusals taken as answers (module rules)."""

    def __init__(self, target: Target, token: str | None = None) -> None:
        self.target = target
        self.token = token or None
        self.transport = NetworkTransport(token=self.token)
        self.caller = Caller(self.transport, ServerList(target.servers), retries=target.retries,
                             retry_refused=False)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.transport.aclose()

    @property
    def url(self) -> str:
        """The node the next call goes to."""
        return self.caller.servers.current()

    async def call(self, path: str, request: Any, kind: type[T]) -> T:
        """POST one request; a failed answer raises its ServerError."""
        answer = await self.caller.call(path, wire.encode(request), kind)
        status: wire.ResponseStatus = answer.response_status  # type: ignore[attr-defined]
        if status.status == "fail":
            message = status.message
            if status.error_code == "no-permission" and self.token is None and (
                    "token" in message):
                message += " (no token was given: --token or ARTEMIS_TOKEN)"
            raise server_error(status.error_code, message)
        return answer

    async def get(self, path: str, kind: type[T]) -> T:
        """GET a status endpoint of the current node (one try)."""
        url = self.url
        raw = await self.transport.get(url, path)
        try:
            return wire.decode(raw, kind, unique_keys=False)
        except wire.DecodeError as exc:
            raise TransportError(f"{url}{path}: {exc}") from None


def _one_line(text: str) -> str:
    parts: list[str] = []
    for part in text.split("; "):  # each try's failure; the same one once, not per try
        if not any(seen.endswith(part) for seen in parts):
            parts.append(part)
    return " ".join("; ".join(parts).split())


def fail(text: str, code: Exit) -> NoReturn:
    """One line on stderr, `artemis: text`, and exit `code`."""
    click.echo("artemis: " + _one_line(text), err=True)
    sys.exit(code)


def run(target: Target, main: Coroutine[Any, Any, None]) -> None:
    """Run a client command's coroutine; errors become one line and their exit code."""
    try:
        asyncio.run(main)
    except KeyboardInterrupt:  # a Ctrl-C where no signal handler can be set (Windows)
        sys.exit(Exit.DONE)
    except Stop as exc:
        fail(str(exc), exc.code)
    except ServerError as exc:
        fail(str(exc), Exit.NODE_REFUSED)
    except HttpStatusError as exc:
        fail(str(exc), Exit.NODE_REFUSED)
    except TransportError as exc:
        fail(f"cannot reach {', '.join(target.servers)}: {exc}", Exit.UNREACHABLE)
    except ArtemisError as exc:
        fail(str(exc), Exit.NODE_REFUSED)


def stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM; the handlers stay, so a signal delivered again while
    the command cleans up changes nothing (module rules)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Where handlers cannot be set (Windows), Ctrl-C raises KeyboardInterrupt: exit 0 too.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def log_warnings() -> None:
    """Show the client's warnings (a failed heartbeat round...) on stderr, one line each."""
    logging.basicConfig(level=logging.WARNING, format="artemis: %(message)s", stream=sys.stderr)

