"""The trace schema: a known trace, validation naming column and row, Parquet round trips."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given

from simulator.errors import UserError
from simulator.testing.traces import request_traces
from workloads.schema import (
    COLUMNS,
    FlatBlocks,
    blocks_needed,
    flat_blocks,
    make_trace,
    read_trace,
    validate,
    write_trace,
)


def small_trace():
    return make_trace(arrival_at=[0.0, 1.5, 1.5], input_tokens=[1000, 513, 10],
                      output_tokens=[5, 6, 7], block_ids=[[0, 1], [0, 2], [9]],
                      block_tokens=512, parent_id=[-1, 0, 0], repo_id=[3, 3, -1],
                      spans=[[], [1, 2], []])


def test_a_small_trace_has_the_documented_columns_and_dtypes():
    df = small_trace()
    assert tuple(df.columns) == COLUMNS
    assert df["request_id"].tolist() == [0, 1, 2]
    assert df["session_id"].tolist() == [0, 1, 2]  # defaults to the request id
    assert df["parent_id"].isna().tolist() == [True, False, False]
    assert df["repo_id"].tolist()[:2] == [3, 3] and pd.isna(df["repo_id"].iloc[2])
    assert str(df["parent_id"].dtype) == "Int64"
    assert df["block_ids"].iloc[1].dtype == np.int64
    assert df["spans"].iloc[1].tolist() == [1, 2]


def test_the_flat_view_is_csr():
    flat = flat_blocks(small_trace())
    assert flat.offsets.tolist() == [0, 2, 4, 5]
    assert flat.values.tolist() == [0, 1, 0, 2, 9]
    assert flat.row(1).tolist() == [0, 2]
    assert flat.row_index().tolist() == [0, 0, 1, 1, 2]
    assert [r.tolist() for r in flat.to_lists()] == [[0, 1], [0, 2], [9]]
    assert len(FlatBlocks.from_lists([])) == 0


def test_blocks_needed_is_a_ceiling():
    assert blocks_needed([1, 512, 513, 1024], 512).tolist() == [1, 1, 2, 2]


@pytest.mark.parametrize(
    ("change", "column", "row"),
    [
        (lambda d: d.assign(arrival_at=[0.0, 2.0, 1.0]), "arrival_at", 2),
        (lambda d: d.assign(arrival_at=[0.0, np.nan, 3.0]), "arrival_at", 1),
        (lambda d: d.assign(input_tokens=[1000, 0, 10]), "input_tokens", 1),
        (lambda d: d.assign(output_tokens=[5, 6, -1]), "output_tokens", 2),
        (lambda d: d.assign(request_id=[0, 1, 1]), "request_id", 2),
        # an id names the blocks its generated tokens fill: -(id · 2^24 + j) - 1 must not wrap
        (lambda d: d.assign(request_id=[0, -1, 2]), "request_id", 1),
        (lambda d: d.assign(request_id=[0, 1, 2**39]), "request_id", 2),
        (lambda d: d.assign(input_tokens=[1000, 513, 600]), "block_ids", 2),
        (lambda d: d.assign(parent_id=pd.array([pd.NA, 7, 0], dtype="Int64")), "parent_id", 1),
        (lambda d: d.assign(spans=[np.array([1, 0]), np.zeros(0, int), np.zeros(0, int)]),
         "spans", 0),
        (lambda d: d.assign(block_ids=[[0, 1], ["a", "b"], [9]]), "block_ids", 1),
        (lambda d: d.assign(block_tokens=[512, 512, 0]), "block_tokens", 2),
        # a request may only follow an earlier row, by a finite gap >= 0
        (lambda d: d.assign(after_id=pd.array([pd.NA, 2, pd.NA], dtype="Int64")), "after_id", 1),
        (lambda d: d.assign(after_id=pd.array([pd.NA, pd.NA, 2], dtype="Int64")), "after_id", 2),
        (lambda d: d.assign(after_id=pd.array([pd.NA, 0, 9], dtype="Int64")), "after_id", 2),
        (lambda d: d.assign(after_time=[0.0, -1.0, 0.0]), "after_time", 1),
        (lambda d: d.assign(after_time=[0.0, 0.0, np.inf]), "after_time", 2),
    ],
)
def test_validation_names_the_column_and_row(change, column, row):
    with pytest.raises(UserError) as exc:
        validate(change(small_trace()), source="x.parquet")
    msg = str(exc.value)
    assert msg.startswith(f"x.parquet: column '{column}', row {row}:")


def test_a_missing_column_is_named():
    with pytest.raises(UserError, match="column 'input_tokens'.*missing"):
        validate(small_trace().drop(columns=["input_tokens"]))


def test_parquet_round_trip_keeps_everything(tmp_path):
    df = small_trace().assign(after_id=pd.array([pd.NA, 0, 1], dtype="Int64"),
                              after_time=[0.0, 0.5, 2.25])
    path = write_trace(df, tmp_path / "t.parquet")
    back = read_trace(path)
    pd.testing.assert_frame_equal(back.drop(columns=["block_ids", "spans"]),
                                  df.drop(columns=["block_ids", "spans"]))
    for col in ("block_ids", "spans"):
        assert [a.tolist() for a in back[col]] == [a.tolist() for a in df[col]]
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_invalid_trace_is_not_written(tmp_path):
    with pytest.raises(UserError):
        write_trace(small_trace().assign(output_tokens=[1, 0, 1]), tmp_path / "bad.parquet")
    assert list(tmp_path.iterdir()) == []


def test_a_non_parquet_file_is_a_user_error(tmp_path):
    bad = tmp_path / "t.parquet"
    bad.write_text("hello")
    with pytest.raises(UserError, match="t.parquet"):
        read_trace(bad)


@given(request_traces())
def test_generated_traces_satisfy_the_schema_and_round_trip(tmp_path_factory, df):
    assert np.all(np.diff(df["arrival_at"].to_numpy()) >= 0)
    need = blocks_needed(df["input_tokens"], df["block_tokens"])
    assert [len(b) for b in df["block_ids"]] == need.tolist()
    path = tmp_path_factory.mktemp("rt") / "t.parquet"
    back = read_trace(write_trace(df, path))
    flat_a, flat_b = flat_blocks(df), flat_blocks(back)
    assert np.array_equal(flat_a.offsets, flat_b.offsets)
    assert np.array_equal(flat_a.values, flat_b.values)
    assert back["input_tokens"].tolist() == df["input_tokens"].tolist()


def test_the_largest_request_id_keeps_generated_block_ids_apart():
    from workloads.schema import MAX_REQUEST_ID
    from workloads.selections import generated_block_id

    validate(small_trace().assign(request_id=[0, 1, MAX_REQUEST_ID]))
    ids = generated_block_id([MAX_REQUEST_ID, MAX_REQUEST_ID - 1, 0],
                             [2**24 - 1, 2**24 - 1, 0])
    assert (ids < 0).all() and len(set(ids.tolist())) == 3
    assert ids[0] == -(MAX_REQUEST_ID * 2**24 + 2**24 - 1) - 1 >= -(2**63)
    # one past it wraps: request 2^39's first generated block would be a positive id
    with np.errstate(over="ignore"):
        assert generated_block_id(MAX_REQUEST_ID + 1, 0) > 0


def test_a_trace_handed_over_as_it_is_names_its_first_bad_row():
    # what run(trace=...) checks without validate: the first bad row is named, with its value
    from workloads.schema import check_order_and_ids

    bad = small_trace().assign(arrival_at=[0.0, np.nan, -1.0])
    with pytest.raises(UserError, match=r"column 'arrival_at', row 1: nan is not a finite"):
        check_order_and_ids(bad, "t")
    with pytest.raises(UserError, match=r"column 'request_id', row 1: id 5 repeats"):
        check_order_and_ids(small_trace().assign(request_id=[5, 5, 5]), "t")
    check_order_and_ids(small_trace(), "t")
