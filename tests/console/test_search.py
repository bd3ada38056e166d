"""The sorted service keys behind the console's search: a prefix is one range, and the list
follows the registry's services however they come and go."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from artemis.server.console.search import ServiceIndex


def test_a_prefix_is_a_range_of_the_sorted_keys() -> None:
    """Matches in order, counted in full, paged from an offset; the prefix in any case."""
    index = ServiceIndex()
    services = dict.fromkeys(["b.x", "a.z", "a.y", "a", "ab", "c"])
    index.sync(services, 1, 0.0)

    assert [(6, ["a", "a.y"]), (4, ["a.y", "a.z", "ab"]), (2, ["a.y", "a.z"]), (0, []),
            (1, [])] == [index.search("", 0, 2), index.search("A", 1, 5),
                         index.search("a.", 0, 10), index.search("d", 0, 10),
                         index.search("c", 1, 10)]


def test_the_keys_are_compared_only_when_they_may_have_moved() -> None:
    """Same revision, same count and a recent check: the list is left as it is (a service
    replaced by another without a revision is found at the next recheck)."""
    index = ServiceIndex(recheck=5.0)
    index.sync({"a": 1, "b": 1}, 7, 0.0)
    index.sync({"a": 1, "c": 1}, 7, 1.0)  # no revision, same count: not looked at
    before = index.search("", 0, 10)
    index.sync({"a": 1, "c": 1}, 7, 6.0)

    assert ((2, ["a", "b"]), (2, ["a", "c"])) == (before, index.search("", 0, 10))


changes = st.lists(st.tuples(st.booleans(), st.text("abc.", min_size=1, max_size=4)),
                   max_size=60)


@given(st.lists(changes, min_size=1, max_size=6), st.text("abc.", max_size=2))
def test_the_index_always_equals_sorting_the_services(rounds: list[list[tuple[bool, str]]],
                                                      prefix: str) -> None:
    """After any additions and removals, a search gives what sorting every key would."""
    index = ServiceIndex()
    services: dict[str, int] = {}
    revision = 0
    for changes_of_round in rounds:
        for add, key in changes_of_round:
            if add:
                services[key] = 1
            else:
                services.pop(key, None)
            revision += 1
        index.sync(services, revision, float(revision))
        expected = sorted(k for k in services if k.startswith(prefix))
        assert (len(expected), expected[:7]) == index.search(prefix, 0, 7)
