"""Initial schema: the version row, the three operation tables and the audit log.

Every id column is varchar(256), operation/operator/actor varchar(128), reason varchar(1024);
free text is text (MEDIUMTEXT on MySQL). On MySQL and MariaDB the tables are InnoDB, utf8mb4 with
the binary collation, so ids compare exactly as on PostgreSQL and SQLite (the default collation
would make 'a' equal 'A' and 'e' equal 'é'; trailing spaces are still ignored there).

An operation table is unique on (target_key, operation), where target_key is the SHA-256 (hex) of
the target's ids (see `artemis.server.store.target_key`): a unique key over the id columns
themselves would pass InnoDB's 3072-byte key limit (4 x 256 characters x 4 bytes).
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: Final = "0001"
down_revision: Final = None
branch_labels: Final = None
depends_on: Final = None

_MYSQL = ("mysql", "mariadb")
TABLE_OPTIONS: Final[dict[str, Any]] = {
    f"{name}_{option}": value
    for name in _MYSQL
    for option, value in (("engine", "InnoDB"), ("charset", "utf8mb4"),
                          ("collate", "utf8mb4_bin"))
}


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


def _operation_table(name: str, *keys: str) -> None:
    op.create_table(
        name,
        _id(),
        sa.Column("target_key", sa.String(64), nullable=False),
        *(sa.Column(key, _varchar(256), nullable=False) for key in keys),
        sa.Column("operation", _varchar(128), nullable=False),
        sa.Column("operator_id", _varchar(128), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("target_key", "operation", name=f"uq_{name}_target"),
        **TABLE_OPTIONS,
    )


def upgrade() -> None:
    meta = op.create_table(
        "artemis_meta",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        **TABLE_OPTIONS,
    )
    op.bulk_insert(meta, [{"id": 1, "version": 0}])
    _operation_table("instance_operation", "region_id", "service_id", "instance_id")
    _operation_table("server_operation", "region_id", "server_id")
    _operation_table("zone_operation", "region_id", "service_id", "zone_id")
    op.create_table(
        "audit_log",
        _id(),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", _varchar(128), nullable=False),
        sa.Column("operator_id", _varchar(128), nullable=False),
        sa.Column("kind", _varchar(32), nullable=False),
        sa.Column("region_id", _varchar(256), nullable=False),
        sa.Column("service_id", _varchar(256), nullable=True),
        sa.Column("instance_id", _varchar(256), nullable=True),
        sa.Column("server_id", _varchar(256), nullable=True),
        sa.Column("zone_id", _varchar(256), nullable=True),
        sa.Column("operation", _varchar(128), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("reason", _varchar(1024), nullable=True),
        sa.Column("extensions", _text(), nullable=False),
        sa.Column("before", _text(), nullable=False),
        sa.Column("after", _text(), nullable=False),
        **TABLE_OPTIONS,
    )
    op.create_index("ix_audit_log_kind_created", "audit_log", ["kind", "created_ms"])
    op.create_index("ix_audit_log_service", "audit_log", ["service_id"])


def downgrade() -> None:
    for table in ("audit_log", "zone_operation", "server_operation", "instance_operation",
                  "artemis_meta"):
        op.drop_table(table)
