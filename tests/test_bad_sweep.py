"""Bad sweep files given to ``kvfabric sweep``: the file (missing, not TOML, not UTF-8), its name,
grid, random fields and base, a point whose scenario or trace is bad (found before any point
runs), ``predict`` sweeps' points, and the options that do not go together. Each case exit 2, one
line naming the file and field (and the point), nothing written (:mod:`badinput`).
"""

from __future__ import annotations

import pytest
from badinput import SWEEP, TINY, Case, one_line_exit_2_nothing_written, tiny


def sweep(grid: str, head: str = "") -> dict[str, str | bytes]:
    return {**tiny(), "s.toml": SWEEP.replace("[grid]\n", head + "[grid]\n" + grid)}


CASES: list[Case] = [
    # -- sweep -----------------------------------------------------------------------------------
    Case("sweep-missing-file", ["sweep", "nope.toml"], ("nope.toml", "not found")),
    Case("sweep-name-leaves-the-folder", ["sweep", "s.toml"], ("s.toml", "'sweep.name'", "'/'"),
         {**tiny(), "s.toml": SWEEP.replace('name = "s"', 'name = "../../escape"')
          + '"engine.max_batch" = [2]\n'}),
    Case("sweep-empty-name", ["sweep", "s.toml"], ("s.toml", "'sweep.name'"),
         {**tiny(), "s.toml": SWEEP.replace('name = "s"', 'name = ""')
          + '"engine.max_batch" = [2]\n'}),
    Case("sweep-name-with-a-newline", ["sweep", "s.toml"], ("s.toml", "'sweep.name'", "control"),
         {**tiny(), "s.toml": SWEEP.replace('name = "s"', 'name = "a\\nb"')
          + '"engine.max_batch" = [2]\n'}),
    Case("sweep-name-too-long", ["sweep", "s.toml"], ("--out out/sweep-", "File name too long"),
         {**tiny(), "s.toml": SWEEP.replace('name = "s"', f'name = "{"s" * 300}"')
          + '"engine.max_batch" = [2]\n'}),
    Case("sweep-grid-value-twice", ["sweep", "s.toml"], ("s.toml", "'grid.policy'", "twice"),
         sweep('policy = ["route", "fetch", "route"]\n')),
    Case("sweep-malformed-toml", ["sweep", "s.toml"], ("s.toml", "not valid TOML"),
         {"s.toml": "[sweep\n"}),
    Case("sweep-not-utf8", ["sweep", "s.toml"], ("s.toml", "not UTF-8"),
         {"s.toml": b"[sweep]\nname = '\xe9'\n"}),
    Case("sweep-unknown-dotted-field", ["sweep", "s.toml", "--out", "o"],
         ("s.toml", "'engine.max_batchez'"), sweep('"engine.max_batchez" = [1, 2]\n')),
    Case("sweep-bad-value", ["sweep", "s.toml", "--out", "o"],
         ("s.toml", "'engine.max_batch'"), sweep('"engine.max_batch" = [4, 0]\n')),
    Case("sweep-unknown-policy", ["sweep", "s.toml", "--out", "o"],
         ("s.toml", "'grid.policy'", "teleport"), sweep('policy = ["route", "teleport"]\n')),
    Case("sweep-not-a-table", ["sweep", "s.toml", "--out", "o"],
         ("s.toml", "'grid.name.first'"), sweep('"name.first" = ["a"]\n')),
    Case("sweep-missing-base", ["sweep", "s.toml"], ("s.toml", "'sweep.base'"),
         {"s.toml": SWEEP.replace('"tiny.toml"', '"gone.toml"') + "stack = ['ibgda']\n"}),
    Case("sweep-trace-missing", ["sweep", "s.toml", "--out", "o"],
         ("s.toml point 0", "'workload.trace'", "t2.jsonl: no such file"),
         {**sweep("stack = ['ibgda']\n"), "tiny.toml": TINY.replace("t.jsonl", "t2.jsonl")}),
    Case("sweep-bad-trace-line", ["sweep", "s.toml", "--out", "o"], ("t.jsonl:1", "--skip-bad"),
         {**sweep("stack = ['ibgda']\n"), "t.jsonl": "nope\n"}),
    Case("sweep-unknown-section", ["sweep", "s.toml"], ("s.toml", "'grids'"),
         {"s.toml": "[sweep]\nkind = 'predict'\n[grids]\nblocks = [1]\n"}),
    Case("sweep-predict-unknown-model", ["sweep", "p.toml", "--out", "o"],
         ("p.toml", "model='gpt-9'"),
         {"p.toml": "[sweep]\nkind = 'predict'\n[grid]\nmodel = ['gpt-9']\n"}),
    *(Case(f"sweep-predict-{name}", ["sweep", "p.toml", "--out", "o"], ("p.toml", *words),
           {"p.toml": f"[sweep]\nkind = 'predict'\n[grid]\n{grid}\n"})
      for name, grid, words in (
          ("same-gpu", "dst = ['n0/gpu0']", ("field 'dst'", "home's own GPU")),
          ("half-a-query", "batch = [1, 0.5]", ("batch=0.5", "field 'batch'", "whole")),
          ("fractional-block", "block_tokens = [1.5]", ("field 'block_tokens'", "whole")),
          ("unknown-dtype", "kv_dtype = ['bogus']", ("kv dtype 'bogus'",)),
          ("unknown-layout", "layout = ['x']", ("layout 'x'",)),
          ("reuse-below-one", "reuse = [0.5]", ("reuse=0.5",)),
          ("blocks-past-the-bound", "blocks = [1e300]", ("field 'blocks'", "1e+15")),
          ("topology-beside-it-missing", "topology = ['t/ring.toml']", ("t/ring.toml",)))),
    Case("sweep-generator-table-of-another-kind", ["sweep", "s.toml", "--out", "o"],
         ("s.toml", "'workload.agentic'", "not used with kind = 'trace'"),
         sweep('"workload.agentic.subagents" = [4, 8]\n')),
    Case("sweep-run-block-size-not-dividing-the-traces", ["sweep", "s.toml", "--out", "o"],
         ("s.toml point 1", "'placement.block_tokens'", "does not divide"),
         sweep('"placement.block_tokens" = [64, 100]\n')),
    Case("sweep-scheduler-with-the-local-backend",
         ["sweep", "s.toml", "--backend", "local", "--scheduler", "tcp://127.0.0.1:1"],
         ("--scheduler", "--backend local", "drop one"), sweep("stack = ['ibgda']\n")),
    Case("sweep-out-under-a-file", ["sweep", "s.toml", "--out", "f/o"], ("--out", "f/o"),
         {**sweep("stack = ['ibgda']\n"), "f": "a file"}),
    *(Case(f"sweep-{name}", ["sweep", "s.toml", "--out", "o"], ("s.toml", *words),
           {**tiny(), "s.toml": text})
      for name, text, words in (
          ("base-not-a-table", 'base = "x"\n' + SWEEP + "stack = ['ibgda']\n",
           ("field 'base'", "table")),
          ("random-not-a-table", "random = 5\n" + SWEEP + "stack = ['ibgda']\n",
           ("field 'random'", "table")),
          *((f"random-{what}", SWEEP.replace("[sweep]\n", "[sweep]\nsamples = 2\n")
             + "stack = ['ibgda']\n[random]\n\"engine.max_batch\" = { " + spec + " }\n",
             ("'random.engine.max_batch'", need))
            for what, spec, need in (
                ("unknown-key", "low = 1, high = 4, integr = true", "low = …, high = …"),
                ("flag-not-a-bool", 'low = 1, high = 4, integer = "no"', "true or false"),
                ("infinite-range", "low = -inf, high = inf", "finite"),
                ("range-past-a-float", "low = -1e308, high = 1e308", "finite"),
                ("boolean-bound", "low = true, high = 4", "finite numbers"))))),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path, monkeypatch, capsys):
    one_line_exit_2_nothing_written(case, tmp_path, monkeypatch, capsys)
