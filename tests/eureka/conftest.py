"""Fixtures of the Eureka API tests: in-process nodes on a fake clock (tests/server's) and real
`artemis server` processes (tests/process's)."""

from tests.process.conftest import start_node as start_node
from tests.server.conftest import api as api
from tests.server.conftest import clock as clock
from tests.server.conftest import make_api as make_api
