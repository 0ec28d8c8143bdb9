"""The invariant checks themselves (simulator/testing/invariants.py): each passes a real run and
fails on a copy of it broken in the one way it guards against. The property tests lean on these
checks; a check that cannot fail would let every engine bug through them."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from simulator import run
from simulator.engine import TOO_LARGE
from simulator.engine.requests import NOT_FINISHED
from simulator.testing.invariants import (
    check_bytes,
    check_closed_form_exact,
    check_conservation,
    check_ordering,
    check_rounds,
    check_run,
    check_steps,
    repo_on,
    small_scenario,
)
from workloads.schema import make_trace


@pytest.fixture(scope="module")
def good():
    """A route run on 2 GPUs: one request never fits (a reason), two complete, both reading a
    repository on GPU 1 (rounds over the fabric)."""
    sc = small_scenario("single_node:gpus=2", scheme="repo_affinity", weights_per_gpu=71.1e9)
    repo = repo_on(1, 2)
    trace = make_trace(arrival_at=[0.0, 0.05, 0.1], input_tokens=[300 * 64, 640, 640],
                       output_tokens=[5, 6, 4], block_ids=[list(range(300)), list(range(10)),
                                                           list(range(10))],
                       block_tokens=64, repo_id=[repo + 1, repo, repo])
    res = run(sc, "route", trace=trace)
    req = res.requests.set_index("request_id")
    assert req.loc[0, "reason"] == TOO_LARGE and req.loc[[1, 2], "completed"].all()
    assert len(res.rounds) and res.fabric_bytes > 0
    check_run(res, trace)  # the real run holds every check
    return res, trace


def broken(res, *, requests=None, rounds=None, summary=None, fabric_bytes=None,
           iterations=None):
    """A copy of ``res`` with some of its parts replaced (``res`` itself untouched)."""
    return dataclasses.replace(
        res, requests=res.requests.copy() if requests is None else requests,
        rounds=res.rounds.copy() if rounds is None else rounds,
        summary=dict(res.summary) if summary is None else summary,
        fabric_bytes=res.fabric_bytes if fabric_bytes is None else fabric_bytes,
        iterations=res.iterations.copy() if iterations is None else iterations)


def completed_row(res) -> int:
    return int(res.requests.index[res.requests["completed"]][0])


# -- conservation -------------------------------------------------------------------------------


def test_a_lost_or_duplicated_request_is_caught(good):
    res, trace = good
    with pytest.raises(AssertionError, match="lost or duplicated"):
        check_conservation(broken(res, requests=res.requests.iloc[1:]), trace)
    twice = pd.concat([res.requests, res.requests.iloc[[1]]], ignore_index=True)
    with pytest.raises(AssertionError, match="lost or duplicated"):
        check_conservation(broken(res, requests=twice), trace)


def test_a_completed_request_missing_a_token_is_caught(good):
    res, trace = good
    req = res.requests.copy()
    req.loc[completed_row(res), "tokens_generated"] -= 1
    with pytest.raises(AssertionError, match="missing tokens"):
        check_conservation(broken(res, requests=req), trace)


def test_reasons_must_match_completion(good):
    res, trace = good
    req = res.requests.copy()
    req.loc[~req["completed"], "reason"] = ""
    with pytest.raises(AssertionError, match="gives no reason"):
        check_conservation(broken(res, requests=req), trace)
    req = res.requests.copy()
    req.loc[completed_row(res), "reason"] = TOO_LARGE
    with pytest.raises(AssertionError, match="carries a failure reason"):
        check_conservation(broken(res, requests=req), trace)


@pytest.mark.parametrize("key", ["requests", "completed"])
def test_the_summary_counts_must_match_the_requests(good, key):
    res, trace = good
    summary = dict(res.summary)
    summary[key] += 1
    with pytest.raises(AssertionError):
        check_conservation(broken(res, summary=summary), trace)


# -- ordering -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("column", "before"), [("admitted_at", "arrival_at"),
                                                ("first_token_at", "admitted_at"),
                                                ("finished_at", "first_token_at")])
def test_each_timestamp_before_the_one_it_follows_is_caught(good, column, before):
    res, _ = good
    req = res.requests.copy()
    i = completed_row(res)
    req.loc[i, column] = req.loc[i, before] - 1e-6
    with pytest.raises(AssertionError, match="out of order"):
        check_ordering(broken(res, requests=req))


def test_an_unfinished_request_s_timestamps_are_not_ordered(good):
    res, _ = good
    req = res.requests.copy()
    req.loc[~req["completed"], "admitted_at"] = -1.0  # never admitted: nothing to order
    check_ordering(broken(res, requests=req))


# -- bytes --------------------------------------------------------------------------------------


def test_bytes_the_rounds_sent_must_be_the_fabric_s(good):
    res, _ = good
    sent = float(res.rounds["bytes"].sum())
    assert sent == pytest.approx(res.fabric_bytes, rel=1e-9)
    check_bytes(broken(res, fabric_bytes=sent * (1 + 1e-10)))  # within the tolerance
    with pytest.raises(AssertionError, match="rounds sent"):
        check_bytes(broken(res, fabric_bytes=sent * (1 + 1e-6)))
    with pytest.raises(AssertionError, match="rounds sent"):
        check_bytes(broken(res, fabric_bytes=sent * (1 - 1e-6)))


def test_reads_from_host_memory_are_not_fabric_bytes(good):
    res, _ = good
    host = res.rounds.iloc[[0]].copy()
    host["owner"] = "n0/host"
    host["bytes"] = 1e9  # a copy on the copy engines: the fabric never saw it
    rounds = pd.concat([res.rounds, host], ignore_index=True)
    check_bytes(broken(res, rounds=rounds))
    gpu = host.assign(owner=res.rounds["owner"].iloc[0])
    with pytest.raises(AssertionError, match="rounds sent"):
        check_bytes(broken(res, rounds=pd.concat([res.rounds, gpu], ignore_index=True)))


def with_classes(res, by_class: dict, fabric_bytes: float):
    return dataclasses.replace(broken(res, fabric_bytes=fabric_bytes),
                               extras={**res.extras, "bytes_by_class": by_class})


def test_beside_other_traffic_the_rounds_bytes_are_their_classes(good):
    # a deployment's links also carry its all-to-all and KV hand-off: the fabric's total is
    # no longer the rounds', which are then held to the bytes sent as kv_route and kv_fetch
    res, _ = good
    sent = float(res.rounds["bytes"].sum())
    assert res.extras["bytes_by_class"] == {"kv_route": pytest.approx(sent, rel=1e-12)}
    for other in ("moe_dispatch", "moe_combine", "pd_transfer", "tp_collective", "other"):
        split = {"kv_route": sent / 4, "kv_fetch": 3 * sent / 4, other: 5e9}
        check_bytes(with_classes(res, split, sent + 5e9))
        short = {"kv_route": sent / 4, "kv_fetch": sent / 2, other: 5e9}
        with pytest.raises(AssertionError, match="sent as kv_route and kv_fetch"):
            check_bytes(with_classes(res, short, sent + 5e9))
    # the rounds' own classes alone: the links' total is the yardstick
    with pytest.raises(AssertionError, match="links"):
        check_bytes(with_classes(res, {"kv_route": sent / 4, "kv_fetch": 3 * sent / 4},
                                 sent + 5e9))


def test_a_run_cut_with_a_round_under_way_delivered_more_than_its_rounds_sent(good):
    # found by benchmarks/fuzz.py (stop 81): cut by its duration while a routed query sat at
    # its owner, a run's links held the query's bytes and its rounds did not (the round had
    # not ended), on both engines; check_bytes asked for equality and failed a correct run
    res, trace = good
    rd = res.rounds.sort_values("started_at")
    mid = float(rd["started_at"].iloc[0] + rd["sim_time"].iloc[0] / 2)  # the first round's
    sc = small_scenario("single_node:gpus=2", scheme="repo_affinity", weights_per_gpu=71.1e9)
    cut_sc = dataclasses.replace(sc, engine=dataclasses.replace(sc.engine, duration=mid))
    for engine in ("exact", "fast"):
        cut = run(cut_sc, "route", trace=trace, engine=engine)
        sent = float(cut.rounds["bytes"].sum()) if len(cut.rounds) else 0.0
        assert cut.fabric_bytes > sent  # the query is in, its round is not
        assert cut.summary["unfinished"].get(NOT_FINISHED)
        check_run(cut, trace)
        check_bytes(cut)
        with pytest.raises(AssertionError, match="more than links"):  # still never more
            check_bytes(broken(cut, fabric_bytes=sent * (1 - 1e-6) if sent else -1.0))
        check_bytes(broken(cut, fabric_bytes=sent), rel=0.0)  # equal holds, to the bit
        check_bytes(broken(cut, fabric_bytes=sent))  # and within the tolerance
    # without a request under way at the cut, the bytes must still be equal
    whole = dict(res.summary)
    assert not whole["unfinished"].get(NOT_FINISHED)
    with pytest.raises(AssertionError, match="rounds sent"):
        check_bytes(broken(res, fabric_bytes=res.fabric_bytes * (1 + 1e-6)))


def test_no_rounds_and_no_fabric_bytes_hold(good):
    res, _ = good
    check_bytes(broken(res, rounds=res.rounds.iloc[:0], fabric_bytes=0.0))
    with pytest.raises(AssertionError, match="rounds sent"):
        check_bytes(broken(res, rounds=res.rounds.iloc[:0], fabric_bytes=1e3))


# -- rounds -------------------------------------------------------------------------------------


PHASES = ["probe_time", "transfer_time", "compute_time", "return_time", "merge_time"]


@pytest.mark.parametrize("phase", PHASES)
def test_a_negative_phase_is_caught(good, phase):
    res, _ = good
    rd = res.rounds.copy()
    rd.loc[0, phase] = -1e-9
    rd.loc[0, "sim_time"] = rd.loc[0, PHASES].sum()  # the sum still holds
    with pytest.raises(AssertionError, match="negative phase"):
        check_rounds(broken(res, rounds=rd))


@pytest.mark.parametrize("phase", PHASES)
def test_phases_that_do_not_add_up_to_the_round_are_caught(good, phase):
    res, _ = good
    rd = res.rounds.copy()
    rd.loc[0, phase] += 1e-6 * rd.loc[0, "sim_time"]
    with pytest.raises(AssertionError, match="do not add up"):
        check_rounds(broken(res, rounds=rd))


def test_a_run_without_rounds_has_no_phases_to_check(good):
    res, _ = good
    check_rounds(broken(res, rounds=res.rounds.iloc[:0]))


# -- the closed form ------------------------------------------------------------------------------


def exact_rounds(res) -> pd.DataFrame:
    """The run's rounds with every simulated time set to its closed form."""
    return res.rounds.assign(sim_time=res.rounds["cf_time"])


def test_a_round_off_the_closed_form_is_caught_beyond_the_tolerance(good):
    res, _ = good
    rd = exact_rounds(res)
    check_closed_form_exact(broken(res, rounds=rd), rel=1e-6)
    rd.loc[len(rd) - 1, "sim_time"] *= 1 + 2e-6
    with pytest.raises(AssertionError, match="closed form off by"):
        check_closed_form_exact(broken(res, rounds=rd), rel=1e-6)
    check_closed_form_exact(broken(res, rounds=rd), rel=3e-6)
    rd.loc[len(rd) - 1, "sim_time"] = rd.loc[len(rd) - 1, "cf_time"] * (1 - 2e-6)  # faster
    with pytest.raises(AssertionError, match="closed form off by"):
        check_closed_form_exact(broken(res, rounds=rd), rel=1e-6)


def test_first_step_looks_only_at_the_first_decode_step(good):
    res, _ = good
    rd = exact_rounds(res)
    later = rd["iteration"] > rd["iteration"].min()
    assert later.any() and (~later).any()
    rd.loc[later, "sim_time"] *= 1.5
    check_closed_form_exact(broken(res, rounds=rd), first_step=True)
    with pytest.raises(AssertionError, match="closed form off by"):
        check_closed_form_exact(broken(res, rounds=rd))
    rd = exact_rounds(res)
    rd.loc[~later, "sim_time"] *= 1.5
    with pytest.raises(AssertionError, match="closed form off by"):
        check_closed_form_exact(broken(res, rounds=rd), first_step=True)


def test_a_run_without_rounds_cannot_be_called_exact(good):
    res, _ = good
    with pytest.raises(AssertionError, match="no rounds"):
        check_closed_form_exact(broken(res, rounds=res.rounds.iloc[:0]))


# -- edges: what each check lets through ---------------------------------------------------------


def test_equal_timestamps_are_in_order(good):
    res, _ = good
    req = res.requests.copy()
    done = req["completed"]
    for column in ["admitted_at", "first_token_at", "finished_at"]:
        req.loc[done, column] = req.loc[done, "arrival_at"]
    check_ordering(broken(res, requests=req))


def test_bytes_equal_to_the_last_bit_hold_at_no_tolerance(good):
    res, _ = good
    sent = float(res.rounds["bytes"].sum())
    check_bytes(broken(res, fabric_bytes=sent), rel=0.0)
    # a tolerance of rel x max(sent, delivered, 1 B): 1.5e-9 B against nothing is too much
    with pytest.raises(AssertionError, match="rounds sent"):
        check_bytes(broken(res, rounds=res.rounds.iloc[:0], fabric_bytes=1.5e-9))


def one_round(res, **phases) -> pd.DataFrame:
    """The run's first round alone, its phases set (the rest 0) and its time their sum."""
    rd = res.rounds.iloc[[0]].copy()
    for p in PHASES:
        rd[p] = phases.get(p, 0.0)
    rd["sim_time"] = sum(phases.values())
    return rd


def test_zero_and_round_off_negative_phases_hold_a_larger_negative_does_not(good):
    res, _ = good
    check_rounds(broken(res, rounds=one_round(res, probe_time=0.0, compute_time=1e-3)))
    check_rounds(broken(res, rounds=one_round(res, probe_time=-1e-12, compute_time=1e-3)))
    with pytest.raises(AssertionError, match="negative phase"):
        check_rounds(broken(res, rounds=one_round(res, probe_time=-1.5e-12, compute_time=1e-3)))


def test_phases_of_a_zero_time_round_must_add_up_within_1e_15_s(good):
    res, _ = good
    rd = one_round(res)  # every phase and the time 0
    check_rounds(broken(res, rounds=rd))
    rd["merge_time"] = 1.5e-15
    with pytest.raises(AssertionError, match="do not add up"):
        check_rounds(broken(res, rounds=rd))


def test_the_closed_form_to_the_last_bit_holds_at_no_tolerance(good):
    res, _ = good
    check_closed_form_exact(broken(res, rounds=exact_rounds(res)), rel=0.0)


def bad_conservation(res):
    return broken(res, requests=res.requests.iloc[1:])


# -- steps ----------------------------------------------------------------------------------


def test_the_good_runs_steps_hold_and_say_what_they_are(good):
    # the two requests that complete run on a GPU each: a prefill step, then 5 and 3 decode
    # steps of one token after their first
    res, _ = good
    it = res.iterations
    check_steps(res, max_batch=1)
    assert int(it["batch"].sum()) == (6 - 1) + (4 - 1) and int(it["batch"].max()) == 1
    assert it.groupby(it["gpu"].astype(str)).size().to_dict() == {"n0/gpu0": 6, "n0/gpu1": 4}


def gpu0_steps(res) -> tuple[int, int]:
    """The rows of GPU 0's first and second steps."""
    it = res.iterations
    mine = it[it["gpu"].astype(str) == "n0/gpu0"].sort_values("iteration")
    return int(mine.index[0]), int(mine.index[1])


@pytest.mark.parametrize("how, match", [
    ("repeat", "iterations repeat"),
    ("backwards", "ends before it starts"),
    ("overlap", "steps overlap"),
    ("tokens", "recomputes after preemptions"),
    ("fewer tokens", "tokens miss its decodes"),
    ("lost step", "tokens generated"),
    ("gpu1 overlap", "steps overlap"),
])
def test_a_broken_step_record_is_caught(good, how, match):
    res, _ = good
    it = res.iterations.copy()
    first, i = gpu0_steps(res)
    if how == "repeat":
        it.loc[i, "iteration"] = it.loc[first, "iteration"]
    elif how == "backwards":
        it.loc[i, "finished_at"] = it.loc[i, "started_at"] - 1e-6
    elif how == "overlap":  # starts 1 ns before the step before it ends
        it.loc[i, "started_at"] = it.loc[first, "finished_at"] - 1e-9
    elif how == "tokens":  # a token more than its decodes, in a run without preemptions
        it.loc[i, "tokens"] += 1
    elif how == "fewer tokens":
        it.loc[i, "tokens"] -= 1
    elif how == "gpu1 overlap":  # the other GPU's second step, as "overlap" on GPU 0's
        mine = it[it["gpu"].astype(str) == "n0/gpu1"].sort_values("iteration").index
        it.loc[mine[1], "started_at"] = it.loc[mine[0], "finished_at"] - 1e-9
    else:  # a decode step missing from the records: its tokens came from nowhere
        it = it[it["batch"] > 0].iloc[1:]
    with pytest.raises(AssertionError, match=match):
        check_steps(broken(res, iterations=it))


def test_steps_that_touch_within_a_picosecond_do_not_overlap(good):
    res, _ = good
    it = res.iterations.copy()
    first, i = gpu0_steps(res)
    it.loc[i, "started_at"] = it.loc[first, "finished_at"] - 1e-13  # within the 1e-12 s
    check_steps(broken(res, iterations=it))
    # exactly back to back, with no tolerance; and a step of no length
    it.loc[i, "started_at"] = it.loc[first, "finished_at"]
    it.loc[i, "finished_at"] = it.loc[i, "started_at"]
    check_steps(broken(res, iterations=it), tol=0.0)


def test_a_batch_over_the_limit_is_caught_only_when_the_limit_is_given(good):
    res, _ = good
    check_steps(res)
    check_steps(res, max_batch=1)
    with pytest.raises(AssertionError, match="more than 0"):
        check_steps(res, max_batch=0)


def test_a_request_with_only_its_first_token_counts_it_as_a_first(good):
    # the rejected request given one token, as if its prompt had completed and it had left:
    # a first token, no decode — 8 decoded + 3 first = 11 generated
    res, _ = good
    req = res.requests.copy()
    req.loc[~req["completed"], "tokens_generated"] = 1
    check_steps(broken(res, requests=req))


def test_a_token_missing_is_caught(good):
    res, _ = good
    req = res.requests.copy()
    req.loc[completed_row(res), "tokens_generated"] -= 1
    with pytest.raises(AssertionError, match="tokens generated"):
        check_steps(broken(res, requests=req))


def test_a_summary_without_preemptions_allows_no_extra_token(good):
    res, _ = good
    req = res.requests.copy()
    req.loc[completed_row(res), "tokens_generated"] += 1
    summary = {k: v for k, v in res.summary.items() if k != "preemptions"}
    with pytest.raises(AssertionError, match="tokens generated"):
        check_steps(broken(res, requests=req, summary=summary))


def test_a_token_too_many_is_caught_unless_a_preemption_gave_it(good):
    # a recompute after a preemption gives its token in the step that finishes it: that step's
    # tokens hold one more than its decodes, at most one per preemption. A token generated that
    # no step and no first token made is caught, preemptions or not (until the audit of the
    # summary metrics a recompute's token was in no step, and one per preemption was let pass)
    res, _ = good
    req = res.requests.copy()
    req.loc[completed_row(res), "tokens_generated"] += 1
    summary = dict(res.summary, preemptions=1)
    for s in (res.summary, summary):
        with pytest.raises(AssertionError, match="tokens generated"):
            check_steps(broken(res, requests=req, summary=s))
    it = res.iterations.copy()
    it.loc[gpu0_steps(res)[1], "tokens"] += 1  # the recompute's token, in its step
    with pytest.raises(AssertionError, match="recomputes after preemptions"):
        check_steps(broken(res, iterations=it, requests=req))
    check_steps(broken(res, iterations=it, requests=req, summary=summary))


def bad_ordering(res):
    req = res.requests.copy()
    i = completed_row(res)
    req.loc[i, "finished_at"] = req.loc[i, "arrival_at"] - 1.0
    return broken(res, requests=req)


def bad_bytes(res):
    return broken(res, fabric_bytes=2 * res.fabric_bytes)


def bad_rounds(res):
    rd = res.rounds.copy()
    rd.loc[0, "transfer_time"] += 1.0
    return broken(res, rounds=rd)


def bad_steps(res):
    it = res.iterations.copy()
    it.loc[gpu0_steps(res)[1], "tokens"] += 1
    return broken(res, iterations=it)


@pytest.mark.parametrize("breaking", [bad_conservation, bad_ordering, bad_bytes, bad_rounds,
                                      bad_steps])
def test_check_run_runs_every_check(good, breaking):
    res, trace = good
    with pytest.raises(AssertionError):
        check_run(breaking(res), trace)
