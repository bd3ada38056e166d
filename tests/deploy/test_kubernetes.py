"""The Kubernetes manifests: each kustomization rendered by `kubectl kustomize` (kustomize as
kubectl ships it) and every object validated against the Kubernetes API schemas of the versions
below by kubernetes-validate (strict: unknown fields are errors). The Prometheus Operator's
objects have no schema there; their shape is checked here instead. Then the wiring: the
settings the pods get load as a node's settings, and the probes ask what a real node answers."""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from artemis import __version__
from artemis.server.settings import SETTINGS, Settings, env_name
from tests.process.conftest import free_port, poll
from tests.process.test_mutual_tls import authority, signed

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
VERSIONS = ("1.29.0", "1.32.0")  # the oldest Kubernetes we claim, and a current one
KUSTOMIZATIONS = ("base", "overlays/production", "overlays/production-tls")
CUSTOM = {"ServiceMonitor", "PrometheusRule"}  # Prometheus Operator CRDs: no schema to check
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None,
                                   reason="kubectl (with its kustomize) is not installed")
SECRET = "k8s-cluster-secret-0123456789"  # noqa: S105 - test secrets
ADMIN = "k8s-admin-token-0123456789"


def render(kustomization: str) -> list[dict[str, Any]]:
    done = subprocess.run(["kubectl", "kustomize", str(KUBE / kustomization)],
                          capture_output=True, text=True, timeout=60, check=True)
    return [obj for obj in yaml.safe_load_all(done.stdout) if obj]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind
                and (name is None or o["metadata"]["name"] == name)]
    return found


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (node,) = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    return node


def pod_env(node: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    """The environment Kubernetes gives the container in pod artemis-0 of namespace registry:
    $(VAR) expanded, secrets from `secrets` (a missing optional one left out)."""
    env: dict[str, str] = {}
    fields = {"metadata.name": "artemis-0", "metadata.namespace": "registry"}
    for item in node["env"]:
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], item["value"])
        elif "fieldRef" in item["valueFrom"]:
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            key = item["valueFrom"]["secretKeyRef"]["key"]
            if key in secrets:
                env[item["name"]] = secrets[key]
    return env


@needs_kubectl
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_object_is_valid(kustomization: str, version: str) -> None:
    """Every rendered object is valid for the Kubernetes version, but for the Prometheus
    Operator's, which only the production overlays hold."""
    invalid, custom = [], []
    for obj in render(kustomization):
        if obj["kind"] in CUSTOM:
            custom.append(obj["kind"])
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            invalid.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    expected = [] if kustomization == "base" else ["PrometheusRule", "ServiceMonitor"]
    assert ([], expected) == (invalid, sorted(custom))


@pytest.mark.parametrize("version", VERSIONS)
def test_strict_validation_reports_a_wrong_field(version: str) -> None:
    """The validation can fail: a misspelled field of the StatefulSet is reported."""
    statefulset = yaml.safe_load((KUBE / "base" / "statefulset.yaml").read_text())
    statefulset["spec"]["replica"] = statefulset["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, version, strict=True)


@pytest.mark.parametrize("path", sorted((KUBE / "base").glob("*.yaml")), ids=lambda p: p.name)
def test_each_base_file_is_valid_alone(path: Path) -> None:
    """Each file of the base is a valid object by itself (this runs without kubectl)."""
    obj = yaml.safe_load(path.read_text())
    if obj["kind"] == "Kustomization":
        assert sorted(obj["resources"]) == sorted(
            p.name for p in (KUBE / "base").glob("*.yaml") if p.name != "kustomization.yaml")
        return
    for version in VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


@needs_kubectl
def test_the_cluster_is_wired_together() -> None:
    """Three pods behind a headless Service that lists starting pods too, which is the name
    their --peers-dns resolves; the client Service, the PodDisruptionBudget and the pods agree
    on labels and ports; the image is this version's."""
    objects = render("base")
    statefulset = one(objects, "StatefulSet")
    peers, clients = one(objects, "Service", "artemis-peers"), one(objects, "Service", "artemis")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    node = container(objects)
    values = {item["name"]: item.get("value") for item in node["env"]}
    assert (3, "artemis-peers", "None", True, "Parallel") == (
        statefulset["spec"]["replicas"], statefulset["spec"]["serviceName"],
        peers["spec"]["clusterIP"], peers["spec"]["publishNotReadyAddresses"],
        statefulset["spec"]["podManagementPolicy"])
    assert [labels] * 4 == [statefulset["spec"]["selector"]["matchLabels"],
                            peers["spec"]["selector"], clients["spec"]["selector"],
                            one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]]
    assert ([{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}] * 2) == (
        node["ports"], [peers["spec"]["ports"][0], clients["spec"]["ports"][0]])
    assert ("8080", "artemis-peers.$(POD_NAMESPACE).svc:8080",
            "http://$(POD_NAME).artemis-peers.$(POD_NAMESPACE).svc:8080") == (
        values["ARTEMIS_PORT"], values["ARTEMIS_PEERS_DNS"], values["ARTEMIS_URL"])
    assert (f"artemis-registry:{__version__}", 1, "AlwaysAllow") == (
        node["image"], one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"],
        one(objects, "PodDisruptionBudget")["spec"]["unhealthyPodEvictionPolicy"])


@needs_kubectl
def test_the_pods_are_locked_down() -> None:
    """Non-root with a read-only root filesystem, no capabilities, no privilege escalation, the
    runtime's seccomp profile (the "restricted" Pod Security Standard, which the production
    namespace enforces), no service account token and no service links; secrets only from the
    Secret; the grace period covers preStop plus the node's own stop."""
    objects = render("overlays/production")
    pod = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    node = container(objects)
    secret_refs = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in node["env"]
                   if "secretKeyRef" in item.get("valueFrom", {})}
    assert ({"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
             "seccompProfile": {"type": "RuntimeDefault"}},
            {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
             "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
            False, False, "restricted") == (
        pod["securityContext"], node["securityContext"], pod["automountServiceAccountToken"],
        pod["enableServiceLinks"],
        one(objects, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"])
    assert {"ARTEMIS_CLUSTER_SECRET": {"name": "artemis", "key": "cluster-secret"},
            "ARTEMIS_ADMIN_TOKEN": {"name": "artemis", "key": "admin-token"},
            "ARTEMIS_TOKENS": {"name": "artemis", "key": "tokens", "optional": True},
            "ARTEMIS_DATABASE": {"name": "artemis", "key": "database-url", "optional": True},
            } == secret_refs
    sleep = int(node["lifecycle"]["preStop"]["exec"]["command"][1])
    stop = float(pod_env(node, {})["ARTEMIS_SHUTDOWN_TIMEOUT"]) + 3  # + sessions and handoff
    assert pod["terminationGracePeriodSeconds"] > sleep + stop
    assert {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}} == \
        node["resources"]


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_variables_name_only_what_comes_before(kustomization: str) -> None:
    """Kubernetes expands $(VAR) only from variables earlier in the list (a patch's entries go
    first, which once left ARTEMIS_URL naming POD_NAME before it was set)."""
    seen: set[str] = set()
    late = []
    for item in container(render(kustomization))["env"]:
        late += [f"{item['name']} -> {name}" for name in
                 re.findall(r"\$\((\w+)\)", item.get("value", "")) if name not in seen]
        seen.add(item["name"])
    assert [] == late


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_pods_settings_load(kustomization: str) -> None:
    """Every ARTEMIS_* variable of the pods is a setting, and together (secrets filled in, with
    and without the optional ones) they load as a node's settings; the peers are found by DNS,
    or under TLS listed by the names the certificate holds."""
    node = container(render(kustomization))
    known = {env_name(name) for name in SETTINGS}
    unknown = [i["name"] for i in node["env"]
               if i["name"].startswith("ARTEMIS_") and i["name"] not in known]
    required = {"cluster-secret": SECRET, "admin-token": ADMIN}
    optional = {"tokens": f"ci:read:{ADMIN}",
                "database-url": "postgresql://artemis@db.example.com/artemis"}
    plain = Settings.load(None, pod_env(node, required))
    full = Settings.load(None, pod_env(node, {**required, **optional}))
    assert [] == unknown
    if kustomization.endswith("tls"):
        assert (plain.peers_dns, plain.node_url, plain.tls_cert) == (
            "", "https://artemis-0.artemis-peers.registry.svc:8080",
            "/etc/artemis/tls/tls.crt")
        assert plain.peers.split(",") == [
            f"https://artemis-{i}.artemis-peers.registry.svc:8080" for i in range(3)]
    else:
        assert ("artemis-peers.registry.svc:8080", "",
                "http://artemis-0.artemis-peers.registry.svc:8080") == (
            plain.peers_dns, plain.peers, plain.node_url)
    assert ("0.0.0.0", 8080, "", "postgresql://artemis@db.example.com/artemis") == (
        plain.host, plain.port, plain.database, full.database)


@needs_kubectl
def test_the_monitoring_component() -> None:
    """The ServiceMonitor scrapes /metrics through the headless Service's port (so starting
    pods too) as job artemis; the PrometheusRule holds exactly deploy/prometheus's rules."""
    objects = render("overlays/production")
    monitor, rule = one(objects, "ServiceMonitor"), one(objects, "PrometheusRule")
    peers = one(objects, "Service", "artemis-peers")
    labels = peers["metadata"]["labels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "artemis-rules.yml").read_text())
    assert ("monitoring.coreos.com/v1", "monitoring.coreos.com/v1", "registry", "registry") == (
        monitor["apiVersion"], rule["apiVersion"], monitor["metadata"]["namespace"],
        rule["metadata"]["namespace"])
    assert ({}, "http", "/metrics",
            [{"action": "replace", "targetLabel": "job", "replacement": "artemis"}]) == (
        {k: v for k, v in monitor["spec"]["selector"]["matchLabels"].items()
         if labels.get(k) != v},
        endpoint["port"], endpoint["path"], endpoint["relabelings"])
    assert [p["name"] for p in peers["spec"]["ports"]] == [endpoint["port"]]
    assert rules == rule["spec"]


@needs_kubectl
def test_the_tls_overlay() -> None:
    """Under TLS the probes and the scrape speak HTTPS, the certificate comes read-only from the
    Secret artemis-tls, and the scrape checks it against the client Service's name."""
    objects = render("overlays/production-tls")
    node = container(objects)
    pod = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    (endpoint,) = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert (["HTTPS"] * 3, [{"name": "tls", "mountPath": "/etc/artemis/tls", "readOnly": True}],
            [{"name": "tls", "secret": {"secretName": "artemis-tls", "defaultMode": 0o440}}],
            "https", {"ca": {"secret": {"name": "artemis-tls", "key": "ca.crt"}},
                      "serverName": "artemis.registry.svc"}) == (
        [node[p]["httpGet"]["scheme"] for p in ("startupProbe", "readinessProbe",
                                                "livenessProbe")],
        node["volumeMounts"], pod["volumes"], endpoint["scheme"], endpoint["tlsConfig"])


def _start(flags: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ARTEMIS_")}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "artemis", "server", *flags],
                                stdout=out, stderr=subprocess.STDOUT, env={**clean, **env})


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _status(url: str, verify: Any = True) -> int | None:
    try:
        return httpx.get(url, timeout=2.0, verify=verify).status_code
    except httpx.TransportError:
        return None


@needs_kubectl
def test_the_probes_ask_what_a_node_answers(tmp_path: Path) -> None:
    """While a node waits for a peer in its bootstrap, the startup and liveness probes pass and
    the readiness probe does not; once up it is ready; forced down for maintenance it is not
    ready and still alive (never restarted for it)."""
    node = container(render("base"))
    paths = {probe: node[probe]["httpGet"]["path"]
             for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    silent = f"http://127.0.0.1:{free_port()}"  # a peer that never answers
    process = _start(["--port", str(port), "--url", url, "--peers", f"{url},{silent}",
                      "--bootstrap-timeout", "600"],
                     {"ARTEMIS_CLUSTER_SECRET": SECRET}, tmp_path / "node.log")
    try:
        poll(lambda: _status(url + paths["startupProbe"]), 15.0, "the node listening")

        def probes() -> dict[str, int | None]:
            return {probe: _status(url + path) for probe, path in paths.items()}

        starting = probes()
        httpx.post(f"{url}/api/admin/node-status.json", json={"status": "up"},
                   timeout=5.0).raise_for_status()
        serving = probes()
        httpx.post(f"{url}/api/admin/node-status.json", json={"status": "down"},
                   timeout=5.0).raise_for_status()
        down = probes()
    finally:
        _stop(process)
    assert ({"startupProbe": 200, "livenessProbe": 200, "readinessProbe": 503},
            {"startupProbe": 200, "livenessProbe": 200, "readinessProbe": 200},
            {"startupProbe": 200, "livenessProbe": 200, "readinessProbe": 503}) == (
        starting, serving, down)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_peers_trust_each_other_by_ssl_cert_file(tmp_path: Path) -> None:
    """The TLS component's trust: nodes listing each other by https URL, their certificates
    from a private authority named by SSL_CERT_FILE, see each other up and replicate; without
    SSL_CERT_FILE a node does not trust its peer."""
    ca = authority(tmp_path, "cluster")
    cert, key = signed(tmp_path, "node", ca, "serverAuth,clientAuth")
    ports = [free_port(), free_port()]
    urls = [f"https://127.0.0.1:{p}" for p in ports]
    trust = {"SSL_CERT_FILE": str(ca[0])}
    processes = []
    try:
        for i, (port, url) in enumerate(zip(ports, urls, strict=True)):
            env = {"ARTEMIS_CLUSTER_SECRET": SECRET, "ARTEMIS_TLS_CERT": str(cert),
                   "ARTEMIS_TLS_KEY": str(key), **(trust if i == 0 else {})}
            processes.append(_start(["--port", str(port), "--url", url, "--peers",
                                     ",".join(urls), "--bootstrap-timeout", "1"],
                                    env, tmp_path / f"node-{i}.log"))
        verify = ssl.create_default_context(cafile=str(ca[0]))

        def peer_status(i: int) -> str | None:
            try:
                answer = httpx.get(f"{urls[i]}/api/status/replication.json", timeout=2.0,
                                   verify=verify).json()
            except (httpx.TransportError, ValueError):
                return None
            (peer,) = answer["peers"]
            return peer["status"] if peer["status"] in ("up", "unknown") else None

        poll(lambda: _status(urls[0] + "/health", verify) == 200 or None, 20.0, "node 0 up")
        poll(lambda: _status(urls[1] + "/health", verify) == 200 or None, 20.0, "node 1 up")
        trusted = poll(lambda: peer_status(0) if peer_status(0) == "up" else None, 20.0,
                       "node 0 seeing node 1 up")
        untrusting = peer_status(1)
    finally:
        for process in processes:
            _stop(process)
    assert ("up", "unknown") == (trusted, untrusting)
