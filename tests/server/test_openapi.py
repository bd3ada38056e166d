"""The OpenAPI document at /openapi.json: it lists exactly the routes served, it is valid
OpenAPI 3.1, and the node's real answers fit the schemas it documents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
import jsonschema_rs
import pytest
import schemathesis

from artemis import wire
from artemis.clock import FakeClock
from artemis.server.api.endpoint import Role, null_fields
from artemis.server.api.openapi import ENDPOINTS, PATH, UndocumentedRoute, openapi_document
from artemis.server.http import App, Route
from tests.server.cluster_harness import PEER_HEADERS, with_a_peer
from tests.server.conftest import MANAGEMENT_TOKEN, MakeApi, make_parts
from tests.server.harness import OK_BODY, REGION, SERVICE, ZONE, Api, instance

CONTEXT: Final = "/artemis-web"
DOCUMENTED_ERRORS: Final = {"404", "405"}


async def fetch_document(api: Api) -> dict[str, Any]:
    response = await api.get(PATH)
    assert (200, "application/json") == (response.status_code,
                                         response.headers["content-type"])
    document: dict[str, Any] = response.json()
    return document


async def served_document(app: App) -> dict[str, Any]:
    """The document `app` serves, fetched through its ASGI face."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get(app.context_path + PATH)
    assert 200 == response.status_code
    document: dict[str, Any] = response.json()
    return document


def documented_methods(document: dict[str, Any]) -> dict[str, list[str]]:
    return {path: sorted(method.upper() for method in item)
            for path, item in document["paths"].items()}


def resolve(document: dict[str, Any], ref: str) -> Any:
    """The target of a local `$ref` (a JSON pointer into the document)."""
    assert ref.startswith("#/"), ref
    target: Any = document
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def references(node: Any) -> list[str]:
    """Every `$ref` anywhere in `node`."""
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


def answer_schema(document: dict[str, Any], path: str, method: str, status: int
                  ) -> tuple[str, dict[str, Any]]:
    """The media type and schema documented for `method path` answering `status`."""
    response = document["paths"][path][method.lower()]["responses"][str(status)]
    if "$ref" in response:
        response = resolve(document, response["$ref"])
    ((media, content),) = response["content"].items()
    return media, content["schema"]


def check_answer(document: dict[str, Any], path: str, method: str,
                 response: httpx.Response) -> None:
    """`response` has the documented media type and fits the documented schema."""
    media, schema = answer_schema(document, path, method, response.status_code)
    assert media == response.headers["content-type"].split(";")[0]
    body = response.json() if media == "application/json" else response.text
    assert [] == schema_errors(document, schema, body), f"{method} {path} {response.status_code}"


def schema_errors(document: dict[str, Any], schema: dict[str, Any], value: Any) -> list[str]:
    """Where `value` does not fit `schema`, a schema of `document`."""
    # Local references resolve against the root, so the document's components ride along.
    validator = jsonschema_rs.Draft202012Validator({**schema,
                                                    "components": document["components"]})
    return [f"{list(error.instance_path)}: {error.message}"
            for error in validator.iter_errors(value)]


# --- paths and methods -----------------------------------------------------------------------


@pytest.mark.parametrize("metrics", [True, False], ids=["metrics", "no-metrics"])
@pytest.mark.parametrize("context_path", ["", CONTEXT], ids=["root", "context-path"])
async def test_document_lists_exactly_the_routes_served(clock: FakeClock, context_path: str,
                                                        metrics: bool) -> None:
    """Every path and method the app routes is in the document, and nothing else."""
    app = make_parts(clock, context_path=context_path, metrics=metrics).app

    document = await served_document(app)

    assert {path: sorted(route.methods) for path, route in app.routes.items()
            if not path.endswith("/*")} == documented_methods(document)  # prefix routes: docs
    assert (context_path + "/metrics" in document["paths"]) == metrics
    assert context_path + PATH in document["paths"]


def test_a_route_missing_from_the_table_makes_the_builder_raise() -> None:
    """A route without a declaration (api.endpoint.Endpoint) cannot be served undocumented."""
    routes = {"/health": Route(frozenset({"GET"})), "/api/new.json": Route(frozenset({"POST"}))}

    with pytest.raises(UndocumentedRoute, match=r"/api/new\.json"):
        openapi_document(routes, "")


def test_every_described_endpoint_is_a_route_of_some_node(clock: FakeClock) -> None:
    """The table describes no endpoint that a node with metrics on does not serve."""
    app = make_parts(clock, metrics=True).app

    assert sorted(p for p in app.routes if not p.endswith("/*")) == sorted(ENDPOINTS)


def test_each_route_serves_its_declaration(clock: FakeClock) -> None:
    """Each route a node serves has its declaration's methods, body reading and error payload
    (the answer type's fields but responseStatus, null or their non-null default)."""
    app = make_parts(clock, metrics=True).app

    assert {path: (sorted(e.methods), e.reads_body, e.null_fields)
            for path, e in ENDPOINTS.items()} == {
        path: (sorted(r.methods), r.reads_body, dict(r.null_fields))
        for path, r in app.routes.items() if not path.endswith("/*")}


def test_null_payloads_follow_the_wire_names_and_defaults() -> None:
    """An error payload has every field of the answer but responseStatus, by its wire name,
    null or the field's default (the original's Java primitives)."""
    assert {"checksum": None, "delta": None, "version": 0} == null_fields(
        wire.GetServicesDeltaResponse)
    assert {"down": False} == null_fields(wire.DownResponse)
    assert {} == null_fields(wire.StatusOnlyResponse)
    assert {} == null_fields(dict[str, Any])


def test_roles_are_declared_for_every_protected_family() -> None:
    """Management writes need the write role, its reads the read role, the admin switches the
    admin role on POST only, replication the peer role, config.json the read role; every other
    endpoint is open."""
    writes = ("operate", "insert-", "update-", "delete-", "create-", "release-")

    def expected(path: str) -> tuple[Role, list[str] | None]:
        if path.startswith("/api/management/"):
            name = path.rsplit("/", 1)[-1]
            return (Role.WRITE if any(w in name for w in writes) else Role.READ), None
        if path.startswith("/api/admin/"):
            return Role.ADMIN, ["POST"]
        if path.startswith("/api/replication/"):
            return Role.PEER, None
        if path == "/api/status/config.json":  # its database URL and settings: read role
            return Role.READ, None
        return Role.NONE, None

    assert {path: expected(path) for path in ENDPOINTS} == {
        path: (e.role, None if e.guarded is None else sorted(e.guarded))
        for path, e in ENDPOINTS.items()}


# --- validity --------------------------------------------------------------------------------


@pytest.mark.parametrize("context_path", ["", CONTEXT], ids=["root", "context-path"])
async def test_document_is_valid_openapi_3_1(make_api: MakeApi, context_path: str) -> None:
    """Schemathesis loads the document, it validates against the OpenAPI 3.1 meta-schema and
    yields one operation per route method."""
    api = await make_api(context_path=context_path)
    document = await fetch_document(api)

    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # raises on a document that is not OpenAPI 3.1

    assert "3.1.0" == document["openapi"]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(f"{m} {p}" for p, methods in documented_methods(document).items()
                  for m in methods) == sorted(f"{op.method.upper()} {op.path}"
                                              for op in operations)


async def test_every_reference_resolves(api: Api) -> None:
    """Every `$ref` of the document (schemas, shared answers) points at something in it."""
    document = await fetch_document(api)

    refs = references(document)

    assert refs
    assert [] == [ref for ref in refs if not isinstance(resolve(document, ref), dict)]


async def test_every_operation_documents_its_answers(api: Api) -> None:
    """Each operation has a summary, a 200 answer with a schema, and the 404/405 answers."""
    document = await fetch_document(api)

    incomplete = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if (not operation.get("summary") or not DOCUMENTED_ERRORS <= set(responses)
                    or (method != "head" and "schema" not in next(
                        iter(responses["200"]["content"].values())))):
                incomplete.append(f"{method} {path}")
    assert [] == incomplete


async def test_description_names_every_websocket_endpoint(clock: FakeClock) -> None:
    """The WebSocket endpoints, which are not operations, are in the document's description."""
    app = make_parts(clock, context_path=CONTEXT).app
    document = await served_document(app)

    described = document["info"]["description"]

    assert [] == [path for path in app.websockets if f"`{path}`" not in described]


def test_get_forms_document_the_query_parameters_read() -> None:
    """The GET forms list the query parameters their handlers read."""
    document = openapi_document({path: Route(frozenset({"GET"})) for path in ENDPOINTS}, "")

    def names(path: str) -> list[str]:
        return [p["name"] for p in document["paths"][path]["get"].get("parameters", [])]

    assert {
        "/api/discovery/service.json": ["serviceId", "regionId", "zoneId"],
        "/api/discovery/prometheus-sd.json": ["service"],
        "/api/status/leases.json": ["appIds"],
        "/api/status/legacy-leases.json": ["appIds"],
        "/api/status/runtime.json": ["window"],
        "/api/cluster/up-registry-nodes.json": ["regionId", "zoneId"],
        "/api/cluster/up-discovery-nodes.json": ["regionId", "zoneId"],
        "/api/replication/registry/services.json": ["regionId", "zoneId"],
        "/api/management/all-instance-operations.json": ["regionId"],
        "/api/management/all-server-operations.json": ["regionId"],
        "/api/management/services.json": ["regionId", "zoneId"],
        "/api/management/group/get-all-groups.json": ["regionId"],
        "/api/management/group/get-all-route-rules.json": ["regionId"],
        "/api/management/group/get-all-route-rule-groups.json": ["regionId"],
        "/api/management/group/get-all-group-tags.json": ["regionId"],
        "/api/management/group/get-all-group-operations.json": ["regionId"],
        "/api/management/zone/get-all-zone-operations.json": ["regionId"],
        "/api/console/services.json": ["prefix", "offset", "limit"],
        "/api/console/service.json": ["serviceId", "filter", "offset", "limit"],
    } == {path: names(path) for path in document["paths"] if names(path)}


# --- real answers fit the documented schemas --------------------------------------------------


# A meaningful body per POST endpoint (and services-delta's, set by the test); the others are
# sent `{}` (or nothing, when they read no body).
G = "/api/management/group/"
GROUP = {"serviceId": SERVICE, "regionId": REGION, "zoneId": ZONE, "name": "blue",
         "status": "active"}
RULE = {"serviceId": SERVICE, "name": "split", "status": "active"}
BODIES: dict[str, Any] = {
    "/api/registry/register.json": {"instances": [instance("10.0.0.6:8080")]},
    "/api/registry/heartbeat.json": {"instances": [instance(), instance("10.9.9.9:1")]},
    "/api/registry/unregister.json": {"instances": [instance("10.0.0.7:8080")]},
    "/api/discovery/lookup.json": {"discoveryConfigs": [{"serviceId": SERVICE},
                                                        {"serviceId": "nobody"}],
                                   "regionId": REGION, "zoneId": ZONE},
    "/api/discovery/service.json": {"discoveryConfig": {"serviceId": SERVICE}},
    "/api/status/leases.json": {"serviceIds": [SERVICE]},
    "/api/cluster/up-registry-nodes.json": {"regionId": REGION, "zoneId": ZONE},
    "/api/admin/self-preservation.json": {"enabled": False},
    "/api/replication/registry/register.json": {"instances": [instance("10.0.0.9:8080")]},
    "/api/replication/registry/heartbeat.json": {"instances": [instance("10.0.0.9:8080")]},
    "/api/replication/registry/unregister.json": {"instances": [instance("10.0.0.9:8080")]},
    "/api/replication/registry/services.json": {"regionId": REGION},
    "/api/replication/registry/checksums.json": {"regionId": REGION, "checksum": "0"},
    "/api/replication/registry/leases.json": {"regionId": REGION, "serviceIds": [SERVICE]},
    "/api/admin/node-status.json": {"status": "up"},
    "/api/management/operate-instance.json": {
        "instanceKey": {"regionId": REGION, "serviceId": SERVICE, "instanceId": "x"},
        "operation": "pull-out", "operationComplete": False, "operatorId": "ops"},
    "/api/management/operate-server.json": {
        "serverKey": {"regionId": REGION, "serverId": "10.9.9.9"},
        "operation": "pull-out", "operationComplete": False, "operatorId": "ops"},
    "/api/management/instance-operations.json": {
        "instanceKey": {"regionId": REGION, "serviceId": SERVICE, "instanceId": "x"}},
    "/api/management/server-operations.json": {
        "serverKey": {"regionId": REGION, "serverId": "10.9.9.9"}},
    "/api/management/instance-down.json": {"instance": instance()},
    "/api/management/service.json": {"regionId": REGION, "serviceId": SERVICE},
    "/api/management/group/insert-groups.json": {"groups": [GROUP], "operatorId": "ops"},
    "/api/management/group/update-groups.json": {"groups": [GROUP], "operatorId": "ops"},
    "/api/management/group/insert-route-rules.json": {"routeRules": [RULE], "operatorId": "ops"},
    "/api/management/group/update-route-rules.json": {"routeRules": [RULE], "operatorId": "ops"},
    "/api/management/group/create-route-rule.json": {
        "routeRule": RULE, "groups": [{**GROUP, "weight": 7}], "operatorId": "ops"},
    "/api/management/group/insert-route-rule-groups.json": {"routeRuleGroups": [
        {"routeRuleId": 1, "groupId": 1, "unreleasedWeight": 3}], "operatorId": "ops"},
    "/api/management/group/update-route-rule-groups.json": {"routeRuleGroups": [
        {"routeRuleId": 1, "groupId": 1, "unreleasedWeight": 4}], "operatorId": "ops"},
    "/api/management/group/release-route-rule-groups.json": {"routeRuleGroups": [
        {"routeRuleId": 1, "groupId": 1}], "operatorId": "ops"},
    "/api/management/group/delete-route-rule-groups.json": {
        "routeRuleGroupIds": [99], "operatorId": "ops"},
    "/api/management/group/delete-groups.json": {"groupIds": [99], "operatorId": "ops"},
    G + "insert-group-tags.json": {"groupTagsList": [{"groupId": 1, "tags": {"idc": "a"}}],
                                   "operatorId": "ops"},
    G + "update-group-tags.json": {"groupTagsList": [{"groupId": 1, "tags": {"idc": "b"}}],
                                   "operatorId": "ops"},
    G + "delete-group-tags.json": {"groupId": 1, "tag": "none", "operatorId": "ops"},
    G + "get-group-tags.json": {"groupId": 1},
    G + "insert-group-instances.json": {"groupInstances": [{"groupId": 1, "instanceId": "x"}],
                                        "operatorId": "ops"},
    G + "delete-group-instances.json": {"groupInstanceIds": [99], "operatorId": "ops"},
    G + "operate-group-operations.json": {
        "groupOperationsList": [{"groupId": 1, "operations": ["o"]}], "operatorId": "ops"},
    G + "operate-group-operation.json": {**GROUP, "operation": "o2", "operatorId": "ops"},
    G + "get-group-operations.json": {"groupId": 1},
    G + "insert-service-instances.json": {"serviceInstances": [
        {"serviceId": SERVICE, "instanceId": "logic", "url": "http://l/", "regionId": REGION}],
        "operatorId": "ops"},
    G + "delete-service-instances.json": {"serviceInstanceIds": [99], "operatorId": "ops"},
    "/api/management/canary/update-canary-ips.json": {
        "serviceId": SERVICE, "appId": "app", "canaryIps": ["x"], "operatorId": "ops"},
    "/api/management/group/delete-route-rules.json": {"routeRuleIds": [99], "operatorId": "ops"},
    "/api/management/server-down.json": {"serverKey": {"regionId": REGION, "serverId": "1.1.1.1"}},
    "/api/management/zone/operate-zone-operations.json": {
        "zoneOperationsList": [{"zoneKey": {"regionId": REGION, "serviceId": "other",
                                            "zoneId": "z9"}, "operations": ["pull-out"]}],
        "operationComplete": False, "operatorId": "ops"},
    "/api/management/zone/get-zone-operations.json": {
        "zoneKey": {"regionId": REGION, "serviceId": "other", "zoneId": "z9"}},
    "/api/management/zone/is-zone-down.json": {
        "zoneKey": {"regionId": REGION, "serviceId": "other", "zoneId": "z9"}},
}
PARAMS: dict[str, dict[str, str]] = {
    "/api/discovery/service.json": {"serviceId": SERVICE},
    "/api/status/leases.json": {"appIds": f"{SERVICE},nobody"},
    "/api/status/runtime.json": {"window": "5"},
    "/api/cluster/up-discovery-nodes.json": {"regionId": REGION, "zoneId": "zone-2"},
    "/api/replication/registry/services.json": {"regionId": REGION},
    "/api/console/service.json": {"serviceId": SERVICE},
}


@pytest.fixture
async def managed_peer(make_api: MakeApi, tmp_path: Any) -> AsyncIterator[Api]:
    """conftest's `managed` with a peer and the cluster secret, its client sending the secret
    too (so the peer-only endpoints answer)."""
    api = await make_api(**with_a_peer(database=f"sqlite:///{tmp_path}/management.db",
                                       admin_token=MANAGEMENT_TOKEN))
    management = api.parts.management
    assert management is not None
    await management.store.open()
    await management.reload()
    api.node.release("management")
    api.client.headers.update({"authorization": f"Bearer {MANAGEMENT_TOKEN}", **PEER_HEADERS})
    yield api
    await management.store.close()


async def test_every_operation_answers_as_documented(managed_peer: Api) -> None:
    """A request to each documented operation of a node holding an instance (with a management
    database, a token, a peer and the cluster secret) gets an answer of the documented media
    type that fits the documented schema."""
    seeded = managed_peer
    assert OK_BODY == await seeded.register(instance())
    first = await seeded.snapshot()
    await seeded.register(instance("10.0.0.8:8080"))
    await seeded.snapshot()
    bodies = {**BODIES, "/api/discovery/services-delta.json": {"version": first}}
    document = await fetch_document(seeded)

    not_success = {}
    for path, item in document["paths"].items():
        for method in item:
            if method == "get":
                response = await seeded.get(path, PARAMS.get(path))
            elif method == "post":
                body = bodies.get(path, {}) if "requestBody" in item[method] else None
                response = await seeded.post(path, body, content=None if body is not None
                                             else b"")
            else:
                continue  # HEAD answers carry no body to check
            check_answer(document, path, method, response)
            json_answer = response.headers["content-type"].startswith("application/json")
            answer = response.json() if json_answer else None  # /metrics, / (a redirect)
            status = answer.get("responseStatus") if isinstance(answer, dict) else None
            if status is not None and status["errorCode"] != "success":
                not_success[f"{method.upper()} {path}"] = status["errorCode"]

    # What the schemas were checked against are real answers, not refusals, except these:
    assert {"POST /api/registry/heartbeat.json": "partial_fail"} == not_success


NO_STATUS_CALLS: Final = {"rate_limits": {"status": 0, "status.get-leases": 0,
                                             "status.get-legacy-leases": 0}}


@pytest.mark.parametrize(("path", "params", "settings"), [
    ("/api/status/runtime.json", {"window": "soon"}, {}),
    ("/api/discovery/service.json", {}, {}),
    ("/api/discovery/service.json", {"serviceId": SERVICE, "regionId": "FRA"}, {}),
    ("/api/cluster/up-registry-nodes.json", {"zoneId": "zone-2"},
     {"allow_registry_from_other_zone": False}),
    ("/api/status/cluster.json", {}, NO_STATUS_CALLS),
    ("/api/status/leases.json", {}, NO_STATUS_CALLS),
    ("/api/status/legacy-leases.json", {}, NO_STATUS_CALLS),
    ("/api/status/config.json", {}, NO_STATUS_CALLS),
    ("/api/status/deployment.json", {}, NO_STATUS_CALLS),
], ids=lambda value: value if isinstance(value, str) else None)
async def test_failed_answers_fit_the_documented_schema(
        make_api: MakeApi, path: str, params: dict[str, str], settings: dict[str, Any]) -> None:
    """Refusals (bad-request, no-permission, data-not-found, rate-limited) keep the documented
    shape, with their payload fields null or zero."""
    api = await make_api(**settings)
    document = await fetch_document(api)

    response = await api.get(path, params)

    assert "fail" == response.json()["responseStatus"]["status"]
    check_answer(document, path, "GET", response)


async def test_delta_of_a_version_not_kept_fits_the_documented_schema(seeded: Api) -> None:
    """services-delta.json of an unknown version answers data-not-found in the documented shape."""
    document = await fetch_document(seeded)

    response = await seeded.post("/api/discovery/services-delta.json", {"version": 12345})

    assert "data-not-found" == response.json()["responseStatus"]["errorCode"]
    check_answer(document, "/api/discovery/services-delta.json", "POST", response)


async def test_health_of_a_starting_node_fits_the_documented_503(make_api: MakeApi) -> None:
    """/health of a node not serving answers 503 with the documented shape."""
    api = await make_api(up=False)
    document = await fetch_document(api)

    response = await api.get("/health")

    assert 503 == response.status_code
    check_answer(document, "/health", "GET", response)


async def test_partial_failure_fits_the_documented_schema(api: Api) -> None:
    """A heartbeat of an unknown instance (partial_fail with failedInstances) fits the schema."""
    document = await fetch_document(api)

    response = await api.post("/api/registry/heartbeat.json", {"instances": [instance()]})

    assert "partial_fail" == response.json()["responseStatus"]["status"]
    check_answer(document, "/api/registry/heartbeat.json", "POST", response)


@pytest.mark.parametrize(("method", "path", "answer", "status"), [
    ("GET", "/api/registry/register.json", "MethodNotAllowed", 405),
    ("POST", "/api/status/runtime.json", "MethodNotAllowed", 405),
    ("GET", "/api/nowhere.json", "NotFound", 404),
])
async def test_unknown_paths_and_wrong_methods_fit_the_shared_answers(
        api: Api, method: str, path: str, answer: str, status: int) -> None:
    """404 and 405 answers fit the document's shared NotFound and MethodNotAllowed."""
    document = await fetch_document(api)
    ((media, content),) = document["components"]["responses"][answer]["content"].items()

    response = await api.client.request(method, path)

    assert (status, media) == (response.status_code, response.headers["content-type"])
    assert [] == schema_errors(document, content["schema"], response.json())
