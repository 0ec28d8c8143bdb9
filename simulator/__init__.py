"""kvfabric's simulator: the engines and their models (network, GPU, KV cache, cost model).

    from simulator import Scenario, run
    res = run(Scenario.load("scenarios/agentic_repo.toml"), policy="route", seed=0)
    res.requests, res.rounds, res.links, res.summary

``Scenario`` and ``run`` are imported on first use, so importing a leaf module (``simulator.units``)
stays cheap. The packages, what each may import and where a new part goes:
``docs/architecture.md``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Result", "Scenario", "__version__", "run"]


def __getattr__(name: str):
    if name == "Scenario":
        from simulator.scenario import Scenario

        return Scenario
    if name in ("run", "Result"):
        from simulator import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")
