"""Release hygiene: the licence, the wheel and sdist (`twine check --strict`), one version
everywhere, a changelog entry naming the schema revision, links of the deployment docs, and the
CI script ending with the README's test command."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from artemis import __version__
from tests.deploy.containerfile import Image
from tests.deploy.test_upgrades import revisions

ROOT = Path(__file__).resolve().parents[2]
# MD5 of the Apache License 2.0 as the ASF publishes it (LICENSE-2.0.txt)
APACHE_2_MD5 = "3b83ef96387f14655fc854ddc3c6bd57"


def test_the_licence_is_the_apache_2_text() -> None:
    """LICENSE is the Apache License 2.0, word for word, as pyproject.toml declares it."""
    text = (ROOT / "LICENSE").read_bytes()
    assert (APACHE_2_MD5, True) == (
        hashlib.md5(text, usedforsecurity=False).hexdigest(),
        'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text())


def test_the_wheel(image: Image) -> None:
    """The wheel the Containerfile builds: this version, the licence expression and file, the
    `artemis` command; twine check --strict passes it."""
    (wheel,) = image.wheels
    with zipfile.ZipFile(wheel) as archive:
        info = f"artemis_registry-{__version__}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        licence = archive.read(f"{info}/licenses/LICENSE")
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    fields = dict(line.split(": ", 1) for line in metadata.split("\n\n")[0].splitlines()
                  if ": " in line)
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert (__version__, "Apache-2.0", "LICENSE", True, True, 0) == (
        fields["Version"], fields["License-Expression"], fields["License-File"],
        licence == (ROOT / "LICENSE").read_bytes(), "artemis = artemis.cli:main" in entry_points,
        checked.returncode)


def test_the_sdist(tmp_path: Path) -> None:
    """`python -m build --sdist` makes a source distribution holding the licence, changelog,
    deployment files and sources; twine check --strict passes it."""
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path),
                    str(ROOT)], capture_output=True, text=True, timeout=600, check=True)
    (sdist,) = tmp_path.glob("*.tar.gz")
    listing = subprocess.run(["tar", "tzf", str(sdist)], capture_output=True, text=True,
                             timeout=60, check=True).stdout.splitlines()
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(sdist)],
                             capture_output=True, text=True, timeout=120, check=False)
    top = f"artemis_registry-{__version__}/"
    wanted = ["LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "Containerfile",
              "deploy/kubernetes/base/statefulset.yaml", "src/artemis/__init__.py"]
    assert ([], 0) == ([w for w in wanted if top + w not in listing], checked.returncode)
    assert [] == [name for name in listing if "/.venv/" in name or "__pycache__" in name]


def test_the_changelog_names_this_version_and_the_schema() -> None:
    """CHANGELOG.md has a section for __version__, which names the newest schema revision."""
    text = (ROOT / "CHANGELOG.md").read_text()
    section = text.split(f"\n## {__version__} ", 1)[1].split("\n## ", 1)[0]
    assert f"revision **{revisions()[-1][0]}**" in section


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    out = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_the_deployment_docs_link_to_what_exists() -> None:
    """Every relative link of docs/deployment.md and CHANGELOG.md names a file that exists, and
    a heading of it when it has an anchor."""
    broken = []
    for doc in (ROOT / "docs" / "deployment.md", ROOT / "CHANGELOG.md"):
        for target in re.findall(r"\]\(([^)]+)\)", doc.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            if not path.exists() or (anchor and anchor not in _anchors(path)):
                broken.append(f"{doc.name}: {target}")
    assert [] == broken


def test_ci_builds_checks_and_ends_with_the_readme_command() -> None:
    """.ci/run builds the wheel and sdist and twine-checks them, installs promtool's package,
    and its last line is the README's test command."""
    script = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    readme = (ROOT / "README.md").read_text()
    command = ("python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' "
               "&& .venv/bin/python -m pytest")
    assert (True, True, True, True) == (
        command in readme, script[-1].replace(" --quiet", "") == command,
        any(".venv/bin/python -m build" in line for line in script),
        any("twine check --strict" in line for line in script))
    assert "prometheus" in " ".join(script)
