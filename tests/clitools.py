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
