"""How many hypothesis examples a cell gets: one table for ``bench verify`` and the tests.

``examples`` are drawn cases per cell (after the worked example); ``shrink_examples`` the cases
allowed when searching for a small violation. ``quick`` is what ``tox -e bench`` runs, ``tests``
what ``pytest`` runs by default, ``thorough`` what both run when asked
(``--profile thorough``, ``ROWFREEZE_HYPOTHESIS_PROFILE=thorough``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, settings


@dataclass(frozen=True)
class SamplingProfile:
    examples: int
    shrink_examples: int


SAMPLING_PROFILES = {
    "quick": SamplingProfile(examples=6, shrink_examples=30),
    "tests": SamplingProfile(examples=20, shrink_examples=500),
    "thorough": SamplingProfile(examples=200, shrink_examples=1000),
}


PYTEST_PROFILE_VARIABLE = "ROWFREEZE_HYPOTHESIS_PROFILE"


def suite_profile() -> SamplingProfile:
    """The profile the test suite runs: ``thorough`` when the variable says so, else ``tests``."""
    thorough = os.environ.get(PYTEST_PROFILE_VARIABLE) == "thorough"
    return SAMPLING_PROFILES["thorough" if thorough else "tests"]


def search_settings(max_examples: int, shrink: bool) -> settings:
    """Deterministic settings for a search outside pytest (no database, no deadline)."""
    phases = [Phase.generate, Phase.shrink] if shrink else [Phase.generate]
    return settings(
        max_examples=max_examples,
        phases=phases,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
