"""Settings: defaults < TOML file < ARTEMIS_* environment < overrides, converted and checked."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from artemis.server.settings import SETTINGS, Settings, SettingsError, env_name, flag_name


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "artemis.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(**load: Any) -> str:
    with pytest.raises(SettingsError) as caught:
        Settings.load(**load)
    return str(caught.value)


# --- defaults ----------------------------------------------------------------------------------


def test_defaults() -> None:
    """With no file, environment or override, every setting has its documented default."""
    assert {
        "host": "127.0.0.1", "port": 8080, "url": "", "region": "default", "zone": "default",
        "context_path": "", "lease_ttl": 20.0, "legacy_lease_ttl": 90.0, "sweep_interval": 0.1,
        "max_lease_ttl": 300.0, "eureka": True, "eureka_delta_window": 180.0,
        "pause_threshold": 2.0,
        "self_preservation": True, "self_preservation_window": 10.0,
        "self_preservation_percentage": 85, "self_preservation_min_count": 50,
        "self_preservation_reset_interval": 600.0, "legacy_self_preservation_window": 60.0,
        "allow_registry_from_other_zone": True, "allow_discovery_from_other_zone": True,
        "snapshot_interval": 1.0, "snapshot_count": 60, "change_log_size": 200_000,
        "max_body_bytes": 4 * 1024 * 1024, "max_batch": 5000, "gzip_min_bytes": 8192,
        "max_instances": 1_000_000, "max_services": 100_000,
        "max_instances_per_client": 100_000, "max_services_per_client": 10_000,
        "change_log_bytes": 128 * 1024 * 1024,
        "ws_session_ttl": 360.0, "ws_max_sessions": 10_000, "ws_max_subscriptions": 1000,
        "ws_max_frame_bytes": 1024 * 1024, "ws_send_queue": 1000,
        "ws_send_queue_bytes": 16 * 1024 * 1024, "ws_send_timeout": 10.0,
        "ws_coalesce_ms": 0, "peers": "", "peers_dns": "", "peers_dns_interval": 30.0,
        "peer_status_interval": 1.0, "peer_timeout": 2.0, "force_status": "auto",
        "bootstrap_timeout": 10.0, "replication_queue": 100_000, "replication_batch": 1000,
        "replication_task_ttl": 10.0, "replication_retries": 5, "replication_backoff": 0.05,
        "anti_entropy_interval": 5.0, "wall_clock_offset": 0.0,
        "cluster_secret": "", "cluster_insecure": False,
        "max_connections": 16_384, "max_connections_per_client": 512,
        "connection_check_interval": 1.0, "idle_timeout": 20.0, "listen_backlog": 4096,
        "max_header_bytes": 64 * 1024, "http2": False,
        "database": "", "management_poll_interval": 0.25,
        "management_timeout": 2.0, "management_start_timeout": 10.0, "tokens": "",
        "registration_mode": "open",
        "management_open_reads": False, "rate_limit_enabled": True, "rate_limits": {},
        "rate_limit_per_client": 20_000, "rate_limits_per_client": {},
        "rate_limit_clients": 16_384,
        "admin_token": "", "cors_origins": "",
        "metrics": True, "console": "on",
        "log_format": "console", "tls_cert": "", "tls_key": "", "tls_ca": "",
        "tls_min_version": "1.2",
        "gc_freeze": True, "gc_thaw_interval": 3600.0,
        "shutdown_timeout": 5.0,
        "log_level": "info",
    } == dataclasses.asdict(Settings.load())
    assert Settings() == Settings.load(None, {}, {})


def test_names_of_environment_variables_and_flags() -> None:
    """Each setting NAME is read from ARTEMIS_NAME and set by --name-with-dashes."""
    assert ("ARTEMIS_LEASE_TTL", "--lease-ttl", set(SETTINGS)) == (
        env_name("lease_ttl"), flag_name("lease_ttl"),
        {f.name for f in dataclasses.fields(Settings)})


def test_default_rate_limits() -> None:
    """Default limits per 10 s follow §5.5, status.get-leases being 10."""
    s = Settings()
    assert ([100_000, 100_000, 1_000_000, 10_000, 30, 10], {"get-leases": 10}, {}) == (
        [s.rate_limit("registry"), s.rate_limit("registry", "heartbeat"),
         s.rate_limit("replication"), s.rate_limit("cluster"), s.rate_limit("status"),
         s.rate_limit("status", "get-leases")],
        s.rate_limit_map("status"), s.rate_limit_map("registry"))


# --- sources and precedence --------------------------------------------------------------------


def test_toml_flat_keys_and_section_tables(tmp_path: Path) -> None:
    """`[lease] ttl = 5` means lease_ttl; flat keys, dashes and nested tables all work."""
    path = toml(tmp_path, """
port = 9000
region = "SHA"
allow-registry-from-other-zone = false

[lease]
ttl = 5

[legacy]
lease-ttl = 30.5

[self_preservation]
window = 12
min_count = 0

[rate_limits]
registry = 500
"registry.heartbeat" = 5
""")
    assert Settings(port=9000, region="SHA", allow_registry_from_other_zone=False,
                    lease_ttl=5.0, legacy_lease_ttl=30.5, self_preservation_window=12.0,
                    self_preservation_min_count=0,
                    rate_limits={"registry": 500, "registry.heartbeat": 5}) == Settings.load(path)


def test_toml_integers_become_floats_where_a_number_is_asked() -> None:
    """A whole TOML number is accepted for a float setting and a float setting stays a float."""
    loaded = Settings.load(overrides={"lease_ttl": 5})
    assert (5.0, float) == (loaded.lease_ttl, type(loaded.lease_ttl))


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """ARTEMIS_* variables override the file; empty ones are ignored; the file fills the rest."""
    path = toml(tmp_path, 'port = 9000\nzone = "z1"\nlog_level = "debug"\n')
    env = {"ARTEMIS_PORT": "9001", "ARTEMIS_LOG_LEVEL": "", "ARTEMIS_SELF_PRESERVATION": "off",
           "ARTEMIS_RATE_LIMITS": "registry.heartbeat=5,status=3", "PORT": "1"}
    assert Settings(port=9001, zone="z1", log_level="debug", self_preservation=False,
                    rate_limits={"registry.heartbeat": 5, "status": 3}) == Settings.load(path, env)


def test_overrides_override_the_environment(tmp_path: Path) -> None:
    """Overrides (the command-line flags) win over both; None means not given."""
    path = toml(tmp_path, "port = 9000\nlease_ttl = 7\n")
    env = {"ARTEMIS_PORT": "9001", "ARTEMIS_LEASE_TTL": "8"}
    assert Settings(port=9002, lease_ttl=8.0) == Settings.load(
        path, env, {"port": 9002, "lease_ttl": None})


@pytest.mark.parametrize(("raw", "value"), [
    ("1", True), ("true", True), ("Yes", True), (" ON ", True),
    ("0", False), ("false", False), ("NO", False), ("off", False),
])
def test_booleans_from_the_environment(raw: str, value: bool) -> None:
    """Booleans read 1/true/yes/on and 0/false/no/off, in any case."""
    assert value == Settings.load(env={"ARTEMIS_RATE_LIMIT_ENABLED": raw}).rate_limit_enabled


def test_rate_limits_parsing() -> None:
    """`registry.heartbeat=5,status=3` sets one operation's and one limiter's limit."""
    s = Settings.load(env={"ARTEMIS_RATE_LIMITS": " registry.heartbeat = 5 , status=3 ,"})
    assert ({"registry.heartbeat": 5, "status": 3}, 5, 100_000, 3, 10, {"heartbeat": 5}) == (
        s.rate_limits, s.rate_limit("registry", "heartbeat"), s.rate_limit("registry", "register"),
        s.rate_limit("status", "get-cluster"), s.rate_limit("status", "get-leases"),
        s.rate_limit_map("registry"))


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("load", "message"), [
    ({"env": {"ARTEMIS_PORT": "x"}},
     "environment variable ARTEMIS_PORT: port must be a whole number, got 'x'"),
    ({"env": {"ARTEMIS_PORT": "80.0"}},
     "environment variable ARTEMIS_PORT: port must be a whole number, got '80.0'"),
    ({"overrides": {"port": 70000}},
     "option --port: port must be between 0 and 65535, got 70000"),
    ({"overrides": {"port": True}}, "option --port: port must be a whole number, got True"),
    ({"overrides": {"max_batch": 2.5}},
     "option --max-batch: max_batch must be a whole number, got 2.5"),
    ({"env": {"ARTEMIS_LEASE_TTL": "soon"}},
     "environment variable ARTEMIS_LEASE_TTL: lease_ttl must be a number, got 'soon'"),
    ({"env": {"ARTEMIS_LEASE_TTL": "0.5"}},
     "environment variable ARTEMIS_LEASE_TTL: lease_ttl must be between 1.0 and 604800.0, "
     "got 0.5"),
    ({"overrides": {"lease_ttl": False}},
     "option --lease-ttl: lease_ttl must be a number, got False"),
    ({"env": {"ARTEMIS_SELF_PRESERVATION": "maybe"}},
     "environment variable ARTEMIS_SELF_PRESERVATION: self_preservation must be true or false, "
     "got 'maybe'"),
    ({"env": {"ARTEMIS_LOG_LEVEL": "verbose"}},
     "environment variable ARTEMIS_LOG_LEVEL: log_level must be one of debug, info, warning, "
     "error, got 'verbose'"),
    ({"overrides": {"host": 5}}, "option --host: host must be text, got 5"),
    ({"overrides": {"rate_limits": "registry"}},
     "option --rate-limits: rate_limits must be NAME=N pairs, got 'registry'"),
    ({"overrides": {"rate_limits": "registry=-1"}},
     "option --rate-limits: rate_limits must be NAME=N pairs, got 'registry=-1'"),
    ({"overrides": {"rate_limits": "registry=many"}},
     "option --rate-limits: rate_limits must be NAME=N pairs, got 'registry=many'"),
    ({"overrides": {"rate_limits": {"registry": True}}},
     "option --rate-limits: rate_limits must be NAME=N pairs, got {'registry': True}"),
    ({"overrides": {"ttl": 5}}, "option --ttl: unknown setting 'ttl'"),
])
def test_bad_values_name_the_setting_and_the_source(load: dict[str, Any], message: str) -> None:
    """A value a setting cannot take raises SettingsError naming the source and the setting."""
    assert message == error_of(**load)


def test_bad_file_values_name_the_file(tmp_path: Path) -> None:
    """Values from the file are reported with the file's path."""
    path = toml(tmp_path, '[lease]\nttl = "long"\n')
    assert f"config file {path}: lease_ttl must be a number, got 'long'" == error_of(
        config_file=path)


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path) -> None:
    """A key that names no setting, flat or in a table, is refused with its flattened name."""
    flat, nested = toml(tmp_path, "prot = 1\n"), tmp_path / "nested.toml"
    nested.write_text("[lease]\nttll = 5\n", encoding="utf-8")
    assert [f"config file {flat}: unknown setting 'prot'",
            f"config file {nested}: unknown setting 'lease_ttll'"] == [
        error_of(config_file=flat), error_of(config_file=nested)]


def test_missing_or_invalid_file(tmp_path: Path) -> None:
    """An unreadable file or invalid TOML is a SettingsError naming the file."""
    missing = tmp_path / "absent.toml"
    broken = toml(tmp_path, "port = = 1\n")
    assert f"cannot read config file {missing}: No such file or directory" == error_of(
        config_file=missing)
    assert error_of(config_file=broken).startswith(f"config file {broken} is not valid TOML: ")


def test_one_sided_ranges_are_reported_without_a_missing_bound() -> None:
    """A value under a lower bound that has no upper one names the bound, not `None`."""
    message = error_of(overrides={"max_batch": 0})
    assert (True, False) == (message.startswith("option --max-batch: max_batch must be "),
                             "None" in message)


def test_unknown_rate_limiter_is_refused() -> None:
    """rate_limits keys must start with registry, replication, cluster or status."""
    assert ("option --rate-limits: rate_limits names an unknown limiter 'mgmt' in 'mgmt.get' "
            "(limiters: registry, replication, cluster, status)") == error_of(
        overrides={"rate_limits": "mgmt.get=3"})


@pytest.mark.parametrize("path", ["/artemis-web", "/a/b"])
def test_context_path_starts_with_a_slash_and_does_not_end_with_one(path: str) -> None:
    """A context path such as /artemis-web is accepted and joins the node's URL."""
    s = Settings.load(overrides={"context_path": path, "port": 8081})
    assert f"http://127.0.0.1:8081{path}" == s.node_url


@pytest.mark.parametrize("path", ["artemis-web", "/artemis-web/", "/"])
def test_bad_context_path_is_refused(path: str) -> None:
    """A context path without its leading slash or with a trailing one is a SettingsError."""
    message = error_of(overrides={"context_path": path})
    assert (True, True) == ("context_path" in message, repr(path) in message)


def test_checked_values_name_their_source() -> None:
    """A value refused by the final checks still names where it came from, as all errors do."""
    message = error_of(env={"ARTEMIS_CONTEXT_PATH": "artemis-web"})
    assert (True, True) == ("'artemis-web'" in message, message.startswith(
        "environment variable ARTEMIS_CONTEXT_PATH: context_path "))


def test_blank_region_is_refused() -> None:
    """Region and zone must not be blank."""
    assert "environment variable ARTEMIS_REGION: region must not be blank" == error_of(
        env={"ARTEMIS_REGION": "  "})


# --- derived values ----------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "url"), [
    ({}, "http://127.0.0.1:8080"),
    ({"host": "0.0.0.0", "port": 9000}, "http://127.0.0.1:9000"),
    ({"host": "::"}, "http://127.0.0.1:8080"),
    ({"host": "10.0.0.1", "context_path": "/artemis-web"}, "http://10.0.0.1:8080/artemis-web"),
    ({"url": "http://artemis.example/artemis-web/"}, "http://artemis.example/artemis-web"),
])
def test_node_url(values: dict[str, Any], url: str) -> None:
    """The node's URL is the configured one without its trailing slash, else built from host."""
    assert url == Settings.load(overrides=values).node_url


def test_public_view_masks_the_admin_token() -> None:
    """The config view shows every setting but the admin token, which reads *** when set."""
    shown = Settings.load(overrides={"admin_token": "s3cret-admin-token"}).public()
    assert {**dataclasses.asdict(Settings()), "admin_token": "***"} == shown
    assert "" == Settings().public()["admin_token"]


@pytest.mark.parametrize("token", ["s3cret", "x" * 15])
def test_admin_token_is_held_to_the_minimum_length(token: str) -> None:
    """--admin-token shorter than 16 characters is refused, as every token's secret is."""
    with pytest.raises(SettingsError) as caught:
        Settings.load(overrides={"admin_token": token})
    assert "option --admin-token: admin_token must be at least 16 characters" == str(caught.value)
    assert token not in str(caught.value)


@pytest.mark.parametrize(("text", "origins"), [
    ("", ()),
    ("https://console.example.com", ("https://console.example.com",)),
    (" https://a.example/ , http://b.example:8080,https://a.example",
     ("https://a.example", "http://b.example:8080")),
])
def test_cors_origins(text: str, origins: tuple[str, ...]) -> None:
    """cors_origins is a comma-separated list of origins (trailing slash dropped, no repeats)."""
    assert origins == Settings.load(overrides={"cors_origins": text}).cors_allowed()


@pytest.mark.parametrize("text", ["*", "console.example.com", "https://a.example/path",
                                  "ftp://a.example", "https://user@a.example", "https://"])
def test_cors_origins_refuses_what_is_not_an_origin(text: str) -> None:
    """A wildcard, a bare host, a path or another scheme is not an origin: the node refuses."""
    with pytest.raises(SettingsError, match="option --cors-origins: cors_origins .* is not an "
                                            r"origin \(scheme://host\[:port\]\)"):
        Settings.load(overrides={"cors_origins": f"https://ok.example,{text}"})
