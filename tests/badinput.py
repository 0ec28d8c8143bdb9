"""The bad-input table's parts: :class:`Case`, the files its cases write, and the check.

Each ``tests/test_bad_*.py`` holds the cases of one concern — scenario files, traces, sweep
files, options and the other commands' files — as a list ``CASES`` of :class:`Case`, and runs
each through :func:`one_line_exit_2_nothing_written`: in-process through
:func:`simulator.cli.main`, exit status 2 and exactly one line on stderr naming the file, field
or option at fault — no traceback, and nothing written (the folder the command runs in is
byte-for-byte what it was). A new command (``kernel``) or scenario section joins a table with a
line. Here too: the texts and builders more than one of those files use (:data:`TINY` and its
trace, the default scenario, a sweep over it, a two-GPU topology file, the H200 profile).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from clitools import SMALL

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = (ROOT / "scenarios" / "agentic_repo.toml").read_text()

#: tests/clitools.SMALL over a three-line Mooncake trace ``t.jsonl``, routing and fetching.
TINY = SMALL.format(name="tiny", top='policies = ["route", "fetch"]').replace(
    'trace = "tiny.parquet"', 'trace = "t.jsonl"')
LINE = '{"timestamp": %d, "input_length": 3000, "output_length": 4, "hash_ids": [%s]}\n'
TRACE = "".join(LINE % (i * 10, ", ".join(str(100 * i + b) for b in range(6))) for i in range(3))
SWEEP = """
[sweep]
name = "s"
kind = "run"
base = "tiny.toml"
[grid]
"""
TWO_GPUS = """
[[nodes]]
name = "n0/gpu0"
kind = "gpu"
gpu = "H100"
[[nodes]]
name = "n0/gpu1"
kind = "gpu"
gpu = "H100"
[[links]]
src = "n0/gpu0"
dst = "n0/gpu1"
kind = "nvlink"
latency = 1e-6
"""
PING = "bytes,seconds\n1024,2.1e-6\n65536,3.4e-6\n1048576,2.3e-5\n"  # ping-pong: ~50 GB/s


#: The shipped H200 kernel profile, its measurements found from anywhere.
H200 = (ROOT / "calibration" / "profiles" / "h200.toml").read_text().replace(
    '"../h200"', f'"{ROOT / "calibration" / "h200"}"')


def tiny(old: str = "", new: str = "", trace: str = TRACE) -> dict[str, str | bytes]:
    """A tiny scenario (two GPUs, three requests) with one edit, and its trace."""
    assert old in TINY
    return {"tiny.toml": TINY.replace(old, new, 1), "t.jsonl": trace}


def deploy(section: str) -> dict[str, str | bytes]:
    """The tiny scenario with a ``[deployment]`` section (issue 16)."""
    return {**tiny(), "tiny.toml": TINY + "[deployment]\n" + section + "\n"}


@dataclass(frozen=True)
class Case:
    """One bad input: ``argv`` (``{tmp}`` is the test's folder, also the working folder),
    the ``files`` to create first, and what the one line must contain (``needles``)."""

    id: str
    argv: list[str]
    needles: tuple[str, ...]
    files: dict[str, str | bytes] = field(default_factory=dict)


def tree(folder: Path) -> dict[str, bytes]:
    """Every path under ``folder`` with its bytes (``b"/"`` for a folder)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"/")
            for p in sorted(folder.rglob("*"))}


def one_line_exit_2_nothing_written(case: Case, tmp_path: Path, monkeypatch, capsys) -> None:
    """Write ``case.files`` into ``tmp_path``, run ``case.argv`` there, and check the refusal:
    exit 2, one line starting ``error: `` holding every needle, no traceback, no output, and the
    folder unchanged."""
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(case.argv)
    out, err = capsys.readouterr()
    assert exit_.value.code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and out == ""
    for needle in case.needles:
        assert needle in lines[0]
    assert tree(tmp_path) == before  # nothing created, nothing half-written, nothing removed
