"""Model-attention disaggregation vs a homogeneous baseline, compared at equal hardware cost.

Two decode loops replace the engine's per-GPU loop when a policy names one (``loop`` class
attribute, see :mod:`simulator.policies.disaggregated` / :mod:`simulator.policies.homogeneous`):

- :mod:`simulator.lamina` — Lamina-style: ``a`` model-worker GPUs run projections + FFN,
  ``b`` attention-worker GPUs hold the KV cache and run attention; every layer the batch's
  Q, K, V cross the fabric and the attention output comes back; ``n`` micro-batches rotate over
  ``n − 1`` model-worker slices (staggered pipelining).
- :mod:`simulator.homogeneous` — vLLM-like: tensor-parallel replicas each run the whole model
  and hold their own KV.

This module holds what both share (the FIFO kernel stream is :class:`simulator.streams.Stream`,
the engine's): the request book-keeping, head-sharded
architectures for kernel times, the :class:`~simulator.engine.Result` they return (same tables and
``summary`` keys as the engine, plus ``mean_batch``, ``cost_per_hour``,
``tokens_per_s_per_dollar_hour`` and pool idle fractions), the comparison table the CLI prints,
the network-stack study, and a loader for scenario files with a ``[disaggregation]`` section.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simpy

from simulator import records
from simulator.admission import init_request_arrays
from simulator.calibration import run_kernels
from simulator.disaggregation_spec import DisaggregationSpec
from simulator.errors import UserError

#: The two policy names this module serves, in comparison order.
LOOPS: tuple[str, ...] = ("disaggregated", "homogeneous")
NOT_FINISHED = "not finished when the run stopped (duration limit)"
TOO_LARGE = "its KV does not fit the attention pool even alone"
TOO_LARGE_REPLICA = "its KV does not fit a replica's free HBM even alone"


def head_shard(arch, kv_heads: int):
    """The architecture one GPU sees when it serves ``kv_heads`` of ``arch``'s KV heads (and
    their query heads): KV bytes, query heads and attention FLOPs scaled by the share."""
    share = kv_heads / arch.kv_heads
    return dataclasses.replace(
        arch, query_heads=max(1, round(arch.query_heads * share)), kv_heads=kv_heads,
        kv_bytes_per_token_bf16=arch.kv_bytes_per_token_bf16 * share,
        kv_bytes_per_token_fp8=arch.kv_bytes_per_token_fp8 * share,
        attention_flops_per_token=arch.attention_flops_per_token * share)


def split_heads(kv_heads: int, parts: int) -> list[int]:
    """KV heads per part, as even as possible, larger shares first (``parts <= kv_heads``)."""
    base, extra = divmod(kv_heads, parts)
    return [base + (i < extra) for i in range(parts)]


def attended_tokens(arch, context: np.ndarray) -> np.ndarray:
    """Tokens each query attends: its context, capped at top-k for sparse (DSA) models."""
    context = np.asarray(context, float)
    return np.minimum(context, arch.topk_tokens) if arch.sparse else context


def fold_layers(layers: int, groups: int, multiple: int = 1) -> np.ndarray:
    """Real layers each simulated slot stands for: every layer (``groups = 0``) or ``groups``
    slots rounded to a multiple of ``multiple`` (so slots map evenly onto model slices)."""
    if groups <= 0 or groups >= layers:
        return np.ones(layers, np.int64)
    s = max(multiple, int(round(groups / multiple)) * multiple)
    s = min(s, layers)
    return np.diff(np.linspace(0, layers, s + 1).round().astype(np.int64))


def served_arch(scenario, arch=None):
    """The architecture a run serves: ``arch`` if given, else the scenario's model; with
    ``model.selection = "dense"`` a sparse (DSA) model attends its whole context instead."""
    from simulator.models import model

    arch = arch if arch is not None else model(scenario.model.name)
    if arch.sparse and scenario.model.selection == "dense":
        kind = "mla" if arch.attention == "mla_dsa" else arch.attention
        arch = dataclasses.replace(arch, topk_tokens=None, attention=kind)
    return arch


class Requests:
    """Per-request state as numpy arrays, built from a trace; rows become ``requests``."""

    def __init__(self, trace: pd.DataFrame, progress: Callable[[int, int], None] | None) -> None:
        init_request_arrays(self, trace)
        self.home = [""] * self.n
        self.finished = 0
        self.progress = progress

    def finish(self, r: int, now: float, reason: str = "") -> None:
        """Mark request ``r`` done at ``now`` (with a reason if it did not complete)."""
        self.finish_at[r] = now
        self.reason[r] = reason
        self.finished += 1
        if self.progress is not None:
            self.progress(self.finished, self.n)

    def frame(self, block_tokens: int) -> pd.DataFrame:
        """The ``requests`` table (engine columns); unfinished requests get a reason."""
        for r in range(self.n):
            if not self.reason[r] and (np.isnan(self.finish_at[r]) or self.gen[r] < self.out[r]):
                self.reason[r] = NOT_FINISHED
        done = np.array([not x for x in self.reason], bool)
        blocks = (-(-self.inp // block_tokens)).tolist()
        rows = list(zip(self.rid.tolist(), self.sid.tolist(), self.home, self.arrival.tolist(),
                        self.admitted_at.tolist(), self.first_at.tolist(),
                        np.where(done, self.finish_at, np.nan).tolist(), self.inp.tolist(),
                        self.out.tolist(), self.gen.tolist(), [0] * self.n, blocks,
                        done.tolist(), self.reason, strict=True))
        return records.requests_frame(rows)


def build_result(policy: str, seed: int, env: simpy.Environment, fabric, reqs: Requests,
                 block_tokens: int, iters: list[tuple], unit_names: list[str],
                 gpus: pd.DataFrame, cost_per_hour: float, wall_time: float,
                 extra: Mapping[str, Any]):
    """A :class:`~simulator.engine.Result` with the engine's tables and summary keys.

    ``iters`` rows: the engine's iteration columns followed by the closed form's predicted
    iteration time ``cf_time`` [s]; ``unit_names`` names the ``gpu`` column's codes
    (micro-batches or replicas). ``closed_form_error_*`` is the relative error of that
    prediction against the simulated iteration times.
    """
    from simulator.engine import Result

    requests = reqs.frame(block_tokens)
    it = records.iterations_frame([row[:7] for row in iters], unit_names)
    it["cf_time"] = [row[7] for row in iters]
    rounds = records.rounds_frame([], ["-"])
    now = float(env.now)
    links = fabric.links_frame()
    timeline = fabric.link_timeline(max(now / 100.0, 1e-6)) if now > 0 else pd.DataFrame()
    moved = float(fabric.bytes_delivered)
    summary = records.summarize(requests, rounds, it, sim_time=now, wall_time=wall_time,
                                events=next(env._eid), bytes_moved=moved)
    sim = (it["finished_at"] - it["started_at"]).to_numpy(float)
    cf = it["cf_time"].to_numpy(float)
    ok = np.isfinite(cf) & (cf > 0)
    err = np.abs(sim[ok] - cf[ok]) / cf[ok]
    summary["closed_form_error_p50"] = float(np.quantile(err, 0.5)) if len(err) else float("nan")
    summary["closed_form_error_p99"] = float(np.quantile(err, 0.99)) if len(err) else float("nan")
    summary["mean_batch"] = mean_batch(it)
    summary["cost_per_hour"] = float(cost_per_hour)
    tput = summary["throughput_tokens_per_s"]
    summary["tokens_per_s_per_dollar_hour"] = tput / cost_per_hour if cost_per_hour > 0 else 0.0
    summary.update(extra)
    summary["policy"] = policy
    summary["seed"] = seed
    return Result(policy, seed, requests, rounds, links, gpus, it, timeline, summary,
                  fabric_bytes=moved, extras=dict(extra))


def mean_batch(iterations: pd.DataFrame) -> float:
    """Time-averaged number of requests decoding at once over the whole deployment."""
    if len(iterations) == 0:
        return 0.0
    start = iterations["started_at"].to_numpy(float)
    end = iterations["finished_at"].to_numpy(float)
    span = end.max() - start.min()
    if span <= 0:
        return 0.0
    return float((iterations["batch"].to_numpy(float) * (end - start)).sum() / span)


def idle_fraction(busy: Iterable[float], span: float) -> float:
    """Mean idle share of a pool's GPUs over ``span`` [s] (0 if nothing ran)."""
    busy = list(busy)
    if span <= 0 or not busy:
        return 0.0
    return float(1.0 - min(1.0, sum(busy) / (len(busy) * span)))


class PoolRun:
    """What both loops set up the same way: clock, graph, architecture, the DOP check against the
    topology's GPUs, kernels, fabric, requests and their KV need, the queue and its waiters.
    A subclass builds its pools after ``super().__init__`` and implements ``execute``."""

    baseline: bool = False  # checked against the homogeneous baseline's fields

    def __init__(self, sc, spec: DisaggregationSpec, seed: int, trace: pd.DataFrame, graph,
                 progress, arch=None) -> None:
        import topologies
        from simulator.disaggregation_spec import check_against
        from simulator.network import Fabric

        self.sc, self.spec, self.seed = sc, spec, seed
        self.env = simpy.Environment()
        self.graph = graph if graph is not None else sc.topology.build()
        self.arch = arch = served_arch(sc, arch)
        self._names = list(topologies.gpus(self.graph))
        self._kinds = [str(self.graph.nodes[x].get("gpu", "H100")) for x in self._names]
        self.reserve = sc.placement.reserve_fraction
        check_against(spec, arch, self._kinds, self.reserve, sc.source, baseline=self.baseline)
        self.kernels = run_kernels(sc.calibration_dict())
        self.fabric = Fabric(self.env, self.graph, sc.stack)
        self.req = r = Requests(trace, progress)
        self.need = (r.inp + r.out).astype(float) * arch.kv_bytes_per_token * arch.layers
        self.queue: deque[int] = deque()
        self.waiters: list[simpy.Event] = []
        self.iters: list[tuple] = []

    def gpus_of(self, kind: str, count: int) -> list[str]:
        """The first ``count`` GPUs of catalog ``kind`` in the topology's natural order."""
        return [x for x, k in zip(self._names, self._kinds, strict=True)
                if k.upper() == kind.upper()][:count]

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for ev in waiters:
            ev.succeed()

    def _arrivals(self):
        env, r = self.env, self.req
        for i in range(r.n):
            dt = r.arrival[i] - env.now
            if dt > 0:
                yield env.timeout(dt)
            self.queue.append(i)
            self._wake()

    @classmethod
    def simulate(cls, scenario, seed: int | None = None, *,
                 spec: DisaggregationSpec | None = None, graph=None,
                 trace: pd.DataFrame | None = None,
                 progress: Callable[[int, int], None] | None = None, arch=None):
        """Build one run of this loop and execute it (arguments as
        :func:`simulator.lamina.simulate_disaggregated`)."""
        from simulator.engine import load_trace

        seed = scenario.seed if seed is None else int(seed)
        spec = spec if spec is not None else spec_of(scenario)
        if trace is None:
            trace = load_trace(scenario, seed)
        return cls(scenario, spec, seed, trace, graph, progress, arch).execute()


# -- running and comparing ---------------------------------------------------------------------

def spec_of(scenario) -> DisaggregationSpec:
    """The scenario's ``[disaggregation]`` section (defaults if it has none)."""
    spec = getattr(scenario, "disaggregation", None)
    return spec if spec is not None else DisaggregationSpec()


def simulate(scenario, policy: str, seed: int | None = None, **kwargs):
    """Run ``policy`` (``"disaggregated"`` or ``"homogeneous"``) on ``scenario``."""
    if policy == "disaggregated":
        from simulator.lamina import simulate_disaggregated

        return simulate_disaggregated(scenario, seed, **kwargs)
    if policy == "homogeneous":
        from simulator.homogeneous import simulate_homogeneous

        return simulate_homogeneous(scenario, seed, **kwargs)
    raise UserError(f"unknown disaggregation loop {policy!r}; use one of {', '.join(LOOPS)}")


def compare(scenario, seed: int | None = None, **kwargs) -> dict:
    """Both policies on the same scenario: ``{"disaggregated": Result, "homogeneous": Result}``."""
    return {p: simulate(scenario, p, seed, **kwargs) for p in LOOPS}


_TABLE_COLUMNS = (
    ("throughput_tokens_per_s", "throughput [tok/s]", 1.0, "{:.1f}"),
    ("tbt_p50", "TBT p50 [ms]", 1e3, "{:.2f}"),
    ("tbt_p99", "TBT p99 [ms]", 1e3, "{:.2f}"),
    ("mean_batch", "mean batch", 1.0, "{:.1f}"),
    ("cost_per_hour", "$/hour", 1.0, "{:.2f}"),
    ("tokens_per_s_per_dollar_hour", "tok/s per $/h", 1.0, "{:.2f}"),
)


def comparison_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    """One row per policy (keys of ``results``: Result objects or summary dicts) with the
    headline metrics, plus a ``ratio`` row (first policy / second) when there are two."""
    rows = {}
    for name, res in results.items():
        s = res.summary if hasattr(res, "summary") else res
        rows[name] = {k: float(s.get(k, float("nan"))) for k, *_ in _TABLE_COLUMNS}
    df = pd.DataFrame.from_dict(rows, orient="index")
    if len(df) == 2:
        a, b = df.index
        with np.errstate(divide="ignore", invalid="ignore"):
            df.loc[f"ratio ({a}/{b})"] = df.loc[a] / df.loc[b]
    return df


def comparison_table(results: Mapping[str, Any], title: str = "disaggregated vs homogeneous"):
    """A ``rich.table.Table`` of :func:`comparison_frame` (SI converted for display)."""
    from rich.table import Table

    df = comparison_frame(results)
    table = Table(title=title)
    table.add_column("policy")
    for _, label, _, _ in _TABLE_COLUMNS:
        table.add_column(label, justify="right")
    for name, row in df.iterrows():
        ratio = str(name).startswith("ratio")
        cells = []
        for key, _, scale, fmt in _TABLE_COLUMNS:
            v = row[key]
            cells.append("-" if not math.isfinite(v) else (f"{v:.3f}×" if ratio
                                                           else fmt.format(v * scale)))
        table.add_row(str(name), *cells)
    return table


def stack_study(scenario, stacks: Iterable[str] = ("ibgda", "nccl"), seed: int | None = None,
                **kwargs) -> pd.DataFrame:
    """The disaggregated run under each network stack: TBT p50/p99 [s], throughput [tok/s],
    tok/s per $/h, and the change against the first stack (``tbt_p50_delta`` [s],
    ``throughput_ratio``). Shows what the per-layer round-trip latency costs."""
    rows = []
    for st in stacks:
        res = simulate(scenario.with_changes(stack=st), "disaggregated", seed, **kwargs)
        s = res.summary
        rows.append({"stack": st, "tbt_p50": s["tbt_p50"], "tbt_p99": s["tbt_p99"],
                     "throughput_tokens_per_s": s["throughput_tokens_per_s"],
                     "tokens_per_s_per_dollar_hour": s["tokens_per_s_per_dollar_hour"],
                     "mean_batch": s["mean_batch"], "model_pool_idle": s["model_pool_idle"],
                     "attention_pool_idle": s["attention_pool_idle"]})
    df = pd.DataFrame(rows).set_index("stack")
    ref = df.iloc[0]
    df["tbt_p50_delta"] = df["tbt_p50"] - ref["tbt_p50"]
    df["throughput_ratio"] = df["throughput_tokens_per_s"] / ref["throughput_tokens_per_s"]
    return df


def load_scenario(path: str | Path):
    """A scenario file → ``(Scenario, DisaggregationSpec)`` (defaults if it has no
    ``[disaggregation]`` section)."""
    from simulator.scenario import Scenario

    sc = Scenario.load(path)
    return sc, spec_of(sc)
