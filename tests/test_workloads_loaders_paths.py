"""The loaders' two paths: a clean file is read whole (vectorized) and never line by line; a
file with any bad value goes line by line and the first bad line is named (or skipped and
counted). The fast path's checks are what keep a bad value from reaching the trace silently
(a fraction of a token truncated, a boolean read as 1), so each is tested on its own."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from tracetools import write_lines

import workloads
from simulator.errors import UserError
from workloads import loaders
from workloads.loaders import load_azure, load_mooncake
from workloads.schema import write_trace


def mooncake(ts=0, inp=600, out=3, ids=(0, 1), **extra) -> str:
    return json.dumps({"timestamp": ts, "input_length": inp, "output_length": out,
                       "hash_ids": list(ids), **extra})


def count_calls(monkeypatch, name: str) -> list[int]:
    """Count the calls of the loaders' function ``name`` (a line-by-line path) from now on."""
    calls: list[int] = []
    slow = getattr(loaders, name)

    def counted(*args):
        calls.append(1)
        return slow(*args)

    monkeypatch.setattr(loaders, name, counted)
    return calls


@pytest.fixture
def no_slow_path(monkeypatch):
    def slow(*args, **kwargs):
        raise AssertionError("a clean file was read line by line")

    monkeypatch.setattr(loaders, "_mooncake_slow", slow)
    monkeypatch.setattr(loaders, "_azure_slow", slow)


@pytest.mark.parametrize("lines", [
    [mooncake(ts=0), mooncake(ts=1.5, inp=513, ids=(0, 7))],     # a time of 0 and a fraction
    [mooncake(ts=3, inp=1, out=1, ids=(2**53 - 1,))],            # the largest exact id
    [mooncake(ts=0, inp=512, ids=(0,))],                         # a whole block
])
def test_a_clean_mooncake_file_is_read_whole(tmp_path, no_slow_path, lines):
    df = load_mooncake(write_lines(tmp_path / "t.jsonl", lines))
    recs = [json.loads(x) for x in lines]
    assert df["arrival_at"].tolist() == [r["timestamp"] / 1000 for r in recs]
    assert df["input_tokens"].tolist() == [r["input_length"] for r in recs]
    assert [b.tolist() for b in df["block_ids"]] == [r["hash_ids"] for r in recs]
    assert df.attrs["skipped_lines"] == 0


@pytest.mark.parametrize(("line", "problem"), [
    (mooncake(inp=600.5), "'input_length' 600.5 is not a positive integer"),
    (mooncake(out=2.5), "'output_length' 2.5 is not a positive integer"),
    (mooncake(out=0), "'output_length' 0 is not a positive integer"),
    (mooncake(ids=(0, True)), "'hash_ids' is not a list of non-negative integers"),
    (mooncake(ids=(0, -1)), "'hash_ids' is not a list of non-negative integers"),
    (mooncake(ids=(0, 1.5)), "'hash_ids' is not a list of non-negative integers"),
    (mooncake(ids=(0, 2**53)), None),  # exact in JSON, but not in the fast path's doubles
    (mooncake(ids=(0, 2**63 - 1)), None),
    (mooncake(ids=(0, 2**63)), "'hash_ids' is not a list of non-negative integers below 2**63"),
    (mooncake(ids=(0, 2**64)), "'hash_ids' is not a list of non-negative integers below 2**63"),
    (mooncake(ids=(0, 1, 2)), "'hash_ids' has 3 ids but input_length 600 needs 2"),
    (mooncake(ts="soon"), "'timestamp' 'soon' is not a time >= 0 in ms"),
    (mooncake(ts=-1), "'timestamp' -1 is not a time >= 0 in ms"),
    (mooncake(ts=True), "'timestamp' True is not a time >= 0 in ms"),
    (mooncake(inp=True, ids=(0,)), "'input_length' True is not a positive integer"),
    (mooncake(out=False), "'output_length' False is not a positive integer"),
    ('{"timestamp": 0, "input_length": 600, "output_length": 3, "hash_id": [0, 1]}',
     "missing field 'hash_ids'"),
    (mooncake(extra_field=1), None),  # a field of its own: read line by line, accepted
    ("[1, 2]", "not a JSON object"),
    ('"text"', "not a JSON object"),
    ("7", "not a JSON object"),
])
def test_a_mooncake_file_with_an_odd_line_goes_line_by_line(tmp_path, monkeypatch, line, problem):
    calls = count_calls(monkeypatch, "_mooncake_slow")
    # a blank line is no record; the shortest request (one token in, one out) is one
    path = write_lines(tmp_path / "t.jsonl", [mooncake(), "", mooncake(ts=5, inp=1, out=1,
                                                                        ids=(3,)), line])
    if problem is None:  # a good line the fast path does not take
        df = load_mooncake(path)
        assert len(df) == 3 and calls == [1] and df.attrs["skipped_lines"] == 0
        third = df.loc[df["request_id"] == 2, "block_ids"].iloc[0]
        assert third.tolist() == json.loads(line)["hash_ids"]
        assert df.sort_values("request_id")["output_tokens"].tolist() == [3, 1, 3]
        return
    with pytest.raises(UserError) as exc:
        load_mooncake(path)
    assert f"{path}:4: {problem}" in str(exc.value) and calls == [1]
    df = load_mooncake(path, skip_bad=True)
    assert len(df) == 2 and df.attrs["skipped_lines"] == 1


def test_lines_that_are_not_utf8_are_named_or_counted(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes((mooncake() + "\n").encode() + b'{"timestamp": \xff}\n\xfe\n'
                     + (mooncake(ts=9) + "\n" + mooncake(ts=-3) + "\n").encode())
    with pytest.raises(UserError, match=rf"{path}:2: not UTF-8 text \(byte 0xff\)"):
        load_mooncake(path)
    df = load_mooncake(path, skip_bad=True)  # two lines not UTF-8, one bad record
    assert df["arrival_at"].tolist() == [0.0, 0.009] and df.attrs["skipped_lines"] == 3


def test_a_mooncake_file_opening_with_a_byte_order_mark_is_read_as_without(tmp_path):
    text = mooncake() + "\n" + mooncake(ts=9) + "\n"
    plain, marked = tmp_path / "p.jsonl", tmp_path / "m.jsonl"
    plain.write_text(text)
    marked.write_bytes(b"\xef\xbb\xbf" + text.encode())  # what a Windows editor saves
    df = load_mooncake(marked)
    assert df["arrival_at"].tolist() == load_mooncake(plain)["arrival_at"].tolist()
    assert df.attrs["skipped_lines"] == 0


AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"


def test_a_clean_azure_file_is_read_whole(tmp_path, no_slow_path):
    path = write_lines(tmp_path / "t.csv", [AZURE_HEADER, "2023-11-16 18:00:00.5,100,1",
                                            "2023-11-16 18:00:01.0,64,2",
                                            "2023-11-16 18:00:01.25,1,1"])
    df = load_azure(path, block_tokens=64)
    assert df["arrival_at"].tolist() == [0.0, 0.5, 0.75]
    assert df["input_tokens"].tolist() == [100, 64, 1]
    assert df["output_tokens"].tolist() == [1, 2, 1]
    assert df.attrs["skipped_lines"] == 0 and df.attrs["source"] == str(path)


@pytest.mark.parametrize(("stamps", "fast", "arrivals"), [
    (["2023-11-16T18:00:00Z", "2023-11-16T18:00:01.5Z"], True, [0.0, 1.5]),  # one zone: UTC
    (["2023-11-16T18:00:00+05:00", "2023-11-16T18:00:01+05:00"], True, [0.0, 1.0]),
    # zones that differ (or none beside one): line by line, each instant in UTC
    (["2023-11-16T18:00:00+05:00", "2023-11-16T13:00:02Z"], False, [0.0, 2.0]),
    (["2023-11-16 18:00:00", "2023-11-16T18:00:03Z"], False, [0.0, 3.0]),
])
def test_azure_time_zones_are_instants_whichever_path_reads_them(tmp_path, monkeypatch, stamps,
                                                                 fast, arrivals):
    calls = count_calls(monkeypatch, "_azure_slow")
    path = write_lines(tmp_path / "t.csv", [AZURE_HEADER] + [f"{t},10,1" for t in stamps])
    df = load_azure(path)
    assert df["arrival_at"].tolist() == arrivals and calls == ([] if fast else [1])


@pytest.mark.parametrize(("line", "problem"), [
    ("2023-11-16 18:00:02,100000001,3", "ContextTokens 100,000,001 is more than 100,000,000"),
    ("2023-11-16 18:00:02,10,99999999999999999999", "GeneratedTokens 99,999,999,999,999,999,999"),
    ("2023-11-16 18:00:02,1e3,3", "ContextTokens '1e3' is not an integer"),  # as line by line
    ("3000-01-01,10,3", "TIMESTAMP '3000-01-01' is not a date-time between 1677 and 2262"),
])
def test_azure_sizes_and_dates_past_the_bounds_are_named(tmp_path, line, problem):
    path = write_lines(tmp_path / "t.csv", [AZURE_HEADER, "2023-11-16 18:00:00,100000000,1",
                                            line])
    with pytest.raises(UserError) as exc:
        load_azure(path)
    assert f"{path}:3: {problem}" in str(exc.value)
    assert load_azure(path, skip_bad=True)["input_tokens"].tolist() == [100_000_000]


@pytest.mark.parametrize("length", [100_000_001, 2**63 - 1, 10**20])
def test_a_mooncake_length_past_the_bound_is_named(tmp_path, length):
    path = write_lines(tmp_path / "t.jsonl", [mooncake(), mooncake(ts=1, out=length)])
    with pytest.raises(UserError, match=rf"{path}:2: 'output_length' {length:,} is more than "
                                        "100,000,000 tokens"):
        load_mooncake(path)



def test_lengths_at_the_bound_are_read_whole_and_line_by_line(tmp_path, monkeypatch):
    big = 100_000_000
    calls = count_calls(monkeypatch, "_mooncake_slow")
    path = write_lines(tmp_path / "t.jsonl", [mooncake(), mooncake(ts=1, out=big),
                                              mooncake(ts=2, inp=big, ids=range(-(-big // 512)))])
    df = load_mooncake(path)
    assert df["output_tokens"].tolist() == [3, big, 3] and calls == []
    assert df["input_tokens"].tolist() == [600, 600, big]
    path = write_lines(tmp_path / "t.jsonl", [mooncake(), mooncake(ts=1, out=big), "{"])
    assert load_mooncake(path, skip_bad=True)["output_tokens"].tolist() == [3, big]
    assert calls == [1]
    calls = count_calls(monkeypatch, "_azure_slow")
    path = write_lines(tmp_path / "t.csv", [AZURE_HEADER, f"2023-11-16 18:00:00,{big},{big}"])
    df = load_azure(path)
    assert (df["input_tokens"].tolist(), df["output_tokens"].tolist(), calls) == ([big], [big], [])


def test_a_gz_file_that_is_not_gzip_or_is_cut_short_is_named(tmp_path):
    import gzip

    for name, body in (("t.jsonl.gz", (mooncake() + "\n").encode()),
                       ("t.csv.gz", gzip.compress(f"{AZURE_HEADER}\n".encode() * 50)[:40])):
        path = tmp_path / name
        path.write_bytes(body)
        with pytest.raises(UserError, match=rf"{path}: not a complete gzip file \((Not a "
                                            r"gzipped file|Compressed file ended)"):
            workloads.load(path)


def test_an_azure_file_of_its_header_alone_is_an_empty_trace(tmp_path):
    df = load_azure(write_lines(tmp_path / "t.csv", [AZURE_HEADER]))
    assert len(df) == 0 and df.attrs["skipped_lines"] == 0


def test_records_out_of_time_order_are_sorted_with_their_blocks(tmp_path):
    # the sorting puts no record where it was (a permutation without a fixed point)
    path = write_lines(tmp_path / "t.jsonl", [mooncake(ts=5, inp=10, ids=(7,)),
                                              mooncake(ts=0, inp=600, ids=(1, 2)),
                                              mooncake(ts=3, inp=20, ids=(8,)),
                                              mooncake(ts=5, inp=30, ids=(9,)),
                                              mooncake(ts=4, inp=40, ids=(10,))])
    df = load_mooncake(path)
    assert df["request_id"].tolist() == [1, 2, 4, 0, 3]  # a record keeps its index in the file
    assert df["arrival_at"].tolist() == [0.0, 0.003, 0.004, 0.005, 0.005]  # ties: file order
    assert [b.tolist() for b in df["block_ids"]] == [[1, 2], [8], [10], [7], [9]]
    assert df["input_tokens"].tolist() == [600, 20, 40, 10, 30] and df.attrs["source"] == str(path)


def test_a_parquet_trace_loads_as_written_with_nothing_skipped(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [mooncake(), mooncake(ts=5, inp=10, ids=(4,))])
    want = load_mooncake(path)
    want.attrs["skipped_lines"] = 5  # kept in the file's metadata: not what reading it skipped
    got = workloads.load(write_trace(want, tmp_path / "t.parquet"))
    assert got.attrs["skipped_lines"] == 0
    pd.testing.assert_frame_equal(got.drop(columns=["block_ids", "spans"]),
                                  want.drop(columns=["block_ids", "spans"]))
    assert [b.tolist() for b in got["block_ids"]] == [[0, 1], [4]]


@pytest.mark.parametrize(("line", "problem"), [
    ("2023-11-16 18:00:02.0,10.5,3", "ContextTokens '10.5' is not an integer"),
    ("2023-11-16 18:00:02.0,10,2.5", "GeneratedTokens '2.5' is not an integer"),
    ("2023-11-16 18:00:02.0,0,3", "ContextTokens 0 is not positive"),
    ("2023-11-16 18:00:02.0,10,-3", "GeneratedTokens -3 is not positive"),
    ("tomorrow,10,3", "TIMESTAMP 'tomorrow' is not a date-time"),
    ("2023-13-45 18:00:02.0,10,3", "TIMESTAMP '2023-13-45 18:00:02.0' is not a date-time"),
    ("2023-11-16 18:00:02.0,10,3,4", "4 fields, expected 3"),
    (" 2023-11-16 18:00:02.0 , 10 ,3", None),  # spaces around fields: read as numbers
])
def test_an_azure_file_with_an_odd_line_goes_line_by_line(tmp_path, monkeypatch, line, problem):
    calls = count_calls(monkeypatch, "_azure_slow")
    # an empty line is no record; one token in and out is one
    path = write_lines(tmp_path / "t.csv", [AZURE_HEADER, "2023-11-16 18:00:00.0,100,1", "",
                                            "2023-11-16 18:00:01.0,1,1", line])
    if problem is None:
        df = load_azure(path)
        assert df["input_tokens"].tolist() == [100, 1, 10]
        assert df["arrival_at"].tolist() == [0.0, 1.0, 2.0]
        return
    with pytest.raises(UserError) as exc:
        load_azure(path)
    assert f"{path}:5: {problem}" in str(exc.value) and calls == [1]
    df = load_azure(path, skip_bad=True)
    assert df["input_tokens"].tolist() == [100, 1] and df.attrs["skipped_lines"] == 1


def test_an_azure_line_of_empty_fields_is_no_record(tmp_path):
    path = write_lines(tmp_path / "t.csv", [AZURE_HEADER, "2023-11-16 18:00:00.0,100,1", " , , ",
                                            ",,", "2023-11-16 18:00:01.0,1,1"])
    df = load_azure(path)
    assert df["input_tokens"].tolist() == [100, 1] and df.attrs["skipped_lines"] == 0


def test_an_azure_line_not_utf8_and_a_bad_line_are_both_counted(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(f"{AZURE_HEADER}\n2023-11-16 18:00:00.0,100,1\n".encode() + b"\xff,1,1\n"
                     + b"2023-11-16 18:00:01.0,0,1\n2023-11-16 18:00:02.0,5,1\n")
    df = load_azure(path, skip_bad=True)
    assert df["input_tokens"].tolist() == [100, 5] and df.attrs["skipped_lines"] == 2


@pytest.mark.parametrize(("text", "problem"), [
    ("", "empty file; an Azure LLM inference trace starts with the header"),
    ("time,in,out\n", "header ['time', 'in', 'out'] is not"),
])
def test_an_azure_file_without_its_header_is_named(tmp_path, text, problem):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(f"{path}:") + ".*" + re.escape(problem)):
        load_azure(path)


def test_an_azure_block_size_must_be_positive(tmp_path):
    path = write_lines(tmp_path / "t.csv", [AZURE_HEADER, "2023-11-16 18:00:00.0,100,1"])
    with pytest.raises(UserError, match="block_tokens must be > 0, got 0"):
        load_azure(path, block_tokens=0)
    assert [b.tolist() for b in load_azure(path, block_tokens=1)["block_ids"]] == [
        list(range(100))]
