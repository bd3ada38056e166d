"""The checks an instance must pass before the registry takes it, and how a failure names it.

Rules
  * serviceId, instanceId and url must be present, not blank, printable and at most
    `max_id_length` (ids) or `max_url_length` (url) long. Any such url is taken, as the original
    takes it (`/api`, `10.0.0.5:8080`): the node stores it, clients judge it.
  * port is 0-65535 (0: not given).
  * No stored text holds a control character (NUL, line breaks, escape, DEL, U+0080-U+009F):
    ip, machineName, groupId, zoneId, regionId, protocol, status, healthCheckUrl and every
    metadata key and value; the message names the field (`bad-request`).
  * regionId must be the node's region (compared lower-case), else `no-permission`; with
    `allow_registry_from_other_zone` off, zoneId must be the node's zone too (a peer's writes
    and copies skip the zone check).
  * metadata holds at most `max_metadata_entries` entries, each key and value at most
    `max_field_length` long; so is every other text field. A lease duration the instance
    states (`artemis.lease_ttl`, core/lease.py) must be a positive number of seconds.
  * A heartbeat's instance the node does not hold is `data-not-found` even when it fails these
    checks (`unknown_first`), as the original looks the lease up before anything else: the
    Java SDK registers only what a heartbeat answered `data-not-found`, and its register then
    gets the reason.
  * Failures are `bad-request` unless said otherwise; the message starts with the instance as the
    original's `Instance.toString()` prints it (`describe`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from artemis.core.service_state import LEASE_TTL_KEY, stated_ttl
from artemis.wire import ErrorCode, FailedInstance, Instance

if TYPE_CHECKING:
    from artemis.core.registry import RegistryConfig

__all__ = ["InstanceChecks", "describe", "has_control", "null_text", "unknown_first"]

_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")


def has_control(text: str) -> bool:
    """Whether `text` holds a control character (Unicode category Cc)."""
    return not text.isprintable() and _CONTROL.search(text) is not None  # printable: fast no


def describe(instance: Instance) -> str:
    """The original's `Instance.toString()`: lower-case region/zone/service[/group]/instance."""
    parts = [instance.region_id, instance.zone_id, instance.service_id]
    if instance.group_id and not instance.group_id.isspace():
        parts.append(instance.group_id)
    parts.append(instance.instance_id)
    return "/".join(null_text(p) for p in parts).lower()


def null_text(text: str | None) -> str:
    """Text as the original's messages print it: Java's `null` for a missing value."""
    return "null" if text is None else text


def unknown_first(failed: list[FailedInstance], held: Callable[[Instance], Any],
                  not_existing: str) -> list[FailedInstance]:
    """A heartbeat's failures, those `bad-request` for an instance not `held` turned into
    `data-not-found` with the `not_existing` reason (see the rules)."""
    out = []
    for failure in failed:
        instance = failure.instance
        if (failure.error_code == ErrorCode.BAD_REQUEST and instance is not None
                and not _held(instance, held)):
            failure = FailedInstance(error_code=ErrorCode.DATA_NOT_FOUND,
                                     error_message=f"{describe(instance)}: {not_existing}",
                                     instance=instance)
        out.append(failure)
    return out


def _held(instance: Instance, held: Callable[[Instance], Any]) -> bool:
    ids = (instance.service_id, instance.instance_id)
    return all(isinstance(i, str) and i for i in ids) and held(instance) is not None


class InstanceChecks:
    """The rules of the module doc, with the limits of one registry's config."""

    __slots__ = ("_config", "_ids_limit", "_region", "_zone")

    def __init__(self, config: RegistryConfig) -> None:
        self._config = config
        self._region = config.region.lower()
        self._zone = config.zone.lower()
        self._ids_limit = config.max_id_length

    def problem(self, instance: Instance, check_zone: bool) -> tuple[str, str] | None:
        """Why this instance cannot be accepted (error code, reason), or None."""
        cfg = self._config
        sid, iid, url = instance.service_id, instance.instance_id, instance.url
        ids = self._ids_limit
        if not (sid and iid and url and len(sid) <= ids and len(iid) <= ids
                and len(url) <= cfg.max_url_length and (sid + iid + url).isprintable()
                and not sid.isspace() and not iid.isspace() and not url.isspace()):
            found = _id_problem(instance, cfg)  # the common case passed above, in C
            if found is not None:
                return found
        if not 0 <= instance.port <= 65535:
            return ErrorCode.BAD_REQUEST, f"port {instance.port} is out of range 0-65535."
        longest = cfg.max_field_length
        # The common case in C: every optional text short enough and printable; only a body
        # that fails it is looked at field by field, for the message naming the field.
        present = tuple(filter(None, (instance.ip, instance.machine_name, instance.group_id,
                                      instance.zone_id, instance.region_id, instance.protocol,
                                      instance.status, instance.health_check_url)))
        joined = "".join(present)  # all short (their sum is) and printable: nothing to find
        if present and (len(joined) > longest or not joined.isprintable()):
            found = _text_problem(instance, longest)
            if found is not None:
                return found
        region = instance.region_id
        if region is None or region.lower() != self._region:
            return ErrorCode.NO_PERMISSION, (
                f"regionId is not the same as the registry node. regionId: "
                f"{null_text(region)}, registry node.regionId: {cfg.region}")
        if check_zone and not cfg.allow_registry_from_other_zone:
            zone = instance.zone_id
            if zone is None or zone.lower() != self._zone:
                return ErrorCode.NO_PERMISSION, (
                    f"zoneId is not the same as the registry node. zoneId: "
                    f"{null_text(zone)}, registry node.zoneId: {cfg.zone}")
        metadata = instance.metadata
        if metadata:
            if len(metadata) > cfg.max_metadata_entries:
                return (ErrorCode.BAD_REQUEST,
                        f"metadata has more than {cfg.max_metadata_entries} entries.")
            entries = "".join(metadata) + "".join(metadata.values())
            if len(entries) > longest or not entries.isprintable():  # else: none can be wrong
                found = _metadata_problem(metadata, longest)
                if found is not None:
                    return found
            if LEASE_TTL_KEY in metadata and math.isnan(stated_ttl(instance) or 0.0):
                return ErrorCode.BAD_REQUEST, (
                    f"metadata {LEASE_TTL_KEY} must be a positive number of seconds, got "
                    f"{metadata[LEASE_TTL_KEY][:64]!r}.")
        return None

    def __repr__(self) -> str:
        return f"InstanceChecks(region={self._region!r}, zone={self._zone!r})"


def _text_problem(instance: Instance, longest: int) -> tuple[str, str] | None:
    """The first optional text field too long or holding a control character, in field order."""
    for name, text in (("ip", instance.ip), ("machineName", instance.machine_name),
                       ("groupId", instance.group_id), ("zoneId", instance.zone_id),
                       ("regionId", instance.region_id), ("protocol", instance.protocol),
                       ("status", instance.status),
                       ("healthCheckUrl", instance.health_check_url)):
        if text is not None:
            if len(text) > longest:
                return ErrorCode.BAD_REQUEST, f"{name} is longer than {longest} characters."
            if has_control(text):
                return ErrorCode.BAD_REQUEST, f"{name} contains control characters."
    return None


def _metadata_problem(metadata: dict[str, str], longest: int) -> tuple[str, str] | None:
    """The first metadata entry too long or holding a control character."""
    for key, value in metadata.items():
        if len(key) > longest or len(value) > longest:
            return ErrorCode.BAD_REQUEST, f"metadata entry {key[:64]!r} is longer than {longest}."
        if has_control(key):
            return (ErrorCode.BAD_REQUEST,
                    f"metadata key {key[:64]!r} contains control characters.")
        if has_control(value):
            return (ErrorCode.BAD_REQUEST,
                    f"metadata value of {key[:64]!r} contains control characters.")
    return None


def _id_problem(instance: Instance, cfg: RegistryConfig) -> tuple[str, str] | None:
    """The first of serviceId, instanceId and url that is blank, too long or holds a control
    character, in that order."""
    for name, value, limit in (("serviceId", instance.service_id, cfg.max_id_length),
                               ("instanceId", instance.instance_id, cfg.max_id_length),
                               ("url", instance.url, cfg.max_url_length)):
        if value is None or not value or value.isspace():
            return ErrorCode.BAD_REQUEST, f"{name} is null or blank."
        if len(value) > limit:
            return ErrorCode.BAD_REQUEST, f"{name} is longer than {limit} characters."
        if not value.isprintable():
            return ErrorCode.BAD_REQUEST, f"{name} contains control characters."
    return None
