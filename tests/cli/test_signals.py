"""`artemis register` always unregisters on SIGINT or SIGTERM: when timeout(1) stops it while its
output goes into a pipe (timeout sends the signal to the command and again to its process group,
so the command gets it twice, microseconds apart: the race that once left the instance
registered for a whole lease), and when a terminal's Ctrl-C stops the whole pipeline (the reader
of its output dies first).

Each run waits for the `registered` line to come out of the pipe, then signals; repeated enough
times to catch the race (before the fix, about one run in seven lost the unregistration).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import DEADLINE, ENV, SERVICE, listed
from tests.process.conftest import RunningNode, StartNode

RUNS = 16
AT_ONCE = 4

pytestmark = pytest.mark.skipif(shutil.which("timeout") is None, reason="needs timeout(1)")


class Piped:
    """`timeout -s SIGNAL LIMIT python -m artemis register ... | cat`, without a shell: timeout's
    own pid, and cat's output read line by line."""

    def __init__(self, node: RunningNode, instance_id: str, tmp_path: Path,
                 limit: str = "600") -> None:
        self.instance_id = instance_id
        self.cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True)
        self.errors = tmp_path / f"{instance_id}.err"
        with self.errors.open("wb") as err:
            self.timeout = subprocess.Popen(
                ["timeout", "-s", "INT", limit, sys.executable, "-m", "artemis", "register",
                 "--service", SERVICE, "--instance-id", instance_id, "--url",
                 f"http://{instance_id}:80", "--server", node.url, "--region", "SHA"],
                stdout=self.cat.stdin, stderr=err, env=ENV)
        assert self.cat.stdin is not None
        self.cat.stdin.close()  # the pipe's writer is the command alone

    def first_line(self) -> str:
        assert self.cat.stdout is not None
        return self.cat.stdout.readline()

    def finish(self) -> tuple[int, str, str]:
        """timeout's exit code, what came through the pipe after the first line, stderr."""
        code = self.timeout.wait(DEADLINE * 3)
        assert self.cat.stdout is not None
        rest = self.cat.stdout.read()
        self.cat.wait(DEADLINE)
        self.cat.stdout.close()
        return code, rest, self.errors.read_text()

    def kill(self) -> None:
        for process in (self.timeout, self.cat):
            if process.poll() is None:
                process.kill()
                process.wait(DEADLINE)


def test_timeout_int_through_a_pipe_always_unregisters(start_node: StartNode,
                                                       tmp_path: Path) -> None:
    """`timeout -s INT 4 artemis register ... | cat`, again and again: when timeout's timer
    fires (it signals the command, then its process group, itself included, which signals them
    again), every run that registered says it unregistered, none writes to stderr, and no
    instance is left."""
    node = start_node()
    outcomes = []
    for batch in range(RUNS // AT_ONCE):
        runs = [Piped(node, f"run-{batch}-{n}", tmp_path, limit="4") for n in range(AT_ONCE)]
        try:
            for r in runs:
                first = r.first_line()
                code, rest, errors = r.finish()
                registered = first.startswith(f"registered {SERVICE}/{r.instance_id} ")
                outcomes.append((code, registered == rest.startswith(
                    f"unregistered {SERVICE}/{r.instance_id} "), errors))
        finally:
            for r in runs:
                r.kill()
    assert ([(124, True, "")] * RUNS, []) == (outcomes, listed(node))


def test_sigint_to_timeout_after_registering_unregisters(start_node: StartNode,
                                                         tmp_path: Path) -> None:
    """SIGINT to timeout(1) once the instance is registered (timeout passes it to the command
    and to its process group): it says it unregistered, exits 0, and leaves no instance."""
    node = start_node()
    outcomes = []
    for batch in range(RUNS // AT_ONCE):
        runs = [Piped(node, f"sent-{batch}-{n}", tmp_path) for n in range(AT_ONCE)]
        try:
            firsts = [r.first_line() for r in runs]
            for r in runs:
                os.kill(r.timeout.pid, signal.SIGINT)
            for r, first in zip(runs, firsts, strict=True):
                code, rest, errors = r.finish()
                outcomes.append((first.startswith(f"registered {SERVICE}/{r.instance_id} "),
                                 code, rest.startswith(f"unregistered {SERVICE}/{r.instance_id} "),
                                 errors))
        finally:
            for r in runs:
                r.kill()
    assert ([(True, 0, True, "")] * RUNS, []) == (outcomes, listed(node))


def test_ctrl_c_to_the_whole_pipeline_unregisters(start_node: StartNode,
                                                  tmp_path: Path) -> None:
    """SIGINT to the process group of `artemis register ... | cat` (a terminal's Ctrl-C): cat
    dies at once, register still unregisters, exits 0 and writes no traceback for the line it
    could not print."""
    node = start_node()
    errors = tmp_path / "group.err"
    cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                           process_group=0)  # the pipeline's process group: cat's pid
    with errors.open("wb") as err:
        register = subprocess.Popen(
            [sys.executable, "-m", "artemis", "register", "--service", SERVICE,
             "--instance-id", "group-1", "--url", "http://group-1:80", "--server", node.url,
             "--region", "SHA"], stdout=cat.stdin, stderr=err, env=ENV, process_group=cat.pid)
    assert cat.stdin is not None
    assert cat.stdout is not None
    cat.stdin.close()
    try:
        first = cat.stdout.readline()
        os.killpg(cat.pid, signal.SIGINT)
        code = register.wait(DEADLINE * 3)
        cat.wait(DEADLINE)
    finally:
        for process in (register, cat):
            if process.poll() is None:
                process.kill()
                process.wait(DEADLINE)
        cat.stdout.close()
    assert (True, 0, "", []) == (first.startswith(f"registered {SERVICE}/group-1 "), code,
                                 errors.read_text(), listed(node))
