"""Columns: tuple rows packed into typed numpy columns give the same table as the tuples."""

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from simulator.engine.columns import Columns

SPEC = [("i", "int32"), ("name", "object"), ("x", "float64")]


def test_rows_come_back_in_order_with_their_dtypes_across_chunks():
    c = Columns(SPEC, chunk_rows=2)
    for k in range(5):
        c.append((k, f"r{k}", k / 2))
        c.maybe_pack()
    assert len(c) == 5 and len(c.rows) == 1
    df = c.frame()
    assert df["i"].tolist() == [0, 1, 2, 3, 4] and df["name"].tolist() == [f"r{k}" for k in
                                                                             range(5)]
    assert (str(df["i"].dtype), str(df["x"].dtype)) == ("int32", "float64")
    assert df["x"].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_no_rows_is_an_empty_typed_table():
    df = Columns(SPEC).frame()
    assert len(df) == 0 and list(df.columns) == ["i", "name", "x"]
    assert str(df["x"].dtype) == "float64"


@given(st.lists(st.tuples(st.integers(-2**31, 2**31 - 1), st.text(max_size=3),
                          st.floats(allow_nan=False)), max_size=40), st.integers(1, 7))
def test_packing_never_changes_the_table(rows, chunk):
    c = Columns(SPEC, chunk_rows=chunk)
    for r in rows:
        c.append(r)
        c.maybe_pack()
    want = pd.DataFrame.from_records(rows, columns=["i", "name", "x"]).astype(
        {"i": np.int32, "x": np.float64}) if rows else Columns(SPEC).frame()
    if rows:  # object columns come back as categoricals, values in order of first appearance
        names = [r[1] for r in rows]
        want["name"] = pd.Categorical(names, categories=list(dict.fromkeys(names)))
    pd.testing.assert_frame_equal(c.frame(), want)


@given(st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["route", "fetch"]),
                          st.floats(allow_nan=False)), max_size=30), st.integers(1, 5))
def test_columns_moved_to_temporary_files_give_the_same_table(rows, chunk):
    kept, moved = Columns(SPEC, chunk_rows=chunk), Columns(SPEC, chunk_rows=chunk,
                                                             spill_bytes=0)
    for r in rows:
        for c in (kept, moved):
            c.append(r)
            c.maybe_pack()
    assert moved.spilled == (len(rows) >= chunk) and not kept.spilled
    pd.testing.assert_frame_equal(kept.frame(), moved.frame())
