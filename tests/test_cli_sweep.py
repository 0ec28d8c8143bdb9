"""What ``kvfabric sweep`` prints and where: its first line, the results table and its cells,
the rows left out, notes and failed points on stderr as written, Ctrl-C's message; which
backend and how many workers the points are checked for. The points are computed in this
process (the local backend's runner replaced), most of them as rows given here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clitools import SMALL, after_the_bar, colour_terminal, refuse_points, rich_tables, run_main

from simulator.cli.sweep import _cell
from simulator.sweep import executor

#: A closed-form sweep of ``n`` points over ``blocks`` (its name, from the file, is ``p``).
PREDICT = "[sweep]\nkind = 'predict'\n[grid]\nblocks = [{blocks}]\n"


def write_sweep(folder: Path, n: int = 2) -> Path:
    path = folder / "p.toml"
    path.write_text(PREDICT.format(blocks=", ".join(str(8 * (i + 1)) for i in range(n))))
    return path


def fake_points(monkeypatch, outcome) -> list:
    """Compute each point here as ``outcome(point)``; returns the points seen, in order."""
    seen = []

    def run(tasks, sweep, workers):
        for p in tasks:
            seen.append(p)
            yield p, outcome(p)

    monkeypatch.setattr(executor, "_iter_local", run)
    return seen


def rows(*dicts):
    return lambda p: {"rows": [dict(d) for d in dicts]}


def test_cells_are_times_numbers_or_text():
    assert _cell("ttft_p50", 0.0015) == "1.5 ms"  # a latency column: a time
    assert _cell("tbt_p99", 2.5e-5) == "25 µs"
    assert _cell("total_time", 2.0) == "2 s"  # any *_time column
    assert _cell("throughput_tokens_per_s", 1234.5678) == "1235"  # 4 significant digits
    assert _cell("completed", 0.000123456) == "0.0001235"
    assert _cell("ttft_p50", float("nan")) == "—"  # an empty run's latency
    assert _cell("completed", float("nan")) == "—"
    assert _cell("completed", 3) == "3"
    assert _cell("decision", "route") == "route"
    # the closed-form error, a fraction, in percent as kvfabric run's table shows it
    assert _cell("closed_form_error_p99", 0.14538) == "14.54%"
    assert _cell("closed_form_error_p99", 4.074e-13) == "0.00%"
    assert _cell("moe_closed_form_error_p50", float("nan")) == "—"


def test_the_table_shows_each_row_formatted_and_the_first_line_counts_the_points(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    fake_points(monkeypatch, rows(
        {"option": "route", "completed": 3, "ttft_p50": 0.0015, "total_time": 2.0,
         "throughput_tokens_per_s": 1234.5678, "wall_time": 9.0},
        {"option": "fetch", "completed": 0, "ttft_p50": float("nan"), "total_time": 0.25,
         "throughput_tokens_per_s": 0.0, "wall_time": 9.0}))
    out_dir = tmp_path / "o"
    code, out, err = run_main(["sweep", str(write_sweep(tmp_path)), "--out", str(out_dir)],
                              capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"p: 2 points — 2 computed, 0 already done, 0 failed → {out_dir}/" \
                       "results.parquet"
    # the point, its parameters, the option, then the headline columns present (not wall_time)
    header = ["point", "blocks", "option", "completed", "ttft_p50", "throughput_tokens_per_s",
              "total_time"]
    body = []
    for point, blocks in ((0, 8), (1, 16)):
        body += [[str(point), str(blocks), "route", "3", "1.5 ms", "1235", "2 s"],
                 [str(point), str(blocks), "fetch", "0", "—", "0", "250 ms"]]
    assert rich_tables(out) == [(header, body)]
    assert len(lines) == 1 + 4 + 4  # the line, the table's top, header, rule, bottom, rows
    assert (out_dir / "results.parquet").is_file()


def test_the_first_line_is_not_wrapped_on_a_narrow_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "40")
    fake_points(monkeypatch, rows({"option": "route", "completed": 1}))
    out_dir = tmp_path / "o"
    code, out, err = run_main(["sweep", str(write_sweep(tmp_path, 1)), "--out", str(out_dir)],
                              capsys)
    assert code == 0, err
    assert out.splitlines()[0] == (f"p: 1 point — 1 computed, 0 already done, 0 failed → "
                                   f"{out_dir}/results.parquet")


@pytest.mark.parametrize(("n", "more"), [(20, None), (21, 1), (23, 3)])
def test_the_table_shows_twenty_rows_and_says_how_many_more_are_in_the_file(
        tmp_path, monkeypatch, capsys, n, more):
    monkeypatch.setenv("COLUMNS", "200")
    fake_points(monkeypatch, lambda p: {"rows": [{"option": f"o{i}", "completed": i}
                                                 for i in range(n)]})
    out_dir = tmp_path / "res[bold]"  # printed as given, not read as markup
    code, out, err = run_main(["sweep", str(write_sweep(tmp_path, 1)), "--out", str(out_dir)],
                              capsys)
    assert code == 0, err
    (header, body), = rich_tables(out)
    assert header == ["point", "blocks", "option", "completed"]
    assert body == [["0", "8", f"o{i}", str(i)] for i in range(20)]
    last = out.splitlines()[-1]
    if more is None:
        assert last.startswith("└")
    else:
        assert last == f"… {more} more rows in {out_dir}/results.parquet"


def test_notes_print_on_stderr_as_written_one_per_row_with_a_note(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setenv("COLUMNS", "40")  # narrow: a note is still one line
    note = "2 requests [bold]cut[/bold] at the duration (raise duration to keep them)"
    fake_points(monkeypatch, lambda p: {"rows": [
        {"option": "route", "completed": 1, "note": note if p.index == 1 else ""},
        {"option": "fetch", "completed": 1, "note": None}]})
    code, out, err = run_main(["sweep", str(write_sweep(tmp_path, 3)), "--out",
                               str(tmp_path / "o")], capsys)
    assert code == 0, err
    assert [line for line in err.splitlines() if line.startswith("note")] == [
        f"note: point 1: {note}"]
    assert "note:" not in out


def test_a_failed_point_prints_on_stderr_as_written_and_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "40")
    error = "UserError: the trace [bold]t.jsonl[/bold] has no request that fits the cluster"

    def outcome(p):
        if p.index == 1:
            return {"error": error, "detail": "detail"}
        return {"rows": [{"option": "route", "completed": 1}]}

    fake_points(monkeypatch, outcome)
    out_dir = tmp_path / "o"
    code, out, err = run_main(["sweep", str(write_sweep(tmp_path)), "--out", str(out_dir)],
                              capsys)
    assert code == 1
    assert [line for line in err.splitlines() if line.startswith("failed")] == [
        f"failed point 1 {{'blocks': 16}}: {error}"]
    assert out.splitlines()[0] == (f"p: 2 points — 1 computed, 0 already done, 1 failed → "
                                   f"{out_dir}/results.parquet")
    assert "failed point" not in out


def test_notes_and_failures_are_not_coloured_in_a_terminal(tmp_path, monkeypatch, capsys):
    colour_terminal(monkeypatch, 200)

    def outcome(p):
        if p.index == 1:
            return {"error": "ValueError: 12 'x' 3.5", "detail": "detail"}
        return {"rows": [{"option": "route", "completed": 1,
                          "note": "2 requests 'cut' at 0.5"}]}

    fake_points(monkeypatch, outcome)
    code, out, err = run_main(["sweep", str(write_sweep(tmp_path)), "--out",
                               str(tmp_path / "o")], capsys)
    assert code == 1
    assert after_the_bar(err) == ["note: point 0: 2 requests 'cut' at 0.5",
                                  "failed point 1 {'blocks': 16}: ValueError: 12 'x' 3.5"]


def test_without_out_the_results_go_to_out_sweep_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fake_points(monkeypatch, rows({"option": "route", "completed": 1}))
    write_sweep(tmp_path, 1)
    code, out, err = run_main(["sweep", "p.toml", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["results"] == "out/sweep-p/results.parquet"
    assert (tmp_path / "out" / "sweep-p" / "results.parquet").is_file()
    assert (summary["points"], summary["computed"], summary["rows"]) == (1, 1, 1)


def test_a_scheduler_address_runs_the_points_on_dask(tmp_path, monkeypatch, capsys):
    used = []

    def dask(tasks, sweep, workers, client):
        used.append(("dask", workers, client))
        for p in tasks:
            yield p, {"rows": [{"option": "route", "completed": 1}]}

    fake_points(monkeypatch, lambda p: used.append("local") or {"rows": []})
    monkeypatch.setattr(executor, "_iter_dask", dask)
    monkeypatch.setattr(executor, "_connect", lambda address: f"client of {address}")
    code, out, err = run_main(["sweep", str(write_sweep(tmp_path)), "--out",
                               str(tmp_path / "o"), "--scheduler", "tcp://x:1",
                               "--workers", "1", "--json"], capsys)
    assert code == 0, err
    assert used == [("dask", 1, "client of tcp://x:1")]
    assert json.loads(out)["computed"] == 2


@pytest.mark.parametrize(("argv", "cpus", "want"), [
    ([], 8, 6),  # the CPUs, but no more than the 6 points
    ([], 4, 4),
    ([], None, 1),  # CPU count unknown: one
    (["--backend", "dask"], 8, 2),  # a Dask LocalCluster: 2
    (["--workers", "3"], 8, 3),
])
def test_the_points_are_checked_for_the_workers_that_will_share_the_machine(
        tmp_path, monkeypatch, capsys, argv, cpus, want):
    import os

    from simulator.sweep import check

    shared_by = refuse_points(monkeypatch, check)
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    code, out, err = run_main(["sweep", str(write_sweep(tmp_path, 6)), "--out",
                               str(tmp_path / "o"), *argv], capsys)
    assert (code, out, err) == (2, "", "error: checked\n")
    assert shared_by == [want]
    assert not (tmp_path / "o").exists()


def test_the_points_are_checked_once(tmp_path, monkeypatch, capsys):
    # every point's inputs are loaded to check it (a scenario's trace, say): once, not again
    # when the sweep runs
    from simulator.sweep import check

    checks = []
    real = check.check_points

    def counted(sweep, parallel=1):
        checks.append(parallel)
        return real(sweep, parallel=parallel)

    monkeypatch.setattr(check, "check_points", counted)
    monkeypatch.setattr(executor, "check_points", counted)
    fake_points(monkeypatch, rows({"option": "route", "completed": 1}))
    code, _, err = run_main(["sweep", str(write_sweep(tmp_path)), "--out", str(tmp_path / "o"),
                             "--workers", "1", "--json"], capsys)
    assert code == 0, err
    assert checks == [1]


def test_ctrl_c_says_how_many_points_are_kept_and_exits_130(tmp_path, monkeypatch, capsys):
    def run(tasks, sweep, workers):
        yield tasks[0], {"rows": [{"option": "route", "completed": 1}]}
        raise KeyboardInterrupt

    monkeypatch.setattr(executor, "_iter_local", run)
    out_dir = tmp_path / "o"
    code, out, err = run_main(["sweep", str(write_sweep(tmp_path, 3)), "--out", str(out_dir)],
                              capsys)
    assert (code, out) == (130, "")
    assert err.splitlines()[-1] == (f"interrupted: 1 of 3 points finished and kept in "
                                    f"{out_dir}/points; run the same command again to resume")
    assert len(list((out_dir / "points").glob("*.parquet"))) == 1


def test_skip_bad_skips_a_trace_line_that_does_not_parse(tmp_path, monkeypatch, capsys):
    # a run sweep over a three-request trace with a fourth line that is not JSON: refused
    # without --skip-bad (the check names the line), run with it
    from simulator.sweep.points import run_point

    (tmp_path / "tiny.toml").write_text(SMALL.format(name="tiny", top="").replace(
        'trace = "tiny.parquet"', 'trace = "t.jsonl"'))
    line = '{"timestamp": %d, "input_length": 3000, "output_length": 4, "hash_ids": [%s]}\n'
    (tmp_path / "t.jsonl").write_text("".join(
        line % (i * 10, ", ".join(str(100 * i + b) for b in range(6))) for i in range(3))
        + "nope\n")
    (tmp_path / "s.toml").write_text('[sweep]\nname = "s"\nkind = "run"\nbase = "tiny.toml"\n'
                                     '[grid]\npolicy = ["route"]\n')

    def run(tasks, sweep, workers):
        for p in tasks:
            yield p, run_point(sweep.kind, sweep.base, sweep.base_dir, p, sweep.skip_bad)

    monkeypatch.setattr(executor, "_iter_local", run)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(["sweep", "s.toml", "--out", "o", "--json"], capsys)
    assert code == 2 and "t.jsonl:4" in err and "--skip-bad" in err
    code, out, err = run_main(["sweep", "s.toml", "--out", "o", "--json", "--skip-bad"],
                              capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["computed"], summary["failed"], summary["rows"]) == (1, 0, 1)


def test_a_damaged_finished_point_is_named_before_any_point_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    seen = fake_points(monkeypatch, rows({"option": "route", "completed": 1}))
    write_sweep(tmp_path, 2)
    assert run_main(["sweep", "p.toml", "--out", "o"], capsys)[0] == 0
    first, second = sorted((tmp_path / "o" / "points").iterdir())
    first.write_bytes(first.read_bytes()[:100])  # a copy cut short
    second.unlink()  # a point still to compute
    seen.clear()
    code, out, err = run_main(["sweep", "p.toml", "--out", "o"], capsys)
    assert (code, out, seen) == (2, "", [])
    assert err.startswith(f"error: {Path('o', 'points', first.name)}: a finished point's file "
                          "that is not readable Parquet (")
    assert err.endswith("delete it to compute that point again\n") and err.count("\n") == 1
