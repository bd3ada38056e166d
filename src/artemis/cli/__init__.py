"""The `artemis` command: the group, `--version`, and its commands gathered from their modules.

    server.py      `artemis server`: flags and environment -> settings -> a running node
    target.py      what every client command shares: --server/--region/--zone/--json, options
                   in one style, the node conversation, errors as one line, signals
    errors.py      exit codes, and the command's own refusals
    output.py      tables for people, the same rows as JSON; reports of writes; confirmations
    view.py        what the management commands read before and after a write
    discovery.py   `services`, `instances`, `watch`
    registry.py    `register`
    cluster.py     `cluster`
    management.py  `pull-out`, `pull-in` (instance, server, zone, group), `pulled-out`
    groups.py      `group`: list, add, update, delete, tag, untag, members
    rules.py       `route-rule`: list, show, create, update, delete, weight, release
    canary.py      `canary` (show, set, clear) and `logical` (list, set, delete)
    audit.py       `audit`

The client commands need only the base install (`pip install artemis-registry`); `artemis server`
needs the server extra and says so when it is missing.
"""

from __future__ import annotations

import click

from artemis import __version__
from artemis.cli.audit import audit
from artemis.cli.canary import canary, logical
from artemis.cli.cluster import cluster
from artemis.cli.discovery import instances, services, watch
from artemis.cli.groups import group
from artemis.cli.management import pull_in, pull_out, pulled_out
from artemis.cli.registry import register
from artemis.cli.rules import route_rule
from artemis.cli.server import server_command

__all__ = ["cli", "main", "server_command"]


@click.group(name="artemis", context_settings={"help_option_names": ["-h", "--help"],
                                                "max_content_width": 110})
@click.version_option(__version__, "--version", "-V", prog_name="artemis")
def cli() -> None:
    """Artemis: service registry and discovery server, compatible with Ctrip's Artemis.

    `artemis server` runs a node; the other commands are clients of a running node.
    """


for _command in (server_command(), services, instances, watch, register, cluster, pull_out,
                 pull_in, pulled_out, group, route_rule, canary, logical, audit):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="artemis")
