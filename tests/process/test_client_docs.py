"""Every Python example in README.md and docs/ runs, against a real node on 127.0.0.1."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.process.conftest import StartNode

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = [(page.name, code) for page in PAGES
            for code in re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL)]


def test_the_pages_have_their_examples() -> None:
    """The Python examples are where this test expects them: one in the README, seven in
    docs/client.md, one (py-eureka-client's) in docs/eureka.md."""
    assert {"README.md": 1, "client.md": 7, "eureka.md": 1} == {
        name: sum(1 for n, _ in EXAMPLES if n == name) for name, _ in EXAMPLES}


@pytest.mark.parametrize("number", range(len(EXAMPLES)),
                         ids=[f"{name}-{n}" for n, (name, _) in enumerate(EXAMPLES)])
def test_example_runs(number: int, start_node: StartNode) -> None:
    """The example exits 0 and prints what it promises, talking to the test's node."""
    node = start_node("--region", "default", "--zone", "default")
    code = EXAMPLES[number][1].replace("http://127.0.0.1:8080", node.url)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, cwd=ROOT)
    assert (0, "") == (done.returncode, done.stderr), done.stdout
    assert done.stdout.strip()
