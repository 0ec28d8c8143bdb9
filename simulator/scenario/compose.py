"""A scenario as the composition of its sections: the frozen :class:`Scenario`.

:meth:`Scenario.load` reads a TOML file and :meth:`Scenario.from_dict` a mapping; both check the
top-level fields here and each section through :mod:`simulator.scenario.validate`, which fills the
section dataclasses of :mod:`simulator.scenario.sections` or calls the section's owner. Each
component later receives only its own part (``scenario.placement`` for the KV cache,
``scenario.engine`` for the decode loop …), never the whole scenario.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.errors import UserError
from simulator.fileio import folder_name_ok
from simulator.scenario.sections import (
    STACK_NAMES,
    EngineSpec,
    ModelSpec,
    PlacementSpec,
    TopologySpec,
    WorkloadSpec,
)
from simulator.scenario.validate import _read_toml, _thaw, _Validator


def _default_serving():
    from simulator.engine.scheduler import ServingSpec

    return ServingSpec()


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. Build with :meth:`load` (TOML) or :meth:`from_dict` (Python)."""

    name: str
    topology: TopologySpec
    model: ModelSpec
    workload: WorkloadSpec
    placement: PlacementSpec = field(default_factory=PlacementSpec)
    engine: EngineSpec = field(default_factory=EngineSpec)
    policies: tuple[str, ...] = ("route", "fetch", "adaptive")
    stack: str = "ibgda"
    seed: int = 0
    calibration: tuple[tuple[str, Any], ...] = ()
    source: str = "<dict>"
    disaggregation: Any = None
    serving: Any = field(default_factory=_default_serving)
    deployment: Any = None

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read and validate a scenario TOML file."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: scenario file not found; pass an existing .toml file")
        data = _read_toml(path)
        return cls.from_dict(data, source=str(path), base=path.parent)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], source: str = "<dict>", base: str | Path | None = None
    ) -> Scenario:
        """Validate a parsed scenario mapping; ``source`` names it in error messages."""
        v = _Validator(source, Path(base) if base is not None else Path.cwd())
        return _scenario(v, data)

    def with_changes(self, **changes: Any) -> Scenario:
        """A copy with some top-level fields or sub-specs replaced (``engine=…``, ``seed=…``)."""
        return dataclasses.replace(self, **changes)

    def calibration_dict(self) -> dict[str, Any]:
        """The included calibration values as a fresh dict (empty if none)."""
        return {k: _thaw(v) for k, v in self.calibration}


def _scenario(v: _Validator, data: Mapping[str, Any]) -> Scenario:
    """The scenario of ``data``: its top-level fields, then each section through ``v``."""
    top_known = (
        "name", "seed", "stack", "policies", "include",
        "topology", "model", "workload", "placement", "engine", "calibration",
        "disaggregation", "serving", "deployment",
    )
    if not isinstance(data, Mapping):
        raise UserError(f"{v.source}: a scenario must be a TOML table")
    v.unknown(data, "", top_known)
    name = v.get(dict(data), "", "name", str, Path(v.source).stem, check=folder_name_ok,
                 hint="give a name without '/', '\\' or control characters, not empty, '.' "
                 "or '..' (it names the result folder)")
    seed = v.get(dict(data), "", "seed", int, 0, check=lambda s: s >= 0,
                 hint="use an integer >= 0")
    stack = v.choice(dict(data), "", "stack", STACK_NAMES, "ibgda")
    policies = v.policies(data)
    calibration = v.calibration(data)
    engine = v.engine(data)
    deployment = v.deployment(data)
    return Scenario(
        name=name,
        topology=v.topology(data),
        model=v.model(data),
        workload=v.workload(data),
        placement=v.placement(data),
        engine=engine,
        policies=policies,
        stack=stack,
        seed=seed,
        calibration=calibration,
        source=v.source,
        disaggregation=v.disaggregation(data),
        serving=v.serving(data),
        deployment=deployment,
    )
