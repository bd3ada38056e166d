"""Lookup, service, services and services-delta over HTTP: the answers of §4.2 and Appendix A."""

from __future__ import annotations

import pytest

from tests.server.conftest import MakeApi
from tests.server.harness import (
    DELTA,
    LOOKUP,
    OK_BODY,
    REGION,
    SERVICE,
    SERVICE_PATH,
    SERVICES,
    SUCCESS,
    ZONE,
    Api,
    change,
    checksum,
    fail,
    instance,
    lookup_answer,
    service,
)

START_MS = 1_700_000_000_000  # FakeClock's wall time when a test's node is built
NOT_FOUND = {"checksum": None, "delta": None,
             "responseStatus": fail("data-not-found", "Delta is not found."), "version": 0}
EMPTY_CHECKSUM = "0000000000000000"


def config(service_id: str = SERVICE) -> dict[str, object]:
    return {"discoveryData": None, "regionId": None, "serviceId": service_id, "zoneId": None}


def services_answer(version: int, *services: dict[str, object]) -> dict[str, object]:
    instances = [i for s in services for i in s["instances"]]  # type: ignore[attr-defined]
    return {"checksum": checksum(*instances), "responseStatus": SUCCESS,
            "services": list(services), "version": version}


# --- lookup ----------------------------------------------------------------------------------


async def test_lookup_answers_the_registered_service(seeded: Api) -> None:
    """lookup.json answers Appendix A's shape: instances, empty logicInstances and routeRules."""
    response = await seeded.post(LOOKUP, {"discoveryConfigs": [config()], "regionId": REGION,
                                          "zoneId": ZONE})

    assert 200 == response.status_code
    assert lookup_answer(service(SERVICE, instance())) == response.json()


async def test_lookup_of_unknown_service_is_an_empty_service(seeded: Api) -> None:
    """A service nobody registered is answered with no instances, in the asked order."""
    assert lookup_answer(service("nobody.here"), service(SERVICE, instance())) == (
        await seeded.lookup("nobody.here", SERVICE))


async def test_lookup_ignores_case_and_echoes_the_asked_id(seeded: Api) -> None:
    """A service is found whatever the case it is asked in; the answer names it as asked."""
    assert lookup_answer(service("DEMO.Service.V1", instance())) == await seeded.lookup(
        "DEMO.Service.V1")


async def test_lookup_skips_blank_and_null_configs(seeded: Api) -> None:
    """Null configs and blank serviceIds are skipped (§4.2)."""
    body = {"discoveryConfigs": [None, config(""), config("  "), config()],
            "regionId": REGION, "zoneId": ZONE}

    assert lookup_answer(service(SERVICE, instance())) == await seeded.call(LOOKUP, body)


@pytest.mark.parametrize("configs", [None, []])
async def test_lookup_without_configs_is_bad_request(seeded: Api, configs: object) -> None:
    """No discoveryConfigs answers `bad-request` with null services."""
    body = {"discoveryConfigs": configs, "regionId": REGION, "zoneId": ZONE}

    assert {"responseStatus": fail("bad-request",
                                   "Request is null or request.discoveryConfigs is empty."),
            "services": None} == await seeded.call(LOOKUP, body)


async def test_lookup_from_another_region_is_no_permission(seeded: Api) -> None:
    """A lookup naming another region is refused `no-permission` (this port does not swallow it
    as quirk 3 does)."""
    body = {"discoveryConfigs": [config()], "regionId": "FRA", "zoneId": ZONE}

    assert {"responseStatus": fail("no-permission",
                                   "regionId is not the same as the discovery node. "
                                   "regionId: FRA, discovery node.regionId: SHA"),
            "services": None} == await seeded.call(LOOKUP, body)


async def test_lookup_from_another_zone_refused_when_not_allowed(make_api: MakeApi) -> None:
    """With allow_discovery_from_other_zone off, a lookup from zone-2 is `no-permission`."""
    api = await make_api(allow_discovery_from_other_zone=False)
    body = {"discoveryConfigs": [config()], "regionId": REGION, "zoneId": "zone-2"}

    assert {"responseStatus": fail("no-permission",
                                   "zoneId is not the same as the discovery node. "
                                   "zoneId: zone-2, discovery node.zoneId: zone-1"),
            "services": None} == await api.call(LOOKUP, body)


async def test_lookup_from_another_zone_allowed_by_default(seeded: Api) -> None:
    """By default a lookup from another zone of the region is answered."""
    body = {"discoveryConfigs": [config()], "regionId": "sha", "zoneId": "zone-2"}

    assert lookup_answer(service(SERVICE, instance())) == await seeded.call(LOOKUP, body)


# --- service ---------------------------------------------------------------------------------


async def test_service_answers_service_and_checksum(seeded: Api) -> None:
    """service.json answers the service plus our `checksum` of its instances."""
    body = {"discoveryConfig": config(), "regionId": REGION, "zoneId": ZONE}

    assert {"checksum": checksum(instance()), "responseStatus": SUCCESS,
            "service": service(SERVICE, instance())} == await seeded.call(SERVICE_PATH, body)


async def test_service_get_form(seeded: Api) -> None:
    """GET service.json?serviceId=&regionId=&zoneId= answers as the POST form."""
    response = await seeded.get(SERVICE_PATH, {"serviceId": SERVICE, "regionId": REGION,
                                               "zoneId": ZONE})

    assert 200 == response.status_code
    assert {"checksum": checksum(instance()), "responseStatus": SUCCESS,
            "service": service(SERVICE, instance())} == response.json()


async def test_service_get_without_region_means_this_node(seeded: Api) -> None:
    """GET service.json without regionId is answered for this node's region (quirk 16 fixed)."""
    response = await seeded.get(SERVICE_PATH, {"serviceId": SERVICE})

    assert {"checksum": checksum(instance()), "responseStatus": SUCCESS,
            "service": service(SERVICE, instance())} == response.json()


async def test_service_of_unknown_service(seeded: Api) -> None:
    """An unknown service answers an empty service and the checksum of nothing."""
    body = {"discoveryConfig": config("nobody.here"), "regionId": REGION, "zoneId": ZONE}

    assert {"checksum": EMPTY_CHECKSUM, "responseStatus": SUCCESS,
            "service": service("nobody.here")} == await seeded.call(SERVICE_PATH, body)


@pytest.mark.parametrize("discovery_config", [None, {"serviceId": None}, {"serviceId": " "}])
async def test_service_without_service_id_is_bad_request(seeded: Api,
                                                         discovery_config: object) -> None:
    """A missing config or serviceId answers `bad-request` with null checksum and service."""
    body = {"discoveryConfig": discovery_config, "regionId": REGION, "zoneId": ZONE}

    assert {"checksum": None,
            "responseStatus": fail("bad-request",
                                   "Request is null or request.discoveryConfig is null."),
            "service": None} == await seeded.call(SERVICE_PATH, body)


async def test_service_from_another_region_is_no_permission(seeded: Api) -> None:
    """service.json naming another region answers `no-permission`."""
    body = {"discoveryConfig": config(), "regionId": "FRA", "zoneId": ZONE}

    assert {"checksum": None,
            "responseStatus": fail("no-permission",
                                   "regionId is not the same as the discovery node. "
                                   "regionId: FRA, discovery node.regionId: SHA"),
            "service": None} == await seeded.call(SERVICE_PATH, body)


# --- services --------------------------------------------------------------------------------


async def test_services_before_any_snapshot_is_the_start_state(seeded: Api) -> None:
    """services.json answers the snapshot taken when the node started: empty, version = then."""
    assert services_answer(START_MS) == await seeded.call(SERVICES, {"regionId": REGION,
                                                                     "zoneId": ZONE})


async def test_services_after_a_snapshot(seeded: Api) -> None:
    """After a snapshot services.json lists every service with its instances and version."""
    version = await seeded.snapshot()

    assert START_MS + 1000 == version
    assert services_answer(version, service(SERVICE, instance())) == await seeded.call(
        SERVICES, {"regionId": REGION, "zoneId": ZONE})


async def test_services_get_form(seeded: Api) -> None:
    """GET services.json answers as the POST form."""
    version = await seeded.snapshot()

    response = await seeded.get(SERVICES, {"regionId": REGION, "zoneId": ZONE})

    assert 200 == response.status_code
    assert services_answer(version, service(SERVICE, instance())) == response.json()


async def test_services_omits_services_without_instances(seeded: Api) -> None:
    """A service whose last instance left is no longer listed."""
    other = instance("10.0.0.7:80", serviceId="other.service")
    assert OK_BODY == await seeded.register(other)
    await seeded.snapshot()
    assert OK_BODY == await seeded.unregister(instance())

    version = await seeded.snapshot()

    assert services_answer(version, service("other.service", other)) == await seeded.call(
        SERVICES)


async def test_services_snapshot_only_after_a_change(seeded: Api) -> None:
    """Without a change no new snapshot (and no new version) is taken."""
    version = await seeded.snapshot()

    assert version == await seeded.snapshot()


# --- services-delta --------------------------------------------------------------------------


async def test_delta_from_a_kept_version_lists_new_delete_change(api: Api) -> None:
    """From a kept version the delta holds `new`, `delete` and `change` per instance (§4.2);
    the answer's version and checksum are the newest snapshot's."""
    a, b, c = (instance(f"10.0.0.{n}:8080") for n in (1, 2, 3))
    assert OK_BODY == await api.register(a, b)
    v1 = await api.snapshot()
    changed_at = api.clock.wall_ms()
    b_moved = {**b, "port": 9090}
    assert OK_BODY == await api.register(c)
    assert OK_BODY == await api.unregister(a)
    assert OK_BODY == await api.register(b_moved)
    v2 = await api.snapshot()

    assert {"checksum": checksum(b_moved, c),
            "delta": {SERVICE: [change("new", changed_at, c),
                                change("delete", changed_at, a),
                                change("change", changed_at, b_moved)]},
            "responseStatus": SUCCESS,
            "version": v2} == await api.call(DELTA, {"regionId": REGION, "version": v1,
                                                     "zoneId": ZONE})
    assert services_answer(v2, service(SERVICE, b_moved, c)) == await api.call(SERVICES)


async def test_delta_folds_changes_that_cancel_out(api: Api) -> None:
    """An instance that came and went between two versions is not in the delta; one registered
    again with the same data is not either."""
    a, b = instance("10.0.0.1:8080"), instance("10.0.0.2:8080")
    assert OK_BODY == await api.register(a)
    v1 = await api.snapshot()
    assert OK_BODY == await api.register(b)
    assert OK_BODY == await api.unregister(b)
    assert OK_BODY == await api.register(a)
    v2 = await api.snapshot()

    assert {"checksum": checksum(a), "delta": {}, "responseStatus": SUCCESS,
            "version": v2} == await api.call(DELTA, {"version": v1})


async def test_delta_from_the_start_version(seeded: Api) -> None:
    """The version of the start snapshot is kept, so a delta from it lists the registration."""
    version = await seeded.snapshot()

    assert {"checksum": checksum(instance()),
            "delta": {SERVICE: [change("new", START_MS, instance())]},
            "responseStatus": SUCCESS,
            "version": version} == await seeded.call(DELTA, {"version": START_MS})


async def test_delta_from_unknown_version_is_data_not_found(seeded: Api) -> None:
    """A version that was never a snapshot answers exactly Appendix A's not-found body."""
    await seeded.snapshot()

    response = await seeded.post(DELTA, {"regionId": REGION, "version": 12345, "zoneId": ZONE})

    assert (200, b'{"checksum":null,"delta":null,"responseStatus":{"errorCode":"data-not-found",'
                 b'"message":"Delta is not found.","status":"fail"},"version":0}') == (
        response.status_code, response.content)


async def test_delta_from_an_evicted_version_is_data_not_found(make_api: MakeApi) -> None:
    """With 2 snapshots kept, the third-newest version has no delta any more."""
    api = await make_api(snapshot_count=2)
    for n in range(1, 4):
        assert OK_BODY == await api.register(instance(f"10.0.0.{n}:80"))
        await api.snapshot()

    assert NOT_FOUND == await api.call(DELTA, {"version": START_MS + 1000})


async def test_delta_from_the_newest_version_is_empty(seeded: Api) -> None:
    """From the newest version the delta is empty and successful (the original's quirk 7 could
    not tell this from an expired version)."""
    version = await seeded.snapshot()

    assert {"checksum": checksum(instance()), "delta": {}, "responseStatus": SUCCESS,
            "version": version} == await seeded.call(DELTA, {"version": version})


async def test_delta_names_the_service_as_registered(api: Api) -> None:
    """Delta keys are the serviceId as first registered, not lower-cased."""
    named = instance(serviceId="Demo.Service")
    assert OK_BODY == await api.register(named)
    version = await api.snapshot()

    assert {"checksum": checksum(named), "delta": {"Demo.Service": [
        change("new", START_MS, named)]}, "responseStatus": SUCCESS,
        "version": version} == await api.call(DELTA, {"version": START_MS})


# --- a node that is not up -------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body", "nulls"), [
    (LOOKUP, {"discoveryConfigs": [config()], "regionId": REGION}, {"services": None}),
    (SERVICE_PATH, {"discoveryConfig": config(), "regionId": REGION},
     {"checksum": None, "service": None}),
    (SERVICES, {}, {"checksum": None, "services": None, "version": 0}),
    (DELTA, {"version": START_MS}, {"checksum": None, "delta": None, "version": 0}),
])
async def test_discovery_on_a_node_not_up_is_service_unavailable(
        make_api: MakeApi, path: str, body: dict[str, object], nulls: dict[str, object]) -> None:
    """A `starting` node answers every discovery endpoint `service-unavailable`, payload null."""
    api = await make_api(up=False)

    assert {**nulls, "responseStatus": fail(
        "service-unavailable", "Service discovery is not in up state. Current status: starting",
    )} == await api.call(path, body)
