"""What :func:`workloads.schema.validate` makes of the loose frames loaders and users hand it:
the optional columns filled with their defaults, each column in its canonical dtype, the
boundaries of its checks (spans, ``after_id`` of request 0), and the first of several faults
named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulator.errors import UserError
from workloads.schema import COLUMNS, make_trace, read_trace, validate


def minimal(**columns) -> pd.DataFrame:
    """The required columns of three requests (two blocks, one, one), some replaced."""
    base = {"arrival_at": [0.0, 1.0, 2.5], "request_id": [10, 11, 12],
            "input_tokens": [100, 64, 1], "output_tokens": [3, 4, 5],
            "block_ids": [np.array([1, 2]), np.array([3]), np.array([4])], "block_tokens": 64}
    return pd.DataFrame({**base, **columns})


def fails(df: pd.DataFrame, column: str, row: int | None, text: str) -> None:
    with pytest.raises(UserError) as exc:
        validate(df, source="t.parquet")
    where = f"t.parquet: column '{column}'" + (f", row {row}:" if row is not None else ":")
    assert str(exc.value).startswith(where) and text in str(exc.value), str(exc.value)


def test_a_frame_of_the_required_columns_gets_every_default():
    df = validate(minimal())
    assert tuple(df.columns) == COLUMNS
    assert df["session_id"].tolist() == [10, 11, 12]  # each request its own session
    for col in ("parent_id", "repo_id", "turn_id", "context_id", "tool_calls", "after_id"):
        assert str(df[col].dtype) == "Int64" and df[col].isna().all(), col
    assert [s.tolist() for s in df["spans"]] == [[], [], []]
    assert df["after_time"].dtype == np.float64 and df["after_time"].tolist() == [0.0] * 3


def test_loose_dtypes_become_the_schemas():
    df = validate(minimal(arrival_at=[0, 1, 3], request_id=[10.0, 11.0, 12.0],
                          input_tokens=["100", "64", "1"], block_tokens=[64.0, 64.0, 64.0],
                          repo_id=[2.0, np.nan, 0.0], after_time=[0, 0, 2]))
    assert df["arrival_at"].dtype == np.float64 and df["arrival_at"].tolist() == [0.0, 1.0, 3.0]
    for col, want in (("request_id", [10, 11, 12]), ("input_tokens", [100, 64, 1]),
                      ("block_tokens", [64, 64, 64])):
        assert df[col].dtype == np.int64 and df[col].tolist() == want, col
    assert str(df["repo_id"].dtype) == "Int64"
    assert df["repo_id"].iloc[0] == 2 and pd.isna(df["repo_id"].iloc[1])
    assert df["repo_id"].iloc[2] == 0  # 0 is a repository, not "none"
    assert df["after_time"].dtype == np.float64 and df["after_time"].tolist() == [0.0, 0.0, 2.0]


def test_a_fraction_where_a_whole_number_is_asked_is_refused():
    fails(minimal(output_tokens=[3, 4.5, 5]), "output_tokens", 1, "4.5 is not an integer")
    fails(minimal(repo_id=[1.0, 2.5, np.nan]), "repo_id", None, "not integers")
    fails(minimal(input_tokens=[100, "many", "lots"]), "input_tokens", 1,
          "'many' is not an integer")


def test_a_whole_number_past_int64_is_refused_not_wrapped():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in cast" on the way
        fails(minimal(output_tokens=[3.0, 1e30, 5.0]), "output_tokens", 1,
              "1e+30 is past the largest integer")
        fails(minimal(request_id=np.array([1, 2**64 - 1, 3], dtype=np.uint64)), "request_id",
              1, "is past the largest integer")
        assert validate(minimal(output_tokens=[3.0, 2.0**62, 5.0]))["output_tokens"][1] == 2**62


def test_a_bad_time_is_shown_as_written():
    fails(minimal(arrival_at=[0.0, np.nan, 1.0]), "arrival_at", 1, ": nan is not a finite time")
    fails(minimal(after_time=[0.0, 0.0, -2.0]), "after_time", 2, ": -2.0 is not a finite time")


def test_the_first_unknown_column_is_named():
    fails(minimal(colour=1, size=2), "colour", None, "unknown column")


def test_a_nullable_column_given_as_a_series_keeps_its_values_in_row_order():
    repo = pd.Series(pd.array([7, pd.NA, 9], dtype="Int64"), index=[5, 6, 7])
    df = make_trace(arrival_at=[0.0, 1.0, 2.0], input_tokens=[1, 1, 1], output_tokens=[1, 1, 1],
                    block_ids=[[1], [2], [3]], block_tokens=64, repo_id=repo)
    assert df["repo_id"].iloc[0] == 7 and pd.isna(df["repo_id"].iloc[1])
    assert df["repo_id"].iloc[2] == 9


def test_after_id_zero_is_a_request_like_any_other():
    # request 0 sits in the last row: following it from an earlier row is refused
    ids = dict(request_id=[5, 6, 0])
    fails(minimal(**ids, after_id=pd.array([0, pd.NA, pd.NA], dtype="Int64")), "after_id", 0,
          "0 is not the request_id of an earlier row")
    ok = validate(minimal(request_id=[0, 6, 7], after_id=pd.array([pd.NA, 0, 0], dtype="Int64"),
                          after_time=[0.0, 0.5, 0.0]))
    assert ok["after_id"].tolist()[1:] == [0, 0]


@pytest.mark.parametrize(("spans", "ok"), [
    ([0, 4], True),               # the whole prompt of four blocks: its end is the block count
    ([0, 1, 1, 2, 2, 4], True),   # adjacent spans
    ([0, 5], False),              # past the prompt's blocks
    ([0], False),                 # a start without an end
    ([1, 1], False),              # empty
    ([0, 2, 1, 2], False),        # overlapping
    ([0, 1, 1, 3, 2, 4], False),  # the last two overlap
    ([-1, 1], False),             # before the prompt
])
def test_spans_are_sorted_non_overlapping_pairs_within_the_prompt(spans, ok):
    df = minimal(input_tokens=[256, 64, 1], block_ids=[np.arange(4), np.array([3]), np.array([4])],
                 spans=[np.array(spans, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)])
    if ok:
        assert validate(df)["spans"].iloc[0].tolist() == spans
    else:
        fails(df, "spans", 0, "is not a sorted list of non-overlapping [start, end) pairs "
              "within 0..4")


def test_a_null_list_cell_is_an_empty_list():
    df = validate(minimal(spans=[None, np.nan, np.zeros(0, np.int64)]))
    assert [s.tolist() for s in df["spans"]] == [[], [], []]
    fails(minimal(spans=pd.Series([None, 3, None], dtype=object)), "spans", 1,
          ": 3 is not a list of integers")


def test_a_parquet_trace_of_fractional_block_ids_is_refused_not_truncated(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = validate(minimal())
    table = pa.Table.from_pandas(df.assign(block_ids=[[1.0, 2.5], [3.0], [4.0]],
                                           spans=[None, None, [0, 1]]), preserve_index=False)
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    with pytest.raises(UserError, match=r"t.parquet: column 'block_ids', row 0: .* is not a list "
                                        "of integers"):
        read_trace(path)
    pq.write_table(pa.Table.from_pandas(df.assign(spans=[None, None, [0, 1]]),
                                        preserve_index=False), path)
    back = read_trace(path)  # null lists are empty ones
    assert [s.tolist() for s in back["spans"]] == [[], [], [0, 1]]
    assert [b.tolist() for b in back["block_ids"]] == [[1, 2], [3], [4]]
