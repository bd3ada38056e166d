"""Large answers over a real socket: granian streams them, plain and gzipped."""

from __future__ import annotations

import gzip
import json

import httpx

from tests.process.conftest import StartNode, poll


def _instance(i: int) -> dict[str, object]:
    return {"instanceId": f"10.3.{i // 250}.{i % 250}:8080", "serviceId": f"svc.{i % 40}",
            "url": f"http://10.3.{i // 250}.{i % 250}:8080/api", "regionId": "SHA",
            "zoneId": "zone-1", "metadata": {"owner": "team-" + "x" * 80}}


def test_large_services_json_streams_whole_plain_and_gzipped(start_node: StartNode) -> None:
    """services.json of 2,000 instances (over 256 KiB) arrives whole, and gzipped it inflates to
    the same bytes."""
    node = start_node("--snapshot-interval", "0.05")
    fleet = [_instance(i) for i in range(2000)]
    with node.client() as client:
        for first in range(0, 2000, 500):
            answer = client.post("/api/registry/register.json",
                                 json={"instances": fleet[first:first + 500]})
            assert "success" == answer.json()["responseStatus"]["status"]

        def whole() -> bytes | None:
            body = client.get("/api/discovery/services.json",
                              headers={"Accept-Encoding": "identity"}).content
            count = sum(len(s["instances"]) for s in json.loads(body)["services"])
            return body if count == 2000 else None

        plain = poll(whole, 10.0, "a snapshot of all 2,000 instances")
        request = client.build_request("GET", "/api/discovery/services.json",
                                       headers={"Accept-Encoding": "gzip"})
        zipped = client.send(request, stream=True)
        raw = b"".join(zipped.iter_raw())
        zipped.close()
    assert (True, "gzip", plain) == (len(plain) > 256 * 1024,
                                     zipped.headers["content-encoding"], gzip.decompress(raw))


def test_http_client_reads_streamed_answer(start_node: StartNode) -> None:
    """A plain HTTP/1.1 client without gzip gets the same services as the registry holds."""
    node = start_node()
    with httpx.Client(base_url=node.url, timeout=5) as client:
        answer = client.get("/api/discovery/services.json")
    assert ("success", []) == (answer.json()["responseStatus"]["status"],
                               answer.json()["services"])
