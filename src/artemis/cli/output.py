"""What the client commands print: a table for people (rich), or exactly the same rows as JSON
with `--json`. A piped table is never folded: one row is one line.

Values are data, never markup nor terminal commands: a cell is a rich `Text` (no markup is
read: `[red]x` and `[link=javascript:…]` print as written) and its control characters are
shown escaped (`\x1b`, `\n`), so a registered value cannot colour, move or clear the terminal,
nor forge a row; JSON escapes them by itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Final

import click

__all__ = ["cell", "show"]

_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")


def show(as_json: bool, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """The rows as a table for people, or exactly as JSON with --json."""
    if as_json:
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
        table.add_column(Text(column), no_wrap=not console.is_terminal)
    for row in rows:
        table.add_row(*(Text(cell(row[c])) for c in columns))
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())


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
