"""`--help` of every command in one style, `--version`, and shell completion as docs/cli.md
documents it."""

from __future__ import annotations

import re
import subprocess
import sys

import click
import pytest

from artemis import __version__
from artemis.cli import cli
from tests.cli.helpers import ENV, invoke

CLICK_METAVARS = frozenset({"TEXT", "INTEGER", "FLOAT", "BOOLEAN", "INTEGER RANGE",
                            "FLOAT RANGE", "PATH", "FILENAME", "CHOICE"})


def commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's path under `artemis`, groups included."""
    out = []
    for name, command in sorted(group.commands.items()):
        out.append((*path, name))
        if isinstance(command, click.Group):
            out += commands(command, (*path, name))
    return out


def command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", commands(), ids=" ".join)
def test_options_name_what_they_take_and_hint_in_one_style(path: tuple[str, ...]) -> None:
    """Every option with a value has a metavar naming what it takes (not click's TEXT or
    INTEGER RANGE), and --help shows hints as `[env: VAR; default: VALUE]`, as `artemis
    server` does, never click's `[env var: ...]` set off by two spaces."""
    command = command_at(path)
    with click.Context(command, info_name="artemis") as ctx:
        specs = {p.name: (p.get_help_record(ctx) or ("", ""))[0] for p in command.params
                 if isinstance(p, click.Option) and not p.is_flag}
    generic = {name: spec for name, spec in specs.items()
               if " " not in spec or spec.split(" ", 1)[1] in CLICK_METAVARS}
    result = invoke(*path, "--help")
    assert (0, {}, False, False) == (
        result.exit_code, generic, "[env var:" in result.stdout,
        re.search(r"\S  \[", result.stdout) is not None)


def test_version() -> None:
    """--version (and -V) print the version."""
    assert [f"artemis, version {__version__}\n"] * 2 == [
        invoke("--version").stdout, invoke("-V").stdout]


def completion(shell: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "artemis"], capture_output=True, text=True,
                          timeout=60, check=False,
                          env={**ENV, "_ARTEMIS_COMPLETE": shell, **env})


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_scripts(shell: str) -> None:
    """`_ARTEMIS_COMPLETE=<shell>_source artemis` prints the shell's completion script."""
    done = completion(f"{shell}_source")
    assert (0, True) == (done.returncode, "_ARTEMIS_COMPLETE" in done.stdout)


def test_completion_completes_commands_and_options() -> None:
    """bash completion of `artemis pull-` offers pull-in and pull-out; of
    `artemis pull-out instance --ope` the --operation and --operator options."""
    commands = completion("bash_complete", COMP_WORDS="artemis pull-", COMP_CWORD="1")
    options = completion("bash_complete", COMP_WORDS="artemis pull-out instance --ope",
                         COMP_CWORD="3")
    assert (["plain,pull-in", "plain,pull-out"], ["plain,--operation", "plain,--operator"]) == (
        commands.stdout.split(), options.stdout.split())

