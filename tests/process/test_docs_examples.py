"""Every shell example in README.md and docs/ runs: curl examples against a real node (in the
order each document gives them), `artemis server` command lines through the real flag parser,
the client commands (`artemis services|instances|cluster|watch|register|pull-out|group|...`,
called `artemis` or `.venv/bin/artemis`) as real processes against that node, a client command
ending in `&` as a background job until `kill %N` or the end of its document (which must stop it
with exit 0), shell completion's `eval "$(_ARTEMIS_COMPLETE=... artemis)"`, and the TOML example
through the real settings loader."""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest

from artemis.cli import server_command
from artemis.server.settings import Settings
from tests.process.conftest import RunningNode, StartNode, free_port

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
DOC_NODE = "http://127.0.0.1:8080"  # the node the documents talk to; the test node's URL here
ONE_SHOT = frozenset({"services", "instances", "cluster", "pull-out", "pull-in", "pulled-out",
                      "audit", "group", "route-rule", "canary", "logical"})
UNTIL_INTERRUPTED = frozenset({"watch", "register"})
CLIENT_DEADLINE = 10.0
DOC_TOKEN = "documentation-admin-token-0123456789"  # noqa: S105 - the docs' $ARTEMIS_ADMIN_TOKEN


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
    assert ["README.md", "cli.md", "cluster.md", "configuration.md", "deployment.md",
            "management.md", "operations.md", "performance.md"] == with_sh


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p, "sh")], ids=lambda p: p.name)
def test_shell_examples_run(path: Path, start_node: StartNode, tmp_path: Path) -> None:
    """Each command of each shell block succeeds: curl answers JSON with a success status,
    server command lines parse, client commands exit 0 (those that run until interrupted once
    they printed a line and got SIGINT), benchmark commands answer --help."""
    node = start_node("--region", "default", "--zone", "default",
                      "--database", f"sqlite:///{tmp_path}/management.db",
                      "--admin-token", DOC_TOKEN)
    toml = blocks(path, "toml")
    if toml:
        (tmp_path / "artemis.toml").write_text(toml[0])
    ran = []
    exported: dict[str, str] = {}  # `export NAME=VALUE` lines, for the commands after them
    jobs: Jobs = []  # `artemis ... &`, running until `kill %N` or the end of the document
    try:
        for block in blocks(path, "sh"):
            for command in commands(block):
                ran.append(_run(command, node, tmp_path, exported, jobs))
        ran += [_stop(job, signal.SIGINT) for job in jobs if job[1].poll() is None]
    finally:
        for _, process in jobs:
            if process.poll() is None:
                process.kill()
            process.wait()
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
    assert [] == [r for r in ran if r is not None]


Jobs = list[tuple[str, "subprocess.Popen[str]"]]


def _stop(job: tuple[str, subprocess.Popen[str]], signum: int) -> str | None:
    """Stop a background job as a person would (SIGINT: Ctrl-C; SIGTERM: kill %N); None when it
    exits 0 in time."""
    command, process = job
    process.send_signal(signum)
    try:
        code = process.wait(timeout=CLIENT_DEADLINE)
    except subprocess.TimeoutExpired:
        return f"{command}: still running {CLIENT_DEADLINE} s after signal {signum}"
    assert process.stderr is not None
    errors = process.stderr.read()
    return None if code == 0 else f"{command}: exit {code} after signal {signum} {errors}"


def _run(command: str, node: RunningNode, cwd: Path, exported: dict[str, str],
         jobs: Jobs | None = None) -> str | None:
    """Run one documented command; None when it did what the document says, else why not.
    `export NAME=VALUE` is evaluated by bash and kept in `exported` for the commands after it;
    a command ending in `&` joins `jobs`."""
    if command.startswith("export "):
        name, _, value = command[len("export "):].partition("=")
        done = subprocess.run(["bash", "-c", f'printf %s {value}'], capture_output=True,
                              text=True, timeout=10, check=False)
        if done.returncode != 0 or not done.stdout:
            return f"{command}: exit {done.returncode} {done.stderr}"
        exported[name.strip()] = done.stdout
        return None
    words = shlex.split(command)
    background = words[-1] == "&"
    if background:
        words.pop()
    env = dict(exported)
    while words and "=" in words[0] and not words[0].startswith("-"):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    program = words[0]
    if program == "python3" or program == "apt-get" or words[:2] == ["source",
                                                                     ".venv/bin/activate"]:
        return None  # set-up commands: the CI script runs the same installs
    if program == "kill" and jobs is not None and all(w.startswith("%") for w in words[1:]):
        stopped = [_stop(jobs[int(w[1:]) - 1], signal.SIGTERM) for w in words[1:]]
        return "; ".join(s for s in stopped if s) or None
    if program == "eval" and (completion := re.fullmatch(
            r"\$\(_ARTEMIS_COMPLETE=(\w+) artemis\)", words[1])):
        done = subprocess.run([sys.executable, "-m", "artemis"], capture_output=True, text=True,
                              timeout=30, check=False,
                              env={**os.environ, "_ARTEMIS_COMPLETE": completion[1]})
        ok = done.returncode == 0 and "_ARTEMIS_COMPLETE" in done.stdout
        return None if ok else f"{command}: exit {done.returncode} {done.stderr}"
    if Path(program).name == "artemis":
        program = "artemis"  # `.venv/bin/artemis`, as the README calls it
    if program == "promtool" or words[:2] == ["kubectl", "kustomize"]:
        # checks of the deployment files, run as they are from the repository's root
        if shutil.which(program) is None:
            return f"{program} is not installed"
        done = subprocess.run(words, capture_output=True, text=True, timeout=60, check=False,
                              cwd=ROOT)
        return None if done.returncode == 0 else f"{command}: {done.stdout}{done.stderr}"
    if program == "curl":
        if shutil.which("curl") is None:
            return "curl is not installed"
        line = command.replace("http://127.0.0.1:8080", node.url)
        done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=10,
                              check=False, env={**os.environ, "ARTEMIS_ADMIN_TOKEN": DOC_TOKEN})
        if done.returncode != 0:
            return f"{command}: exit {done.returncode} {done.stderr}"
        if command.split()[-1].endswith("/metrics"):  # the Prometheus text format
            return None if "artemis_node_up 1.0" in done.stdout else f"{command}: {done.stdout}"
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
    if program == "artemis" and background and jobs is not None:
        return _start_job(command, words, env, node, jobs)
    if program == "artemis" and words[1] in ONE_SHOT | UNTIL_INTERRUPTED:
        return _run_client(command, words, env, node)
    if program.endswith("python") and words[1].startswith("benchmarks/"):
        done = subprocess.run([sys.executable, str(ROOT / words[1]), "--help"],
                              capture_output=True, text=True, timeout=30, check=False,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        return None if done.returncode == 0 else f"{command}: {done.stderr}"
    if program.endswith("python") and words[1:3] == ["-m", "tests.adversarial.chaos"]:
        # the fault run itself runs in tests/adversarial/test_chaos.py; here: its flags parse
        done = subprocess.run([sys.executable, "-m", "tests.adversarial.chaos", "--help"],
                              capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
        flags = [w.split("=")[0] for w in words[3:] if w.startswith("--")]
        unknown = [f for f in flags if f not in done.stdout]
        return None if done.returncode == 0 and not unknown else f"{command}: {done.stderr}"
    return f"{command}: this test does not know how to run it"


def _client_argv(words: list[str], env: dict[str, str],
                 node: RunningNode) -> tuple[list[str], dict[str, str]]:
    """`python -m artemis` and its environment for a documented client command: the document's
    127.0.0.1:8080 becomes the test node's URL; without --server or ARTEMIS_SERVER, --server is
    added; ARTEMIS_TOKEN is the documents' admin token."""
    args = [w.replace(DOC_NODE, node.url) for w in words[1:]]
    env = {k: v.replace(DOC_NODE, node.url) for k, v in env.items()}
    if "--server" not in args and "ARTEMIS_SERVER" not in env:
        args += ["--server", node.url]
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("ARTEMIS_")},
                "ARTEMIS_TOKEN": DOC_TOKEN, **env}  # the docs' management commands use it
    return [sys.executable, "-m", "artemis", *args], full_env


def _start_job(command: str, words: list[str], env: dict[str, str], node: RunningNode,
               jobs: Jobs) -> str | None:
    """Start `artemis ... &` and wait for its first line; it runs on as job %N."""
    argv, full_env = _client_argv(words, env, node)
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=full_env)
    jobs.append((command, process))
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], CLIENT_DEADLINE)
    first = process.stdout.readline() if ready else ""
    return None if first else f"{command}: printed nothing (exit {process.poll()})"


def _run_client(command: str, words: list[str], env: dict[str, str],
                node: RunningNode) -> str | None:
    """Run a client command as `python -m artemis` against the test node (see _client_argv)."""
    argv, full_env = _client_argv(words, env, node)
    if words[1] in ONE_SHOT:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                              env=full_env)
        return None if done.returncode == 0 else f"{command}: exit {done.returncode} {done.stderr}"
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=full_env) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        ready, _, _ = select.select([process.stdout], [], [], CLIENT_DEADLINE)
        first = process.stdout.readline() if ready else ""
        process.send_signal(signal.SIGINT)  # nothing if it has exited already
        try:
            code = process.wait(timeout=CLIENT_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return f"{command}: still running {CLIENT_DEADLINE} s after SIGINT"
        errors = process.stderr.read()
    if not first:
        return f"{command}: printed nothing (exit {code}) {errors}"
    return None if code == 0 else f"{command}: exit {code} after SIGINT {errors}"


def test_a_failing_example_is_reported(start_node: StartNode, tmp_path: Path) -> None:
    """A curl example whose answer is not a success, an unknown flag, a client command that
    fails and one that cannot be interrupted are reported."""
    node = start_node()
    lookup = ("curl -s http://127.0.0.1:8080/api/discovery/lookup.json "
              "-d '{\"discoveryConfigs\":[{\"serviceId\":\"s\"}],\"regionId\":\"elsewhere\"}'")
    failed = _run(lookup, node, tmp_path, {})
    nowhere = f"http://127.0.0.1:{free_port()}"
    refused = _run("artemis instances s --region elsewhere", node, tmp_path, {}) or ""
    unreachable = _run(f"artemis register --service s --instance-id i --url http://i "
                       f"--server {nowhere}", node, tmp_path, {}) or ""
    assert (True, True, True, True) == (
        failed is not None and "no-permission" in failed,
        "No such option" in (_run("artemis server --nope", node, tmp_path, {}) or ""),
        "exit 1 artemis: no-permission" in refused,
        f"printed nothing (exit 3) artemis: cannot reach {nowhere}" in unreachable)
