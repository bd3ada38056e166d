"""The client commands of `artemis` against real nodes: tables, --json, errors and exit codes,
watch, register.

One-shot commands run in-process through click's CliRunner (they talk to the node over the
network all the same); the one-line errors, the environment, `watch` and `register` run as real
`python -m artemis` processes, stopped with SIGINT like a person's Ctrl-C.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from artemis import wire
from artemis.cli.discovery import Samples, changes
from tests.cli.helpers import (
    DEADLINE,
    SERVICE,
    Spawn,
    in_snapshot,
    instance,
    invoke,
    listed,
    register,
    row,
    unregister,
)
from tests.process.conftest import StartNode, free_port, poll

# --- help and usage --------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    """`artemis --help` lists the server and every client command."""
    result = invoke("--help")
    listing = result.stdout[result.stdout.index("Commands:"):].splitlines()[1:]
    assert (0, ["audit", "canary", "cluster", "group", "instances", "logical", "pull-in",
                "pull-out", "pulled-out", "register", "route-rule", "server", "services",
                "watch"]) == (
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
    table = invoke("services", "--server", node.url, "--region", "SHA")
    as_json = invoke("services", "--server", node.url, "--region", "SHA", "--json")
    assert (0, ["serviceId         instances",
                "───────────────────────────",
                "another.service   1",
                "demo.service      2"],
            0, [{"serviceId": "another.service", "instances": 1},
                {"serviceId": "demo.service", "instances": 2}]) == (
        table.exit_code, table.stdout.splitlines(), as_json.exit_code, json.loads(as_json.stdout))


def test_services_and_instances_refuse_another_region_alike(start_node: StartNode) -> None:
    """services --region nowhere is refused as instances --region nowhere is: the node's
    no-permission, exit 1, nothing on stdout."""
    node = start_node()
    refusal = ("artemis: no-permission: regionId is not the same as the discovery node. "
               "regionId: nowhere, discovery node.regionId: SHA\n")
    results = [invoke("services", "--server", node.url, "--region", "nowhere"),
               invoke("instances", SERVICE, "--server", node.url, "--region", "nowhere")]
    assert [(1, "", refusal)] * 2 == [(r.exit_code, r.stdout, r.stderr) for r in results]


def test_instances_table_and_json(start_node: StartNode) -> None:
    """instances shows a service's instances, sorted by id, as a table or JSON."""
    node = start_node()
    b = instance("b", groupId="canary", status="down")
    register(node, b, instance("a"))
    table = invoke("instances", SERVICE, "--server", node.url, "--region", "SHA")
    as_json = invoke("instances", SERVICE, "--server", node.url, "--region", "SHA", "--json")
    assert (0, ["instanceId   url                  ip         port   zone     status   group    "
                "pulledOutBy",
                "─" * 90,
                "a            http://10.0.0.5:80   10.0.0.5   80     zone-1   up       -        -",
                "b            http://10.0.0.6:80   10.0.0.6   80     zone-1   down     canary   -"],
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
    table = invoke("cluster", "--server", node.url, "--region", "SHA")
    as_json = invoke("cluster", "--server", node.url, "--region", "SHA", "--json")
    header = ("url".ljust(len(node.url)) + "   zone     status   downFor   canServiceRegistry   "
              "canServiceDiscovery   lastError")
    assert (0, [header, "─" * len(header),
                f"{node.url}   zone-1   up       -         true                 true"
                "                  -"],
            0, [{"url": node.url, "zone": "zone-1", "status": "up", "reportedStatus": "up",
                 "downFor": None, "canServiceRegistry": True, "canServiceDiscovery": True,
                 "lastError": None}]) == (
        table.exit_code, table.stdout.splitlines(), as_json.exit_code, json.loads(as_json.stdout))


# --- errors, exit codes and the environment --------------------------------------------------

COMMANDS = [["services"], ["instances", SERVICE], ["cluster"], ["watch", SERVICE],
            ["register", "--service", SERVICE, "--instance-id", "a", "--url", "http://a"],
            ["pulled-out"], ["pull-out", "instance", SERVICE, "a"], ["audit"],
            ["group", "list"], ["route-rule", "list"], ["canary", "show", SERVICE, "app"],
            ["logical", "list"]]


def test_no_server_listening_is_one_line_and_exit_3(spawn: Spawn) -> None:
    """Every client command, with no node at --server, prints one `cannot reach` line on
    stderr, nothing on stdout, no traceback, and exits 3."""
    url = f"http://127.0.0.1:{free_port()}"
    processes = [spawn(*command, "--server", url) for command in COMMANDS]
    outcomes = [(p.wait(60.0), p.rest(), len(p.stderr().splitlines()),
                 p.stderr().startswith(f"artemis: cannot reach {url}: "),
                 "Traceback" in p.stderr()) for p in processes]
    assert [(3, [], 1, True, False)] * len(COMMANDS) == outcomes, [
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


def test_a_node_without_a_database_refuses_management_once(start_node: StartNode,
                                                            spawn: Spawn) -> None:
    """A management command on a node without a database: the node's refusal as it is, exit 1;
    not `cannot reach`, and asked once (the node counts one call of the endpoint)."""
    node = start_node()
    process = spawn("pulled-out", "--server", node.url, "--region", "SHA")
    assert (1, "artemis: service-unavailable: management is not configured on this node "
               "(no database)\n") == (process.wait(), process.stderr())
    metrics = httpx.get(node.url + "/metrics", timeout=5.0).text
    calls = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                if line.startswith("artemis_http_requests_total")
                and "all-instance-operations" in line)
    assert 1.0 == calls


class _Answers(BaseHTTPRequestHandler):
    """A server that answers every POST with the class's status and body, and counts them."""

    status = 404
    body = b""
    calls = 0

    def do_POST(self) -> None:
        type(self).calls += 1
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[tuple[str, type[_Answers]]]:
    """A local HTTP server (not a node) and its handler class, to script its answers."""
    handler = type("Scripted", (_Answers,), {"calls": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    thread.join(DEADLINE)
    server.server_close()


def test_an_http_error_without_an_answer_is_named_by_its_status(
        answering: tuple[str, type[_Answers]]) -> None:
    """A server answering 404 with an empty body: `HTTP 404 Not Found` (not a JSON error, not
    `cannot reach`), exit 1, asked once."""
    url, handler = answering
    result = invoke("services", "--server", url)
    assert (1, f"artemis: {url}/api/discovery/lookup.json: HTTP 404 Not Found\n", 1) == (
        result.exit_code, result.stderr, handler.calls)


def test_a_service_unavailable_answer_is_not_retried(
        answering: tuple[str, type[_Answers]]) -> None:
    """A refusal with service-unavailable is reported as it is after one try of the only
    node, with exit 1."""
    url, handler = answering
    handler.status = 200
    handler.body = (b'{"responseStatus":{"errorCode":"service-unavailable",'
                    b'"message":"not now","status":"fail"}}')
    result = invoke("audit", "--server", url)
    assert (1, "artemis: service-unavailable: not now\n", 1) == (
        result.exit_code, result.stderr, handler.calls)


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
    """watch --json prints the instances, then one object per new, changed and unregistered
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
             {"change": "unregistered", "instance": row(a), "serviceId": SERVICE}],
            0, [], "") == (seen, watch.interrupt(), watch.rest(), watch.stderr())


def test_watch_tells_an_expiry_from_an_unregistration(start_node: StartNode,
                                                      spawn: Spawn) -> None:
    """An instance whose lease ran out (no heartbeat within a 1 s lease) is `expired`; one
    unregistered is `unregistered`."""
    node = start_node("--lease-ttl", "1", "--no-self-preservation")
    watch = spawn("watch", SERVICE, "--server", node.url, "--region", "SHA", "--json")
    watch.line()
    register(node, instance("a"))
    seen = [json.loads(watch.line())["change"]]
    seen.append(json.loads(watch.line())["change"])  # a expires: no heartbeat
    register(node, instance("b"))
    seen.append(json.loads(watch.line())["change"])
    unregister(node, instance("b"))
    seen.append(json.loads(watch.line())["change"])
    assert (["new", "expired", "new", "unregistered"], 0) == (seen, watch.interrupt())


def test_watch_prints_a_table_then_a_line_per_change(start_node: StartNode,
                                                     spawn: Spawn) -> None:
    """watch without --json: the instances table, then `new` and the instance's columns."""
    node = start_node()
    watch = spawn("watch", SERVICE, "--server", node.url, "--region", "SHA")
    head = [watch.line(), watch.line()]
    register(node, instance("a"))
    assert (["instanceId   url   ip   port   zone   status   group   pulledOutBy",
             "─" * 66],
            "new           a  http://10.0.0.5:80  10.0.0.5  80  zone-1  up  -  -",
            0, "") == (head, watch.line(), watch.interrupt(), watch.stderr())


def test_samples_tell_a_cause_only_when_it_is_certain() -> None:
    """Between the samples around a change: no expiry at all is `unregistered`, only expiries
    is `expired`, a mix (or no sample before it) is not told."""
    samples = Samples()
    for revision, evicted in ((10, 0), (12, 0), (15, 3), (20, 4)):
        samples.add("http://a", revision, evicted)
    assert ["unregistered", "expired", None, None] == [
        samples.cause(11), samples.cause(14), samples.cause(17), samples.cause(5)]


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


def test_register_says_when_it_could_not_unregister(start_node: StartNode,
                                                    spawn: Spawn) -> None:
    """When the node is gone by the time of the signal, register says the instance stays until
    its lease expires, and exits 3."""
    node = start_node()
    process = spawn("register", "--service", SERVICE, "--instance-id", "cli-4",
                    "--url", "http://10.0.0.9:83", "--server", node.url, "--region", "SHA")
    process.line()
    node.stop()
    code = process.interrupt()
    assert (3, True) == (code, process.stderr().startswith(
        f"artemis: could not unregister {SERVICE}/cli-4: ")
        and process.stderr().endswith("it stays registered until its lease expires\n")), (
        process.stderr())


# --- what watch prints -----------------------------------------------------------------------

def test_changes_name_what_happened_to_each_instance() -> None:
    """Between two views of a service: gone is delete, different is change, added is new."""
    a, b, c = (wire.Instance(service_id=SERVICE, instance_id=i, url=f"http://{i}")
               for i in "abc")
    b2 = wire.Instance(service_id=SERVICE, instance_id="b", url="http://b2")
    assert [("delete", a), ("change", b2), ("new", c)] == changes(
        {"a": a, "b": b}, {"b": b2, "c": c})


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
