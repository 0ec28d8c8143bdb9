"""A scenario's requests as the engines replay them: generated or loaded, cut and refined.

Shared by the exact engine and the pool loops (:mod:`simulator.disaggregation`), and by
:func:`simulator.runner.run`, which loads a trace once and hands it to whichever engine runs it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from simulator.engine.arrivals import check_follows, follows_of
from simulator.errors import UserError

__all__ = ["load_trace", "scenario_selections", "trace_file"]


def load_trace(scenario, seed: int, *, skip_bad: bool = False) -> pd.DataFrame:
    """The requests of ``scenario`` (a :class:`~simulator.scenario.Scenario`) at the engines'
    block size, limited by ``max_requests`` and ``duration``, arrivals scaled by ``time_scale``;
    ``seed`` drives a generated workload (agentic, sessions, spans: each its own stream);
    ``skip_bad`` skips (and counts) trace lines that do not parse instead of failing on the
    first."""
    from workloads import load
    from workloads.blocks import refine_trace

    w = scenario.workload
    bt = scenario.placement.block_tokens
    if w.kind == "agentic":  # a preset's structured sessions, or the sub-agent generator
        from workloads.agentic import AgenticParams, generate_agentic
        from workloads.sessions import generate_sessions

        p = agentic_params(scenario)
        df = (generate_agentic(np.random.default_rng([seed, 1]), p)
              if isinstance(p, AgenticParams)
              else generate_sessions(np.random.default_rng([seed, 2]), p))
    elif w.kind == "spans":
        df = _spans(scenario, seed)
    elif w.kind == "mixed":
        df = _mixed(scenario, seed, bt)
    else:
        df = load(trace_file(scenario), skip_bad=skip_bad)
    if scenario.engine.max_requests is not None:
        df = df.iloc[: scenario.engine.max_requests]
    if w.time_scale != 1.0:
        df = df.assign(arrival_at=df["arrival_at"] * w.time_scale,
                       after_time=df["after_time"] * w.time_scale)
    check_follows(df, w.concurrency, scenario.source)
    if scenario.engine.duration is not None and w.concurrency is None:
        # (a closed loop ignores the trace's arrival times: every request may enter)
        df = df[before_cut(df, scenario.engine.duration)]
    if len(df) and int(df["block_tokens"].iloc[0]) != bt:
        try:
            df = refine_trace(df, bt)
        except UserError as exc:
            raise UserError(f"{scenario.source}: field 'placement.block_tokens': {exc}") from None
    return df.reset_index(drop=True)


def scenario_selections(scenario, trace: pd.DataFrame) -> pd.DataFrame:
    """``scenario``'s selection trace (``workload.selections``), its rows of ``trace``'s requests
    checked against their contexts at the scenario's block size (:func:`workloads.selections.
    validate_selections`); rows of requests not in ``trace`` (cut by ``max_requests`` or the
    duration) are never replayed and stay unchecked. A :class:`UserError` naming the field
    otherwise: a selected block outside its request's context would be replayed as a block
    that exists nowhere (moved, fetched or recomputed as if real)."""
    from workloads.selections import read_selections, validate_selections

    bt = scenario.placement.block_tokens
    sel = read_selections(scenario.workload.selections, block_tokens=bt)
    try:
        validate_selections(sel, trace, bt, source=scenario.workload.selections,
                            traced_only=True)
    except UserError as exc:
        raise UserError(f"{scenario.source}: field 'workload.selections': {exc}") from None
    return sel


def before_cut(df: pd.DataFrame, duration: float) -> np.ndarray:
    """Per row of ``df``, whether it may enter a run cut at ``duration`` [s]: a request that
    follows none, if its ``arrival_at`` is before the cut; one that follows another (``after_id``)
    enters when that one has finished and its gap has passed, whatever its ``arrival_at`` (the
    nominal schedule), so it is kept with the request it follows — and so with its chain's first
    request. A kept follower that does not enter in time is a row of its own (never entered)."""
    keep = df["arrival_at"].to_numpy(float) < duration
    follows = follows_of(df)
    if follows is None:
        return keep
    row = follows[0]
    follower = row >= 0
    kept = keep.copy()
    for _ in range(len(kept)):  # a chain's first request's verdict, one link a pass
        new = np.where(follower, kept[np.maximum(row, 0)], keep)
        if (new == kept).all():
            break
        kept = new
    return kept


def trace_file(scenario) -> str:
    """``workload.trace`` of a ``kind = "trace"`` scenario as :func:`workloads.load` takes it
    (a shipped trace's name, or the path the scenario resolved); a missing file is a
    :class:`UserError` naming the scenario, the field and the folder it was looked for in."""
    from pathlib import Path

    from workloads.loaders import SHIPPED

    trace = scenario.workload.trace
    if Path(trace).is_dir():
        raise UserError(f"{scenario.source}: field 'workload.trace': {trace} is a folder, not a "
                        "trace file; name a .jsonl, .csv or .parquet file")
    if trace in SHIPPED or Path(trace).exists():
        return trace
    folder = Path(trace).parent.absolute()
    raise UserError(f"{scenario.source}: field 'workload.trace': {trace}: no such file (looked "
                    f"for in {folder}: a relative path is read from the scenario file's "
                    f"folder; shipped traces: {', '.join(sorted(SHIPPED))})")


def agentic_params(scenario):
    """The validated parameters of an ``agentic`` workload: a preset's
    :class:`~workloads.sessions.SessionParams` (``workload.agentic.preset`` and its overrides)
    or :class:`~workloads.agentic.AgenticParams`; a :class:`UserError` naming the field
    otherwise."""
    params = {"block_tokens": scenario.placement.block_tokens,
              **scenario.workload.agentic_params()}
    try:
        if "preset" in params:
            from workloads.presets import session_params

            preset = params.pop("preset")
            return session_params(str(preset), **params)
        from workloads.agentic import AgenticParams

        return AgenticParams(**params)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{scenario.source}: field 'workload.agentic': {exc}") from None


def span_generators() -> dict[str, tuple[type, Callable]]:
    """``workload.spans.shape`` → its parameters' dataclass and its generator."""
    from workloads.nested import NestedParams, generate_nested
    from workloads.rag import RagParams, generate_rag

    return {"rag": (RagParams, generate_rag), "nested": (NestedParams, generate_nested)}


def span_params(scenario):
    """The validated parameters of a ``spans`` workload (``workload.spans``: ``shape = "rag"``
    or ``"nested"`` and that generator's fields); a :class:`UserError` naming the field
    otherwise."""
    params = {"block_tokens": scenario.placement.block_tokens,
              **scenario.workload.spans_params()}
    shape = params.pop("shape", "rag")
    shapes = span_generators()
    if not isinstance(shape, str) or shape not in shapes:
        raise UserError(f"{scenario.source}: field 'workload.spans.shape': {shape!r} is not one "
                        "of: rag, nested")
    try:
        return shapes[shape][0](**params)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{scenario.source}: field 'workload.spans': {exc}") from None


def _spans(scenario, seed: int) -> pd.DataFrame:
    """Span queries (``workload.spans``), from the generator of their shape."""
    p = span_params(scenario)
    generate = dict(span_generators().values())[type(p)]
    return generate(np.random.default_rng([seed, 3]), p)


def _mixed(scenario, seed: int, bt: int) -> pd.DataFrame:
    """The mixed fleet (``workload.mixed``): sub-agents, private sessions and short chats."""
    from workloads.mixed import MixedFleetParams, generate_mixed_fleet

    try:
        p = MixedFleetParams(**{"block_tokens": bt, **scenario.workload.mixed_params()})
    except (TypeError, ValueError) as exc:
        raise UserError(f"{scenario.source}: field 'workload.mixed': {exc}") from None
    return generate_mixed_fleet(np.random.default_rng([seed, 4]), p)
