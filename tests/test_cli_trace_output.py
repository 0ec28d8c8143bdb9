"""What ``kvfabric trace`` prints, line by line, on traces small enough to count by hand."""

from __future__ import annotations

import dataclasses

import click
import pytest
from click.testing import CliRunner
from clitools import run_args as run

from simulator.cli.trace import _params_options
from workloads.schema import read_trace
from workloads.selections import read_selections

#: Three Mooncake requests (times in ms, 512-token blocks) and one line that does not parse.
#: Block refs 2 + 3 + 2 = 7 over 4 distinct blocks; references to a block an earlier request
#: used: B's 0 and 1, C's 0 (3 of 7); prefix hits: B's [0, 1] only (C starts with the new
#: block 3): 2 of 7; without spans a position-independent hit is a prefix hit.
LINES = (
    '{"timestamp": 0, "input_length": 1000, "output_length": 10, "hash_ids": [0, 1]}',
    '{"timestamp": 1000, "input_length": 1500, "output_length": 20, "hash_ids": [0, 1, 2]}',
    '{"timestamp": 2500, "input_length": 600, "output_length": 30, "hash_ids": [3, 0]}',
    "not json",
)


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    return path


def test_stats_print_every_line_of_a_trace_counted_by_hand(capsys, small):
    code, out, err = run(capsys, "trace", "stats", str(small), "--skip-bad")
    assert (code, err) == (0, "")
    # input lengths 600, 1000, 1500: p99 interpolates 1000 + 0.98 * 500; outputs 10, 20, 30
    assert out.splitlines() == [
        str(small),
        "  requests             3 over 2.5 s",
        "  block refs           7 (512 tokens per block)",
        "  distinct blocks      4",
        "  reuse fraction       42.9%",
        "  prefix-cache hits    28.6%",
        "  span (pos.-indep.)   28.6%",
        "  input_tokens         mean 1,033.3  p50 1,000.0  p99 1,490.0",
        "  output_tokens        mean 20.0  p50 20.0  p99 29.8",
        "  skipped bad lines    1",
    ]


@pytest.mark.parametrize(("gap", "span"), [(500, "1.0 s"), (625, "1.2 s")])
def test_stats_give_a_span_of_a_second_or_more_to_one_decimal(capsys, tmp_path, gap, span):
    # a span from 1 s up is printed "x.y s" (fmt_time would write "1 s" and "1.25 s")
    lines = [f'{{"timestamp": {i * gap}, "input_length": 10, "output_length": 2, '
             f'"hash_ids": [{i}]}}' for i in range(3)]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    code, out, _ = run(capsys, "trace", "stats", str(tmp_path / "t.jsonl"))
    assert code == 0 and f"  requests             3 over {span}\n" in out


@pytest.mark.parametrize(("text", "skip", "tail"), [
    ("", False, "holds no requests; nothing to summarize"),
    ("junk\nmore junk\n", True, "holds no requests (2 bad lines skipped); nothing to summarize"),
])
def test_stats_of_a_trace_without_requests_say_so_in_one_line(capsys, tmp_path, text, skip,
                                                              tail):
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    code, out, err = run(capsys, "trace", "stats", str(path), *(["--skip-bad"] if skip else []))
    assert (code, out) == (2, "")
    assert err.strip().endswith(f"{path}: {tail}") and len(err.strip().splitlines()) == 1


def test_convert_says_how_many_requests_it_wrote_and_lines_it_skipped(capsys, small, tmp_path):
    target = tmp_path / "small.parquet"
    code, out, _ = run(capsys, "trace", "convert", str(small), "--skip-bad", "-o", str(target))
    assert (code, out) == (0, f"wrote 3 requests to {target} (1 bad lines skipped)\n")
    assert read_trace(target)["input_tokens"].tolist() == [1000, 1500, 600]
    small.write_text("\n".join(LINES[:3]) + "\n")
    code, out, _ = run(capsys, "trace", "convert", str(small), "-o", str(target))
    assert (code, out) == (0, f"wrote 3 requests to {target}\n")


def test_a_session_parameter_given_as_a_whole_float_is_taken(capsys, tmp_path):
    trace = tmp_path / "s.parquet"
    code, _, err = run(capsys, "trace", "gen", "agentic", "--preset", "copilot_2026",
                       "--param", "sessions=2.0", "-o", str(trace))
    assert code == 0, err
    assert read_trace(trace)["session_id"].nunique() == 2


@pytest.mark.parametrize(("pair", "message"), [
    ("sessions=2.5", "--param sessions=2.5: '2.5' is not a valid sessions (an int)"),
    ("turns_mean=inf", "--param turns_mean=inf: 'inf' is not a valid turns_mean (a finite float)"),
])
def test_a_bad_session_parameter_names_its_type(capsys, tmp_path, pair, message):
    code, out, err = run(capsys, "trace", "gen", "agentic", "--preset", "copilot_2026",
                         "--param", pair, "-o", str(tmp_path / "s.parquet"))
    assert (code, out) == (2, "") and message in err
    assert list(tmp_path.iterdir()) == []


def test_selections_of_an_azure_trace_at_the_default_block(capsys, tmp_path):
    # Azure traces have no blocks: they are cut into 512-token ones, which 64 divides
    sel = tmp_path / "sel.parquet"
    code, out, err = run(capsys, "trace", "gen", "selections", "azure_llm_2023_code",
                         "--layers", "2", "--steps", "1", "--max-requests", "3", "-o", str(sel))
    assert code == 0, err
    assert out == f"wrote 6 selections (3 requests × ≤1 steps × 2 layers) to {sel}\n"
    from workloads.loaders import load

    picked = read_selections(sel, load("azure_llm_2023_code", block_tokens=512))
    assert len(picked) == 6 and picked["request_id"].nunique() == 3


def test_params_options_make_one_typed_option_per_field():
    @dataclasses.dataclass
    class Params:
        n_repos: int = 3
        rate: float = 0.5
        warm: bool = True

    @click.command()
    @_params_options(Params)
    def cmd(**values):
        click.echo(repr(sorted(values.items())))

    opts = {p.name: p for p in cmd.params}
    assert list(opts) == ["n_repos", "rate", "warm"]
    assert opts["n_repos"].opts == ["--n-repos"] and opts["n_repos"].type is click.INT
    assert opts["rate"].type is click.FLOAT
    assert opts["warm"].opts == ["--warm"] and opts["warm"].secondary_opts == ["--no-warm"]
    result = CliRunner().invoke(cmd, ["--n-repos", "4", "--no-warm"])
    assert result.output == "[('n_repos', 4), ('rate', None), ('warm', False)]\n"
