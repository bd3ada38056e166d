"""The Eureka API's writes, in process: register, renew, cancel, status overrides and metadata,
with the status codes Eureka clients act on and the node's trust model."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from artemis import wire
from tests.eureka.harness import APP, ID, info, info_xml, register
from tests.server.conftest import MakeApi
from tests.server.harness import Api
from tests.server.harness import instance as artemis_instance

TOKEN = "orders-writer-secret-0123456789"  # noqa: S105 - a test secret
PATH = f"/eureka/apps/{APP}/{ID}"


def held(api: Api, instance_id: str = ID) -> wire.Instance | None:
    """The instance the registry holds for ORDERS/`instance_id`."""
    state = api.node.registry.service(APP)
    lease = None if state is None else state.leases.get(instance_id.lower())
    return None if lease is None else lease.instance


def answer(response: Any) -> tuple[int, str]:
    return response.status_code, response.text


async def test_register_is_204_and_holds_the_instance(api: Api) -> None:
    """POST /eureka/apps/APP answers 204 with no body; the registry holds the instance."""
    response = await register(api)

    assert ((204, ""), "up", 90.0) == (
        answer(response), held(api).status,  # type: ignore[union-attr]
        api.node.registry.service(APP).leases[ID].ttl)  # type: ignore[union-attr]


async def test_register_in_xml(api: Api) -> None:
    """An XStream <instance> body registers as its JSON form does."""
    response = await api.client.post(f"/eureka/apps/{APP}", content=info_xml(),
                                     headers={"content-type": "application/xml"})

    assert (204, "up", "team-a") == (response.status_code, held(api).status,  # type: ignore[union-attr]
                                     (held(api).metadata or {})["owner"])  # type: ignore[union-attr]


async def test_register_through_the_v2_path_and_a_context_path(make_api: MakeApi) -> None:
    """/eureka/v2/apps/APP (Netflix's path) under the node's context path works the same."""
    api = await make_api(context_path="/artemis-web")

    response = await api.client.post(f"/artemis-web/eureka/v2/apps/{APP}",
                                     json={"instance": info()})

    assert (204, ID) == (response.status_code, held(api).instance_id)  # type: ignore[union-attr]


async def test_a_mismatched_app_is_400_and_changes_nothing(api: Api) -> None:
    """The path's app must be the body's (compared upper-case), as Eureka checks."""
    response = await register(api, info(app="billing"))

    assert ((400, "Mismatched appName, expecting ORDERS but was BILLING"), 0) == (
        answer(response), api.node.registry.revision)


async def test_renew_is_200_and_renews_the_lease(api: Api) -> None:
    """PUT /eureka/apps/APP/ID renews the lease: alive after 60 s more of a 90 s lease."""
    await register(api)
    api.clock.advance(60)

    response = await api.client.put(PATH, params={"status": "UP", "lastDirtyTimestamp": "1000"})
    api.sweep(60)

    assert ((200, ""), ID) == (answer(response), held(api).instance_id)  # type: ignore[union-attr]


@pytest.mark.parametrize("query", [
    {"status": "UP"}, {"status": "UP", "lastDirtyTimestamp": "2000"},
], ids=["unknown", "newer-data"])
async def test_renew_of_what_must_be_registered_again_is_404(api: Api,
                                                             query: dict[str, str]) -> None:
    """An instance not held, or a client holding newer data (lastDirtyTimestamp), gets 404:
    the Eureka client registers again."""
    if "lastDirtyTimestamp" in query:
        await register(api)

    response = await api.client.put(PATH, params=query)

    assert 404 == response.status_code


async def test_renew_after_expiry_is_404(api: Api) -> None:
    """The 90 s lease the client stated is gone after 91 s without a renewal."""
    await register(api)
    api.sweep(91)

    assert (404, None) == ((await api.client.put(PATH)).status_code, held(api))


async def test_an_older_registration_keeps_the_newer_data(api: Api) -> None:
    """A register with an older lastDirtyTimestamp than the lease's renews it and keeps its
    data, as Eureka's registry does."""
    await register(api, info(metadata={"v": "2"}, lastDirtyTimestamp="2000"))

    response = await register(api, info(metadata={"v": "1"}, lastDirtyTimestamp="1500"))

    assert (204, "2") == (response.status_code,
                          (held(api).metadata or {})["v"])  # type: ignore[union-attr]


async def test_cancel_is_200_then_404(api: Api) -> None:
    """DELETE removes the lease at once; a second one finds nothing."""
    await register(api)

    first, second = await api.client.delete(PATH), await api.client.delete(PATH)

    assert ((200, 404), None) == ((first.status_code, second.status_code), held(api))


async def test_a_status_override_and_its_removal(api: Api) -> None:
    """PUT .../status?value=OUT_OF_SERVICE overrides the status through renewals and
    re-registrations; DELETE .../status removes it, the status becomes the value given (UNKNOWN
    when none, which a renewal answers 404 so the client registers its own status again)."""
    await register(api)

    put = await api.client.put(f"{PATH}/status", params={"value": "OUT_OF_SERVICE"})
    renewed = await api.client.put(PATH)
    again = await register(api)
    overridden = held(api)
    removed = await api.client.delete(f"{PATH}/status")
    unknown = held(api)
    renew_unknown = await api.client.put(PATH)
    await register(api)

    assert ([200, 200, 204, 200, 404], "out_of_service", "OUT_OF_SERVICE", "unknown",
            "up") == (
        [r.status_code for r in (put, renewed, again, removed, renew_unknown)],
        overridden.status, (overridden.metadata or {})["eureka.overriddenStatus"],  # type: ignore[union-attr]
        unknown.status, held(api).status)  # type: ignore[union-attr]


async def test_removing_an_override_to_a_value(api: Api) -> None:
    """DELETE .../status?value=UP puts the instance back UP at once."""
    await register(api)
    await api.client.put(f"{PATH}/status", params={"value": "OUT_OF_SERVICE"})

    response = await api.client.delete(f"{PATH}/status", params={"value": "UP"})

    assert (200, "up", None) == (response.status_code, held(api).status,  # type: ignore[union-attr]
                                 (held(api).metadata or {}).get(  # type: ignore[union-attr]
                                     "eureka.overriddenStatus"))


@pytest.mark.parametrize(("method", "query", "status"), [
    ("PUT", {"value": "SIDEWAYS"}, 400), ("PUT", {}, 400), ("DELETE", {"value": "NOPE"}, 400),
])
async def test_an_unknown_status_value_is_400(api: Api, method: str, query: dict[str, str],
                                             status: int) -> None:
    await register(api)
    before = api.node.registry.revision

    response = await api.client.request(method, f"{PATH}/status", params=query)

    assert (status, before) == (response.status_code, api.node.registry.revision)


async def test_overrides_and_metadata_of_an_unknown_instance_are_404(api: Api) -> None:
    assert [404, 404, 404] == [
        (await api.client.request(method, f"{PATH}/{what}", params={"value": "UP"})).status_code
        for method, what in (("PUT", "status"), ("DELETE", "status"), ("PUT", "metadata"))]


async def test_metadata_updates(api: Api) -> None:
    """PUT .../metadata?k=v sets entries (the first of a repeated key), keeps the others; a
    key of the mapping is refused."""
    await register(api)

    response = await api.client.put(f"{PATH}/metadata?color=blue&color=red&owner=team-b")
    refused = await api.client.put(f"{PATH}/metadata", params={"eureka.port": "1"})

    meta = held(api).metadata or {}  # type: ignore[union-attr]
    assert ((200, ""), "blue", "team-b", 400, "8080") == (
        answer(response), meta["color"], meta["owner"], refused.status_code,
        meta["eureka.port"])


async def test_an_artemis_instance_cannot_be_changed_through_eureka(api: Api) -> None:
    """Its data is what its client heartbeats: overrides and metadata are 409, nothing
    changes; renew and cancel work as for any instance."""
    await api.register(artemis_instance())
    before = api.node.registry.revision
    path = "/eureka/apps/demo.service.v1/10.0.0.5:8080"

    answers = [(await api.client.put(f"{path}/status", params={"value": "DOWN"})).status_code,
               (await api.client.put(f"{path}/metadata", params={"a": "b"})).status_code]

    assert ([409, 409], before) == (answers, api.node.registry.revision)


# --- the node's trust model ------------------------------------------------------------------


async def test_token_mode_needs_a_token_basic_or_bearer(make_api: MakeApi) -> None:
    """registration_mode token: no token is 403; the token as a bearer, or as the password of
    Basic auth (a `user:password@` service URL), registers; a token scoped to other services
    is 403."""
    api = await make_api(registration_mode="token",
                         tokens=f"orders:register=orders:{TOKEN},"
                                f"other:register=billing:{TOKEN[::-1]}")
    basic = base64.b64encode(f"eureka:{TOKEN}".encode()).decode()

    statuses = [
        (await register(api)).status_code,
        (await register(api, authorization=f"Bearer {TOKEN[::-1]}")).status_code,
        (await register(api, authorization=f"Basic {basic}")).status_code,
        (await api.client.put(PATH, headers={"authorization": f"Bearer {TOKEN}"})).status_code,
        (await api.client.put(PATH)).status_code,
    ]

    assert [403, 403, 204, 200, 403] == statuses


async def test_another_writer_cannot_replace_or_cancel_a_live_instance(api: Api) -> None:
    """Ownership (open mode): another address registering other data, or cancelling, is 403;
    the owner's data stays."""
    await register(api)
    transport = httpx.ASGITransport(app=api.parts.app, client=("10.9.9.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        other = Api(api.parts, api.clock, client)

        replaced = await register(other, info(metadata={"owner": "intruder"}))
        cancelled = await client.delete(PATH)

    assert (403, 403, "team-a") == (replaced.status_code, cancelled.status_code,
                                    (held(api).metadata or {})["owner"])  # type: ignore[union-attr]


async def test_rate_limits_and_caps_are_429(make_api: MakeApi) -> None:
    """Past the registry limit a write is 429; past max_instances a new instance is 429."""
    limited = await make_api(rate_limits={"registry.register": 1})
    capped = await make_api(max_instances=1)

    assert ([204, 429], [204, 429]) == (
        [(await register(limited, info(f"h{i}:o:1"))).status_code for i in range(2)],
        [(await register(capped, info(f"h{i}:o:1"))).status_code for i in range(2)])


async def test_control_characters_are_400(api: Api) -> None:
    """The registry's checks apply: a control character in metadata is refused."""
    response = await register(api, info(metadata={"note": "a\x1bb"}))

    assert (400, 0) == (response.status_code, api.node.registry.revision)


async def test_a_node_not_serving_is_503(make_api: MakeApi) -> None:
    """A starting node refuses writes and reads with 503."""
    api = await make_api(up=False)

    assert [503, 503] == [(await register(api)).status_code,
                          (await api.client.get("/eureka/apps")).status_code]


async def test_the_api_is_off_with_the_setting(make_api: MakeApi) -> None:
    """eureka off: /eureka/ is not served."""
    api = await make_api(eureka=False)

    assert 404 == (await register(api)).status_code
