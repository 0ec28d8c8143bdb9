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
