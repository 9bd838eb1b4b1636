"""The hypothesis profile of ``bench.verify.sampling.suite_profile``: its ``tests`` profile keeps
the whole run within minutes on 2 cores; ``ROWFREEZE_HYPOTHESIS_PROFILE=thorough`` draws many
more examples per property."""

from hypothesis import HealthCheck, settings

from bench.verify.sampling import suite_profile

settings.register_profile(
    "rowfreeze",
    max_examples=suite_profile().examples,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("rowfreeze")
