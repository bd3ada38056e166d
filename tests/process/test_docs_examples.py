"""Every shell example in README.md and docs/ runs: curl examples against a real node (in the
order each document gives them), `artemis server` command lines through the real flag parser,
and the TOML example through the real settings loader."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from artemis.cli import server_command
from artemis.server.settings import Settings
from tests.process.conftest import RunningNode, StartNode

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def blocks(path: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text()) if lang == language]


def commands(block: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.split(" # ")[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def test_every_document_is_checked() -> None:
    """The documents with shell examples are the ones this test knows how to run."""
    with_sh = sorted(p.name for p in DOCS if blocks(p, "sh"))
    assert ["README.md", "configuration.md", "operations.md", "performance.md"] == with_sh


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p, "sh")], ids=lambda p: p.name)
def test_shell_examples_run(path: Path, start_node: StartNode, tmp_path: Path) -> None:
    """Each command of each shell block succeeds: curl answers JSON with a success status,
    server command lines parse, benchmark commands answer --help."""
    node = start_node("--region", "default", "--zone", "default")
    toml = blocks(path, "toml")
    if toml:
        (tmp_path / "artemis.toml").write_text(toml[0])
    ran = []
    for block in blocks(path, "sh"):
        for command in commands(block):
            ran.append(_run(command, node, tmp_path))
    assert [] == [r for r in ran if r is not None]


def _run(command: str, node: RunningNode, cwd: Path) -> str | None:
    """Run one documented command; None when it did what the document says, else why not."""
    words = shlex.split(command)
    env = {}
    while words and "=" in words[0] and not words[0].startswith("-"):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    program = words[0]
    if program == "python3" or program == "apt-get":
        return None  # set-up commands: the CI script runs the same installs
    if program == "curl":
        if shutil.which("curl") is None:
            return "curl is not installed"
        line = command.replace("http://127.0.0.1:8080", node.url)
        done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=10,
                              check=False)
        if done.returncode != 0:
            return f"{command}: exit {done.returncode} {done.stderr}"
        answer = json.loads(done.stdout)
        status = answer.get("responseStatus", {}).get("status") or answer.get("status")
        # the README's delta from version 0 is documented to be data-not-found
        if status not in ("success", "up") and '"version": 0' not in command:
            return f"{command}: {done.stdout}"
        return None
    if program == "artemis" and words[1] == "server":
        try:
            context = server_command().make_context("server", words[2:])
        except click.ClickException as exc:
            return f"{command}: {exc.format_message()}"
        params = dict(context.params)
        config = params.pop("config")
        Settings.load(cwd / config if config else None, env, params)
        return None
    if program.endswith("python") and words[1].startswith("benchmarks/"):
        done = subprocess.run([sys.executable, str(ROOT / words[1]), "--help"],
                              capture_output=True, text=True, timeout=30, check=False,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        return None if done.returncode == 0 else f"{command}: {done.stderr}"
    return f"{command}: this test does not know how to run it"


def test_a_failing_example_is_reported(start_node: StartNode, tmp_path: Path) -> None:
    """A curl example whose answer is not a success, and an unknown flag, are reported."""
    node = start_node()
    lookup = ("curl -s http://127.0.0.1:8080/api/discovery/lookup.json "
              "-d '{\"discoveryConfigs\":[{\"serviceId\":\"s\"}],\"regionId\":\"elsewhere\"}'")
    failed = _run(lookup, node, tmp_path)
    assert (True, True) == (failed is not None and "no-permission" in failed,
                            "No such option" in (_run("artemis server --nope", node, tmp_path)
                                                 or ""))
