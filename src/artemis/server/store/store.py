"""ManagementStore: the one object a node holds on the management database, composing the
store's concepts over one Database.

Each concept is a class of its own module, sharing the database: PullOuts (operations.py),
AuditLog (audit.py), GroupsAndRules (groups.py), GroupMembers (members.py), LogicalInstances
(instances.py). The store exposes their methods as its own (`store.upsert_groups(...)`), opens
and closes the database, and reads everything a node applies at once (`load()`).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from artemis.server.store.audit import AuditLog
from artemis.server.store.engine import Database
from artemis.server.store.groups import GroupsAndRules, group_of, link_of, rule_of
from artemis.server.store.instances import LogicalInstances, instance_row, service_instance_of
from artemis.server.store.members import (
    GroupMembers,
    group_instance_of,
    live_members,
    operation_of,
    tag_of,
)
from artemis.server.store.operations import PullOuts
from artemis.server.store.records import ManagementData
from artemis.server.store.schema import (
    GROUP_INSTANCES,
    GROUP_OPERATIONS,
    GROUP_TAGS,
    GROUPS,
    INSTANCE_OPS,
    LINKS,
    META,
    RULES,
    SERVER_OPS,
    SERVICE_INSTANCES,
    ZONE_OPS,
)

__all__ = ["ManagementStore"]


class ManagementStore:
    """The management data of every node, in one SQL database (see the package's rules)."""

    def __init__(self, url: str, *, pool_size: int = 5, timeout: float = 2.0,
                 migration_timeout: float = 60.0) -> None:
        db = self._db = Database(url, pool_size=pool_size, timeout=timeout,
                                 migration_timeout=migration_timeout)
        self.open, self.close, self.rescue, self.version = (
            db.open, db.close, db.rescue, db.version)
        pull_outs = PullOuts(db)
        self.operate_instance = pull_outs.operate_instance
        self.operate_server = pull_outs.operate_server
        self.operate_zone = pull_outs.operate_zone
        self.audit = AuditLog(db).audit
        groups = GroupsAndRules(db)
        self.upsert_groups = groups.upsert_groups
        self.delete_groups = groups.delete_groups
        self.groups = groups.groups
        self.upsert_route_rules = groups.upsert_route_rules
        self.delete_route_rules = groups.delete_route_rules
        self.route_rules = groups.route_rules
        self.upsert_route_rule_groups = groups.upsert_route_rule_groups
        self.release_route_rule_groups = groups.release_route_rule_groups
        self.delete_route_rule_groups = groups.delete_route_rule_groups
        self.route_rule_groups = groups.route_rule_groups
        self.create_route_rule = groups.create_route_rule
        members = GroupMembers(db)
        self.upsert_group_tags = members.upsert_group_tags
        self.delete_group_tags = members.delete_group_tags
        self.group_tags = members.group_tags
        self.insert_group_instances = members.insert_group_instances
        self.delete_group_instances = members.delete_group_instances
        self.group_instances = members.group_instances
        self.set_group_instances = members.set_group_instances
        self.operate_group_operations = members.operate_group_operations
        self.group_operations = members.group_operations
        logical = LogicalInstances(db)
        self.upsert_service_instances = logical.upsert_service_instances
        self.delete_service_instances = logical.delete_service_instances
        self.service_instances = logical.service_instances

    def __repr__(self) -> str:
        db = self._db
        return (f"ManagementStore({db.url.render_as_string(hide_password=True)!r}, "
                f"{db.state}, timeout={db.timeout})")

    async def __aenter__(self) -> ManagementStore:
        await self.open()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def lost(self) -> str | None:
        """Why every call is refused since the store lost its database (None: it has not)."""
        return self._db.lost

    @property
    def backend(self) -> str:
        """The database's kind: sqlite, mysql, mariadb or postgresql."""
        return self._db.backend

    @property
    def restored(self) -> Path | None:
        """The rescue copy an open() put in the SQLite file's place (None: none)."""
        return self._db.restored

    @property
    def rescue_copies(self) -> tuple[Path, ...]:
        """The rescue copies open() left beside the SQLite file."""
        return self._db.rescue_copies

    async def load(self) -> ManagementData:
        """Every operation in force, group, route rule, link, group member and logical instance
        (see ManagementData) and the version, read in one snapshot."""
        db = self._db
        floor = db.high
        async with db.guard("load"), db.snapshot() as connection:
            found = await connection.scalar(select(META.c.version).where(META.c.id == 1))
            instances = await connection.execute(select(
                INSTANCE_OPS.c.region_id, INSTANCE_OPS.c.service_id,
                INSTANCE_OPS.c.instance_id, INSTANCE_OPS.c.operation))
            instance_ops = frozenset((a, b, c, d) for a, b, c, d in instances)
            servers = await connection.execute(select(
                SERVER_OPS.c.region_id, SERVER_OPS.c.server_id, SERVER_OPS.c.operation))
            server_ops = frozenset((a, b, c) for a, b, c in servers)
            zones = await connection.execute(select(
                ZONE_OPS.c.region_id, ZONE_OPS.c.service_id, ZONE_OPS.c.zone_id,
                ZONE_OPS.c.operation))
            zone_ops = frozenset((a, b, c, d) for a, b, c, d in zones)
            groups = await connection.execute(
                select(GROUPS).where(GROUPS.c.deleted.is_(False)).order_by(GROUPS.c.id))
            group_rows = tuple(group_of(row) for row in groups.mappings())
            rules = await connection.execute(
                select(RULES).where(RULES.c.deleted.is_(False)).order_by(RULES.c.id))
            rule_rows = tuple(rule_of(row) for row in rules.mappings())
            links = await connection.execute(
                select(LINKS)
                .join(RULES, RULES.c.id == LINKS.c.route_rule_id)
                .join(GROUPS, GROUPS.c.id == LINKS.c.group_id)
                .where(RULES.c.deleted.is_(False), GROUPS.c.deleted.is_(False))
                .order_by(LINKS.c.id))
            link_rows = tuple(link_of(row) for row in links.mappings())
            tags = tuple(tag_of(row) for row in await live_members(connection, GROUP_TAGS))
            members = tuple(group_instance_of(row)
                            for row in await live_members(connection, GROUP_INSTANCES))
            group_ops = tuple(operation_of(row)
                              for row in await live_members(connection, GROUP_OPERATIONS))
            logical = await connection.execute(
                select(SERVICE_INSTANCES).order_by(SERVICE_INSTANCES.c.id))
            logical_rows = tuple(service_instance_of(instance_row(row))
                                 for row in logical.mappings())
        version = db.expect(found, floor)
        return ManagementData(instance_ops, server_ops, zone_ops, version, group_rows,
                              rule_rows, link_rows, tags, members, group_ops, logical_rows)
