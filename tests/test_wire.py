"""The JSON shapes: canonical encoding (sorted keys, nulls written) and lenient decoding (§2.2)."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import inspect
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artemis import wire
from artemis.wire import (
    DecodeError,
    FailedInstance,
    GetClusterNodeStatusResponse,
    GetServicesDeltaRequest,
    GetServicesDeltaResponse,
    Instance,
    InstanceChange,
    InstancesRequest,
    InstancesResponse,
    LeaseStatus,
    LookupRequest,
    ResponseStatus,
    ServiceNode,
    ServiceNodeStatus,
    Zone,
)

SUCCESS = ResponseStatus(error_code="success", message="", status="success")
EXAMPLE = Instance(
    group_id=None, health_check_url="http://10.0.0.5:8080/health", instance_id="10.0.0.5:8080",
    ip="10.0.0.5", machine_name="web-5", metadata={"k": "v"}, port=8080, protocol="http",
    region_id="SHA", service_id="demo.service.v1", status="up", url="http://10.0.0.5:8080/api",
    zone_id="sha-z1")
EXAMPLE_JSON = (
    b'{"groupId":null,"healthCheckUrl":"http://10.0.0.5:8080/health","instanceId":"10.0.0.5:8080",'
    b'"ip":"10.0.0.5","machineName":"web-5","metadata":{"k":"v"},"port":8080,"protocol":"http",'
    b'"regionId":"SHA","serviceId":"demo.service.v1","status":"up",'
    b'"url":"http://10.0.0.5:8080/api","zoneId":"sha-z1"}')


# --- encoding ----------------------------------------------------------------------------------


def test_instance_encodes_with_sorted_keys_and_nulls() -> None:
    """An instance encodes every key, alphabetically, with nulls and port 0 written (§3.1)."""
    assert (b'{"groupId":null,"healthCheckUrl":null,"instanceId":"i1","ip":null,'
            b'"machineName":null,"metadata":null,"port":0,"protocol":null,"regionId":null,'
            b'"serviceId":"svc","status":null,"url":null,"zoneId":null}') == wire.encode(
        Instance(service_id="svc", instance_id="i1"))


def test_register_example_encodes_exactly() -> None:
    """The §4.1 register example instance encodes byte for byte as the original does."""
    assert EXAMPLE_JSON == wire.encode(EXAMPLE)


WIRE_MODULES = [module for _, module in inspect.getmembers(wire, inspect.ismodule)
                if module.__name__.startswith(f"{wire.__name__}.")]
WIRE_STRUCTS = sorted({obj for module in WIRE_MODULES
                       for _, obj in inspect.getmembers(module, inspect.isclass)
                       if issubclass(obj, msgspec.Struct) and obj.__module__ == module.__name__
                       and not obj.__name__.startswith("_")}, key=lambda cls: cls.__name__)


@pytest.mark.parametrize("cls", WIRE_STRUCTS, ids=lambda c: c.__name__)
def test_every_shape_declares_its_keys_alphabetically(cls: type[msgspec.Struct]) -> None:
    """Each wire shape's camelCase keys are declared, hence encoded, in alphabetical order."""
    names = [f.encode_name for f in msgspec.structs.fields(cls)]
    assert sorted(names) == names


def test_every_public_shape_is_checked() -> None:
    """The key-order check above covers every Struct that wire exports."""
    exported = {name for name in wire.__all__ if isinstance(getattr(wire, name), type)
                and issubclass(getattr(wire, name), msgspec.Struct)}
    assert exported == {cls.__name__ for cls in WIRE_STRUCTS}


def test_registry_answers_encode_exactly() -> None:
    """Success and partial-failure answers of §4.1 encode byte for byte."""
    ok = InstancesResponse(failed_instances=None, response_status=SUCCESS)
    failed = InstancesResponse(
        failed_instances=[FailedInstance(
            error_code="data-not-found", instance=Instance(instance_id="x"),
            error_message=("sha/sha-z1/demo.service.v1/x: Instance is not exising! "
                           "Need re-register."))],
        response_status=ResponseStatus(error_code="partial_fail", message="",
                                       status="partial_fail"))
    assert [
        b'{"failedInstances":null,"responseStatus":{"errorCode":"success","message":"",'
        b'"status":"success"}}',
        b'{"failedInstances":[{"errorCode":"data-not-found","errorMessage":"sha/sha-z1/'
        b'demo.service.v1/x: Instance is not exising! Need re-register.","instance":'
        + wire.encode(Instance(instance_id="x")) + b'}],"responseStatus":{"errorCode":'
        b'"partial_fail","message":"","status":"partial_fail"}}',
    ] == [wire.encode(ok), wire.encode(failed)]


def test_node_status_example_encodes_exactly() -> None:
    """The Appendix A node status answer encodes byte for byte."""
    answer = GetClusterNodeStatusResponse(
        node_status=ServiceNodeStatus(
            allow_discovery_from_other_zone=True, allow_registry_from_other_zone=True,
            can_service_discovery=True, can_service_registry=True,
            node=ServiceNode(url="http://10.0.0.1:8080/artemis-web/",
                             zone=Zone(metadata=None, region_id="SHA", zone_id="sha-z1")),
            status="up"),
        response_status=SUCCESS)
    assert (b'{"nodeStatus":{"allowDiscoveryFromOtherZone":true,"allowRegistryFromOtherZone":true,'
            b'"canServiceDiscovery":true,"canServiceRegistry":true,'
            b'"node":{"url":"http://10.0.0.1:8080/artemis-web/","zone":{"metadata":null,'
            b'"regionId":"SHA","zoneId":"sha-z1"}},"status":"up"},'
            b'"responseStatus":{"errorCode":"success","message":"","status":"success"}}'
            ) == wire.encode(answer)


def test_lease_status_keeps_the_originals_spelling() -> None:
    """LeaseStatus writes `evitionTime`, misspelt as the original does (§3.9)."""
    status = LeaseStatus(creation_time="a", evition_time="b", instance="c", renewal_time="d",
                         ttl=20000)
    assert (b'{"creationTime":"a","evitionTime":"b","instance":"c","renewalTime":"d",'
            b'"ttl":20000}') == wire.encode(status)


# --- decoding ----------------------------------------------------------------------------------


def test_canonical_request_decodes() -> None:
    """The §4.1 register request decodes to the instance it describes."""
    assert InstancesRequest(instances=[EXAMPLE]) == wire.decode(
        b'{"instances":[' + EXAMPLE_JSON + b"]}", InstancesRequest)


def test_keys_match_whatever_their_case() -> None:
    """Keys are matched case-insensitively, at every level of nesting."""
    body = (b'{"INSTANCES":[{"SERVICEID":"demo.service.v1","instanceid":"10.0.0.5:8080",'
            b'"Url":"http://10.0.0.5:8080/api","RegionId":"SHA","port":8080,'
            b'"metaDATA":{"k":"v"}}]}')
    expected = Instance(service_id="demo.service.v1", instance_id="10.0.0.5:8080",
                        url="http://10.0.0.5:8080/api", region_id="SHA", port=8080,
                        metadata={"k": "v"})
    assert InstancesRequest(instances=[expected]) == wire.decode(body, InstancesRequest)


def test_metadata_keys_are_data_and_keep_their_case() -> None:
    """Map keys are not field names: metadata keys keep their case on the lenient path."""
    body = b'{"serviceid":"s","metadata":{"Java_Registry":"x","KEY":"V"}}'
    assert Instance(service_id="s", metadata={"Java_Registry": "x", "KEY": "V"}) == wire.decode(
        body, Instance)


def test_unknown_keys_are_ignored() -> None:
    """Keys the shape does not know are dropped, at the top and inside nested objects."""
    body = (b'{"extra":1,"instances":[{"serviceId":"s","instanceId":"i","future":{"a":[1]}},'
            b'null],"alsoExtra":null}')
    assert InstancesRequest(instances=[Instance(service_id="s", instance_id="i"), None]) == (
        wire.decode(body, InstancesRequest))


@pytest.mark.parametrize(("body", "kind", "expected"), [
    (b'{"serviceId":"s","port":null}', Instance, Instance(service_id="s")),
    (b'{"SERVICEID":"s","port":null}', Instance, Instance(service_id="s")),
    (b'{"regionId":"SHA","version":null,"zoneId":"z"}', GetServicesDeltaRequest,
     GetServicesDeltaRequest(region_id="SHA", version=0, zone_id="z")),
    (b'{}', GetServicesDeltaRequest, GetServicesDeltaRequest()),
    (b'{"instances":null}', InstancesRequest, InstancesRequest(instances=None)),
])
def test_null_for_a_primitive_means_its_default(body: bytes, kind: type[Any],
                                                expected: Any) -> None:
    """A null `port` or `version` decodes as 0, as Jackson reads null into a primitive."""
    assert expected == wire.decode(body, kind)


def test_lookup_example_decodes() -> None:
    """The Appendix A lookup request decodes, nulls staying null."""
    body = (b'{"discoveryConfigs":[{"discoveryData":null,"regionId":null,'
            b'"serviceId":"demo.service.v1","zoneId":null}],"regionId":"SHA","zoneId":"sha-z1"}')
    assert LookupRequest(discovery_configs=[wire.DiscoveryConfig(service_id="demo.service.v1")],
                         region_id="SHA", zone_id="sha-z1") == wire.decode(body, LookupRequest)


def test_delta_answer_decodes_leniently_inside_the_delta_map() -> None:
    """Instance changes inside the delta map are read as leniently as any other object."""
    body = (b'{"CHECKSUM":"00","delta":{"demo":[{"changetime":5,"CHANGETYPE":"new",'
            b'"instance":{"serviceid":"demo","x":1},"unknown":true}]},'
            b'"responseStatus":{"errorCode":"success","message":"","status":"success"},'
            b'"version":7}')
    assert GetServicesDeltaResponse(
        checksum="00",
        delta={"demo": [InstanceChange(change_time=5, change_type="new",
                                       instance=Instance(service_id="demo"))]},
        response_status=SUCCESS, version=7) == wire.decode(body, GetServicesDeltaResponse)


@pytest.mark.parametrize(("body", "kind", "message"), [
    (b'{"instances":[', InstancesRequest, "malformed JSON: Input data was truncated"),
    (b"not json", InstancesRequest,
     "malformed JSON: JSON is malformed: invalid character (byte 4)"),
    (b'{"serviceId":1}', Instance, "Expected `str | null`, got `int` - at `$.serviceId`"),
    (b'{"SERVICEID":1}', Instance, "Expected `str | null`, got `int` - at `$.serviceId`"),
    (b'{"port":"80"}', Instance, "Expected `int`, got `str` - at `$.port`"),
    (b"[]", InstancesRequest, "Expected `object`, got `array`"),
    (b'{"errorCode":"x","message":""}', ResponseStatus, "Object missing required field `status`"),
])
def test_bad_bodies_raise_decode_error_naming_the_problem(body: bytes, kind: type[Any],
                                                          message: str) -> None:
    """Malformed JSON and wrong types raise DecodeError (a ValueError) saying what is wrong."""
    with pytest.raises(DecodeError) as caught:
        wire.decode(body, kind)
    assert (message, True) == (str(caught.value), isinstance(caught.value, ValueError))


# --- properties --------------------------------------------------------------------------------

text = st.none() | st.text(max_size=8)
instances = st.builds(
    Instance, group_id=text, health_check_url=text, instance_id=text, ip=text,
    machine_name=text, metadata=st.none() | st.dictionaries(st.text(max_size=6),
                                                            st.text(max_size=6), max_size=3),
    port=st.integers(0, 65535), protocol=text, region_id=text, service_id=text, status=text,
    url=text, zone_id=text)


@settings(max_examples=200, deadline=None)
@given(instances)
def test_encode_then_decode_gives_the_same_instance(instance: Instance) -> None:
    """Any instance survives a trip through its canonical JSON."""
    assert instance == wire.decode(wire.encode(instance), Instance)


@settings(max_examples=200, deadline=None)
@given(instance=instances, data=st.data())
def test_respelt_keys_and_extra_keys_decode_the_same(instance: Instance,
                                                      data: st.DataObject) -> None:
    """Keys in any case, plus keys nobody knows, decode to the same instance."""
    raw = msgspec.json.decode(wire.encode(instance))
    respelt: dict[str, Any] = {}
    for key, value in raw.items():
        spelling = data.draw(st.sampled_from([key, key.lower(), key.upper(), key.swapcase()]))
        respelt[spelling] = value
    respelt.update(data.draw(st.dictionaries(st.sampled_from(["zz", "Other", "x_y"]),
                                             st.integers() | st.none(), max_size=2)))
    if instance.port == 0 and data.draw(st.booleans()):
        respelt["PORT" if "port" not in respelt else "port"] = None
    assert instance == wire.decode(msgspec.json.encode(respelt), Instance)


# --- duplicated keys -------------------------------------------------------------------------

JAVA_INSTANCE = (b'{"groupId":null,"healthCheckUrl":"http://10.0.0.5:8080/health",'
                 b'"instanceId":"10.0.0.5:8080","ip":"10.0.0.5","machineName":"web-5",'
                 b'"metadata":{"k":"v"},"port":8080,"protocol":"http","regionId":"SHA",'
                 b'"serviceId":"demo.service.v1","status":"up","url":"http://10.0.0.5:8080/api",'
                 b'"zoneId":"sha-z1"}')


@pytest.mark.parametrize(("body", "problem"), [
    (b'{"instances":[{"url":"a","url":"b"}]}', "duplicate key 'url'"),
    (b'{"instances":[{"url":"a", "url":"b"}]}', "duplicate key 'url'"),  # not canonical
    (b'{"instances":[{"url":"a","URL":"b"}]}', "duplicate key 'URL' (also given as 'url')"),
    (b'{"instances":[{"Url":"a","uRL":"b"}]}', "duplicate key 'uRL' (also given as 'Url')"),
    (b'{"instances":[{"metadata":{"k":"1","k":"2"}}]}', "duplicate key 'k'"),
    (b'{"instances":[{"metadata":{"k":"\\u0031","k":"2"}}]}', "duplicate key 'k'"),  # escapes
    (b'{"instances":null,"instances":[]}', "duplicate key 'instances'"),
])
def test_duplicated_keys_are_refused(body: bytes, problem: str) -> None:
    """A key given twice, or two spellings of one field, is a DecodeError naming the key."""
    with pytest.raises(wire.DecodeError) as caught:
        wire.decode(body, wire.InstancesRequest)
    assert problem == str(caught.value)


@pytest.mark.parametrize("body", [
    b'{"instances":[' + JAVA_INSTANCE + b']}',  # what the Java SDK sends: canonical
    b'{ "instances" : [ ' + JAVA_INSTANCE + b' ] }',
    b'{"INSTANCES":[{"URL":"a","metadata":{"url":"1","URL":"2"}}]}',  # map keys are data
    b'{"instances":[{"url":"\\u0061"}]}',
])
def test_bodies_without_duplicates_decode(body: bytes) -> None:
    """Canonical, spaced, case-folded and escaped bodies without a duplicate decode as before."""
    assert wire.decode(body, wire.InstancesRequest).instances
