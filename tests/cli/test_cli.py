"""The client commands of `artemis` against real nodes: tables, --json, errors, watch, register.

One-shot commands run in-process through click's CliRunner (they talk to the node over the
network all the same); the one-line errors, the environment, `watch` and `register` run as real
`python -m artemis` processes, stopped with SIGINT like a person's Ctrl-C.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from artemis import wire
from artemis.cli import cli
from artemis.cli.discovery import changes
from tests.process.conftest import RunningNode, StartNode, free_port, poll

SERVICE = "demo.service"
DEADLINE = 10.0
ENV = {k: v for k, v in os.environ.items() if not k.startswith("ARTEMIS_")}


def instance(instance_id: str, **fields: Any) -> dict[str, Any]:
    """An instance of SERVICE as a client registers it with the test node (region SHA)."""
    number = ord(instance_id[-1]) - ord("a") + 5
    return {"serviceId": SERVICE, "instanceId": instance_id, "url": f"http://10.0.0.{number}:80",
            "ip": f"10.0.0.{number}", "port": 80, "regionId": "SHA", "zoneId": "zone-1",
            "status": "up", **fields}


def row(registered: dict[str, Any]) -> dict[str, Any]:
    """The row the CLI shows for a registered instance."""
    return {"instanceId": registered["instanceId"], "url": registered["url"],
            "ip": registered["ip"], "port": registered["port"], "zone": registered["zoneId"],
            "status": registered["status"], "group": registered.get("groupId")}


def post(node: RunningNode, path: str, body: dict[str, Any]) -> dict[str, Any]:
    with node.client() as client:
        answer: dict[str, Any] = client.post(path, json=body).json()
    return answer


def register(node: RunningNode, *instances: dict[str, Any]) -> None:
    answer = post(node, "/api/registry/register.json", {"instances": list(instances)})
    assert "success" == answer["responseStatus"]["status"], answer


def unregister(node: RunningNode, *instances: dict[str, Any]) -> None:
    answer = post(node, "/api/registry/unregister.json", {"instances": list(instances)})
    assert "success" == answer["responseStatus"]["status"], answer


def listed(node: RunningNode, service: str = SERVICE) -> list[dict[str, Any]]:
    """The instances of `service` a lookup on the node answers now."""
    answer = post(node, "/api/discovery/lookup.json",
                  {"discoveryConfigs": [{"serviceId": service}], "regionId": "SHA"})
    found: list[dict[str, Any]] = answer["services"][0]["instances"]
    return found


def in_snapshot(node: RunningNode, *services: str) -> None:
    """Wait until services.json (a snapshot taken every second) lists `services`."""

    def probe() -> bool | None:
        answer = httpx.get(node.url + "/api/discovery/services.json", timeout=5.0).json()
        return True if {s["serviceId"] for s in answer["services"]} == set(services) else None

    poll(probe, DEADLINE, f"services.json listing {services}")


def invoke(*args: str) -> Result:
    """Run `artemis *args` in this process, with no ARTEMIS_* variable set."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ARTEMIS_")}
    return CliRunner(env=unset).invoke(cli, list(args), prog_name="artemis")


class CliProcess:
    """`python -m artemis *args` with its stdout read line by line with a deadline."""

    def __init__(self, args: list[str], stderr: Path, env: dict[str, str]) -> None:
        self.stderr_path = stderr
        with stderr.open("wb") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "artemis", *args],
                                            stdout=subprocess.PIPE, stderr=err, env=env,
                                            text=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for text in self.process.stdout:
            self._lines.put(text.rstrip("\n"))
        self._lines.put(None)

    def line(self, deadline: float = DEADLINE) -> str:
        """The next line of stdout; fails the test if none comes in time."""
        try:
            text = self._lines.get(timeout=deadline)
        except queue.Empty:
            pytest.fail(f"no output line within {deadline} s; stderr: {self.stderr()}")
        if text is None:
            pytest.fail(f"exited with {self.process.wait()}; stderr: {self.stderr()}")
        return text

    def rest(self) -> list[str]:
        """Every line left, once the process has exited."""
        self._reader.join(DEADLINE)
        out = []
        while (text := self._lines.get_nowait()) is not None:
            out.append(text)
        return out

    def wait(self, deadline: float = DEADLINE) -> int:
        return self.process.wait(timeout=deadline)

    def interrupt(self) -> int:
        """SIGINT, as Ctrl-C sends it; the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.wait()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(DEADLINE)
        self._reader.join(DEADLINE)
        assert self.process.stdout is not None
        self.process.stdout.close()


Spawn = Callable[..., CliProcess]


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


# --- help and usage --------------------------------------------------------------------------

def test_help_lists_every_command() -> None:
    """`artemis --help` lists the server and every client command."""
    result = invoke("--help")
    listing = result.stdout[result.stdout.index("Commands:"):].splitlines()[1:]
    assert (0, ["audit", "cluster", "instances", "pull-in", "pull-out", "pulled-out", "register",
                "server", "services", "watch"]) == (
        result.exit_code, [line.split()[0] for line in listing if line.strip()])


def test_bad_server_url_and_metadata_are_usage_errors() -> None:
    """A --server that is not an http(s) URL, and metadata without `=`, exit 2 before any
    request."""
    bad_url = invoke("services", "--server", "ftp://127.0.0.1:8080")
    bad_metadata = invoke("register", "--service", "s", "--instance-id", "i", "--url", "http://i",
                          "--metadata", "novalue")
    assert (2, True, 2, True) == (
        bad_url.exit_code, "'ftp://127.0.0.1:8080' is not an http:// or https:// URL"
        in bad_url.stderr,
        bad_metadata.exit_code, "'novalue' is not KEY=VALUE" in bad_metadata.stderr)


# --- services, instances, cluster ------------------------------------------------------------

def test_services_table_and_json(start_node: StartNode) -> None:
    """services lists every service with its instance count, sorted, as a table or JSON."""
    node = start_node()
    other = {**instance("c"), "serviceId": "another.service"}
    register(node, instance("a"), instance("b"), other)
    in_snapshot(node, SERVICE, "another.service")
    table = invoke("services", "--server", node.url)
    as_json = invoke("services", "--server", node.url, "--json")
    assert (0, ["serviceId         instances",
                "───────────────────────────",
                "another.service   1",
                "demo.service      2"],
            0, [{"serviceId": "another.service", "instances": 1},
                {"serviceId": "demo.service", "instances": 2}]) == (
        table.exit_code, table.stdout.splitlines(), as_json.exit_code, json.loads(as_json.stdout))


def test_instances_table_and_json(start_node: StartNode) -> None:
    """instances shows a service's instances, sorted by id, as a table or JSON."""
    node = start_node()
    b = instance("b", groupId="canary", status="down")
    register(node, b, instance("a"))
    table = invoke("instances", SERVICE, "--server", node.url, "--region", "SHA")
    as_json = invoke("instances", SERVICE, "--server", node.url, "--region", "SHA", "--json")
    assert (0, ["instanceId   url                  ip         port   zone     status   group",
                "─" * 76,
                "a            http://10.0.0.5:80   10.0.0.5   80     zone-1   up       -",
                "b            http://10.0.0.6:80   10.0.0.6   80     zone-1   down     canary"],
            0, [row(instance("a")), row(b)]) == (
        table.exit_code, table.stdout.splitlines(), as_json.exit_code, json.loads(as_json.stdout))


def test_instances_of_an_unknown_service_is_an_empty_list(start_node: StartNode) -> None:
    """A service nobody registered has no instances: an empty list, exit 0."""
    node = start_node()
    result = invoke("instances", "nobody.service", "--server", node.url, "--region", "SHA",
                    "--json")
    assert (0, []) == (result.exit_code, json.loads(result.stdout))


def test_cluster_table_and_json(start_node: StartNode) -> None:
    """cluster shows each node's url, zone, status and what it serves."""
    node = start_node()
    table = invoke("cluster", "--server", node.url)
    as_json = invoke("cluster", "--server", node.url, "--json")
    width = len(node.url)
    assert (0, ["url".ljust(width) + "   zone     status   canServiceRegistry   "
                "canServiceDiscovery",
                "─" * (width + 61),
                f"{node.url}   zone-1   up       true                 true"],
            0, [{"url": node.url, "zone": "zone-1", "status": "up", "canServiceRegistry": True,
                 "canServiceDiscovery": True}]) == (
        table.exit_code, table.stdout.splitlines(), as_json.exit_code, json.loads(as_json.stdout))


# --- errors and the environment --------------------------------------------------------------

COMMANDS = [["services"], ["instances", SERVICE], ["cluster"], ["watch", SERVICE],
            ["register", "--service", SERVICE, "--instance-id", "a", "--url", "http://a"]]


def test_no_server_listening_is_one_line_and_exit_1(spawn: Spawn) -> None:
    """Every client command, with no node at --server, prints one `cannot reach` line on
    stderr, nothing on stdout, no traceback, and exits 1."""
    url = f"http://127.0.0.1:{free_port()}"
    processes = [spawn(*command, "--server", url) for command in COMMANDS]
    outcomes = [(p.wait(), p.rest(), len(p.stderr().splitlines()),
                 p.stderr().startswith(f"artemis: cannot reach {url}: "),
                 "Traceback" in p.stderr()) for p in processes]
    assert [(1, [], 1, True, False)] * len(COMMANDS) == outcomes, [
        p.stderr() for p in processes]


def test_a_refusal_is_one_line_with_its_code_and_exit_1(start_node: StartNode,
                                                        spawn: Spawn) -> None:
    """A node refusing another region: `artemis: no-permission: <its message>`, exit 1."""
    node = start_node()
    lookup = spawn("instances", SERVICE, "--server", node.url, "--region", "elsewhere")
    registration = spawn("register", "--service", SERVICE, "--instance-id", "a", "--url",
                         "http://a", "--server", node.url, "--region", "elsewhere")
    assert [
        (1, "artemis: no-permission: regionId is not the same as the discovery node. "
            "regionId: elsewhere, discovery node.regionId: SHA\n"),
        (1, "artemis: no-permission: elsewhere/null/demo.service/a: regionId is not the same "
            "as the registry node. regionId: elsewhere, registry node.regionId: SHA\n"),
    ] == [(p.wait(), p.stderr()) for p in (lookup, registration)]


def test_servers_region_and_zone_come_from_the_environment(start_node: StartNode,
                                                           spawn: Spawn) -> None:
    """ARTEMIS_SERVER (comma-separated; a dead node first is passed over), ARTEMIS_REGION and
    ARTEMIS_ZONE are used when no flag is given (a node serving only its zone tells)."""
    node = start_node("--no-allow-discovery-from-other-zone")
    register(node, instance("a"))
    env = {"ARTEMIS_SERVER": f"http://127.0.0.1:{free_port()},{node.url}",
           "ARTEMIS_REGION": "SHA", "ARTEMIS_ZONE": "zone-1"}
    same_zone = spawn("instances", SERVICE, "--json", env=env)
    other_zone = spawn("instances", SERVICE, "--json", env={**env, "ARTEMIS_ZONE": "zone-2"})
    assert (0, [json.dumps([row(instance("a"))])], "",
            1, "artemis: no-permission: zoneId is not the same as the discovery node. "
               "zoneId: zone-2, discovery node.zoneId: zone-1\n") == (
        same_zone.wait(), same_zone.rest(), same_zone.stderr(),
        other_zone.wait(), other_zone.stderr())


# --- watch -----------------------------------------------------------------------------------

def test_watch_prints_each_change_as_json_until_sigint(start_node: StartNode,
                                                       spawn: Spawn) -> None:
    """watch --json prints the instances, then one object per new, changed and deleted
    instance as the node pushes it; SIGINT ends it with exit 0 and nothing on stderr."""
    node = start_node()
    a, b = instance("a"), instance("b")
    register(node, a)
    watch = spawn("watch", SERVICE, "--server", node.url, "--region", "SHA", "--json")
    seen = [json.loads(watch.line())]
    register(node, b)
    seen.append(json.loads(watch.line()))
    down = {**b, "status": "down"}
    register(node, down)
    seen.append(json.loads(watch.line()))
    unregister(node, a)
    seen.append(json.loads(watch.line()))
    assert ([{"instances": [row(a)], "serviceId": SERVICE},
             {"change": "new", "instance": row(b), "serviceId": SERVICE},
             {"change": "change", "instance": row(down), "serviceId": SERVICE},
             {"change": "delete", "instance": row(a), "serviceId": SERVICE}],
            0, [], "") == (seen, watch.interrupt(), watch.rest(), watch.stderr())


def test_watch_prints_a_table_then_a_line_per_change(start_node: StartNode,
                                                     spawn: Spawn) -> None:
    """watch without --json: the instances table, then `new` and the instance's columns."""
    node = start_node()
    watch = spawn("watch", SERVICE, "--server", node.url, "--region", "SHA")
    head = [watch.line(), watch.line()]
    register(node, instance("a"))
    assert (["instanceId   url   ip   port   zone   status   group",
             "─" * 52],
            "new     a  http://10.0.0.5:80  10.0.0.5  80  zone-1  up  -",
            0, "") == (head, watch.line(), watch.interrupt(), watch.stderr())


# --- register --------------------------------------------------------------------------------

def test_register_heartbeats_until_sigint_then_unregisters(start_node: StartNode,
                                                           spawn: Spawn) -> None:
    """register --json registers the instance (with region and zone of the flags), renews its
    lease, and on SIGINT unregisters it and exits 0."""
    node = start_node()
    process = spawn("register", "--service", SERVICE, "--instance-id", "cli-1",
                    "--url", "http://10.0.0.9:80/api", "--ip", "10.0.0.9", "--port", "80",
                    "--group", "g1", "--metadata", "k=v", "--metadata", "team=core",
                    "--heartbeat-interval", "0.2", "--server", node.url, "--region", "SHA",
                    "--zone", "zone-1", "--json")
    expected = {"groupId": "g1", "healthCheckUrl": None, "instanceId": "cli-1", "ip": "10.0.0.9",
                "machineName": None, "metadata": {"k": "v", "team": "core"}, "port": 80,
                "protocol": None, "regionId": "SHA", "serviceId": SERVICE, "status": "up",
                "url": "http://10.0.0.9:80/api", "zoneId": "zone-1"}
    registered = json.loads(process.line())
    on_node = listed(node)

    def renewed() -> bool | None:
        answer = httpx.get(node.url + "/api/status/leases.json", timeout=5.0).json()
        (lease,) = answer["leases"][SERVICE]
        return True if lease["renewalTime"] != lease["creationTime"] else None

    poll(renewed, DEADLINE, "a heartbeat renewing the lease")
    code = process.interrupt()
    assert ({"action": "registered", "instance": expected, "server": node.url}, [expected],
            0, [{"action": "unregistered", "instance": expected, "server": node.url}], [], "") == (
        registered, on_node, code, [json.loads(line) for line in process.rest()], listed(node),
        process.stderr())


def test_register_says_what_it_does(start_node: StartNode, spawn: Spawn) -> None:
    """register without --json says, in words, that it registered and then unregistered."""
    node = start_node()
    process = spawn("register", "--service", SERVICE, "--instance-id", "cli-2",
                    "--url", "http://10.0.0.9:81", "--server", node.url, "--region", "SHA")
    first = process.line()
    assert (f"registered {SERVICE}/cli-2 (http://10.0.0.9:81) at {node.url}; heartbeat every "
            f"5 s; Ctrl-C to unregister",
            0, [f"unregistered {SERVICE}/cli-2 at {node.url}"], "") == (
        first, process.interrupt(), process.rest(), process.stderr())


def test_register_unregisters_on_sigterm_too(start_node: StartNode, spawn: Spawn) -> None:
    """SIGTERM (a service manager stopping it) unregisters like Ctrl-C and exits 0."""
    node = start_node()
    process = spawn("register", "--service", SERVICE, "--instance-id", "cli-3",
                    "--url", "http://10.0.0.9:82", "--server", node.url, "--region", "SHA")
    process.line()
    process.process.send_signal(signal.SIGTERM)
    assert (0, []) == (process.wait(), listed(node))


# --- what watch prints -----------------------------------------------------------------------

def test_changes_name_what_happened_to_each_instance() -> None:
    """Between two views of a service: gone is delete, different is change, added is new."""
    a, b, c = (wire.Instance(service_id=SERVICE, instance_id=i, url=f"http://{i}")
               for i in "abc")
    b2 = wire.Instance(service_id=SERVICE, instance_id="b", url="http://b2")
    assert [("delete", a), ("change", b2), ("new", c)] == changes(
        {"a": a, "b": b}, {"b": b2, "c": c})


# --- management: pull-out, pull-in, pulled-out, audit -----------------------------------------

TOKEN = "cli-test-admin-token-0123456789"  # noqa: S105 - a test secret


@pytest.fixture
def managed_node(start_node: StartNode, tmp_path: Path) -> RunningNode:
    """A node with a SQLite management database and an admin token."""
    return start_node("--database", f"sqlite:///{tmp_path}/management.db",
                      "--admin-token", TOKEN)


def test_pull_out_and_back_in(managed_node: RunningNode) -> None:
    """pull-out hides an instance, a server and a zone; pulled-out lists them; pull-in brings
    the instance back; audit shows every write, newest first."""
    a, b = instance("a"), instance("b")
    register(managed_node, a, b)
    common = ("--server", managed_node.url, "--region", "SHA", "--token", TOKEN,
              "--operator", "alice")

    outs = [invoke("pull-out", "instance", SERVICE, "a", "--reason", "disk", *common),
            invoke("pull-out", "server", "10.0.0.99", *common),
            invoke("pull-out", "zone", "other.service", "zone-9", *common)]
    hidden = [i["instanceId"] for i in listed(managed_node)]
    pulled = invoke("pulled-out", "--json", *common[:-2])
    back = invoke("pull-in", "instance", SERVICE, "a", *common)
    shown = sorted(i["instanceId"] for i in listed(managed_node))
    log = invoke("audit", "--json", "--limit", "2", *common[:-2])

    assert ([0, 0, 0], ["instance demo.service a: pull-out in force (out of discovery)\n"],
            ["b"], 0, [
                {"kind": "instance", "key": "demo.service a", "operations": "pull-out"},
                {"kind": "server", "key": "10.0.0.99", "operations": "pull-out"},
                {"kind": "zone", "key": "other.service zone-9", "operations": "pull-out"}],
            0, ["a", "b"], 0) == (
        [r.exit_code for r in outs], [outs[0].output], hidden, pulled.exit_code,
        json.loads(pulled.output), back.exit_code, shown, log.exit_code)
    entries = json.loads(log.output)
    assert [("admin", "alice", "instance-operation", "demo.service a", "pull-in", "pull-out",
             ""), ("admin", "alice", "zone-operation", "other.service zone-9", "pull-out", "",
                   "pull-out")] == [
        (e["actor"], e["operator"], e["kind"], e["target"], e["done"], e["before"], e["after"])
        for e in entries]


def test_management_commands_need_a_token(managed_node: RunningNode) -> None:
    """A wrong token is refused in one line with exit code 1, and changes nothing."""
    result = invoke("pull-out", "instance", SERVICE, "a", "--server", managed_node.url,
                    "--region", "SHA", "--token", "not-the-token-0123456789")
    pulled = invoke("pulled-out", "--json", "--server", managed_node.url, "--region", "SHA",
                    "--token", TOKEN)

    assert (1, "artemis: no-permission: this call needs a bearer token with the write role\n",
            []) == (result.exit_code, result.output, json.loads(pulled.output))


def test_table_cells_print_values_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    """rich markup in a value prints literally and control characters print escaped, so a
    registered value cannot style, link, move or clear the terminal."""
    from artemis.cli.output import show

    show(False, ["instanceId", "metadata"], [
        {"instanceId": "[red]x", "metadata": "[link=javascript:alert(1)]y[/link]"},
        {"instanceId": "a\x1b[2Jb", "metadata": "line\nbreak\x00"}])

    lines = capsys.readouterr().out.splitlines()
    assert ["[red]x", "[link=javascript:alert(1)]y[/link]"] == lines[2].split()
    assert ["a\\x1b[2Jb", "line\\nbreak\\x00"] == lines[3].split()
    assert "\x1b" not in "".join(lines)
