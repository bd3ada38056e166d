"""The registry command: `artemis register` registers an instance, keeps it alive with heartbeats
(a RegistryClient) until SIGINT or SIGTERM, then unregisters it. `--token` (ARTEMIS_TOKEN, the
variable the management commands read too) is sent as a bearer token: a node in
registration_mode token needs one with the register role for the service."""

from __future__ import annotations

import json

import click
import msgspec

from artemis import wire
from artemis.cli.target import Target, client_command, log_warnings, run, stop_event
from artemis.client import RegistryClient

__all__ = ["register"]


def _metadata(ctx: click.Context, param: click.Parameter,
              values: tuple[str, ...]) -> dict[str, str] | None:
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", ctx, param)
        pairs[key] = item
    return pairs or None


@click.command()
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
@click.option("--token", envvar="ARTEMIS_TOKEN", show_envvar=True, default=None,
              help="Bearer token (register role for the service) for a node whose "
                   "registration_mode is token; in open mode it names the instance's owner.")
@click.option("--heartbeat-interval", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, help="Seconds between heartbeats.")
@client_command
def register(target: Target, service_id: str, instance_id: str, url: str, ip: str | None,
             port: int, group: str | None, status: str, metadata: dict[str, str] | None,
             heartbeat_interval: float, token: str | None) -> None:
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
        log_warnings()
        stop = stop_event()
        async with RegistryClient(list(target.servers), region=target.region, zone=target.zone,
                                  heartbeat_interval=heartbeat_interval,
                                  retries=target.retries, token=token or None) as registry:
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

    run(target, main())
