"""docs/records.md stays true: every column of every record table the code writes, every key of
``summary.json`` and every bookkeeping column of a sweep's ``results.parquet`` is listed in the
doc's section for it, and the doc lists nothing the code does not write.

The columns come from the code's own constants (``REQUEST_COLUMNS``, ``ROUND_COLUMNS``,
``ITERATION_COLUMNS``, ``MOE_COLUMNS``, ``TRANSFER_COLUMNS``, the ``run --json`` key lists) and
from what :func:`simulator.cli.results.write_outputs` writes for tiny runs (well under a second
each, plots left out): the decode-loop engine (exact and fast, an adaptive policy beside a static
one for the regret block, a closed loop), both pool loops and a prefill/decode deployment.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator import plots, run
from simulator.cli.results import write_outputs
from simulator.cli.run import DEPLOYMENT_KEYS, ENGINE_KEYS, EXTRA_KEYS, JSON_KEYS
from simulator.engine.instances import MOE_COLUMNS
from simulator.engine.kvtransfer import TRANSFER_COLUMNS
from simulator.engine.records import ITERATION_COLUMNS, REQUEST_COLUMNS, ROUND_COLUMNS
from simulator.engine.regret import METRICS, choices_over_time
from simulator.policies.base import OPTIONS
from simulator.scenario import Scenario
from simulator.sweep.executor import _point_frame
from simulator.sweep.points import _predict
from simulator.sweep.spec import Point
from simulator.testing.invariants import repo_on, small_scenario
from workloads.schema import make_trace

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "records.md"

#: The record tables a run writes, and the constants the code builds them from (where it has one).
TABLES = {"requests": REQUEST_COLUMNS, "rounds": ROUND_COLUMNS, "iterations": ITERATION_COLUMNS,
          "gpus": (), "links": (), "link_timeline": (), "link_classes": (), "class_timeline": (),
          "moe": MOE_COLUMNS, "kv_transfers": TRANSFER_COLUMNS}
#: Columns every written table starts with (write_outputs), documented once.
COMMON = "Every table"
SUMMARY = "`summary.json`"
REGRET = "`regret`"
SWEEP = "`results.parquet`"

# a prefill/decode deployment of DeepSeek-V3.2 on four DGX nodes (tests/test_engine_instances.py)
PD = """
name = "pd"
seed = 3
stack = "ibgda"
policies = ["route"]
[topology]
spec = "dgx_h100:nodes=4"
[model]
name = "deepseek-v3.2"
[workload]
kind = "trace"
trace = "unused.parquet"
[engine]
max_batch = 16
layer_groups = 4
[deployment]
attention_dp = 16
redundant_experts = 16
[deployment.prefill]
attention_dp = 16
"""


def doc_sections() -> dict[str, set[str]]:
    """Per heading of docs/records.md (its text after the #s): the backticked names in the first
    cell of its tables' rows; a ``##`` heading also gathers its ``###`` subsections'."""
    out: dict[str, set[str]] = {}
    h2 = h3 = None
    for line in DOC.read_text().splitlines():
        if m := re.match(r"(#{2,3}) (.+)", line):
            title = m.group(2).strip()
            if m.group(1) == "##":
                h2, h3 = title, None
            else:
                h3 = title
            out.setdefault(title, set())
            continue
        cells = line.split("|")
        if h2 is None or len(cells) < 3 or not line.startswith("|"):
            continue
        names = set(re.findall(r"`([^`]+)`", cells[1]))
        out[h2] |= names
        if h3 is not None:
            out[h3] |= names
    return out


def heading(sections: dict[str, set[str]], start: str) -> set[str]:
    """The names under the one heading that starts with ``start``."""
    found = [t for t in sections if t.startswith(start)]
    assert len(found) == 1, f"docs/records.md: one heading starting {start!r}, found {found}"
    return sections[found[0]]


def tiny_trace(n: int = 3, out: int = 4) -> pd.DataFrame:
    """``n`` prompts of 40 blocks held on GPU 1 of two, arriving 10 ms apart."""
    return make_trace(arrival_at=np.arange(n) * 0.01, input_tokens=[40 * 64] * n,
                      output_tokens=[out] * n, block_ids=[list(range(40))] * n,
                      block_tokens=64, repo_id=[repo_on(1, 2)] * n)


def pool_case():
    """The shipped Lamina scenario with six prompts arriving at once."""
    sc = Scenario.load(ROOT / "scenarios" / "lamina_llama3_70b.toml")
    inp = np.array([800, 1800, 2800, 3800, 4800, 5800])
    tr = make_trace(arrival_at=np.zeros(6), input_tokens=inp, output_tokens=[50] * 6,
                    block_ids=[np.arange(-(-int(x) // 512)) + 10_000 * i
                               for i, x in enumerate(inp)])
    return sc, tr


def pd_case():
    """The prefill/decode deployment with four prompts arriving at once."""
    sc = Scenario.from_dict(tomllib.loads(PD), source="pd.toml")
    n, inp = 4, 1500
    tr = make_trace(arrival_at=np.zeros(n), input_tokens=np.full(n, inp),
                    output_tokens=np.full(n, 3),
                    block_ids=[10_000 * (i + 1) + np.arange(-(-inp // 64)) for i in range(n)],
                    block_tokens=64)
    return sc, tr


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """What write_outputs writes for each tiny case: ``{case: (columns per table, summary)}``."""
    closed = small_scenario()
    closed = closed.with_changes(workload=dataclasses.replace(closed.workload, concurrency=1))
    pool_sc, pool_tr = pool_case()
    pd_sc, pd_tr = pd_case()
    cases = {
        "exact": {p: run(small_scenario(), p, trace=tiny_trace()) for p in ("fetch", "adaptive")},
        "fast": {p: run(small_scenario(), p, trace=tiny_trace(), engine="fast")
                 for p in ("route", "local")},
        "closed": {"route": run(closed, "route", trace=tiny_trace())},
        "pools": {p: run(pool_sc, p, trace=pool_tr) for p in ("homogeneous", "disaggregated")},
        "pd": {"route": run(pd_sc, "route", trace=pd_tr)},
    }
    out = {}
    mp = pytest.MonkeyPatch()
    mp.setattr(plots, "write_all", lambda results, folder: ([], {}))  # no PNGs: not records
    try:
        for case, results in cases.items():
            folder = tmp_path_factory.mktemp(case)
            write_outputs(results, folder, case)
            columns = {f.stem: list(pd.read_parquet(f).columns) for f in folder.glob("*.parquet")}
            out[case] = (columns, json.loads((folder / "summary.json").read_text()))
    finally:
        mp.undo()
    return out


def test_the_tiny_cases_write_every_table(written):
    tables = set().union(*(cols for cols, _ in written.values()))
    assert tables == set(TABLES)
    assert {"moe", "kv_transfers"} <= set(written["pd"][0])
    assert "regret" in written["exact"][1] and written["exact"][1]["regret"]["choices"]


def test_every_column_the_code_writes_is_documented_under_its_table(written):
    sections = doc_sections()
    common = heading(sections, COMMON)
    assert common == {"policy", "engine"}
    for table, constant in TABLES.items():
        documented = heading(sections, f"`{table}`")
        seen = set(constant)
        for columns, _ in written.values():
            seen |= set(columns.get(table, ()))
        seen -= common
        missing = sorted(seen - documented)
        assert not missing, f"docs/records.md, table {table}: columns not documented: {missing}"
        extra = sorted(documented - seen)
        assert not extra, f"docs/records.md, table {table}: no such column written: {extra}"


def test_every_written_table_starts_with_policy_and_engine(written):
    for columns, _ in written.values():
        for table, cols in columns.items():
            assert cols[:2] == ["policy", "engine"], table


def summary_keys(written) -> tuple[set[str], set[str]]:
    """(top-level keys, per-policy keys) of every tiny case's summary.json."""
    top, per = set(), set()
    for _, summary in written.values():
        top |= set(summary)
        for s in summary["policies"].values():
            per |= set(s)
    return top, per


def test_every_summary_key_is_documented(written):
    sections = doc_sections()
    documented = heading(sections, SUMMARY)
    top, per = summary_keys(written)
    constants = set(JSON_KEYS + EXTRA_KEYS + ENGINE_KEYS + DEPLOYMENT_KEYS)
    missing = sorted((top | per | constants | {"plots_skipped"}) - documented)
    assert not missing, f"docs/records.md, summary.json: keys not documented: {missing}"


def test_the_regret_block_is_documented(written):
    regret = written["exact"][1]["regret"]
    keys = set(regret) | set(choices_over_time(pd.DataFrame(), 1.0))
    keys |= set(next(iter(regret["choices"].values())))
    assert set(OPTIONS) <= keys and {m for m, _ in METRICS} <= set(
        next(iter(regret["policies"].values())))
    sections = doc_sections()
    documented = heading(sections, REGRET)
    assert keys == documented, sorted(keys ^ documented)
    assert "regret" in heading(sections, SUMMARY)


def test_the_summary_documents_no_key_the_code_does_not_write(written):
    top, per = summary_keys(written)
    regret = written["exact"][1]["regret"]
    known = top | per | set(JSON_KEYS + EXTRA_KEYS + ENGINE_KEYS + DEPLOYMENT_KEYS)
    known |= {"plots_skipped"} | set(regret) | set(next(iter(regret["choices"].values())))
    extra = sorted(heading(doc_sections(), SUMMARY) - known)
    assert not extra, f"docs/records.md, summary.json: no such key written: {extra}"


def test_a_sweeps_results_columns_are_documented():
    documented = heading(doc_sections(), SWEEP)
    point = Point(0, (("stack", "nccl"),), "0123456789abcdef", 7)
    frame = _point_frame(point, [{"policy": "route", "requests": 1, "note": ""}])
    own = list(frame.columns[:3])
    assert own == ["point", "point_id", "point_seed"]
    predict = _predict({"topology": "single_node:gpus=2", "dst": "n0/gpu1"}, {}, 0)
    columns = set(own) | {"policy", "note"} | set(predict[0])
    missing = sorted(columns - documented)
    assert not missing, f"docs/records.md, results.parquet: columns not documented: {missing}"
