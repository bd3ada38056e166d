"""Fixtures of the CLI tests: real nodes, as the real-process tests start them."""

from tests.process.conftest import start_node  # noqa: F401
