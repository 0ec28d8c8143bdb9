"""A run's records and headline summary by hand: each table built from the engine's tuples or
typed columns, the rounds a run cut at its duration keeps, the weighted quantiles behind TBT,
the closed form's error, a closed loop's capacity window, and the notes on a degenerate run —
each on rows small enough to work out here."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from simulator import run
from simulator.engine.admission import TOO_LARGE
from simulator.engine.arrivals import NOT_ENTERED
from simulator.engine.columns import Columns
from simulator.engine.records import (
    ITERATION_COLUMNS,
    ITERATION_DTYPES,
    REQUEST_COLUMNS,
    ROUND_COLUMNS,
    ROUND_DTYPES,
    capacity_window,
    closed_form_errors,
    ended_before,
    iterations_frame,
    requests_frame,
    rounds_frame,
    run_notes,
    summarize,
    tbt_samples,
    weighted_quantile,
)
from simulator.engine.requests import NOT_FINISHED
from simulator.testing.invariants import check_run, repo_on, small_scenario
from workloads.schema import make_trace

GPUS = ["g0", "g1", "g2"]


def row(columns: tuple[str, ...], **fields) -> tuple:
    """One engine tuple of ``columns``: ``fields`` set, the rest 0."""
    values = dict.fromkeys(columns, 0)
    values.update(fields)
    return tuple(values[c] for c in columns)


def round_row(option="route", src=0, owner=1, started_at=0.0, sim_time=1.0, cf_time=1.0):
    """One ``rounds`` tuple: the fields a test reads set, the rest 0."""
    return row(ROUND_COLUMNS, option=option, src=src, owner=owner, started_at=started_at,
               sim_time=sim_time, cf_time=cf_time)


def iteration_row(gpu=0, started_at=0.0, finished_at=1.0, tokens=1):
    return row(ITERATION_COLUMNS, gpu=gpu, started_at=started_at, finished_at=finished_at,
               tokens=tokens)


def request_row(rid, arrival_at=0.0, first_token_at=1.0, finished_at=2.0, tokens=3,
                completed=True):
    return row(REQUEST_COLUMNS, request_id=rid, session_id=rid, arrival_at=arrival_at,
               first_token_at=first_token_at, finished_at=finished_at, tokens_generated=tokens,
               completed=completed, reason="" if completed else "not finished")


def test_requests_come_back_in_request_order_with_a_fresh_index():
    df = requests_frame([request_row(7), request_row(2), request_row(5)])
    assert df["request_id"].tolist() == [2, 5, 7] and df.index.tolist() == [0, 1, 2]
    assert tuple(df.columns) == REQUEST_COLUMNS


@pytest.mark.parametrize("packed", [False, True])
def test_rounds_name_their_gpus_and_owners_and_sort_their_options(packed):
    rows = [round_row("route", 0, 1), round_row("fetch", 2, 3), round_row("route", 1, 0)]
    if packed:  # the engine's typed columns: options as categories in the order first seen
        cols = Columns(list(zip(ROUND_COLUMNS, ROUND_DTYPES, strict=True)))
        for r in rows:
            cols.append(r)
        rows = cols
    df = rounds_frame(rows, GPUS, owner_names=[*GPUS, "host0"])
    assert df["src"].tolist() == ["g0", "g2", "g1"]
    assert df["owner"].tolist() == ["g1", "host0", "g0"]
    assert list(df["owner"].cat.categories) == [*GPUS, "host0"]
    assert df["option"].tolist() == ["route", "fetch", "route"]
    assert list(df["option"].cat.categories) == ["fetch", "route"]


@pytest.mark.parametrize("packed", [False, True])
def test_no_rounds_is_an_empty_table_of_names(packed):
    rows = Columns(list(zip(ROUND_COLUMNS, ROUND_DTYPES, strict=True))) if packed else []
    df = rounds_frame(rows, GPUS)
    assert len(df) == 0 and tuple(df.columns) == ROUND_COLUMNS
    assert list(df["src"].cat.categories) == GPUS == list(df["owner"].cat.categories)
    assert df["option"].dtype == object


def test_iterations_name_their_gpu():
    df = iterations_frame([iteration_row(gpu=2), iteration_row(gpu=0)], GPUS)
    assert df["gpu"].tolist() == ["g2", "g0"] and list(df["gpu"].cat.categories) == GPUS
    empty = iterations_frame(Columns(list(zip(ITERATION_COLUMNS, ITERATION_DTYPES,
                                              strict=True))), GPUS)
    assert len(empty) == 0 and list(empty["gpu"].cat.categories) == GPUS


def test_a_cut_run_keeps_the_rounds_that_ended_before_the_cut():
    df = rounds_frame([round_row(started_at=0.0, sim_time=1.0),
                       round_row(started_at=1.5, sim_time=1.0),   # ends at 2.5: after
                       round_row(started_at=0.5, sim_time=1.5),   # ends at 2.0: at the cut
                       round_row(started_at=1.0, sim_time=0.5)], GPUS)
    kept = ended_before(df, 2.0)
    assert kept["started_at"].tolist() == [0.0, 1.0] and kept.index.tolist() == [0, 1]
    assert list(kept.columns) == list(df.columns)  # the old index is dropped, not kept
    assert ended_before(df, None) is df and ended_before(df, 10.0) is df
    assert ended_before(df.iloc[:0], 1.0).empty


@pytest.mark.parametrize(("values", "weights", "q", "want"), [
    ([3.0, 1.0, 2.0], [1, 1, 1], 0.5, 2.0),
    ([3.0, 1.0, 2.0], [1, 1, 1], 1 / 3, 1.0),        # exactly the first third: its value
    ([3.0, 1.0, 2.0], [1, 1, 1], 0.34, 2.0),
    ([1.0, 2.0], [3, 1], 0.75, 1.0),                 # weight 3 of 4 on the smaller
    ([1.0, 2.0], [3, 1], 0.76, 2.0),
    ([1.0, 5.0, 2.0], [0, 1, 1], 0.5, 2.0),          # a weight of 0 is no sample
    ([1.0, 2.0], [1, 1], 1.0, 2.0),
    ([1.0, 2.0], [1, 1], 0.0, 1.0),
])
def test_a_weighted_quantile_repeats_each_value_its_weight(values, weights, q, want):
    assert weighted_quantile(np.array(values), np.array(weights), q) == want


def test_a_weighted_quantile_of_no_weight_is_nan():
    assert math.isnan(weighted_quantile(np.array([1.0]), np.array([0.0]), 0.5))
    assert math.isnan(weighted_quantile(np.zeros(0), np.zeros(0), 0.5))


def test_tbt_samples_are_iteration_durations_weighted_by_their_tokens():
    it = iterations_frame([iteration_row(started_at=1.0, finished_at=1.5, tokens=2),
                           iteration_row(started_at=2.0, finished_at=4.0, tokens=1)], GPUS)
    dur, w = tbt_samples(it)
    assert dur.tolist() == [0.5, 2.0] and w.tolist() == [2.0, 1.0]
    dur, w = tbt_samples(it.iloc[:0])
    assert len(dur) == 0 == len(w)


def test_the_closed_forms_error_is_relative_and_skips_rounds_it_gives_no_time():
    df = rounds_frame([round_row(sim_time=1.5, cf_time=1.0), round_row(sim_time=0.5, cf_time=2.0),
                       round_row(sim_time=1.0, cf_time=0.0)], GPUS)
    assert closed_form_errors(df).tolist() == [0.5, 0.75]
    assert len(closed_form_errors(df.iloc[:0])) == 0


def test_a_closed_loops_capacity_window_counts_the_tokens_inside_it():
    # four requests, two at a time: the window opens when the second finishes (t = 4) and
    # closes when the last enters (t = 6)
    req = requests_frame([request_row(0, 0.0, 1.0, 3.0), request_row(1, 0.0, 1.5, 4.0),
                          request_row(2, 3.0, 4.5, 8.0), request_row(3, 6.0, 6.5, 9.0),
                          request_row(4, 0.0, 0.5, 1.0, completed=False)])
    it = iterations_frame([iteration_row(finished_at=t, tokens=k) for t, k in
                           ((3.9, 5), (4.0, 7), (4.1, 2), (6.0, 3), (6.1, 11))], GPUS)
    start, end, rate = capacity_window(req, it, 2)
    assert (start, end) == (4.0, 6.0)
    assert rate == pytest.approx((2 + 3 + 1) / 2.0)  # two iterations and one first token
    assert all(math.isnan(x) for x in capacity_window(req, it, 5))  # too few completions
    assert all(math.isnan(x) for x in capacity_window(req.iloc[:0], it, 1))
    # a window that would not be open: the last entry before the cohort is done
    assert all(math.isnan(x) for x in capacity_window(req, it, 4))


def test_a_capacity_windows_edges():
    # exactly `concurrency` completions: the window opens at the last of them (t = 2)
    req = requests_frame([request_row(0, 0.0, 2.0, 1.0), request_row(1, 0.0, 1.0, 2.0),
                          request_row(2, 5.0, 5.0, 0.0, completed=False)])
    it = iterations_frame([iteration_row(finished_at=t, tokens=1) for t in (2.0, 3.0, 5.0)],
                          GPUS)
    start, end, rate = capacity_window(req, it, 2)
    # iterations ending at 3 and 5 (not the one at the opening); first tokens: the one at the
    # close (5), not the one at the opening (2)
    assert (start, end, rate) == (2.0, 5.0, 3 / 3.0)
    # no iterations: first tokens alone
    assert capacity_window(req, it.iloc[:0], 2) == (2.0, 5.0, 1 / 3.0)
    # the window would close where it opens
    req = requests_frame([request_row(0, 0.0, 1.0, 2.0), request_row(1, 2.0, 3.0, 4.0,
                                                                      completed=False)])
    assert all(math.isnan(x) for x in capacity_window(req, it, 1))


def test_the_summary_of_a_small_run():
    req = requests_frame([request_row(0, 0.0, 1.0, 3.0, tokens=4),
                          request_row(1, 1.0, 3.0, 5.0, tokens=6),
                          request_row(2, 2.0, 0.0, 0.0, tokens=1, completed=False)])
    rounds = rounds_frame([round_row("route", sim_time=1.5, cf_time=1.0),
                           round_row("fetch", sim_time=1.0, cf_time=1.0),
                           round_row("route", sim_time=2.0, cf_time=1.0)], GPUS)
    # 99 tokens from steps of 1 s, one from a step of 2 s: p99 is still 1 s
    it = iterations_frame([iteration_row(started_at=0.0, finished_at=1.0, tokens=99),
                           iteration_row(started_at=1.0, finished_at=3.0, tokens=1)], GPUS)
    it["prefill_tokens"] = [10, 5]
    it["preempted"] = [1, 0]
    s = summarize(req, rounds, it, sim_time=5.0, wall_time=0.25, events=17, bytes_moved=1e6)
    assert (s["requests"], s["completed"], s["rounds"]) == (3, 2, 3)
    assert s["ttft_p50"] == pytest.approx(1.5) and s["ttft_p99"] == pytest.approx(1.99)
    assert (s["tbt_p50"], s["tbt_p99"]) == (1.0, 1.0)
    assert s["tbt_mean"] == pytest.approx((99 * 1.0 + 1 * 2.0) / 100)
    # TPOT, one sample per completed request: (3 − 1) / 3 and (5 − 3) / 5 s; the unfinished
    # request is not a sample
    assert s["tpot_p50"] == pytest.approx((2 / 3 + 2 / 5) / 2)
    assert s["tpot_p99"] == pytest.approx(2 / 5 + 0.99 * (2 / 3 - 2 / 5))
    assert s["throughput_tokens_per_s"] == pytest.approx(11 / 5.0)
    assert s["decode_tokens"] == 11.0
    assert s["closed_form_error_p50"] == pytest.approx(0.5)
    assert s["options"] == {"fetch": 1, "route": 2}
    assert (s["prefill_tokens"], s["preemptions"]) == (15, 1)
    assert (s["bytes_moved"], s["wall_time"], s["events"], s["sim_time"]) == (1e6, 0.25, 17, 5.0)
    assert "capacity_tokens_per_s" not in s
    closed = summarize(req, rounds, it, sim_time=5.0, wall_time=0.0, events=0, bytes_moved=0,
                       concurrency=1)
    # one at a time: the window would open at the first finish (3 s), after the last entry (2 s)
    assert math.isnan(closed["capacity_tokens_per_s"])
    assert len(closed["capacity_window"]) == 2
    assert all(math.isnan(x) for x in closed["capacity_window"])


def test_the_summary_of_one_token_a_short_run_and_records_without_extra_columns():
    req = requests_frame([request_row(0, 0.0, 0.1, 0.3, tokens=2)])
    it = iterations_frame([iteration_row(started_at=0.1, finished_at=0.3, tokens=1)], GPUS)
    rounds = rounds_frame([round_row("fetch", sim_time=0.5), round_row("route", started_at=5)],
                          GPUS)
    s = summarize(req, ended_before(rounds, 1.0), it.drop(columns=["prefill_tokens",
                                                                   "preempted"]),
                  sim_time=0.5, wall_time=0.0, events=0, bytes_moved=0.0)
    assert s["tbt_mean"] == pytest.approx(0.2)  # one token's step
    assert s["tpot_p50"] == s["tpot_p99"] == pytest.approx(0.2)  # its second token, 0.2 s on
    one = requests_frame([request_row(0, 0.0, 0.1, 0.1, tokens=1)])  # a first token alone
    first = summarize(one, rounds_frame([], GPUS), it.iloc[:0], sim_time=0.5, wall_time=0.0,
                      events=0, bytes_moved=0.0)
    assert math.isnan(first["tpot_p50"]) and math.isnan(first["tpot_p99"])  # no next token
    # beside a request of two tokens, a one-token request is no sample (not a 0/0)
    both = requests_frame([request_row(0, 0.0, 0.1, 0.1, tokens=1),
                           request_row(1, 0.0, 0.1, 0.3, tokens=2)])
    two = summarize(both, rounds_frame([], GPUS), it, sim_time=0.5, wall_time=0.0, events=0,
                    bytes_moved=0.0)
    assert two["tpot_p50"] == two["tpot_p99"] == pytest.approx(0.2)
    assert s["throughput_tokens_per_s"] == pytest.approx(2 / 0.5)
    assert (s["prefill_tokens"], s["preemptions"]) == (0, 0)
    assert s["options"] == {"fetch": 1}  # route's round ended after the cut: not listed as 0
    assert s["closed_form_error_p50"] == s["closed_form_error_p99"] == 0.5  # one round


def test_the_summary_of_nothing_is_empty_not_an_error():
    req = requests_frame([])
    s = summarize(req, rounds_frame([], GPUS), iterations_frame([], GPUS), sim_time=0.0,
                  wall_time=0.0, events=0, bytes_moved=0.0)
    assert (s["requests"], s["completed"], s["decode_tokens"], s["options"]) == (0, 0, 0.0, {})
    assert s["unfinished"] == {}
    assert s["throughput_tokens_per_s"] == 0.0 and (s["prefill_tokens"], s["preemptions"]) == (0, 0)
    for k in ("ttft_p50", "ttft_p99", "tbt_p50", "tbt_p99", "tbt_mean", "tpot_p50", "tpot_p99",
              "closed_form_error_p50"):
        assert math.isnan(s[k]), k
    req = requests_frame([request_row(0), request_row(1, completed=False),
                          request_row(2, completed=False)])
    s = summarize(req, rounds_frame([], GPUS), iterations_frame([], GPUS), sim_time=1.0,
                  wall_time=0.0, events=0, bytes_moved=0.0)
    assert s["unfinished"] == {"not finished": 2}  # the completed one is not counted


@pytest.mark.parametrize(("summary", "pool_loop", "notes"), [
    ({"requests": 0, "completed": 0}, False, ["no requests entered the run"]),
    ({"requests": 4, "completed": 0, "rounds": 3}, False, ["none of the 4 requests completed"]),
    ({"requests": 4, "completed": 4, "rounds": 0}, False, ["no rounds: no KV crossed"]),
    ({"requests": 4, "completed": 4, "rounds": 0}, True, ["no per-round records"]),
    ({"requests": 4, "completed": 4}, False, ["no rounds: no KV crossed"]),
    ({"requests": 4, "completed": 4, "rounds": 2}, False, []),
    ({"requests": 4, "completed": 4, "rounds": 2, "requests_over_context": 1200,
      "max_context_tokens": 163840}, False,
     ["1,200 of the trace's requests need more than the model's 163,840-token context"]),
    # cut by the duration (or never entered): the first note says so; refused: named
    ({"requests": 4, "completed": 0, "rounds": 3, "unfinished": {NOT_FINISHED: 3,
                                                                 NOT_ENTERED: 1}}, False,
     ["none of the 4 requests completed before the run ended (engine.duration)"]),
    ({"requests": 2, "completed": 0, "rounds": 3, "unfinished": {TOO_LARGE: 2}}, False,
     ["none of the 2 requests completed: its", "2 of the 2 requests were not served: its KV "
      "does not fit the home GPU's free HBM"]),
    ({"requests": 3, "completed": 1, "rounds": 3, "unfinished": {TOO_LARGE: 1,
                                                                 NOT_FINISHED: 1}}, False,
     ["1 of the 3 requests were not served: its KV does not fit"]),
    ({"requests": 3, "completed": 3, "rounds": 3, "tbt_p50": float("nan")}, False,
     ["no request made a second token"]),
    ({"requests": 3, "completed": 0, "rounds": 3, "tbt_p50": float("nan")}, False,
     ["none of the 3 requests completed before"]),
    ({"requests": 3, "completed": 3, "rounds": 3, "tbt_p50": 0.02}, False, []),
])
def test_a_degenerate_run_says_what_a_reader_should_know(summary, pool_loop, notes):
    got = run_notes(summary, pool_loop=pool_loop)
    assert len(got) == len(notes) and all(g.startswith(n) for g, n in zip(got, notes,
                                                                           strict=True))


def test_a_runs_gpu_table_and_link_timeline_are_over_its_simulated_time():
    # one request whose prompt lives on GPU 1, served on GPU 0: a short run (< 1 s)
    sc = small_scenario(scheme="repo_affinity", home="least_loaded")
    trace = make_trace(arrival_at=[0.0], input_tokens=[40 * 64], output_tokens=[6],
                       block_ids=[list(range(40))], block_tokens=64, repo_id=[repo_on(1, 2)])
    res = run(sc, "fetch", seed=3, trace=trace)
    s = res.summary
    now = s["sim_time"]
    assert 0 < now < 1 and (s["policy"], s["seed"]) == ("fetch", 3)
    gpus = res.gpus.set_index("gpu")
    assert gpus["busy_time"].iloc[0] > 0  # the home decodes (under fetch the owner idles)
    assert np.allclose(gpus["utilization"], gpus["busy_time"] / now, rtol=1e-12)
    for tl in (res.link_timeline, res.extras["class_timeline"]):  # 100 bins over the run
        assert len(tl) and tl["start_at"].min() == 0.0
        assert tl["end_at"].max() == pytest.approx(now)
        widths = (tl["end_at"] - tl["start_at"]).to_numpy()
        assert widths.max() == pytest.approx(now / 100.0)
    assert res.link_timeline.groupby(["src", "dst"]).size().max() == 100
    # fetched blocks serve the later steps from the home's copies: some hits, some misses
    assert 0 < s["copy_hit_rate"] < 1
    moved = float((res.rounds["bytes"] * res.rounds["layers"]).sum())  # each round's layers
    assert moved > 0 and s["bytes_moved"] == pytest.approx(moved)
    home = run(sc, "colocated", seed=3, trace=trace).summary  # every block at home: no round
    assert home["rounds"] == 0 and home["bytes_moved"] == 0.0


def test_a_run_of_no_request_has_its_tables_typed_as_a_run_with_requests():
    # found by benchmarks/fuzz.py: a run cut before its first arrival had every requests column
    # of dtype object, so the invariants' own filter requests[requests["completed"]] picked
    # columns (KeyError: 'arrival_at') and a Parquet file's schema was another run's; its
    # timelines had no columns at all
    sc = small_scenario(scheme="repo_affinity", home="least_loaded")
    trace = make_trace(arrival_at=[0.0], input_tokens=[40 * 64], output_tokens=[6],
                       block_ids=[list(range(40))], block_tokens=64, repo_id=[repo_on(1, 2)])
    empty = trace.iloc[:0]
    for engine in ("exact", "fast"):
        full, none = (run(sc, "fetch", trace=t, engine=engine) for t in (trace, empty))
        assert len(full.requests) == 1 and len(none.requests) == 0
        assert len(full.extras["class_timeline"]) and len(full.link_timeline)
        # (an empty rounds table is typed too, its option as object: test_no_rounds_is_...)
        for table in ("requests", "iterations", "link_timeline", "class_timeline"):
            got = none.extras[table] if table == "class_timeline" else getattr(none, table)
            want = full.extras[table] if table == "class_timeline" else getattr(full, table)
            assert len(got) == 0 and dict(got.dtypes) == dict(want.dtypes), table
        req = none.requests
        assert req[req["completed"]].shape == (0, len(REQUEST_COLUMNS))
        check_run(none, empty)
    typed = row(REQUEST_COLUMNS, request_id=0, session_id=0, home="g0", arrival_at=0.0,
                admitted_at=0.0, first_token_at=1.0, finished_at=2.0, completed=True, reason="")
    assert dict(requests_frame([]).dtypes) == dict(requests_frame([typed]).dtypes)


def test_a_run_of_no_request_has_no_timeline():
    empty = make_trace(arrival_at=[], input_tokens=[], output_tokens=[], block_ids=[],
                       block_tokens=64)
    res = run(small_scenario(), "route", trace=empty)
    assert res.summary["sim_time"] == 0.0 and res.summary["requests"] == 0
    assert res.link_timeline.empty and res.extras["class_timeline"].empty
    assert (res.gpus["utilization"] == 0.0).all()


def test_requests_refused_for_want_of_hbm_are_counted_by_reason_and_noted(tmp_path):
    # two 3,000-token prompts (47 blocks of 64 tokens, 4.5 MB each over 61 layers: 212 MB)
    # on 80 GB GPUs holding 71.9 GB of weights and a 10 % reserve: 0.1 GB left, neither fits
    from clitools import small_scenario

    from simulator import run
    from simulator.scenario import Scenario

    sc = Scenario.load(small_scenario(tmp_path))
    sc = sc.with_changes(placement=dataclasses.replace(sc.placement, weights_per_gpu=71.9e9))
    for engine in ("exact", "fast"):
        s = run(sc, "route", engine=engine).summary
        assert (s["requests"], s["completed"], s["unfinished"]) == (2, 0, {TOO_LARGE: 2})
        notes = run_notes(s)
        assert notes[0] == "none of the 2 requests completed: its latency metrics are empty"
        assert notes[1].startswith(f"2 of the 2 requests were not served: {TOO_LARGE}")
