"""What the client commands print: a table for people (rich), or exactly the same rows as JSON
with `--json`. A piped table is never folded: one row is one line. A write reports what it did
(`report`: a few lines and the instances it touched, or one JSON object), and asks before it
does something wide or destructive (`confirm`).

Values are data, never markup nor terminal commands: a cell is a rich `Text` (no markup is
read: `[red]x` and `[link=javascript:…]` print as written) and its control characters are
shown escaped (`\x1b`, `\n`), so a registered value cannot colour, move or clear the terminal,
nor forge a row; JSON escapes them by itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, Final

import click

from artemis.cli.errors import Refused

__all__ = ["cell", "confirm", "interactive", "reader_gone", "report", "show"]

_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")


def show(as_json: bool, columns: Sequence[str], rows: list[dict[str, Any]],
         err: bool = False) -> None:
    """The rows as a table for people, or exactly as JSON with --json (on stderr if `err`)."""
    if as_json:
        click.echo(json.dumps(rows), err=err)
        return
    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(stderr=err)
    if not console.is_terminal:
        console.width = 10_000  # piped: never fold a row
    table = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(Text(column), no_wrap=not console.is_terminal)
    for row in rows:
        table.add_row(*(Text(cell(row[c])) for c in columns))
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        click.echo(line.rstrip(), err=err)


def cell(value: Any) -> str:
    """A value as a table shows it: `-` for none, booleans in lower case, control characters
    escaped."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return _CONTROL.sub(_escape, text) if not text.isprintable() else text


def _escape(match: re.Match[str]) -> str:
    return repr(match.group(0))[1:-1]


def report(as_json: bool, result: dict[str, Any], lines: Sequence[str],
           columns: Sequence[str] = (), rows: Sequence[dict[str, Any]] = ()) -> None:
    """What a command did: `result` as one JSON object with --json; otherwise `lines`, then
    `rows` as a table (if any)."""
    if as_json:
        click.echo(json.dumps(result))
        return
    for line in lines:
        click.echo(cell(line))
    if rows:
        show(False, columns, list(rows))


def reader_gone() -> None:
    """Stdout's reader went away (`artemis watch s | head -3`, a pipeline stopped by Ctrl-C):
    what is printed from now on goes nowhere, and the exit does not complain of it."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def interactive() -> bool:
    """Whether a person can answer a question (stdin and stderr are terminals)."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def confirm(question: str, yes: bool) -> None:
    """Go on only if `yes` (--yes) or a person answers yes; else Refused (exit 4)."""
    if yes:
        return
    if not interactive():
        raise Refused(f"{question} Not done: add --yes to do it without being asked "
                      f"(--dry-run shows what it would change)")
    try:
        agreed = click.confirm(question, default=False, err=True)
    except click.Abort:  # Ctrl-C or end of input at the question
        agreed = False
    if not agreed:
        raise Refused("not confirmed: nothing was changed")
