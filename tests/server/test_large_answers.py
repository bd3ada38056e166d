"""Large answers (services.json, deltas) are streamed in parts, plain or gzipped, and equal the
snapshot they come from."""

from __future__ import annotations

import gzip

from tests.server.conftest import MakeApi
from tests.server.harness import Api, instance


async def _fill(make_api: MakeApi, count: int) -> Api:
    api = await make_api()
    fleet = [instance(f"10.1.{i // 250}.{i % 250}:8080", serviceId=f"svc.{i % 40}")
             for i in range(count)]
    for start in range(0, count, 500):
        answer = await api.client.post("/api/registry/register.json",
                                       json={"instances": fleet[start:start + 500]})
        assert "success" == answer.json()["responseStatus"]["status"]
    api.clock.advance(1)
    await api.node.snapshot_once()
    return api


async def test_services_json_over_the_stream_size_is_the_whole_snapshot(
        make_api: MakeApi) -> None:
    """A services.json answer of more than 256 KiB arrives whole and equals the snapshot."""
    api = await _fill(make_api, 2000)
    expected = api.node.versions.current.body()
    answer = await api.client.get("/api/discovery/services.json",
                                  headers={"Accept-Encoding": "identity"})
    assert (200, None, True, expected) == (answer.status_code,
                                           answer.headers.get("content-encoding"),
                                           len(expected) > 256 * 1024, answer.content)


async def test_services_json_gzipped_decompresses_to_the_snapshot(make_api: MakeApi) -> None:
    """With Accept-Encoding: gzip a large services.json is gzip that inflates to the snapshot,
    and a second request gets the same compressed bytes (compressed once)."""
    api = await _fill(make_api, 2000)
    expected = api.node.versions.current.body()
    first = await api.client.send(api.client.build_request(
        "GET", "/api/discovery/services.json", headers={"Accept-Encoding": "gzip"}),
        stream=True)
    raw_first = b"".join([chunk async for chunk in first.aiter_raw()])
    await first.aclose()
    second = await api.client.send(api.client.build_request(
        "GET", "/api/discovery/services.json", headers={"Accept-Encoding": "gzip"}),
        stream=True)
    raw_second = b"".join([chunk async for chunk in second.aiter_raw()])
    await second.aclose()
    assert ("gzip", expected, raw_first) == (first.headers["content-encoding"],
                                             gzip.decompress(raw_first), raw_second)


async def test_large_delta_is_streamed_whole(make_api: MakeApi) -> None:
    """A delta of 2,000 new instances (over 256 KiB) arrives whole and lists every one."""
    api = await make_api()
    start = api.node.versions.current.version
    fleet = [instance(f"10.2.{i // 250}.{i % 250}:8080", serviceId=f"svc.{i % 40}")
             for i in range(2000)]
    for first in range(0, 2000, 500):
        await api.client.post("/api/registry/register.json",
                              json={"instances": fleet[first:first + 500]})
    api.clock.advance(1)
    await api.node.snapshot_once()
    answer = await api.client.post("/api/discovery/services-delta.json",
                                   json={"version": start})
    data = answer.json()
    ids = sorted(c["instance"]["instanceId"] for changes in data["delta"].values()
                 for c in changes)
    assert (True, "success", sorted(i["instanceId"] for i in fleet),
            {"new"}) == (len(answer.content) > 256 * 1024, data["responseStatus"]["status"], ids,
                         {c["changeType"] for v in data["delta"].values() for c in v})
