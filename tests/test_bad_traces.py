"""Bad traces: the one a scenario names (missing, not beside it, a bad line, not UTF-8, a count
past int64, a timestamp past the bound, a folder; its selection trace) and every file or option
given to ``kvfabric trace`` (stats, gen, convert). Each case exit 2, one line naming the file,
line, column or option, nothing written (:mod:`badinput`); and the whole line a missing trace
gives, word for word.
"""

from __future__ import annotations

import gzip

import pytest
from badinput import LINE, TINY, TRACE, Case, one_line_exit_2_nothing_written, tiny
from clitools import run_main

AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,374,44\n"


def parquet(**columns) -> bytes:
    """A Parquet trace of one request (3,000 tokens, 47 blocks of 64), ``columns`` replaced."""
    import io

    import pandas as pd

    base = {"arrival_at": [0.0], "request_id": [0], "input_tokens": [3000],
            "output_tokens": [4], "block_ids": [list(range(47))], "block_tokens": [64]}
    buf = io.BytesIO()
    pd.DataFrame({**base, **columns}).to_parquet(buf)
    return buf.getvalue()


def selections(block: int) -> bytes:
    """A selection trace whose one row has request 0's first decode step read ``block`` in
    layer 0 (TINY's block size)."""
    import tempfile
    from pathlib import Path

    import pandas as pd

    from workloads.selections import write_selections

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.parquet"
        write_selections(pd.DataFrame({"request_id": [0], "step": [0], "layer": [0],
                                       "block_ids": [[block]]}), path, block_tokens=64)
        return path.read_bytes()


CASES: list[Case] = [
    # -- run: the trace it reads -----------------------------------------------------------------
    Case("run-trace-not-beside-the-scenario", ["run", "sub/tiny.toml"],
         ("sub/tiny.toml: field 'workload.trace': sub/t.jsonl: no such file (looked for in ",
          "/sub: a relative path"),  # not the working folder's t.jsonl
         {"sub/tiny.toml": TINY, "t.jsonl": TRACE}),
    Case("run-trace-missing", ["run", "tiny.toml"],
         ("tiny.toml: field 'workload.trace': t2.jsonl: no such file", "shipped traces: "),
         tiny('trace = "t.jsonl"', 'trace = "t2.jsonl"')),
    Case("run-trace-bad-line", ["run", "tiny.toml"], ("t.jsonl:2", "--skip-bad"),
         tiny(trace=TRACE.replace("\n", "\nnot json\n", 1))),
    Case("run-trace-not-utf8", ["run", "tiny.toml"], ("t.jsonl:1", "not UTF-8"),
         {**tiny(), "t.jsonl": b'{"timestamp": \xff}\n'}),
    Case("run-selections-missing", ["run", "tiny.toml"], ("'workload.selections'", "s.parquet"),
         tiny('kind = "trace"', 'kind = "trace"\nselections = "s.parquet"')),
    # a folder where a file is named: said so (was "not found")
    Case("run-selections-a-folder", ["run", "tiny.toml"],
         ("'workload.selections'", "'s.parquet' is a folder"),
         {**tiny('kind = "trace"', 'kind = "trace"\nselections = "s.parquet"'),
          "s.parquet/x": "no"}),
    # a block outside the request's context: refused before any progress bar is drawn
    Case("run-selections-outside-the-context", ["run", "tiny.toml"],
         ("'workload.selections'", "s.parquet", "999999"),
         {**tiny('kind = "trace"', 'kind = "trace"\nselections = "s.parquet"'),
          "s.parquet": selections(999999)}),
    Case("run-selections-not-parquet", ["run", "tiny.toml"],
         ("'workload.selections'", "s.parquet", "Parquet"),
         {**tiny('kind = "trace"', 'kind = "trace"\nselections = "s.parquet"'),
          "s.parquet": "no"}),
    # -- trace -----------------------------------------------------------------------------------
    Case("trace-stats-empty-file", ["trace", "stats", "e.jsonl"], ("e.jsonl", "no requests"),
         {"e.jsonl": ""}),
    Case("trace-stats-bad-line", ["trace", "stats", "t.jsonl"], ("t.jsonl:2", "--skip-bad"),
         {"t.jsonl": TRACE.replace("\n", '\n{"timestamp": -1}\n', 1)}),
    Case("trace-stats-not-utf8", ["trace", "stats", "t.jsonl"], ("t.jsonl:2", "not UTF-8"),
         {"t.jsonl": TRACE.encode().replace(b"\n", b"\n\xff\n", 1)}),
    Case("trace-stats-azure-not-utf8", ["trace", "stats", "a.csv"], ("a.csv:2", "not UTF-8"),
         {"a.csv": b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 \xe9,3,4\n"}),
    Case("trace-stats-unknown-format", ["trace", "stats", "t.txt"], ("t.txt", "format"),
         {"t.txt": TRACE}),
    Case("run-parquet-count-past-int64", ["run", "tiny.toml"],
         ("t.parquet", "'output_tokens'", "1e+30", "2^63"),
         {**tiny('trace = "t.jsonl"', 'trace = "t.parquet"'),
          "t.parquet": parquet(output_tokens=[1e30])}),
    Case("run-trace-a-folder", ["run", "tiny.toml"],
         ("tiny.toml", "'workload.trace'", "t.jsonl", "folder"),
         {"tiny.toml": TINY, "t.jsonl/t.jsonl": TRACE}),
    Case("trace-stats-a-folder", ["trace", "stats", "t.jsonl"], ("t.jsonl", "folder", ".jsonl"),
         {"t.jsonl/t.jsonl": TRACE}),
    Case("trace-stats-not-parquet", ["trace", "stats", "t.parquet"], ("t.parquet", "Parquet"),
         {"t.parquet": "not parquet"}),
    Case("trace-stats-not-gzip", ["trace", "stats", "t.jsonl.gz"], ("t.jsonl.gz", "gzip"),
         {"t.jsonl.gz": TRACE}),
    Case("trace-stats-gzip-cut-short", ["trace", "stats", "a.csv.gz"], ("a.csv.gz", "gzip"),
         {"a.csv.gz": gzip.compress(AZURE.encode() * 20)[:60]}),
    Case("trace-stats-mooncake-huge-output", ["trace", "stats", "t.jsonl"],
         ("t.jsonl:1", "'output_length'", "100,000,000"),
         {"t.jsonl": LINE.replace("4,", "99999999999999999999,") % (0, "1, 2, 3, 4, 5, 6")}),
    Case("trace-stats-azure-huge-context", ["trace", "stats", "a.csv"],
         ("a.csv:3", "ContextTokens", "100,000,000"),
         {"a.csv": AZURE + "2023-11-16 18:15:48,9999999999999,4\n"}),
    Case("run-trace-timestamp-past-the-bound", ["run", "tiny.toml"],
         ("t.jsonl:1", "'timestamp' 1e+300 ms", "1e+10 ms"),
         tiny(trace=TRACE.replace('"timestamp": 0,', '"timestamp": 1e300,', 1))),
    Case("trace-stats-azure-span-past-the-bound", ["trace", "stats", "a.csv"],
         ("a.csv", "TIMESTAMP", "1e+07 s"), {"a.csv": AZURE + "2200-01-01,100,9\n"}),
    Case("trace-stats-azure-after-2262", ["trace", "stats", "a.csv"],
         ("a.csv:3", "TIMESTAMP", "2262"), {"a.csv": AZURE + "3000-01-01,100,9\n"}),
    Case("trace-gen-bad-option", ["trace", "gen", "agentic", "--subagents", "0", "-o", "a.parquet"],
         ("--subagents",)),
    *(Case(f"trace-{cmd}-block-tokens-of-a-mooncake-trace",
           ["trace", cmd, "t.jsonl", "--block-tokens", "64", *extra],
           ("--block-tokens 64", "only for Azure", "t.jsonl", "drop it"), {"t.jsonl": TRACE})
      for cmd, extra in (("stats", []), ("convert", ["-o", "t.parquet"]))),
    Case("trace-stats-zero-block-tokens", ["trace", "stats", "a.csv", "--block-tokens", "0"],
         ("--block-tokens",), {"a.csv": AZURE}),
    Case("trace-gen-selections-zero-top-k", ["trace", "gen", "selections", "t.jsonl",
                                             "--top-k-tokens", "0", "-o", "s.parquet"],
         ("--top-k-tokens",), {"t.jsonl": TRACE}),
    Case("trace-gen-options-out-of-order", ["trace", "gen", "agentic", "--repo-min-tokens",
                                            "100000", "--repo-max-tokens", "10", "-o",
                                            "a.parquet"],
         ("--repo-min-tokens must be <= --repo-max-tokens",)),
    Case("trace-gen-selections-too-many", ["trace", "gen", "selections", "t.jsonl", "-o",
                                           "s.parquet", "--layers", "100000000", "--steps",
                                           "100000000"],
         ("trace gen selections", "1,200,000,000 selections", "memory", "lower --steps"),
         {"t.jsonl": TRACE}),
    Case("trace-gen-negative-seed", ["trace", "gen", "rag", "--seed", "-1", "-o", "a.parquet"],
         ("--seed", "-1")),
    Case("trace-gen-infinite-duration", ["trace", "gen", "rag", "--duration-time", "inf", "-o",
                                         "a.parquet"], ("--duration-time", "finite")),
    Case("trace-gen-duration-past-the-bound", ["trace", "gen", "agentic", "--duration-time",
                                               "1e8", "-o", "a.parquet"],
         ("--duration-time 1e+08", "<= 1e+07")),
    # tasks up to 1e7 s whose later turns come after it: a file the reader would refuse
    Case("trace-gen-turns-past-the-bound", ["trace", "gen", "agentic", "--duration-time", "1e7",
                                            "--task-rate", "1e-6", "--subagents", "1",
                                            "--think-time-mean", "1e5", "--repo-tokens", "4096",
                                            "--repo-min-tokens", "2048", "--repo-max-tokens",
                                            "8192", "-o", "a.parquet"],
         ("trace gen agentic", "1.09236e+07 s", "a.parquet could not be read back")),
    Case("trace-gen-infinite-param", ["trace", "gen", "agentic", "--preset", "copilot_2026",
                                      "--param", "sessions=inf", "-o", "a.parquet"],
         ("--param", "sessions=inf")),
    Case("trace-gen-fractional-count", ["trace", "gen", "agentic", "--preset", "copilot_2026",
                                        "--param", "sessions=2.7", "-o", "a.parquet"],
         ("--param", "sessions=2.7")),
    *(Case(f"trace-gen-{name}-too-large", ["trace", "gen", *argv, "-o", "a.parquet"],
           (f"trace gen {argv[0]}", "memory", f"lower {lower}"))
      for name, argv, lower in (
          ("rag", ["rag", "--request-rate", "1e12"], "--request-rate (1e+12)"),
          ("nested", ["nested", "--request-rate", "1e12"], "--request-rate (1e+12)"),
          ("agentic", ["agentic", "--task-rate", "1e9"], "--task-rate (1e+09)"),
          ("preset", ["agentic", "--preset", "copilot_2026", "--param",
                      "sessions=4000000000000"], "--param sessions=4000000000000"))),
    Case("trace-gen-missing-folder", ["trace", "gen", "agentic", "-o", "d/a.parquet"],
         ("-o", "d/a.parquet")),
    Case("trace-convert-bad-suffix", ["trace", "convert", "t.jsonl", "-o", "t.csv"],
         ("-o", "t.csv", ".parquet"), {"t.jsonl": TRACE}),
    # an empty name: it was shown as "-o ." (the current folder)
    Case("trace-convert-empty-output", ["trace", "convert", "t.jsonl", "-o", ""],
         ("-o ''", "give a file name ending in .parquet"), {"t.jsonl": TRACE}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path, monkeypatch, capsys):
    one_line_exit_2_nothing_written(case, tmp_path, monkeypatch, capsys)


def test_a_missing_trace_names_the_scenario_the_field_and_the_folder_it_was_looked_in(
        tmp_path, monkeypatch, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "tiny.toml").write_text(TINY.replace("t.jsonl", "nosuch.parquet"))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(["run", "sub/tiny.toml", "--no-write"], capsys)
    assert code == 2 and out == ""
    from workloads.loaders import SHIPPED

    assert err == (f"error: sub/tiny.toml: field 'workload.trace': sub/nosuch.parquet: no such "
                   f"file (looked for in {tmp_path / 'sub'}: a relative path is read from the "
                   f"scenario file's folder; shipped traces: {', '.join(sorted(SHIPPED))})\n")
