"""Shared set-up of the property-based parser fuzzing (tests/test_fuzz_*.py).

Hypothesis runs derandomized (the same examples on every run, so CI is
reproducible) and without a per-example deadline (the machine is loaded).
``PYSFU_FUZZ_PROFILE=long`` runs ten times as many examples, for a soak by
hand. ``counted`` tallies the examples each parser ran; conftest's terminal
summary prints the tally after the run (``fuzz: rtp 1500 examples, ...``).
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

EXAMPLES = 250

settings.register_profile(
    "fuzz",
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("long", parent=settings.get_profile("fuzz"), max_examples=10 * EXAMPLES)
settings.load_profile(os.environ.get("PYSFU_FUZZ_PROFILE", "fuzz"))

#: parser name -> examples run in this session
COUNTS: Counter = Counter()


def counted(parser: str) -> None:
    COUNTS[parser] += 1


def summary() -> str:
    """The one line the terminal summary prints, or "" when no fuzz test ran."""
    if not COUNTS:
        return ""
    return "fuzz: " + ", ".join(f"{name} {count} examples" for name, count in sorted(COUNTS.items()))
