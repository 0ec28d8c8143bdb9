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


def test_the_temporary_file_lies_beside_its_target(tmp_path):
    # a rename is atomic only within one filesystem: the temporary file must be in the target's
    # own folder, not in $TMPDIR (a planted bug put it there and every other test passed)
    target = tmp_path / "sub" / "out.txt"
    target.parent.mkdir()
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.name.startswith(".out.txt.") and tmp.name.endswith(".tmp")
        assert tmp.exists() and not target.exists()
        tmp.write_text("x")
    assert target.read_text() == "x"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_probe_folder_creates_and_reports_and_refuses_a_file(tmp_path):
    from simulator.fileio import probe_folder

    assert probe_folder(tmp_path / "a" / "b") is True
    assert probe_folder(tmp_path / "a" / "b") is False
    assert list((tmp_path / "a" / "b").iterdir()) == []
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError):
        probe_folder(tmp_path / "f")


def test_write_text_round_trips_and_replaces(tmp_path):
    target = tmp_path / "t.txt"
    assert write_text("one", target) == target
    write_text("two", target)
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_no_file_descriptor_is_left_open_and_the_umask_is_kept(tmp_path):
    from simulator.fileio import probe_folder

    mask = os.umask(0o027)
    try:
        before = _open_fds()
        for i in range(20):
            write_text("x", tmp_path / f"f{i}.txt")
            probe_folder(tmp_path / f"d{i}")
        assert _open_fds() == before
        assert os.umask(0o027) == 0o027  # reading the umask left it as it was
        assert (tmp_path / "f0.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(mask)


def test_probe_folder_on_a_file_says_so_with_its_errno(tmp_path):
    import errno

    from simulator.fileio import probe_folder

    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError) as e:
        probe_folder(tmp_path / "f")
    assert e.value.errno == errno.ENOTDIR and e.value.filename == str(tmp_path / "f")


@pytest.mark.parametrize("rows", [100, 2])  # one piece, and row groups
def test_a_frame_index_is_not_written(tmp_path, rows):
    df = pd.DataFrame({"a": [1, 2, 3]}, index=[7, 8, 9])
    back = pd.read_parquet(write_parquet(df, tmp_path / "t.parquet", rows=rows))
    assert list(back.columns) == ["a"] and back.index.tolist() == [0, 1, 2]
