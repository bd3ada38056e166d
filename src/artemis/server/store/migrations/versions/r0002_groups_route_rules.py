"""Groups and route rules (§4.7 of the original): three tables, and four audit columns.

  * `service_group`: a service's group in one region and zone, unique on (service_id,
    region_id, zone_id, name) through target_key, the SHA-256 (hex) of those four ids (see
    `artemis.server.store.target_key`): a unique key over the columns themselves would pass
    InnoDB's 3072-byte key limit.
  * `service_route_rule`: a service's route rule, unique on (service_id, name) through
    target_key as well, so that keys compare exactly on every backend (MariaDB's utf8mb4_bin
    ignores trailing spaces).
  * `service_route_rule_group`: a route rule's group with its released `weight` and its staged
    `unreleased_weight`, unique on (route_rule_id, group_id); that key also serves lookups by
    route rule, an index serves lookups by group.
  * Groups and route rules are deleted softly (`deleted`); the audit log gets `group_id`,
    `route_rule_id`, `name` and `detail` (the JSON of the fields a write wrote), all nullable.

Tables and columns follow r0001: BIGINT autoincrement ids, varchar(256) ids, InnoDB utf8mb4 with
the binary collation on MySQL and MariaDB.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: Final = "0002"
down_revision: Final = "0001"
branch_labels: Final = None
depends_on: Final = None

_MYSQL = ("mysql", "mariadb")
TABLE_OPTIONS: Final[dict[str, Any]] = {
    f"{name}_{option}": value
    for name in _MYSQL
    for option, value in (("engine", "InnoDB"), ("charset", "utf8mb4"),
                          ("collate", "utf8mb4_bin"))
}
_AUDIT_COLUMNS: Final = ("group_id", "route_rule_id", "name", "detail")


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


def _lifecycle() -> list[sa.Column[Any]]:
    return [
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "service_group",
        _id(),
        sa.Column("target_key", sa.String(64), nullable=False),
        *(sa.Column(key, _varchar(256), nullable=False)
          for key in ("service_id", "region_id", "zone_id", "name")),
        sa.Column("app_id", _varchar(256), nullable=True),
        sa.Column("description", _varchar(1024), nullable=True),
        sa.Column("status", _varchar(32), nullable=False),
        *_lifecycle(),
        sa.UniqueConstraint("target_key", name="uq_service_group_key"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_service_group_service", "service_group", ["service_id"])
    op.create_table(
        "service_route_rule",
        _id(),
        sa.Column("target_key", sa.String(64), nullable=False),
        sa.Column("service_id", _varchar(256), nullable=False),
        sa.Column("name", _varchar(256), nullable=False),
        sa.Column("description", _varchar(1024), nullable=True),
        sa.Column("status", _varchar(32), nullable=False),
        sa.Column("strategy", _varchar(64), nullable=False,
                  server_default="weighted-round-robin"),
        *_lifecycle(),
        sa.UniqueConstraint("target_key", name="uq_service_route_rule_key"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_service_route_rule_service", "service_route_rule", ["service_id"])
    op.create_table(
        "service_route_rule_group",
        _id(),
        sa.Column("route_rule_id", sa.BigInteger(), nullable=False),
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=True),
        sa.Column("unreleased_weight", sa.Integer(), nullable=True),
        sa.UniqueConstraint("route_rule_id", "group_id", name="uq_service_route_rule_group_link"),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_service_route_rule_group_group", "service_route_rule_group",
                    ["group_id"])
    op.add_column("audit_log", sa.Column("group_id", sa.BigInteger(), nullable=True))
    op.add_column("audit_log", sa.Column("route_rule_id", sa.BigInteger(), nullable=True))
    op.add_column("audit_log", sa.Column("name", _varchar(256), nullable=True))
    op.add_column("audit_log", sa.Column("detail", _text(), nullable=True))


def downgrade() -> None:
    # SQLite drops a column by copying the table (batch mode); the others alter it in place
    with op.batch_alter_table("audit_log") as batch:
        for column in reversed(_AUDIT_COLUMNS):
            batch.drop_column(column)
    for table in ("service_route_rule_group", "service_route_rule", "service_group"):
        op.drop_table(table)
