"""Choosing one instance: random, round robin, zone first, weighted by route rule groups.

Random choices use seeded generators and many draws; proportions are checked within a tolerance
far wider than the sampling error (about 5 standard deviations)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from artemis.client import (
    Instance,
    RandomBalancer,
    RoundRobinBalancer,
    Service,
    WeightedBalancer,
    ZoneFirstBalancer,
)
from artemis.wire import RouteRule, ServiceGroup

DRAWS = 20_000


def inst(instance_id: str, zone: str = "z1", group: str | None = None,
         service_id: str = "pay", region: str = "SHA") -> Instance:
    return Instance(service_id=service_id, instance_id=instance_id, region_id=region,
                    zone_id=zone, group_id=group, url=f"http://{instance_id}")


def svc(*instances: Instance, rules: list[RouteRule] | None = None,
        service_id: str = "pay") -> Service:
    return Service(service_id=service_id, instances=list(instances), route_rules=rules)


def rule(*groups: ServiceGroup) -> RouteRule:
    return RouteRule(route_id="r", strategy="weighted-round-robin", groups=list(groups))


def shares(balancer: WeightedBalancer | RandomBalancer, service: Service,
           draws: int = DRAWS) -> dict[str, float]:
    counts = Counter(balancer.choose(service).instance_id for _ in range(draws))  # type: ignore[union-attr]
    return {k: v / draws for k, v in sorted(counts.items())}


def close_to(expected: dict[str, float], actual: dict[str, float], tolerance: float) -> bool:
    return expected.keys() == actual.keys() and all(
        abs(expected[k] - actual[k]) <= tolerance for k in expected)


EMPTY = [Service(service_id="pay", instances=[]), Service(service_id="pay", instances=None)]


# --- random and round robin ---------------------------------------------------------------------

def test_random_is_the_generators_choice() -> None:
    """RandomBalancer picks what its seeded generator picks."""
    instances = [inst("a"), inst("b"), inst("c")]
    reference = random.Random(9)
    balancer = RandomBalancer(random.Random(9))
    expected = [reference.choice(instances) for _ in range(20)]
    assert expected == [balancer.choose(svc(*instances)) for _ in range(20)]


def test_random_spreads_evenly() -> None:
    """Over many draws each instance gets about its share."""
    service = svc(inst("a"), inst("b"), inst("c"), inst("d"))
    actual = shares(RandomBalancer(random.Random(1)), service)
    assert close_to(dict.fromkeys("abcd", 0.25), actual, 0.02)


@pytest.mark.parametrize("service", EMPTY)
@pytest.mark.parametrize("balancer", [RandomBalancer(), RoundRobinBalancer(), WeightedBalancer(),
                                      ZoneFirstBalancer("z1")])
def test_no_instances_gives_none(balancer: RandomBalancer, service: Service) -> None:
    """Every balancer answers None for a service without instances."""
    assert balancer.choose(service) is None


def test_round_robin_cycles_in_instance_id_order() -> None:
    """Round robin goes through the instances by id, whatever order the service lists them in."""
    balancer = RoundRobinBalancer()
    service = svc(inst("c"), inst("a"), inst("b"))
    chosen = [balancer.choose(service).instance_id for _ in range(7)]  # type: ignore[union-attr]
    assert ["a", "b", "c", "a", "b", "c", "a"] == chosen


def test_round_robin_counts_per_service() -> None:
    """Each service has its own position (service ids compared lower-case)."""
    balancer = RoundRobinBalancer()
    pay = svc(inst("a"), inst("b"))
    upper = svc(inst("a"), inst("b"), service_id="PAY")  # the same service, in upper case
    other = svc(inst("x", service_id="other"), inst("y", service_id="other"),
                service_id="other")
    chosen = [balancer.choose(s).instance_id  # type: ignore[union-attr]
              for s in (pay, other, upper, other, pay)]
    assert ["a", "x", "b", "y", "a"] == chosen


def test_round_robin_follows_a_changed_instance_list() -> None:
    """When instances come and go, the cycle goes on over the current list."""
    balancer = RoundRobinBalancer()
    first = [balancer.choose(svc(inst("a"), inst("b"))).instance_id for _ in range(2)]  # type: ignore[union-attr]
    later = [balancer.choose(svc(inst("a"), inst("b"), inst("c"))).instance_id  # type: ignore[union-attr]
             for _ in range(3)]
    assert (["a", "b"], ["c", "a", "b"]) == (first, later)


# --- zone first ---------------------------------------------------------------------------------

def test_zone_first_keeps_to_the_zone_when_it_has_instances() -> None:
    """Only instances of the zone (compared lower-case) are chosen when there are some."""
    service = svc(inst("a", "z1"), inst("b", "Z2"), inst("c", "z2"), inst("d", "z3"))
    balancer = ZoneFirstBalancer("z2", RandomBalancer(random.Random(3)))
    assert close_to({"b": 0.5, "c": 0.5}, shares(balancer, service, 4000), 0.04)  # type: ignore[arg-type]


def test_zone_first_falls_back_to_every_instance() -> None:
    """Without instances in the zone, any instance may be chosen."""
    service = svc(inst("a", "z1"), inst("b", "z2"))
    balancer = ZoneFirstBalancer("z9", RandomBalancer(random.Random(3)))
    assert close_to({"a": 0.5, "b": 0.5}, shares(balancer, service, 4000), 0.04)  # type: ignore[arg-type]


def test_zone_first_hands_the_zone_to_its_inner_balancer() -> None:
    """The inner balancer sees only the zone's instances (round robin over them, in order)."""
    service = svc(inst("d", "z2"), inst("a", "z1"), inst("b", "z2"), inst("c", "z1"))
    balancer = ZoneFirstBalancer("z2", RoundRobinBalancer())
    chosen = [balancer.choose(service).instance_id for _ in range(4)]  # type: ignore[union-attr]
    assert ["b", "d", "b", "d"] == chosen


def test_zone_first_keeps_route_rules_for_the_inner_balancer() -> None:
    """Weights still apply inside the zone: the route rules go to the inner balancer."""
    service = svc(inst("a", "z1"), inst("b", "z1"), inst("c", "z2"),
                  rules=[rule(ServiceGroup(group_key="g1", weight=1, instance_ids=["a"]),
                              ServiceGroup(group_key="g2", weight=3, instance_ids=["b", "c"]))])
    balancer = ZoneFirstBalancer("z1", WeightedBalancer(random.Random(8)))
    assert close_to({"a": 0.25, "b": 0.75}, shares(balancer, service), 0.02)  # type: ignore[arg-type]


# --- weighted -----------------------------------------------------------------------------------

def test_weighted_follows_group_weights() -> None:
    """Groups are chosen by weight (1 : 9), then an instance of the group at random."""
    service = svc(inst("p0"), inst("p1"), inst("p2"), inst("p3"),
                  rules=[rule(ServiceGroup(group_key="canary", weight=1, instance_ids=["p0"]),
                              ServiceGroup(group_key="main", weight=9,
                                           instance_ids=["p2", "p3"]))])
    actual = shares(WeightedBalancer(random.Random(2024)), service)
    assert close_to({"p0": 0.1, "p2": 0.45, "p3": 0.45}, actual, 0.02)


def test_weighted_group_members_by_instance_ids_ignore_case() -> None:
    """instanceIds name members case-insensitively; ids that are not instances are skipped."""
    service = svc(inst("Alpha"), inst("beta"), inst("gamma"),
                  rules=[rule(ServiceGroup(group_key="g", weight=5,
                                           instance_ids=["ALPHA", "Beta", "missing"]))])
    actual = shares(WeightedBalancer(random.Random(4)), service, 4000)
    assert close_to({"Alpha": 0.5, "beta": 0.5}, actual, 0.04)


def test_weighted_group_members_by_group_key() -> None:
    """Without listed members, a group holds the instances whose group key starts with its key."""
    instances = [inst("a", "z1", "canary"), inst("b", "z1"), inst("c", "Z1", "Canary"),
                 inst("d", "z2", "canary")]
    service = svc(*instances, rules=[rule(
        ServiceGroup(group_key="PAY/sha/z1/canary", weight=1),
        ServiceGroup(group_key="pay/sha/z2", weight=1))])
    actual = shares(WeightedBalancer(random.Random(6)), service)
    assert close_to({"a": 0.25, "c": 0.25, "d": 0.5}, actual, 0.02)


def test_weighted_group_key_default_group() -> None:
    """An instance without a group is in the `default` group of its zone."""
    service = svc(inst("a", "z1"), inst("b", "z1", "blue"),
                  rules=[rule(ServiceGroup(group_key="pay/sha/z1/default", weight=1))])
    actual = shares(WeightedBalancer(random.Random(6)), service, 1000)
    assert {"a": 1.0} == actual


def test_weighted_listed_instances_come_first() -> None:
    """A group's own `instances` are its members, before instanceIds or its key."""
    listed = inst("logic-1")
    service = svc(inst("a"), inst("b"), rules=[rule(
        ServiceGroup(group_key="pay/sha/z1", weight=1, instances=[listed], instance_ids=["a"]))])
    actual = shares(WeightedBalancer(random.Random(6)), service, 500)
    assert {"logic-1": 1.0} == actual


def test_weighted_missing_weight_is_the_default_five() -> None:
    """A group without weight weighs 5 (the original's default)."""
    service = svc(inst("a"), inst("b"), rules=[rule(
        ServiceGroup(group_key="g1", weight=None, instance_ids=["a"]),
        ServiceGroup(group_key="g2", weight=15, instance_ids=["b"]))])
    actual = shares(WeightedBalancer(random.Random(12)), service)
    assert close_to({"a": 0.25, "b": 0.75}, actual, 0.02)


def test_weighted_zero_weight_group_is_never_chosen() -> None:
    """A group of weight 0 (or negative) gets no traffic."""
    service = svc(inst("a"), inst("b"), inst("c"), rules=[rule(
        ServiceGroup(group_key="g0", weight=0, instance_ids=["a"]),
        ServiceGroup(group_key="gneg", weight=-3, instance_ids=["c"]),
        ServiceGroup(group_key="g1", weight=2, instance_ids=["b"]))])
    assert {"b": 1.0} == shares(WeightedBalancer(random.Random(1)), service, 2000)


@pytest.mark.parametrize("rules", [
    None,
    [],
    [rule()],
    [rule(ServiceGroup(group_key="nobody", weight=5, instance_ids=["zzz"]))],
    [rule(ServiceGroup(group_key="g", weight=0, instance_ids=["a"]))],
])
def test_weighted_without_usable_groups_uses_every_instance(rules: list[RouteRule] | None) -> None:
    """No route rule, or no group with instances and weight: every instance is a candidate."""
    service = svc(inst("a"), inst("b"), rules=rules)
    actual = shares(WeightedBalancer(random.Random(5)), service, 4000)
    assert close_to({"a": 0.5, "b": 0.5}, actual, 0.04)


def test_weighted_uses_the_first_route_rule() -> None:
    """The groups of the service's first route rule decide; later rules are not mixed in."""
    service = svc(inst("a"), inst("b"), rules=[
        rule(ServiceGroup(group_key="g", weight=1, instance_ids=["a"])),
        rule(ServiceGroup(group_key="g", weight=1, instance_ids=["b"]))])
    assert {"a": 1.0} == shares(WeightedBalancer(random.Random(5)), service, 1000)


def test_weighted_is_reproducible_with_a_seed() -> None:
    """Two balancers with equally seeded generators choose the same sequence."""
    service = svc(inst("a"), inst("b"), inst("c"), rules=[rule(
        ServiceGroup(group_key="g1", weight=2, instance_ids=["a", "b"]),
        ServiceGroup(group_key="g2", weight=7, instance_ids=["c"]))])
    first, second = WeightedBalancer(random.Random(77)), WeightedBalancer(random.Random(77))
    assert [first.choose(service) for _ in range(200)] == [
        second.choose(service) for _ in range(200)]
