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
    popular_extent,
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


def test_generated_block_ids_follow_the_documented_formula():
    # -(request_id · 2^24 + j) - 1: negative (prompt ids are not), unique per (request, j),
    # the format recorded selection traces carry
    from workloads.selections import generated_block_id

    assert int(generated_block_id(0, 0)) == -1 and int(generated_block_id(0, 5)) == -6
    assert int(generated_block_id(1, 0)) == -(2**24) - 1
    np.testing.assert_array_equal(generated_block_id(np.array([2, 3]), np.array([7, 0])),
                                  [-(2 * 2**24 + 7) - 1, -(3 * 2**24) - 1])


def test_the_popular_extent_ends_with_the_last_span():
    assert popular_extent(np.array([2, 5, 7, 9]), 20) == 9
    assert popular_extent(np.zeros(0, dtype=np.int64), 20) == 20


def test_a_selection_file_keeps_its_block_size_and_is_checked_when_read(tmp_path, fleet, picked):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # the block size rides in the file's metadata
    path = write_selections(picked, tmp_path / "s16.parquet", block_tokens=16)
    assert read_selections(path).attrs["block_tokens"] == 16
    assert read_selections(path, block_tokens=32).attrs["block_tokens"] == 32
    # with the request trace, a selection outside its context is named when read
    bad = edited(picked, 2, block_ids=np.array([123_456_789]))
    path = write_selections(bad, tmp_path / "bad.parquet")
    assert len(read_selections(path)) == len(picked)  # without the trace: read as it is
    with pytest.raises(UserError, match="bad.parquet: row 2 .*block 123456789"):
        read_selections(path, fleet)
    # a file without a column, and a null list of blocks (read as no block)
    table = pa.table({"request_id": [0], "step": [0], "block_ids": [[1, 2]]})
    pq.write_table(table, tmp_path / "nolayer.parquet")
    with pytest.raises(UserError, match="nolayer.parquet: column 'layer' missing"):
        read_selections(tmp_path / "nolayer.parquet")
    table = pa.table({"request_id": [0, 0], "step": [0, 0], "layer": [0, 1],
                      "block_ids": pa.array([[3], None], pa.list_(pa.int64()))})
    pq.write_table(table, tmp_path / "null.parquet")
    got = read_selections(tmp_path / "null.parquet")["block_ids"]
    assert got.iloc[0].tolist() == [3] and got.iloc[1].dtype == np.int64
    assert len(got.iloc[1]) == 0


def test_a_selection_frame_is_checked_column_by_column_and_step_by_step(fleet, picked):
    with pytest.raises(UserError, match="sel: column 'step' missing"):
        validate_selections(picked.drop(columns=["step"]), fleet, source="sel")
    for col in ("step", "layer"):
        with pytest.raises(UserError, match=f"sel: column '{col}', row 2: negative value"):
            validate_selections(edited(picked, 2, **{col: -1}), fleet, source="sel")
    # a step equal to the request's output is past its last token
    r = int(picked["request_id"].iloc[0])
    out = int(fleet.loc[fleet["request_id"] == r, "output_tokens"].iloc[0])
    with pytest.raises(UserError, match=f"step {out} but request {r} generates only {out} "
                                        f"tokens \\(steps 0..{out - 1}\\)"):
        validate_selections(edited(picked, 0, step=out), fleet)


def test_generated_selections_carry_the_block_size_and_report_progress(fleet):
    calls = []
    df = generate_selections(np.random.default_rng(2), fleet, n_layers=2, steps=2,
                             max_requests=7, batch=4, progress=lambda d, t: calls.append((d, t)))
    n = sum(min(2, o) for o in fleet["output_tokens"].iloc[:7])
    assert calls == [(min(k, n), n) for k in range(4, n + 4, 4)]
    assert df.attrs["block_tokens"] == 64



def test_a_session_keeps_its_focus_regions_from_request_to_request():
    # every draw from the focus set (four regions of 16 blocks: more than the 32 a layer
    # takes, so it never fills up with others) and no drift: all selections of one agent's
    # requests, past the recent window, fall in the same four regions
    fleet = generate_agentic(np.random.default_rng(0), AgenticParams(
        duration_time=200.0, task_rate=0.05, n_repos=1, repo_tokens=16_384,
        repo_size_sigma=0.0, repo_min_tokens=1, subagents=3, turns_mean=3.0,
        system_tokens=256))
    sel = SparseSelector(popular_fraction=0.0, focus_fraction=1.0)
    df = generate_selections(np.random.default_rng(4), fleet, sel, n_layers=2, steps=1,
                             max_requests=None, focus_regions=4, focus_drift=0.0)
    regions: dict[int, set] = {}
    for rid, ids in zip(df["request_id"], df["block_ids"], strict=True):
        row = fleet.iloc[int(rid)]
        ctx = context_block_ids(row["block_ids"], int(row["input_tokens"]), 0, int(rid))
        pos = np.flatnonzero(np.isin(ctx, ids))
        old = pos[pos < len(ctx) - 2]  # the recent window is always selected
        regions.setdefault(int(row["session_id"]), set()).update((old // 16).tolist())
    many = [s for s, r in regions.items() if len(r) > 0]
    agents = fleet.groupby("session_id").size()
    assert (agents[many] > 1).sum() > 5  # sessions of several requests were checked
    assert all(len(r) <= 4 for r in regions.values())
