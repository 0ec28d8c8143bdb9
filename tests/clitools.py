"""Calling the ``kvfabric`` command line in-process, as the CLI tests do."""

from __future__ import annotations

import warnings

from simulator.cli import main


def run_main(argv: list[str], capsys, warnings_as_errors: bool = False) -> tuple[int, str, str]:
    """``kvfabric argv`` in this process: ``(exit status, stdout, stderr)``; with
    ``warnings_as_errors`` any warning on the way (matplotlib's, say) fails the call."""
    with warnings.catch_warnings():
        if warnings_as_errors:
            warnings.simplefilter("error")
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
