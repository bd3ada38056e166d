"""The layout states the architecture, and these checks keep it so: the core does no I/O and knows
no shell, the client knows no server, and no module grows into two concepts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "artemis"
MAX_LINES = 650  # "about 600": a module past this is two concepts
# What the pure core may not import: the shell's layers, and anything that does I/O or waits.
CORE_FORBIDDEN = ("artemis.server", "artemis.client", "artemis.cli", "asyncio", "socket",
                  "sqlalchemy", "httpx", "aiohttp", "websockets", "granian", "time", "os")


def modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "migrations" not in p.parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
    return found


def offending(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(name for name in imports(path)
                  if any(name == f or name.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize("path", modules(SRC / "core"), ids=lambda p: p.name)
def test_the_core_imports_no_shell_and_no_io(path: Path) -> None:
    """core/ is plain Python: no server, client or CLI module, no asyncio, sockets, SQL, HTTP or
    clock reads."""
    assert [] == offending(path, CORE_FORBIDDEN)


@pytest.mark.parametrize("path", modules(SRC / "client"), ids=lambda p: p.name)
def test_the_client_imports_nothing_of_the_server(path: Path) -> None:
    """client/ stands on wire, clock and its own modules, so it installs without the server."""
    assert [] == offending(path, ("artemis.server", "artemis.cli", "granian", "sqlalchemy"))


def test_no_module_is_two_concepts() -> None:
    """No module of src/ is longer than about 600 lines."""
    assert {} == {str(p.relative_to(SRC)): n for p in modules(SRC)
                  if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}


def top_level(layer: str) -> set[str]:
    """The names directly inside a layer: its modules and its packages."""
    folder = SRC / layer
    return ({p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
            | {p.name for p in folder.iterdir() if (p / "__init__.py").exists()})


def test_no_two_layers_use_one_name_for_two_things() -> None:
    """A name means one thing: core/, server/ and client/ never use the same module or package
    name at their top level (as core/cluster.py and server/cluster.py once did)."""
    layers = {layer: top_level(layer) for layer in ("core", "server", "client")}
    shared = {f"{a}~{b}": sorted(layers[a] & layers[b])
              for a, b in (("core", "server"), ("core", "client"), ("server", "client"))}
    assert {pair: [] for pair in shared} == shared
