"""Selection traces: contexts per step, generation, validation, replay, Parquet round trip."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.errors import UserError
from simulator.testing.traces import request_traces
from workloads.agentic import AgenticParams, generate_agentic
from workloads.blocks import refine_trace
from workloads.selections import (
    SelectionReplay,
    context_block_ids,
    generate_selections,
    generated_block_id,
    read_selections,
    validate_selections,
    write_selections,
)
from workloads.sparse import SparseSelector


def test_the_context_grows_by_generated_blocks_with_negative_ids():
    prompt = np.array([10, 11])
    assert context_block_ids(prompt, 100, 0, 7, 64).tolist() == [10, 11]
    assert context_block_ids(prompt, 100, 28, 7, 64).tolist() == [10, 11]
    ctx = context_block_ids(prompt, 100, 29, 7, 64)
    assert ctx.tolist() == [10, 11, generated_block_id(7, 2)]
    assert generated_block_id(7, 2) < 0
    assert generated_block_id(7, 2) != generated_block_id(8, 2) != generated_block_id(7, 3)


@pytest.fixture(scope="module")
def fleet():
    p = AgenticParams(duration_time=60.0, task_rate=0.1, n_repos=1, repo_tokens=16_384,
                      repo_size_sigma=0.0, repo_min_tokens=1, subagents=3, turns_mean=2.0)
    return generate_agentic(np.random.default_rng(0), p)


@pytest.fixture(scope="module")
def picked(fleet):
    return generate_selections(np.random.default_rng(1), fleet, n_layers=5, steps=3,
                               max_requests=10)


def test_generation_covers_each_request_step_and_layer(fleet, picked):
    sub = fleet.iloc[:10]
    want = sum(min(3, o) for o in sub["output_tokens"]) * 5
    assert len(picked) == want
    assert list(picked.columns) == ["request_id", "step", "layer", "block_ids"]
    assert set(picked["request_id"]) == set(sub["request_id"])
    assert (picked.groupby(["request_id", "step"]).size() == 5).all()
    assert picked["block_ids"].map(len).max() == 34  # DSA: 32 + recent window
    validate_selections(picked, fleet)


def test_same_seed_same_selections(fleet, picked):
    again = generate_selections(np.random.default_rng(1), fleet, n_layers=5, steps=3,
                                max_requests=10)
    assert [a.tolist() for a in again["block_ids"]] == [a.tolist() for a in picked["block_ids"]]


def test_round_trip_and_replay(tmp_path, fleet, picked):
    path = write_selections(picked, tmp_path / "sel.parquet", block_tokens=64)
    back = read_selections(path, fleet)
    assert back.attrs["block_tokens"] == 64
    assert [a.tolist() for a in back["block_ids"]] == [a.tolist() for a in picked["block_ids"]]
    replay = SelectionReplay.from_frame(back)
    row = picked.iloc[7]
    assert replay.blocks(row["request_id"], row["step"], row["layer"]).tolist() == \
        row["block_ids"].tolist()
    assert replay.blocks(10**9, 0, 0) is None and len(replay) == len(picked)


def edited(picked, row, **change):
    df = picked.copy()
    for col, value in change.items():
        values = list(df[col])
        values[row] = value
        df[col] = pd.Series(values, dtype=object if col == "block_ids" else np.int64)
    return df


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(block_ids=np.array([123_456_789])), "block 123456789 is not in the request's"),
        (dict(request_id=10**6), "request_id 1000000 is not in the request trace"),
        (dict(step=10**6), "step 1000000 but request"),
    ],
)
def test_an_edited_selection_outside_the_context_is_named(fleet, picked, change, message):
    with pytest.raises(UserError, match=f"row 4.*{message}|row 4: {message}"):
        validate_selections(edited(picked, 4, **change), fleet, source="sel.parquet")


def test_a_block_from_a_later_step_is_rejected(fleet, picked):
    r = int(picked["request_id"].iloc[0])
    future = generated_block_id(r, 10**5)
    with pytest.raises(UserError, match="row 0"):
        validate_selections(edited(picked, 0, block_ids=np.array([future])), fleet)


def test_duplicate_rows_and_missing_columns_are_rejected(tmp_path, fleet, picked):
    twice = pd.concat([picked.iloc[:3], picked.iloc[:1]], ignore_index=True)
    with pytest.raises(UserError, match="row 3.*repeats"):
        validate_selections(twice, fleet)
    with pytest.raises(UserError, match="column 'layer' missing"):
        write_selections(picked.drop(columns=["layer"]), tmp_path / "x.parquet")


@given(request_traces(block_tokens=st.sampled_from([64, 512])), st.integers(0, 2**32 - 1),
       st.sampled_from(["dsa", "nsa", "dense"]))
def test_selections_are_in_context_and_include_the_recent_window(df, seed, kind):
    sel = SparseSelector(kind=kind, top_k_tokens=256, block_tokens=64)
    picked = generate_selections(np.random.default_rng(seed), df, sel, n_layers=2, steps=2,
                                 max_requests=None)
    validate_selections(picked, df, 64)
    fine = refine_trace(df, 64)
    by_id = {r: i for i, r in enumerate(fine["request_id"])}
    for r, step, ids in zip(picked["request_id"], picked["step"], picked["block_ids"],
                            strict=True):
        i = by_id[r]
        ctx = context_block_ids(fine["block_ids"].iloc[i], fine["input_tokens"].iloc[i], step,
                                r, 64)
        window = ctx[-sel.window_blocks:] if kind != "dense" else ctx
        assert np.isin(window, ids).all()
        assert len(ids) == sel.counts(len(ctx))
