"""Span reuse: prefix-cache vs position-independent hits, known answers, oracle, generators."""

import numpy as np
import pytest
from hypothesis import given

from simulator.testing.traces import naive_hits, request_traces
from workloads.agentic import AgenticParams, generate_agentic
from workloads.rag import RagParams, generate_rag
from workloads.schema import FlatBlocks, make_trace
from workloads.spans import hit_rates, hits, prefix_hashes


def trace(blocks, spans):
    return make_trace(arrival_at=np.arange(len(blocks), dtype=float),
                      input_tokens=[len(b) * 16 for b in blocks], output_tokens=[1] * len(blocks),
                      block_ids=blocks, block_tokens=16, spans=spans)


def test_permuted_documents_hit_only_position_independently():
    # system prompt 0, then documents 1, 2, 3 (commutative), in another order the second time
    df = trace([[0, 1, 2, 3], [0, 3, 1, 2]], [[1, 4], [1, 4]])
    h = hits(df)
    assert h.prefix.tolist() == [False] * 4 + [True, False, False, False]
    assert h.position_independent.tolist() == [False] * 4 + [True] * 4
    rates = hit_rates(df)
    assert rates["prefix_hit_fraction"] == 1 / 8
    assert rates["span_hit_fraction"] == 4 / 8 == rates["reuse_fraction"]


def test_a_prefix_cache_hits_only_leading_shared_blocks():
    df = trace([[0, 1, 2], [0, 1, 3], [0, 4], [5, 1]], [[], [], [], []])
    h = hits(df)
    assert h.prefix.tolist() == [False] * 3 + [True, True, False] + [True, False] + [False] * 2
    assert h.reuse[-1] and not h.position_independent[-1]  # block 1 moved, not in a span
    assert hit_rates(df)["prefix_hit_fraction"] == 3 / 10


def test_blocks_repeated_inside_one_request_are_not_hits():
    h = hits(trace([[7, 7, 7]], [[0, 3]]))
    assert not h.reuse.any() and not h.position_independent.any()


def test_prefix_hashes_depend_on_the_whole_prefix():
    flat = FlatBlocks.from_lists([[1, 2, 3], [1, 2, 3], [2, 1, 3], [1, 2]])
    h = prefix_hashes(flat)
    assert (h[0:3] == h[3:6]).all()
    assert h[6] != h[0] and h[8] != h[2]  # same last block, different prefix
    assert (h[9:11] == h[0:2]).all()


@given(request_traces())
def test_hits_match_the_naive_oracle_and_prefix_never_exceeds_span_reuse(df):
    h = hits(df)
    reuse, prefix, pi = naive_hits(df)
    assert h.reuse.tolist() == reuse
    assert h.prefix.tolist() == prefix
    assert h.position_independent.tolist() == pi
    assert (h.prefix <= h.position_independent).all()
    assert (h.position_independent <= h.reuse | h.prefix).all()


def test_agentic_fleet_shows_both_rules():
    p = AgenticParams(duration_time=120.0, task_rate=0.1, n_repos=2, repo_tokens=16_384,
                      repo_size_sigma=0.0, repo_min_tokens=1, subagents=4, turns_mean=2.0)
    fixed = hit_rates(generate_agentic(np.random.default_rng(0), p))
    shuffled = hit_rates(generate_agentic(np.random.default_rng(0),
                                          AgenticParams(**{**p.to_dict(),
                                                           "file_order": "per_agent"})))
    assert fixed["span_hit_fraction"] == pytest.approx(fixed["prefix_hit_fraction"])
    assert fixed["prefix_hit_fraction"] > 0.8  # repository shared in one order: prefix works
    assert shuffled["span_hit_fraction"] > shuffled["prefix_hit_fraction"] + 0.2


def test_rag_permutations_defeat_the_prefix_cache_but_not_span_reuse():
    permuted = hit_rates(generate_rag(np.random.default_rng(0), RagParams()))
    ordered = hit_rates(generate_rag(np.random.default_rng(0), RagParams(permute=False)))
    assert permuted["span_hit_fraction"] > 2 * permuted["prefix_hit_fraction"]
    assert ordered["prefix_hit_fraction"] > permuted["prefix_hit_fraction"]
    assert permuted["span_hit_fraction"] == pytest.approx(ordered["span_hit_fraction"], abs=0.05)


def test_rag_documents_are_spans_with_stable_ids():
    df = generate_rag(np.random.default_rng(1), RagParams(duration_time=10.0))
    docs = {}
    for ids, sp in zip(df["block_ids"], df["spans"], strict=True):
        assert len(sp) == 2 * 5
        for a, b in zip(sp[0::2], sp[1::2], strict=True):
            doc = tuple(ids[a:b])
            docs.setdefault(doc[0], doc)
            assert docs[doc[0]] == doc  # a document always has the same blocks


def test_the_mix_is_splitmix64_and_prefix_hashes_its_polynomial():
    from workloads.spans import _BASE, _mix, extend_prefix_hash, row_prefix_hashes

    # SplitMix64 (Vigna) seeded with 0 gives 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4,
    # 0x06C45D188009454F: its finalizer of the state after 1, 2, 3 golden-ratio steps
    g = 0x9E3779B97F4A7C15
    states = np.array([0, g, 2 * g % 2**64], dtype=np.uint64)
    assert [int(v) for v in _mix(states)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4,
                                             0x06C45D188009454F]
    # H_j = H_{j−1} · B + mix(x_j) mod 2^64, in Python integers
    ids = [5, 0, 17, 5, 3]
    want, h = [], 0
    for x in ids:
        h = (h * _BASE + int(_mix(np.array([x]))[0])) % 2**64
        want.append(h)
    assert [int(v) for v in row_prefix_hashes(np.array(ids))] == want
    assert [int(v) for v in extend_prefix_hash(want[1], ids[2:])] == want[2:]
    two = FlatBlocks(np.array([0, 2, 5]), np.array([9, 4, *ids[:3]]))
    assert [int(v) for v in prefix_hashes(two)][2:] == want[:3]  # each row on its own


def test_hashes_and_earlier_rows_of_no_block_and_of_one():
    from workloads.spans import _mix, seen_in_earlier_row

    empty = FlatBlocks(np.array([0]), np.zeros(0, dtype=np.int64))
    assert prefix_hashes(empty).dtype == np.uint64 and len(prefix_hashes(empty)) == 0
    one = FlatBlocks(np.array([0, 1]), np.array([7]))
    assert [int(v) for v in prefix_hashes(one)] == [int(_mix(np.array([7]))[0])]
    got = seen_in_earlier_row(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64))
    assert got.dtype == bool and len(got) == 0
    np.testing.assert_array_equal(seen_in_earlier_row(np.array([3]), np.array([0])), [False])
    np.testing.assert_array_equal(
        seen_in_earlier_row(np.array([3, 3, 4, 3, 4]), np.array([0, 0, 1, 1, 1])),
        [False, False, False, True, False])


def test_a_trace_without_blocks_has_no_hits():
    df = make_trace(arrival_at=[], input_tokens=[], output_tokens=[], block_ids=[],
                    block_tokens=64)  # a request has a block at least: a trace of none
    assert hit_rates(df) == {"block_refs": 0, "prefix_hit_fraction": 0.0,
                             "span_hit_fraction": 0.0, "reuse_fraction": 0.0,
                             "span_fraction": 0.0}
