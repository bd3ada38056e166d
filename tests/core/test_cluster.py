"""The cluster as a node sees it: the peers setting, URLs, itself, peer states, bootstrap."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import pytest

from artemis.core.membership import (
    PEERS_FORMAT,
    BootstrapPlan,
    PeersError,
    PeerSpec,
    PeerState,
    bootstrap_plan,
    normalize_url,
    parse_peers,
    peers_from_addresses,
    split_self,
)
from artemis.core.node_status import DOWN, STARTING, UNKNOWN, UP


def raised(excinfo: pytest.ExceptionInfo[PeersError]) -> tuple[type[BaseException], str]:
    """An exception as (exact type, message), to compare whole."""
    return type(excinfo.value), str(excinfo.value)


# --- normalize_url -----------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "normalized"), [
    ("http://host", "http://host"),
    ("http://host/", "http://host"),
    ("http://host//", "http://host"),
    ("http://host:8080/", "http://host:8080"),
    ("  http://host:8080  ", "http://host:8080"),
    ("HTTP://Host.Example.COM:8080/Ctx/Path/", "http://host.example.com:8080/Ctx/Path"),
    ("HTTPS://10.0.0.1", "https://10.0.0.1"),
    ("http://host:080", "http://host:80"),
    ("http://host:0", "http://host:0"),
    ("http://host:65535/", "http://host:65535"),
    ("http://[::1]", "http://[::1]"),
    ("http://[::1]:8080/", "http://[::1]:8080"),
    ("http://[FE80::1]:8080/Artemis/", "http://[fe80::1]:8080/Artemis"),
    ("http://host:8080/a:b", "http://host:8080/a:b"),
])
def test_normalize_url_drops_trailing_slash_and_lowers_scheme_and_host(
        url: str, normalized: str) -> None:
    """A URL is trimmed, loses trailing `/`, has scheme and host lower-cased; path case is kept."""
    assert normalized == normalize_url(url)


@pytest.mark.parametrize(("url", "message"), [
    ("", "'' is not an http(s) URL with a host"),
    ("ftp://host", "'ftp://host' is not an http(s) URL with a host"),
    ("host:8080", "'host:8080' is not an http(s) URL with a host"),
    ("10.0.0.1:8080", "'10.0.0.1:8080' is not an http(s) URL with a host"),
    ("http://", "'http://' is not an http(s) URL with a host"),
    ("http://:8080", "'http://:8080' is not an http(s) URL with a host"),
    ("http:/host", "'http:/host' is not an http(s) URL with a host"),
    ("http://host:65536", "'http://host:65536' has a port that is not a number from 0 to 65535"),
    ("http://host:-1", "'http://host:-1' has a port that is not a number from 0 to 65535"),
    ("http://host:http", "'http://host:http' has a port that is not a number from 0 to 65535"),
    ("http://user@host", "'http://user@host' carries credentials; peers are plain URLs"),
    ("http://u:pw@host:80", "'http://u:pw@host:80' carries credentials; peers are plain URLs"),
    ("http://host/?zone=a", "'http://host/?zone=a' has a query or fragment; peers are plain URLs"),
    ("http://host/a#top", "'http://host/a#top' has a query or fragment; peers are plain URLs"),
])
def test_normalize_url_rejects_what_is_not_a_plain_http_url(url: str, message: str) -> None:
    """Non-http(s), host-less, bad-port, credentialed and query URLs raise PeersError naming why."""
    with pytest.raises(PeersError) as excinfo:
        normalize_url(url)
    assert (PeersError, message) == raised(excinfo)


def test_normalize_url_rejects_unclosed_ipv6_bracket_with_peers_error() -> None:
    """A malformed IPv6 host raises PeersError too: settings turn only PeersError into a message."""
    with pytest.raises(PeersError) as excinfo:
        normalize_url("http://[::1:8080")
    assert PeersError is type(excinfo.value)


# --- parse_peers -------------------------------------------------------------------------------


def test_parse_peers_reads_zones_and_their_urls() -> None:
    """`zoneA:url1,url2;zoneB:url3`: the first ':' splits the zone, URLs keep ports and paths."""
    text = "zoneA:http://10.0.0.1:8080,HTTP://Node2.Example:8080/artemis/;zoneB:https://[::1]:8443"
    assert [
        PeerSpec("zoneA", "http://10.0.0.1:8080"),
        PeerSpec("zoneA", "http://node2.example:8080/artemis"),
        PeerSpec("zoneB", "https://[::1]:8443"),
    ] == parse_peers(text, "home")


def test_parse_peers_puts_a_part_without_zone_in_the_default_zone() -> None:
    """A part of bare URLs (`http://...`, not `zone:...`) belongs to the default zone."""
    text = "http://a:8080,http://b:8080;z2:http://c:8080;https://d"
    assert [
        PeerSpec("home", "http://a:8080"),
        PeerSpec("home", "http://b:8080"),
        PeerSpec("z2", "http://c:8080"),
        PeerSpec("home", "https://d"),
    ] == parse_peers(text, "home")


def test_parse_peers_trims_zone_and_urls_and_keeps_zone_case() -> None:
    """Blanks around zones and URLs are ignored; the zone keeps the case it is written in."""
    assert [PeerSpec("Zone-A", "http://a"), PeerSpec("Zone-A", "http://b:81")] == parse_peers(
        "  Zone-A :  http://a/ ,\thttp://b:81  ", "home")


@pytest.mark.parametrize(("text", "expected"), [
    ("", []),
    ("   ", []),
    (";", []),
    (" ; ;; ", []),
    ("z1:http://a,, ,;  ;", [PeerSpec("z1", "http://a")]),
    (";;http://a,;", [PeerSpec("home", "http://a")]),
])
def test_parse_peers_skips_blank_parts_and_blank_urls(
        text: str, expected: list[PeerSpec]) -> None:
    """Blank `;` parts and blank `,` entries are skipped, not errors."""
    assert expected == parse_peers(text, "home")


def test_parse_peers_keeps_duplicates_once_in_the_order_given() -> None:
    """The same node written twice (any spelling, any zone) is kept once, where it first appears."""
    text = "z1:http://a:8080,HTTP://A:8080/;z2:http://b,http://a:8080;http://b/"
    assert [PeerSpec("z1", "http://a:8080"), PeerSpec("z2", "http://b")] == parse_peers(
        text, "home")


@pytest.mark.parametrize(("text", "message"), [
    (":http://a", f"':http://a': the zone before ':' is blank (format: {PEERS_FORMAT})"),
    ("z1:http://a; \t:http://b",
     f"':http://b': the zone before ':' is blank (format: {PEERS_FORMAT})"),
    ("z1:http://a,ftp://b", "'ftp://b' is not an http(s) URL with a host"),
    ("z1:http://a:99999", "'http://a:99999' has a port that is not a number from 0 to 65535"),
    ("z1:http://u:p@a", "'http://u:p@a' carries credentials; peers are plain URLs"),
    ("z1:http://a/?x=1", "'http://a/?x=1' has a query or fragment; peers are plain URLs"),
    # a URL without scheme would read as `zone:url`: the message says what it looks like
    ("a.example:8080", "'a.example:8080' looks like host:port without a scheme; write "
                       "http://a.example:8080 (format: zone:url,url;zone2:url)"),
    ("http://a,z2:http://b", "'z2:http://b' is not an http(s) URL with a host"),
])
def test_parse_peers_rejects_blank_zone_and_bad_urls(text: str, message: str) -> None:
    """A blank zone or a bad URL raises PeersError with a message naming the part or URL."""
    with pytest.raises(PeersError) as excinfo:
        parse_peers(text, "home")
    assert (PeersError, message) == raised(excinfo)


def test_peers_format_is_the_originals() -> None:
    """The format shown in messages is the original's `zone:url,url;zone2:url`."""
    assert "zone:url,url;zone2:url" == PEERS_FORMAT


# --- peers_from_addresses ----------------------------------------------------------------------


def test_peers_from_addresses_sorts_ipv4_before_ipv6_and_drops_duplicates() -> None:
    """One peer per address of the node's zone: IPv4 sorted, then IPv6 sorted, in brackets."""
    addresses = ["fe80::2", "10.0.0.3", "::1", "10.0.0.1", "10.0.0.3", "fe80::2"]
    assert [
        PeerSpec("z1", "http://10.0.0.1:8080"),
        PeerSpec("z1", "http://10.0.0.3:8080"),
        PeerSpec("z1", "http://[::1]:8080"),
        PeerSpec("z1", "http://[fe80::2]:8080"),
    ] == peers_from_addresses(addresses, 8080, "z1")


def test_peers_from_addresses_uses_scheme_and_context_path() -> None:
    """The URL carries the given scheme (lower-cased) and context path (without trailing `/`)."""
    assert [
        PeerSpec("z1", "https://10.0.0.1:8443/artemis"),
        PeerSpec("z1", "https://[::1]:8443/artemis"),
    ] == peers_from_addresses(["::1", "10.0.0.1"], 8443, "z1", scheme="HTTPS",
                              context_path="/artemis/")


def test_peers_from_no_addresses_is_empty() -> None:
    """A name that resolves to nothing gives no peers."""
    assert [] == peers_from_addresses([], 8080, "z1")


def test_peers_from_addresses_keeps_one_peer_per_normalized_url() -> None:
    """Two spellings of one IPv6 address (case) give one peer, as the URL compares equal."""
    assert [PeerSpec("z1", "http://[fe80::1]:8080")] == peers_from_addresses(
        ["FE80::1", "fe80::1"], 8080, "z1")


# --- split_self --------------------------------------------------------------------------------

A, B, C = (PeerSpec("z1", "http://a:8080"), PeerSpec("z1", "http://b:8080"),
           PeerSpec("z2", "http://c:8080"))


def test_split_self_finds_the_node_by_its_normalized_url() -> None:
    """The node's own URL (any spelling) is its entry; every other node is a peer, in order."""
    assert (B, [A, C]) == split_self([A, B, C], " HTTP://B:8080/ ")


def test_split_self_without_own_url_makes_everyone_a_peer() -> None:
    """A list without this node (load balancer, foreign DNS name) is all peers."""
    assert (None, [A, B, C]) == split_self([A, B, C], "http://d:8080")
    assert (None, []) == split_self([], "http://a:8080")


def test_split_self_rejects_a_bad_own_url() -> None:
    """The node's own URL is normalized like the peers', so a bad one raises PeersError."""
    with pytest.raises(PeersError) as excinfo:
        split_self([A], "a:8080")
    assert (PeersError, "'a:8080' is not an http(s) URL with a host") == raised(excinfo)


# --- PeerState ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "flag", "serves"), [
    (UP, None, True),
    (UP, False, True),
    (UP, True, True),
    (STARTING, True, True),
    (STARTING, False, False),
    (STARTING, None, False),
    (DOWN, True, False),
    (DOWN, None, False),
    (UNKNOWN, True, False),
    (UNKNOWN, None, False),
])
def test_peer_serves_when_up_or_flagged_and_not_down_or_unknown(
        status: str, flag: bool | None, serves: bool) -> None:
    """Registry/discovery are served when up, or not down/unknown with the flag true (§5.7)."""
    registry_only = PeerState(status, can_service_registry=flag)
    discovery_only = PeerState(status, can_service_discovery=flag)
    assert (serves, status == UP, status == UP, serves) == (
        registry_only.serves_registry, registry_only.serves_discovery,
        discovery_only.serves_registry, discovery_only.serves_discovery)


@pytest.mark.parametrize(("state", "answered"), [
    (PeerState(), False),
    (PeerState(UNKNOWN, True, True), False),
    (PeerState(STARTING), True),
    (PeerState(UP), True),
    (PeerState(DOWN), True),
])
def test_peer_answered_unless_unknown(state: PeerState, answered: bool) -> None:
    """A peer has answered when its status is anything but `unknown` (the default)."""
    assert answered == state.answered


def test_default_peer_state_is_unknown_and_serves_nothing() -> None:
    """A peer never polled is unknown, without flags, and neither served nor answered."""
    state = PeerState()
    assert (UNKNOWN, None, None, None, None, False, False, False) == (
        state.status, state.can_service_registry, state.can_service_discovery,
        state.allow_registry_from_other_zone, state.allow_discovery_from_other_zone,
        state.serves_registry, state.serves_discovery, state.answered)


# --- bootstrap_plan ----------------------------------------------------------------------------

P1, P2, P3, P4, P5 = (PeerSpec("z2", "http://p1"), PeerSpec("z1", "http://p2"),
                      PeerSpec("Z1", "http://p3"), PeerSpec("z1", "http://p4"),
                      PeerSpec("z2", "http://p5"))
WAITING = BootstrapPlan(sources=(), come_up=False, reason="waiting for peers to answer")


@pytest.mark.parametrize("waited", [0.0, 100.0])
def test_bootstrap_without_peers_comes_up_at_once(waited: float) -> None:
    """A cluster of one has nobody to copy from: it comes up, whatever it waited."""
    assert BootstrapPlan(sources=(), come_up=True, reason="no peers: a cluster of one") == (
        bootstrap_plan([], {}, "z1", waited, 30.0))


@pytest.mark.parametrize("waited", [0.0, 29.9, 30.0, 500.0])
def test_bootstrap_copies_from_up_peers_same_zone_first(waited: float) -> None:
    """Up peers are the sources, own zone first (zone case ignored), then others, in order."""
    states = {P1.url: PeerState(UP), P2.url: PeerState(UP), P3.url: PeerState(UP),
              P4.url: PeerState(STARTING, True, True), P5.url: PeerState(DOWN)}
    assert BootstrapPlan(sources=(P2, P3, P1), come_up=False, reason="copy from an up peer") == (
        bootstrap_plan([P1, P2, P3, P4, P5], states, "z1", waited, 30.0))


def test_bootstrap_copies_from_an_up_peer_of_another_zone_only() -> None:
    """With no up peer in its zone a node copies from another zone's up peer, not waiting more."""
    states = {P1.url: PeerState(UP)}
    assert BootstrapPlan(sources=(P1,), come_up=False, reason="copy from an up peer") == (
        bootstrap_plan([P1, P2], states, "z1", 0.0, 30.0))


def test_bootstrap_comes_up_as_new_cluster_when_all_answered_and_none_up() -> None:
    """Every peer answered, none up (starting or down): a brand-new cluster, come up now."""
    states = {P1.url: PeerState(STARTING), P2.url: PeerState(DOWN), P3.url: PeerState(STARTING)}
    assert BootstrapPlan(sources=(), come_up=True, reason=(
        "no peer is up and all 3 answered (2 starting): a new cluster")) == bootstrap_plan(
        [P1, P2, P3], states, "z1", 0.0, 30.0)


def test_bootstrap_never_copies_from_a_starting_peer_even_if_it_serves() -> None:
    """A starting peer flagged to serve registry and discovery is still no source."""
    states = {P2.url: PeerState(STARTING, True, True, True, True)}
    assert BootstrapPlan(sources=(), come_up=True, reason=(
        "no peer is up and all 1 answered (1 starting): a new cluster")) == bootstrap_plan(
        [P2], states, "z1", 0.0, 30.0)


@pytest.mark.parametrize("states", [
    {},
    {"http://p1": PeerState(STARTING)},
    {"http://p1": PeerState(DOWN), "http://p2": PeerState(UNKNOWN)},
])
@pytest.mark.parametrize("waited", [0.0, 29.999])
def test_bootstrap_waits_while_a_peer_has_not_answered(
        states: dict[str, PeerState], waited: float) -> None:
    """With no peer up and some unknown, the node waits until `bootstrap_timeout`."""
    assert WAITING == bootstrap_plan([P1, P2], states, "z1", waited, 30.0)


@pytest.mark.parametrize(("waited", "timeout", "reason"), [
    (30.0, 30.0, "no peer up after 30 s (1 of 2 unreachable): starting empty"),
    (31.0, 30.0, "no peer up after 30 s (1 of 2 unreachable): starting empty"),
    (2.5, 2.5, "no peer up after 2.5 s (1 of 2 unreachable): starting empty"),
])
def test_bootstrap_comes_up_empty_after_the_timeout(
        waited: float, timeout: float, reason: str) -> None:
    """Once `waited >= timeout` with no peer up and some unknown, the node comes up empty."""
    states = {P1.url: PeerState(STARTING)}
    assert BootstrapPlan(sources=(), come_up=True, reason=reason) == bootstrap_plan(
        [P1, P2], states, "z1", waited, timeout)


def test_bootstrap_counts_every_unreachable_peer_after_the_timeout() -> None:
    """The timeout reason counts the peers that never answered."""
    assert BootstrapPlan(sources=(), come_up=True, reason=(
        "no peer up after 10 s (3 of 3 unreachable): starting empty")) == bootstrap_plan(
        [P1, P2, P3], {P1.url: PeerState(UNKNOWN)}, "z1", 10.0, 10.0)


def test_bootstrap_ignores_states_of_nodes_not_in_the_peer_list() -> None:
    """Only configured peers count: an up node outside the list is no source."""
    states = {"http://elsewhere": PeerState(UP), P1.url: PeerState(DOWN)}
    assert BootstrapPlan(sources=(), come_up=True, reason=(
        "no peer is up and all 1 answered (0 starting): a new cluster")) == bootstrap_plan(
        [P1], states, "z1", 0.0, 30.0)
