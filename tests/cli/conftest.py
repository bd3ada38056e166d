"""Fixtures of the CLI tests: real nodes, as the real-process tests start them, and `artemis`
processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import ENV, TOKEN, CliProcess, Spawn
from tests.process.conftest import RunningNode, StartNode, start_node  # noqa: F401


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start `artemis *args` (environment: this one without ARTEMIS_*, plus `env`); every
    process is killed if still running, and its pipes closed, at teardown."""
    started: list[CliProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> CliProcess:
        process = CliProcess(list(args), tmp_path / f"stderr-{len(started)}.txt",
                             {**ENV, **(env or {})})
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


@pytest.fixture
def managed_node(start_node: StartNode, tmp_path: Path) -> RunningNode:  # noqa: F811
    """A node with a SQLite management database and an admin token."""
    return start_node("--database", f"sqlite:///{tmp_path}/management.db",
                      "--admin-token", TOKEN)
