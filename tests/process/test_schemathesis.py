"""A bounded schemathesis run against a real node: generated requests to every operation of
/openapi.json find no server error, no answer outside its documented schema, and no crash.

The node answers known endpoints 200 even for a malformed request (`bad-request` in
`responseStatus`, as the original), and a handler that raises answers 200
`internal-service-error`; so besides schemathesis's checks, the node's log must show no
internal error and the node must still be healthy afterwards.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Final

import httpx
import pytest

from tests.process.conftest import StartNode

MAX_EXAMPLES: Final = 20  # per operation: the run is bounded by this much work
# Only a guard against a hung run, far above its normal 35-40 s (and 50+ s on a busy 2-core
# machine): the run's size is set by MAX_EXAMPLES, not by a clock.
RUN_GUARD: Final = 900.0
# Generous limits, so that the run tests the endpoints rather than the rate limiter.
RATE_LIMITS: Final = "registry=100000000,status=1000000,status.get-leases=1000000,cluster=1000000"
CHECKS: Final = "not_a_server_error,response_schema_conformance"


@pytest.mark.parametrize("context_path", ["", "/artemis-web"], ids=["root", "context-path"])
def test_schemathesis_finds_no_server_error(start_node: StartNode, tmp_path: Path,
                                            context_path: str) -> None:
    """Every documented operation, fuzzed for MAX_EXAMPLES cases, answers within its schema,
    never 5xx, and the node logs no internal error and stays up."""
    node = start_node("--rate-limits", RATE_LIMITS, context_path=context_path)
    document = httpx.get(f"{node.url}/openapi.json", timeout=5.0).json()
    operations = sum(method != "head" for item in document["paths"].values() for method in item)
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{node.url}/openapi.json",
        "--checks", CHECKS,
        "--max-examples", str(MAX_EXAMPLES),
        "--phases", "examples,coverage,fuzzing",
        "--request-timeout", "30",
        "--max-redirects", "0",
        "--generation-database", "none",
        "--no-color",
    ]

    # In tmp_path: no schemathesis.toml is picked up and nothing is written in the checkout.
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                         timeout=RUN_GUARD, check=False)

    report = run.stdout + run.stderr
    assert 0 == run.returncode, report
    assert "No issues found" in report, report
    assert f"Tested: {operations}\n" in report, report  # schemathesis sends no HEAD requests
    assert [] == [line for line in node.output().splitlines()
                  if "internal error" in line or "Traceback" in line]
    assert 200 == httpx.get(f"{node.url}/health", timeout=5.0).status_code
