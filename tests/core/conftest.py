"""Shared fixtures of the core tests: a guard that turns a hang of the core into a failure."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from artemis.core.registry import Registry
from artemis.core.versions import Change

Sweep = Callable[..., list[Change]]


@contextmanager
def _deadline(seconds: float, what: str) -> Iterator[None]:
    """Raise AssertionError in the main thread if the block runs longer than `seconds`."""
    if not hasattr(signal, "setitimer"):  # no interval timers (Windows): run unguarded
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise AssertionError(f"{what} did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def sweep() -> Sweep:
    """`registry.sweep(now, wall_ms)`, failing (instead of hanging the run) if it never returns."""

    def run(registry: Registry, now: float, wall_ms: int = 0) -> list[Change]:
        with _deadline(0.5, f"sweep(now={now})"):
            return registry.sweep(now, wall_ms)

    return run
