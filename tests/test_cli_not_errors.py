"""Runs that are *not* errors: a file opening with a byte-order mark is read; an empty or
degenerate run is a complete result with notes; a second run replaces the first whole, and the
default folder without asking. (The bad inputs are ``tests/test_bad_*.py``.)
"""

from __future__ import annotations

import json

import pytest
from badinput import DEFAULT, H200, PING, TINY, TRACE
from clitools import run_main

# -- files a Windows editor saved, with a byte-order mark, read as without one -------------------

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize(("argv", "files"), [
    (["run", "tiny.toml", "--no-write", "--policy", "route", "--jobs", "1"],
     {"tiny.toml": BOM + TINY.encode(), "t.jsonl": TRACE}),
    (["topology", "show", "t.toml"], {"t.toml": BOM + b'preset = "single_node"\n'}),
    (["calibrate", "ping.csv", "-o", "c.toml"], {"ping.csv": BOM + PING.encode()}),
    (["kernel", "gemm", "--gpu", "H200", "--profile", "p.toml", "--m", "8", "--n", "8", "--k",
      "8"], {"p.toml": BOM + H200.encode()}),
], ids=["scenario", "topology", "calibration-csv", "kernel-profile"])
def test_a_file_opening_with_a_byte_order_mark_is_read(argv, files, tmp_path, monkeypatch,
                                                         capsys):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(argv, capsys)
    assert code == 0, err


# -- empty and degenerate runs are results --------------------------------------------------------

TABLES = ("requests", "rounds", "iterations", "gpus", "links", "link_timeline")


def _run(argv, capsys):
    return run_main(argv, capsys, warnings_as_errors=True)  # no matplotlib warning on the way


def test_a_run_without_requests_is_a_complete_result_with_notes(tmp_path, capsys):
    # the reproduction: this seed draws no task in the 30 s window
    scenario = tmp_path / "d.toml"
    scenario.write_text(DEFAULT.replace("subagents = 32", "subagents = 8")
                        .replace("turns_mean = 2.0", "turns_mean = 1.5"))
    out = tmp_path / "o"
    code, _, err = _run(["run", str(scenario), "--seed", "2160069381", "--out", str(out)],
                        capsys)
    assert code == 0, err
    import pandas as pd

    for t in ("requests", "rounds", "iterations", "link_timeline"):  # every table, no rows
        assert len(pd.read_parquet(out / f"{t}.parquet")) == 0
    assert set(pd.read_parquet(out / "gpus.parquet")["policy"]) == {"route", "fetch", "adaptive"}
    summary = json.loads((out / "summary.json").read_text())
    for policy in ("route", "fetch", "adaptive"):
        assert summary["policies"][policy]["requests"] == 0
        assert "no requests entered the run" in summary["policies"][policy]["notes"][0]
    assert not list(out.glob("*.png"))  # no empty pictures ...
    assert set(summary["plots_skipped"]) == {"latency_cdf.png", "phase_breakdown.png",
                                             "link_utilization.png", "closed_form_scatter.png"}
    assert err.count("skipped ") == 4  # ... each skip said why
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 2160069381
    assert manifest["engine"] == dict.fromkeys(manifest["policies"], "exact")  # per policy
    assert set(manifest["files"]) == {p.name for p in out.iterdir()}


def test_an_empty_trace_and_a_policy_that_never_routes_are_results(tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "t.jsonl").write_text("")
    code, out, err = _run(["run", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "e"),
                           "--json"], capsys)
    assert code == 0, err
    payload = json.loads(out)
    assert payload["policies"]["route"]["requests"] == 0 and payload["notes"]["route"]
    assert len(payload["plots_skipped"]) == 4
    (tmp_path / "t.jsonl").write_text(TRACE)
    code, out, err = _run(["run", str(tmp_path / "tiny.toml"), "--policy", "route,colocated",
                           "--out", str(tmp_path / "c"), "--json"], capsys)
    assert code == 0, err
    payload = json.loads(out)
    assert "no rounds" in payload["notes"]["colocated"][0] and "route" not in payload["notes"]
    assert payload["plots_skipped"] == {}  # route's rounds are drawn; colocated is named
    assert sorted(p.name for p in (tmp_path / "c").glob("*.png")) == [
        "closed_form_scatter.png", "latency_cdf.png", "link_utilization.png",
        "phase_breakdown.png"]


def test_a_second_run_replaces_the_first_whole_and_never_mixes(tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "t.jsonl").write_text(TRACE)
    out = tmp_path / "o"
    assert _run(["run", str(tmp_path / "tiny.toml"), "--out", str(out)], capsys)[0] == 0
    first = json.loads((out / "manifest.json").read_text())
    assert first["policies"] == ["route", "fetch"]
    assert (out / "rounds.parquet").is_file() and (out / "phase_breakdown.png").is_file()
    code, _, err = _run(["run", str(tmp_path / "tiny.toml"), "--out", str(out), "--policy",
                         "colocated", "--overwrite"], capsys)
    assert code == 0, err
    second = json.loads((out / "manifest.json").read_text())
    assert second["policies"] == ["colocated"]
    assert set(second["files"]) == {p.name for p in out.iterdir()}  # nothing of the first
    assert not (out / "phase_breakdown.png").exists()
    import pandas as pd

    for t in TABLES:
        assert set(pd.read_parquet(out / f"{t}.parquet")["policy"]) <= {"colocated"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "t.jsonl", "tiny.toml"]


def test_the_default_folder_is_replaced_without_asking(tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "t.jsonl").write_text(TRACE)
    monkeypatch.chdir(tmp_path)
    for policy in ("route", "colocated"):
        code, _, err = _run(["run", "tiny.toml", "--policy", policy], capsys)
        assert code == 0, err
    manifest = json.loads((tmp_path / "kvfabric_out" / "tiny" / "manifest.json").read_text())
    assert manifest["policies"] == ["colocated"]
    assert sorted(p.name for p in (tmp_path / "kvfabric_out").iterdir()) == ["tiny"]
