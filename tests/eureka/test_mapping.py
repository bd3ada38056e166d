"""The mapping between Eureka's InstanceInfo and the registry's instances, without I/O."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import json
from typing import Any

import pytest

from artemis.server.eureka.codec import read_instance
from artemis.server.eureka.mapping import (
    EurekaInstance,
    Facts,
    Invalid,
    effective_status,
    eureka_status,
    show,
    status_named,
    to_artemis,
    vips,
    with_metadata,
    with_status,
)
from artemis.wire import Instance
from tests.eureka.harness import DC_CLASS, info

EMPTY = {"@class": "java.util.Collections$EmptyMap"}


def eureka(**fields: Any) -> EurekaInstance:
    """An InstanceInfo as read from py-eureka-client's JSON."""
    return read_instance(json.dumps({"instance": info(**fields)}).encode(),
                         "application/json")


def test_a_registration_is_an_instance_of_the_registry() -> None:
    """Every field lands where the mapping's rules put it; what Artemis has no field for is
    kept in metadata under eureka.*, the lease duration under artemis.lease_ttl."""
    assert Instance(
        health_check_url="http://web-1:8080/health",
        instance_id="web-1:orders:8080", ip="10.0.0.5", machine_name="web-1",
        metadata={"owner": "team-a", "eureka.vipAddress": "orders",
                  "eureka.secureVipAddress": "orders", "eureka.port": "8080",
                  "eureka.portEnabled": "true", "eureka.securePort": "443",
                  "eureka.securePortEnabled": "false",
                  "eureka.homePageUrl": "http://web-1:8080/",
                  "eureka.statusPageUrl": "http://web-1:8080/info",
                  "eureka.lastDirtyTimestamp": "1000", "artemis.lease_ttl": "90"},
        port=8080, protocol="http", region_id="SHA", service_id="ORDERS", status="up",
        url="http://10.0.0.5:8080", zone_id="zone-1",
    ) == to_artemis(eureka(), "SHA", "zone-1")


def test_shown_back_a_registration_is_what_the_client_sent() -> None:
    """A Eureka instance shown back carries the client's fields, not the mapping's keys."""
    instance = to_artemis(eureka(app="orders"), "SHA", "zone-1")

    assert {
        "instanceId": "web-1:orders:8080", "hostName": "web-1", "app": "ORDERS",
        "ipAddr": "10.0.0.5", "status": "UP", "overriddenStatus": "UNKNOWN",
        "overriddenstatus": "UNKNOWN", "port": {"$": 8080, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"}, "countryId": 1,
        "dataCenterInfo": {"@class": DC_CLASS, "name": "MyOwn"},
        "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90,
                      "registrationTimestamp": 5000, "lastRenewalTimestamp": 7000,
                      "evictionTimestamp": 0, "serviceUpTimestamp": 5000},
        "metadata": {"owner": "team-a"}, "homePageUrl": "http://web-1:8080/",
        "statusPageUrl": "http://web-1:8080/info", "healthCheckUrl": "http://web-1:8080/health",
        "vipAddress": "orders", "secureVipAddress": "orders",
        "isCoordinatingDiscoveryServer": "false", "lastUpdatedTimestamp": "5000",
        "lastDirtyTimestamp": "1000", "actionType": "ADDED",
    } == show(instance, Facts(5000, 7000, 90.0))


def test_an_artemis_instance_shown_to_eureka() -> None:
    """An instance registered through the Artemis API: its url gives host, port and scheme,
    its serviceId the VIP addresses, its ttl the lease duration; empty metadata is Eureka's
    empty-map mark."""
    instance = Instance(instance_id="10.0.0.7:9090", ip="10.0.0.7", machine_name="app-7",
                        port=9090, protocol="http", region_id="SHA", service_id="demo.api",
                        status="up", url="http://10.0.0.7:9090/api", zone_id="zone-1")

    assert {
        "instanceId": "10.0.0.7:9090", "hostName": "app-7", "app": "DEMO.API",
        "ipAddr": "10.0.0.7", "status": "UP", "overriddenStatus": "UNKNOWN",
        "overriddenstatus": "UNKNOWN", "port": {"$": 9090, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"}, "countryId": 1,
        "dataCenterInfo": {"@class": DC_CLASS, "name": "MyOwn"},
        "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 20,
                      "registrationTimestamp": 5000, "lastRenewalTimestamp": 6000,
                      "evictionTimestamp": 0, "serviceUpTimestamp": 5000},
        "metadata": EMPTY, "homePageUrl": "http://10.0.0.7:9090/api", "statusPageUrl": "",
        "healthCheckUrl": "", "vipAddress": "demo.api", "secureVipAddress": "demo.api",
        "isCoordinatingDiscoveryServer": "false", "lastUpdatedTimestamp": "5000",
        "lastDirtyTimestamp": "5000", "actionType": "MODIFIED",
    } == show(instance, Facts(5000, 6000, 20.0), "MODIFIED")


def test_an_https_artemis_instance_shows_its_secure_port() -> None:
    """No port and an https url: the secure port is the url's default, the plain one off."""
    instance = Instance(instance_id="a", service_id="s", url="https://api.example")

    shown = show(instance, Facts(0, 0, 20.0))

    assert ({"$": 0, "@enabled": "false"}, {"$": 443, "@enabled": "true"}, "api.example") == (
        shown["port"], shown["securePort"], shown["hostName"])


@pytest.mark.parametrize(("artemis", "expected"), [
    (None, "UP"), ("up", "UP"), ("UP", "UP"), ("down", "DOWN"), ("unhealthy", "DOWN"),
    ("starting", "STARTING"), ("out_of_service", "OUT_OF_SERVICE"), ("unknown", "UNKNOWN"),
    ("", "UP"), ("sleepy", "UNKNOWN"),
])
def test_artemis_statuses_as_eureka_statuses(artemis: str | None, expected: str) -> None:
    """Each Artemis status maps to the Eureka status docs/compatibility.md lists."""
    assert expected == eureka_status(artemis)


@pytest.mark.parametrize(("sent", "stored"), [
    ("UP", "up"), ("DOWN", "down"), ("STARTING", "starting"),
    ("OUT_OF_SERVICE", "out_of_service"), ("UNKNOWN", "unknown"), ("up", "up"),
    ("bogus", "unknown"),
])
def test_eureka_statuses_are_stored_lower_case(sent: str, stored: str) -> None:
    """A client's status is stored lower-case; one Eureka does not know is UNKNOWN."""
    assert stored == to_artemis(eureka(status=sent), "SHA", "zone-1").status


@pytest.mark.parametrize(("own", "override", "expected"), [
    ("UP", "UNKNOWN", "UP"), ("UP", "OUT_OF_SERVICE", "OUT_OF_SERVICE"),
    ("OUT_OF_SERVICE", "UP", "UP"), ("DOWN", "OUT_OF_SERVICE", "DOWN"),
    ("STARTING", "UP", "STARTING"), ("UNKNOWN", "UP", "UNKNOWN"),
])
def test_an_override_wins_over_up_but_not_over_down_or_starting(
        own: str, override: str, expected: str) -> None:
    """Eureka's rules: the client's own DOWN or STARTING wins, else an override does."""
    assert expected == effective_status(own, override)


def test_an_override_of_the_live_lease_stays_through_a_registration() -> None:
    """A client registering UP again keeps the override the lease had."""
    instance = to_artemis(eureka(), "SHA", "zone-1", "OUT_OF_SERVICE")

    assert ("out_of_service", "OUT_OF_SERVICE") == (
        instance.status, (instance.metadata or {})["eureka.overriddenStatus"])


@pytest.mark.parametrize(("metadata", "data_center", "expected"), [
    ({}, {"@class": DC_CLASS, "name": "MyOwn"}, "zone-1"),
    ({"zone": "zone-9"}, {"@class": DC_CLASS, "name": "MyOwn"}, "zone-9"),
    ({}, {"name": "Amazon", "metadata": {"availability-zone": "us-east-1a",
                                         "instance-id": "i-1"}}, "us-east-1a"),
])
def test_the_zone_is_the_metadata_s_then_amazon_s_then_the_node_s(
        metadata: dict[str, str], data_center: dict[str, Any], expected: str) -> None:
    """Spring Cloud's metadata zone, else an Amazon availability zone, else the node's."""
    instance = to_artemis(eureka(metadata=metadata, dataCenterInfo=data_center), "SHA",
                          "zone-1")

    assert expected == instance.zone_id


def test_an_amazon_instance_keeps_its_data_center_and_id() -> None:
    """Without instanceId an Amazon instance is named by its instance-id; its data center
    metadata is shown back."""
    body = info(instanceId="", dataCenterInfo={"name": "Amazon", "metadata": {
        "instance-id": "i-0abc", "availability-zone": "us-east-1a"}})
    instance = to_artemis(read_instance(json.dumps(body).encode(), None), "SHA",
                          "zone-1")

    assert ("i-0abc", {"@class": "com.netflix.appinfo.AmazonInfo", "name": "Amazon",
                       "metadata": {"instance-id": "i-0abc", "availability-zone": "us-east-1a"}}
            ) == (instance.instance_id, show(instance, Facts(0, 0, 90))["dataCenterInfo"])


def test_a_secure_only_instance_is_called_over_https() -> None:
    """Plain port off, secure port on: Artemis clients call https on the secure port."""
    instance = to_artemis(eureka(port={"$": 8080, "@enabled": "false"},
                                 securePort={"$": 8443, "@enabled": "true"}), "SHA", "zone-1")

    assert ("https", 8443, "https://10.0.0.5:8443") == (
        instance.protocol, instance.port, instance.url)


def test_an_ipv6_address_is_bracketed_in_the_url() -> None:
    assert "http://[fd00::5]:8080" == to_artemis(eureka(ipAddr="fd00::5"), "SHA", "z").url


@pytest.mark.parametrize("key", ["eureka.vipAddress", "eureka.anything", "artemis.lease_ttl"])
def test_a_client_may_not_use_the_mapping_s_keys(key: str) -> None:
    """Metadata keys the mapping keeps are refused from a client."""
    with pytest.raises(Invalid, match="is reserved"):
        to_artemis(eureka(metadata={key: "x"}), "SHA", "zone-1")


def test_a_lease_duration_of_zero_is_eureka_s_default() -> None:
    """durationInSecs 0 or less is 90 s, as Eureka's registry takes it."""
    lease = {"renewalIntervalInSecs": 5, "durationInSecs": 0}
    metadata = to_artemis(eureka(leaseInfo=lease), "SHA", "z").metadata or {}

    assert ("90", "5") == (metadata["artemis.lease_ttl"],
                           metadata["eureka.renewalIntervalInSecs"])


def test_status_and_metadata_changes_keep_the_rest() -> None:
    """An override sets status and override; removing it drops the key; metadata entries are
    added and a later lastDirtyTimestamp is taken."""
    instance = to_artemis(eureka(), "SHA", "zone-1")
    overridden = with_status(instance, "OUT_OF_SERVICE", "OUT_OF_SERVICE")
    restored = with_status(overridden, "UP", "UNKNOWN")
    changed = with_metadata(instance, {"color": "blue"}, 2000)

    assert ("out_of_service", "OUT_OF_SERVICE", "up", instance.metadata) == (
        overridden.status, (overridden.metadata or {})["eureka.overriddenStatus"],
        restored.status, restored.metadata)
    assert {**(instance.metadata or {}), "color": "blue",
            "eureka.lastDirtyTimestamp": "2000"} == changed.metadata


def test_vips_are_split_and_lower_cased() -> None:
    """Comma-separated VIP addresses, compared lower-case; an Artemis instance's is its
    serviceId."""
    eureka_one = to_artemis(eureka(vipAddress="Orders, orders-v2", secureVipAddress=""),
                            "SHA", "z")
    artemis_one = Instance(service_id="Demo.Api", instance_id="a", url="http://a")

    assert ((("orders", "orders-v2"), ()), (("demo.api",), ("demo.api",))) == (
        vips(eureka_one), vips(artemis_one))


def test_status_names_are_eureka_s_to_enum() -> None:
    assert ["UP", "DOWN", "UNKNOWN", "OUT_OF_SERVICE"] == [
        status_named(t, "UP") for t in ("up", " DOWN ", "sideways", "out_of_service")]
