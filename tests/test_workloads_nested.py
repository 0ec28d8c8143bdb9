"""Nested generation: n inner answers feeding a judge as commuting spans; temperature 0."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tracetools import spans_of

from workloads.nested import NestedParams, generate_nested
from workloads.schema import blocks_needed
from workloads.selections import generated_block_id


def judges(df):
    return df[df["spans"].map(len) > 0]


def answer_spans(row):
    return [tuple(s) for s in spans_of(row)]


def test_temperature_zero_gives_identical_candidates():
    df = generate_nested(np.random.default_rng(0), NestedParams(temperature=0.0, candidates=6))
    assert len(judges(df)) > 3
    for _, j in judges(df).iterrows():
        assert len(set(answer_spans(j))) == 1 and len(answer_spans(j)) == 6
        inner = df[(df["session_id"] == j["session_id"]) & (df["spans"].map(len) == 0)]
        assert inner["output_tokens"].nunique() == 1  # one answer, generated n times


def test_above_zero_every_candidate_differs():
    df = generate_nested(np.random.default_rng(0), NestedParams(temperature=0.7, candidates=6))
    for _, j in judges(df).iterrows():
        assert len(set(answer_spans(j))) == 6


def test_the_answers_are_the_pages_the_inner_calls_generated():
    df = generate_nested(np.random.default_rng(1), NestedParams(candidates=3))
    for _, j in judges(df).iterrows():
        inner = df[(df["session_id"] == j["session_id"]) & (df["spans"].map(len) == 0)]
        assert (inner["arrival_at"] < j["arrival_at"]).all()
        assert j["parent_id"] in set(inner["request_id"])
        nb = len(inner["block_ids"].iloc[0])
        assert (inner["input_tokens"] == nb * 64).all()  # page-aligned: answers start a page
        want = {tuple(generated_block_id(r, np.arange(nb, nb + -(-o // 64))))
                for r, o in zip(inner["request_id"], inner["output_tokens"], strict=True)}
        assert set(answer_spans(j)) == want
        # the judge's prompt starts with the inner prompt: a prefix cache hits it
        assert (j["block_ids"][:nb] == inner["block_ids"].iloc[0]).all()


def test_without_generated_reuse_the_answers_are_new_text_repeated_at_temperature_zero():
    df = generate_nested(np.random.default_rng(2), NestedParams(temperature=0.0,
                                                               reuse_generated=False))
    for _, j in judges(df).iterrows():
        spans = answer_spans(j)
        assert len(set(spans)) == 1 and min(spans[0]) >= 0


@settings(max_examples=20)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.sampled_from([0.0, 1.0]),
       st.sampled_from([16, 64]))
def test_any_nested_trace_is_valid_and_counts_n_plus_one_calls_per_query(seed, n, temp, bt):
    p = NestedParams(candidates=n, temperature=temp, block_tokens=bt, duration_time=30.0,
                     request_rate=0.5)
    df = generate_nested(np.random.default_rng(seed), p)
    assert [len(b) for b in df["block_ids"]] == blocks_needed(df["input_tokens"], bt).tolist()
    assert (df.groupby("session_id").size() == n + 1).all()
    assert (judges(df).groupby("session_id").size() == 1).all()


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="candidates"):
        NestedParams(candidates=0)
    with pytest.raises(ValueError, match="temperature"):
        NestedParams(temperature=-1.0)


@pytest.mark.parametrize(("name", "value", "says"), [
    ("candidates", float("inf"), "an integer"), ("candidates", True, "an integer"),
    ("judge_output_tokens", 1e30, "an integer"), ("reuse_generated", 1, "true or false"),
    ("temperature", float("inf"), "a finite number"),
    ("decode_time_per_token", float("nan"), "a finite number"),
    ("judge_output_tokens", 10**30, "<= 100,000,000 tokens"),
    ("answer_tokens", 100_000_001, "<= 100,000,000 tokens"),
])
def test_a_value_of_the_wrong_type_or_past_a_requests_tokens_is_refused(name, value, says):
    # candidates = inf once raised TypeError in the generator, judge_output_tokens = 1e30
    # OverflowError
    with pytest.raises(ValueError, match=rf"^{name} must be {says}"):
        NestedParams(**{name: value})
    NestedParams(answer_tokens=100_000_000)  # the edge


def test_a_query_of_fixed_lengths_is_laid_out_and_placed_exactly():
    # 200 system tokens → 4 blocks; a 100-token task → 2 blocks; 3 answers of 130 tokens
    # (3 pages each); a 100-token judge question → 2 blocks, its last one 36 tokens full
    p = NestedParams(candidates=3, temperature=0.7, system_tokens=200, task_tokens=100,
                     answer_tokens=130, judge_tokens=100, length_sigma=0.0, duration_time=40.0)
    df = generate_nested(np.random.default_rng(3), p)
    assert len(judges(df)) > 2
    for _, j in judges(df).iterrows():
        inner = df[(df["session_id"] == j["session_id"]) & (df["spans"].map(len) == 0)]
        assert inner["parent_id"].isna().all()  # the inner calls are roots
        assert j["parent_id"] == inner["request_id"].max()  # the judge follows the last
        assert (inner["input_tokens"] == 6 * 64).all()
        np.testing.assert_array_equal(inner["block_ids"].iloc[0][:4], np.arange(4))
        # the judge: the inner prompt, three answers of 3 pages, a 2-block question
        assert len(j["block_ids"]) == 6 + 9 + 2
        assert j["input_tokens"] == 16 * 64 + 36
        # placed when the longest answer is done: overhead + 130 tokens × 20 ms
        assert j["arrival_at"] == inner["arrival_at"].iloc[0] + 0.5 + 130 * 0.02


def test_a_single_candidate_judge_follows_the_very_first_call():
    df = generate_nested(np.random.default_rng(0), NestedParams(candidates=1))
    first = df[df["session_id"] == 0]
    assert pd.isna(first["parent_id"].iloc[0]) and first["request_id"].iloc[0] == 0
    assert first["parent_id"].iloc[1] == 0


def test_queries_arrive_at_the_asked_rate_and_are_numbered_densely():
    p = NestedParams(duration_time=2_000.0, request_rate=0.5, candidates=1)
    df = generate_nested(np.random.default_rng(4), p)
    sessions = df["session_id"].to_numpy()
    assert set(sessions.tolist()) == set(range(sessions.max() + 1))
    assert sessions.max() + 1 == pytest.approx(1_000, rel=0.1)  # Poisson: σ ≈ 3 %
    roots = df.loc[df["parent_id"].isna(), "arrival_at"].to_numpy()
    assert roots.min() < 20.0 and roots.max() > 1_980.0  # from the window's start to its end
    assert df.attrs["params"] == p.to_dict() and NestedParams(**p.to_dict()) == p


def test_the_first_query_arrives_after_a_gap_of_mean_one_over_the_rate():
    # a Poisson process from t = 0: its first arrival is exponential of mean 1 / rate = 2 s
    # (200 traces: ±7 %)
    p = NestedParams(duration_time=20.0, request_rate=0.5, candidates=1)
    first = [generate_nested(np.random.default_rng(s), p)["arrival_at"].iloc[0]
             for s in range(200)]
    assert np.mean(first) == pytest.approx(2.0, rel=0.25)
