"""Management on a node: the store's pull-outs applied to the registry, within a second everywhere.

  * The node opens the store (migrating an empty database) when it starts, loads the
    operations in force and applies them (`Registry.apply_view`); instances they hide get a
    `delete`, the rest is untouched. Until that first load succeeds the node does not come up,
    for at most `management_start_timeout` seconds: a node whose database is down then serves
    with nothing pulled out, logs it, and applies the data as soon as the database answers.
  * Every `management_poll_interval` it reads the store's version (one row); when it moved, it
    loads the operations again and applies what changed. A write made through this node is
    applied at once. Every node of a cluster therefore sees a write within one poll interval
    (0.25 s by default), without the original's 2 s sleep after each write.
  * While the store cannot be reached (its last call failed), every call of the management
    API answers `service-unavailable`; registration, heartbeats, discovery and push go on with
    the last data loaded.
  * A store that lost its database (StoreLost: the SQLite file removed or replaced, the version
    row gone or gone back) stays so until the node restarts: the node logs an error once, saves
    what a SQLite store still holds open (`ManagementStore.rescue`) and keeps the data it loaded
    last, so nothing pulled out comes back and nothing is read from the database that took its
    place. A restarted node puts the rescue copy back where the file was missing, and logs it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from artemis import wire
from artemis.core.visibility import ManagementView, logic_instances, route_rules
from artemis.server.node import Node
from artemis.server.observability.tracing import Tracing
from artemis.server.store import (
    GroupOperation,
    GroupTag,
    ManagementData,
    ManagementStore,
    StoreError,
    StoreLost,
)

__all__ = ["Management", "Operations", "unconfigured_status"]

log = logging.getLogger("artemis.management")
T = TypeVar("T")

_LOG_EVERY: Final = 30.0  # seconds between two warnings of a store that stays down
_ERROR_LIMIT: Final = 600  # characters of the last error kept for the status


@dataclass(frozen=True, slots=True)
class Operations:
    """The operations in force in this node's region, by lower-case key (for the API's reads)."""

    instances: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    servers: dict[str, list[str]] = field(default_factory=dict)
    zones: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, region: str, data: ManagementData) -> Operations:
        mine = region.lower()
        instances: dict[tuple[str, str], list[str]] = {}
        servers: dict[str, list[str]] = {}
        zones: dict[tuple[str, str], list[str]] = {}
        for r, service, instance, op in data.instance_ops:
            if r.lower() == mine:
                instances.setdefault((service.lower(), instance.lower()), []).append(op)
        for r, server, op in data.server_ops:
            if r.lower() == mine:
                servers.setdefault(server.lower(), []).append(op)
        for r, service, zone, op in data.zone_ops:
            if r.lower() == mine:
                zones.setdefault((service.lower(), zone.lower()), []).append(op)
        for table in (instances, servers, zones):
            for ops in table.values():
                ops.sort()
        return cls(instances, servers, zones)


class Management:
    """The management store of a node and the loop that keeps the registry in step with it."""

    def __init__(self, node: Node, store: ManagementStore,
                 tracing: Tracing | None = None) -> None:
        self.node = node
        self.store = store
        self.tracing = tracing  # client spans of store calls, when requests are traced
        self.available = False  # the last call to the store succeeded
        self.loaded_version: int | None = None
        self.operations = Operations()
        self.groups: tuple[wire.Group, ...] = ()
        self.route_rules: tuple[wire.ServiceRouteRule, ...] = ()
        self.route_rule_groups: tuple[wire.RouteRuleGroup, ...] = ()
        self.group_tags: tuple[GroupTag, ...] = ()
        self.group_instances: tuple[wire.GroupInstance, ...] = ()
        self.group_operations: tuple[GroupOperation, ...] = ()
        self.service_instances: tuple[wire.ServiceInstance, ...] = ()
        # by group id, built once per load for the reads and views
        self.tags_by_group: dict[int, dict[str, str]] = {}
        self.members_by_group: dict[int, list[str]] = {}
        self.operations_by_group: dict[int, list[str]] = {}
        self.last_error = ""
        self.lost = False  # the store lost its database: refused until the node restarts
        self.loads = 0
        self.last_load_ms = 0
        self._warned_at = -_LOG_EVERY
        self._floor = 0  # the store's version after this node's last write

    @classmethod
    def of(cls, node: Node, tracing: Tracing | None = None) -> Management | None:
        """The management of `node` as its settings ask: None without a database."""
        s = node.settings
        if not s.database:
            return None
        return cls(node, ManagementStore(s.database, timeout=s.management_timeout), tracing)

    @property
    def view(self) -> ManagementView:
        return self.node.registry.view

    async def traced(self, name: str, call: Awaitable[T]) -> T:
        """Await a store call, in a client span when tracing samples it."""
        tracing = self.tracing
        span = None
        if tracing is not None:
            span, _ = tracing.start_client(f"management {name}", self.store_label)
        status = 200
        try:
            return await call
        except StoreError:
            status = 503
            raise
        finally:
            if span is not None and tracing is not None:
                tracing.end(span, status)

    @property
    def store_label(self) -> str:
        return f"{self.store.backend}:"

    # --- run -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Load the data until it loads once (the node is held `starting` meanwhile, for at
        most management_start_timeout), then poll the store's version."""
        s = self.node.settings
        clock = self.node.clock
        started = clock.monotonic()
        while self.loaded_version is None:
            await self._refresh(force=True)
            if self.loaded_version is not None:
                break
            if clock.monotonic() - started >= s.management_start_timeout:
                log.warning("the management database does not answer after %g s: serving with "
                            "nothing pulled out until it does", s.management_start_timeout)
                self.node.release("management")
            await asyncio.sleep(s.management_poll_interval)
        self.node.release("management")
        while True:
            await asyncio.sleep(s.management_poll_interval)
            await self._refresh()

    async def close(self) -> None:
        await self.store.close()

    async def _refresh(self, force: bool = False) -> None:
        store = self.store
        try:
            if self.loaded_version is None:
                await store.open()
            if not force and await store.version() == self.loaded_version:
                self._ok()
                return
            data = await self.traced("load", store.load())
        except StoreLost as exc:
            await self._lose(exc)
            return
        except StoreError as exc:
            self._failed(exc)
            return
        except Exception as exc:  # a bug must not stop the loop: log it, try again
            log.exception("loading management data failed")
            self._failed(exc)
            return
        first = self.loaded_version is None
        self._ok()
        self.apply(data)
        if first:
            self._opened(data.version)

    def apply(self, data: ManagementData) -> None:
        """Make the registry show what `data` leaves in discovery. Data older than a write this
        node made and applied already is not applied (a load that began before the write
        committed would undo it for a moment); the next poll loads again."""
        if data.version < self._floor:
            return
        node = self.node
        self.operations = Operations.of(node.settings.region, data)
        region = node.settings.region.lower()
        self.groups = tuple(g for g in data.groups if g.region_id == region)
        ids = {g.group_id for g in self.groups}
        self.route_rules = tuple(data.route_rules)
        self.route_rule_groups = tuple(link for link in data.route_rule_groups
                                       if link.group_id in ids)
        self.group_tags = tuple(t for t in data.group_tags if t.group_id in ids)
        self.group_instances = tuple(m for m in data.group_instances if m.group_id in ids)
        self.group_operations = tuple(o for o in data.group_operations if o.group_id in ids)
        self.service_instances = tuple(i for i in data.service_instances
                                       if i.region_id == region)
        tags: dict[int, dict[str, str]] = {}
        for tag in self.group_tags:
            tags.setdefault(tag.group_id, {})[tag.tag] = tag.value
        members: dict[int, list[str]] = {}
        for member in self.group_instances:  # the store's rows have every id
            if member.group_id is not None and member.instance_id is not None:
                members.setdefault(member.group_id, []).append(member.instance_id)
        group_ops: dict[int, list[str]] = {}
        for op in self.group_operations:
            group_ops.setdefault(op.group_id, []).append(op.operation)
        self.tags_by_group = tags
        self.members_by_group = {k: sorted(v) for k, v in members.items()}
        self.operations_by_group = {k: sorted(v) for k, v in group_ops.items()}
        rules = route_rules(
            ((g.group_id or 0, g.service_id or "", g.region_id or "", g.zone_id or "",
              g.name or "", g.status or "") for g in self.groups),
            ((r.route_rule_id or 0, r.service_id or "", r.name or "", r.status or "",
              r.strategy or "") for r in self.route_rules),
            ((link.route_rule_id or 0, link.group_id or 0, link.weight)
             for link in self.route_rule_groups), tags, members)
        by_id = {g.group_id: g for g in self.groups}
        groups_down = {(g.service_id or "", g.zone_id or "", g.name or "")
                       for g in (by_id[o.group_id] for o in self.group_operations)}
        logic = logic_instances(wire.Instance(
            group_id=i.group_id, health_check_url=i.health_check_url, instance_id=i.instance_id,
            ip=i.ip, machine_name=i.machine_name,
            metadata=dict(i.metadata) if i.metadata else None, port=i.port,
            protocol=i.protocol, region_id=i.region_id, service_id=i.service_id, url=i.url,
            zone_id=i.zone_id) for i in self.service_instances)
        view = ManagementView.build(node.settings.region, data.instance_ops, data.server_ops,
                                    data.zone_ops, data.version, rules, groups_down, logic)
        changes = node.registry.apply_view(view, node.clock.wall_ms())
        node.publish(changes)
        if changes or self.loaded_version is None:
            log.info("management data version %d applied: %d instances changed visibility",
                     data.version, len(changes))
        self.loaded_version = data.version
        self.loads += 1
        self.last_load_ms = node.clock.wall_ms()

    async def reload(self) -> None:
        """Load and apply the store's data now."""
        await self._refresh(force=True)

    def wrote(self, kind: str, key: str | tuple[str, str], operation: str, complete: bool,
              version: int) -> None:
        """Apply a write this node just made (`kind` instance, server or zone), without reading
        the store back: the write is visible here before its answer leaves. The next poll sees
        the version moved and loads everything, writes of other nodes included. `version` is
        the store's version after the write."""
        self._floor = max(self._floor, version)
        ops = self.operations
        tables: dict[str, dict[Any, list[str]]] = {
            "instance": ops.instances, "server": ops.servers, "zone": ops.zones}
        table = dict(tables[kind])
        current = set(table.get(key, ()))
        if complete:
            current.discard(operation)
        else:
            current.add(operation)
        if current:
            table[key] = sorted(current)
        else:
            table.pop(key, None)
        tables[kind] = table
        self.operations = Operations(tables["instance"], tables["server"], tables["zone"])
        node = self.node
        view = ManagementView(region=node.settings.region.lower(),
                              instances=frozenset(tables["instance"]),
                              servers=frozenset(tables["server"]),
                              zones=frozenset(tables["zone"]), version=self.view.version,
                              rules=self.view.rules, groups=self.view.groups,
                              logic=self.view.logic)
        node.publish(node.registry.apply_view(view, node.clock.wall_ms()))

    def _opened(self, version: int) -> None:
        """Say what the store's open() did with rescue copies (see ManagementStore.open)."""
        store = self.store
        if store.restored is not None:
            log.warning("the management database file was missing: put back the rescue copy "
                        "%s, which a node saved when the file was removed or replaced while it "
                        "ran (version %d)", store.restored, version)
        if store.rescue_copies:
            names = ", ".join(str(path) for path in store.rescue_copies)
            # an empty database beside rescue copies is most likely one made anew in place of
            # the lost one: an error, so that "nothing pulled out" is never taken silently
            (log.error if version == 0 else log.warning)(
                "rescue copies of an earlier management database lie beside the one in use "
                "(version %d): %s; to go back to one, stop every node, move it in place of the "
                "database file and start them again; delete it once it is not needed", version,
                names)

    async def _lose(self, exc: StoreLost) -> None:
        """The store lost its database: refuse, say so once, save what it still holds."""
        store = self.store
        first = not self.lost
        self.lost = True
        if first:
            try:
                await store.rescue()
                saved = ""
            except StoreError as error:
                saved = f"; {error}"
            registry = self.node.registry
            log.error("management database lost: %s%s. Management calls answer "
                      "service-unavailable until the node restarts; discovery keeps the "
                      "management data applied last (%d instances hidden)", store.lost or exc,
                      saved, registry.instance_count - registry.visible_count)
        self._failed(StoreLost(store.lost or str(exc)), quiet=first)

    def _ok(self) -> None:
        if not self.available and self.loaded_version is not None:
            log.info("the management database answers again")
        self.available = True
        self.lost = False  # a store answers only once opened again
        self.last_error = ""

    def _failed(self, exc: Exception, quiet: bool = False) -> None:
        self.available = False
        self.last_error = f"{type(exc).__name__}: {exc}"[:_ERROR_LIMIT]
        now = self.node.clock.monotonic()
        if quiet:
            self._warned_at = now
        elif now - self._warned_at >= _LOG_EVERY:
            self._warned_at = now
            log.warning("the management database does not answer (%s); keeping the last "
                        "management data (version %s)", self.last_error, self.loaded_version)

    def status(self) -> dict[str, Any]:
        """management.json's fields."""
        return _status(self.node, True, self.available, self.loaded_version, self.loads,
                       self.last_load_ms, self.last_error)

    def __repr__(self) -> str:
        return (f"Management({self.store_label}, available={self.available}, "
                f"version={self.loaded_version}, lost={self.lost})")


def unconfigured_status(node: Node) -> dict[str, Any]:
    """management.json's fields on a node without a database: not enabled, nothing loaded."""
    return _status(node, False, False, None, 0, 0, "")


def _status(node: Node, enabled: bool, available: bool, version: int | None, loads: int,
            last_load_ms: int, last_error: str) -> dict[str, Any]:
    view = node.registry.view
    return {"enabled": enabled, "available": available, "version": version, "loads": loads,
            "lastLoadTime": last_load_ms, "lastError": last_error,
            "pulledOut": {"instances": len(view.instances), "servers": len(view.servers),
                          "zones": len(view.zones)},
            "hiddenInstances": node.registry.instance_count - node.registry.visible_count}

