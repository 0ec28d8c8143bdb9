"""The ``kvfabric`` command line: one click group, one module per command.

- :mod:`~simulator.cli.main` — the group, lazy sub-command loading, the console-script entry
  (user errors → one line, exit status 2);
- ``run``, ``predict``, ``sweep``, ``trace``, ``topology``, ``calibrate``, ``demo`` — one module
  each, imported only when its command runs.

May import: anything (it is the top). Exports :func:`main` (the console script) and :data:`cli`.
"""

from simulator.cli.main import COMMANDS, cli, main

__all__ = ["COMMANDS", "cli", "main"]
