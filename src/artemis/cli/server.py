"""`artemis server`: one flag per setting, generated from the settings' own descriptions (so the
flags, `--help` and docs/configuration.md cannot drift apart), then a running node
(artemis.server.runner.run).

The server's libraries are an extra of the distribution (`pip install 'artemis-registry[server]'`;
a MySQL or MariaDB database needs `[mysql]`, PostgreSQL `[postgres]`, OpenTelemetry export
`[otel]`): when one a node needs is missing, the command says which extra to install, on one
line, and exits 1.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import MISSING
from typing import Any, Final

import click

from artemis.server.settings import SETTINGS, Settings, SettingsError, env_name, flag_name

__all__ = ["DISTRIBUTION", "extra_of", "missing_extras", "server_command"]

DISTRIBUTION: Final = "artemis-registry"
# What each extra brings, by the top-level module a node imports (the [server] extra's on start,
# the drivers' when a database URL names them, [otel]'s when OTEL_* variables ask for export).
SERVER_MODULES: Final = ("granian", "aiohttp", "prometheus_client", "opentelemetry",
                         "sqlalchemy", "alembic", "aiosqlite") + (
                             () if sys.platform == "win32" else ("uvloop",))
_EXTRA_OF: Final = {"asyncmy": "mysql", "asyncpg": "postgres", "opentelemetry.sdk": "otel",
                    "opentelemetry.exporter": "otel"}
_DRIVERS: Final = {"mysql": "asyncmy", "mariadb": "asyncmy", "postgresql": "asyncpg",
                   "postgres": "asyncpg"}
_TYPES: Final[dict[str, Any]] = {"int": int, "float": float, "str": str}


def extra_of(module: str) -> str:
    """The extra of the distribution that brings `module` (a dotted name)."""
    for prefix, extra in _EXTRA_OF.items():
        if module == prefix or module.startswith(prefix + "."):
            return extra
    return "server"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing, or a broken install
        return False


def missing_extras(database: str) -> dict[str, list[str]]:
    """The extras a node with this `database` URL needs and lacks: extra -> missing modules."""
    missing: dict[str, list[str]] = {}
    for module in SERVER_MODULES:
        if not _installed(module):
            missing.setdefault("server", []).append(module)
    scheme = database.partition("://")[0].lower() if "://" in database else ""
    backend, _, driver = scheme.partition("+")
    driver = driver or _DRIVERS.get(backend, "")
    if driver and not _installed(driver):
        missing.setdefault(extra_of(driver), []).append(driver)
    return missing


def _need(extras: dict[str, list[str]]) -> None:
    """Say which extras to install, on one line, and exit 1."""
    names = ",".join(sorted(extras))
    modules = ", ".join(m for ms in extras.values() for m in ms)
    click.echo(f"artemis: artemis server needs {DISTRIBUTION}[{names}] (missing: {modules}): "
               f"pip install '{DISTRIBUTION}[{names}]'", err=True)
    sys.exit(1)


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
    try:
        settings = Settings.load(config, os.environ, values)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    missing = missing_extras(settings.database)
    if missing:
        _need(missing)
    try:
        from artemis.server.runner import run

        run(settings, os.environ)
    except ModuleNotFoundError as exc:  # an optional module imported on the way (OTEL_*...)
        if not exc.name or exc.name.partition(".")[0] == "artemis":
            raise
        _need({extra_of(exc.name): [exc.name]})
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
             "then these flags. Needs the server extra: "
             f"pip install '{DISTRIBUTION}[server]'.",
        context_settings={"max_content_width": 110},
    )
