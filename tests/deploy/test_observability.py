"""deploy/prometheus and deploy/grafana: promtool checks the alerting rules and runs their unit
tests; a real node's /metrics is scraped, and every metric family it exports is on the dashboard,
while every metric the dashboard and the rules name is one the node exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.process.conftest import StartNode, free_port, start_node

__all__ = ["start_node"]  # the fixture
ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "artemis-dashboard.json"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool (Debian package prometheus) is missing")
# What the alerts must cover: node down, peer down, replication lag and drops,
# self-preservation, the management store, loop lag, rate-limit refusals.
REQUIRED_ALERTS = {"ArtemisNodeDown", "ArtemisPeerDown", "ArtemisReplicationLagHigh",
                   "ArtemisReplicationDropping", "ArtemisSelfPreservationActive",
                   "ArtemisManagementStoreUnavailable", "ArtemisEventLoopLagHigh",
                   "ArtemisRateLimitedOperation", "ArtemisRateLimitedClients"}
ADMIN = "observability-admin-token-0123456789"
SECRET = "observability-cluster-secret-0123"  # noqa: S105


def promtool(*args: str, cwd: Path = PROMETHEUS) -> tuple[int, str]:
    done = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120,
                          check=False, cwd=cwd)
    return done.returncode, (done.stdout + done.stderr).strip()


def alerts() -> list[dict[str, Any]]:
    rules = yaml.safe_load((PROMETHEUS / "artemis-rules.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def names(expression: str) -> set[str]:
    """The metric names an expression selects (identifiers followed by { or [, or bare)."""
    without_strings = re.sub(r'"[^"]*"', '""', expression)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_labels))
    return {t for t in tokens if t.startswith(("artemis_", "process_")) or t == "up"}


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    """promtool check rules: every rule parses."""
    assert (0, f"Checking artemis-rules.yml\n  SUCCESS: {len(alerts())} rules found") == \
        promtool("check", "rules", "artemis-rules.yml")


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    """promtool test rules: each alert fires when its test says, and not before."""
    assert (0, "Unit Testing:  artemis-rules.test.yml\n  SUCCESS") == \
        promtool("test", "rules", "artemis-rules.test.yml")


@needs_promtool
def test_the_unit_tests_notice_a_changed_rule(tmp_path: Path) -> None:
    """The unit tests can fail: ArtemisNodeDown waiting 3 minutes instead of 1 fails them."""
    rules = (PROMETHEUS / "artemis-rules.yml").read_text()
    changed = rules.replace("expr: up{job=\"artemis\"} == 0\n        for: 1m",
                            "expr: up{job=\"artemis\"} == 0\n        for: 3m")
    assert changed != rules
    (tmp_path / "artemis-rules.yml").write_text(changed)
    shutil.copy(PROMETHEUS / "artemis-rules.test.yml", tmp_path)
    code, said = promtool("test", "rules", "artemis-rules.test.yml", cwd=tmp_path)
    assert (1, True) == (code, "alertname: ArtemisNodeDown, time: 3m" in said)


def test_every_alert_is_unit_tested() -> None:
    """Each alert has a unit test, each test names an alert that exists, and the alerts the
    issue asks for are there."""
    tests = yaml.safe_load((PROMETHEUS / "artemis-rules.test.yml").read_text())
    tested = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]}
    fired = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]
             if case["exp_alerts"]}
    defined = {rule["alert"] for rule in alerts()}
    assert (defined, defined, set()) == (tested, fired, REQUIRED_ALERTS - defined)


@needs_promtool
def test_the_documented_scrape_configuration(tmp_path: Path) -> None:
    """docs/deployment.md's Prometheus configuration passes `promtool check config`, with its
    rule file where the documented path says (here: this repository's)."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    (block,) = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    config = yaml.safe_load(block)
    rules = tmp_path / "artemis-rules.yml"
    shutil.copy(PROMETHEUS / "artemis-rules.yml", rules)
    (documented,) = config["rule_files"]
    config["rule_files"] = [str(rules)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    code, said = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert (0, "artemis-rules.yml", ["artemis"]) == (
        code, Path(documented).name, [job["job_name"] for job in config["scrape_configs"]]), said


def test_every_alert_is_documented() -> None:
    """docs/deployment.md's table of alerts lists exactly the rules' alerts."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    documented = set(re.findall(r"^\| `(Artemis\w+)` \|", text, re.MULTILINE))
    assert {rule["alert"] for rule in alerts()} == documented


@needs_promtool
def test_the_dashboard_queries_parse(tmp_path: Path) -> None:
    """Every query of the dashboard is valid PromQL (promtool checks them as recording rules,
    Grafana's variables given values)."""
    values = {"$__rate_interval": "5m", "$job": "artemis", "$instance": ".*"}
    rules = []
    for i, expr in enumerate(expressions()):
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(
        {"groups": [{"name": "dashboard", "rules": rules}]}))
    assert (0, f"Checking dashboard.yml\n  SUCCESS: {len(rules)} rules found") == \
        promtool("check", "rules", "dashboard.yml", cwd=tmp_path)


def test_the_dashboard_is_well_formed() -> None:
    """Unique panel ids, every query panel on the data source variable with distinct refIds,
    panels inside the 24-column grid and not overlapping; the variables job and instance."""
    dashboard = json.loads(DASHBOARD.read_text())
    every = panels(dashboard)
    ids = [p["id"] for p in every]
    cells: set[tuple[int, int]] = set()
    overlapping = []
    for p in every:
        g = p["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"],
                                                                            g["y"] + g["h"])}
        if mine & cells or g["x"] + g["w"] > 24:
            overlapping.append(p["title"])
        cells |= mine
    queries = [p for p in every if p["type"] != "row"]
    assert (len(ids), [], [], ["datasource", "job", "instance"]) == (
        len(set(ids)), overlapping,
        [p["title"] for p in queries
         if p["datasource"] != {"type": "prometheus", "uid": "${datasource}"}
         or len({t["refId"] for t in p["targets"]}) != len(p["targets"])],
        [v["name"] for v in dashboard["templating"]["list"]])


def scrape(start_node: StartNode, tmp_path: Path) -> dict[str, set[str]]:
    """Family name -> its sample names (by its type, for a family with no sample yet), from a
    node with a peer and a management database, so that the cluster's and management's
    families are there too."""
    silent = f"http://127.0.0.1:{free_port()}"  # a peer that never answers
    node = start_node("--peers", silent, "--bootstrap-timeout", "0", "--cluster-secret", SECRET,
                      "--database", f"sqlite:///{tmp_path}/management.db",
                      "--admin-token", ADMIN)
    with node.client() as client:
        client.get("/health").raise_for_status()  # so that a request is timed
        text = client.get("/metrics").text
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {family.name: {sample.name for sample in family.samples}
            | {family.name + s for s in suffixes.get(family.type, ("",))}
            for family in text_string_to_metric_families(text)}


def test_the_dashboard_and_the_rules_match_what_a_node_exports(start_node: StartNode,
                                                               tmp_path: Path) -> None:
    """Every metric family a node exports appears in some panel's query; every metric the
    dashboard or the rules name is exported (or is Prometheus's own `up`)."""
    families = scrape(start_node, tmp_path)
    on_dashboard = set().union(*(names(e) for e in expressions()))
    in_rules = set().union(*(names(rule["expr"]) for rule in alerts()))
    exported = set().union(*families.values()) | {"up"}
    assert ([], [], []) == (
        sorted(f for f, samples in families.items() if not samples & on_dashboard),
        sorted(on_dashboard - exported), sorted(in_rules - exported))
    assert len(families) > 50  # the cluster's and management's families are in the scrape
