"""The `artemis` command: flags and environment -> settings -> server, plus client tools.

`artemis server` has one flag per setting, generated from the settings' own descriptions, so the
flags, `--help` and docs/configuration.md cannot drift apart.

The client commands (`services`, `instances`, `watch`, `register`, `cluster`) are built on
artemis.client and share `--server` (repeatable; ARTEMIS_SERVER, comma-separated), `--region`
(ARTEMIS_REGION), `--zone` (ARTEMIS_ZONE) and `--json`. Rules
  * What is shown is a table for people (rich) or, with `--json`, exactly the same rows as JSON.
  * Any ArtemisError ends the command with ONE line on stderr (`artemis: cannot reach URL: ...`
    when no node could be reached, `artemis: <error-code>: <message>` when a node refused) and
    exit code 1; usage errors are click's, exit code 2.
  * `watch` and `register` run until SIGINT or SIGTERM, then clean up and exit 0; a second signal
    stops them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import MISSING, dataclass
from typing import Any, NoReturn, TypeVar

import click
import msgspec

from artemis import __version__, wire
from artemis.server.settings import SETTINGS, Settings, SettingsError, env_name, flag_name

__all__ = ["cli", "main", "server_command"]

T = TypeVar("T")


@click.group(name="artemis", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="artemis")
def cli() -> None:
    """Artemis: service registry and discovery server, compatible with Ctrip's Artemis.

    `artemis server` runs a node; the other commands are clients of a running node.
    """


# --- artemis server ----------------------------------------------------------------------------

_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str}


def _options() -> list[click.Parameter]:
    params: list[click.Parameter] = [click.Option(
        ["--config"], type=click.Path(dir_okay=False), default=None, envvar="ARTEMIS_CONFIG",
        help="TOML file with settings (flags and ARTEMIS_* variables override it). "
             "[env: ARTEMIS_CONFIG]")]
    for name, f in SETTINGS.items():
        flag = flag_name(name)
        default = f.default if f.default_factory is MISSING else f.default_factory()
        shown = "(none)" if default in ("", {}) else default
        if f.metadata.get("secret"):
            shown = "(none)"
        help_text = f"{f.metadata['doc']} [env: {env_name(name)}; default: {shown}]"
        if f.type == "bool":
            params.append(click.Option([f"{flag}/--no-{flag[2:]}", name], default=None,
                                       help=help_text))
        else:
            kind = _TYPES.get(str(f.type), str)
            params.append(click.Option([flag, name], type=kind, default=None,
                                       metavar=name.upper(), help=help_text))
    return params


def _serve(config: str | None, **values: Any) -> None:
    from artemis.server.runner import run

    try:
        settings = Settings.load(config, os.environ, values)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        run(settings, os.environ)
    except OSError as exc:
        click.echo(f"artemis: cannot serve on {settings.host}:{settings.port}: {exc}", err=True)
        sys.exit(1)


def server_command() -> click.Command:
    return click.Command(
        "server",
        params=_options(),
        callback=_serve,
        help="Run a registry node (in-memory registry; 127.0.0.1:8080 by default). "
             "Settings come from defaults, then --config FILE, then ARTEMIS_* variables, "
             "then these flags.",
        context_settings={"max_content_width": 110},
    )


cli.add_command(server_command())


# --- what every client command shares --------------------------------------------------------

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


def _fail(target: Target, exc: Exception) -> NoReturn:
    from artemis.client.errors import TransportError

    parts: list[str] = []
    for part in str(exc).split("; "):  # each try's failure; the same one once, not per try
        if not any(seen.endswith(part) for seen in parts):
            parts.append(part)
    text = "; ".join(parts)
    if isinstance(exc, TransportError):
        text = f"cannot reach {', '.join(target.servers)}: {text}"
    click.echo("artemis: " + " ".join(text.split()), err=True)
    sys.exit(1)


def _run(target: Target, main: Coroutine[Any, Any, None]) -> None:
    """Run a client command's coroutine; errors become one line and exit code 1."""
    try:
        from artemis.client.errors import ArtemisError
    except ModuleNotFoundError as exc:  # httpx and websockets are not dependencies of the server
        main.close()
        click.echo(f"artemis: the client commands need httpx and websockets "
                   f"(pip install httpx websockets): {exc}", err=True)
        sys.exit(1)
    try:
        asyncio.run(main)
    except KeyboardInterrupt:  # a second Ctrl-C, or one where no signal handler can be set
        sys.exit(0)
    except ArtemisError as exc:
        _fail(target, exc)


def _stop_event() -> asyncio.Event:
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


def _log_warnings() -> None:
    """Show the client's warnings (a failed heartbeat round...) on stderr, one line each."""
    logging.basicConfig(level=logging.WARNING, format="artemis: %(message)s", stream=sys.stderr)


async def _call(target: Target, path: str, request: Any, kind: type[T],
                token: str | None = None) -> T:
    """POST one request with the Caller (retries, failover); a failed answer raises."""
    from artemis.client import Caller, NetworkTransport, ServerList
    from artemis.client.errors import server_error

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


def _show(target: Target, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """The rows as a table for people, or exactly as JSON with --json."""
    if target.as_json:
        click.echo(json.dumps(rows))
        return
    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not console.is_terminal:
        console.width = 10_000  # piped: never fold a row
    table = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=not console.is_terminal)
    for row in rows:
        table.add_row(*(Text(_cell(row[c])) for c in columns))
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- artemis services ------------------------------------------------------------------------

SERVICE_COLUMNS = ("serviceId", "instances")


@cli.command()
@client_command
def services(target: Target) -> None:
    """List the services with their instance counts (the node's newest snapshot, taken every
    second)."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        answer = await _call(target, "/api/discovery/services.json",
                             wire.GetServicesRequest(region_id=target.region,
                                                     zone_id=target.zone),
                             wire.GetServicesResponse)
        rows.extend({"serviceId": s.service_id, "instances": len(s.instances or ())}
                    for s in sorted(answer.services or (), key=lambda s: s.service_id or ""))

    _run(target, main())
    _show(target, SERVICE_COLUMNS, rows)


# --- artemis instances -----------------------------------------------------------------------

INSTANCE_COLUMNS = ("instanceId", "url", "ip", "port", "zone", "status", "group")


def instance_row(instance: wire.Instance) -> dict[str, Any]:
    return {"instanceId": instance.instance_id, "url": instance.url, "ip": instance.ip,
            "port": instance.port, "zone": instance.zone_id, "status": instance.status,
            "group": instance.group_id}


def _by_id(service: wire.Service) -> dict[str, wire.Instance]:
    return {(i.instance_id or "").lower(): i
            for i in sorted(service.instances or (), key=lambda i: i.instance_id or "")}


@cli.command()
@click.argument("service")
@client_command
def instances(target: Target, service: str) -> None:
    """List a service's instances (a discovery lookup)."""
    found: list[wire.Instance] = []

    async def main() -> None:
        from artemis.client import DiscoveryClient

        async with DiscoveryClient(list(target.servers), region=target.region, zone=target.zone,
                                   retries=target.retries, use_push=False) as discovery:
            found.extend(_by_id(await discovery.get_service(service)).values())

    _run(target, main())
    _show(target, INSTANCE_COLUMNS, [instance_row(i) for i in found])


# --- artemis watch ---------------------------------------------------------------------------

PUSH_WAIT = 2.0  # seconds watch waits for the push WebSocket before it looks the service up


def changes(before: dict[str, wire.Instance],
            after: dict[str, wire.Instance]) -> list[tuple[str, wire.Instance]]:
    """What happened to each instance between two views of a service, by instance id."""
    out = [("delete", i) for k, i in before.items() if k not in after]
    out += [("change" if k in before else "new", i) for k, i in after.items()
            if before.get(k) != i]
    return out


@cli.command()
@click.argument("service")
@client_command
def watch(target: Target, service: str) -> None:
    """Show a service's instances, then one line per change as the node pushes it, until
    Ctrl-C. Lines are `new`, `delete` or `change` and the instance; a `reload` from the node
    prints what it changed the same way."""

    async def main() -> None:
        from artemis.client import DiscoveryClient

        _log_warnings()
        stop = _stop_event()
        async with DiscoveryClient(list(target.servers), region=target.region, zone=target.zone,
                                   retries=target.retries) as discovery:
            # With push connected, get_service subscribes before it looks up, so no change
            # falls between the two; without push, the client polls and so will this. The
            # client offers a property, not an event, hence the poll.
            deadline = time.monotonic() + PUSH_WAIT
            while not discovery.push_connected and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            known = _by_id(await discovery.get_service(service))
            rows = [instance_row(i) for i in known.values()]
            if target.as_json:
                click.echo(json.dumps({"instances": rows, "serviceId": service}))
            else:
                _show(target, INSTANCE_COLUMNS, rows)

            def on_change(kind: str, now: wire.Service) -> None:
                nonlocal known
                after = _by_id(now)
                try:
                    for change, instance in changes(known, after):
                        row = instance_row(instance)
                        if target.as_json:
                            click.echo(json.dumps({"change": change, "instance": row,
                                                   "serviceId": service}))
                        else:
                            click.echo(f"{change:<6}  " + "  ".join(_cell(row[c])
                                                                    for c in INSTANCE_COLUMNS))
                except BrokenPipeError:  # `artemis watch s | head -3`: the reader is gone
                    stop.set()
                known = after

            discovery.add_listener(service, on_change)
            await stop.wait()

    _run(target, main())


# --- artemis register ------------------------------------------------------------------------

def _metadata(ctx: click.Context, param: click.Parameter,
              values: tuple[str, ...]) -> dict[str, str] | None:
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", ctx, param)
        pairs[key] = item
    return pairs or None


@cli.command()
@click.option("--service", "service_id", required=True, help="The service's id.")
@click.option("--instance-id", required=True, help="The instance's id, unique in the service.")
@click.option("--url", required=True, help="The URL at which the instance serves.")
@click.option("--ip", default=None, help="The instance's IP address.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="The instance's port.")
@click.option("--group", default=None, help="The instance's group id.")
@click.option("--status", default="up", show_default=True, help="The instance's status.")
@click.option("--metadata", multiple=True, callback=_metadata, metavar="KEY=VALUE",
              help="Metadata of the instance; repeat it for several.")
@click.option("--heartbeat-interval", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, help="Seconds between heartbeats.")
@client_command
def register(target: Target, service_id: str, instance_id: str, url: str, ip: str | None,
             port: int, group: str | None, status: str, metadata: dict[str, str] | None,
             heartbeat_interval: float) -> None:
    """Register an instance and keep it alive with heartbeats until Ctrl-C, then unregister
    it."""
    wanted = wire.Instance(service_id=service_id, instance_id=instance_id, url=url, ip=ip,
                           port=port, group_id=group, status=status, metadata=metadata)

    def say(action: str, instance: wire.Instance, server: str, text: str) -> None:
        if target.as_json:
            click.echo(json.dumps({"action": action, "instance": msgspec.to_builtins(instance),
                                   "server": server}))
        else:
            click.echo(text)

    async def main() -> None:
        from artemis.client import RegistryClient

        _log_warnings()
        stop = _stop_event()
        async with RegistryClient(list(target.servers), region=target.region, zone=target.zone,
                                  heartbeat_interval=heartbeat_interval,
                                  retries=target.retries) as registry:
            await registry.register(wanted)
            (kept,) = registry.instances
            name = f"{service_id}/{instance_id}"
            server = registry.caller.servers.current()
            say("registered", kept, server,
                f"registered {name} ({url}) at {server}; heartbeat every "
                f"{heartbeat_interval:g} s; Ctrl-C to unregister")
            await stop.wait()
            await registry.unregister(kept)
            server = registry.caller.servers.current()
            say("unregistered", kept, server, f"unregistered {name} at {server}")

    _run(target, main())


# --- artemis cluster -------------------------------------------------------------------------

class NodesResponse(msgspec.Struct, rename="camel", kw_only=True, frozen=True):
    """The answer of /api/cluster/nodes.json (no wire type: it is this API's own shape)."""

    nodes: list[wire.ServiceNodeStatus] | None = None
    response_status: wire.ResponseStatus


NODE_COLUMNS = ("url", "zone", "status", "canServiceRegistry", "canServiceDiscovery")


@cli.command()
@client_command
def cluster(target: Target) -> None:
    """List the cluster's nodes and their status."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        answer = await _call(target, "/api/cluster/nodes.json",
                             wire.GetServiceNodesRequest(region_id=target.region,
                                                         zone_id=target.zone),
                             NodesResponse)
        rows.extend({"url": n.node.url, "zone": n.node.zone.zone_id, "status": n.status,
                     "canServiceRegistry": n.can_service_registry,
                     "canServiceDiscovery": n.can_service_discovery}
                    for n in sorted(answer.nodes or (), key=lambda n: n.node.url))

    _run(target, main())
    _show(target, NODE_COLUMNS, rows)


# --- artemis pull-out / pull-in / pulled-out / audit ---------------------------------------------

_token = click.option("--token", envvar="ARTEMIS_TOKEN", show_envvar=True, required=True,
                      help="Bearer token of the management API (write role to pull out or "
                           "in, read role to list).")
_operator = click.option("--operator", envvar="USER", show_envvar=True, default="artemis-cli",
                         show_default=True, help="Who does it, for the audit log.")
_operation = click.option("--operation", default="pull-out", show_default=True,
                          help="The operation's name; pull-in completes the same name.")
_reason = click.option("--reason", default=None, help="Why, for the audit log.")
_TARGETS = ("instance", "server", "zone")


def _operate(target: Target, what: str, keys: tuple[str, ...], complete: bool, token: str,
             operator: str, operation: str, reason: str | None) -> None:
    if what == "instance":
        if len(keys) != 2:
            raise click.UsageError("instance takes SERVICE INSTANCE_ID")
        path = "/api/management/operate-instance.json"
        request: Any = wire.OperateInstanceRequest(
            instance_key=wire.InstanceKey(instance_id=keys[1], region_id=target.region,
                                          service_id=keys[0]),
            operation=operation, operation_complete=complete, operator_id=operator,
            reason=reason)
    elif what == "server":
        if len(keys) != 1:
            raise click.UsageError("server takes IP (the instances' ip)")
        path = "/api/management/operate-server.json"
        request = wire.OperateServerRequest(
            operation=operation, operation_complete=complete, operator_id=operator,
            reason=reason, server_key=wire.ServerKey(region_id=target.region, server_id=keys[0]))
    else:
        if len(keys) != 2:
            raise click.UsageError("zone takes SERVICE ZONE")
        path = "/api/management/zone/operate-zone-operations.json"
        request = wire.OperateZoneOperationsRequest(
            operation=operation, operation_complete=complete, operator_id=operator,
            reason=reason, zone_operations_list=[wire.ZoneOperations(
                operations=[operation], zone_key=wire.ZoneKey(
                    region_id=target.region, service_id=keys[0], zone_id=keys[1]))])

    async def main() -> None:
        await _call(target, path, request, wire.StatusOnlyResponse, token)

    _run(target, main())
    done = "back in" if complete else "out"
    if target.as_json:
        click.echo(json.dumps({"target": what, "keys": list(keys), "operation": operation,
                               "pulled": done}))
    elif complete:
        click.echo(f"{what} {' '.join(keys)}: {operation} completed (back in discovery unless "
                   f"another operation holds it)")
    else:
        click.echo(f"{what} {' '.join(keys)}: {operation} in force (out of discovery)")


@cli.command(name="pull-out")
@click.argument("what", type=click.Choice(_TARGETS))
@click.argument("keys", nargs=-1, required=True)
@_token
@_operator
@_operation
@_reason
@client_command
def pull_out(target: Target, what: str, keys: tuple[str, ...], token: str, operator: str,
             operation: str, reason: str | None) -> None:
    """Take an instance (SERVICE INSTANCE_ID), a server (IP) or a service's zone (SERVICE ZONE)
    out of discovery; it stays registered."""
    _operate(target, what, keys, False, token, operator, operation, reason)


@cli.command(name="pull-in")
@click.argument("what", type=click.Choice(_TARGETS))
@click.argument("keys", nargs=-1, required=True)
@_token
@_operator
@_operation
@_reason
@client_command
def pull_in(target: Target, what: str, keys: tuple[str, ...], token: str, operator: str,
            operation: str, reason: str | None) -> None:
    """Complete a pull-out operation: the target is back in discovery once no other operation
    holds it."""
    _operate(target, what, keys, True, token, operator, operation, reason)


PULLED_COLUMNS = ("kind", "key", "operations")


@cli.command(name="pulled-out")
@_token
@client_command
def pulled_out(target: Target, token: str) -> None:
    """List what is pulled out: instances, servers and zones, with their operations."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        asked = wire.RegionRequest(region_id=target.region)
        instances = await _call(target, "/api/management/all-instance-operations.json", asked,
                                wire.AllInstanceOperationsResponse, token)
        servers = await _call(target, "/api/management/all-server-operations.json", asked,
                              wire.AllServerOperationsResponse, token)
        zones = await _call(target, "/api/management/zone/get-all-zone-operations.json", asked,
                            wire.AllZoneOperationsResponse, token)
        rows.extend({"kind": "instance", "key": f"{i.instance_key.service_id} "
                     f"{i.instance_key.instance_id}", "operations": ",".join(i.operations)}
                    for i in instances.all_instance_operations or ())
        rows.extend({"kind": "server", "key": s.server_key.server_id,
                     "operations": ",".join(s.operations)}
                    for s in servers.all_server_operations or ())
        rows.extend({"kind": "zone", "key": f"{z.zone_key.service_id} {z.zone_key.zone_id}",
                     "operations": ",".join(z.operations)}
                    for z in zones.all_zone_operations or ())

    _run(target, main())
    _show(target, PULLED_COLUMNS, rows)


AUDIT_COLUMNS = ("time", "actor", "operator", "kind", "target", "operation", "done", "before",
                 "after", "reason")


@cli.command()
@_token
@click.option("--operator", "operator_filter", default=None, help="Only this operatorId's.")
@click.option("--service", "service_filter", default=None, help="Only this service's.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many entries, newest first.")
@client_command
def audit(target: Target, token: str, operator_filter: str | None, service_filter: str | None,
          limit: int) -> None:
    """Show the newest management writes: who, what, when, before and after."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        answer = await _call(target, "/api/management/log/audit.json", wire.OperationLogRequest(
            limit=limit, operator_id=operator_filter, service_id=service_filter),
            wire.AuditLogResponse, token)
        for e in answer.logs or ():
            key = " ".join(k for k in (e.service_id, e.instance_id, e.server_id, e.zone_id) if k)
            rows.append({
                "time": dt.datetime.fromtimestamp(e.create_time / 1000).astimezone().strftime(
                    "%Y-%m-%d %H:%M:%S"),
                "actor": e.actor, "operator": e.operator_id, "kind": e.kind, "target": key,
                "operation": e.operation, "done": "pull-in" if e.complete else "pull-out",
                "before": ",".join(e.before), "after": ",".join(e.after), "reason": e.reason})

    _run(target, main())
    _show(target, AUDIT_COLUMNS, rows)


def main() -> None:
    cli(prog_name="artemis")
