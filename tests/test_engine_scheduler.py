"""The serving loop's scheduler: stories with known plans, then properties of every schedule
(budget, no starved decodes, KV within capacity, every request accounted for), then the engines
that use it (a chunked prefill's time is its operators'; preempted requests complete)."""

from __future__ import annotations

import math
from collections import deque
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import run
from simulator.engine.scheduler import (
    LEGACY,
    STEP_OVERHEAD_EAGER,
    STEP_OVERHEAD_GRAPHS,
    Scheduler,
    ServingSpec,
    validate_serving,
)
from simulator.errors import UserError
from simulator.testing.invariants import check_run, small_scenario
from simulator.testing.oracle import ep_rank_time
from workloads.schema import make_trace


class Blocks:
    """A KV pool in blocks of ``bt`` tokens: a request owns ``ceil(tokens / bt)`` blocks
    (on demand) or its whole prompt + output (``reserve``), out of ``cap`` blocks."""

    def __init__(self, prompt, out, cap: int, bt: int = 4, reserve: bool = False) -> None:
        self.prompt, self.out, self.cap, self.bt, self.reserve = prompt, out, cap, bt, reserve
        self.gen = [0] * len(prompt)
        self.tokens: dict[int, int] = {}
        self.held: dict[int, int] = {}
        self.computed = [0] * len(prompt)  # prompt tokens computed, all admissions

    @property
    def used(self) -> int:
        return sum(self.held.values())

    def blocks(self, tokens: int) -> int:
        return -(-tokens // self.bt)

    def admit(self, r):
        full = self.blocks(self.prompt[r] + self.out[r])
        if full > self.cap:
            return None
        if self.reserve:
            if self.used + full > self.cap:
                return -1
            self.held[r] = full
        else:
            self.held[r] = 0
        self.tokens[r] = 0
        return self.prompt[r] + self.gen[r]  # recompute the context after a preemption

    def grow(self, r, tokens):
        if self.reserve:
            return True
        need = self.blocks(self.tokens[r] + tokens) - self.held[r]
        if self.used + need > self.cap:
            return False
        self.held[r] += need
        self.tokens[r] += tokens
        return True

    def release(self, r):
        self.held.pop(r, None)
        self.tokens.pop(r, None)


def apply(pool: Blocks, sched: Scheduler, plan) -> list[int]:
    """What an engine does with a plan: tokens generated, finished requests leave."""
    for r, c in plan.chunks:
        pool.computed[r] += c
    for r in plan.prompt_done + plan.decode:
        pool.gen[r] += 1
    done = [r for r in sched.running if pool.gen[r] >= pool.out[r]]
    for r in done:
        sched.finish(r)
    return done


# -- stories -------------------------------------------------------------------------------


def test_a_long_prompt_is_cut_into_chunks_under_the_budget_and_others_fill_the_rest():
    pool = Blocks(prompt=[25, 3], out=[5, 5], cap=10**6)
    sched = Scheduler(ServingSpec(max_num_batched_tokens=10), pool, max_num_seqs=4)
    q = deque([0, 1])
    p = sched.step(q)
    assert (p.chunks, p.admitted, p.decode, p.prompt_done) == ([(0, 10)], [0], [], [])
    apply(pool, sched, p)
    p = sched.step(q)
    assert (p.chunks, p.admitted) == ([(0, 10)], [])
    apply(pool, sched, p)
    p = sched.step(q)  # 5 left of r0; 5 of the budget left for r1's 3
    assert (p.chunks, p.admitted, p.prompt_done) == ([(0, 5), (1, 3)], [1], [0, 1])
    apply(pool, sched, p)
    p = sched.step(q)
    assert (p.decode, p.chunks, p.tokens) == ([0, 1], [], 2)


def test_a_step_seq_limit_lowers_the_running_cap_but_never_raises_it():
    pool = Blocks(prompt=[1] * 6, out=[9] * 6, cap=10**6)
    sched = Scheduler(ServingSpec(), pool, max_num_seqs=3)
    q = deque(range(6))
    assert sched.step(q, seq_limit=2).admitted == [0, 1]
    assert sched.step(q, seq_limit=10).admitted == [2]  # max_num_seqs = 3 still holds
    assert len(sched) == 3 and list(q) == [3, 4, 5]


def test_each_decode_takes_kv_for_one_token():
    # on demand, 4-token blocks: a 4-token prompt, then one token of KV per decode step
    pool = Blocks(prompt=[4], out=[9], cap=10**6)
    sched = Scheduler(ServingSpec(), pool, max_num_seqs=1)
    q = deque([0])
    apply(pool, sched, sched.step(q))
    assert pool.tokens[0] == 4
    for step in range(1, 5):
        p = sched.step(q)
        assert p.decode == [0] and p.tokens == 1
        apply(pool, sched, p)
        assert pool.tokens[0] == 4 + step and pool.held[0] == pool.blocks(4 + step)


def test_a_step_whose_decodes_use_the_whole_budget_admits_nothing():
    # without chunking the step's first prompt may run past the budget — but only while some
    # budget is left: two decodes use all of 2 tokens, so the waiting prompt waits
    pool = Blocks(prompt=[1, 1, 5], out=[9, 9, 9], cap=10**6)
    sched = Scheduler(ServingSpec(max_num_batched_tokens=2, chunked_prefill=False), pool, 8)
    q = deque([0, 1, 2])
    p = sched.step(q)
    assert p.admitted == [0, 1] and p.chunks == [(0, 1), (1, 1)]
    apply(pool, sched, p)
    p = sched.step(q)
    assert p.decode == [0, 1] and p.admitted == [] and p.chunks == [] and list(q) == [2]


def test_a_prompt_chunk_that_finds_no_kv_preempts_the_newest_request():
    # 4-token blocks, 4 blocks, 8 tokens a step; each request alone fits (2 and 4 blocks).
    # Step 1: r0's 4-token prompt (1 block) and r1's first 4 of 12 (1 block). Step 2: r0
    # decodes (its 5th token: a 2nd block); r1's next 7 tokens need 2 more blocks (3 + 2 > 4):
    # r1, the newest, is preempted (its block released) and goes back to the queue's front.
    # A step that preempted admits no one (vLLM v1: `if not preempted_reqs`), so r1 starts
    # over only in step 3: 7 tokens of its prompt again (2 blocks: 4 in all)
    pool = Blocks(prompt=[4, 12], out=[4, 4], cap=4)
    sched = Scheduler(ServingSpec(max_num_batched_tokens=8), pool, 8)
    q = deque([0, 1])
    p = sched.step(q)
    assert p.chunks == [(0, 4), (1, 4)] and p.prompt_done == [0]
    apply(pool, sched, p)
    p = sched.step(q)
    assert (p.decode, p.preempted, p.admitted, p.chunks) == ([0], [1], [], [])
    assert sched.preemptions == 1 and sched.running == [0] and list(q) == [1]
    assert pool.used == 2
    apply(pool, sched, p)
    p = sched.step(q)
    assert (p.decode, p.preempted, p.admitted, p.chunks) == ([0], [], [1], [(1, 7)])
    assert sched.running == [0, 1] and pool.tokens[1] == 7 and pool.used == 4


def test_decodes_come_first_and_a_new_prompt_gets_what_they_leave():
    pool = Blocks(prompt=[1, 1, 100], out=[50, 50, 5], cap=10**6)
    sched = Scheduler(ServingSpec(max_num_batched_tokens=16), pool, max_num_seqs=8)
    q = deque([0, 1])
    apply(pool, sched, sched.step(q))  # both prompts in one step
    q.append(2)
    p = sched.step(q)
    assert p.decode == [0, 1] and p.chunks == [(2, 14)] and p.tokens == 16


def test_without_chunked_prefill_whole_prompts_run_and_the_budget_caps_the_step():
    pool = Blocks(prompt=[30, 8, 8], out=[3, 3, 3], cap=10**6)
    sched = Scheduler(ServingSpec(max_num_batched_tokens=16, chunked_prefill=False), pool, 8)
    q = deque([0, 1, 2])
    p = sched.step(q)  # the first prompt runs whole even past the budget; the next must fit
    assert p.chunks == [(0, 30)] and p.prompt_done == [0]
    apply(pool, sched, p)
    p = sched.step(q)
    assert p.decode == [0] and p.chunks == [(1, 8)] and p.admitted == [1]


def test_when_kv_runs_out_the_newest_request_is_preempted_and_recomputes():
    # 4-token blocks, 6 blocks: two requests of 8-token prompts take 2 blocks each and grow
    pool = Blocks(prompt=[8, 8], out=[12, 12], cap=5)
    sched = Scheduler(ServingSpec(), pool, max_num_seqs=4)
    q = deque([0, 1])
    apply(pool, sched, sched.step(q))
    preempted = []
    for _ in range(100):
        p = sched.step(q)
        preempted += p.preempted
        apply(pool, sched, p)
        assert pool.used <= pool.cap
        if not sched.running and not q:
            break
    assert preempted and preempted[0] == 1  # the newest goes first
    assert pool.gen == [12, 12] and sched.preemptions == len(preempted)
    assert pool.computed[1] > 8  # it recomputed its context after the preemption


def test_a_request_that_cannot_fit_even_alone_is_rejected_and_the_next_runs():
    pool = Blocks(prompt=[400, 8], out=[10, 2], cap=20)
    sched = Scheduler(ServingSpec(), pool, max_num_seqs=4)
    p = sched.step(deque([0, 1]))
    assert p.rejected == [0] and p.admitted == [1]


def test_serving_section_is_validated_with_the_field_named():
    assert validate_serving(None) == ServingSpec()
    assert validate_serving({"chunked_prefill": False}).chunked_prefill is False
    for raw, field in (({"max_num_batched_tokens": 0}, "max_num_batched_tokens"),
                       ({"kv_allocation": "lazy"}, "kv_allocation"),
                       ({"cuda_graphs": 1}, "cuda_graphs"),
                       ({"step_overhead_time": -1.0}, "step_overhead_time"),
                       ({"max_num_seq": 4}, "max_num_seq"),
                       ({"max_num_seqs": True}, "max_num_seqs"),
                       ({"max_num_seqs": 2.0}, "max_num_seqs"),
                       ({"chunked_prefill": 1}, "chunked_prefill"),
                       ({"step_overhead_time": 1.0}, "step_overhead_time"),
                       ({"step_overhead_time": True}, "step_overhead_time"),
                       ({"step_overhead_time": "0"}, "step_overhead_time")):
        with pytest.raises(UserError, match=f"x.toml: field 'serving.{field}'"):
            validate_serving(raw, "x.toml")
    with pytest.raises(UserError, match="x.toml: field 'serving': must be a table"):
        validate_serving([1], "x.toml")
    # the smallest values allowed, each kept as given
    low = validate_serving({"max_num_batched_tokens": 1, "max_num_seqs": 1, "cuda_graphs": False,
                            "kv_allocation": "on_demand", "step_overhead_time": 0})
    assert low == ServingSpec(max_num_batched_tokens=1, max_num_seqs=1, cuda_graphs=False,
                              kv_allocation="on_demand", step_overhead_time=0.0)
    assert validate_serving({"kv_allocation": "reserve"}).kv_allocation == "reserve"
    assert isinstance(low.step_overhead_time, float)
    assert ServingSpec().overhead_time() == STEP_OVERHEAD_GRAPHS
    assert ServingSpec(cuda_graphs=False).overhead_time() == STEP_OVERHEAD_EAGER
    assert ServingSpec(step_overhead_time=0.0).overhead_time() == 0.0
    assert LEGACY.overhead_time() == 0.0 and not LEGACY.chunked_prefill


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=120)
@given(prompts=st.lists(st.integers(0, 40), min_size=1, max_size=8),
       outs=st.data(), budget=st.integers(1, 48), seqs=st.integers(1, 5),
       cap=st.integers(1, 40), chunked=st.booleans(), reserve=st.booleans())
def test_every_schedule_keeps_its_promises(prompts, outs, budget, seqs, cap, chunked, reserve):
    out = [outs.draw(st.integers(1, 12)) for _ in prompts]
    pool = Blocks(prompts, out, cap, reserve=reserve)
    spec = ServingSpec(max_num_batched_tokens=budget, chunked_prefill=chunked)
    sched = Scheduler(spec, pool, max_num_seqs=seqs)
    q = deque(range(len(prompts)))
    rejected, finished, preempted = set(), set(), set()
    for _ in range(5000):
        decoding = [r for r in sched.running if r not in sched.prefill_left]
        p = sched.step(q)
        # decodes are never starved: every decoding request runs or was preempted
        assert set(decoding) <= set(p.decode) | set(p.preempted)
        assert set(p.decode).isdisjoint({r for r, _ in p.chunks})
        if chunked:
            assert p.tokens <= budget
        else:  # a whole prompt may exceed the budget only as the step's first chunk
            assert len(p.decode) + sum(c for _, c in p.chunks[1:]) <= budget or not p.chunks
        assert len(sched.running) <= seqs
        assert pool.used <= cap
        rejected |= set(p.rejected)
        preempted |= set(p.preempted)
        finished |= set(apply(pool, sched, p))
        if not q and not sched.running:
            break
    else:
        raise AssertionError("the schedule never drained")
    # every request is accounted for: completed, or rejected because it cannot fit alone
    assert finished | rejected == set(range(len(prompts))) and not finished & rejected
    for r in rejected:
        assert pool.blocks(prompts[r] + out[r]) > cap
    for r in finished:
        assert pool.gen[r] == out[r] and pool.computed[r] >= prompts[r]
    assert not preempted or not reserve  # a whole reservation never runs out


class BlocksEach(Blocks):
    """:class:`Blocks` offering ``grow_each`` (the scheduler's bulk path for a step's decodes)."""

    def grow_each(self, rs):
        k = 0
        for r in rs:
            if not self.grow(r, 1):
                break
            k += 1
        return k


@settings(max_examples=120)
@given(prompts=st.lists(st.integers(0, 40), min_size=1, max_size=8),
       outs=st.data(), budget=st.integers(1, 48), seqs=st.integers(1, 5),
       cap=st.integers(1, 40), chunked=st.booleans())
def test_growing_a_steps_decodes_at_once_plans_as_one_at_a_time(prompts, outs, budget, seqs,
                                                                 cap, chunked):
    """The bulk path (``grow_each``, then one by one from the first decode that does not fit)
    gives every step the plan the call-per-request loop gives, preemptions included."""
    out = [outs.draw(st.integers(1, 12)) for _ in prompts]
    spec = ServingSpec(max_num_batched_tokens=budget, chunked_prefill=chunked)
    pools = [Blocks(prompts, out, cap), BlocksEach(prompts, out, cap)]
    scheds = [Scheduler(spec, pool, max_num_seqs=seqs) for pool in pools]
    queues = [deque(range(len(prompts))), deque(range(len(prompts)))]
    for _ in range(5000):
        plans = [s.step(q) for s, q in zip(scheds, queues, strict=True)]
        assert plans[0] == plans[1]
        assert pools[0].held == pools[1].held and list(queues[0]) == list(queues[1])
        for pool, sched, plan in zip(pools, scheds, plans, strict=True):
            apply(pool, sched, plan)
        if not queues[0] and not scheds[0].running:
            break


@settings(max_examples=100)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=30),
       st.floats(1.0, 1e6), st.floats(0.0, 3e6), st.floats(0.0, 2e6))
def test_a_byte_pool_grows_each_decode_as_grow_does_to_the_last_bit(rs, per_token, cap, used):
    from simulator.disaggregation.byte_pool import BytePool

    pools = [BytePool(None, per_token, cap, False, lambda r: 0) for _ in range(2)]
    for pool in pools:
        pool.used = pool.peak = used
        pool.held = {r: 0.1 * r for r in range(6)}
    k = 0
    for r in rs:  # one call each, to the first that does not fit
        if not pools[0].grow(r, 1):
            break
        k += 1
    assert pools[1].grow_each(rs) == k
    assert (pools[1].used, pools[1].peak, pools[1].held) == \
        (pools[0].used, pools[0].peak, pools[0].held)


# -- the engines that use it -----------------------------------------------------------------


def _one_request(tokens: int, output: int = 3):
    blocks = -(-tokens // 64)
    return make_trace(arrival_at=[0.0], input_tokens=[tokens], output_tokens=[output],
                      block_ids=[list(range(blocks))], block_tokens=64)


def test_a_chunked_prefill_takes_its_operators_time_step_by_step():
    # 20,000 prompt tokens under an 8,192-token budget: three prefill-only steps
    from simulator.gpu.calibration import run_kernels
    from simulator.hardware import gpu
    from simulator.models import model

    sc = small_scenario("single_node:gpus=2", layer_groups=1)
    trace = _one_request(20_000)
    res = run(sc, "route", trace=trace)
    km = run_kernels({}, cuda_graphs=sc.serving.cuda_graphs)  # the run's (measured) kernels
    spec, arch = gpu("H100"), model("deepseek-v3.2")
    over = sc.serving.overhead_time()
    expect, cached = 0.0, 0
    for chunk, samples in ((8192, 0), (8192, 0), (20_000 - 2 * 8192, 1)):
        # the LM head computes logits only for the row that samples (the last chunk's); the GPU
        # is a rank of the run's 2, each carrying as much, and attends its own chunk
        expect += over + ep_rank_time(km, spec, arch, chunk, samples, 2, decode=0) \
            + km.prefill_attention_time(spec, arch, chunk, cached)
        cached += chunk
    assert res.requests["first_token_at"][0] == pytest.approx(expect, rel=1e-12)
    it = res.iterations
    assert it["prefill_tokens"].tolist()[:3] == [8192, 8192, 20_000 - 2 * 8192]


def test_a_gpu_prefills_at_its_own_rate_however_many_gpus_the_run_has():
    # a 20,000-token prompt alone, on 2 GPUs and on 16 (2 DGX H100): each GPU is a rank of the
    # run's instance, every rank prefilling as much, so only its share of the experts' weights
    # differs — its first token comes no more than 10 % sooner on 16 (2.32 s against 2.48).
    # Until stop 69 a GPU's projections and FFN were shared among all the run's GPUs: 1.07 s on
    # 16 against 1.84 s on 2. The rate, against DeepSeek's production prefill (REFERENCE.md:
    # ~73.7k input tokens/s per H800 node at a 56.3 % cache hit rate, i.e. ~4.0k computed
    # tokens/s per GPU, DeepSeek-V3 with dense MLA): within 3× of it (8.1k and 8.6k tokens/s),
    # where the old charge gave 18.6k on 16 GPUs
    first = {}
    for topo in ("single_node:gpus=2", "dgx_h100:nodes=2"):
        res = run(small_scenario(topo, layer_groups=1), "route", trace=_one_request(20_000))
        first[topo] = float(res.requests["first_token_at"][0])
    assert first["dgx_h100:nodes=2"] > 0.9 * first["single_node:gpus=2"]
    per_gpu = 73.7e3 * (1 - 0.563) / 8  # computed tokens/s of one H800
    assert all(per_gpu < 20_000 / t < 3 * per_gpu for t in first.values()), first


def test_legacy_serving_prefills_whole_prompts_in_one_kernel():
    from simulator.gpu.calibration import run_kernels
    from simulator.hardware import gpu
    from simulator.models import model

    sc = small_scenario("single_node:gpus=2", layer_groups=1).with_changes(serving=LEGACY)
    res = run(sc, "route", trace=_one_request(20_000))
    km = run_kernels({}, cuda_graphs=sc.serving.cuda_graphs)
    # a rank of the run's 2 GPUs, each prefilling as much: the whole prompt's projections +
    # FFN (one sampled row) and its causal attention
    spec, arch = gpu("H100"), model("deepseek-v3.2")
    whole = ep_rank_time(km, spec, arch, 20_000, 1, 2, decode=0) \
        + km.prefill_attention_time(spec, arch, 20_000, 0)
    assert res.requests["first_token_at"][0] == pytest.approx(whole, rel=1e-12)


def test_the_engine_preempts_when_kv_runs_out_and_every_request_still_completes():
    # ≈ 0.9 GB of KV per GPU (≈ 200 blocks of 64 tokens): four 6,000-token requests that grow
    trace = make_trace(arrival_at=[0.0] * 4, input_tokens=[3000] * 4,
                       output_tokens=[3500] * 4,
                       block_ids=[list(range(k * 100, k * 100 + 47)) for k in range(4)],
                       block_tokens=64)
    sc = small_scenario("single_node:gpus=1", weights_per_gpu=71.1e9, max_batch=4,
                        layer_groups=1)
    res = run(sc, "route", trace=trace, check_invariants=True)
    check_run(res, trace)
    assert res.requests["completed"].all()
    assert res.summary["preemptions"] > 0
    assert res.iterations["preempted"].sum() == res.summary["preemptions"]


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_long_prompt_preempted_in_its_prefill_keeps_the_blocks_it_computed(engine):
    # ≈ 200 blocks of KV on one GPU, 2,048 tokens a step. A (6,000-token prompt, 94 blocks)
    # decodes while B (7,000 tokens, 110 blocks) prefills in chunks; B's last chunk finds no
    # room (94 + 110 > 200) and B, the newest, is preempted. It keeps the whole blocks its
    # chunks filled (as vLLM's prefix cache does), so once A is done it computes only the rest:
    # fewer than 2 x 110 blocks prefilled in all (recomputing from its first token: 220)
    trace = make_trace(arrival_at=[0.0, 0.0], input_tokens=[6000, 7000],
                       output_tokens=[500, 5],
                       block_ids=[list(range(94)), list(range(1000, 1110))], block_tokens=64)
    sc = small_scenario("single_node:gpus=1", weights_per_gpu=71.1e9, max_batch=4,
                        layer_groups=1, mode=engine,
                        serving={"max_num_batched_tokens": 2048})
    res = run(sc, "route", trace=trace, check_invariants=engine == "exact")
    check_run(res, trace)
    req = res.requests
    assert req["completed"].all() and res.summary["preemptions"] >= 1
    assert 110 < req["prefilled_blocks"][1] < 2 * 110
    assert req["prefilled_blocks"][0] == 94


@pytest.mark.parametrize("scenario", ["lamina_llama_33b", "lamina_llama3_70b"])
def test_the_pool_loops_use_the_same_scheduler(scenario):
    from pathlib import Path

    from simulator import Scenario

    path = Path(__file__).resolve().parents[1] / "scenarios" / f"{scenario}.toml"
    sc = Scenario.load(path)
    sc = sc.with_changes(engine=sc.engine.__class__(layer_groups=2, max_requests=60),
                         serving=ServingSpec(max_num_batched_tokens=512))
    for policy in ("disaggregated", "homogeneous"):
        res = run(sc, policy)
        req = res.requests
        assert len(req) == 60 and req["completed"].sum() + (req["reason"] != "").sum() == 60
        it = res.iterations
        # every step computes at most the budget: decode tokens + prefill chunk tokens
        assert (it["batch"] + it["prefill_tokens"]).max() <= 512
        assert math.isfinite(res.summary["tbt_p50"]) and np.all(it["finished_at"]
                                                                 >= it["started_at"])


def test_requests_with_nothing_to_compute_take_a_token_of_the_budget_each():
    # found by the property above: two prompts arriving with nothing to compute, a budget of
    # one token — admitting both at once made the next step decode two tokens. Each takes one
    # token of the budget when admitted, so the second waits until the first is done
    pool = Blocks([0, 0], [3, 3], 4, reserve=False)
    sched = Scheduler(ServingSpec(max_num_batched_tokens=1, chunked_prefill=True), pool,
                      max_num_seqs=2)
    q = deque([0, 1])
    plans = []
    while q or sched.running:
        plans.append(sched.step(q))
        apply(pool, sched, plans[-1])
    assert plans[0].admitted == [0] and plans[0].prompt_done == [0]
    assert all(p.tokens <= 1 for p in plans)
    assert [p.admitted for p in plans].count([1]) == 1


# -- a step's prefill chunks, as the serving loop prices them (gpu_loop.chunk_work) -------------


class _Kernels:
    """Records each chunk's (new tokens, cached tokens) and prices it at 1 s per token."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int]] = []

    def prefill_attention_time(self, spec, arch, new_tokens, cached_tokens, gpus=1) -> float:
        self.asked.append((new_tokens, cached_tokens))
        return float(new_tokens + cached_tokens)


def _chunk_run(prompt: int, generated: int):
    kernels = _Kernels()
    req = SimpleNamespace(inp=np.array([prompt]), gen=np.array([generated]),
                          take_rotary=lambda g, r: 0.0)
    run = SimpleNamespace(req=req, kernels=kernels, costs=SimpleNamespace(na=lambda *a: 0.0),
                          gpus=[SimpleNamespace(spec="gpu")], arch=SimpleNamespace(layers=2),
                          attention_gpus=1)
    return run, kernels


@pytest.mark.parametrize(("generated", "left_after", "chunk", "cached"), [
    (0, 500, 256, 1000 - 756),  # a first prefill: the prompt's tokens before this chunk
    (7, 500, 256, 1007 - 756),  # a recompute after preemption: its generated tokens too
    (7, 0, 251, 1007 - 251),  # the recompute's last chunk
])
def test_a_chunk_attends_the_tokens_computed_before_it(generated, left_after, chunk, cached):
    """A chunk of ``chunk`` tokens with ``left_after`` still to compute after it attends the
    context before it: the prompt and (after a preemption) the generated tokens, less what is
    left including this chunk."""
    from simulator.engine.gpu_loop import chunk_work
    from simulator.engine.scheduler import StepPlan

    run, kernels = _chunk_run(1000, generated)
    sched = SimpleNamespace(prefill_left={0: left_after} if left_after else {})
    work, per_layer = chunk_work(run, 0, sched, StepPlan(chunks=[(0, chunk)]))
    assert kernels.asked == [(chunk, cached)]
    assert work == chunk + cached and per_layer == (chunk + cached) / 2


@pytest.mark.parametrize("decodes", [0, 3])
def test_a_chunks_share_of_an_mla_step_runs_no_absorbed_products_for_its_prompt_tokens(decodes):
    """DeepSeek-V3.2: a step of ``decodes`` decoding tokens and a 256-token chunk charges the
    chunk the step's projections and FFN less the decodes' own, with MLA's absorbed
    ``W_UK``/``W_UV`` for the decoding rows only (a prompt token's attention is the unabsorbed
    path, in ``prefill_attention_time``)."""
    from simulator.engine.gpu_loop import chunk_work
    from simulator.engine.scheduler import StepPlan
    from simulator.engine.stepcosts import StepCosts
    from simulator.gpu.profiled import ProfiledKernels
    from simulator.hardware import gpu
    from simulator.models import model

    ds, h100, chunk = model("deepseek-v3.2"), gpu("H100"), 256
    pk = ProfiledKernels()
    req = SimpleNamespace(inp=np.array([1000]), gen=np.array([0]), take_rotary=lambda g, r: 0.0)
    costs = StepCosts(pk, None, ds, [SimpleNamespace(spec=h100)], ["g0"], req, False)
    run = SimpleNamespace(req=req, kernels=pk, costs=costs, gpus=[SimpleNamespace(spec=h100)],
                          arch=ds, attention_gpus=1)
    sched = SimpleNamespace(prefill_left={0: 1000 - chunk})
    plan = StepPlan(decode=list(range(1, decodes + 1)), chunks=[(0, chunk)])
    work, per_layer = chunk_work(run, 0, sched, plan)
    na = pk.non_attention_time(h100, ds, decodes + chunk, logits=decodes, decode_rows=decodes) \
        - pk.non_attention_time(h100, ds, decodes)
    assert work == pytest.approx(na + per_layer * ds.layers, rel=1e-12)
    # the absorbed products at every token would cost more: they are charged per decoding row
    every = pk.non_attention_time(h100, ds, decodes + chunk, logits=decodes) \
        - pk.non_attention_time(h100, ds, decodes)
    assert every > na * (1 + 1e-3)
