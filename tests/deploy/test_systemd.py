"""deploy/systemd: the unit passes `systemd-analyze verify` without a word and rates OK in
`systemd-analyze security`, with the sandbox it promises; the example environment file holds
only settings, and loads. (No systemd runs as init here, so the unit itself is not started.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from artemis.server.settings import SETTINGS, Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "artemis.service"
ENV_FILE = ROOT / "deploy" / "systemd" / "artemis.env"
INSTALLED = "/opt/artemis/bin/artemis"  # where the unit expects the package's command
needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")


def directives(text: str) -> dict[str, list[str]]:
    """Section.Key -> values, in order (a key may repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


def here(unit: str, folder: Path) -> Path:
    """The unit with ExecStart pointing at this environment's `artemis` command (verify checks
    that the command exists), written to `folder`."""
    command = Path(sys.executable).parent / "artemis"
    path = folder / "artemis.service"
    path.write_text(unit.replace(INSTALLED, str(command)))
    return path


def verify(path: Path) -> tuple[int, str]:
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    return done.returncode, (done.stdout + done.stderr).strip()


@needs_systemd
def test_the_unit_verifies_without_a_word(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing to say about the unit."""
    assert (0, "") == verify(here(UNIT.read_text(), tmp_path))


@needs_systemd
def test_verify_reports_a_wrong_value(tmp_path: Path) -> None:
    """The check can fail: a value systemd cannot parse is reported (verify still exits 0 for
    it, which is why the test above also wants no output)."""
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=stricter")
    _, said = verify(here(broken, tmp_path))
    assert "Failed to parse protect system value" in said


@needs_systemd
def test_the_sandbox_rates_ok(tmp_path: Path) -> None:
    """systemd-analyze security rates the unit's exposure at most 2.0 ("OK")."""
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20",
                           str(here(UNIT.read_text(), tmp_path))], capture_output=True,
                          text=True, timeout=60, check=False)
    rating = re.findall(r"Overall exposure level for artemis.service: ([0-9.]+ \w+)",
                        done.stdout)
    assert (0, ["OK"]) == (done.returncode, [r.split()[1] for r in rating])


def test_the_unit_sandboxes_and_stops_the_node() -> None:
    """A transient user without capabilities, a read-only system but for the state directory,
    no new privileges; SIGTERM with more time than the node's shutdown needs; enough open files
    for max_connections."""
    found = directives(UNIT.read_text())
    wanted = {
        "Service.ExecStart": [f"{INSTALLED} server"],
        "Service.EnvironmentFile": ["/etc/artemis/artemis.env"],
        "Service.DynamicUser": ["yes"], "Service.NoNewPrivileges": ["yes"],
        "Service.CapabilityBoundingSet": [""], "Service.AmbientCapabilities": [""],
        "Service.ProtectSystem": ["strict"], "Service.ProtectHome": ["yes"],
        "Service.PrivateTmp": ["yes"], "Service.PrivateDevices": ["yes"],
        "Service.StateDirectory": ["artemis"], "Service.WorkingDirectory": ["/var/lib/artemis"],
        "Service.KillSignal": ["SIGTERM"], "Service.TimeoutStopSec": ["30s"],
        "Service.LimitNOFILE": ["20000"],
    }
    assert wanted == {key: found.get(key) for key in wanted}
    max_connections = SETTINGS["max_connections"].default
    assert int(found["Service.LimitNOFILE"][0]) >= max_connections + 1024


def test_the_environment_file_holds_settings_that_load() -> None:
    """Every variable of the example environment file, set or commented out, is a setting;
    the set ones load, and so do all of them once the commented ones are given values."""
    lines = [line.lstrip("#") for line in ENV_FILE.read_text().splitlines()
             if re.match(r"#?ARTEMIS_\w+=", line)]
    pairs = [line.split("=", 1) for line in lines]
    active = dict(line.split("=", 1) for line in ENV_FILE.read_text().splitlines()
                  if line.startswith("ARTEMIS_"))
    filled = {name: value or "artemis-example-secret-0123456789" for name, value in pairs}
    known = {env_name(name) for name in SETTINGS}
    plain, cluster = Settings.load(None, active), Settings.load(None, filled)
    assert ([], "0.0.0.0", "http://10.0.0.1:8080", 3) == (
        [name for name, _ in pairs if name not in known], plain.host, plain.node_url,
        len(cluster.peers.split(",")))
