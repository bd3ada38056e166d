"""What Eureka clients read, kept encoded: applications, the full fetch, the delta and VIPs.

Rules
  * Every service is seen as an `App` at the revision it was last seen at, with the Eureka
    status of each instance (for `apps__hashcode`) and its VIP addresses. An instance is encoded
    once per format while its lease is the same object, and again after RENDER_TTL, so that its
    lastRenewalTimestamp moves on (Eureka's response cache refreshes every 30 s likewise).
  * Discovery's view: instances that management pulls out are not shown (they leave as
    DELETED in the delta, as the change log records them), and nothing here changes a lease.
  * `apps__hashcode` is Eureka's reconcile hash: `STATUS_count_` for each status present,
    sorted by status name, over the instances answered (the whole registry for the full fetch
    and the delta, the VIP's instances for a VIP).
  * The full fetch is built as a chunked computation (one at a time per node, shared by the
    requests waiting for it) and kept: it is served again, the same bytes and the same gzip,
    while the registry's revision has not changed, and for `snapshot_interval` seconds even when
    it has, so a registry under churn builds it at most once per interval (Artemis's own
    services.json is a snapshot as old; Eureka's read cache is 30 s old). Every answer is
    rebuilt after RENDER_TTL.
  * The delta holds the changes of the change log newer than `eureka_delta_window`, folded per
    instance to its last change: DELETED, ADDED (the instance was not there when the window
    began) or MODIFIED, each with the instance's data after the change; its hashcode is the
    whole registry's at the revision it was built at. When the log no longer reaches back that
    far there is no delta (None: the API answers 403, as Eureka refuses a delta it cannot
    give, and clients fetch everything).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Final

import msgspec

from artemis.core.registry import Lease, ServiceState
from artemis.core.service_state import lease_ttl
from artemis.core.versions import Change, drive
from artemis.server.eureka.codec import AppsParts, apps_answer, instance_bytes
from artemis.server.eureka.mapping import Facts, eureka_status, show, vips
from artemis.server.http import Pieces
from artemis.server.node import Node

__all__ = ["RENDER_TTL", "Answer", "App", "Item", "Views", "hashcode"]

RENDER_TTL: Final = 30.0  # seconds an encoded instance or answer is served before it is redone
STEP: Final = 400  # instances encoded between two yields of a chunked build (~15 ms)
_KEPT_VIPS: Final = 256  # VIP answers kept at most


def hashcode(counts: dict[str, int]) -> str:
    """Eureka's reconcile hash of these status counts: `DOWN_1_UP_3_`."""
    return "".join(f"{status}_{count}_" for status, count in sorted(counts.items()) if count)


class Item(msgspec.Struct, gc=False):
    """One instance as Eureka shows it, encoded while its lease is the same. Never tracked by
    the garbage collector (it holds a lease, strings and bytes), so a registry of 100,000
    instances adds nothing to a full collection."""

    lease: Lease
    status: str
    vips: tuple[str, ...]
    svips: tuple[str, ...]
    json: bytes | None = None
    xml: bytes | None = None
    at: float = -math.inf  # when the encodings kept were made (monotonic)

    @classmethod
    def of(cls, lease: Lease) -> Item:
        instance = lease.instance
        vip, svip = vips(instance)
        return cls(lease, eureka_status(instance.status), vip, svip)


@dataclass(slots=True)
class App:
    """One service as Eureka shows it, at one revision of it."""

    state: ServiceState
    revision: int
    name: str
    items: list[Item]
    counts: dict[str, int]


@dataclass(slots=True)
class Answer:
    """An encoded answer and what it is valid for."""

    revision: int  # the registry's revision when it was built
    body: Pieces
    built: float  # monotonic
    etag: str


class Views:
    """The Eureka views of one node's registry (rules in the module doc)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.registry = node.registry
        self.clock = node.clock
        self.floor = node.settings.snapshot_interval
        self.window_ms = int(node.settings.eureka_delta_window * 1000)
        self._apps: dict[str, App] = {}
        self._full: dict[bool, Answer] = {}
        self._delta: dict[bool, Answer] = {}
        self._vips: dict[tuple[str, bool, bool], Answer] = {}

    # --- services and instances ----------------------------------------------------------------

    def app(self, state: ServiceState) -> App:
        """The service as Eureka shows it now (instances encoded before are kept)."""
        cached = self._apps.get(state.key)
        if cached is not None and cached.state is state and cached.revision == state.revision:
            return cached
        old = {} if cached is None else {item.lease.key: item for item in cached.items}
        items: list[Item] = []
        counts: dict[str, int] = {}
        for lease in state.leases.values():
            if lease.hidden:
                continue
            item = old.get(lease.key)
            if item is None or item.lease is not lease:
                item = Item.of(lease)
            items.append(item)
            counts[item.status] = counts.get(item.status, 0) + 1
        app = App(state, state.revision, state.service_id.upper(), items, counts)
        self._apps[state.key] = app
        return app

    def part(self, item: Item, as_json: bool) -> bytes:
        """One instance, encoded (again once RENDER_TTL has passed)."""
        now = self.clock.monotonic()
        if now - item.at >= RENDER_TTL:
            item.json = item.xml = None
            item.at = now
        kept = item.json if as_json else item.xml
        if kept is not None:
            return kept
        lease = item.lease
        wall = self.clock.wall_ms()
        facts = Facts(lease.created_ms, wall - max(0, int((now - lease.renewed) * 1000)),
                      lease.ttl)
        encoded = instance_bytes(show(lease.instance, facts), as_json)
        if as_json:
            item.json = encoded
        else:
            item.xml = encoded
        return encoded

    def counts(self) -> dict[str, int]:
        """The Eureka status counts of every instance discovery shows, now (no yield)."""
        totals: dict[str, int] = {}
        services = self.registry.services
        for state in services.values():
            if state.visible:
                for status, count in self.app(state).counts.items():
                    totals[status] = totals.get(status, 0) + count
        self._prune()
        return totals

    def _prune(self) -> None:
        """Forget the services that are gone."""
        services = self.registry.services
        if len(self._apps) > len(services):
            self._apps = {k: a for k, a in self._apps.items() if services.get(k) is a.state}

    # --- whole answers -------------------------------------------------------------------------

    def _fresh(self, answer: Answer | None) -> bool:
        if answer is None:
            return False
        age = self.clock.monotonic() - answer.built
        return age < RENDER_TTL and (answer.revision == self.registry.revision
                                     or age < self.floor)

    def _answer(self, kind: str, revision: int, parts: list[bytes], as_json: bool,
                size: int | None = None) -> Answer:
        etag = f'"{self.node.node_id}-{kind}-{revision}-{"json" if as_json else "xml"}"'
        return Answer(revision, Pieces(parts, size), self.clock.monotonic(), etag)

    async def full(self, as_json: bool) -> Answer:
        """GET /eureka/apps: kept, or built (one build at a time, shared)."""
        kept = self._full.get(as_json)
        if self._fresh(kept):
            return kept  # type: ignore[return-value]
        revision = self.registry.revision
        answer = await self.node.build_shared(("eureka-full", as_json, revision),
                                              lambda: self._build_full(as_json), "eureka")
        self._full[as_json] = answer
        return answer

    def full_now(self, as_json: bool) -> Answer:
        """The same without waiting: kept, or built at once (the synchronous path)."""
        kept = self._full.get(as_json)
        if not self._fresh(kept):
            kept = self._full[as_json] = drive(self._build_full(as_json))
        return kept  # type: ignore[return-value]

    def _build_full(self, as_json: bool) -> Generator[None, None, Answer]:
        services = self.registry.services
        revision = self.registry.revision
        answer = AppsParts(as_json)
        totals: dict[str, int] = {}
        done = 0
        for state in [s for s in services.values() if s.visible]:
            if services.get(state.key) is not state:
                continue  # removed while this build gave the loop back
            app = self.app(state)
            if not app.items:
                continue
            instances = []
            for item in app.items:
                instances.append(self.part(item, as_json))
                done += 1
                if done >= STEP:
                    done = 0
                    yield
            answer.add(app.name, instances)
            for status, count in app.counts.items():
                totals[status] = totals.get(status, 0) + count
        self._prune()
        parts = answer.finish(revision, hashcode(totals))
        return self._answer("apps", revision, parts, as_json, answer.size)

    async def delta(self, as_json: bool) -> Answer | None:
        """GET /eureka/apps/delta: kept, or built; None when the log does not reach back."""
        kept = self._delta.get(as_json)
        if self._fresh(kept):
            return kept
        answer = await self.node.build_shared(("eureka-delta", as_json, self.registry.revision),
                                              lambda: self._build_delta(as_json), "eureka")
        if answer is not None:
            self._delta[as_json] = answer
        return answer

    def delta_now(self, as_json: bool) -> Answer | None:
        kept = self._delta.get(as_json)
        if self._fresh(kept):
            return kept
        answer = drive(self._build_delta(as_json))
        if answer is not None:
            self._delta[as_json] = answer
        return answer

    def recent(self) -> list[Change] | None:
        """The changes of the last `eureka_delta_window`, oldest first; None when the change
        log has let some of them go."""
        log = self.registry.log
        cutoff = self.clock.wall_ms() - self.window_ms
        picked: list[Change] = []
        for change in log.newest_first():
            if change.change_time < cutoff:
                break
            picked.append(change)
        else:
            first = log.first_revision
            if first is not None and first > 1:
                return None  # older changes within the window have left the log
        picked.reverse()
        return picked

    def _build_delta(self, as_json: bool) -> Generator[None, None, Answer | None]:
        registry = self.registry
        revision = registry.revision
        totals = self.counts()  # at `revision`: nothing above yields
        recent = self.recent()
        if recent is None:
            return None
        first_prev: dict[tuple[str, str], int | None] = {}
        last: dict[tuple[str, str], Change] = {}
        for change in recent:
            if change.kind == "reload":
                continue  # new route rules: nothing Eureka shows
            key = (change.service, change.key)
            if key not in first_prev:
                first_prev[key] = change.prev_hash
            last[key] = change
        apps: dict[str, list[bytes]] = {}
        wall, now = self.clock.wall_ms(), self.clock.monotonic()
        for i, (key, change) in enumerate(last.items()):
            if change.kind == "delete":
                action = "DELETED"
            else:
                action = "ADDED" if first_prev[key] is None else "MODIFIED"
            instance = change.instance
            state = registry.services.get(change.service)
            lease = None if state is None else state.leases.get(change.key)
            if lease is not None and action != "DELETED" and lease.encoded == change.encoded:
                facts = Facts(lease.created_ms,
                              wall - max(0, int((now - lease.renewed) * 1000)), lease.ttl)
            else:
                cfg = registry.config
                facts = Facts(change.change_time, change.change_time, lease_ttl(
                    instance, cfg.lease_ttl, cfg.legacy_lease_ttl, cfg.max_lease_ttl))
            name = (state.service_id if state is not None
                    else instance.service_id or change.service).upper()
            apps.setdefault(name, []).append(
                instance_bytes(show(instance, facts, action), as_json))
            if i % STEP == STEP - 1:
                yield
        return self._answer("delta", revision, apps_answer(revision, hashcode(totals),
                                                          list(apps.items()), as_json), as_json)

    async def vip(self, name: str, secure: bool, as_json: bool) -> Answer:
        """GET /eureka/vips/{VIP} (or svips): the applications of the instances with this VIP
        address (compared case-insensitively), with their own hashcode."""
        key = (name.lower(), secure, as_json)
        kept = self._vips.get(key)
        if self._fresh(kept):
            return kept  # type: ignore[return-value]
        answer = await self.node.build_shared(("eureka-vip", *key, self.registry.revision),
                                              lambda: self._build_vip(*key), "eureka")
        if len(self._vips) >= _KEPT_VIPS:
            self._vips.clear()
        self._vips[key] = answer
        return answer

    def vip_now(self, name: str, secure: bool, as_json: bool) -> Answer:
        key = (name.lower(), secure, as_json)
        kept = self._vips.get(key)
        if not self._fresh(kept):
            kept = self._vips[key] = drive(self._build_vip(*key))
        return kept  # type: ignore[return-value]

    def _build_vip(self, name: str, secure: bool, as_json: bool
                   ) -> Generator[None, None, Answer]:
        services = self.registry.services
        revision = self.registry.revision
        apps: list[tuple[str, list[bytes]]] = []
        totals: dict[str, int] = {}
        done = 0
        for state in [s for s in services.values() if s.visible]:
            if services.get(state.key) is not state:
                continue
            app = self.app(state)
            parts = []
            for item in app.items:
                if name in (item.svips if secure else item.vips):
                    parts.append(self.part(item, as_json))
                    totals[item.status] = totals.get(item.status, 0) + 1
            if parts:
                apps.append((app.name, parts))
            done += len(app.items)
            if done >= STEP:
                done = 0
                yield
        return self._answer("svip" if secure else "vip", revision,
                            apps_answer(revision, hashcode(totals), apps, as_json), as_json)

    def __repr__(self) -> str:
        return (f"Views({len(self._apps)} apps seen, full kept "
                f"{sorted('json' if k else 'xml' for k in self._full)})")
