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


#: A two-GPU DeepSeek-V3.2 scenario over ``tiny.parquet`` beside it (see :func:`small_scenario`);
#: ``top`` holds further top-level lines (policies, stack).
SMALL = """
name = "{name}"
seed = 1
{top}
[topology]
spec = "single_node:gpus=2"
[model]
name = "deepseek-v3.2"
[workload]
kind = "trace"
trace = "tiny.parquet"
[placement]
scheme = "hash"
weights_per_gpu = 40e9
[engine]
max_batch = 4
layer_groups = 2
"""


def small_scenario(folder, requests: int = 2, output_tokens: int = 3, name: str = "tiny",
                   policies: list[str] | None = None, gap: float = 0.01):
    """Write :data:`SMALL` and its trace into ``folder``: ``requests`` prompts of 3,000 tokens
    (47 blocks of 64) arriving ``gap`` s apart, ``output_tokens`` each. Returns the TOML path."""
    import numpy as np

    from workloads.schema import make_trace, write_trace

    write_trace(make_trace(arrival_at=list(np.arange(requests) * gap),
                           input_tokens=[3000] * requests, output_tokens=[output_tokens] * requests,
                           block_ids=[list(range(47))] * requests, block_tokens=64),
                folder / "tiny.parquet")
    listed = "" if policies is None else "policies = [" + ", ".join(
        f'"{p}"' for p in policies) + "]"
    path = folder / "tiny.toml"
    path.write_text(SMALL.format(name=name, top=listed))
    return path


def run_args(capsys, *argv: str) -> tuple[int, str, str]:
    """:func:`run_main` with the arguments spread: ``run_args(capsys, "trace", "stats", …)``."""
    return run_main(list(argv), capsys)


def rich_tables(out: str) -> list[tuple[list[str], list[list[str]]]]:
    """The rich tables in ``out``, in order: (header cells, body rows' cells), stripped."""
    found = []
    for line in out.splitlines():
        if line.startswith("┏"):
            found.append(([], []))
        elif line.startswith("┃"):
            found[-1][0].extend(c.strip() for c in line.strip("┃").split("┃"))
        elif line.startswith("│"):
            found[-1][1].append([c.strip() for c in line.strip("│").split("│")])
    return found


def refuse_points(monkeypatch, module) -> list[int]:
    """Make ``module.check_points`` refuse every sweep before any point runs (``error:
    checked``), recording how many workers each check was told will share the machine."""
    from simulator.errors import UserError

    shared_by = []

    def check_points(sweep, parallel=1):
        shared_by.append(parallel)
        raise UserError("checked")  # nothing runs

    monkeypatch.setattr(module, "check_points", check_points)
    return shared_by


#: A scenario of one ``[deployment]`` over the trace ``t.parquet`` beside it: ``name``, the
#: topology ``spec``, the ``model`` and the ``deployment`` section's lines.
DEPLOYED = """
name = "{name}"
seed = 1
stack = "ibgda"
policies = ["route"]
[topology]
spec = "{spec}"
[model]
name = "{model}"
[workload]
kind = "trace"
trace = "t.parquet"
[engine]
max_batch = 8
layer_groups = 2
[deployment]
{deployment}
"""


def colour_terminal(monkeypatch, columns: int = 80) -> None:
    """Make rich take stdout and stderr for a colour terminal ``columns`` wide."""
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)


def after_the_bar(err: str) -> list[str]:
    """stderr's lines after a progress bar (once it shows the cursor again)."""
    return err.split("\x1b[?25h")[-1].splitlines()
