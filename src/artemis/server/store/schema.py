"""The management database's tables, as the migrations leave them (a test compares the two).

Every table has a BIGINT id. A row that is unique on text keys holds `target_key`, the SHA-256
of its keys (see `target_key`), under a unique index, so keys compare exactly on every backend
(MariaDB's collations would fold case and trailing spaces). A new table is declared here and
created by a new migration in `migrations/versions`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

from artemis.server.store.limits import (
    MAX_DESCRIPTION,
    MAX_ID,
    MAX_NAME,
    MAX_PROTOCOL,
    MAX_REASON,
    MAX_STATUS,
    MAX_STRATEGY,
    MAX_TAG_VALUE,
    MAX_URL,
)

__all__ = [
    "AUDIT",
    "GROUPS",
    "GROUP_INSTANCES",
    "GROUP_OPERATIONS",
    "GROUP_TAGS",
    "INSTANCE_OPS",
    "LINKS",
    "META",
    "METADATA",
    "RULES",
    "SERVER_OPS",
    "SERVICE_INSTANCES",
    "ZONE_OPS",
    "target_key",
]

_MYSQL: Final = ("mysql", "mariadb")
# MySQL and MariaDB tables are InnoDB, utf8mb4 with the binary collation (see r0001)
_OPTIONS: Final[dict[str, Any]] = {
    f"{name}_{option}": value
    for name in _MYSQL
    for option, value in (("engine", "InnoDB"), ("charset", "utf8mb4"),
                          ("collate", "utf8mb4_bin"))
}
METADATA: Final = MetaData()


def _varchar(length: int) -> TypeEngine[str]:
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL)


def _text() -> TypeEngine[str]:
    return Text().with_variant(
        mysql.MEDIUMTEXT(charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL)


def _id() -> Column[int]:
    # BIGINT autoincrement; SQLite autoincrements only an INTEGER PRIMARY KEY (the rowid)
    return Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                  autoincrement=True)


def _key() -> Column[str]:
    return Column("target_key", String(64), nullable=False)


META: Final = Table(
    "artemis_meta", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False), **_OPTIONS)


def target_key(*ids: str) -> str:
    """The unique key of a row: SHA-256 (hex) of its key values as a JSON list."""
    encoded = json.dumps(list(ids), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def _operation_table(name: str, *ids: str) -> Table:
    return Table(
        name, METADATA,
        _id(),
        _key(),
        *(Column(column, _varchar(MAX_ID), nullable=False) for column in ids),
        Column("operation", _varchar(MAX_NAME), nullable=False),
        Column("operator_id", _varchar(MAX_NAME), nullable=False),
        Column("created_ms", BigInteger, nullable=False),
        UniqueConstraint("target_key", "operation", name=f"uq_{name}_target"),
        **_OPTIONS,
    )


INSTANCE_OPS: Final = _operation_table(
    "instance_operation", "region_id", "service_id", "instance_id")
SERVER_OPS: Final = _operation_table("server_operation", "region_id", "server_id")
ZONE_OPS: Final = _operation_table("zone_operation", "region_id", "service_id", "zone_id")
AUDIT: Final = Table(
    "audit_log", METADATA,
    _id(),
    Column("created_ms", BigInteger, nullable=False),
    Column("actor", _varchar(MAX_NAME), nullable=False),
    Column("operator_id", _varchar(MAX_NAME), nullable=False),
    Column("kind", _varchar(32), nullable=False),
    Column("region_id", _varchar(MAX_ID), nullable=False),
    *(Column(column, _varchar(MAX_ID)) for column in
      ("service_id", "instance_id", "server_id", "zone_id")),
    Column("operation", _varchar(MAX_NAME), nullable=False),
    Column("complete", Boolean, nullable=False),
    Column("reason", _varchar(MAX_REASON)),
    Column("extensions", _text(), nullable=False),
    Column("before", _text(), nullable=False),
    Column("after", _text(), nullable=False),
    Column("group_id", BigInteger),
    Column("route_rule_id", BigInteger),
    Column("name", _varchar(MAX_ID)),
    Column("detail", _text()),
    Index("ix_audit_log_kind_created", "kind", "created_ms"),
    Index("ix_audit_log_service", "service_id"),
    **_OPTIONS,
)


def _lifecycle() -> list[Column[Any]]:
    return [
        Column("deleted", Boolean, nullable=False, server_default=false()),
        Column("created_ms", BigInteger, nullable=False),
        Column("updated_ms", BigInteger, nullable=False),
    ]


GROUPS: Final = Table(
    "service_group", METADATA,
    _id(),
    _key(),
    *(Column(column, _varchar(MAX_ID), nullable=False)
      for column in ("service_id", "region_id", "zone_id", "name")),
    Column("app_id", _varchar(MAX_ID)),
    Column("description", _varchar(MAX_DESCRIPTION)),
    Column("status", _varchar(MAX_STATUS), nullable=False),
    *_lifecycle(),
    UniqueConstraint("target_key", name="uq_service_group_key"),
    Index("ix_service_group_service", "service_id"),
    **_OPTIONS,
)
RULES: Final = Table(
    "service_route_rule", METADATA,
    _id(),
    _key(),
    Column("service_id", _varchar(MAX_ID), nullable=False),
    Column("name", _varchar(MAX_ID), nullable=False),
    Column("description", _varchar(MAX_DESCRIPTION)),
    Column("status", _varchar(MAX_STATUS), nullable=False),
    Column("strategy", _varchar(MAX_STRATEGY), nullable=False,
           server_default="weighted-round-robin"),
    *_lifecycle(),
    UniqueConstraint("target_key", name="uq_service_route_rule_key"),
    Index("ix_service_route_rule_service", "service_id"),
    **_OPTIONS,
)
LINKS: Final = Table(
    "service_route_rule_group", METADATA,
    _id(),
    Column("route_rule_id", BigInteger, nullable=False),
    Column("group_id", BigInteger, nullable=False),
    Column("weight", Integer),
    Column("unreleased_weight", Integer),
    UniqueConstraint("route_rule_id", "group_id", name="uq_service_route_rule_group_link"),
    Index("ix_service_route_rule_group_group", "group_id"),
    **_OPTIONS,
)


def _member_table(name: str, *columns: Column[Any]) -> Table:
    return Table(
        name, METADATA,
        _id(),
        _key(),
        Column("group_id", BigInteger, nullable=False),
        *columns,
        UniqueConstraint("target_key", name=f"uq_{name}_key"),
        Index(f"ix_{name}_group", "group_id"),
        **_OPTIONS,
    )


GROUP_TAGS: Final = _member_table(
    "service_group_tag", Column("tag", _varchar(MAX_ID), nullable=False),
    Column("value", _varchar(MAX_TAG_VALUE), nullable=False))
GROUP_INSTANCES: Final = _member_table(
    "service_group_instance", Column("instance_id", _varchar(MAX_ID), nullable=False))
GROUP_OPERATIONS: Final = _member_table(
    "service_group_operation", Column("operation", _varchar(MAX_NAME), nullable=False))
SERVICE_INSTANCES: Final = Table(
    "service_instance", METADATA,
    _id(),
    _key(),
    Column("service_id", _varchar(MAX_ID), nullable=False),
    Column("instance_id", _varchar(MAX_ID), nullable=False),
    Column("ip", _varchar(MAX_ID)),
    Column("machine_name", _varchar(MAX_ID)),
    Column("metadata", _text()),
    Column("port", Integer, nullable=False, server_default="0"),
    Column("protocol", _varchar(MAX_PROTOCOL)),
    Column("region_id", _varchar(MAX_ID), nullable=False),
    Column("zone_id", _varchar(MAX_ID)),
    Column("group_id", _varchar(MAX_ID)),
    Column("health_check_url", _varchar(MAX_URL)),
    Column("url", _varchar(MAX_URL), nullable=False),
    Column("description", _varchar(MAX_DESCRIPTION)),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    UniqueConstraint("target_key", name="uq_service_instance_key"),
    Index("ix_service_instance_service", "service_id"),
    **_OPTIONS,
)
