"""Flat run records → pandas DataFrames, and the headline summary.

The engine appends plain tuples while it runs (cheap: no pandas in the loop), packed now and then
into typed columns (:class:`simulator.engine.columns.Columns`), and builds each DataFrame once at
the end. Tables (one row per …):

- ``requests`` — request: arrival, first token, finish [s], tokens, home GPU, reuse, and
  ``completed`` / ``reason`` (every request that entered the run is accounted for);
- ``rounds`` — (iteration, layer, home, owner) exchange: option, batch, blocks, bytes, the
  simulated probe / transfer / compute / return / merge times and the closed form's prediction
  for the same inputs (``cf_*``), and ``layers`` — how many real layers the round stands for
  (``layer_groups`` folding);
- ``iterations`` — decode iteration of one GPU: start, end, batch, prefill time;
- ``gpus`` — GPU: busy time, utilization, kernels, HBM blocks;
- ``links`` — link: bytes, busy time, utilization (from the fabric), and ``link_timeline``.

:func:`summarize` turns them into the dict of DESIGN.md's ``run --json`` keys; :func:`run_notes`
says what a reader of an empty or degenerate run should know (no requests, none completed, no
rounds) — such a run is a result, not an error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.engine.columns import Columns

REQUEST_COLUMNS: tuple[str, ...] = (
    "request_id", "session_id", "home", "arrival_at", "admitted_at", "first_token_at",
    "finished_at", "input_tokens", "output_tokens", "tokens_generated", "reused_blocks",
    "prefilled_blocks", "completed", "reason",
)

ROUND_COLUMNS: tuple[str, ...] = (
    "iteration", "layer", "layers", "src", "owner", "option", "batch", "blocks",
    "distinct_blocks", "bytes", "started_at", "probe_time", "transfer_time", "compute_time",
    "return_time", "merge_time", "sim_time", "cf_probe_time", "cf_transfer_time",
    "cf_compute_time", "cf_return_time", "cf_merge_time", "cf_time",
)

ITERATION_COLUMNS: tuple[str, ...] = (
    "gpu", "iteration", "started_at", "finished_at", "batch", "prefill_time", "tokens",
    "prefill_tokens", "preempted",
)

#: numpy dtypes of the engine's round and iteration records (:class:`simulator.engine.columns.Columns`).
ROUND_DTYPES: tuple[str, ...] = (
    "int64", "int16", "int16", "int32", "int32", "object", "int32", "int32", "int32",
    *["float64"] * 14,
)
ITERATION_DTYPES: tuple[str, ...] = (
    "int32", "int64", "float64", "float64", "int32", "float64", "int32", "int32", "int32",
)


def _table(rows, columns, dtypes) -> pd.DataFrame:
    """The table of ``rows``: :class:`Columns` carry their dtypes; tuples take ``dtypes``, so
    a table has the same column types in every run (a time stays a float where every time of
    a run is a whole number; an empty table is typed too)."""
    if isinstance(rows, Columns):
        return rows.frame()
    df = pd.DataFrame.from_records(rows, columns=list(columns))
    return df.astype(dict(zip(columns, dtypes, strict=True)))


def ended_before(rounds: pd.DataFrame, until: float | None) -> pd.DataFrame:
    """The rounds of a run cut at ``until`` [s] (its duration; None: not cut) that ended before
    the clock stopped. The exact engine records a round as it ends, so it holds no other; the
    fast engine composes a whole decode step ahead of the clock, and keeps only these."""
    if until is None or not len(rounds):
        return rounds
    ended = (rounds["started_at"].to_numpy() + rounds["sim_time"].to_numpy()) < until
    return rounds if ended.all() else rounds[ended].reset_index(drop=True)


#: dtypes of an empty ``requests`` table: those a table of rows gets from the engine's tuples
#: (ids and token counts int64, times float64, ``completed`` bool, names and reasons strings).
REQUEST_DTYPES: tuple[str, ...] = (
    "int64", "int64", "str", *["float64"] * 4, *["int64"] * 5, "bool", "str",
)


def requests_frame(rows: list[tuple]) -> pd.DataFrame:
    """The ``requests`` table from engine tuples (order of :data:`REQUEST_COLUMNS`). A run
    of no request gets the columns typed as a run with requests has them (untyped, every column
    was ``object``: ``requests[requests["completed"]]`` then selected columns, not rows, and a
    Parquet file's schema differed from every other run's)."""
    df = pd.DataFrame.from_records(rows, columns=list(REQUEST_COLUMNS))
    if not len(df):
        return df.astype(dict(zip(REQUEST_COLUMNS, REQUEST_DTYPES, strict=True)))
    return df.sort_values("request_id", kind="stable").reset_index(drop=True)


def rounds_frame(rows: list[tuple] | Columns, gpu_names: list[str],
                 owner_names: list[str] | None = None) -> pd.DataFrame:
    """The ``rounds`` table from tuples or :class:`Columns`; ``src``/``owner`` indices become
    names (categoricals). Owners may also be host-DRAM nodes (``owner_names`` extends
    ``gpu_names``)."""
    df = _table(rows, ROUND_COLUMNS, ROUND_DTYPES)
    names = {"src": list(gpu_names), "owner": list(owner_names or gpu_names)}
    for col in ("src", "owner"):
        codes = df[col].to_numpy() if len(df) else np.zeros(0, np.int64)  # int32 from Columns
        df[col] = pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(names[col]))
    opt = df["option"]
    if not len(df):
        df["option"] = opt.astype(object)
    elif isinstance(opt.dtype, pd.CategoricalDtype):  # from Columns: categories as first seen
        df["option"] = opt.cat.reorder_categories(sorted(opt.cat.categories))
    else:
        df["option"] = opt.astype("category")
    return df


def iterations_frame(rows: list[tuple] | Columns, gpu_names: list[str]) -> pd.DataFrame:
    """The ``iterations`` table from tuples or :class:`Columns`; ``gpu`` index becomes a name."""
    df = _table(rows, ITERATION_COLUMNS, ITERATION_DTYPES)
    codes = df["gpu"].to_numpy(dtype=np.int64) if len(df) else np.zeros(0, np.int64)
    df["gpu"] = pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(list(gpu_names)))
    return df


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The ``q`` quantile of ``values`` each repeated ``weights`` times (NaN if no weight)."""
    values = np.asarray(values, float)
    weights = np.asarray(weights, float)
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    if len(values) == 0:
        return float("nan")
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    target = q * cum[-1]
    i = int(np.searchsorted(cum, target, side="left"))
    return float(v[min(i, len(v) - 1)])


def tbt_samples(iterations: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Time between tokens: each iteration's duration, weighted by the tokens it produced
    (a request's first token is its TTFT, not a TBT sample)."""
    if len(iterations) == 0:
        return np.zeros(0), np.zeros(0)
    dur = (iterations["finished_at"] - iterations["started_at"]).to_numpy(float)
    return dur, iterations["tokens"].to_numpy(float)


def closed_form_errors(rounds: pd.DataFrame) -> np.ndarray:
    """Relative error ``|sim − cf| / cf`` per round (rounds with ``cf > 0``)."""
    if len(rounds) == 0:
        return np.zeros(0)
    sim = rounds["sim_time"].to_numpy(float)
    cf = rounds["cf_time"].to_numpy(float)
    ok = cf > 0
    return np.abs(sim[ok] - cf[ok]) / cf[ok]


def capacity_window(requests: pd.DataFrame, iterations: pd.DataFrame,
                    concurrency: int) -> tuple[float, float, float]:
    """A closed loop's steady throughput: ``(start_at, end_at, tokens per second)``.

    The window starts when ``concurrency`` requests have completed (the first cohort, admitted
    together, has been replaced: warm-up over) and ends at the last request's entry (after it
    fewer than ``concurrency`` remain: the drain). Tokens: decode tokens of the iterations that
    end inside it plus first tokens produced inside it. NaN if the trace is too short for a
    window (fewer than ``concurrency`` completions before the last entry).
    """
    nan = (float("nan"),) * 3
    if len(requests) == 0:
        return nan
    done = np.sort(requests["finished_at"].to_numpy(float)[requests["completed"].to_numpy(bool)])
    if len(done) < concurrency:
        return nan
    start, end = float(done[concurrency - 1]), float(requests["arrival_at"].max())
    if not end > start:
        return nan
    fin = iterations["finished_at"].to_numpy(float) if len(iterations) else np.zeros(0)
    tokens = float(iterations["tokens"].to_numpy(float)[(fin > start) & (fin <= end)].sum()) \
        if len(iterations) else 0.0
    first = requests["first_token_at"].to_numpy(float)
    tokens += float(((first > start) & (first <= end)).sum())
    return start, end, tokens / (end - start)


def run_notes(summary: dict, *, pool_loop: bool = False) -> list[str]:
    """Notes on an empty or degenerate run (empty when there is nothing to say).

    Args:
        summary: a run's summary (:func:`summarize`).
        pool_loop: the run used a decode loop of its own (Lamina pools, homogeneous replicas),
            which exchanges whole batches and records no per-round rows.
    """
    from simulator.engine.requests import NOT_ARRIVED, NOT_DUE, NOT_ENTERED, NOT_FINISHED

    notes = []
    requests, completed = int(summary["requests"]), int(summary["completed"])
    unfinished = summary.get("unfinished") or {}
    refused = {r: n for r, n in unfinished.items()
               if r not in (NOT_FINISHED, NOT_ENTERED, NOT_DUE, NOT_ARRIVED, "")}
    if requests == 0:
        notes.append("no requests entered the run (the workload is empty, or engine.duration / "
                     "engine.max_requests cut it to nothing): its latency metrics are empty")
    elif completed == 0 and not refused:
        notes.append(f"none of the {requests:,} requests completed before the run ended "
                     "(engine.duration): its latency metrics are empty")
    elif completed == 0:
        notes.append(f"none of the {requests:,} requests completed: its latency metrics are "
                     "empty")
    if completed and np.isnan(summary.get("tbt_p50", 0.0)):  # no gap between two tokens
        notes.append("no request made a second token: there is no time between tokens (TBT "
                     "is empty)")
    for reason, n in refused.items():
        notes.append(f"{n:,} of the {requests:,} requests were not served: {reason} (the "
                     "requests table's reason column; more HBM for KV, or a shorter prompt, "
                     "would serve them)")
    if requests and int(summary.get("rounds", 0)) == 0:
        notes.append("no per-round records: this policy's own decode loop exchanges whole "
                     "batches, not KV rounds" if pool_loop else
                     "no rounds: no KV crossed between GPUs (the policy never routes or "
                     "fetches, or every block a query needed was local), so the closed-form "
                     "error is empty")
    over, window = int(summary.get("requests_over_context") or 0), summary.get("max_context_tokens")
    if over:
        notes.append(f"{over:,} of the trace's requests need more than the model's "
                     f"{int(window):,}-token context (prompt + output; its HF config's "
                     "max_position_embeddings): a server would refuse them, this run serves them")
    return notes


def summarize(
    requests: pd.DataFrame, rounds: pd.DataFrame, iterations: pd.DataFrame, *,
    sim_time: float, wall_time: float, events: int, bytes_moved: float,
    concurrency: int | None = None,
) -> dict:
    """Headline metrics of one run (DESIGN.md ``run --json`` keys, SI units, plus a few extras).

    ``throughput_tokens_per_s`` is generated tokens per simulated second of the run
    (``sim_time``: to its last event, or the whole ``[engine] duration`` when one is set, an
    idle tail included — a window's throughput, not a busy span's); ``bytes_moved`` the
    bytes the fabric carried; ``closed_form_error_*`` the relative error of the formula against
    the simulated rounds; ``unfinished`` the requests that did not complete, by reason (cut by
    the duration, never entered, refused for want of HBM). A closed loop (``concurrency``) adds
    ``capacity_tokens_per_s`` and ``capacity_window`` (:func:`capacity_window`).
    """
    done = requests[requests["completed"]] if len(requests) else requests
    ttft = (done["first_token_at"] - done["arrival_at"]).to_numpy(float) if len(done) else []
    dur, w = tbt_samples(iterations)
    tpot = tpot_samples(done)
    err = closed_form_errors(rounds)
    tokens = float(requests["tokens_generated"].sum()) if len(requests) else 0.0

    def q(a, p):
        return float(np.quantile(a, p)) if len(a) else float("nan")

    options = {}
    if len(rounds):
        counts = rounds["option"].value_counts()  # a categorical: no string per round
        options = {str(k): int(v) for k, v in sorted(counts.items()) if v > 0}
    return {
        "requests": int(len(requests)),
        "completed": int(len(done)),
        "ttft_p50": q(ttft, 0.5),
        "ttft_p99": q(ttft, 0.99),
        "tbt_p50": weighted_quantile(dur, w, 0.5),
        "tbt_p99": weighted_quantile(dur, w, 0.99),
        "tbt_mean": float(np.average(dur, weights=w)) if w.sum() > 0 else float("nan"),
        "tpot_p50": q(tpot, 0.5),
        "tpot_p99": q(tpot, 0.99),
        "throughput_tokens_per_s": tokens / sim_time if sim_time > 0 else 0.0,
        "bytes_moved": float(bytes_moved),
        "closed_form_error_p50": q(err, 0.5),
        "closed_form_error_p99": q(err, 0.99),
        "wall_time": float(wall_time),
        "events": int(events),
        "sim_time": float(sim_time),
        "decode_tokens": tokens,
        "rounds": int(len(rounds)),
        "options": options,
        "prefill_tokens": int(iterations["prefill_tokens"].sum()) if "prefill_tokens" in
        iterations else 0,
        "preemptions": int(iterations["preempted"].sum()) if "preempted" in iterations else 0,
        "unfinished": _unfinished(requests),
        **_capacity(requests, iterations, concurrency),
    }


def tpot_samples(done: pd.DataFrame) -> np.ndarray:
    """Time per output token of each completed request that made two tokens or more [s]:
    ``(finished_at − first_token_at) / (tokens_generated − 1)`` — vLLM's TPOT, one sample per
    request (TBT weighs every token alike instead; docs/records.md)."""
    if len(done) == 0:
        return np.zeros(0)
    n = done["tokens_generated"].to_numpy(float)
    span = (done["finished_at"] - done["first_token_at"]).to_numpy(float)
    more = n > 1
    return span[more] / (n[more] - 1.0)


def _unfinished(requests: pd.DataFrame) -> dict[str, int]:
    """Requests that did not complete, counted by their reason (the requests table's)."""
    reasons = requests.loc[~requests["completed"].to_numpy(bool), "reason"].astype(str)
    return {str(k): int(v) for k, v in sorted(reasons.value_counts().items())}


def _capacity(requests, iterations, concurrency: int | None) -> dict:
    if concurrency is None:
        return {}
    start, end, rate = capacity_window(requests, iterations, concurrency)
    return {"capacity_tokens_per_s": rate, "capacity_window": [start, end]}
