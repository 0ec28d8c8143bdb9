"""`kvfabric run`: a small scenario end to end (table, JSON, Parquet, PNG), the embedded
default, and clean errors without tracebacks or half-written files."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from clitools import SMALL, after_the_bar, colour_terminal, run_main

from simulator.cli import main
from workloads.schema import make_trace, write_trace

SCENARIO = SMALL.format(name="tiny", top='stack = "ibgda"\npolicies = ["route", "fetch"]')


@pytest.fixture
def tiny(tmp_path):
    trace = make_trace(arrival_at=[0.0, 0.01, 0.02], input_tokens=[3000, 3500, 4000],
                       output_tokens=[6, 8, 4], block_ids=[list(range(47)), list(range(55)),
                                                           list(range(63))], block_tokens=64)
    write_trace(trace, tmp_path / "tiny.parquet")
    path = tmp_path / "tiny.toml"
    path.write_text(SCENARIO)
    return path


def call(argv, capsys):
    return run_main(argv, capsys)


def test_run_prints_the_design_json_keys_and_writes_records_and_plots(tiny, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, out, _ = call(["run", str(tiny), "--policy", "route,fetch,colocated", "--json",
                         "--out", str(out_dir)], capsys)
    assert code == 0
    data = json.loads(out)
    assert list(data["policies"]) == ["route", "fetch", "colocated"]
    keys = {"requests", "completed", "ttft_p50", "ttft_p99", "tbt_p50", "tbt_p99",
            "throughput_tokens_per_s", "bytes_moved", "closed_form_error_p50",
            "closed_form_error_p99", "wall_time", "events", "engine",
            "bytes_by_class", "decode_tokens_per_s_per_gpu"}  # issue 16: traffic by class
    for summary in data["policies"].values():
        assert set(summary) == keys
        assert summary["requests"] == 3 and summary["completed"] == 3
    assert data["policies"]["colocated"]["bytes_moved"] == 0
    assert data["policies"]["route"]["bytes_moved"] > 0
    assert data["policies"]["colocated"]["bytes_by_class"] == {}
    assert set(data["policies"]["route"]["bytes_by_class"]) == {"kv_route"}
    assert set(data["policies"]["fetch"]["bytes_by_class"]) <= {"kv_fetch"}
    for name in ("requests", "rounds", "iterations", "gpus", "links", "link_timeline"):
        df = pd.read_parquet(out_dir / f"{name}.parquet")
        assert "policy" in df.columns
    req = pd.read_parquet(out_dir / "requests.parquet")
    assert sorted(req["policy"].unique()) == ["colocated", "fetch", "route"]
    for png in ("latency_cdf", "phase_breakdown", "link_utilization", "closed_form_scatter"):
        assert (out_dir / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["scenario"] == "tiny"
    assert not list(out_dir.glob(".*.tmp"))


def test_run_prints_a_comparison_table(tiny, tmp_path, capsys):
    code, out, err = call(["run", str(tiny), "--no-write"], capsys)
    assert code == 0
    assert "route" in out and "fetch" in out and "TTFT" in out
    assert "cf err: |simulated − closed form| / closed form per round" in " ".join(out.split())
    assert "requests" in err  # the progress bars
    route = next(line for line in out.splitlines() if line.startswith("│ route"))
    # route's rounds have a closed-form error: a percentage in both cf err cells
    assert all(re.fullmatch(r" +[\d.]+% ", c) for c in route.strip("│").split("│")[8:10])
    code, out, err = call(["run", str(tiny), "--policy", "route,colocated", "--no-write"], capsys)
    assert code == 0  # a policy's note, on stderr under its name
    assert "note: colocated: no rounds: no KV crossed between GPUs" in err and "note:" not in out


def test_a_run_cut_at_a_duration_shows_simulated_seconds_reached(tiny, capsys):
    """Few requests of a run cut at a duration finish: its bars count simulated time."""
    tiny.write_text(SCENARIO + "duration = 0.2\n")
    code, out, err = call(["run", str(tiny), "--no-write", "--jobs", "1"], capsys)
    assert code == 0, err
    assert err.count("0.2/0.2 simulated s") == 2  # one bar per policy, at the end
    assert not re.search(r"\d+/\d+ requests", err)
    assert "route" in out and "fetch" in out


def test_the_embedded_default_scenario_runs(capsys):
    code, out, _ = call(["run", "--policy", "colocated", "--no-write", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["scenario"] == "agentic_cluster"
    summary = data["policies"]["colocated"]
    assert summary["completed"] == summary["requests"] >= 1000
    assert summary["engine"] == "fast"


def test_policies_run_at_once_give_the_records_of_one_after_another(tiny, tmp_path, capsys):
    runs = {}
    for jobs in ("1", "2"):
        out_dir = tmp_path / f"jobs{jobs}"
        code, out, err = call(["run", str(tiny), "--jobs", jobs, "--json", "--out",
                               str(out_dir)], capsys)
        assert code == 0, err
        runs[jobs] = (json.loads(out), out_dir)
    (one, one_dir), (two, two_dir) = runs["1"], runs["2"]
    assert list(two["policies"]) == list(one["policies"]) == ["route", "fetch"]
    for policy, summary in one["policies"].items():
        other = two["policies"][policy]
        assert {k: v for k, v in other.items() if k != "wall_time"} == {
            k: v for k, v in summary.items() if k != "wall_time"}
    for table in ("requests", "rounds", "iterations", "links"):
        pd.testing.assert_frame_equal(pd.read_parquet(two_dir / f"{table}.parquet"),
                                      pd.read_parquet(one_dir / f"{table}.parquet"))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--policy", "teleport"], "unknown policy 'teleport'"),
        (["--seed", "-3"], "--seed"),
        (["--jobs", "0"], "--jobs 0"),
    ],
)
def test_bad_options_end_in_one_clean_line(tiny, tmp_path, capsys, args, needle):
    code, out, err = call(["run", str(tiny), "--out", str(tmp_path / "o"), *args], capsys)
    assert code == 2 and needle in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_a_bad_scenario_names_file_and_field(tmp_path, tiny, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(SCENARIO.replace("max_batch = 4", "max_batch = 0"))
    code, _, err = call(["run", str(bad), "--no-write"], capsys)
    assert code == 2 and "bad.toml" in err and "engine.max_batch" in err
    code, _, err = call(["run", str(tmp_path / "missing.toml")], capsys)
    assert code == 2 and "missing.toml" in err


def test_a_lamina_scenario_compares_both_deployments_at_equal_cost(tmp_path, capsys):
    from pathlib import Path

    text = (Path(__file__).parent.parent / "scenarios" / "lamina_llama_33b.toml").read_text()
    scenario = tmp_path / "lamina.toml"
    text = text.replace("max_requests = 2000", "max_requests = 200")
    scenario.write_text(text.replace("concurrency = 1024", "concurrency = 32"))
    assert "concurrency = 32" in scenario.read_text()
    main(["run", str(scenario), "--no-write", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert set(payload["policies"]) == {"disaggregated", "homogeneous"}
    for summary in payload["policies"].values():
        assert {"mean_batch", "tokens_per_s_per_dollar_hour", "tbt_p50", "tbt_p99",
                "throughput_tokens_per_s"} <= set(summary)
    d, h = payload["policies"]["disaggregated"], payload["policies"]["homogeneous"]
    assert payload["ratio"]["tokens_per_s_per_dollar_hour"] == pytest.approx(
        d["tokens_per_s_per_dollar_hour"] / h["tokens_per_s_per_dollar_hour"])
    main(["run", str(scenario), "--no-write"])
    out = capsys.readouterr().out
    assert "tok/s per $/h" in out and "ratio (disaggregated/homogeneous)" in out


def test_a_shipped_scenario_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    from pathlib import Path

    from simulator.cli.run import resolve_scenario
    from simulator.runner import check
    from simulator.scenario import Scenario

    shipped = Path(__file__).resolve().parent.parent / "scenarios"
    monkeypatch.chdir(tmp_path)
    for arg in ("lamina_llama3_70b", "lamina_llama3_70b.toml"):
        assert resolve_scenario(arg) == shipped / "lamina_llama3_70b.toml"
    check(Scenario.load(resolve_scenario("mooncake_conversation")))  # its trace, by name too
    (tmp_path / "lamina_llama3_70b.toml").write_text("# mine")
    assert resolve_scenario("lamina_llama3_70b.toml") == Path("lamina_llama3_70b.toml")


def test_a_bare_name_is_the_toml_file_in_this_folder_before_a_shipped_one(tmp_path, monkeypatch,
                                                                           capsys):
    from pathlib import Path

    from clitools import small_scenario

    from simulator.cli.run import resolve_scenario
    from simulator.errors import UserError
    from simulator.scenario import find

    shipped = Path(__file__).resolve().parent.parent / "scenarios"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myscen.toml").write_text("# mine")
    assert resolve_scenario("myscen") == Path("myscen.toml")  # as myscen.toml would be
    (tmp_path / "lamina_llama3_70b.toml").write_text("# mine")  # a name a shipped one has too
    assert resolve_scenario("lamina_llama3_70b") == Path("lamina_llama3_70b.toml")
    assert resolve_scenario("agentic_repo") == shipped / "agentic_repo.toml"  # none here
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "s.toml").write_text("# mine")
    assert find("sub/s") == Path("sub/s.toml")
    with pytest.raises(UserError) as err:  # neither here nor shipped: the shipped names listed
        resolve_scenario("nosuch")
    assert str(err.value).startswith("nosuch: scenario file not found; pass a scenario .toml "
                                     "file or a shipped name (agentic_cluster, agentic_repo, ")
    small_scenario(tmp_path, name="mine")  # a whole run by bare name, from this folder
    code, out, err = call(["run", "tiny", "--policy", "route", "--no-write", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["scenario"] == "mine"


def test_a_run_of_one_token_requests_writes_its_results(tmp_path, capsys):
    """No request has a second token, so there is no TBT to plot: the latency plot draws TTFT
    on an empty log axis instead of failing after the run (a log axis cannot start at 0)."""
    write_trace(make_trace(arrival_at=[0.0, 0.01], input_tokens=[3000, 3500],
                           output_tokens=[1, 1], block_ids=[list(range(47)), list(range(55))],
                           block_tokens=64), tmp_path / "tiny.parquet")
    (tmp_path / "tiny.toml").write_text(SCENARIO)
    out_dir = tmp_path / "out"
    code, out, err = call(["run", str(tmp_path / "tiny.toml"), "--json", "--out", str(out_dir)],
                          capsys)
    assert code == 0, err
    data = json.loads(out)
    for summary in data["policies"].values():
        assert summary["completed"] == 2 and summary["tbt_p50"] is None
    assert (out_dir / "latency_cdf.png").is_file() and (out_dir / "summary.json").is_file()


def test_run_tells_how_many_files_it_wrote_and_where(tiny, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, _, err = call(["run", str(tiny), "--out", str(out_dir)], capsys)
    assert code == 0
    files = [p for p in out_dir.iterdir() if p.is_file()]
    assert f"wrote {len(files)} files to {out_dir}/" in err.replace("\n", "")


def test_a_policy_the_fast_engine_cannot_run_is_named_with_why_on_one_plain_line(
        tiny, monkeypatch, capsys):
    from simulator.engine.fast import unsupported
    from simulator.policies import get

    why = unsupported(get("adaptive_live"))
    colour_terminal(monkeypatch)
    code, _, err = call(["run", str(tiny), "--policy", "fetch,adaptive_live", "--engine", "fast",
                         "--no-write"], capsys)
    assert code == 0
    line = f"adaptive_live: ran on the exact engine ({why})"
    assert len(line) > 80 and line in after_the_bar(err)  # unwrapped, uncoloured
    assert not any(x.startswith("fetch: ran on") for x in after_the_bar(err))


def test_plots_a_run_cannot_draw_are_named_with_why_on_one_plain_line(tiny, tmp_path,
                                                                       monkeypatch, capsys):
    # colocated reads every block at home: no rounds and no link traffic to draw
    colour_terminal(monkeypatch)
    out_dir = tmp_path / "a-folder-with-a-long-enough-name-to-need-more-than-eighty-columns"
    code, _, err = call(["run", str(tiny), "--policy", "colocated", "--out", str(out_dir)],
                        capsys)
    assert code == 0
    notes = [x for x in after_the_bar(err) if x.startswith("note: ")]
    assert notes == ["note: colocated: no rounds: no KV crossed between GPUs (the policy never "
                     "routes or fetches, or every block a query needed was local), so the "
                     "closed-form error is empty"]  # one line, uncoloured
    lines = [x for x in after_the_bar(err) if not x.startswith("note: ")]
    rounds = "no rounds recorded (colocated exchanged no per-round KV)"
    assert lines[:3] == [f"skipped phase_breakdown.png: {rounds}",
                         "skipped link_utilization.png: no link carried traffic",
                         f"skipped closed_form_scatter.png: {rounds}"]
    files = [p for p in out_dir.iterdir() if p.is_file()]
    assert lines[3:] == [f"wrote {len(files)} files to {out_dir}/"]
    assert sorted(p.name for p in files if p.suffix == ".png") == ["latency_cdf.png"]


def test_the_comparison_table_aligns_its_cells_and_dashes_what_a_run_lacks(tmp_path, capsys):
    # one-token requests: no TBT, shown as a dash; names left, figures right
    write_trace(make_trace(arrival_at=[0.0, 0.01], input_tokens=[3000, 3500],
                           output_tokens=[1, 1], block_ids=[list(range(47)), list(range(55))],
                           block_tokens=64), tmp_path / "tiny.parquet")
    (tmp_path / "tiny.toml").write_text(SCENARIO)
    code, out, _ = call(["run", str(tmp_path / "tiny.toml"), "--policy", "fetch", "--no-write"],
                        capsys)
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("│ fetch"))
    cells = row.strip("│").split("│")
    assert cells[0] == " fetch  "  # "policy" is wider: the name on the left
    assert cells[1] == "  2/2 "  # "done" is wider: the count on the right
    assert [c.strip() for c in cells[4:6]] == ["—", "—"]  # TBT p50, p99
    assert all(re.fullmatch(r" +[\d.]+ (ms|s) ", c) for c in cells[2:4]), cells  # TTFT p50, p99
    assert [c.strip() for c in cells[8:10]] == ["—", "—"]  # no round: no closed-form error


def test_skip_bad_says_how_many_trace_lines_it_skipped(tmp_path, capsys):
    line = '{"timestamp": 0, "input_length": 3000, "output_length": 4, "hash_ids": [%s]}\n'
    (tmp_path / "t.jsonl").write_text(line % "0, 1, 2, 3, 4, 5" + "not json\n" + "[1]\n")
    (tmp_path / "tiny.toml").write_text(SCENARIO.replace("tiny.parquet", "t.jsonl"))
    code, _, err = call(["run", str(tmp_path / "tiny.toml"), "--policy", "route", "--no-write",
                         "--jobs", "1", "--skip-bad"], capsys)
    assert code == 0
    trace = tmp_path / "t.jsonl"
    assert f"note: --skip-bad skipped 2 trace lines that do not parse ({trace})" in err
