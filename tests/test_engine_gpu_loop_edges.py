"""The serving loop's rare turns (simulator/engine/gpu_loop.py), on both engines: a step that
only rejected or only preempted runs nothing and is not a step (its preemptions are counted in
the next step's row), and a prefill-only step ends with its kernel — nothing scheduled after
it."""

from __future__ import annotations

import pytest

from simulator import run
from simulator.engine import TOO_LARGE
from simulator.testing.invariants import check_run, small_scenario
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


@pytest.mark.parametrize("engine", ENGINES)
def test_a_request_that_preempts_itself_recomputes_at_once(engine):
    # A (64 tokens, block 1, one output token) computes block 1 and leaves. B (138 tokens:
    # blocks 1, 2, 3) reuses block 1 and computes its two missing pages whole (128 tokens, 2
    # blocks: the room's all; its own 74 tokens + 2 outputs fit 2 blocks, so it is admitted).
    # Its decode's token would be the 129th: a third block. Nobody else runs, so B preempts
    # itself: the step plans nothing and is not a step. The loop asks again at once: B is
    # re-admitted and recomputes its last page, which gives its second and last token
    trace = make_trace(arrival_at=[0.0, 1.0], input_tokens=[64, 138], output_tokens=[1, 2],
                       block_ids=[[1], [1, 2, 3]], block_tokens=64)
    res = run(two_blocks(engine), "route", trace=trace, check_invariants=engine == "exact")
    check_run(res, trace)
    assert res.gpus["capacity_blocks"].tolist() == [2]
    req = res.requests
    assert req["completed"].all() and req["tokens_generated"].tolist() == [1, 2]
    assert (req["reused_blocks"][1], req["prefilled_blocks"][1]) == (1, 2 + 1)
    it = res.iterations
    assert it["prefill_tokens"].tolist() == [64, 128, 64]
    assert it["batch"].tolist() == [0, 0, 0]
    # the preemption is counted: in the row of the step that followed at its instant
    assert it["preempted"].tolist() == [0, 0, 1] and res.summary["preemptions"] == 1
    # the recompute starts the instant B's prompt is done: the plan that only preempted took
    # no time (no host overhead of a step that ran nothing)
    assert req["first_token_at"][1] == it["finished_at"][1] == it["started_at"][2]
    assert req["finished_at"][1] == it["finished_at"][2]


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
