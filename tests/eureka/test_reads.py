"""The Eureka API's reads, in process: the full fetch (kept encoded), the delta of recent changes,
applications, instances and VIPs, in JSON or XML as Accept asks, with apps__hashcode, ETags and
gzip."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

from typing import Any

import pytest

from tests.eureka.harness import APP, ID, JSON, info, register, texts, xml
from tests.server.conftest import MakeApi
from tests.server.harness import Api
from tests.server.harness import instance as artemis_instance

WALL = 1_700_000_000_000  # the fake clock's wall time at the start


def eureka_shown(instance_id: str = ID, registered: int = WALL, renewed: int = WALL,
                 **changes: Any) -> dict[str, Any]:
    """`info()` as the node shows it back: the client's fields, the lease's timestamps."""
    host = instance_id.split(":")[0]
    shown = {
        "instanceId": instance_id, "hostName": host, "app": APP, "ipAddr": "10.0.0.5",
        "status": "UP", "overriddenStatus": "UNKNOWN", "overriddenstatus": "UNKNOWN",
        "port": {"$": 8080, "@enabled": "true"}, "securePort": {"$": 443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
                           "name": "MyOwn"},
        "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90,
                      "registrationTimestamp": registered, "lastRenewalTimestamp": renewed,
                      "evictionTimestamp": 0, "serviceUpTimestamp": registered},
        "metadata": {"owner": "team-a"}, "homePageUrl": f"http://{host}:8080/",
        "statusPageUrl": f"http://{host}:8080/info",
        "healthCheckUrl": f"http://{host}:8080/health",
        "vipAddress": "orders", "secureVipAddress": "orders",
        "isCoordinatingDiscoveryServer": "false", "lastUpdatedTimestamp": str(registered),
        "lastDirtyTimestamp": "1000", "actionType": "ADDED",
    }
    shown.update(changes)
    return shown


def apps(version: int, hashcode: str, *applications: tuple[str, list[Any]]) -> dict[str, Any]:
    return {"applications": {"versions__delta": str(version), "apps__hashcode": hashcode,
                             "application": [{"name": name, "instance": instances}
                                             for name, instances in applications]}}


async def get_json(api: Api, path: str, **params: str) -> Any:
    response = await api.client.get(path, params=params, headers=JSON)
    assert (200, "application/json") == (response.status_code, response.headers["content-type"])
    return response.json()


async def test_full_fetch_in_json(api: Api) -> None:
    """GET /eureka/apps with Accept json: every application, versions__delta (the registry's
    revision) and apps__hashcode of every instance."""
    await register(api)
    await register(api, info("web-2:orders:8080"))

    assert apps(2, "UP_2_", (APP, [eureka_shown(), eureka_shown("web-2:orders:8080")])) == (
        await get_json(api, "/eureka/apps"))


async def test_full_fetch_is_xml_unless_json_is_asked(api: Api) -> None:
    """Without Accept (as py-eureka-client asks) the answer is Eureka's XML."""
    await register(api)

    root = xml(await api.client.get("/eureka/apps/"))

    assert (["1"], ["UP_1_"], [APP], [ID], ["8080"], ["true"]) == (
        texts(root, "versions__delta"), texts(root, "apps__hashcode"),
        texts(root, "application/name"), texts(root, "application/instance/instanceId"),
        texts(root, "application/instance/port"),
        [e.attrib["enabled"] for e in root.iterfind("application/instance/port")])


async def test_an_empty_registry(api: Api) -> None:
    """No instance: no application and an empty hashcode."""
    assert apps(0, "") == await get_json(api, "/eureka/apps")


async def test_artemis_and_eureka_instances_are_one_registry(api: Api) -> None:
    """An instance registered through the Artemis API is in /eureka/apps beside the Eureka
    ones, with its own status in the hashcode."""
    await register(api)
    await api.register(artemis_instance(status="down"))

    answer = await get_json(api, "/eureka/apps")

    assert ("DOWN_1_UP_1_", [APP, "DEMO.SERVICE.V1"], "DOWN") == (
        answer["applications"]["apps__hashcode"],
        [a["name"] for a in answer["applications"]["application"]],
        answer["applications"]["application"][1]["instance"][0]["status"])


async def test_the_full_fetch_is_served_from_kept_bytes(api: Api) -> None:
    """A second fetch is the kept answer itself (same bytes, same ETag); a change is seen once
    snapshot_interval has passed, with a new ETag."""
    views = api.parts.app.routes["/eureka/*"].async_handler.__self__.views  # type: ignore[union-attr]
    await register(api)
    first = await api.client.get("/eureka/apps", headers=JSON)
    kept = views._full[True]
    second = await api.client.get("/eureka/apps", headers=JSON)
    again = views._full[True]
    await register(api, info("web-2:orders:8080"))
    within = await api.client.get("/eureka/apps", headers=JSON)
    api.clock.advance(1.0)
    after = await api.client.get("/eureka/apps", headers=JSON)

    assert (kept, first.headers["etag"], first.content) == (
        again, second.headers["etag"], second.content)
    assert ([1, 1, 2], True) == (
        [len(r.json()["applications"]["application"][0]["instance"])
         for r in (first, within, after)],
        after.headers["etag"] != first.headers["etag"])


async def test_an_unchanged_answer_is_304(api: Api) -> None:
    """If-None-Match with the answer's ETag: 304 and no body."""
    await register(api)
    etag = (await api.client.get("/eureka/apps", headers=JSON)).headers["etag"]

    response = await api.client.get("/eureka/apps", headers={**JSON, "if-none-match": etag})

    assert (304, b"", etag) == (response.status_code, response.content,
                                response.headers["etag"])


@pytest.mark.parametrize("accept", ["application/json", "application/xml"])
async def test_large_answers_are_gzipped(make_api: MakeApi, accept: str) -> None:
    """JSON and XML answers are gzipped for a client that accepts it."""
    api = await make_api(gzip_min_bytes=0)
    await register(api)

    response = await api.client.get("/eureka/apps", headers={"accept": accept,
                                                              "accept-encoding": "gzip"})

    assert (200, "gzip", True) == (response.status_code, response.headers["content-encoding"],
                                   ID in response.text)


async def test_one_application(api: Api) -> None:
    """GET /eureka/apps/APP (any case): its instances; an unknown one is 404."""
    await register(api)

    assert ({"application": {"name": APP, "instance": [eureka_shown()]}}, 404) == (
        await get_json(api, "/eureka/apps/orders"),
        (await api.client.get("/eureka/apps/BILLING")).status_code)


async def test_one_instance_by_app_and_by_id(api: Api) -> None:
    """GET /eureka/apps/APP/ID and /eureka/instances/ID: the instance; unknown ones 404."""
    await register(api)

    assert ({"instance": eureka_shown()}, {"instance": eureka_shown()}, 404, 404) == (
        await get_json(api, f"/eureka/apps/{APP}/{ID}"),
        await get_json(api, f"/eureka/instances/{ID}"),
        (await api.client.get(f"/eureka/apps/{APP}/nobody")).status_code,
        (await api.client.get("/eureka/instances/nobody")).status_code)


async def test_vips_and_secure_vips(api: Api) -> None:
    """GET /eureka/vips/VIP and /eureka/svips/SVIP: the applications of the instances with that
    address (case-insensitive; an Artemis instance's is its serviceId), with their own
    hashcode; an unknown VIP is an empty answer."""
    await register(api)
    await register(api, info("web-2:orders:8080", vipAddress="orders-v2",
                             secureVipAddress="secure-orders"))
    await api.register(artemis_instance())

    vip = await get_json(api, "/eureka/vips/ORDERS")
    svip = await get_json(api, "/eureka/svips/secure-orders")
    artemis = await get_json(api, "/eureka/vips/demo.service.v1")
    nobody = await get_json(api, "/eureka/vips/nobody")

    assert ([ID], ["web-2:orders:8080"], ["10.0.0.5:8080"], "UP_1_", apps(3, "")) == (
        [i["instanceId"] for i in vip["applications"]["application"][0]["instance"]],
        [i["instanceId"] for i in svip["applications"]["application"][0]["instance"]],
        [i["instanceId"] for i in artemis["applications"]["application"][0]["instance"]],
        vip["applications"]["apps__hashcode"], nobody)


async def test_the_delta_folds_recent_changes(api: Api) -> None:
    """GET /eureka/apps/delta: each instance changed in the window with its last change,
    ADDED, MODIFIED or DELETED, and the hashcode of the whole registry."""
    await register(api, info("web-1:orders:8080"))
    await register(api, info("web-2:orders:8080"))
    await register(api, info("web-3:orders:8080"))
    api.clock.advance(5)
    await api.client.put(f"/eureka/apps/{APP}/web-2:orders:8080/status",
                         params={"value": "OUT_OF_SERVICE"})
    await api.client.delete(f"/eureka/apps/{APP}/web-3:orders:8080")

    delta = await get_json(api, "/eureka/apps/delta")

    later = WALL + 5000
    assert apps(5, "OUT_OF_SERVICE_1_UP_1_", (APP, [
        eureka_shown("web-1:orders:8080"),
        eureka_shown("web-2:orders:8080", registered=later, renewed=later,
                     status="OUT_OF_SERVICE", overriddenStatus="OUT_OF_SERVICE",
                     overriddenstatus="OUT_OF_SERVICE", actionType="ADDED",
                     leaseInfo={"renewalIntervalInSecs": 30, "durationInSecs": 90,
                                "registrationTimestamp": later, "lastRenewalTimestamp": later,
                                "evictionTimestamp": 0, "serviceUpTimestamp": 0}),
        eureka_shown("web-3:orders:8080", registered=later, renewed=later,
                     actionType="DELETED"),
    ])) == delta


async def test_the_delta_marks_changes_of_instances_held_before_the_window(api: Api) -> None:
    """An instance registered before the window and changed in it is MODIFIED; changes older
    than eureka_delta_window have left the delta."""
    await register(api, info(leaseInfo={"durationInSecs": 300}))
    api.clock.advance(200)
    await api.client.put(f"/eureka/apps/{APP}/{ID}/metadata", params={"color": "blue"})

    delta = await get_json(api, "/eureka/apps/delta")

    assert [("MODIFIED", "blue")] == [
        (i["actionType"], i["metadata"]["color"])
        for i in delta["applications"]["application"][0]["instance"]]


async def test_no_delta_when_the_log_no_longer_reaches_back(make_api: MakeApi) -> None:
    """A change log that let changes of the window go answers 403: clients fetch everything."""
    api = await make_api(change_log_size=1000)
    await api.register(*(artemis_instance(f"10.0.{i // 250}.{i % 250}:80") for i in range(1001)))

    response = await api.client.get("/eureka/apps/delta", headers=JSON)

    assert 403 == response.status_code


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("POST", f"/eureka/apps/{APP}/{ID}", "DELETE, GET, PUT"),
    ("DELETE", f"/eureka/apps/{APP}", "GET, POST"),
    ("PUT", "/eureka/instances/x", "GET"),
    ("POST", f"/eureka/apps/{APP}/{ID}/metadata", "PUT"),
])
async def test_a_wrong_method_is_405_with_allow(api: Api, method: str, path: str,
                                                allow: str) -> None:
    response = await api.client.request(method, path)

    assert (405, allow) == (response.status_code, response.headers["allow"])


@pytest.mark.parametrize("path", ["/eureka/", "/eureka/nothing", f"/eureka/apps/{APP}/{ID}/x",
                                  "/eureka/vips", "/eureka/apps/a/b/c/d/e"])
async def test_an_unknown_path_is_404(api: Api, path: str) -> None:
    assert 404 == (await api.client.get(path)).status_code


async def test_reads_are_held_to_the_discovery_limit(make_api: MakeApi) -> None:
    """Past the caller's discovery limit a read is 429."""
    api = await make_api(rate_limits_per_client={"discovery": 1})

    assert [200, 429] == [(await api.client.get("/eureka/apps")).status_code
                          for _ in range(2)]
