"""The benchmark scripts' comma-separated arguments (``benchmarks/cliargs.py``): a bad list is
one argparse error line with exit status 2, before any run starts."""

import argparse

import pytest
from benchtools import benchmark


def cliargs():
    return benchmark("cliargs")


def test_ints_parse_and_name_the_bad_value():
    ca = cliargs()
    assert ca.ints("0,1,,2") == [0, 1, 2]
    assert ca.ints(" 3 ") == [3]
    with pytest.raises(argparse.ArgumentTypeError, match=r"'0,x': give comma-separated"):
        ca.ints("0,x")
    with pytest.raises(argparse.ArgumentTypeError, match="at least one"):
        ca.ints(",")
    assert ca.positive_ints("1,12031") == [1, 12031]
    with pytest.raises(argparse.ArgumentTypeError, match="at least 1"):
        ca.positive_ints("5,0")


def test_names_keep_order_and_reject_the_first_unknown():
    parse = cliargs().names(("route", "fetch", "adaptive"), "policy")
    assert parse("fetch, route") == ["fetch", "route"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown policy 'routee'; known: route"):
        parse("route,routee,nope")
    assert cliargs().policy_names("local,adaptive_live") == ["local", "adaptive_live"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown policy"):
        cliargs().policy_names("fetch,teleport")


@pytest.mark.parametrize(("script", "argv", "says"), [
    ("bench_engine", ["--requests", "1x"], "argument --requests: '1x'"),
    ("bench_engine", ["--requests", "10", "--engine", "turbo"], "unknown engine 'turbo'"),
    ("bench_engine", ["--requests", "10", "--policies", "nosuch"], "unknown policy 'nosuch'"),
    ("validate_fast", ["--only", "nosuch"], "unknown scenario 'nosuch'"),
    ("validate_fast", ["--seeds", "0,x"], "argument --seeds: '0,x'"),
    ("validate_adaptive", ["--scenarios", "agentic-4,nosuch"], "unknown scenario 'nosuch'"),
    ("validate_adaptive", ["--policies", "fetch,routee"], "unknown policy 'routee'"),
    ("route_bounds", ["--scenarios", "mixed_fleet,nosuch"], "unknown scenario 'nosuch'"),
])
def test_a_bad_list_exits_2_before_any_run(script, argv, says, capsys, monkeypatch):
    mod = benchmark(script)
    for name in ("one", "compare", "run_scenario", "raw_simpy_rate", "measure"):  # what would start work
        if hasattr(mod, name):
            monkeypatch.setattr(mod, name, lambda *a, **k: pytest.fail("a run started"))
    with pytest.raises(SystemExit) as exc:
        mod.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert says in err.splitlines()[-1] and "Traceback" not in err


@pytest.mark.parametrize(("argv", "says"), [
    (["--base", "no-such-revision-xyz"], "--base 'no-such-revision-xyz': not a commit"),
    (["--against", "/no/such/folder"], "--against '/no/such/folder': no such folder"),
])
def test_same_records_checks_its_revision_or_folder_first(argv, says, capsys, monkeypatch):
    sr = benchmark("same_records")
    monkeypatch.setattr(sr, "save", lambda *a, **k: pytest.fail("a run started"))
    monkeypatch.setattr(sr, "save_revision", lambda *a, **k: pytest.fail("a run started"))
    with pytest.raises(SystemExit) as exc:
        sr.main(argv)
    assert exc.value.code == 2 and says in capsys.readouterr().err
    assert sr.is_revision("HEAD")


def test_validate_kernels_rejects_arguments_it_does_not_take(capsys):
    with pytest.raises(SystemExit) as exc:
        benchmark("validate_kernels").main(["--nosuch"])
    assert exc.value.code == 2 and "unrecognized arguments: --nosuch" in capsys.readouterr().err


def test_bench_locate_checks_its_seconds_and_that_both_lookups_agree(capsys, monkeypatch):
    bl = benchmark("bench_locate")
    with monkeypatch.context() as m:
        m.setattr(bl, "directory", lambda *a, **k: pytest.fail("a run started"))
        with pytest.raises(SystemExit) as exc:
            bl.main(["--seconds", "0"])
    assert exc.value.code == 2 and "give a positive number" in capsys.readouterr().err
    bl.main(["--seconds", "0.001", "--json"])  # each case checks the two agree before timing
    got = __import__("json").loads(capsys.readouterr().out)
    assert len(got) == len(bl.SHAPES) and all(v["ratio"] > 0 for v in got.values())
    # a lookup that differs stops the benchmark with a line naming the case
    monkeypatch.setattr(bl, "array_locate", lambda steps, g, dense, valid: (
        ~bl.StepData.locate(steps, g, dense, valid)[0], []))
    with pytest.raises(SystemExit, match="differs from the array code for 1 query x 61 slots"):
        bl.main(["--seconds", "0.001"])


def _saved(root, links: list[float], src: str = "a") -> None:
    import json

    import pandas as pd

    sr = benchmark("same_records")
    d = root / "case" / "fetch"
    d.mkdir(parents=True)
    for table in sr.TABLES:
        frame = pd.DataFrame({"src": [src, "b"], "bytes": links}) if table == "links" else \
            pd.DataFrame({"x": [1.0, float("nan")]})
        frame.to_parquet(d / f"{table}.parquet")
    (d / "summary.json").write_text(json.dumps({"tbt_p50": 0.5}))


def test_same_records_names_the_largest_relative_difference_and_counts_close_tables(
        tmp_path, capsys):
    import pandas as pd

    sr = benchmark("same_records")
    _saved(tmp_path / "a", [3.0, 0.0])
    _saved(tmp_path / "b", [3.0 * (1 + 4e-16), 0.0])  # one ulp or two: an addition reordered
    _saved(tmp_path / "c", [3.0 * (1 + 4e-16), 0.0], src="z")  # a name differs too
    diffs = sr.compare(tmp_path / "a", tmp_path / "b")
    assert len(diffs) == 1 and diffs[0].startswith("case/fetch/links:")
    assert "largest relative difference 4.44e-16" in diffs[0]
    assert sr.compare(tmp_path / "a", tmp_path / "b", rtol=1e-15) == []
    assert "close: case/fetch/links" in capsys.readouterr().out
    assert sr.compare(tmp_path / "a", tmp_path / "b", rtol=1e-16) == diffs
    named = sr.compare(tmp_path / "a", tmp_path / "c", rtol=1.0)  # no tolerance for names
    assert len(named) == 1 and "largest relative difference" not in named[0]
    nan_or_not = [pd.DataFrame({"x": [v, 1.0]}) for v in (float("nan"), 2.0)]
    assert sr.largest_relative_difference(*nan_or_not) == float("inf")


def test_same_records_tells_a_summary_or_a_run_that_differs(tmp_path, capsys):
    import json

    sr = benchmark("same_records")
    _saved(tmp_path / "a", [3.0, 0.0])
    _saved(tmp_path / "b", [3.0, 0.0])
    assert sr.compare(tmp_path / "a", tmp_path / "b") == []
    # every table and the summary counted
    assert f"identical: {len(sr.TABLES) + 1} tables" in capsys.readouterr().out
    summary = tmp_path / "b" / "case" / "fetch" / "summary.json"
    summary.write_text(json.dumps({"tbt_p50": 0.5, "new_key": 1}))  # a key only b has: noted
    assert sr.compare(tmp_path / "a", tmp_path / "b") == []
    assert "not compared: new_key" in capsys.readouterr().out
    summary.write_text(json.dumps({"tbt_p50": 0.5000001}))
    (diff,) = sr.compare(tmp_path / "a", tmp_path / "b")
    assert diff == "case/fetch/summary: tbt_p50: 0.5 vs 0.5000001"
    summary.write_text(json.dumps({}))  # a key b lost is a difference
    (diff,) = sr.compare(tmp_path / "a", tmp_path / "b")
    assert diff == "case/fetch/summary: tbt_p50: 0.5 vs None"
    _saved(tmp_path / "c", [3.0, 0.0])
    (tmp_path / "c" / "case" / "fetch").rename(tmp_path / "c" / "case" / "route")
    assert sr.compare(tmp_path / "a", tmp_path / "c")[0].startswith("runs differ:")
