"""Group tags, explicit group members, group operations and logical instances (§4.7, §7.3, §7.5
of the original): four tables.

  * `service_group_tag`: a group's tag and its value, unique on (group_id, tag);
    `service_group_instance`: an instance id a group names as a member, unique on (group_id,
    instance_id); `service_group_operation`: an operation in force on a group, unique on
    (group_id, operation). Each is unique through target_key, the SHA-256 (hex) of
    [str(group_id), the text key] (see `artemis.server.store.target_key`), so that text keys
    compare exactly on every backend (MariaDB's utf8mb4_bin ignores trailing spaces); an index
    on group_id serves a group's lookups.
  * `service_instance`: a service's logical instance (defined by an operator, not registered),
    unique on (service_id, instance_id) through target_key, the SHA-256 of those two ids; an
    index serves lookups by service. `metadata` is a JSON object of text, `group_id` the name of
    the instance's group (not a row id).
  * Writes of all four are audited in `audit_log` with the columns r0002 added.

Tables and columns follow r0001 and r0002: BIGINT autoincrement ids, varchar(256) ids, InnoDB
utf8mb4 with the binary collation on MySQL and MariaDB.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: Final = "0003"
down_revision: Final = "0002"
branch_labels: Final = None
depends_on: Final = None

_MYSQL = ("mysql", "mariadb")
TABLE_OPTIONS: Final[dict[str, Any]] = {
    f"{name}_{option}": value
    for name in _MYSQL
    for option, value in (("engine", "InnoDB"), ("charset", "utf8mb4"),
                          ("collate", "utf8mb4_bin"))
}
_TABLES: Final = ("service_group_tag", "service_group_instance", "service_group_operation",
                  "service_instance")


def _varchar(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL)


def _text() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(
        mysql.MEDIUMTEXT(charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL)


def _id() -> sa.Column[int]:
    # BIGINT autoincrement; SQLite autoincrements only an INTEGER PRIMARY KEY (the rowid)
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                     primary_key=True, autoincrement=True)


def _member_table(name: str, *columns: sa.Column[Any]) -> None:
    """A table of a group's members: (group_id, a text key[, more]) unique by target_key."""
    op.create_table(
        name,
        _id(),
        sa.Column("target_key", sa.String(64), nullable=False),
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        *columns,
        sa.UniqueConstraint("target_key", name=f"uq_{name}_key"),
        **TABLE_OPTIONS,
    )
    op.create_index(f"ix_{name}_group", name, ["group_id"])


def upgrade() -> None:
    _member_table("service_group_tag",
                  sa.Column("tag", _varchar(256), nullable=False),
                  sa.Column("value", _varchar(1024), nullable=False))
    _member_table("service_group_instance",
                  sa.Column("instance_id", _varchar(256), nullable=False))
    _member_table("service_group_operation",
                  sa.Column("operation", _varchar(128), nullable=False))
    op.create_table(
        "service_instance",
        _id(),
        sa.Column("target_key", sa.String(64), nullable=False),
        sa.Column("service_id", _varchar(256), nullable=False),
        sa.Column("instance_id", _varchar(256), nullable=False),
        sa.Column("ip", _varchar(256), nullable=True),
        sa.Column("machine_name", _varchar(256), nullable=True),
        sa.Column("metadata", _text(), nullable=True),
        sa.Column("port", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("protocol", _varchar(16), nullable=True),
        sa.Column("region_id", _varchar(256), nullable=False),
        sa.Column("zone_id", _varchar(256), nullable=True),
        sa.Column("group_id", _varchar(256), nullable=True),
        sa.Column("health_check_url", _varchar(512), nullable=True),
        sa.Column("url", _varchar(512), nullable=False),
        sa.Column("description", _varchar(1024), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("target_key", name="uq_service_instance_key"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_service_instance_service", "service_instance", ["service_id"])


def downgrade() -> None:
    # the audit rows of these kinds stay: they are plain rows of audit_log
    for table in reversed(_TABLES):
        op.drop_table(table)
