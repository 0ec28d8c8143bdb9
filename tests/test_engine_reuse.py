"""Prefix, span and no reuse: the plan's known answers, its properties, the rotary pass's price,
and the three rules on the same traces in the engine."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import Scenario, hardware, run
from simulator.engine.reuse import (
    _repeats,
    plan,
    rotary_bytes_per_token,
    rotary_time,
    span_mask,
)
from simulator.gpu.kernels import KernelModel
from simulator.gpu.profiled import default_kernels
from simulator.models import Architecture, model
from simulator.runner import compare_reuse
from simulator.testing.invariants import check_run
from simulator.testing.traces import request_traces
from workloads.schema import make_trace

T, F = True, False


def classes(p):
    return "".join("a" if a else "r" if r else "c"
                   for a, r in zip(p.as_is, p.rotary, strict=True))


# -- the plan: known answers -----------------------------------------------------------------


def test_prefix_reuses_the_leading_run_computed_after_the_same_prefix():
    known = [T, T, T, F, T]
    assert classes(plan(known, np.arange(5), None, "prefix")) == "aaacc"
    same = [T, T, F, F, T]  # block 2 is held, but was computed after another prefix
    assert classes(plan(known, np.arange(5), None, "prefix", same_prefix=same)) == "aaccc"


def test_span_reuses_held_span_blocks_after_the_boundary_and_recomputes_the_rest():
    # [system | doc | doc | held private block | question]; the docs are one span
    known, ids = [T, T, T, T, F], np.arange(5)
    same = [T, F, F, F, F]
    p = plan(known, ids, span_mask(np.array([1, 3]), 5), "span", same_prefix=same)
    assert classes(p) == "arrcc"  # block 3 is held but follows a non-commuting boundary
    # a recomputed page counts whole, but the context's partial last block only its 54 tokens
    assert p.computed_tokens(5 * 64 - 10, 64) == 64 + 54
    assert p.rotary_tokens(64) == 128


def test_a_partial_last_block_reused_out_of_place_leaves_the_recomputed_pages_whole():
    # [new block | a held document block that ends the prompt, 10 tokens]: the document is
    # rotated, not computed, so the prefill is the first block's 64 tokens; the last block's
    # empty slots are no concern of the recomputed pages
    p = plan([F, T], np.arange(2), span_mask(np.array([1, 2]), 2), "span", gives_token=True)
    assert classes(p) == "cr"
    assert p.computed_tokens(64 + 10, 64) == 64
    assert plan([F, T], np.arange(2), None, "none").computed_tokens(64 + 10, 64) == 74


def test_past_a_break_span_uses_a_block_computed_after_this_very_prefix_as_is():
    # block 2 breaks the prefix (held, computed after another prefix) and is in a span:
    # rotary. Block 3, outside the span, is held as computed after this very prefix (the
    # session's own version from an earlier turn): as is under span; prefix stops at block 2
    ids = np.arange(5)
    known = [T, T, T, T, F]
    same = [T, T, F, T, F]
    sp = span_mask(np.array([2, 3]), 5)
    assert classes(plan(known, ids, sp, "span", same_prefix=same)) == "aarac"
    assert classes(plan(known, ids, sp, "prefix", same_prefix=same)) == "aaccc"
    # the trace-level view (no prefix hashes) keeps the old rule: recomputed past the break
    assert classes(plan(known, ids, sp, "span")) == "aaaac"


def test_identical_spans_in_one_prompt_are_computed_once_under_span_reuse():
    ids = np.array([0, 5, 5, 5, 9])  # three identical candidates (temperature 0)
    known = [T, F, F, F, F]
    sp = span_mask(np.array([1, 2, 2, 3, 3, 4]), 5)
    assert classes(plan(known, ids, sp, "span")) == "acrrc"
    assert classes(plan(known, ids, sp, "prefix")) == "acccc"


def test_no_reuse_recomputes_everything():
    p = plan([T, T, T], np.arange(3), None, "none")
    assert classes(p) == "ccc" and p.computed_tokens(150, 64) == 150
    with pytest.raises(ValueError, match="reuse rule"):
        plan([T], np.arange(1), None, "lru")


def test_a_prompt_held_in_full_recomputes_its_last_block_when_it_gives_a_token():
    ids = np.arange(3)
    assert classes(plan([T, T, T], ids, None, "prefix", gives_token=True)) == "aac"
    assert classes(plan([T, T, T], ids, None, "prefix")) == "aaa"  # its KV arrived computed
    sp = span_mask(np.array([1, 3]), 3)
    p = plan([T, T, T], ids, sp, "span", same_prefix=[T, F, F], gives_token=True)
    assert classes(p) == "arc" and p.rotary_tokens(64) == 64  # the last block leaves the pass
    # something else is computed already: the token comes with it, nothing changes
    assert classes(plan([T, F, T], ids, sp, "span", same_prefix=[T, F, F],
                        gives_token=True)) == "acr"
    assert classes(plan([T, T, T], ids, None, "none", gives_token=True)) == "ccc"
    assert classes(plan([], ids[:0], None, "prefix", gives_token=True)) == ""


@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans(), st.integers(0, 6)),
                min_size=1, max_size=30), st.integers(1, 64))
def test_span_never_computes_more_than_prefix_which_never_computes_more_than_none(rows, last):
    known, same, in_span, ids = (np.array(c) for c in zip(*rows, strict=True))
    inp = (len(rows) - 1) * 64 + last
    plans = {r: plan(known, ids, in_span, r, same_prefix=same & known)
             for r in ("span", "prefix", "none")}
    tokens = {r: p.computed_tokens(inp, 64) for r, p in plans.items()}
    assert tokens["span"] <= tokens["prefix"] <= tokens["none"] == inp
    for p in plans.values():  # three disjoint classes covering the prompt
        assert (p.as_is.astype(int) + p.rotary + p.recompute == 1).all()
        assert not (p.as_is & ~known).any()
    # span uses as is what prefix does, and past the prefix's run only held blocks outside
    # the spans computed after this very prefix (a session's own version of them)
    extra = plans["span"].as_is & ~plans["prefix"].as_is
    assert not (plans["prefix"].as_is & ~plans["span"].as_is).any()
    assert not (extra & ~(known & same & ~in_span)).any()
    assert not (plans["span"].rotary & ~in_span).any()
    # a prefill that gives a token computes at least the last block; it changes only that
    # block, and only where nothing else is computed
    for r, p in plans.items():
        t = plan(known, ids, in_span, r, same_prefix=same & known, gives_token=True)
        assert t.recompute.any()
        changed = np.flatnonzero(t.recompute != p.recompute)
        assert list(changed) in ([], [len(rows) - 1])
        assert not len(changed) or not p.recompute.any()
        assert (t.as_is | t.rotary | t.recompute).all()
        assert (t.as_is <= p.as_is).all() and (t.rotary <= p.rotary).all()


# -- the rotary pass -------------------------------------------------------------------------


def test_rotary_bytes_per_token_per_layer():
    assert rotary_bytes_per_token(model("llama-3.1-8b")) == 8 * 128 * 2  # K of 8 KV heads
    assert rotary_bytes_per_token(model("deepseek-v3.2")) == 64 * 2  # MLA's RoPE key, bf16
    assert rotary_bytes_per_token(model("deepseek-v3.2").with_kv_dtype("fp8")) == 128


def test_the_rotary_pass_is_a_memory_bound_read_and_write_of_the_rotary_keys():
    km, h100, arch = KernelModel(), hardware.gpu("H100"), model("llama-3.1-8b")
    tokens = 10_000
    nbytes = 2 * tokens * 2048 * 32
    want = 32 * km.launch_time + nbytes / (h100.hbm_bandwidth * km.copy_efficiency)
    assert rotary_time(km, h100, arch, tokens) == pytest.approx(want, rel=1e-12)
    assert rotary_time(km, h100, arch, 0) == 0.0
    # two orders of magnitude cheaper than prefilling the same tokens
    assert rotary_time(km, h100, arch, tokens) < 0.01 * km.prefill_time(h100, arch, tokens)
    # shared by 4 GPUs: each moves a quarter of the bytes; one token is not nothing
    for gpus in (4, 64):  # still memory-bound when the FLOPs are shared as the bytes are
        assert rotary_time(km, h100, arch, tokens, gpus=gpus) == pytest.approx(
            32 * km.launch_time + nbytes / gpus / (h100.hbm_bandwidth * km.copy_efficiency),
            rel=1e-12)
    assert rotary_time(km, h100, arch, 1) == pytest.approx(
        32 * km.launch_time + 2 * 2048 * 32 / (h100.hbm_bandwidth * km.copy_efficiency),
        rel=1e-12)


def test_with_a_profile_the_rotary_pass_is_the_measured_copy_of_the_rotary_keys():
    # the engine's kernel times come from profiles: the pass is their device copy of each
    # GPU's share of the rotary keys (read + write), one copy per layer
    pk, h100, arch = default_kernels(), hardware.gpu("H100"), model("deepseek-v3.2")
    tokens, gpus = 8_000, 2
    want = pk.copy_time(h100, tokens * 128 * 61 / gpus, kernels=61)
    assert rotary_time(pk, h100, arch, tokens, gpus=gpus) == pytest.approx(want, rel=1e-12)
    assert rotary_time(pk, h100, arch, tokens, gpus=1) > want
    assert rotary_time(pk, h100, arch, 0) == 0.0


def test_a_custom_model_rotates_half_of_its_cached_bytes():
    arch = Architecture.custom("c", 10, routed_payload_bytes=1000.0, moved_bytes_per_token=600.0)
    assert rotary_bytes_per_token(arch) == 300.0


def test_span_mask_marks_every_span_and_repeats_of_nothing_are_nothing():
    # three spans, one of them past the prompt's end (clipped), one empty
    mask = span_mask(np.array([0, 2, 5, 7, 3, 3, 9, 20]), 10)
    assert mask.tolist() == [True, True, False, False, False, True, True, False, False, True]
    assert _repeats(np.array([], dtype=np.int64)).tolist() == []
    assert _repeats(np.array([4, 2, 4, 4, 2, 7])).tolist() == [False, False, True, True, True,
                                                               False]


# -- the engine ------------------------------------------------------------------------------


def one_gpu(reuse: str, chunked: bool = False) -> Scenario:
    return Scenario.from_dict({
        "name": "one", "stack": "ideal", "policies": ["local"],
        "topology": {"spec": "single_node:gpus=1"},
        "model": {"name": "llama-3.1-8b", "selection": "dense"},
        "workload": {"kind": "trace", "trace": "<given>"},
        "placement": {"reuse": reuse, "weights_per_gpu": 16.06e9},
        "engine": {"max_batch": 16, "layer_groups": 1},
        # whole prompts, no host overhead: a TTFT is then its prefill kernel alone, at the
        # roofline's times this test computes by hand
        "serving": {"chunked_prefill": chunked, "step_overhead_time": 0.0},
        "calibration": {"profile": "roofline"}})


def test_a_moved_document_costs_its_rotary_pass_and_the_question_its_prefill():
    # request 1 reads documents 1..8 and 9..16; request 2 reads them in the other order
    docs = [list(range(1, 9)), list(range(9, 17))]
    trace = make_trace(arrival_at=[0.0, 10.0], input_tokens=[18 * 64, 18 * 64],
                       output_tokens=[2, 2], block_tokens=64,
                       block_ids=[[0, *docs[0], *docs[1], 100], [0, *docs[1], *docs[0], 200]],
                       spans=[[1, 9, 9, 17], [1, 9, 9, 17]])
    km, h100, arch = KernelModel(), hardware.gpu("H100"), model("llama-3.1-8b")
    ttft = {}
    for rule in ("prefix", "span", "none"):
        res = run(one_gpu(rule), "local", trace=trace)
        check_run(res, trace)
        r = res.requests
        ttft[rule] = float(r["first_token_at"][1] - r["arrival_at"][1])
        if rule == "span":
            assert r["reused_blocks"].tolist() == [0, 17]
    assert ttft["span"] == pytest.approx(km.prefill_time(h100, arch, 64)
                                         + rotary_time(km, h100, arch, 16 * 64), rel=1e-9)
    assert ttft["prefix"] == pytest.approx(km.prefill_time(h100, arch, 17 * 64), rel=1e-9)
    assert ttft["none"] == pytest.approx(km.prefill_time(h100, arch, 18 * 64), rel=1e-9)


def test_a_chunk_pays_the_rotary_pass_of_the_span_blocks_it_reuses():
    # chunked prefill: request 2 reuses request 1's two documents moved (a rotary pass over
    # 16 blocks) and prefills its last block; request 3 repeats request 1's first 17 blocks
    # in their order (reused as they are) and prefills its last block. Their one chunk is the
    # same work over the same cached context but for the rotary pass
    docs = [list(range(1, 9)), list(range(9, 17))]
    trace = make_trace(arrival_at=[0.0, 10.0, 20.0], input_tokens=[18 * 64] * 3,
                       output_tokens=[2] * 3, block_tokens=64,
                       block_ids=[[0, *docs[0], *docs[1], 100], [0, *docs[1], *docs[0], 200],
                                  [0, *docs[0], *docs[1], 300]],
                       spans=[[1, 9, 9, 17]] * 3)
    res = run(one_gpu("span", chunked=True), "local", trace=trace)
    check_run(res, trace)
    r = res.requests
    assert r["reused_blocks"].tolist() == [0, 17, 17]
    ttft = (r["first_token_at"] - r["arrival_at"]).to_numpy()
    km, h100, arch = KernelModel(), hardware.gpu("H100"), model("llama-3.1-8b")
    assert ttft[1] - ttft[2] == pytest.approx(rotary_time(km, h100, arch, 16 * 64), rel=1e-9)


def four_blocks_reused(engine: str, last: int, chunked: bool = False):
    """r0 computes blocks 0-4 (5 x 64 tokens); long after, r1 repeats blocks 0-3 and a fifth
    of ``last`` tokens (r0's block 4 when it is whole, else a new one) and r2 the same with a
    new fifth block. Both reuse four blocks and compute one; the run, checked."""
    fifth = 4 if last == 64 else 9
    trace = make_trace(arrival_at=[0.0, 10.0, 20.0],
                       input_tokens=[5 * 64, 4 * 64 + last, 4 * 64 + last],
                       output_tokens=[2] * 3, block_tokens=64,
                       block_ids=[[0, 1, 2, 3, 4], [0, 1, 2, 3, fifth], [0, 1, 2, 3, 9]])
    res = run(one_gpu("prefix", chunked=chunked), "local", trace=trace, engine=engine)
    check_run(res, trace)
    r = res.requests
    assert r["reused_blocks"].tolist() == [0, 4, 4]
    assert r["prefilled_blocks"].tolist() == [5, 1, 1]
    return res, (r["first_token_at"] - r["arrival_at"]).to_numpy()


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_prompt_held_in_full_computes_its_last_block_for_its_first_token(engine):
    # r1 repeats r0's five blocks: held in full. The last prompt token's logits give the first
    # token, so r1 computes its last block (vLLM v1 caps a prefix-cache hit at num_tokens - 1
    # in whole blocks): whole prompts, no host overhead, its TTFT is the prefill of 64 tokens,
    # as for r2, whose fifth block is new
    _, ttft = four_blocks_reused(engine, 64)
    km, h100, arch = KernelModel(), hardware.gpu("H100"), model("llama-3.1-8b")
    assert ttft[1:] == pytest.approx([km.prefill_time(h100, arch, 64)] * 2, rel=1e-9)
    # chunked: the chunk attends the 256 cached tokens too; the same work for r1 and r2
    _, ttft = four_blocks_reused(engine, 64, chunked=True)
    assert ttft[1] == pytest.approx(ttft[2], rel=1e-9)
    assert ttft[1] > km.prefill_time(h100, arch, 64)


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_partial_last_block_computes_only_its_own_tokens(engine):
    # r1 and r2 end 10 tokens into a fifth, new block: their prefill is those 10 tokens (vLLM
    # schedules num_tokens - num_computed_tokens), not the page's 64 (until stop 68)
    res, ttft = four_blocks_reused(engine, 10)
    assert res.iterations["prefill_tokens"].sum() == 5 * 64 + 10 + 10
    km, h100, arch = KernelModel(), hardware.gpu("H100"), model("llama-3.1-8b")
    assert ttft[1:] == pytest.approx([km.prefill_time(h100, arch, 10)] * 2, rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(request_traces(max_requests=8, max_blocks=16, vocab=30, block_tokens=st.just(64)),
       st.sampled_from(["prefix", "none"]))
def test_a_request_computes_its_prompt_less_the_whole_blocks_it_reuses(trace, rule):
    # admitted one at a time and never preempted, a request's prefill is its prompt's tokens
    # less those of the blocks it reuses: a reused block is always whole, since the last block
    # is computed for the first token, and nothing else of the prompt is charged or skipped.
    # (Not so under span reuse, where a prompt's last block may be reused out of place: a
    # document that ends it, or a repeat of an earlier block; the known answers above)
    order = np.argsort(np.argsort(trace["arrival_at"].to_numpy(), kind="stable"), kind="stable")
    trace = trace.assign(arrival_at=order * 1000.0)
    res = run(one_gpu(rule), "local", trace=trace)
    check_run(res, trace)
    r = res.requests
    assert res.summary["preemptions"] == 0 and r["completed"].all()
    expect = int((r["input_tokens"] - r["reused_blocks"] * 64).sum())
    assert int(res.iterations["prefill_tokens"].sum()) == expect


@settings(max_examples=10)
@given(request_traces(max_requests=8, max_blocks=16, vocab=30, block_tokens=st.just(64)))
def test_span_never_prefills_more_pages_than_prefix_on_the_same_trace(trace):
    # requests 1,000 s apart, in arrival order (ties too): each is admitted alone, after the
    # previous one's KV is placed. Admitted together, two can both recompute a block that
    # prefix reuse would have versioned for one of them earlier (a span block reused in place
    # after its rotary pass leaves no new page, so no version: the test below). Counted in
    # pages: span may defer a page prefix recomputes to a later prompt, where it costs a whole
    # page instead of the tail a prompt recomputed whole is capped at (computed_tokens)
    order = np.argsort(np.argsort(trace["arrival_at"].to_numpy(), kind="stable"), kind="stable")
    trace = trace.assign(arrival_at=order * 1000.0)
    pages, tokens = {}, {}
    for rule in ("span", "prefix", "none"):
        res = run(one_gpu(rule), "local", trace=trace)
        check_run(res, trace)
        r = res.requests
        pages[rule] = int(r["prefilled_blocks"].sum())
        tokens[rule] = int(np.minimum(r["prefilled_blocks"] * 64, r["input_tokens"]).sum())
    assert pages["span"] <= pages["prefix"] <= pages["none"]
    assert max(tokens["span"], tokens["prefix"]) <= tokens["none"]
    assert tokens["none"] == int(trace["input_tokens"].sum())


@pytest.fixture(scope="module")
def rag():
    sc = Scenario.load("scenarios/rag_spans.toml")
    small = {"duration_time": 20.0, "docs_per_request": 6}
    spans = {**sc.workload.spans_params(), **small}
    return sc.with_changes(workload=sc.workload.__class__(
        kind="spans", spans=tuple(sorted(spans.items()))))


def test_rag_under_the_three_rules(rag):
    table = compare_reuse(rag).set_index("rule")
    assert (table["completed"] == table["requests"]).all()
    assert (table.loc["span", "prefill_tokens"] < 0.5 * table.loc["prefix", "prefill_tokens"]
            < table.loc["none", "prefill_tokens"])
    assert table.loc["span", "ttft_p50"] < 0.5 * table.loc["prefix", "ttft_p50"]
    assert table.loc["none", "reused_fraction"] == 0.0


def test_the_judge_reuses_every_generated_answer_under_span_and_the_first_under_prefix():
    sc = Scenario.load("scenarios/nested_generation.toml")
    spans = {**sc.workload.spans_params(), "duration_time": 15.0, "candidates": 4,
             "request_rate": 0.5}
    sc = sc.with_changes(workload=sc.workload.__class__(kind="spans",
                                                        spans=tuple(sorted(spans.items()))))
    from simulator.engine.trace import load_trace

    trace = load_trace(sc, 0)
    judge = (trace["spans"].map(len) > 0).to_numpy()
    assert judge.sum() >= 2
    got = {}
    for rule in ("prefix", "span"):
        res = run(sc.with_changes(placement=sc.placement.__class__(
            **{**sc.placement.__dict__, "reuse": rule})), "local", trace=trace)
        check_run(res, trace)
        got[rule] = res.requests["prefilled_blocks"].to_numpy()[judge]
    question = -(-64 // 64)
    assert (got["span"] == question).all()  # only the judge's question is computed
    answers = [sum(b - a for a, b in zip(sp[2::2], sp[3::2], strict=True))
               for sp in trace["spans"][judge]]  # every answer but the first
    assert got["prefix"].tolist() == [question + a for a in answers]


def test_a_span_block_reused_in_place_leaves_no_version_for_a_prompt_without_the_span():
    # r0 = [1, 0] computes block 0 after prefix [1]. r1 = [0, 5] with block 0 in a span: under
    # span it reuses r0's block in place after the rotary pass (no new page); under prefix it
    # recomputes it, keeping a version. r2 = [0, 6] and r3 = [0, 7] (no span), admitted
    # together: under prefix both reuse r1's version; under span neither version exists yet,
    # so both compute it. So span can compute more than prefix when requests are admitted
    # together. (Every prompt ends in a new block: a prompt held in full recomputes its last.)
    trace = make_trace(arrival_at=[0.0, 1000.0, 2000.0, 2000.0], input_tokens=[128] * 4,
                       output_tokens=[1, 1, 1, 1], block_tokens=64,
                       block_ids=[[1, 0], [0, 5], [0, 6], [0, 7]], spans=[[], [0, 1], [], []])
    got = {rule: run(one_gpu(rule), "local", trace=trace).requests["prefilled_blocks"].tolist()
           for rule in ("span", "prefix")}
    assert got == {"span": [2, 1, 2, 2], "prefix": [2, 2, 1, 1]}


def test_span_may_defer_a_page_prefix_recomputes_to_a_later_prompt():
    # r0 = [1, 0]; r1 = [0, 0] with its first block in a span (65 tokens); r2 = [0, 0, 9] (129
    # tokens), one after another. prefix: r1 recomputes both blocks (65 tokens: the whole
    # prompt, capped at its length), r2 reuses them and computes its third (64). span: r1
    # reuses its first block in place and recomputes the second (a whole page, 64 tokens); r2
    # has no span, so it recomputes the first, reuses r1's second and computes its third
    # (128). The same pages (3 and 3), more tokens (192 and 129)
    trace = make_trace(arrival_at=[0.0, 1000.0, 2000.0], input_tokens=[65, 65, 129],
                       output_tokens=[1, 1, 1], block_tokens=64,
                       block_ids=[[1, 0], [0, 0], [0, 0, 9]], spans=[[], [0, 1], []])
    got = {rule: run(one_gpu(rule), "local", trace=trace).requests["prefilled_blocks"].tolist()
           for rule in ("span", "prefix")}
    assert got == {"span": [2, 1, 2], "prefix": [2, 2, 1]}


def test_agentic_sessions_run_under_every_rule_and_every_request_is_accounted_for():
    from workloads.sessions import SessionParams, generate_sessions

    p = SessionParams(sessions=3, n_repos=1, repo_tokens=40_000, file_tokens=1_500,
                      tool_tokens_mean=1_500.0, system_tokens=2_048, compact_tokens=20_000,
                      summary_tokens=1_000, user_tokens_mean=300.0, output_tokens_mean=24.0,
                      spawn_fraction=0.3)
    trace = generate_sessions(np.random.default_rng(5), p).iloc[:60].reset_index(drop=True)
    tokens = {}
    for rule in ("span", "prefix", "none"):
        res = run(one_gpu(rule), "local", trace=trace)
        check_run(res, trace)
        assert res.requests["completed"].all()
        r = res.requests
        tokens[rule] = int(np.minimum(r["prefilled_blocks"] * 64, r["input_tokens"]).sum())
    assert tokens["span"] <= tokens["prefix"] < 0.5 * tokens["none"]
