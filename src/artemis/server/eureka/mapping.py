"""How a Eureka instance is an instance of this registry, and how any instance looks to Eureka.

No I/O here: a Eureka `InstanceInfo` (as `codec.py` reads it) becomes a `wire.Instance` the
registry holds like any other, and any held instance (registered through Eureka or through the
Artemis API) is shown back as an `InstanceInfo` (a dict in the field order Eureka writes).

Rules of the mapping (docs/compatibility.md has the table)
  * serviceId is the app name upper-cased, as Eureka's InstanceInfo keeps it; the registry groups
    services case-insensitively, so `demo.service` registered through Artemis and `DEMO.SERVICE`
    through Eureka are one service. instanceId is Eureka's id: `instanceId`, else `hostName`.
  * ip is `ipAddr`, machineName `hostName`; port and protocol are the unsecure port when it is
    enabled, else the secure port (https); url is `scheme://ipAddr:port` (hostName when there is
    no ipAddr), what an Artemis client calls. healthCheckUrl is Eureka's (or the secure one).
  * status is Eureka's status lower-cased (`up`, `down`, `starting`, `out_of_service`,
    `unknown`); regionId the node's; zoneId the metadata's `zone` (Spring Cloud's), else an
    Amazon data center's `availability-zone`, else the node's zone.
  * What has no Artemis field is kept in metadata under `eureka.` (vipAddress, ports, page URLs,
    lastDirtyTimestamp, an overridden status, data center...), only when it is not Eureka's
    default, and the lease duration (`leaseInfo.durationInSecs`, 90 when not given) under
    `artemis.lease_ttl`, which the core honours (core/lease.py). A client's own metadata may not
    use these keys. Showing an instance back hides them again.
  * Statuses from Artemis: `up` or none is UP, `down` and `unhealthy` DOWN, `starting` STARTING,
    `out_of_service` OUT_OF_SERVICE, anything else UNKNOWN (as Eureka reads an unknown status).
  * An overridden status (PUT .../status) wins over the client's UP (Eureka's rules: a client's
    own DOWN or STARTING still wins over it), and stays through the client's re-registrations
    for as long as the lease lives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from artemis.core.service_state import LEASE_TTL_KEY
from artemis.wire import Instance

__all__ = ["OUT_OF_SERVICE", "STATUSES", "UNKNOWN", "UP", "EurekaInstance", "Facts", "Invalid",
           "effective_status", "eureka_status", "is_reserved", "override_of", "show",
           "status_named", "to_artemis", "user_metadata", "vips", "with_metadata",
           "with_status"]

UP: Final = "UP"
DOWN: Final = "DOWN"
STARTING: Final = "STARTING"
OUT_OF_SERVICE: Final = "OUT_OF_SERVICE"
UNKNOWN: Final = "UNKNOWN"
STATUSES: Final = (UP, DOWN, STARTING, OUT_OF_SERVICE, UNKNOWN)

PREFIX: Final = "eureka."
K_VIP: Final = "eureka.vipAddress"
K_SVIP: Final = "eureka.secureVipAddress"
K_PORT: Final = "eureka.port"
K_PORT_ON: Final = "eureka.portEnabled"
K_SPORT: Final = "eureka.securePort"
K_SPORT_ON: Final = "eureka.securePortEnabled"
K_HOME: Final = "eureka.homePageUrl"
K_STATUS_PAGE: Final = "eureka.statusPageUrl"
K_SHEALTH: Final = "eureka.secureHealthCheckUrl"
K_COUNTRY: Final = "eureka.countryId"
K_DC: Final = "eureka.dataCenter"
K_DC_META: Final = "eureka.dataCenter."  # an Amazon data center's metadata, one key each
K_RENEWAL: Final = "eureka.renewalIntervalInSecs"
K_OVERRIDE: Final = "eureka.overriddenStatus"
K_DIRTY: Final = "eureka.lastDirtyTimestamp"
K_ASG: Final = "eureka.asgName"
K_GROUP: Final = "eureka.appGroupName"
K_SID: Final = "eureka.sid"
K_COORDINATING: Final = "eureka.isCoordinatingDiscoveryServer"

DEFAULT_DURATION: Final = 90  # Eureka's LeaseInfo default, when a client states none
DEFAULT_RENEWAL: Final = 30
MY_OWN: Final = "MyOwn"
AMAZON: Final = "Amazon"
DC_CLASSES: Final = {AMAZON: "com.netflix.appinfo.AmazonInfo"}
DEFAULT_DC_CLASS: Final = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
EMPTY_MAP: Final = {"@class": "java.util.Collections$EmptyMap"}

_TO_ARTEMIS: Final = {s: s.lower() for s in STATUSES}
_FROM_ARTEMIS: Final = {"up": UP, "down": DOWN, "unhealthy": DOWN, "starting": STARTING,
                        "out_of_service": OUT_OF_SERVICE, "unknown": UNKNOWN, "": UP}


class Invalid(ValueError):
    """A Eureka request the registry cannot take; the message says why (HTTP 400)."""


def status_named(text: str | None, default: str = UNKNOWN) -> str:
    """Eureka's `InstanceStatus.toEnum`: a status name (any case), else `default`."""
    if not text:
        return default
    name = text.strip().upper()
    return name if name in _TO_ARTEMIS else UNKNOWN


def eureka_status(artemis_status: str | None) -> str:
    """The Eureka status of an instance's Artemis status (rules in the module doc)."""
    if artemis_status is None:
        return UP
    return _FROM_ARTEMIS.get(artemis_status.strip().lower(), UNKNOWN)


def effective_status(own: str, override: str) -> str:
    """Eureka's status rules (DownOrStarting, OverrideExists, AlwaysMatch): the client's own
    status unless it is UP or OUT_OF_SERVICE and an override is set."""
    if own not in (UP, OUT_OF_SERVICE) or override == UNKNOWN:
        return own
    return override


def is_reserved(key: str) -> bool:
    """Whether a metadata key belongs to the mapping, not to the client."""
    return key.startswith(PREFIX) or key == LEASE_TTL_KEY


def user_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The metadata an instance's client gave, without the mapping's keys."""
    if not metadata:
        return {}
    return {k: v for k, v in metadata.items() if k[:7] != PREFIX and k != LEASE_TTL_KEY}


def override_of(instance: Instance) -> str:
    """The instance's overridden status (UNKNOWN: none)."""
    metadata = instance.metadata
    return status_named(metadata.get(K_OVERRIDE) if metadata else None)


def dirty_of(instance: Instance) -> int | None:
    """The `lastDirtyTimestamp` its Eureka client registered it with; None if it came through
    the Artemis API."""
    metadata = instance.metadata
    value = metadata.get(K_DIRTY) if metadata else None
    return int(value) if value is not None and value.isdigit() else None


@dataclass(frozen=True, slots=True)
class EurekaInstance:
    """An `InstanceInfo` as a Eureka client registers it: the fields this registry keeps."""

    app: str
    instance_id: str
    host_name: str
    ip_addr: str = ""
    status: str = UP
    overridden_status: str = UNKNOWN
    port: int = 7001
    port_enabled: bool = True
    secure_port: int = 7002
    secure_port_enabled: bool = False
    country_id: int = 1
    data_center: str = MY_OWN
    data_center_metadata: dict[str, str] = field(default_factory=dict)
    renewal_interval: int = DEFAULT_RENEWAL
    duration: int = DEFAULT_DURATION
    metadata: dict[str, str] = field(default_factory=dict)
    home_page_url: str = ""
    status_page_url: str = ""
    health_check_url: str = ""
    secure_health_check_url: str = ""
    vip_address: str = ""
    secure_vip_address: str = ""
    coordinating: bool = False
    last_dirty: int = 0
    asg_name: str = ""
    app_group_name: str = ""
    sid: str = ""

    @property
    def id(self) -> str:
        """Eureka's `InstanceInfo.getId()`: the instanceId, else an Amazon instance's id, else
        the host name."""
        if self.instance_id:
            return self.instance_id
        if self.data_center == AMAZON and self.data_center_metadata.get("instance-id"):
            return self.data_center_metadata["instance-id"]
        return self.host_name


def to_artemis(info: EurekaInstance, region: str, zone: str,
               override: str = UNKNOWN) -> Instance:
    """The registry's instance for a Eureka registration (rules in the module doc);
    `override` is the live lease's overridden status, kept when the client states none."""
    for key in info.metadata:
        if is_reserved(key):
            raise Invalid(f"metadata key {key!r} is reserved (keys starting with {PREFIX} and "
                          f"{LEASE_TTL_KEY} hold what the registry keeps of Eureka's fields)")
    if info.overridden_status != UNKNOWN:
        override = info.overridden_status
    secure = info.secure_port_enabled and not info.port_enabled
    port = info.secure_port if secure else info.port
    for name, value in (("port", info.port), ("securePort", info.secure_port)):
        if not 0 <= value <= 65535:
            raise Invalid(f"{name} {value} is out of range 0-65535")
    scheme = "https" if secure else "http"
    host = info.ip_addr or info.host_name
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    meta = dict(info.metadata)
    entries = (
        (K_VIP, info.vip_address), (K_SVIP, info.secure_vip_address),
        (K_PORT, str(info.port)), (K_PORT_ON, _flag(info.port_enabled)),
        (K_SPORT, str(info.secure_port)), (K_SPORT_ON, _flag(info.secure_port_enabled)),
        (K_HOME, info.home_page_url), (K_STATUS_PAGE, info.status_page_url),
        (K_SHEALTH, info.secure_health_check_url),
        (K_COUNTRY, "" if info.country_id == 1 else str(info.country_id)),
        (K_DC, "" if info.data_center == MY_OWN else info.data_center),
        (K_RENEWAL, "" if info.renewal_interval == DEFAULT_RENEWAL
         else str(info.renewal_interval)),
        (K_OVERRIDE, "" if override == UNKNOWN else override),
        (K_DIRTY, str(info.last_dirty)),
        (K_ASG, info.asg_name), (K_GROUP, info.app_group_name),
        (K_SID, "" if info.sid in ("na", "unknown") else info.sid),
        (K_COORDINATING, "true" if info.coordinating else ""),
    )
    meta.update((key, value) for key, value in entries if value)
    if info.data_center == AMAZON:
        meta.update((K_DC_META + k, v) for k, v in info.data_center_metadata.items())
    meta[LEASE_TTL_KEY] = str(info.duration if info.duration > 0 else DEFAULT_DURATION)
    zone_id = (info.metadata.get("zone")
               or (info.data_center_metadata.get("availability-zone")
                   if info.data_center == AMAZON else None) or zone)
    return Instance(
        health_check_url=info.health_check_url or info.secure_health_check_url or None,
        instance_id=info.id,
        ip=info.ip_addr or None,
        machine_name=info.host_name,
        metadata=meta,
        port=port,
        protocol=scheme,
        region_id=region,
        service_id=info.app.upper(),
        status=_TO_ARTEMIS[effective_status(info.status, override)],
        url=f"{scheme}://{host}:{port}",
        zone_id=zone_id,
    )


def with_status(instance: Instance, status: str, override: str) -> Instance:
    """`instance` showing `status`, with `override` as its overridden status (UNKNOWN: none)."""
    meta = dict(instance.metadata or {})
    if override == UNKNOWN:
        meta.pop(K_OVERRIDE, None)
    else:
        meta[K_OVERRIDE] = override
    return msgspec.structs.replace(instance, status=_TO_ARTEMIS[status], metadata=meta or None)


def with_metadata(instance: Instance, entries: Mapping[str, str],
                  dirty: int | None = None) -> Instance:
    """`instance` with these metadata entries set (a client's keys only), and its
    lastDirtyTimestamp raised to `dirty` when later."""
    for key in entries:
        if is_reserved(key):
            raise Invalid(f"metadata key {key!r} is reserved")
    meta = {**(instance.metadata or {}), **entries}
    held = dirty_of(instance)
    if dirty is not None and held is not None and dirty > held:
        meta[K_DIRTY] = str(dirty)
    return msgspec.structs.replace(instance, metadata=meta or None)


def _flag(on: bool) -> str:
    return "true" if on else "false"


def vips(instance: Instance) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The instance's VIP and secure VIP addresses, lower-case (an instance registered through
    the Artemis API answers to its serviceId)."""
    metadata = instance.metadata or {}
    if K_DIRTY in metadata:
        vip, svip = metadata.get(K_VIP, ""), metadata.get(K_SVIP, "")
    else:
        vip = svip = instance.service_id or ""
    return (tuple(v.strip().lower() for v in vip.split(",") if v.strip()),
            tuple(v.strip().lower() for v in svip.split(",") if v.strip()))


@dataclass(frozen=True, slots=True)
class Facts:
    """What the lease says of an instance (epoch ms) and how long it lasts."""

    registered_ms: int
    renewed_ms: int
    duration: float


def show(instance: Instance, facts: Facts, action: str = "ADDED") -> dict[str, Any]:
    """An instance as Eureka shows it: an InstanceInfo, in the order Eureka writes its fields
    (JSON types; codec.py writes it as JSON or XML)."""
    meta = instance.metadata or {}
    eureka = K_DIRTY in meta
    host, ip = instance.machine_name, instance.ip
    parts = None
    if not (eureka and host and ip):
        parts = urlsplit(instance.url or "")
        url_host = parts.hostname or ""
        host = host or ip or url_host
        ip = ip or url_host or host
    status = eureka_status(instance.status)
    if eureka or parts is None:
        port, port_on = _int(meta.get(K_PORT), 7001), meta.get(K_PORT_ON) == "true"
        sport, sport_on = _int(meta.get(K_SPORT), 7002), meta.get(K_SPORT_ON) == "true"
        home = meta.get(K_HOME, "")
        vip, svip = meta.get(K_VIP, ""), meta.get(K_SVIP, "")
    else:
        secure = (instance.protocol or parts.scheme or "http").lower() == "https"
        try:
            url_port = parts.port
        except ValueError:
            url_port = None
        given = instance.port or url_port or (443 if secure else 80)
        port, port_on = (0, False) if secure else (given, True)
        sport, sport_on = (given, True) if secure else (443, False)
        home = instance.url or ""
        vip = svip = instance.service_id or ""
    data_center = meta.get(K_DC, MY_OWN)
    dc: dict[str, Any] = {"@class": DC_CLASSES.get(data_center, DEFAULT_DC_CLASS),
                          "name": data_center}
    if data_center == AMAZON:
        dc["metadata"] = {k[len(K_DC_META):]: v for k, v in meta.items()
                          if k.startswith(K_DC_META)}
    registered = facts.registered_ms
    shown: dict[str, Any] = {
        "instanceId": instance.instance_id or host,
        "hostName": host,
        "app": (instance.service_id or "").upper(),
        "ipAddr": ip,
    }
    if K_SID in meta:
        shown["sid"] = meta[K_SID]
    override = status_named(meta.get(K_OVERRIDE))
    shown.update({
        "status": status,
        "overriddenStatus": override,
        "overriddenstatus": override,
        "port": {"$": port, "@enabled": _flag(port_on)},
        "securePort": {"$": sport, "@enabled": _flag(sport_on)},
        "countryId": _int(meta.get(K_COUNTRY), 1),
        "dataCenterInfo": dc,
        "leaseInfo": {
            "renewalIntervalInSecs": _int(meta.get(K_RENEWAL), DEFAULT_RENEWAL),
            "durationInSecs": max(1, round(facts.duration)),
            "registrationTimestamp": registered,
            "lastRenewalTimestamp": facts.renewed_ms,
            "evictionTimestamp": 0,
            "serviceUpTimestamp": registered if status == UP else 0,
        },
        "metadata": user_metadata(meta) or EMPTY_MAP,
        "homePageUrl": home,
        "statusPageUrl": meta.get(K_STATUS_PAGE, ""),
        "healthCheckUrl": instance.health_check_url or "",
    })
    if K_SHEALTH in meta:
        shown["secureHealthCheckUrl"] = meta[K_SHEALTH]
    shown.update({
        "vipAddress": vip,
        "secureVipAddress": svip,
        "isCoordinatingDiscoveryServer": meta.get(K_COORDINATING, "false"),
        "lastUpdatedTimestamp": str(registered),
        "lastDirtyTimestamp": meta.get(K_DIRTY, str(registered)),
        "actionType": action,
    })
    if K_ASG in meta:
        shown["asgName"] = meta[K_ASG]
    if K_GROUP in meta:
        shown["appGroupName"] = meta[K_GROUP]
    return shown


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default
