"""Atomic writes: all or nothing at the target, with the usual file mode."""

import os

import pandas as pd
import pytest

from simulator.fileio import atomic_path, write_parquet, write_text


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rewrite_keeps_the_old_file(tmp_path):
    target = write_text("old", tmp_path / "out.txt")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("new")
        raise KeyboardInterrupt
    assert target.read_text() == "old"


def test_written_files_get_the_umask_mode_and_round_trip(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    target = write_parquet(df, tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(target), df)
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_long_frame_is_written_in_row_groups_and_reads_back_the_same(tmp_path):
    import pyarrow.parquet as pq

    df = pd.DataFrame({"a": range(10), "o": pd.Categorical(list("abababcabc")),
                       "x": [k / 3 for k in range(10)]})
    target = write_parquet(df, tmp_path / "t.parquet", rows=3)
    assert pq.ParquetFile(target).metadata.num_row_groups == 4
    pd.testing.assert_frame_equal(pd.read_parquet(target), df)
