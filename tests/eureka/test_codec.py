"""Eureka's JSON and XML: InstanceInfo read from bodies (leniently, and safely), answers written
as Eureka's codecs read them."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import json
from xml.etree import ElementTree

import defusedxml.ElementTree
import pytest

from artemis.server.eureka.codec import (
    app_answer,
    apps_answer,
    instance_bytes,
    read_instance,
    wants_json,
)
from artemis.server.eureka.mapping import EurekaInstance, Facts, Invalid, show
from artemis.wire import Instance
from tests.eureka.harness import info, info_xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<instance><app>&lol4;</app></instance>"""
EXTERNAL = (b'<?xml version="1.0"?><!DOCTYPE i [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<instance><app>&x;</app></instance>")
EXPECTED = EurekaInstance(
    app="ORDERS", instance_id="web-1:orders:8080", host_name="web-1", ip_addr="10.0.0.5",
    port=8080, secure_port=443, metadata={"owner": "team-a"}, vip_address="orders",
    last_dirty=1000)


def parse(body: bytes) -> ElementTree.Element:
    root: ElementTree.Element = defusedxml.ElementTree.fromstring(body)
    return root


def test_json_as_py_eureka_client_sends_it() -> None:
    """Every field of the client's JSON is read."""
    assert EurekaInstance(
        app="ORDERS", instance_id="web-1:orders:8080", host_name="web-1", ip_addr="10.0.0.5",
        port=8080, secure_port=443, metadata={"owner": "team-a"},
        home_page_url="http://web-1:8080/", status_page_url="http://web-1:8080/info",
        health_check_url="http://web-1:8080/health", vip_address="orders",
        secure_vip_address="orders", last_dirty=1000,
    ) == read_instance(json.dumps({"instance": info()}).encode(), "application/json")


def test_xml_as_eureka_s_codec_writes_it() -> None:
    """An XStream <instance> is read to the same InstanceInfo."""
    assert EXPECTED == read_instance(info_xml(), "application/xml")


def test_the_format_is_sniffed_without_a_content_type() -> None:
    """No Content-Type: `{` is JSON, anything else XML."""
    assert [EXPECTED, "ORDERS"] == [
        read_instance(info_xml(), None),
        read_instance(json.dumps({"instance": info()}).encode(), None).app]


def test_a_bare_instance_object_is_taken() -> None:
    """JSON without the `instance` wrapper is taken too."""
    assert "web-1:orders:8080" == read_instance(json.dumps(info()).encode(), None).id


def test_values_are_read_as_eureka_s_codecs_read_them() -> None:
    """Numbers from strings, booleans from JSON, an unknown status is UNKNOWN, an unreadable
    lease number is the default, ports default enabled (secure: disabled)."""
    body = info(port={"$": "9090"}, securePort=7443, status="sleepy", countryId="2",
                leaseInfo={"durationInSecs": "soon", "renewalIntervalInSecs": 5},
                isCoordinatingDiscoveryServer=True, overriddenStatus="OUT_OF_SERVICE")
    del body["overriddenstatus"]

    got = read_instance(json.dumps({"instance": body}).encode(), "application/json")

    assert (9090, True, 7443, False, "UNKNOWN", 2, 90, 5, True, "OUT_OF_SERVICE") == (
        got.port, got.port_enabled, got.secure_port, got.secure_port_enabled, got.status,
        got.country_id, got.duration, got.renewal_interval, got.coordinating,
        got.overridden_status)


def test_xstream_names_are_decoded_in_xml_metadata() -> None:
    """`__` is `_` and `_-` is `$` in XML element names; the empty-map mark is no entry."""
    assert [{"max_conn": "5", "a$b": "x"}, {}] == [
        read_instance(info_xml(metadata="<max__conn>5</max__conn><a_-b>x</a_-b>"), None).metadata,
        read_instance(info_xml().replace(b"<metadata><owner>team-a</owner></metadata>",
                                         b'<metadata class="java.util.Collections$EmptyMap"/>'),
                      None).metadata]


@pytest.mark.parametrize(("body", "content_type", "message"), [
    (b"{not json", "application/json", "the body is not valid JSON"),
    (b'{"instance": {"app": "A", "app": "B"}}', "application/json", "names 'app' twice"),
    (b'{"instance": {"app": NaN}}', "application/json", "holds NaN, which is not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", "nested too deep"),
    (b"[1, 2]", "application/json", "the body holds no InstanceInfo"),
    (b"<instance><app>A</app>", "application/xml", "not well-formed XML"),
    (b"<applications/>", "application/xml", "root element is <applications>"),
    (BILLION_LAUGHS, "application/xml", "holds a DTD"),
    (EXTERNAL, "application/xml", "holds a DTD"),
    (b"<instance>" + b"<a>" * 50 + b"</a>" * 50 + b"</instance>", "application/xml",
     "nested too deep"),
    (b"<instance><app>A</app><app>B</app></instance>", "application/xml", "<app> twice"),
    (b"app=A", "application/x-www-form-urlencoded", "neither JSON nor XML"),
    (json.dumps({"instance": info(instanceId="", hostName="")}).encode(), None,
     "Missing instanceId"),
    (json.dumps({"instance": info(hostName="")}).encode(), None, "Missing hostname"),
    (json.dumps({"instance": info(app="")}).encode(), None, "Missing appName"),
    (json.dumps({"instance": info(port={"$": 70000})}).encode(), None, "out of range"),
    (json.dumps({"instance": info(port={"$": "http"})}).encode(), None, "whole number"),
    (json.dumps({"instance": info(metadata={"k": {"nested": 1}})}).encode(), None,
     "must be a text"),
    (json.dumps({"instance": info(dataCenterInfo={"name": "Mars"})}).encode(), None,
     "none of MyOwn, Amazon, Netflix"),
])
def test_bad_bodies_are_refused_with_the_reason(body: bytes, content_type: str | None,
                                                message: str) -> None:
    """Malformed JSON or XML, duplicates, DTDs (entities, bombs), depth, missing ids: Invalid,
    naming the problem."""
    with pytest.raises(Invalid, match=message.replace("$", r"\$").replace("[", r"\[")):
        read_instance(body, content_type)


def shown() -> dict[str, object]:
    instance = Instance(instance_id="i-1", ip="10.0.0.1", service_id="orders",
                        url="http://10.0.0.1:80", metadata={"max_conn": "5", "a b": "x",
                                                             "note": "<&>"})
    return show(instance, Facts(1, 2, 20.0))


def test_an_instance_in_xml_is_what_xstream_writes() -> None:
    """Ports as text with an `enabled` attribute, dataCenterInfo with its class, metadata keys
    XStream-encoded (one that cannot be an element name left out), text escaped, only the
    lower-case overriddenstatus."""
    root = parse(instance_bytes(shown(), as_json=False))

    assert ("instance", "80", {"enabled": "true"}, "MyOwn",
            "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
            {"max__conn": "5", "note": "<&>"}, ["UNKNOWN"], []) == (
        root.tag, root.findtext("port"), root.find("port").attrib,  # type: ignore[union-attr]
        root.findtext("dataCenterInfo/name"),
        root.find("dataCenterInfo").attrib["class"],  # type: ignore[union-attr]
        {e.tag: e.text for e in root.find("metadata")},  # type: ignore[union-attr]
        [e.text for e in root.iter("overriddenstatus")],
        list(root.iter("overriddenStatus")))


def test_an_instance_in_json_keeps_every_metadata_key() -> None:
    """JSON carries every key as it is, and both spellings of the overridden status."""
    decoded = json.loads(instance_bytes(shown(), as_json=True))

    assert ({"max_conn": "5", "a b": "x", "note": "<&>"}, "UNKNOWN", "UNKNOWN") == (
        decoded["metadata"], decoded["overriddenStatus"], decoded["overriddenstatus"])


def test_envelopes_as_eureka_writes_them() -> None:
    """Applications with versions__delta and apps__hashcode first, applications of named
    instances, in both formats."""
    one = instance_bytes(shown(), True)
    as_json = json.loads(b"".join(apps_answer(7, "UP_2_", [("ORDERS", [one, one])], True)))
    as_xml = parse(b"".join(apps_answer(7, "UP_2_", [("ORDERS", [instance_bytes(
        shown(), False)] * 2)], False)))

    assert ({"applications": {"versions__delta": "7", "apps__hashcode": "UP_2_",
                              "application": [{"name": "ORDERS",
                                               "instance": [json.loads(one)] * 2}]}},
            ["versions__delta", "apps__hashcode", "application"], "ORDERS", 2) == (
        as_json, [e.tag for e in as_xml], as_xml.findtext("application/name"),
        len(as_xml.findall("application/instance")))
    assert ({"application": {"name": "ORDERS", "instance": []}}, "application") == (
        json.loads(app_answer("ORDERS", [], True)), parse(app_answer("ORDERS", [], False)).tag)


@pytest.mark.parametrize(("accept", "expected"), [
    (None, False), ("application/xml", False), ("application/json", True),
    ("application/json;q=0.9, */*", True), ("*/*", False),
])
def test_json_only_when_accept_says_json(accept: str | None, expected: bool) -> None:
    """Eureka's choice: JSON when the Accept header contains `json`, else XML."""
    assert expected == wants_json(accept)
