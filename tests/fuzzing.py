"""What the fuzz harnesses (test_fuzz_native, test_fuzz_files) share: a brief, repeatable run in
every test run (CI), and with ``FUZZ_SECONDS=N`` new examples drawn again and again for about N
seconds per test."""

from __future__ import annotations

import os
import time

from hypothesis import HealthCheck, settings

__all__ = ["FUZZ_SECONDS", "fuzz_round", "fuzz"]

FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "0"))


def fuzz_round(examples: int, fuzz_examples: int, *health_checks: HealthCheck) -> settings:
    """Hypothesis settings of one round: ``examples`` fixed ones in CI, ``fuzz_examples`` new ones
    per round under ``FUZZ_SECONDS``; the health checks named are not run."""
    return settings(
        max_examples=fuzz_examples if FUZZ_SECONDS else examples,
        deadline=None,
        database=None,
        derandomize=not FUZZ_SECONDS,  # CI: the same examples every run; FUZZ_SECONDS: new ones
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, *health_checks],
    )


def fuzz(test) -> None:
    """Run a hypothesis test once, or again and again for ``FUZZ_SECONDS``."""
    deadline = time.monotonic() + FUZZ_SECONDS
    test()
    while time.monotonic() < deadline:
        test()
