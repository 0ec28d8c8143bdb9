"""Nested generation: n inner answers feeding a judge as commuting spans; temperature 0."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workloads.nested import NestedParams, generate_nested
from workloads.schema import blocks_needed
from workloads.selections import generated_block_id


def judges(df):
    return df[df["spans"].map(len) > 0]


def answer_spans(row):
    sp = row["spans"]
    return [tuple(row["block_ids"][a:b]) for a, b in zip(sp[0::2], sp[1::2], strict=True)]


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
