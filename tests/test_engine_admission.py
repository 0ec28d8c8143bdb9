"""A request's bookkeeping through admission, reuse, preemption and release, on a real
:class:`Admission` (one directory, one to four GPUs), with block counts worked out by hand.

64-token blocks throughout: a prompt of ``n`` tokens is ``ceil(n / 64)`` blocks; reserving a
request counts its prompt and output tokens, less the blocks it reuses from the directory.
"""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from simulator.engine.admission import TOO_LARGE, Admission
from simulator.engine.scheduler import ServingSpec
from simulator.kvcache import BlockDirectory, DirectoryConfig
from simulator.scenario import PlacementSpec
from workloads.schema import make_trace

BT = 64


def admission(cap: int, prompts, inputs, outputs, kv_allocation: str = "reserve", *,
              gpus: int = 1, reuse: str = "prefix", home: str = "least_loaded", repo=None,
              sessions=None, spans=None, rotary_time=None, progress=None,
              homes=None) -> Admission:
    """A real :class:`Admission`: ``gpus`` GPUs of ``cap`` KV blocks each, nothing cached;
    ``prompts`` are the requests' block ids; ``homes`` the GPUs that decode (default all)."""
    d = BlockDirectory(DirectoryConfig("first_writer", gpus, (cap,) * gpus, 0, (0,) * gpus,
                                       tuple((0.0,) * gpus for _ in range(gpus)), 1))
    trace = make_trace(arrival_at=[0.0] * len(inputs), input_tokens=list(inputs),
                       output_tokens=list(outputs), block_ids=prompts, block_tokens=BT,
                       repo_id=repo, session_id=sessions, spans=spans, source="test")
    return Admission(simpy.Environment(), trace, d, n_gpus=gpus,
                     placement=PlacementSpec(block_tokens=BT, reuse=reuse, home=home),
                     serving=ServingSpec(kv_allocation=kv_allocation), max_num_seqs=8,
                     prefill_time=lambda g, t: 1e-6 * t, region_blocks=8,
                     focus_rng=np.random.default_rng(0), progress=progress,
                     rotary_time=rotary_time, homes=homes)


def start(a: Admission, r: int, g: int = 0) -> int:
    """Admit ``r`` on GPU ``g``, count it started, and finish its prompt; the tokens computed."""
    tokens = a.sched[g].kv.admit(r)
    assert tokens is not None and tokens >= 0
    a.admitted(r)
    a.prompt_done(g, r)
    return tokens


@pytest.mark.parametrize("kv_allocation", ["reserve", "on_demand"])
def test_a_cached_prefix_is_reused_and_only_the_rest_is_computed(kv_allocation):
    # r0: blocks 1 2 3 (192 tokens) + 10 output; r1: blocks 1 2 4 5 (250 tokens) + 10 output
    a = admission(20, [[1, 2, 3], [1, 2, 4, 5]], [192, 250], [10, 10], kv_allocation)
    kv, d = a.sched[0].kv, a.dir
    assert start(a, 0) == 192  # nothing cached: 3 blocks computed
    assert (a.reused[0], a.prefilled[0], a.admissions[0], a.gen[0]) == (0, 3, 1, 1)
    assert a.admitted_at[0] == 0.0 and a.first_at[0] == 0.0
    ids = d.intern([1, 2, 3])
    assert d.known(ids).all()
    # r1 reuses blocks 1 and 2: it computes block 4 whole and block 5's 58 tokens (of its 250)
    assert start(a, 1) == 64 + 58
    assert a.computed_tokens.tolist() == [192, 122]  # what a PD hand-off sends
    assert (a.reused[1], a.prefilled[1]) == (2, 2)
    if kv_allocation == "reserve":
        # r0 reserves ceil(202 / 64) = 4 blocks; r1 ceil(260 / 64) = 5, less the 2 it reuses
        assert (a.held[0], a.held[1], kv.reserved) == (4, 3, 7)
    else:
        assert (a.held[0], a.held[1], kv.reserved) == (0, 0, 0)  # counted as tokens compute
    shared, only0 = d.intern([1, 2]), d.intern([3])
    assert list(d.pins[shared]) == [2, 2] and list(d.pins[only0]) == [1]
    # releasing r0 gives back what it holds and unpins its blocks
    a.sel_cache[0] = ("cached selection",)
    kv.release(0)
    assert list(d.pins[shared]) == [1, 1] and list(d.pins[only0]) == [0]
    assert a.sel_cache[0] is None
    assert kv.reserved == (3 if kv_allocation == "reserve" else 0)


def test_a_preempted_request_counts_its_tokens_afresh_and_keeps_its_whole_computed_blocks():
    # on demand: 100 prompt tokens take 2 blocks (64 + 36 tokens). Preempted after computing
    # all 100 (not yet its first token), it keeps the one whole block its chunk filled (vLLM's
    # prefix cache keeps full blocks only): re-admitted, it reuses it and computes the second
    # block's 36 tokens (not its empty slots), counting 1 block of KV, not 2 more
    a = admission(10, [[1, 2]], [100], [5], "on_demand")
    kv, d = a.sched[0].kv, a.dir
    assert kv.admit(0) == 100
    a.admitted(0)
    assert kv.grow(0, 100) and kv.reserved == 2
    kv.release(0)
    assert kv.reserved == 0
    assert list(d.known(d.intern([1, 2]))) == [True, False]
    assert list(d.pins[d.intern([1])]) == [0]  # placed, and unpinned with the rest
    assert kv.admit(0) == 36
    a.admitted(0)
    assert kv.grow(0, 36) and kv.reserved == 1
    assert a.admissions[0] == 2 and a.prefilled[0] == 3  # 2 blocks, then 1 again
    assert a.computed_tokens[0] == 100 + 36  # each admission's tokens
    assert a.admitted_at[0] == 0.0
    # a chunk that filled no whole block leaves nothing: it starts over
    b = admission(10, [[1, 2]], [100], [5], "on_demand")
    kv = b.sched[0].kv
    kv.admit(0)
    b.admitted(0)
    assert kv.grow(0, 50)
    kv.release(0)
    assert not b.dir.known(b.dir.intern([1, 2])).any()
    assert kv.admit(0) == 100
    # a request that never computed (its first chunk did not fit) places nothing either
    c = admission(10, [[1, 2]], [100], [5], "on_demand")
    c.sched[0].kv.admit(0)
    c.sched[0].kv.release(0)
    assert not c.dir.known(c.dir.intern([1, 2])).any()


def test_a_request_that_cannot_fit_is_rejected_with_its_reason():
    done = []
    a = admission(2, [[1, 2, 3]], [192], [1], "on_demand",
                  progress=lambda k, n: done.append((k, n)))
    assert a.sched[0].kv.admit(0) is None  # 4 blocks > 2
    a.reject(0)
    assert a.reason[0] == TOO_LARGE and a.finish_at[0] == 0.0 and a.finished == 1
    assert done == [(1, 1)]


def test_the_rotary_pass_is_charged_once_with_the_first_prefill_chunk():
    # span reuse: r1 = blocks 9 2 3 with a span over its blocks 1..3; blocks 2 and 3 are held
    # (computed after another prefix by r0), so they are reused after a rotary pass over their
    # 2 x 64 tokens, and block 9 is computed
    a = admission(20, [[1, 2, 3], [9, 2, 3]], [192, 192], [1, 1], reuse="span",
                  spans=[[], [1, 3]], rotary_time=lambda g, t: 1e-3 * t + g)
    start(a, 0)
    assert a.sched[0].kv.admit(1) == 64
    a.admitted(1)
    assert (a.reused[1], a.prefilled[1]) == (2, 1)
    assert a.prefill_plan(0, 1, 64) == pytest.approx(64e-6 + 128e-3)
    assert a.prefill_plan(0, 1, 64) == pytest.approx(64e-6)  # paid once
    assert a.take_rotary(0, 1) == 0.0
    # without a rotary price the pass is free
    free = admission(20, [[1, 2, 3], [9, 2, 3]], [192, 192], [1, 1], reuse="span",
                     spans=[[], [1, 3]])
    start(free, 0)
    free.sched[0].kv.admit(1)
    free.admitted(1)
    assert free.prefill_plan(0, 1, 64) == pytest.approx(64e-6)


def test_homes_are_least_loaded_or_the_repository_owner_and_sessions_keep_theirs():
    # 4 GPUs; requests 0-3 have no repository (sessions 0-3), 4 and 5 share repository 0,
    # 6 is session 0 again
    a = admission(10, [[i] for i in range(7)], [64] * 7, [1] * 7, gpus=4,
                  home="repo_affinity", repo=[-1, -1, -1, -1, 0, 0, -1],
                  sessions=[0, 1, 2, 3, 4, 5, 0])
    assert list(a.home) == [-1] * 7  # no home before it arrives (the records show none)
    for r in range(7):
        a._deliver(r)
    assert list(a.home[:4]) == [0, 1, 2, 3]  # least loaded: one each
    assert a.home[4] == a.home[5]  # the repository's owner
    assert a.home[6] == a.home[0]  # its session's home
    assert [len(q) for q in a.queue] == [1 + 2 * (a.home[4] == g) + (g == 0) for g in range(4)]
    # least loaded, not by repository, the same requests spread: 4 and 5 on GPUs 0 and 1
    b = admission(10, [[i] for i in range(6)], [64] * 6, [1] * 6, gpus=4,
                  repo=[-1, -1, -1, -1, 0, 0])
    for r in range(6):
        b._deliver(r)
    assert list(b.home) == [0, 1, 2, 3, 0, 1]


def test_generated_tokens_past_the_last_block_add_a_home_owned_block():
    # 100 prompt tokens = 2 blocks; the 29th generated token is the 129th: a 3rd block
    a = admission(10, [[1, 2]], [100], [40], gpus=2)
    start(a, 0, g=1)
    assert len(a.ctx_idx[0]) == 2
    a.gen[0] = 28
    a.grow_context(1, 0)
    assert len(a.ctx_idx[0]) == 2
    a.gen[0] = 29
    a.grow_context(1, 0)
    new = a.ctx_idx[0][2:]
    assert len(new) == 1 and a.dir.known(new).all() and list(a.dir.pins[new]) == [1]
    assert int(a.dir.base[new[0]]) == 1  # on the home that generated it


def test_a_prompt_preempted_part_way_counts_only_the_blocks_its_chunks_computed():
    # on demand: 300 prompt tokens, 5 blocks. Its first admission computes two chunks of 64
    # and one of 10 (138 tokens: blocks 1-2 whole, block 3 in part) and is preempted: it
    # computed 3 blocks, not the 5 it set out to. Re-admitted, it reuses its 2 whole blocks and
    # computes the other 3 (172 tokens): 6 blocks computed in all (prefilled_blocks counts
    # blocks computed, not 5 + 3)
    a = admission(10, [[1, 2, 3, 4, 5]], [300], [5], "on_demand")
    kv = a.sched[0].kv
    assert kv.admit(0) == 300
    a.admitted(0)
    assert kv.grow(0, 64) and kv.grow(0, 64) and kv.grow(0, 10)
    kv.release(0)
    assert a.prefilled[0] == 3
    assert a.computed_tokens[0] == 138  # the tokens its chunks computed, not the 300 planned
    assert kv.admit(0) == 300 - 128
    a.admitted(0)
    assert (a.admissions[0], a.reused[0], a.prefilled[0]) == (2, 0, 6)
    assert a.computed_tokens[0] == 138 + 172
    # preempted again before its next chunk, it counts none of those 3; an admission whose
    # first chunk did not fit (admit, then release, never admitted) counts nothing
    kv.release(0)
    assert a.prefilled[0] == 3 and a.computed_tokens[0] == 138
    assert kv.admit(0) == 300 - 128
    kv.release(0)
    assert a.prefilled[0] == 3 and a.computed_tokens[0] == 138


def test_an_admission_that_never_started_takes_back_nothing_its_earlier_one_counted():
    # the whole prompt computed (5 blocks, 300 tokens) and its first token made; preempted
    # while decoding, then admitted again and released before that admission started (its
    # first chunk did not fit): the counts stay the first admission's
    a = admission(10, [[1, 2, 3, 4, 5]], [300], [5], "on_demand")
    kv = a.sched[0].kv
    assert kv.admit(0) == 300
    a.admitted(0)
    assert kv.grow(0, 300)
    a.prompt_done(0, 0)
    kv.release(0)
    before = (int(a.prefilled[0]), int(a.computed_tokens[0]))
    assert before == (5, 300)
    assert kv.admit(0) is not None
    kv.release(0)
    assert (int(a.prefilled[0]), int(a.computed_tokens[0])) == before


def test_a_preempted_request_reuses_what_the_directory_still_holds_generated_blocks_too():
    # 150 prompt tokens (3 blocks) + 43 generated = 193 tokens: a 4th, generated block (and a
    # 5th at 257). Preempted then re-admitted, all 5 blocks are still held, computed after this
    # same prefix: only the last block is computed again, for the token it gives (a page of
    # its own: reuse.plan's gives_token). It holds one token, and only that token is computed,
    # as vLLM computes what its prefix hit, capped at all tokens but the last, leaves
    a = admission(10, [[1, 2, 3]], [150], [200], "on_demand")
    kv = a.sched[0].kv
    start(a, 0)
    a.gen[0] = 43
    a.grow_context(0, 0)
    assert len(a.ctx_idx[0]) == 4
    a.gen[0] = 107  # the 257th token: a 5th block, hashed after the 4th
    a.grow_context(0, 0)
    assert len(a.ctx_idx[0]) == 5
    kv.release(0)
    assert kv.admit(0) == 1
    a.admitted(0)
    assert (a.admissions[0], a.prefilled[0], a.reused[0]) == (2, 4, 0)
    # had another request's different prefix computed them, they would be recomputed
    b = admission(10, [[1, 2], [7, 2]], [100, 100], [40, 40], "on_demand")
    start(b, 0)
    assert b.sched[0].kv.admit(1) == 100  # block 2 is held, but after prefix [1], not [7]


def test_kv_that_arrived_computed_gives_its_token_without_computing_but_a_recompute_does():
    # r0's 3 blocks (150 tokens) were computed elsewhere and placed on GPU 0 (a hand-off,
    # external_prefill): its admission there computes nothing and its first token comes with
    # the step. Preempted, it is re-admitted with its context (151 tokens) still held: that
    # recompute gives the next token itself, so it computes its last block (reuse.plan's
    # gives_token): its 22 prompt tokens and the first token
    a = admission(10, [[1, 2, 3]], [150], [20], "on_demand")
    kv = a.sched[0].kv
    a.ctx_idx[0] = a.context(0)
    a.reuse_plan(0, a.ctx_idx[0])  # the prompt's prefix hashes, as the hand-off takes them
    a.place_computed(0, 0)
    assert a.dir.known(a.ctx_idx[0]).all()
    assert start(a, 0) == 0
    assert (a.reused[0], a.prefilled[0]) == (3, 0)
    kv.release(0)
    assert kv.admit(0) == 22 + 1
    a.admitted(0)
    assert (a.admissions[0], a.prefilled[0]) == (2, 1)


@pytest.mark.parametrize("arrived", [False, True])
def test_a_first_token_past_the_last_block_is_all_a_recompute_computes(arrived):
    # a 192-token prompt fills its 3 blocks; its first token is the 193rd, whose block comes
    # at its next step (grow_context). Preempted before that step and re-admitted with its
    # blocks held, it computes that one token, which gives the next (vLLM: the prefix hit is
    # the 3 whole blocks, num_tokens - 1), not its third block again (64 tokens until stop
    # 68). The token takes a page of its own, which the next 63 tokens fill
    a = admission(10, [[1, 2, 3]], [192], [100], "on_demand")
    kv = a.sched[0].kv
    if arrived:
        a.ctx_idx[0] = a.context(0)
        a.reuse_plan(0, a.ctx_idx[0])
        a.place_computed(0, 0)
    assert start(a, 0) == (0 if arrived else 192) and a.gen[0] == 1
    assert len(a.ctx_idx[0]) == 3 and a.dir.known(a.ctx_idx[0]).all()
    kv.release(0)
    assert kv.admit(0) == 1
    a.admitted(0)
    assert (a.admissions[0], a.prefilled[0], a.computed_tokens[0]) == (2, 0 if arrived else 3,
                                                                       1 if arrived else 193)
    assert pages_after(kv, 0, 1, 64) == [1] * 64 + [2]


def test_a_prefill_pools_gpu_gives_no_token_so_a_prompt_held_in_full_computes_nothing():
    # GPU 1 decodes (the homes); GPU 0 is a prefill pool's: a prompt held there in full is
    # handed off as it is, while on GPU 1 it computes its last block for its first token
    for g, tokens in ((0, 0), (1, 64)):
        a = admission(10, [[1, 2, 3], [1, 2, 3]], [192, 192], [5, 5], "on_demand", gpus=2,
                      homes=[1])
        start(a, 0, g)
        assert a.sched[g].kv.admit(1) == tokens


def test_least_loaded_counts_running_and_queued_requests_and_sessions_keep_their_home():
    from collections import deque

    # 2 GPUs, sessions 0 1 2 0: the third request goes to the GPU with fewer requests, the
    # fourth to its session's home even though the other GPU has fewer
    a = admission(10, [[i] for i in range(4)], [64] * 4, [1] * 4, gpus=2,
                  sessions=[0, 1, 2, 0])
    for r in range(4):
        a._deliver(r)
    assert list(a.home) == [0, 1, 0, 0]
    # running requests count as load: GPU 0 runs one (its queue now empty), GPU 1 queues one
    b = admission(10, [[i] for i in range(3)], [64] * 3, [1] * 3, gpus=2)
    b._deliver(0)
    q = b.queue[0]
    assert b.sched[0].step(q).admitted == [0] and not q
    b._deliver(1)
    assert b.home[1] == 1
    b.queue[1] = deque()  # GPU 1: nothing queued or running; GPU 0 runs one
    b._deliver(2)
    assert b.home[2] == 1


def test_an_arrival_wakes_its_home_gpu_once():
    a = admission(10, [[1], [2]], [64, 64], [1, 1])
    wake = a.wake[0] = a.env.event()
    a._deliver(0)
    assert wake.triggered
    a._deliver(1)  # already woken: not triggered twice
    assert list(a.queue[0]) == [0, 1]


def test_a_sessions_focus_set_is_four_regions_and_drifts_a_quarter_per_turn():
    # one session of 300 turns, each a 64-block prompt without spans (all of it popular);
    # 8-block regions: 8 regions, 4 of them in focus; each turn every focused region moves
    # with probability 1/4 (a fresh draw each turn would keep 2 of 4 on average: 1/2 moved)
    turns = 300
    a = admission(10_000, [list(range(64))] * turns, [64 * 64] * turns, [1] * turns,
                  "on_demand", sessions=[0] * turns)
    moved = 0
    for r in range(turns):
        start(a, r)
        kv = a.sched[0].kv
        kv.release(r)
        regions = np.unique(a.focus[r] // 8)
        assert len(regions) == 4 and len(a.focus[r]) == 32
        assert a.popular[r] == 64
        if r:
            moved += 4 - len(np.intersect1d(regions, np.unique(a.focus[r - 1] // 8)))
    n, p = 4 * (turns - 1), 0.25
    assert abs(moved - n * p) <= 5 * (n * p * (1 - p)) ** 0.5, moved


def test_a_closed_loop_lets_the_next_request_in_when_one_finishes():
    env_a = admission(10, [[1], [2], [3]], [64] * 3, [1] * 3)
    a = Admission(env_a.env, make_trace(arrival_at=[0.0] * 3, input_tokens=[64] * 3,
                                        output_tokens=[1] * 3, block_ids=[[1], [2], [3]],
                                        block_tokens=BT, source="test"),
                  env_a.dir, n_gpus=1, placement=PlacementSpec(block_tokens=BT),
                  serving=ServingSpec(), max_num_seqs=8, prefill_time=lambda g, t: 0.0,
                  region_blocks=8, focus_rng=np.random.default_rng(0), progress=None,
                  concurrency=2)
    env = a.env
    env.process(a.arrivals())
    env.run(until=1.0)
    assert list(a.queue[0]) == [0, 1]  # two outstanding, the third waits
    a.queue[0].popleft()
    a.finish(0)
    env.run(until=2.0)
    assert list(a.queue[0]) == [1, 2] and a.arrival[2] == 1.0


def test_a_block_recomputed_after_another_prefix_is_kept_as_a_version_of_its_own():
    # r0 computes blocks 1 2 3. r1 = 9 2 3: blocks 2 and 3 are held, but computed after
    # prefix [1], so r1 recomputes all three (prefix rule) — and keeps its 2 and 3 as versions
    # of its own, keyed by this prefix. r2 (r1's next turn: 9 2 3 4) then reuses 9 and r1's
    # versions of 2 and 3 and computes block 4 only; r0's blocks stay r0's
    a = admission(40, [[1, 2, 3], [9, 2, 3], [9, 2, 3, 4], [1, 2, 3, 5]], [192, 192, 256, 256],
                  [1, 1, 1, 1], "on_demand")
    d = a.dir
    start(a, 0)
    assert start(a, 1) == 192 and a.reused[1] == 0
    plain = d.intern([2, 3])
    assert not (a.ctx_idx[1][1:] == plain).any()  # r1's own versions, not r0's blocks
    assert d.known(a.ctx_idx[1]).all()
    assert start(a, 2) == 64 and a.reused[2] == 3
    assert (a.ctx_idx[2][1:3] == a.ctx_idx[1][1:3]).all()
    assert start(a, 3) == 64 and a.reused[3] == 3  # r0's prefix: its own blocks
    assert (a.ctx_idx[3][:3] == d.intern([1, 2, 3])).all()
    # without reuse nothing is versioned: the prompt's blocks are the directory's
    b = admission(40, [[1, 2, 3], [9, 2, 3]], [192, 192], [1, 1], "on_demand", reuse="none")
    start(b, 0)
    start(b, 1)
    assert (b.ctx_idx[1] == b.dir.intern([9, 2, 3])).all()


@pytest.mark.parametrize("first", [0, 1])
def test_two_prompts_admitted_before_either_wrote_a_block_keep_a_version_each(first):
    # r0 = 1 2 9 3 on GPU 0 and r1 = 5 6 7 9 on GPU 1 are both admitted before either has
    # written block 9, which each computes after another prefix: two blocks of KV. Whichever
    # finishes second keeps its 9 as a version of its own (until stop 71 the two shared one
    # directory entry, the first writer's, so the other's next turn recomputed its 9 and
    # decoded over the first's). Then r1's next turn (5 6 7 9 8) reuses 4 blocks and r0's
    # (1 2 9 3 4) 4, and every pin is given back
    a = admission(40, [[1, 2, 9, 3], [5, 6, 7, 9], [5, 6, 7, 9, 8], [1, 2, 9, 3, 4]],
                  [256, 256, 320, 320], [1] * 4, "on_demand", gpus=2)
    d = a.dir
    for r in (0, 1):
        assert a.sched[r].kv.admit(r) == 256
        a.admitted(r)
    for r in (first, 1 - first):
        a.prompt_done(r, r)
    assert a.ctx_idx[0][2] != a.ctx_idx[1][3]
    assert d.known(a.ctx_idx[0]).all() and d.known(a.ctx_idx[1]).all()
    assert list(d.nearest(np.array([a.ctx_idx[0][2], a.ctx_idx[1][3]]), 0)) == [0, 1]
    for r in (0, 1):
        a.sched[r].kv.release(r)
    assert not d.pins.any()
    assert start(a, 2, 1) == 64 and a.reused[2] == 4
    assert start(a, 3, 0) == 64 and a.reused[3] == 4
    for r, g in ((2, 1), (3, 0)):
        a.sched[g].kv.release(r)
    assert not d.pins.any()


def test_a_span_block_written_meanwhile_by_another_prefix_stays_that_prefixs():
    # span reuse: r0 = 1 2 and r1 = 9 2 (block 2 in a span of r1) are admitted before either
    # wrote block 2; r0 writes it first. r1's 2 is position-free KV, so it gets no version and
    # the held block stays r0's, computed after prefix 1: r0's next turn (1 2 3) reuses both
    # as is and computes block 3 only
    a = admission(40, [[1, 2], [9, 2], [1, 2, 3]], [128, 128, 192], [1] * 3, "on_demand",
                  gpus=2, reuse="span", spans=[[], [1, 2], []])
    for r in (0, 1):
        assert a.sched[r].kv.admit(r) == 128
        a.admitted(r)
    a.prompt_done(0, 0)
    a.prompt_done(1, 1)
    assert a.ctx_idx[1][1] == a.ctx_idx[0][1]
    for r in (0, 1):
        a.sched[r].kv.release(r)
    assert start(a, 2) == 64 and a.reused[2] == 2


def test_a_block_repeated_in_a_prompt_after_another_prefix_is_kept_for_the_next_turn():
    # r0 = 1 2 1: its third block repeats the first after another prefix, so it is other KV,
    # computed (prefix rule) and kept as a version of its own; r1 (its next turn, 1 2 1 4)
    # reuses all three and computes block 4 only (before stop 71 the repeat shared the first
    # block's entry and was recomputed: 128 tokens)
    a = admission(40, [[1, 2, 1], [1, 2, 1, 4]], [192, 256], [1, 1], "on_demand")
    assert start(a, 0) == 192
    assert a.ctx_idx[0][0] != a.ctx_idx[0][2] and a.dir.known(a.ctx_idx[0]).all()
    a.sched[0].kv.release(0)
    assert start(a, 1) == 64 and a.reused[1] == 3


def test_a_prompt_preempted_part_way_keeps_the_blocks_it_computed_not_those_after():
    # r0 = 1 9 on GPU 0 and r1 = 5 9 6 7 on GPU 1 are admitted together; r0 finishes first
    # (its 9 is held, after prefix 1). r1's chunks compute its first 3 blocks (5, its own 9,
    # 6) and it is preempted: it keeps those three — its 9 as a version — and not block 7,
    # which it never computed (until stop 71 it kept the first 3 blocks not held: 5, 6, 7).
    # Re-admitted, it reuses the three and computes 7
    a = admission(40, [[1, 9], [5, 9, 6, 7]], [128, 256], [1, 1], "on_demand", gpus=2)
    d = a.dir
    for r in (0, 1):
        assert a.sched[r].kv.admit(r) == [128, 256][r]
        a.admitted(r)
    a.prompt_done(0, 0)
    kv = a.sched[1].kv
    assert kv.grow(1, 3 * 64)
    kv.release(1)
    assert list(d.known(a.ctx_idx[1])) == [True, True, True, False]
    assert a.ctx_idx[1][1] != a.ctx_idx[0][1] and d.nearest(a.ctx_idx[1][1:2], 1)[0] == 1
    assert kv.admit(1) == 64
    a.admitted(1)
    assert a.prefilled[1] == 3 + 1


def test_under_span_a_recomputed_block_leaves_a_version_and_a_rotated_one_none():
    # r0 computes 1 2 3. r1 = 9 2 3 with block 2 in a span: 9 is computed, 2 is held (after
    # another prefix) and reused in place after the rotary pass (no new page, so no version),
    # 3 (outside the span, after the break) is recomputed as r1's own version. r2 = r1's
    # prompt again without spans: 9 reused, 2 recomputed (its version is new), 3 — r1's
    # version, computed after this very prefix — used as is past the break
    a = admission(40, [[1, 2, 3], [9, 2, 3], [9, 2, 3]], [192, 192, 192], [1, 1, 1],
                  "on_demand", reuse="span", spans=[[], [1, 2], []])
    start(a, 0)
    assert start(a, 1) == 128 and a.reused[1] == 1 and a.rotary[1] == 1
    assert start(a, 2) == 64 and a.reused[2] == 2
    assert a.ctx_idx[2][2] == a.ctx_idx[1][2] and a.ctx_idx[2][1] != a.ctx_idx[1][1]


def pages_after(kv, r: int, first: int, then: int) -> list[int]:
    """The pages ``r`` holds after ``grow(first)`` (its prefill), and after each of ``then``
    more tokens (``grow(1)`` each) — as the scheduler grows a request."""
    assert kv.grow(r, first)
    held = [int(kv.adm.held[r])]
    for _ in range(then):
        assert kv.grow(r, 1)
        held.append(int(kv.adm.held[r]))
    return held


@pytest.mark.parametrize("case", ["nothing reused", "a prefix reused", "arrived computed"])
def test_new_tokens_fill_the_last_pages_empty_slots_before_a_new_page(case):
    # a 138-token prompt (blocks 1 2 3; its last page holds 10 tokens, 54 slots empty) and
    # 80 outputs, on demand. Its own pages when computed: 3 (nothing reused), 2 (block 1
    # reused; its two missing pages computed, 74 tokens charged) or 0 (its KV arrived
    # computed: all 3 blocks held). Then the next 54 tokens fill the last page, and the 55th
    # opens a page. Until stop 67 the 128 tokens then charged counted as the pages' content, so
    # the reused case opened its third page at its first token; and a context held in full
    # took a page at its first token. Until stop 68 the last page was charged whole
    a = admission(10, [[1], [1, 2, 3]], [64, 138], [1, 80], "on_demand")
    kv = a.sched[0].kv
    if case == "a prefix reused":
        start(a, 0)
        kv.release(0)
    elif case == "arrived computed":
        a.ctx_idx[1] = a.context(1)
        a.reuse_plan(1, a.ctx_idx[1])
        a.place_computed(0, 1)
    compute, own = {"nothing reused": (138, 3), "a prefix reused": (74, 2),
                    "arrived computed": (0, 0)}[case]
    assert kv.admit(1) == compute
    held = pages_after(kv, 1, compute, 55) if compute else [0] + pages_after(kv, 1, 1, 54)
    assert held == [own] * 55 + [own + 1]
    assert kv.reserved == own + 1
    # done, its KV is 138 + 79 tokens: still those pages, the count admission checked (218
    # tokens are 4 pages, less the reused blocks)
    n_reused = a.start_blocks[1][0]
    assert -(-(138 + 80) // BT) - n_reused == own + 1
