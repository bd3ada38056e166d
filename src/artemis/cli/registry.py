"""The registry command: `artemis register` registers an instance, keeps it alive with heartbeats
(a RegistryClient) until SIGINT or SIGTERM, then unregisters it. `--token` (ARTEMIS_TOKEN, the
variable the management commands read too) is sent as a bearer token: a node in
registration_mode token needs one with the register role for the service.

Rules
  * The signal handlers are in place before anything is registered, and stay until the end: a
    stop delivered twice (timeout(1) signals the command and its process group; a terminal's
    Ctrl-C reaches every process of a pipeline) unregisters once, never half.
  * The unregistration is tried for at most UNREGISTER_DEADLINE seconds; when it fails, one line
    on stderr says so and that the instance stays until its lease expires, and the exit code
    says why (1 refused, 3 unreachable).
  * Output that cannot be written (stdout's reader is gone) is dropped: the instance is still
    heartbeated, and unregistered on the signal.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

import click
import msgspec

from artemis import wire
from artemis.cli.errors import Exit
from artemis.cli.output import reader_gone
from artemis.cli.target import (
    Target,
    client_command,
    fail,
    key_values,
    log_warnings,
    option,
    run,
    stop_event,
)
from artemis.client import RegistryClient
from artemis.client.errors import ArtemisError, ServerError

__all__ = ["UNREGISTER_DEADLINE", "register"]

UNREGISTER_DEADLINE: Final = 5.0


@click.command()
@option("--service", "service_id", metavar="SERVICE", required=True, help="The service's id.")
@option("--instance-id", metavar="ID", required=True,
        help="The instance's id, unique in the service.")
@option("--url", metavar="URL", required=True, help="The URL at which the instance serves.")
@option("--ip", metavar="IP", help="The instance's IP address.")
@option("--port", metavar="PORT", type=click.IntRange(0, 65535), default=0, shown="0",
        help="The instance's port.")
@option("--group", metavar="GROUP", help="The instance's group id.")
@option("--status", metavar="STATUS", default="up", help="The instance's status.")
@option("--metadata", metavar="KEY=VALUE", multiple=True, callback=key_values,
        help="Metadata of the instance; repeat it for several.")
@option("--token", metavar="TOKEN", env="ARTEMIS_TOKEN",
        help="Bearer token (register role for the service) for a node whose registration_mode "
             "is token; in open mode it names the instance's owner.")
@option("--heartbeat-interval", metavar="SECONDS",
        type=click.FloatRange(min=0, min_open=True), default=5.0, shown="5",
        help="Seconds between heartbeats.")
@client_command
def register(target: Target, service_id: str, instance_id: str, url: str, ip: str | None,
             port: int, group: str | None, status: str, metadata: dict[str, str] | None,
             heartbeat_interval: float, token: str | None) -> None:
    """Register an instance and keep it alive with heartbeats until Ctrl-C (SIGINT) or SIGTERM,
    then unregister it."""
    wanted = wire.Instance(service_id=service_id, instance_id=instance_id, url=url, ip=ip,
                           port=port, group_id=group, status=status, metadata=metadata or None)
    name = f"{service_id}/{instance_id}"

    def say(action: str, instance: wire.Instance, server: str, text: str) -> None:
        try:
            if target.as_json:
                click.echo(json.dumps({"action": action,
                                       "instance": msgspec.to_builtins(instance),
                                       "server": server}))
            else:
                click.echo(text)
        except BrokenPipeError:
            reader_gone()

    async def main() -> None:
        log_warnings()
        stop = stop_event()  # before anything is registered
        registry = RegistryClient(list(target.servers), region=target.region, zone=target.zone,
                                  heartbeat_interval=heartbeat_interval, retries=target.retries,
                                  token=token or None)
        registry.caller.retry_refused = False  # the first answer is the person's
        async with registry:
            await registry.register(wanted)
            registry.caller.retry_refused = True  # from now on, keep it registered
            (kept,) = registry.instances
            server = registry.caller.servers.current()
            say("registered", kept, server,
                f"registered {name} ({url}) at {server}; heartbeat every "
                f"{heartbeat_interval:g} s; Ctrl-C to unregister")
            await stop.wait()
            problem = await _unregister(registry, kept)
            if problem is not None:
                fail(f"could not unregister {name}: {problem[1]}; it stays registered until "
                     f"its lease expires", problem[0])
            say("unregistered", kept, registry.caller.servers.current(),
                f"unregistered {name} at {registry.caller.servers.current()}")

    run(target, main())


async def _unregister(registry: RegistryClient, kept: wire.Instance) -> tuple[Exit, Any] | None:
    """Unregister within UNREGISTER_DEADLINE; None when done, else the exit code and why."""
    try:
        await asyncio.wait_for(registry.unregister(kept), UNREGISTER_DEADLINE)
    except TimeoutError:
        return Exit.UNREACHABLE, f"no node answered within {UNREGISTER_DEADLINE:g} s"
    except ServerError as exc:
        return Exit.NODE_REFUSED, exc
    except ArtemisError as exc:
        return Exit.UNREACHABLE, exc
    return None
