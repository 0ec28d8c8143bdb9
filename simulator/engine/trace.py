"""A scenario's requests as the engines replay them: generated or loaded, cut and refined.

Shared by the exact engine and the pool loops (:mod:`simulator.disaggregation`), and by
:func:`simulator.runner.run`, which loads a trace once and hands it to whichever engine runs it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.errors import UserError

__all__ = ["load_trace"]


def load_trace(scenario, seed: int, *, skip_bad: bool = False) -> pd.DataFrame:
    """The requests of ``scenario`` (a :class:`~simulator.scenario.Scenario`) at the engines'
    block size, limited by ``max_requests`` and ``duration``, arrivals scaled by ``time_scale``;
    ``seed`` drives a generated (agentic) workload; ``skip_bad`` skips (and counts) trace lines
    that do not parse instead of failing on the first."""
    from workloads import load
    from workloads.blocks import refine_trace

    w = scenario.workload
    bt = scenario.placement.block_tokens
    if w.kind == "agentic":
        from workloads.agentic import AgenticParams, generate_agentic

        params = {"block_tokens": bt, **w.agentic_params()}
        try:
            p = AgenticParams(**params)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{scenario.source}: field 'workload.agentic': {exc}") from None
        df = generate_agentic(np.random.default_rng([seed, 1]), p)
    else:
        df = load(w.trace, skip_bad=skip_bad)
    if scenario.engine.max_requests is not None:
        df = df.iloc[: scenario.engine.max_requests]
    if w.time_scale != 1.0:
        df = df.assign(arrival_at=df["arrival_at"] * w.time_scale)
    if scenario.engine.duration is not None and w.concurrency is None:
        # (a closed loop ignores the trace's arrival times: every request may enter)
        df = df[df["arrival_at"] < scenario.engine.duration]
    if len(df) and int(df["block_tokens"].iloc[0]) != bt:
        df = refine_trace(df, bt)
    return df.reset_index(drop=True)
