"""What a run of the engine returns: :class:`Result`, built once at the end from the run's state.

The record lists the run kept (rounds, iterations) and its per-request arrays become flat DataFrames
(:mod:`simulator.engine.records`); the fabric gives per-link totals and a utilization timeline (100
bins over the run); the GPUs' streams give busy time; :func:`simulator.engine.records.summarize`
gives the headline metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from simulator.engine import records
from simulator.network.linkstats import (
    CLASS_TIMELINE_COLUMNS,
    LINK_TIMELINE_COLUMNS,
    empty_timeline,
)
from simulator.network.traffic import by_class


@dataclass
class Result:
    """What one run produced (DataFrames built once at the end) and its headline summary."""

    policy: str
    seed: int
    requests: pd.DataFrame
    rounds: pd.DataFrame
    links: pd.DataFrame
    gpus: pd.DataFrame
    iterations: pd.DataFrame
    link_timeline: pd.DataFrame
    summary: dict
    fabric_bytes: float = 0.0
    extras: dict = field(default_factory=dict)


def collect(run, wall: float, events: int) -> Result:
    """The :class:`Result` of a finished engine run ``run`` (wall time [s], SimPy events)."""
    req = run.req
    completed = np.array([not x for x in req.reason], bool)
    req_rows = list(zip(
        req.rid.tolist(), req.sid.tolist(),
        [run.names[h] if h >= 0 else "" for h in req.home.tolist()],
        req.arrival.tolist(), req.admitted_at.tolist(), req.first_at.tolist(),
        np.where(completed, req.finish_at, np.nan).tolist(), req.inp.tolist(),
        req.out.tolist(), req.gen.tolist(), req.reused.tolist(), req.prefilled.tolist(),
        completed.tolist(), req.reason, strict=True))
    requests = records.requests_frame(req_rows)
    rounds = records.ended_before(records.rounds_frame(run.rounds, run.names,
                                                       run.names + run.hosts),
                                  run.sc.engine.duration)
    iterations = records.iterations_frame(run.iters, run.names)
    links = run.fabric.links_frame()
    now = run.env.now
    timeline = link_timeline(run.fabric)
    d = run.dir
    gpus = pd.DataFrame({
        "gpu": run.names,
        "busy_time": [x.busy_time for x in run.streams],
        "utilization": [x.busy_time / now if now > 0 else 0.0 for x in run.streams],
        "kernels": [x.kernels_run for x in run.streams],
        "copy_busy_time": [x.busy_time for x in run.copies],
        "capacity_blocks": d.capacity.tolist(),
        "owned_blocks": d.owned.tolist(),
        "copy_blocks": d.copies.tolist(),
    })
    moved = float((rounds["bytes"] * rounds["layers"]).sum()) if len(rounds) else 0.0
    summary = records.summarize(requests, rounds, iterations, sim_time=now, wall_time=wall,
                                events=events, bytes_moved=moved,
                                concurrency=run.sc.workload.concurrency)
    summary["policy"] = run.policy.name
    summary["seed"] = run.seed
    extras = {"demoted": d.demoted, "dropped": d.dropped, "copies_evicted": d.copies_evicted,
              **fabric_extras(run.fabric)}
    deploy = getattr(run, "deploy", None)
    if deploy is not None:  # a [deployment]: its records and figures (only then)
        extras.update(deploy.extras())
        summary.update(deploy.summary())
    if run.arch.layers > run.S:  # layer folding: what the per-layer records stand for
        summary["layers_per_slot"] = run.arch.layers / run.S
    refs = run.steps.copy_hits + run.steps.copy_misses
    # the share of selected blocks held by another GPU (or a host, or dropped) that the home
    # found among its own copies (fetched or recomputed before)
    summary["copy_hit_rate"] = run.steps.copy_hits / refs if refs else float("nan")
    return Result(run.policy.name, run.seed, requests, rounds, links, gpus, iterations,
                  timeline, summary, fabric_bytes=run.fabric.bytes_delivered, extras=extras)


def link_timeline(fabric) -> pd.DataFrame:
    """The run's ``link_timeline``: each link's bytes and utilization in 100 bins over the run
    (:meth:`Fabric.link_timeline <simulator.network.Fabric.link_timeline>`); a run of no time
    has no bin (the table's columns, no rows). The decode loop's result and the pool loops'
    (:mod:`simulator.disaggregation.pools`) both take it from here."""
    now = fabric.env.now
    if now > 0:
        return fabric.link_timeline(max(now / 100.0, 1e-6))
    return empty_timeline(LINK_TIMELINE_COLUMNS)


def fabric_extras(fabric) -> dict:
    """The fabric's records by traffic class (:mod:`simulator.network.traffic`): bytes sent per
    class, bytes per link and class (``link_classes``), and bytes per link kind, class and time
    bin (``class_timeline``, 100 bins over the run)."""
    now = fabric.env.now
    return {"bytes_by_class": by_class(fabric.sent_by_class),
            "link_classes": fabric.links_by_class(),
            "class_timeline": (fabric.class_timeline(max(now / 100.0, 1e-6)) if now > 0
                               else empty_timeline(CLASS_TIMELINE_COLUMNS))}

