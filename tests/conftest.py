"""Test configuration: hypothesis profiles (no deadlines: CI machines are slow and noisy).

``HYPOTHESIS_PROFILE`` picks one: ``ci`` (what CI runs, when ``CI`` is set), ``default`` (local
runs), ``thorough`` (many more examples, for a local run before a release:
``HYPOTHESIS_PROFILE=thorough python -m pytest -q -n 2``) and ``mutation`` (few, derandomized
examples: the same ones for every mutant, ``benchmarks/mutation.py``). A test's own
``@settings(max_examples=examples(N))`` scales with the profile
(:func:`simulator.testing.profiles.examples`).
"""

from hypothesis import HealthCheck, settings

from simulator.testing.profiles import profile

settings.register_profile(
    "default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", deadline=None, max_examples=600, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "mutation", deadline=None, max_examples=20, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck)
)
settings.load_profile(profile())
