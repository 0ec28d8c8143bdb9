"""Output folders that never mix two runs: checked before the work, swapped in after it.

A run's files are written into a *staging* folder beside the target (same parent, so the same
filesystem), then moved onto the target in one rename. Readers see the previous result or the
new one, never a mixture: a Lamina run into the folder of a default run cannot leave the old
``rounds.parquet`` next to the new ``requests.parquet``.

- :func:`probe_folder` — create a folder (and its parents) and write a file in it, so that an
  unwritable place is reported *before* the simulation, naming the folder the user gave;
- :class:`ResultFolder` — the staging folder of one run: :meth:`~ResultFolder.open` checks the
  target (a previous result is replaced only with ``--overwrite``; a folder with other files is
  never replaced), :meth:`~ResultFolder.commit` writes ``manifest.json`` and swaps the result in,
  :meth:`~ResultFolder.discard` removes the staging folder (an error or Ctrl-C on the way).

Replacing an existing result takes two renames (old → aside, staging → target): a crash
between them leaves the target missing and both complete folders beside it, never a mixture.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
from pathlib import Path

from simulator import fileio
from simulator.errors import UserError

#: The file that marks a folder as a kvfabric result and says what made it.
MANIFEST = "manifest.json"


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def probe_folder(folder: Path, option: str) -> bool:
    """Make ``folder`` (with parents) and write a file in it; return whether it was created.

    Raises :class:`UserError` naming ``option`` and ``folder`` (never a temporary file) when it
    cannot be created or written.
    """
    try:
        return fileio.probe_folder(folder)
    except OSError as exc:
        raise UserError(f"{option} {folder}: cannot write there ({_reason(exc)}); "
                        "choose a folder you can write") from None


def output_file(path: str | Path, option: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Check an output file option (``-o``, ``--plot``) before any work: a name with one of
    ``suffixes`` (if given), not a folder, in an existing folder that can be written."""
    if not str(path):  # Path("") reads as "."
        raise UserError(f"{option} '': give a file name"
                        + (f" ending in {' or '.join(suffixes)}" if suffixes else ""))
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{option} {path}: give a file name ending in {' or '.join(suffixes)}")
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {path}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise UserError(f"{option} {path}: folder {folder} does not exist; create it first")
    probe_folder(folder, option)
    return path


def version() -> str:
    """The installed kvfabric version ("unknown" when run from an uninstalled tree)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("kvfabric")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown"


class ResultFolder:
    """The staging folder of one run's result; see the module docstring.

    Attributes:
        target: the folder the user named (``--out``).
        path: where to write the files now (the staging folder).
    """

    def __init__(self, target: Path, staging: Path, created: list[Path]) -> None:
        self.target = target
        self.path = staging
        self._created = created

    @classmethod
    def open(cls, target: Path, *, overwrite: bool, option: str = "--out") -> ResultFolder:
        """Check ``target`` and create the staging folder beside it, before any work."""
        target = Path(target)
        try:
            _check_target(target, overwrite, option)
        except OSError as exc:  # a name too long, a folder that cannot be listed
            raise UserError(f"{option} {target}: cannot use it ({_reason(exc)}); choose "
                            "another folder") from None
        parent = target.parent
        created = []  # parent folders this run makes, deepest first (removed on discard)
        p = parent
        while not p.exists() and p != p.parent:
            created.append(p)
            p = p.parent
        try:
            fileio.probe_folder(parent)
        except OSError as exc:
            _remove_empty(created)
            where = next((p for p in [parent, *parent.parents] if p.exists()), parent)
            what = ("is a file, not a folder" if where.is_file() else
                    f"cannot be written ({_reason(exc)})")
            raise UserError(f"{option} {target}: {where} {what}; choose another folder") from None
        try:
            if not target.exists():  # the name itself may be unusable (too long, reserved)
                target.mkdir()
                target.rmdir()
            staging = fileio.temp_folder(".kvfabric-staging-", parent)
        except OSError as exc:
            _remove_empty(created)
            raise UserError(f"{option} {target}: cannot create it ({_reason(exc)}); "
                            "choose another folder") from None
        return cls(target, staging, created)

    def commit(self, manifest: dict) -> Path:
        """Write ``manifest.json`` into the staging folder and move the result onto the target."""
        files = sorted(p.name for p in self.path.iterdir())
        record = {**manifest, "files": sorted([*files, MANIFEST]),
                  "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                  "kvfabric": version()}
        fileio.write_text(json.dumps(record, indent=2, default=str) + "\n", self.path / MANIFEST)
        old = None
        if self.target.exists():
            if any(self.target.iterdir()):
                old = fileio.temp_folder(".kvfabric-old-", self.target.parent)
                os.replace(self.target, old / "result")
            else:
                self.target.rmdir()
        os.replace(self.path, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target

    def discard(self) -> None:
        """Remove the staging folder (and parent folders this run created)."""
        shutil.rmtree(self.path, ignore_errors=True)
        _remove_empty(self._created)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first; a folder something else wrote into stays
        with contextlib.suppress(OSError):
            folder.rmdir()


def _check_target(target: Path, overwrite: bool, option: str) -> None:
    """A new or empty folder, or a previous result with ``overwrite`` — nothing else."""
    if target.exists() and not target.is_dir():
        raise UserError(f"{option} {target}: exists and is not a folder; choose another path")
    if target.is_dir() and any(target.iterdir()):
        if not (target / MANIFEST).is_file():
            raise UserError(f"{option} {target}: holds files that are not a kvfabric result; "
                            "choose a new or empty folder")
        if not overwrite:
            raise UserError(f"{option} {target}: holds a previous result ({_describe(target)}); "
                            "pass --overwrite to replace it, or choose another folder")


def _describe(folder: Path) -> str:
    try:
        m = json.loads((folder / MANIFEST).read_text())
        return f"scenario {m['scenario']['name']}, {', '.join(m['policies'])}, {m['created_at']}"
    except (OSError, ValueError, KeyError, TypeError):
        return MANIFEST
