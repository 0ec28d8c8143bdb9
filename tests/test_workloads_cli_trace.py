"""``kvfabric trace``: stats, convert, gen agentic / rag / selections, and clean errors."""

import json

import pytest

from simulator.cli import main
from workloads.schema import read_trace
from workloads.selections import read_selections

REQUIRED = {"requests", "block_refs", "distinct_blocks", "reuse_fraction", "prefix_hit_fraction",
            "input_tokens", "output_tokens"}


def run(capsys, *args):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_stats_json_of_a_shipped_trace_has_the_design_keys(capsys):
    code, out, _ = run(capsys, "trace", "stats", "mooncake_conversation", "--json")
    s = json.loads(out)
    assert code == 0 and set(s) >= REQUIRED
    assert (s["requests"], s["block_refs"], s["distinct_blocks"]) == (12_031, 288_500, 182_790)
    assert round(s["reuse_fraction"], 3) == 0.366
    assert set(s["input_tokens"]) == {"mean", "p50", "p99"} == set(s["output_tokens"])


def test_stats_text_of_an_azure_file(capsys):
    from workloads.loaders import shipped

    code, out, _ = run(capsys, "trace", "stats", str(shipped("azure_llm_2023_code")))
    assert code == 0 and "8,819" in out and "mean 2,047.8" in out


@pytest.mark.parametrize(("gap", "span"), [(5, "10 ms"), (600, "1.2 s"), (20_000, "40.0 s")])
def test_stats_give_a_short_traces_span_in_its_unit(capsys, tmp_path, gap, span):
    lines = [f'{{"timestamp": {i * gap}, "input_length": 10, "output_length": 2, '
             f'"hash_ids": [{i}]}}' for i in range(3)]  # Mooncake times are in ms
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    code, out, _ = run(capsys, "trace", "stats", str(tmp_path / "t.jsonl"))
    assert code == 0 and f"3 over {span}\n" in out


def test_generate_agentic_then_stats_then_selections(capsys, tmp_path):
    trace = tmp_path / "fleet.parquet"
    args = ["trace", "gen", "agentic", "--duration-time", "40", "--task-rate", "0.1",
            "--subagents", "2", "--n-repos", "1", "--repo-tokens", "8192",
            "--repo-size-sigma", "0", "--repo-min-tokens", "1", "--seed", "3", "-o", str(trace)]
    code, out, _ = run(capsys, *args)
    assert code == 0 and "agentic requests" in out
    first = trace.read_bytes()
    assert run(capsys, *args)[0] == 0 and trace.read_bytes() == first  # same seed, same bytes
    df = read_trace(trace)
    code, out, _ = run(capsys, "trace", "stats", str(trace), "--json")
    assert json.loads(out)["requests"] == len(df)
    sel = tmp_path / "sel.parquet"
    code, out, _ = run(capsys, "trace", "gen", "selections", str(trace), "--layers", "3",
                       "--steps", "2", "--max-requests", "5", "-o", str(sel))
    assert code == 0, out
    picked = read_selections(sel, df)
    assert picked["layer"].max() == 2 and picked["request_id"].nunique() == 5


def test_convert_and_rag(capsys, tmp_path):
    out_file = tmp_path / "syn.parquet"
    assert run(capsys, "trace", "convert", "mooncake_synthetic", "-o", str(out_file))[0] == 0
    assert len(read_trace(out_file)) == 3_993
    rag = tmp_path / "rag.parquet"
    code, out, _ = run(capsys, "trace", "gen", "rag", "--duration-time", "20", "-o", str(rag))
    assert code == 0 and "span hits" in out and rag.exists()


def test_a_bad_line_is_named_and_skip_bad_counts_it(capsys, tmp_path):
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [0]}\n'
                   "garbage\n")
    code, out, err = run(capsys, "trace", "stats", str(bad))
    assert code == 2 and f"{bad}:2:" in err and "Traceback" not in err
    code, out, err = run(capsys, "trace", "stats", str(bad), "--skip-bad", "--json")
    assert code == 0 and json.loads(out)["skipped_lines"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trace", "gen", "agentic", "--subagents", "0", "-o", "{tmp}/a.parquet"],
         "--subagents must be > 0"),
        (["trace", "gen", "agentic", "-o", "{tmp}/missing/a.parquet"], "does not exist"),
        (["trace", "gen", "agentic", "-o", "{tmp}/a.csv"], "ending in .parquet"),
        (["trace", "stats", "{tmp}/nothing.jsonl"], "no such file"),
        (["trace", "stats", "pyproject.toml"], "unknown trace format"),
        (["trace", "gen", "selections", "azure_llm_2023_code", "--block-tokens", "48", "-o",
          "{tmp}/s.parquet"], "does not divide"),
    ],
)
def test_user_errors_exit_2_and_write_nothing(capsys, tmp_path, args, message):
    code, _, err = run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2 and message in err
    assert list(tmp_path.iterdir()) == []


AGENTIC = {"sessions", "turns_per_session", "calls_per_turn", "tool_calls_per_turn",
           "prompt_tokens_per_call", "completion_tokens_per_call", "cached_prompt_fraction",
           "span_hit_fraction"}


def test_generate_the_copilot_preset_then_its_agentic_stats(capsys, tmp_path):
    trace = tmp_path / "copilot.parquet"
    code, out, _ = run(capsys, "trace", "gen", "agentic", "--preset", "copilot_2026",
                       "--param", "sessions=4", "--param", "block_tokens=256", "-o", str(trace))
    assert code == 0 and "copilot_2026 requests" in out
    code, out, _ = run(capsys, "trace", "stats", str(trace), "--json")
    s = json.loads(out)
    assert code == 0 and set(s) >= REQUIRED | AGENTIC
    df = read_trace(trace)
    assert s["sessions"] == 4 == df["session_id"].nunique()
    turns = df.groupby(["session_id", "turn_id"]).ngroups
    assert s["calls_per_turn"] == pytest.approx(len(df) / turns)
    assert s["tool_calls_per_turn"] == pytest.approx(df["tool_calls"].sum() / turns)
    code, out, _ = run(capsys, "trace", "stats", str(trace))
    assert code == 0 and "turns each" in out and "cached prompt" in out


def test_stats_of_a_trace_without_turns_leave_the_turn_keys_empty(capsys):
    code, out, _ = run(capsys, "trace", "stats", "mooncake_synthetic", "--json")
    s = json.loads(out)
    assert s["turns_per_session"] is None and s["calls_per_turn"] is None
    assert 0 < s["cached_prompt_fraction"] < 1 and s["sessions"] == s["requests"]


@pytest.mark.parametrize(("args", "message"), [
    (["--preset", "copilot_1999"], "copilot_1999"),
    (["--preset", "copilot_2026", "--param", "sessions"], "KEY=VALUE"),
    (["--preset", "copilot_2026", "--param", "sessions=many"], "not a valid sessions"),
    (["--preset", "copilot_2026", "--subagents", "3"], "--subagents applies to the fleet"),
    (["--param", "sessions=3"], "needs --preset"),
])
def test_bad_preset_options_end_in_one_line(capsys, tmp_path, args, message):
    code, _, err = run(capsys, "trace", "gen", "agentic", *args, "-o",
                       str(tmp_path / "x.parquet"))
    assert code == 2 and message in err and "Traceback" not in err


def test_generate_nested_at_temperature_zero(capsys, tmp_path):
    trace = tmp_path / "nested.parquet"
    code, out, _ = run(capsys, "trace", "gen", "nested", "--candidates", "3", "--temperature",
                       "0", "--no-reuse-generated", "-o", str(trace))
    assert code == 0 and "nested requests" in out
    df = read_trace(trace)
    judge = df[df["spans"].map(len) > 0].iloc[0]
    sp = judge["spans"]
    assert len({tuple(judge["block_ids"][a:b]) for a, b in zip(sp[0::2], sp[1::2],
                                                                strict=True)}) == 1
