"""Choosing one instance of a service: random, round-robin, weighted by route rules, zone first.

Every balancer takes a Service (as DiscoveryClient.get_service returns it) and returns one
instance, or None when the service has none.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Protocol

from artemis.wire import Instance, Service

__all__ = ["Balancer", "RandomBalancer", "RoundRobinBalancer", "WeightedBalancer",
           "ZoneFirstBalancer"]

DEFAULT_WEIGHT = 5  # the original's default group weight (RouteRules.fixWeight)


class Balancer(Protocol):
    def choose(self, service: Service) -> Instance | None: ...


class RandomBalancer:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, service: Service) -> Instance | None:
        instances = service.instances or []
        return self._rng.choice(instances) if instances else None


class RoundRobinBalancer:
    """Each call the next instance, in a stable order (by instance id), per service."""

    def __init__(self) -> None:
        self._counters: dict[str, itertools.count[int]] = {}

    def choose(self, service: Service) -> Instance | None:
        instances = sorted(service.instances or [], key=lambda i: i.instance_id or "")
        if not instances:
            return None
        counter = self._counters.setdefault((service.service_id or "").lower(),
                                            itertools.count())
        return instances[next(counter) % len(instances)]


class WeightedBalancer:
    """A group by its weight in the service's first route rule that has a group with
    instances, then an instance of it at random. A group's instances are those it lists
    (`instances`, or `instanceIds`) or, failing that, those whose group key
    (service/region/zone/group) starts with the group's key; with no route rule, or no group
    with instances, every instance is a candidate."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, service: Service) -> Instance | None:
        instances = service.instances or []
        if not instances:
            return None
        for rule in service.route_rules or []:
            groups = []
            for group in rule.groups or []:
                members = _members(group.group_key, group.instances, group.instance_ids,
                                   instances)
                weight = DEFAULT_WEIGHT if group.weight is None else max(0, group.weight)
                if members and weight:
                    groups.append((members, weight))
            if groups:
                members = self._rng.choices([g[0] for g in groups],
                                            weights=[g[1] for g in groups])[0]
                return self._rng.choice(members)
        return self._rng.choice(instances)


def _members(group_key: str | None, listed: Sequence[Instance] | None,
             ids: Sequence[str] | None, instances: Sequence[Instance]) -> list[Instance]:
    if listed:
        return list(listed)
    if ids:
        wanted = {i.lower() for i in ids}
        return [i for i in instances if (i.instance_id or "").lower() in wanted]
    if not group_key:
        return []
    prefix = group_key.lower() + "/"
    return [i for i in instances if _group_key(i).startswith(prefix)]


def _group_key(instance: Instance) -> str:
    """The original's instance group key: service/region/zone/group/instance, lower-case."""
    parts = [instance.service_id, instance.region_id, instance.zone_id,
             (instance.group_id or "").strip() or "default", instance.instance_id]
    return "/".join(p for p in parts if p).lower()


class ZoneFirstBalancer:
    """Instances of `zone` when there are any, chosen by `inner`; otherwise any instance."""

    def __init__(self, zone: str, inner: Balancer | None = None) -> None:
        self.zone = zone.lower()
        self.inner: Balancer = inner or RandomBalancer()

    def choose(self, service: Service) -> Instance | None:
        local = [i for i in service.instances or [] if (i.zone_id or "").lower() == self.zone]
        if local:
            return self.inner.choose(Service(instances=local, route_rules=service.route_rules,
                                             service_id=service.service_id))
        return self.inner.choose(service)
