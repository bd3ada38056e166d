"""The adversarial suite: attacks replayed against real nodes (the fixtures of tests/process)."""

from tests.process.conftest import start_node as start_node  # the fixture, for every file here
