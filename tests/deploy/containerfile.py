"""The Containerfile, read and carried out without a container engine.

`parse` reads the recipe into stages of instructions (continuation lines joined, comments
dropped). `build` carries out what can run here: every instruction of the build stage in order
(COPY from the repository, RUN with /bin/sh -c, as `docker build` does), with the machine's
Debian Python standing in for the base image's; then the runtime stage's COPY, ENV, WORKDIR,
USER, HEALTHCHECK, STOPSIGNAL and ENTRYPOINT. Not run: the runtime stage's RUN, which adds the
system user (a test runs the node under that user's numeric id instead, as the image does).

The image's folders (each WORKDIR and COPY destination) live under one folder here, `root`; a
path of the recipe is mapped into it wherever it occurs. Both stages share that folder, since a
virtual environment works only at the path it was made at, which the recipe keeps the same in
both.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

BASE_PYTHON = "/usr/bin/python3"  # stands in for the python:3.11-slim image's interpreter
BUILD_DEADLINE = 600.0  # seconds for one RUN step: pip downloads what the cache lacks


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> str:
        (args,) = self.all(keyword)
        return args


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages of a Containerfile."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole:
            logical.append(whole)
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "FROM":
            words = rest.split()
            base = _expand(words[0], args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and keyword == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append(Instruction(keyword, rest))
    return args, stages


def exec_form(args: str) -> list[str]:
    """The JSON array of ENTRYPOINT, CMD or HEALTHCHECK ... CMD."""
    value = json.loads(args)
    assert isinstance(value, list)
    return [str(v) for v in value]


def env_pairs(args: str, env: dict[str, str]) -> dict[str, str]:
    """ENV K=V K2=V2 (values may be quoted and name $VARIABLES set before)."""
    out: dict[str, str] = {}
    for word in shlex.split(args):
        key, _, value = word.partition("=")
        out[key] = _expand(value, {**env, **out})
    return out


def healthcheck(args: str) -> tuple[dict[str, str], list[str]]:
    """HEALTHCHECK --option=value ... CMD [...]: its options and command."""
    options, _, command = args.partition(" CMD ")
    flags = dict(word[2:].split("=", 1) for word in options.split())
    return flags, exec_form(command)


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)


@dataclass
class Image:
    """What the recipe made: its folder, and what the runtime stage says to run and how."""

    root: Path
    env: dict[str, str]
    entrypoint: list[str]
    health: list[str]
    health_options: dict[str, str]
    stop_signal: str
    user: tuple[int, int]
    workdir: Path
    wheels: list[Path]
    log: list[str]

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")


def image_paths(stages: list[Stage]) -> list[str]:
    """The absolute paths the recipe makes in the image (WORKDIR, COPY destinations), longest
    first, so that a path inside another is mapped whole."""
    paths = set()
    for stage in stages:
        paths.update(stage.all("WORKDIR"))
        for copy in stage.all("COPY"):
            destination = copy.split()[-1]
            if destination.startswith("/"):
                paths.add(destination.rstrip("/"))
    return sorted(paths, key=len, reverse=True)


def build(recipe: Path, context: Path, root: Path) -> Image:
    """Carry out `recipe` (see the module doc) with `context` as the build context."""
    _, stages = parse(recipe.read_text())
    build_stage, runtime = stages
    paths = image_paths(stages)

    def mapped(text: str) -> str:
        alternatives = "|".join(re.escape(p) for p in paths)
        return re.sub(rf"(?<![\w./-])(?:{alternatives})(?=$|[/\s\"':])",
                      lambda m: str(root) + m.group(0), text)

    base = root.parent / "base-python"
    subprocess.run([BASE_PYTHON, "-m", "venv", str(base)], check=True, timeout=120)
    log: list[str] = []
    env = {"PATH": f"{base}/bin:{os.environ['PATH']}", "HOME": str(root.parent)}
    workdir = root
    for instruction in build_stage.instructions:
        keyword, args = instruction.keyword, instruction.args
        if keyword == "ENV":
            env.update(env_pairs(args, env))
        elif keyword == "WORKDIR":
            workdir = Path(mapped(args))
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, destination = args.split()
            target = workdir / destination if not destination.startswith("/") else Path(
                mapped(destination))
            for source in sources:
                _copy(context / source, target, len(sources) > 1 or destination.endswith("/"))
        elif keyword == "RUN":
            log.append(args)
            subprocess.run(["/bin/sh", "-c", mapped(args)], cwd=workdir, env=env, check=True,
                           timeout=BUILD_DEADLINE)
        else:
            raise AssertionError(f"the build stage's {keyword} is not carried out here")
    wheels = sorted(workdir.glob("dist/*.whl"))

    run_env = {"PATH": os.environ["PATH"]}
    run_dir = root
    user = (0, 0)
    for instruction in runtime.instructions:
        keyword, args = instruction.keyword, instruction.args
        if keyword == "ENV":
            run_env.update({k: mapped(v) for k, v in env_pairs(args, run_env).items()})
        elif keyword == "COPY" and args.startswith("--from="):
            _, source, destination = args.split()
            assert mapped(source) == mapped(destination), "the venv keeps its path"
        elif keyword == "COPY":
            source, destination = args.split()
            _copy(context / source, Path(mapped(destination)), False)
        elif keyword == "USER":
            uid, _, gid = args.partition(":")
            user = (int(uid), int(gid or uid))
        elif keyword == "WORKDIR":
            run_dir = Path(mapped(args))
            run_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # the runtime stage's RUN gives the user this folder, mode 0700
        os.chown(run_dir, *user)
        run_dir.chmod(0o700)
    options, health = healthcheck(runtime.one("HEALTHCHECK"))
    return Image(root=root, env=run_env, entrypoint=[mapped(w) for w in
                                                     exec_form(runtime.one("ENTRYPOINT"))],
                 health=[mapped(w) for w in health], health_options=options,
                 stop_signal=runtime.one("STOPSIGNAL"), user=user, workdir=run_dir,
                 wheels=wheels, log=log)


def _copy(source: Path, target: Path, into: bool) -> None:
    if into or target.is_dir():
        target = target / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        shutil.copy2(source, target)
