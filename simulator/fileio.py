"""Atomic file output: write to a temporary file beside the target, then rename.

A crash or a user error half-way leaves nothing half-written at the target path: either the old
file (or nothing) or the complete new one. :func:`probe_folder` makes an output folder and
writes to it before the work that fills it, so an unusable place fails first.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def folder_name_ok(name: str) -> bool:
    """Whether ``name`` can name one output folder inside another: not empty, not ``.`` or
    ``..``, no path separator and nothing unprintable — NUL, a newline, an escape sequence
    (it is printed in one-line messages) (a scenario's or sweep's name becomes its default
    folder, which a run replaces: an empty name would replace the parent, ``a/../../b`` a
    folder outside it)."""
    return (bool(name) and name not in (".", "..")
            and not any(c in name for c in ("/", "\\")) and name.isprintable())


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s folder; on success rename it onto ``target``.

    The folder must exist (creating folders is the caller's decision, at the edge). On an
    exception the temporary file is removed and the exception propagates.
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def probe_folder(folder: str | os.PathLike) -> bool:
    """Create ``folder`` (and parents) and write and remove a file in it; return whether the
    folder was created. Raises ``OSError`` (``NotADirectoryError`` if it is a file) when it
    cannot be used; callers name the folder in their message, never the probe file."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(20, "exists and is not a folder", str(folder))
    created = not folder.exists()
    missing = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".kvfabric-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError:  # leave no folder of ours behind (out/ of out/<a name too long>/points)
        for p in missing:
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
    return created


def temp_folder(prefix: str, folder: str | os.PathLike) -> Path:
    """A new, uniquely named folder in ``folder`` with the mode the umask gives any new folder
    (``tempfile.mkdtemp`` makes 0700 whatever the umask: a result staged in it and renamed into
    place would be readable by its owner alone)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
    os.chmod(path, 0o777 & ~_umask())
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Rows converted to Arrow at a time when writing Parquet (one row group each).
PARQUET_ROWS = 1 << 20


def write_parquet(df, target: str | os.PathLike, rows: int = PARQUET_ROWS) -> Path:
    """Write a DataFrame to Parquet atomically (pyarrow); returns the target path.

    Long frames are converted and written ``rows`` rows at a time (one row group each), so a
    whole-trace run's records never need a second, Arrow copy in memory.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(target) as tmp:
        if len(df) <= rows:
            df.to_parquet(tmp, engine="pyarrow", index=False)
        else:
            first = pa.Table.from_pandas(df.iloc[:rows], preserve_index=False)
            with pq.ParquetWriter(tmp, first.schema) as w:
                w.write_table(first)
                for a in range(rows, len(df), rows):
                    w.write_table(pa.Table.from_pandas(df.iloc[a: a + rows],
                                                       preserve_index=False,
                                                       schema=first.schema))
    return Path(target)


def write_text(text: str, target: str | os.PathLike) -> Path:
    """Write a text file atomically; returns the target path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)
