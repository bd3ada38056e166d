"""The checks of every argument a store call takes, before anything is written.

Values are always bound parameters. Text must not hold NUL or lone surrogates, and must fit its
column (checked here, since SQLite does not; the bounds are `limits`): ids and names 256
characters, operation, operator and actor 128, reason and description 1024, extensions 2048,
status 32, strategy 64; weights are 0 to 10,000; a tag's value 1024, a logical instance's url
and health_check_url 512, protocol 16, port 0 to 65535, metadata at most 64 entries whose keys
and values are at most 1024 characters each. A call that refuses an argument raises
StoreValueError naming it and writes nothing, not even the version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any, Final

from artemis.server.store.errors import StoreValueError
from artemis.server.store.limits import (
    MAX_DESCRIPTION,
    MAX_EXTENSIONS,
    MAX_ID,
    MAX_METADATA_ENTRIES,
    MAX_METADATA_TEXT,
    MAX_NAME,
    MAX_PORT,
    MAX_PROTOCOL,
    MAX_REASON,
    MAX_ROW_ID,
    MAX_STATUS,
    MAX_STRATEGY,
    MAX_TAG_VALUE,
    MAX_URL,
    MAX_WEIGHT,
)
from artemis.server.store.records import (
    GROUP_KEYS,
    RULE_KEYS,
    SERVICE_INSTANCE_FIELDS,
    SERVICE_INSTANCE_KEYS,
    Context,
    GroupSpec,
    RouteRuleSpec,
    ServiceInstanceSpec,
)

__all__ = [
    "STATUSES",
    "check_context",
    "check_group",
    "check_ids",
    "check_members",
    "check_optional",
    "check_pairs",
    "check_row_id",
    "check_rule",
    "check_service_instance",
    "check_text",
    "check_weight",
    "write_context",
]

STATUSES: Final = frozenset({"active", "inactive"})


def check_text(name: str, value: str, limit: int) -> None:
    if not isinstance(value, str):
        raise StoreValueError(f"{name} must be text, not {type(value).__name__}")
    if len(value) > limit:
        raise StoreValueError(f"{name} is longer than {limit} characters")
    if "\x00" in value:
        raise StoreValueError(f"{name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise StoreValueError(f"{name} is not valid Unicode text") from None


def check_optional(name: str, value: str | None, limit: int) -> None:
    if value is not None:
        check_text(name, value, limit)


def check_context(context: Context) -> None:
    check_text("operator_id", context.operator_id, MAX_NAME)
    check_text("actor", context.actor, MAX_NAME)
    check_text("extensions", context.extensions, MAX_EXTENSIONS)
    if context.reason is not None:
        check_text("reason", context.reason, MAX_REASON)


def write_context(actor: str, operator_id: str, reason: str | None, extensions: str,
                  now_ms: int) -> Context:
    """The audit context of a write, once it fits."""
    context = Context(actor, operator_id, reason, extensions, now_ms)
    check_context(context)
    if type(now_ms) is not int:
        raise StoreValueError("now_ms must be an int")
    return context


def _check_status(status: str) -> None:
    check_text("status", status, MAX_STATUS)
    if status not in STATUSES:
        raise StoreValueError(f"status must be active or inactive, not {status!r}")


def check_group(spec: GroupSpec) -> dict[str, Any]:
    """The columns of a group to write, once its values fit."""
    if not isinstance(spec, GroupSpec):
        raise StoreValueError(f"a group must be a GroupSpec, not {type(spec).__name__}")
    for name in GROUP_KEYS:
        check_text(name, getattr(spec, name), MAX_ID)
    check_optional("app_id", spec.app_id, MAX_ID)
    check_optional("description", spec.description, MAX_DESCRIPTION)
    _check_status(spec.status)
    return asdict(spec)


def check_rule(spec: RouteRuleSpec) -> dict[str, Any]:
    """The columns of a route rule to write, once its values fit."""
    if not isinstance(spec, RouteRuleSpec):
        raise StoreValueError(f"a route rule must be a RouteRuleSpec, not {type(spec).__name__}")
    for name in RULE_KEYS:
        check_text(name, getattr(spec, name), MAX_ID)
    check_optional("description", spec.description, MAX_DESCRIPTION)
    _check_status(spec.status)
    check_text("strategy", spec.strategy, MAX_STRATEGY)
    return asdict(spec)


def check_row_id(name: str, value: object) -> int:
    if type(value) is not int:
        raise StoreValueError(f"{name} must be an int, not {type(value).__name__}")
    return value


def check_weight(value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_WEIGHT:
        shown = repr(value) if type(value) is int else type(value).__name__
        raise StoreValueError(f"a weight must be an int from 0 to {MAX_WEIGHT}, not {shown}")
    return value


def check_pairs(items: Iterable[object], size: int) -> list[tuple[Any, ...]]:
    """Route rule links as tuples of `size` items: (route_rule_id, group_id[, weight])."""
    checked: list[tuple[Any, ...]] = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != size:
            raise StoreValueError(f"a route rule group must be a tuple of {size} values")
        check_row_id("route_rule_id", item[0])
        check_row_id("group_id", item[1])
        if size == 3:
            check_weight(item[2])
        checked.append(item)
    return checked


def check_ids(name: str, ids: Iterable[object]) -> list[int]:
    """Row ids, each once, in the order given; ids no BIGINT holds cannot exist: dropped."""
    found: dict[int, None] = {}
    for value in ids:
        row_id = check_row_id(name, value)
        if -MAX_ROW_ID - 1 <= row_id <= MAX_ROW_ID:
            found[row_id] = None
    return list(found)


def check_members(what: str, key: str, limit: int, items: Iterable[object], size: int,
                  ) -> list[dict[str, Any]]:
    """A group's members (`what`) as columns: tuples of `size` items (group_id, the text of
    column `key`[, value])."""
    checked: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != size:
            raise StoreValueError(f"a {what} must be a tuple of {size} values")
        values = {"group_id": check_row_id("group_id", item[0]), key: item[1]}
        check_text(key, item[1], limit)
        if size == 3:
            check_text("value", item[2], MAX_TAG_VALUE)
            values["value"] = item[2]
        checked.append(values)
    return checked


def _check_metadata(metadata: object) -> dict[str, str] | None:
    """A copy of a logical instance's metadata, once it fits."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise StoreValueError(f"metadata must be a mapping, not {type(metadata).__name__}")
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise StoreValueError(f"metadata holds more than {MAX_METADATA_ENTRIES} entries")
    for key, value in metadata.items():
        check_text("a metadata key", key, MAX_METADATA_TEXT)
        check_text("a metadata value", value, MAX_METADATA_TEXT)
    return dict(metadata)


def check_service_instance(spec: ServiceInstanceSpec) -> dict[str, Any]:
    """The columns of a logical instance to write, once its values fit."""
    if not isinstance(spec, ServiceInstanceSpec):
        raise StoreValueError(
            f"a logical instance must be a ServiceInstanceSpec, not {type(spec).__name__}")
    for name in ("service_id", "instance_id", "region_id"):
        check_text(name, getattr(spec, name), MAX_ID)
    check_text("url", spec.url, MAX_URL)
    for name in ("ip", "machine_name", "zone_id", "group_id"):
        check_optional(name, getattr(spec, name), MAX_ID)
    check_optional("protocol", spec.protocol, MAX_PROTOCOL)
    check_optional("health_check_url", spec.health_check_url, MAX_URL)
    check_optional("description", spec.description, MAX_DESCRIPTION)
    if type(spec.port) is not int or not 0 <= spec.port <= MAX_PORT:
        shown = repr(spec.port) if type(spec.port) is int else type(spec.port).__name__
        raise StoreValueError(f"port must be an int from 0 to {MAX_PORT}, not {shown}")
    values = {name: getattr(spec, name)
              for name in (*SERVICE_INSTANCE_KEYS, *SERVICE_INSTANCE_FIELDS)}
    values["metadata"] = _check_metadata(spec.metadata)
    return values
