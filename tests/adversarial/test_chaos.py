"""The randomized fault run (tests/adversarial/chaos.py), short enough for every CI run.

The seeds are fixed so that a red run can be replayed step for step
(`python -m tests.adversarial.chaos --steps N --seed S`); longer runs with new seeds are run by
hand. ARTEMIS_CHAOS_SEED replaces them with one seed of your choice.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.adversarial.chaos import run

SEEDS = [int(os.environ["ARTEMIS_CHAOS_SEED"])] if os.environ.get("ARTEMIS_CHAOS_SEED") \
    else [11, 2027]
STEPS = 12


@pytest.mark.parametrize("seed", SEEDS)
def test_cluster_converges_after_every_fault(tmp_path: Path, seed: int) -> None:
    """After each random fault (kill, pause, partition, cut, delay, client deaths, unregisters,
    new and moved registrations, on skewed clocks), every node serves exactly the instances
    whose clients heartbeat, with their current data, and none of the dead ones."""
    chaos = run(STEPS, seed, tmp_path, log=lambda line: None)  # raises ChaosFailure

    assert [str(i) for i in range(1, STEPS + 1)] == [s.split(": ")[0] for s in chaos.steps]
