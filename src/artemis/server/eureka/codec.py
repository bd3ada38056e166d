"""Eureka's JSON and XML: an InstanceInfo read from a request body, and answers written.

Reading
  * JSON when the Content-Type says json, XML when it says xml; without one, by the first byte.
    JSON is `{"instance": {...}}` (a bare InstanceInfo object is taken too), XML `<instance>`.
  * JSON may not name a key twice (parsers disagree on which one wins) nor hold NaN or
    Infinity; XML may hold no DTD, hence no entity: what a billion-laughs bomb or an external
    entity needs is refused before anything expands (defusedxml). Nesting deeper than an
    InstanceInfo has is refused. Every failure is `Invalid` with a message (HTTP 400).
  * Values are read as Eureka's codecs read them: numbers and booleans from strings or JSON
    types; an unknown status is UNKNOWN; an unreadable lease number is the default; a port's
    `enabled` defaults to true (secure port: false); XML element names are decoded as XStream
    writes them (`__` is `_`, `_-` is `$`), JSON keys are taken as they are.

Writing (the shapes Eureka's server writes, checked against its codecs: docs/compatibility.md)
  * JSON: `{"applications": {"versions__delta", "apps__hashcode", "application": [...]}}`,
    `{"application": {"name", "instance": [...]}}`, `{"instance": {...}}`; port objects
    `{"$": 8080, "@enabled": "true"}`, an empty metadata `{"@class": "java.util.Collections$
    EmptyMap"}`. XML: the same elements (`versions__delta`, `apps__hashcode`), ports as
    `<port enabled="true">8080</port>`, `dataCenterInfo` with a `class` attribute, metadata keys
    as element names XStream-encoded; a key that cannot be an XML element name is left out of
    XML answers (JSON answers carry it). XML carries `overriddenstatus`, JSON both spellings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree
import msgspec

from artemis.server.eureka.mapping import (
    AMAZON,
    DEFAULT_DURATION,
    DEFAULT_RENEWAL,
    MY_OWN,
    UNKNOWN,
    UP,
    EurekaInstance,
    Invalid,
    status_named,
)

__all__ = ["JSON_TYPE", "XML_TYPE", "AppsParts", "app_answer", "apps_answer", "apps_head",
           "instance_answer", "instance_bytes", "read_instance", "wants_json"]

JSON_TYPE: Final = "application/json"
XML_TYPE: Final = "application/xml"
MAX_DEPTH: Final = 6  # instance > dataCenterInfo > metadata > value, with room to spare
_DATA_CENTERS: Final = {"myown": MY_OWN, "amazon": AMAZON, "netflix": "Netflix"}
_XML_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
# Characters XML 1.0 cannot carry at all: replaced (text the registry took is printable, so this
# is a guard, not a path any valid instance takes).
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_json: Final = msgspec.json.Encoder()


def wants_json(accept: str | None) -> bool:
    """Eureka's choice of format: JSON when the Accept header says json, else XML."""
    return accept is not None and "json" in accept


# --- reading -----------------------------------------------------------------------------------


def read_instance(body: bytes, content_type: str | None) -> EurekaInstance:
    """The InstanceInfo of a register request's body (rules in the module doc)."""
    kind = (content_type or "").lower()
    if "json" in kind or (not kind and body.lstrip()[:1] == b"{"):
        tree = _read_json(body)
        node = tree.get("instance") if isinstance(tree, dict) else None
        if not isinstance(node, dict):
            node = tree if isinstance(tree, dict) and ("app" in tree or "hostName" in tree) \
                else None
    elif "xml" in kind or not kind:
        root = _read_xml(body)
        if root.tag != "instance":
            raise Invalid(f"the XML body's root element is <{root.tag}>, not <instance>")
        node = _tree(root, 1)
        if not isinstance(node, dict):
            node = {}
    else:
        raise Invalid(f"Content-Type {content_type!r} is neither JSON nor XML")
    if node is None:
        raise Invalid('the body holds no InstanceInfo ({"instance": {...}} or <instance>)')
    return _instance(node)


def _read_json(body: bytes) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise Invalid(f"the JSON body names {key[:64]!r} twice")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise Invalid(f"the JSON body holds {name}, which is not JSON")

    try:
        return json.loads(body, object_pairs_hook=pairs, parse_constant=constant)
    except Invalid:
        raise
    except RecursionError:
        raise Invalid("the JSON body is nested too deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"the body is not valid JSON: {exc}") from None


def _read_xml(body: bytes) -> Element:
    try:
        root: Element = defusedxml.ElementTree.fromstring(body, forbid_dtd=True)
    except defusedxml.DTDForbidden:
        raise Invalid("the XML body holds a DTD (<!DOCTYPE>), which is refused: no entity "
                      "may be declared") from None
    except defusedxml.DefusedXmlException as exc:
        raise Invalid(f"the XML body is refused: {exc}") from None
    except ParseError as exc:
        raise Invalid(f"the body is not well-formed XML: {exc}") from None
    return root


def _tree(element: Element, depth: int) -> Any:
    """An element as JSON would hold it: text, or a dict of its children by decoded name with
    attributes as `@name` and text beside children or attributes as `$`."""
    if depth > MAX_DEPTH:
        raise Invalid("the XML body is nested too deep")
    text = (element.text or "").strip()
    if not len(element) and not element.attrib:
        return text
    out: dict[str, Any] = {f"@{k}": v for k, v in element.attrib.items()}
    if text:
        out["$"] = text
    for child in element:
        name = _decode_name(child.tag)
        if name in out:
            raise Invalid(f"the XML body has <{child.tag[:64]}> twice in one element")
        out[name] = _tree(child, depth + 1)
    return out


def _decode_name(tag: str) -> str:
    """An element name as XStream encodes field names: `__` is `_`, `_-` is `$`."""
    if "_" not in tag:
        return tag
    return re.sub(r"__|_-", lambda m: "_" if m.group() == "__" else "$", tag)


def _instance(node: Mapping[str, Any]) -> EurekaInstance:
    port, port_on = _port(node.get("port"), "port", 7001, True)
    sport, sport_on = _port(node.get("securePort"), "securePort", 7002, False)
    dc_name, dc_meta = _data_center(node.get("dataCenterInfo"))
    lease = node.get("leaseInfo")
    lease = lease if isinstance(lease, dict) else {}
    app = _text(node, "app")
    instance_id = _text(node, "instanceId")
    host = _text(node, "hostName")
    info = EurekaInstance(
        app=app, instance_id=instance_id, host_name=host, ip_addr=_text(node, "ipAddr"),
        status=status_named(_text(node, "status"), UP),
        overridden_status=status_named(_text(node, "overriddenStatus")
                                       or _text(node, "overriddenstatus"), UNKNOWN),
        port=port, port_enabled=port_on, secure_port=sport, secure_port_enabled=sport_on,
        country_id=_number(_text(node, "countryId"), 1, "countryId"),
        data_center=dc_name, data_center_metadata=dc_meta,
        renewal_interval=_lenient(lease.get("renewalIntervalInSecs"), DEFAULT_RENEWAL),
        duration=_lenient(lease.get("durationInSecs"), DEFAULT_DURATION),
        metadata=_metadata(node.get("metadata")),
        home_page_url=_text(node, "homePageUrl"), status_page_url=_text(node, "statusPageUrl"),
        health_check_url=_text(node, "healthCheckUrl"),
        secure_health_check_url=_text(node, "secureHealthCheckUrl"),
        vip_address=_text(node, "vipAddress"),
        secure_vip_address=_text(node, "secureVipAddress"),
        coordinating=_text(node, "isCoordinatingDiscoveryServer").lower() == "true",
        last_dirty=_lenient(node.get("lastDirtyTimestamp"), 0),
        asg_name=_text(node, "asgName"), app_group_name=_text(node, "appGroupName"),
        sid=_text(node, "sid"),
    )
    if not info.id:
        raise Invalid("Missing instanceId")
    if not host:
        raise Invalid("Missing hostname")
    if not app:
        raise Invalid("Missing appName")
    return info


def _text(node: Mapping[str, Any], name: str) -> str:
    value = node.get(name)
    if value is None:
        return ""
    if isinstance(value, dict):
        value = value.get("$", "")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value).strip()
    raise Invalid(f"{name} must be a text, got {type(value).__name__}")


def _number(text: str, default: int, name: str) -> int:
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise Invalid(f"{name} must be a whole number, got {text[:64]!r}") from None


def _lenient(value: Any, default: int) -> int:
    """A number as Eureka's lease and timestamp readers take it: unreadable is the default."""
    if isinstance(value, bool) or value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _port(value: Any, name: str, default: int, enabled: bool) -> tuple[int, bool]:
    if value is None:
        return default, enabled
    if isinstance(value, dict):
        number = _text(value, "$")
        flag = value.get("@enabled")
        if flag is not None:
            enabled = str(flag).strip().lower() == "true" if not isinstance(flag, bool) \
                else flag
    else:
        number = _text({name: value}, name)
    port = _number(number, default, name)
    if not 0 <= port <= 65535:
        raise Invalid(f"{name} {port} is out of range 0-65535")
    return port, enabled


def _data_center(value: Any) -> tuple[str, dict[str, str]]:
    if not isinstance(value, dict):
        return MY_OWN, {}
    name = _text(value, "name")
    known = _DATA_CENTERS.get(name.lower()) if name else MY_OWN
    if known is None:
        raise Invalid(f"dataCenterInfo.name {name[:64]!r} is none of MyOwn, Amazon, Netflix")
    return known, _metadata(value.get("metadata")) if known == AMAZON else {}


def _metadata(value: Any) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise Invalid("metadata must be an object of texts")
    out: dict[str, str] = {}
    for key, item in value.items():
        if key in ("@class", "$"):
            continue  # Jackson's and XStream's marks of an empty map
        if isinstance(item, dict | list):
            raise Invalid(f"metadata value of {key[:64]!r} must be a text")
        out[key] = "" if item is None else _text({key: item}, key)
    return out


# --- writing -----------------------------------------------------------------------------------


def instance_bytes(shown: Mapping[str, Any], as_json: bool) -> bytes:
    """One InstanceInfo: a JSON object, or an `<instance>` element."""
    if as_json:
        return _json.encode(shown)
    out = ["<instance>"]
    for key, value in shown.items():
        if key == "overriddenStatus":
            continue  # XStream writes the lower-case spelling only
        if key in ("port", "securePort"):
            out.append(f'<{key} enabled="{value["@enabled"]}">{value["$"]}</{key}>')
        elif key == "dataCenterInfo":
            out.append(f'<dataCenterInfo class="{_attr(value["@class"])}"><name>'
                       f'{_xml(value["name"])}</name>')
            if "metadata" in value:
                out.append(_metadata_xml(value["metadata"]))
            out.append("</dataCenterInfo>")
        elif key == "leaseInfo":
            out.append("<leaseInfo>")
            out += [f"<{k}>{v}</{k}>" for k, v in value.items()]
            out.append("</leaseInfo>")
        elif key == "metadata":
            out.append(_metadata_xml(value))
        else:
            out.append(f"<{key}>{_xml(str(value))}</{key}>")
    out.append("</instance>")
    return "".join(out).encode()


def _metadata_xml(metadata: Mapping[str, str]) -> str:
    if not metadata or "@class" in metadata:
        return '<metadata class="java.util.Collections$EmptyMap"/>'
    out = ["<metadata>"]
    for key, value in metadata.items():
        name = key.replace("_", "__").replace("$", "_-")
        if _XML_NAME.match(name):
            out.append(f"<{name}>{_xml(value)}</{name}>")
    out.append("</metadata>")
    return "".join(out)


def _xml(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text if text.isprintable() else _NOT_XML.sub("\ufffd", text)


def _attr(text: str) -> str:
    return _xml(text).replace('"', "&quot;")


def instance_answer(part: bytes, as_json: bool) -> bytes:
    """GET of one instance: `{"instance": ...}` or the `<instance>` element."""
    return b'{"instance":' + part + b"}" if as_json else part


def app_open(name: str, as_json: bool) -> bytes:
    """The start of one application, before its instances."""
    if as_json:
        return b'{"name":' + _json.encode(name) + b',"instance":['
    return f"<application><name>{_xml(name)}</name>".encode()


def app_close(as_json: bool) -> bytes:
    return b"]}" if as_json else b"</application>"


def app_answer(name: str, parts: Iterable[bytes], as_json: bool) -> bytes:
    """GET of one application: `{"application": {...}}` or `<application>`."""
    joined = (b"," if as_json else b"").join(parts)
    body = app_open(name, as_json) + joined + app_close(as_json)
    return b'{"application":' + body + b"}" if as_json else body


def apps_head(version: int, hashcode: str, as_json: bool) -> bytes:
    """The start of an Applications answer (full fetch, delta, VIP), before its applications."""
    if as_json:
        return (b'{"applications":{"versions__delta":"' + str(version).encode()
                + b'","apps__hashcode":' + _json.encode(hashcode) + b',"application":[')
    return (f"<applications><versions__delta>{version}</versions__delta>"
            f"<apps__hashcode>{_xml(hashcode)}</apps__hashcode>").encode()


def apps_tail(as_json: bool) -> bytes:
    return b"]}}" if as_json else b"</applications>"


class AppsParts:
    """An Applications answer built one application at a time (so a large one is built in
    steps), its head written once the hashcode is known: parts to send one after another."""

    __slots__ = ("_first", "as_json", "parts", "size")

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.parts: list[bytes] = [b""]  # the head, written by `finish`
        self.size = 0
        self._first = True

    def add(self, name: str, instances: list[bytes]) -> None:
        parts, as_json = self.parts, self.as_json
        start = len(parts)
        if as_json and not self._first:
            parts.append(b",")
        self._first = False
        parts.append(app_open(name, as_json))
        for i, part in enumerate(instances):
            if as_json and i:
                parts.append(b",")
            parts.append(part)
        parts.append(app_close(as_json))
        self.size += sum(map(len, parts[start:]))

    def finish(self, version: int, hashcode: str) -> list[bytes]:
        head = apps_head(version, hashcode, self.as_json)
        tail = apps_tail(self.as_json)
        self.parts[0] = head
        self.parts.append(tail)
        self.size += len(head) + len(tail)
        return self.parts


def apps_answer(version: int, hashcode: str, apps: Iterable[tuple[str, list[bytes]]],
                as_json: bool) -> list[bytes]:
    """A whole Applications answer, as parts to send one after another."""
    answer = AppsParts(as_json)
    for name, instances in apps:
        answer.add(name, instances)
    return answer.finish(version, hashcode)
