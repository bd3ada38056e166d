"""The `artemis` command: flags and environment -> settings -> server (and, later, client tools).

`artemis server` has one flag per setting, generated from the settings' own descriptions, so the
flags, `--help` and docs/configuration.md cannot drift apart.
"""

from __future__ import annotations

import os
import sys
from dataclasses import MISSING
from typing import Any

import click

from artemis import __version__
from artemis.server.settings import SETTINGS, Settings, SettingsError, env_name, flag_name

__all__ = ["cli", "main", "server_command"]


@click.group(name="artemis", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="artemis")
def cli() -> None:
    """Artemis: service registry and discovery server, compatible with Ctrip's Artemis."""


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
        run(settings)
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


def main() -> None:
    cli(prog_name="artemis")

