"""The serving loop's scheduler at its edges, each plan worked out by hand: a one-token budget,
a first chunk that finds no KV (on demand) or no budget (a whole prompt with a reservation),
admissions with nothing to compute, the preemption count a step's record takes, and what a
request leaving (preempted, detached, finished) in the middle of its prompt leaves behind."""

from __future__ import annotations

from collections import deque

from simulator.engine.scheduler import Scheduler, ServingSpec
from tests.test_engine_scheduler import Blocks, apply


def test_a_one_token_budget_still_moves_a_prompt_one_token_a_step():
    # a budget of 1 token and a 3-token prompt: the admission takes the 1 token (a chunk of 1,
    # 2 left), then each next step gives the last token of the budget to the running prompt
    # (2 -> 1 -> 0 left); its first token comes with the 3rd chunk and it decodes in step 4
    pool = Blocks(prompt=[3], out=[2], cap=10**6)
    sched = Scheduler(ServingSpec(max_num_batched_tokens=1), pool, max_num_seqs=4)
    q = deque([0])
    p = sched.step(q)
    assert (p.admitted, p.chunks, p.prompt_done) == ([0], [(0, 1)], [])
    assert sched.prefill_left == {0: 2}
    apply(pool, sched, p)
    p = sched.step(q)
    assert (p.admitted, p.decode, p.chunks, p.prompt_done) == ([], [], [(0, 1)], [])
    assert sched.prefill_left == {0: 1}
    apply(pool, sched, p)
    p = sched.step(q)
    assert (p.decode, p.chunks, p.prompt_done) == ([], [(0, 1)], [0])
    apply(pool, sched, p)
    p = sched.step(q)
    assert (p.decode, p.chunks, p.tokens) == ([0], [], 1)
    assert apply(pool, sched, p) == [0]


def test_a_one_token_prompt_that_finds_no_block_waits_and_holds_nothing():
    # 4-token blocks, 3 in all. r0 (8-token prompt, 4 out: 12 tokens, 3 blocks, fits alone)
    # takes 2 blocks in step 1. In step 2 its 9th token takes the 3rd block, so r1's 1-token
    # prompt (1 block, fits alone) finds none: it is not admitted, gives back what `admit` set
    # up (nothing of r1 left in the pool) and waits. r0 decodes in steps 3 and 4 (tokens 10 and
    # 11, still 3 blocks) and finishes with its 4th token; in step 5 r1 gets its block
    pool = Blocks(prompt=[8, 1], out=[4, 1], cap=3)
    sched = Scheduler(ServingSpec(max_num_batched_tokens=8), pool, max_num_seqs=4)
    q = deque([0, 1])
    p = sched.step(q)
    assert (p.admitted, p.chunks, p.prompt_done) == ([0], [(0, 8)], [0])
    apply(pool, sched, p)
    p = sched.step(q)
    assert (p.decode, p.admitted, p.chunks, p.preempted) == ([0], [], [], [])
    assert list(q) == [1] and pool.held == {0: 3}
    apply(pool, sched, p)
    for _ in range(2):
        p = sched.step(q)
        assert (p.decode, p.admitted) == ([0], [])
        done = apply(pool, sched, p)
    assert done == [0] and pool.held == {}
    p = sched.step(q)
    assert (p.admitted, p.chunks, p.prompt_done) == ([1], [(1, 1)], [1])
    assert pool.held == {1: 1}


def test_a_whole_prompt_past_the_budget_left_waits_without_keeping_its_reservation():
    # whole prompts, reservations of prompt + output (4-token blocks, 10 in all), 8 tokens a
    # step. Step 1: r0 reserves 2 blocks (4 + 4 tokens) and computes its 4-token prompt; r1
    # reserves 6 (20 + 4 tokens) but its 20 tokens exceed the 4 left and it is not the step's
    # first chunk: it waits, and its 6 blocks go back. Step 2: r0 decodes (7 of the budget
    # left) and r1, now the step's first chunk, runs whole: 2 + 6 = 8 <= 10 blocks. Had r1
    # kept its 6 blocks while waiting, 2 + 6 + 6 = 14 > 10 would have kept it out
    pool = Blocks(prompt=[4, 20], out=[4, 4], cap=10, reserve=True)
    spec = ServingSpec(max_num_batched_tokens=8, chunked_prefill=False, kv_allocation="reserve")
    sched = Scheduler(spec, pool, max_num_seqs=4)
    q = deque([0, 1])
    p = sched.step(q)
    assert (p.admitted, p.chunks, p.prompt_done) == ([0], [(0, 4)], [0])
    assert list(q) == [1] and pool.held == {0: 2}
    apply(pool, sched, p)
    p = sched.step(q)
    assert (p.decode, p.admitted, p.chunks, p.prompt_done) == ([0], [1], [(1, 20)], [1])
    assert not q and pool.held == {0: 2, 1: 6}


def test_each_request_with_nothing_to_compute_takes_exactly_one_token_of_the_budget():
    # three prompts with nothing to compute (0 tokens), 2 tokens a step: the first two take
    # one token each (2 -> 1 -> 0) and get their first token with the step; the third waits,
    # and in step 2 the two decodes use the whole budget, so it waits again
    pool = Blocks(prompt=[0, 0, 0], out=[5, 5, 5], cap=10**6)
    sched = Scheduler(ServingSpec(max_num_batched_tokens=2), pool, max_num_seqs=8)
    q = deque([0, 1, 2])
    p = sched.step(q)
    assert (p.admitted, p.prompt_done, p.chunks, p.tokens) == ([0, 1], [0, 1], [], 0)
    assert list(q) == [2]
    apply(pool, sched, p)
    p = sched.step(q)
    assert (p.decode, p.admitted) == ([0, 1], []) and list(q) == [2]


def _preempting_story():
    # the story of test_a_prompt_chunk_that_finds_no_kv_preempts_the_newest_request: 4-token
    # blocks, 4 in all, 8 tokens a step. Step 1: r0's 4-token prompt (1 block) and the first
    # 4 of r1's 12 (1 block, 8 left). Step 2: r0's 5th token takes a 2nd block; r1's next 7
    # tokens need 2 more (3 + 2 > 4): r1, the newest, is preempted, 8 tokens of prompt left
    pool = Blocks(prompt=[4, 12], out=[4, 4], cap=4)
    sched = Scheduler(ServingSpec(max_num_batched_tokens=8), pool, max_num_seqs=8)
    q = deque([0, 1])
    return pool, sched, q


def test_a_step_record_counts_each_preemption_once():
    # take_preempted gives the preemptions since its last call: none after step 1, the one of
    # step 2 when step 2 is recorded, none when asked again, none after step 3 (which only
    # re-admits r1), and the total stays 1
    pool, sched, q = _preempting_story()
    apply(pool, sched, sched.step(q))
    assert sched.take_preempted() == 0
    p = sched.step(q)
    assert p.preempted == [1]
    assert sched.take_preempted() == 1
    assert sched.take_preempted() == 0
    apply(pool, sched, p)
    p = sched.step(q)
    assert (p.preempted, p.admitted) == ([], [1])
    assert sched.take_preempted() == 0 and sched.preemptions == 1


def test_a_request_preempted_in_its_prompt_is_no_longer_counted_as_prefilling():
    # prefill_left holds running requests still computing their prompt: r1, preempted with 8
    # of its 12 prompt tokens left, is back in the queue and out of it; re-admitted in step 3
    # it starts over (its 12 tokens, 7 of them in this step's chunk: 5 left)
    pool, sched, q = _preempting_story()
    apply(pool, sched, sched.step(q))
    assert sched.prefill_left == {1: 8}
    p = sched.step(q)
    assert p.preempted == [1] and list(q) == [1]
    assert sched.running == [0] and sched.prefill_left == {}
    apply(pool, sched, p)
    p = sched.step(q)
    assert p.chunks == [(1, 7)] and sched.prefill_left == {1: 5}


def test_a_request_detached_in_its_prompt_leaves_running_and_prefilling_but_keeps_its_kv():
    # r0's 20-token prompt, 8 tokens a step: after step 1 it has 12 left (8 tokens: 2 blocks
    # of 4). Detached, it leaves the scheduler altogether — not running, nothing left to
    # prefill, so the next step plans nothing for it — while the pool keeps its 2 blocks
    # until the engine releases them
    pool = Blocks(prompt=[20], out=[3], cap=10**6)
    sched = Scheduler(ServingSpec(max_num_batched_tokens=8), pool, max_num_seqs=4)
    q = deque([0])
    p = sched.step(q)
    assert p.chunks == [(0, 8)] and sched.prefill_left == {0: 12}
    apply(pool, sched, p)
    sched.detach(0)
    assert sched.running == [] and len(sched) == 0 and sched.prefill_left == {}
    assert pool.held == {0: 2}
    p = sched.step(q)
    assert (p.decode, p.chunks, p.admitted) == ([], [], []) and not p


def test_a_request_finished_in_its_prompt_leaves_nothing_behind():
    # r0's 20-token prompt, 8 tokens a step, 12 left after step 1 (2 blocks); the engine
    # retires it there (finish): not running, nothing left to prefill, its 2 blocks given back
    pool = Blocks(prompt=[20], out=[3], cap=10**6)
    sched = Scheduler(ServingSpec(max_num_batched_tokens=8), pool, max_num_seqs=4)
    q = deque([0])
    p = sched.step(q)
    assert p.chunks == [(0, 8)] and sched.prefill_left == {0: 12} and pool.held == {0: 2}
    sched.finish(0)
    assert sched.running == [] and sched.prefill_left == {} and pool.held == {}
