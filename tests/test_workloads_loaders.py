"""Loaders: every shipped trace loads and matches its README; bad lines are named or skipped."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tracetools import write_lines

import workloads
from simulator.errors import UserError
from workloads.loaders import DATA_DIR, SHIPPED, load_azure, load_mooncake, trace_format
from workloads.stats import trace_stats

# Figures from each trace's README (workloads/data/<name>/README.md, "Summary stats").
README = {
    "mooncake_conversation": dict(requests=12_031, block_refs=288_500, distinct=182_790,
                                  reuse=0.366, in_mean=12_035, in_p50=6_909, out_mean=342.6,
                                  span=3_536.999),
    "mooncake_synthetic": dict(requests=3_993, block_refs=121_877, distinct=43_924, reuse=0.640,
                               in_mean=15_325, in_p50=11_587, out_mean=149.1, span=1_022.025),
    "azure_llm_2023_code": dict(requests=8_819, in_mean=2_047.8, in_p50=1_469, out_mean=27.9,
                                span=3_435.9),
    "azure_llm_2023_conv": dict(requests=19_366, in_mean=1_154.7, in_p50=1_020, out_mean=211.1,
                                span=3_501.7),
}


@pytest.fixture(scope="module")
def shipped_traces():
    return {name: workloads.load(name) for name in SHIPPED}


def test_every_shipped_trace_has_its_readme_and_license():
    for name in SHIPPED:
        folder = DATA_DIR / name
        assert workloads.shipped(name).exists()
        assert "Source repo" in (folder / "README.md").read_text()
        lic = (folder / "LICENSE").read_text()
        assert ("Apache" in lic) if name.startswith("mooncake") else ("CC-BY 4.0" in lic
                                                                      and "Splitwise" in lic)


@pytest.mark.parametrize("name", sorted(README))
def test_shipped_traces_match_their_readme(shipped_traces, name):
    df, want = shipped_traces[name], README[name]
    s = trace_stats(df)
    assert s["requests"] == want["requests"]
    assert df.attrs["skipped_lines"] == 0
    assert s["input_tokens"]["mean"] == pytest.approx(want["in_mean"], abs=0.5)
    assert s["input_tokens"]["p50"] == want["in_p50"]
    assert s["output_tokens"]["mean"] == pytest.approx(want["out_mean"], abs=0.05)
    assert s["duration"] == pytest.approx(want["span"], abs=0.05)
    if "block_refs" in want:
        assert s["block_refs"] == want["block_refs"]
        assert s["distinct_blocks"] == want["distinct"]
        assert s["reuse_fraction"] == pytest.approx(want["reuse"], abs=0.0005)
        assert s["prefix_hit_fraction"] == pytest.approx(want["reuse"], abs=0.0005)
        assert (df["block_tokens"] == 512).all()
        assert all(b[0] == 0 for b in df["block_ids"]) == (name == "mooncake_conversation")
    else:  # Azure: synthesized, unshared blocks
        assert s["reuse_fraction"] == 0.0 and s["distinct_blocks"] == s["block_refs"]


def test_mooncake_known_first_record(shipped_traces):
    df = shipped_traces["mooncake_conversation"]
    first = df.iloc[0]
    assert (first["arrival_at"], first["input_tokens"], first["output_tokens"]) == (0.0, 6758, 500)
    assert first["block_ids"].tolist() == list(range(14))
    assert (df["session_id"] == df["request_id"]).all()


def test_azure_known_first_record(shipped_traces):
    df = shipped_traces["azure_llm_2023_code"]
    assert df["input_tokens"].iloc[:3].tolist() == [4808, 3180, 110]
    assert df["arrival_at"].iloc[1] == pytest.approx(0.052, abs=1e-9)  # 04.0319600 - 03.9799600


GOOD = '{"timestamp": 0, "input_length": 600, "output_length": 3, "hash_ids": [0, 1]}'


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"timestamp": 1, "input_length": 600, "output_length": 3}', "missing field 'hash_ids'"),
        ('{"timestamp": 1, "input_length": 600, "output_length": 3, "hash_ids": [0]}',
         "'hash_ids' has 1 ids but input_length 600 needs 2"),
        ('{"timestamp": 1, "input_length": 0, "output_length": 3, "hash_ids": []}',
         "'input_length' 0 is not a positive integer"),
        ('{"timestamp": -5, "input_length": 6, "output_length": 3, "hash_ids": [1]}',
         "'timestamp' -5"),
        ('{"timestamp": 1, "input_length": 6, "output_length": 3, "hash_ids": [1.5]}',
         "'hash_ids' is not a list of non-negative integers"),
    ],
)
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_bad_mooncake_line_is_named_or_skipped(tmp_path, line, problem, suffix):
    path = write_lines(tmp_path / f"t{suffix}", [GOOD, GOOD, line, GOOD])
    with pytest.raises(UserError) as exc:
        load_mooncake(path)
    assert f"{path}:3: " in str(exc.value) and problem in str(exc.value)
    assert "--skip-bad" in str(exc.value)
    df = workloads.load(path, skip_bad=True)
    assert len(df) == 3 and df.attrs["skipped_lines"] == 1


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("yesterday,10,3", "TIMESTAMP 'yesterday'"),
        ("now,10,3", "TIMESTAMP 'now'"),
        ("2023-11-16 18:17:04.0,ten,3", "ContextTokens 'ten'"),
        ("2023-11-16 18:17:04.0,10,0", "GeneratedTokens 0 is not positive"),
        ("2023-11-16 18:17:04.0,10", "2 fields"),
    ],
)
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_bad_azure_line_is_named_or_skipped(tmp_path, line, problem, suffix):
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens", "2023-11-16 18:17:03.9799600,4808,10",
            line, "2023-11-16 18:17:05.0000000,100,7"]
    path = write_lines(tmp_path / f"t{suffix}", rows)
    with pytest.raises(UserError) as exc:
        load_azure(path)
    assert f"{path}:3: " in str(exc.value) and problem in str(exc.value)
    df = workloads.load(path, skip_bad=True)
    assert df["input_tokens"].tolist() == [4808, 100]
    assert df.attrs["skipped_lines"] == 1
    assert df["arrival_at"].tolist() == pytest.approx([0.0, 1.02004])


def test_azure_blocks_are_synthesized_without_sharing(tmp_path):
    path = write_lines(tmp_path / "t.csv", ["TIMESTAMP,ContextTokens,GeneratedTokens",
                                            "2023-11-16 18:00:00.0,100,1",
                                            "2023-11-16 18:00:01.0,129,1"])
    df = load_azure(path, block_tokens=64)
    assert [b.tolist() for b in df["block_ids"]] == [[0, 1], [2, 3, 4]]


def test_formats_are_told_by_extension_and_unknown_ones_rejected(tmp_path):
    assert trace_format("a.jsonl.gz") == "mooncake"
    assert trace_format("a.CSV") == "azure"
    assert trace_format("a.parquet") == "parquet"
    with pytest.raises(UserError, match="unknown trace format"):
        trace_format("a.txt")
    with pytest.raises(UserError, match="unknown shipped trace"):
        workloads.shipped("nope")
    with pytest.raises(UserError, match="no such file"):
        workloads.load(tmp_path / "missing.jsonl")


records = st.lists(
    st.tuples(st.integers(0, 5_000), st.integers(1, 3_000), st.integers(1, 500)),
    min_size=1, max_size=15,
)


@given(records)
def test_mooncake_round_trip(tmp_path_factory, recs):
    recs = sorted(recs)
    lines, next_id = [], 0
    for ts, inp, out in recs:
        n = -(-inp // 512)
        lines.append(json.dumps({"timestamp": ts, "input_length": inp, "output_length": out,
                                 "hash_ids": [0] + list(range(next_id + 1, next_id + n))}))
        next_id += n
    path = write_lines(tmp_path_factory.mktemp("m") / "t.jsonl.gz", lines)
    df = workloads.load(path)
    assert df["arrival_at"].tolist() == [ts / 1000 for ts, _, _ in recs]
    assert df["input_tokens"].tolist() == [r[1] for r in recs]
    assert df["output_tokens"].tolist() == [r[2] for r in recs]
    assert [json.loads(x)["hash_ids"] for x in lines] == [b.tolist() for b in df["block_ids"]]


@given(records)
def test_azure_round_trip(tmp_path_factory, recs):
    recs = sorted(recs)
    t0 = pd.Timestamp("2023-11-16 18:00:00")
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"] + [
        f"{(t0 + pd.Timedelta(milliseconds=ts)).strftime('%Y-%m-%d %H:%M:%S.%f')}0,{i},{o}"
        for ts, i, o in recs]
    df = workloads.load(write_lines(tmp_path_factory.mktemp("a") / "t.csv", rows))
    first = recs[0][0]
    assert np.allclose(df["arrival_at"], [(ts - first) / 1000 for ts, _, _ in recs])
    assert df["input_tokens"].tolist() == [r[1] for r in recs]
    assert df["output_tokens"].tolist() == [r[2] for r in recs]


def test_a_parquet_trace_arriving_past_the_bound_is_refused(tmp_path):
    from workloads.schema import make_trace, write_trace

    write_trace(make_trace(arrival_at=[0.0, 1e300], input_tokens=[64, 64], output_tokens=[1, 1],
                           block_ids=[[0], [1]], block_tokens=64), tmp_path / "t.parquet")
    with pytest.raises(UserError,
                       match=r"t\.parquet: 'arrival_at': an arrival 1e\+300 s .*1e\+07 s"):
        workloads.load(tmp_path / "t.parquet")
