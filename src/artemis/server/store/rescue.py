"""A SQLite database file's identity, and its rescue when the file is removed or replaced.

A SQLite store keeps one plain sqlite3 connection on its file (`hold`), so a removed or
replaced file stays readable through it: `copy` writes it, once, to `<file>.rescued-<ms>-<pid>`
beside the path (SQLite's backup API; written under another name, then renamed), and
`drop_sidecars` removes the -wal and -shm files at the path that are still the lost file's
(same device and inode as at open): SQLite would apply them to whatever file is opened there
next. `restore` puts the newest rescue copy where no file is (a hard link, so a file another
node made meanwhile is never overwritten); `rescue_copies` lists those beside a path.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from sqlalchemy.engine import URL

__all__ = ["copy", "drop_sidecars", "file_id", "hold", "rescue_copies", "restore",
           "sidecar_ids", "sqlite_file"]

_RESCUED: Final = re.compile(r"\.rescued-(\d+)-(\d+)")  # after the file's name
_SIDECARS: Final = ("-wal", "-shm")


def sqlite_file(url: URL) -> Path | None:
    """The absolute path of a SQLite database's file (None: not SQLite, or a URI filename)."""
    if url.get_backend_name() != "sqlite" or "uri" in url.query or not url.database:
        return None
    return Path(os.path.abspath(url.database))


def file_id(path: Path) -> tuple[int, int]:
    """The (device, inode) of the file at `path`."""
    found = os.stat(path)
    return found.st_dev, found.st_ino


def sidecar_ids(path: Path) -> dict[str, tuple[int, int]]:
    """The identity of each -wal and -shm file of `path` there is."""
    found = {}
    for suffix in _SIDECARS:
        with contextlib.suppress(OSError):
            found[suffix] = file_id(path.with_name(path.name + suffix))
    return found


def drop_sidecars(path: Path, sidecars: Mapping[str, tuple[int, int]]) -> None:
    """Remove the -wal and -shm files of `path` that are still those of `sidecars`."""
    for suffix, identity in sidecars.items():
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(OSError):
            if file_id(side) == identity:
                side.unlink()


def rescue_copies(path: Path) -> list[Path]:
    """The rescue copies of `path` beside it, oldest first (none if its folder is missing)."""
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    found: list[tuple[int, int, str]] = []
    for name in names:
        matched = (_RESCUED.fullmatch(name, len(path.name))
                   if name.startswith(path.name) else None)
        if matched is not None:
            found.append((int(matched[1]), int(matched[2]), name))
    return [path.parent / name for _, _, name in sorted(found)]


def restore(path: Path) -> Path | None:
    """Put the newest rescue copy of `path` in its place when no file is there; the copy used
    (gone now), or None."""
    if os.path.lexists(path):
        return None
    copies = rescue_copies(path)
    if not copies:
        return None
    newest = copies[-1]
    try:
        os.link(newest, path)
    except FileExistsError:
        return None  # another node put a file there first: use it
    except OSError:  # a file system without hard links
        if os.path.lexists(path):
            return None
        os.rename(newest, path)
        return newest
    os.unlink(newest)
    return newest


def hold(path: Path) -> sqlite3.Connection:
    """A plain connection on the existing file `path`, with its -wal and -shm files open too
    (a read opens them), so the database stays readable if the path is removed or replaced."""
    holder = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, check_same_thread=False,
                             isolation_level=None)
    try:
        holder.execute("SELECT version FROM artemis_meta").fetchall()
    except BaseException:
        holder.close()
        raise
    return holder


def copy(holder: sqlite3.Connection, path: Path) -> Path:
    """Copy the database `holder` has open to a new rescue copy of `path`; the copy's path."""
    stamp = f"{time.time_ns() // 1_000_000}-{os.getpid()}"
    partial = path.with_name(f"{path.name}.rescuing-{stamp}")
    target = sqlite3.connect(partial)
    try:
        holder.backup(target)
    except BaseException:
        target.close()
        partial.unlink(missing_ok=True)
        raise
    target.close()
    final = path.with_name(f"{path.name}.rescued-{stamp}")
    os.rename(partial, final)
    return final
