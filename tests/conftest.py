"""Hypothesis profiles: ``default`` keeps the whole run within minutes on 2 cores; set
``ROWFREEZE_HYPOTHESIS_PROFILE=thorough`` for many more examples per property."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("ROWFREEZE_HYPOTHESIS_PROFILE", "default"))
