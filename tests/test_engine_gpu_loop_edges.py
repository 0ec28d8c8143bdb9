"""The serving loop's rare turns (simulator/engine/gpu_loop.py), on both engines: a step that
only rejected runs nothing and is not a step, a request that fits its GPU alone never preempts
itself, and a prefill-only step ends with its kernel — nothing scheduled after it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import run
from simulator.engine import TOO_LARGE
from simulator.testing.invariants import check_run, small_scenario
from simulator.testing.profiles import examples
from workloads.schema import make_trace

ENGINES = ["exact", "fast"]


def two_blocks(engine: str):
    """One GPU with room for two 64-token KV blocks of DeepSeek-V3.2 (≈ 4.5 MB each)."""
    return small_scenario("single_node:gpus=1", weights_per_gpu=71.987e9, layer_groups=1,
                          mode=engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_request_too_large_for_an_idle_gpu_is_rejected_without_a_step(engine):
    # 192 + 1 tokens need 4 blocks of the 2: rejected when it arrives, the GPU idle. The step
    # that rejected it ran nothing: no iteration, no host overhead; the next request's step is
    # the run's first and starts when that request arrives
    trace = make_trace(arrival_at=[0.0, 0.5], input_tokens=[192, 64], output_tokens=[1, 1],
                       block_ids=[[1, 2, 3], [7]], block_tokens=64)
    res = run(two_blocks(engine), "route", trace=trace, check_invariants=engine == "exact")
    check_run(res, trace)
    assert res.gpus["capacity_blocks"].tolist() == [2]
    req = res.requests
    assert req["reason"][0] == TOO_LARGE and not req["completed"][0]
    assert req["completed"][1]
    it = res.iterations
    assert len(it) == 1
    assert (it["started_at"][0], it["prefill_tokens"][0]) == (0.5, 64)
    assert it["finished_at"][0] == req["finished_at"][1]


def reuse_one_block(engine: str, b_output_tokens: int):
    """A (64 tokens: block 1, one output token) computes block 1 and leaves; B (138 tokens:
    blocks 1, 2, 3) arrives at 1 s and reuses block 1, on a GPU with room for two blocks."""
    trace = make_trace(arrival_at=[0.0, 1.0], input_tokens=[64, 138],
                       output_tokens=[1, b_output_tokens], block_ids=[[1], [1, 2, 3]],
                       block_tokens=64)
    return run(two_blocks(engine), "route", trace=trace,
               check_invariants=engine == "exact"), trace


@pytest.mark.parametrize("engine", ENGINES)
def test_new_tokens_fill_the_last_page_before_a_new_one(engine):
    # B computes its two missing pages (the room's two blocks): block 2 whole and block 3's
    # 10 tokens, 74 in all; its next 54 fill the second page's empty slots. With 54 outputs its
    # KV is 74 + 53 tokens at most (the last token's KV is never computed): it decodes on its
    # two pages without a preemption. Until stop 67 its first decoded token counted as the
    # 129th of its pages and asked for a third block: alone on the GPU, B preempted itself and
    # recomputed its last page for every token
    res, trace = reuse_one_block(engine, 54)
    check_run(res, trace)
    assert res.gpus["capacity_blocks"].tolist() == [2]
    req = res.requests
    assert req["completed"].all() and req["tokens_generated"].tolist() == [1, 54]
    assert (req["reused_blocks"][1], req["prefilled_blocks"][1]) == (1, 2)
    it = res.iterations
    assert it["prefill_tokens"].tolist() == [64, 74] + [0] * 53
    assert it["batch"].tolist() == [0, 0] + [1] * 53
    assert it["preempted"].sum() == 0 and res.summary["preemptions"] == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_a_request_whose_tokens_need_a_third_page_is_rejected(engine):
    # 55 outputs: 74 + 55 own tokens need three pages, the GPU has two. Rejected at once, as
    # admission checks the whole request: it is never admitted to preempt itself later
    res, trace = reuse_one_block(engine, 55)
    check_run(res, trace)
    req = res.requests
    assert req["reason"][1] == TOO_LARGE and not req["completed"][1]
    assert res.iterations["prefill_tokens"].tolist() == [64]


@pytest.mark.parametrize("chunked", [True, False])
@pytest.mark.parametrize("engine", ENGINES)
def test_a_prefill_only_step_schedules_nothing_after_its_kernel(engine, chunked):
    # Requests of one output token, a second apart: each is one prefill-only step on an idle
    # GPU. One more such request costs the run four SimPy events — its arrival's timeout, the
    # GPU's wake-up, the host overhead, the prefill kernel (one layer slot) — and no wait of
    # zero length after the kernel
    def events(n: int) -> int:
        sc = small_scenario("single_node:gpus=1", layer_groups=1, mode=engine,
                            serving={"chunked_prefill": chunked})
        trace = make_trace(arrival_at=[float(k) for k in range(n)], input_tokens=[640] * n,
                           output_tokens=[1] * n,
                           block_ids=[list(range(100 * k, 100 * k + 10)) for k in range(n)],
                           block_tokens=64)
        res = run(sc, "route", trace=trace)
        assert len(res.iterations) == n and res.requests["completed"].all()
        return res.summary["events"]

    assert events(3) - events(2) == 4


@settings(max_examples=examples(15))
@given(st.data())
@pytest.mark.parametrize("engine", ENGINES)
def test_a_request_alone_on_its_gpu_is_never_preempted(engine, data):
    # Requests one at a time (each arrives long after the one before has finished), with
    # prompts that share a prefix of whole blocks and end part-way into a block, on a GPU of a
    # few blocks, with or without chunked prefill. Alone, a request either fits the GPU when
    # done — and then never preempts itself — or is rejected at once. Until stop 67 one that
    # reused blocks and ended part-way into its last page could pass admission and then
    # preempt itself at its first decode
    weights = data.draw(st.sampled_from([71.987e9, 71.978e9, 71.96e9]), label="weights")
    chunk = data.draw(st.sampled_from([None, 64, 96]), label="chunk")
    n = data.draw(st.integers(1, 5), label="requests")
    shared = data.draw(st.integers(0, 3), label="shared prefix blocks")
    inputs = data.draw(st.lists(st.integers(1, 6 * 64), min_size=n, max_size=n), label="input")
    outputs = data.draw(st.lists(st.integers(1, 90), min_size=n, max_size=n), label="output")
    blocks = [[*range(1, 1 + min(shared, -(-t // 64))),
               *range(100 * (k + 1), 100 * (k + 1) + max(-(-t // 64) - shared, 0))]
              for k, t in enumerate(inputs)]
    trace = make_trace(arrival_at=[100.0 * k for k in range(n)], input_tokens=inputs,
                       output_tokens=outputs, block_ids=blocks, block_tokens=64)
    serving = {} if chunk is None else {"max_num_batched_tokens": chunk}
    sc = small_scenario("single_node:gpus=1", weights_per_gpu=weights, layer_groups=1,
                        mode=engine, serving=serving)
    res = run(sc, "route", trace=trace, check_invariants=engine == "exact")
    check_run(res, trace)
    cap = int(res.gpus["capacity_blocks"][0])
    req = res.requests
    assert res.summary["preemptions"] == 0 and res.iterations["preempted"].sum() == 0
    # one at a time: every request ran alone (a rejected one has no finish time)
    ends = req["finished_at"].fillna(req["arrival_at"]).to_numpy()
    assert (ends[:-1] < req["arrival_at"].to_numpy()[1:]).all()
    for k in range(n):
        own = -(-(inputs[k] + outputs[k]) // 64) - int(req["reused_blocks"][k])
        if req["completed"][k]:
            assert own <= cap and req["tokens_generated"][k] == outputs[k]
        else:
            assert req["reason"][k] == TOO_LARGE and -(-(inputs[k] + outputs[k]) // 64) > cap


@pytest.mark.parametrize("engine", ENGINES)
def test_a_gpu_whose_last_plan_only_rejected_is_seen_idle(engine):
    # One request at a time (max_batch 1): A decodes 3 tokens; B, too large for the GPU,
    # arrives meanwhile and waits for A to leave. The plan after A's last step only rejects
    # B: the loop plans again at once, finds nothing to serve, and tells the observing policy
    # its GPU is idle (no batch of its own) before it sleeps. A loop that slept at once, as
    # after a plan that nothing fits, would leave A's batch of 1 in the observations for good
    from simulator.engine.exact import _Run
    from simulator.engine.fast import FastRun
    from simulator.policies import get

    sc = small_scenario("single_node:gpus=1", weights_per_gpu=71.987e9, layer_groups=1,
                        max_batch=1, mode=engine)
    trace = make_trace(arrival_at=[0.0, 0.001], input_tokens=[64, 640], output_tokens=[3, 1],
                       block_ids=[[1], list(range(10, 20))], block_tokens=64)
    r = (_Run if engine == "exact" else FastRun)(sc, get("adaptive"), 0, trace, None)
    res = r.execute()
    assert res.requests["completed"].tolist() == [True, False]
    assert res.requests["reason"][1] == TOO_LARGE
    assert res.iterations["batch"].tolist() == [0, 1, 1]
    assert r.observed is not None and r.observed.queries[0] == 0


def _preempted_at_first_decode(engine: str):
    """The run of the two tests below: A (64 tokens, 60 outputs) and B (128, 2) on a GPU with
    room for three blocks, checked for every request accounted for."""
    sc = small_scenario("single_node:gpus=1", weights_per_gpu=71.9825e9, layer_groups=1,
                        mode=engine)
    trace = make_trace(arrival_at=[0.0, 0.0], input_tokens=[64, 128], output_tokens=[60, 2],
                       block_ids=[[1], [2, 3]], block_tokens=64)
    res = run(sc, "route", trace=trace, check_invariants=engine == "exact")
    check_run(res, trace)
    return res


@pytest.mark.parametrize("engine", ENGINES)
def test_a_prompt_preempted_at_its_first_decode_computes_one_token_again(engine):
    # A (64 tokens, 60 outputs) and B (128 tokens, 2 outputs) fill a GPU with room for three
    # blocks; both prompts end on a block boundary, so both first decodes need a page: B, the
    # later admitted, is preempted. Its blocks stay held, and its first token (the 129th) has
    # no block yet: re-admitted, it computes that one token for its second (vLLM: the prefix
    # hit is B's two whole blocks). Until stop 68 it computed its second block again, 64 tokens
    res = _preempted_at_first_decode(engine)
    assert res.gpus["capacity_blocks"].tolist() == [3]
    assert res.summary["preemptions"] == 1
    it = res.iterations
    assert it.loc[it["prefill_tokens"] > 0, "prefill_tokens"].tolist() == [64 + 128, 1]
    req = res.requests
    assert req["completed"].all() and req["tokens_generated"].tolist() == [60, 2]
    assert req["prefilled_blocks"].tolist() == [1, 2]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_recompute_after_a_preemption_makes_a_tbt_sample(engine):
    # The run above: B's first token comes with the prompts (t = 0.2268 s); preempted at its
    # first decode, its recompute (one token) is done in step 2, which gives B its second and
    # last token beside A's decode. That token is a token after B's first, so (docs/records.md,
    # TBT) it counts once, with the length of the step that made it: step 2 made 2 tokens. Until
    # the audit of the summary metrics a step's tokens were its decodes only, so B's second
    # token was in no TBT sample (nor in a capacity window): 59 step tokens + 2 first tokens
    # for 62 generated
    res = _preempted_at_first_decode(engine)
    it, req = res.iterations, res.requests
    assert res.summary["preemptions"] == 1
    recompute = it.index[it["prefill_tokens"] == 1]
    assert len(recompute) == 1 and req["finished_at"][1] == it["finished_at"][recompute[0]]
    assert it["batch"][recompute[0]] == 1 and it["tokens"][recompute[0]] == 2
    assert int(it["tokens"].sum()) + 2 == int(req["tokens_generated"].sum()) == 62
    dur = (it["finished_at"] - it["started_at"]).to_numpy()
    samples = np.repeat(dur, it["tokens"].to_numpy())  # every token after a first, once
    assert len(samples) == 60
    assert res.summary["tbt_mean"] == pytest.approx(samples.mean(), rel=1e-12)
