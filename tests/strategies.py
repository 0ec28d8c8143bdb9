"""Hypothesis strategies shared by the test suite (they live in :mod:`simulator.testing` so users
can property-test their own policies with the same building blocks)."""

from simulator.testing.costs import *  # noqa: F401,F403
from simulator.testing.fabric import *  # noqa: F401,F403
from simulator.testing.traces import *  # noqa: F401,F403
