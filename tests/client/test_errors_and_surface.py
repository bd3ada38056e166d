"""The client's exception tree, the one place codes become exceptions, and its public surface."""

from __future__ import annotations

import importlib

import pytest

import artemis.client
from artemis.client import errors
from artemis.client.errors import (
    ArtemisError,
    BadRequest,
    ClientClosed,
    DataNotFound,
    InternalServerError,
    NoPermission,
    NoServerAvailable,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    server_error,
)

PUBLIC = [
    "ArtemisError",
    "BadRequest",
    "Balancer",
    "Caller",
    "ClientClosed",
    "ClientWebSocket",
    "DataNotFound",
    "DiscoveryClient",
    "HttpStatusError",
    "InProcessTransport",
    "Instance",
    "InternalServerError",
    "Listener",
    "NetworkTransport",
    "NoPermission",
    "NoServerAvailable",
    "RandomBalancer",
    "RateLimited",
    "RegistryClient",
    "RoundRobinBalancer",
    "ServerError",
    "ServerList",
    "Service",
    "ServiceUnavailable",
    "SyncDiscoveryClient",
    "SyncRegistryClient",
    "Transport",
    "TransportError",
    "WeightedBalancer",
    "ZoneFirstBalancer",
]

SUBMODULES = ["balancer", "discovery", "errors", "registration", "servers", "sync", "transport"]

CODES = [
    ("bad-request", BadRequest),
    ("no-permission", NoPermission),
    ("data-not-found", DataNotFound),
    ("rate-limited", RateLimited),
    ("service-unavailable", ServiceUnavailable),
    ("internal-service-error", InternalServerError),
]


# --- the exception tree -------------------------------------------------------------------------

def test_tree_is_as_drawn_in_the_module_doc() -> None:
    """Every class has the parent the module docstring draws."""
    expected = {
        "ArtemisError": "Exception",
        "TransportError": "ArtemisError",
        "HttpStatusError": "TransportError",
        "NoServerAvailable": "TransportError",
        "ServerError": "ArtemisError",
        "BadRequest": "ServerError",
        "NoPermission": "ServerError",
        "DataNotFound": "ServerError",
        "RateLimited": "ServerError",
        "ServiceUnavailable": "ServerError",
        "InternalServerError": "ServerError",
        "ClientClosed": "ArtemisError",
    }
    actual = {name: getattr(errors, name).__bases__[0].__name__ for name in expected}
    assert expected == actual


@pytest.mark.parametrize(("code", "kind"), CODES)
def test_server_error_maps_each_code_to_its_class(code: str, kind: type[ServerError]) -> None:
    """server_error gives the class of the code, keeping code and message."""
    error = server_error(code, "the node said no")
    assert (kind, code, "the node said no", f"{code}: the node said no") == (
        type(error), error.code, error.message, str(error))


def test_server_error_of_an_unknown_code_is_a_plain_server_error() -> None:
    """A code the client does not know becomes ServerError itself, code kept."""
    error = server_error("partial_fail", "")
    assert (ServerError, "partial_fail", "", "partial_fail") == (
        type(error), error.code, error.message, str(error))


def test_server_error_without_message_shows_only_the_code() -> None:
    """An empty message leaves the code alone as the text of the exception."""
    assert "rate-limited" == str(server_error("rate-limited", ""))


def test_every_code_is_caught_as_artemis_error() -> None:
    """A user catching ArtemisError catches every error the client raises."""
    raised = [server_error(code, "m") for code, _ in CODES]
    raised += [TransportError("t"), NoServerAvailable("n"), ClientClosed("c")]
    assert [True] * len(raised) == [isinstance(e, ArtemisError) for e in raised]


# --- the public surface -------------------------------------------------------------------------

def test_public_all_is_exactly_the_expected_list() -> None:
    """artemis.client exports exactly the documented names, in sorted order."""
    assert PUBLIC == artemis.client.__all__


def test_everything_in_all_imports() -> None:
    """Every name of __all__ is an attribute of the package (star-import works)."""
    namespace: dict[str, object] = {}
    exec("from artemis.client import *", namespace)  # noqa: S102 - a fixed, trusted statement
    assert sorted(PUBLIC) == sorted(k for k in namespace if not k.startswith("__"))


@pytest.mark.parametrize("name", SUBMODULES)
def test_each_submodule_exports_only_what_it_defines(name: str) -> None:
    """Each module's __all__ names attributes that exist in it."""
    module = importlib.import_module(f"artemis.client.{name}")
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert [] == missing


def test_public_names_are_the_submodules_objects() -> None:
    """The package re-exports the submodules' objects, not copies."""
    from artemis.client import balancer, discovery, registration, servers, sync, transport
    from artemis.wire import Instance, Service

    home = {}
    for module in (balancer, discovery, errors, registration, servers, sync, transport):
        home.update({n: getattr(module, n) for n in module.__all__})
    home.update(Instance=Instance, Service=Service)
    assert {n: home[n] for n in PUBLIC} == {n: getattr(artemis.client, n) for n in PUBLIC}
