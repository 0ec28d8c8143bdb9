"""A decode step's data and costs, shared by both engines: held to oracles written out here.

:class:`~simulator.engine.locate.StepData` turns a step's selections into block locations and
holder groups in one compiled pass (the array code it replaced is kept as a second reference,
:mod:`simulator.testing.locate_reference`); the oracle below walks the selected blocks one by one
through the directory's public questions (``nearest``, ``tier``, ``has_copy``). Its selection
cache is held to the selector called directly on a copy of the same random stream, and a batch
to its queries side by side. :class:`~simulator.engine.stepcosts.StepCosts` is held to the
uncached calls it memoizes, over call sequences that differ in one key at a time.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_kvcache_directory import make

from simulator import hardware
from simulator.engine.exact import _Run
from simulator.engine.locate import SELECTION_STEPS, StepData
from simulator.engine.stepcosts import StepCosts
from simulator.kvcache import DROPPED, HBM, HOST, UNPLACED, BlockDirectory
from simulator.policies import get as get_policy
from simulator.testing.invariants import small_scenario
from simulator.testing.locate_reference import array_locate
from simulator.testing.oracle import ep_rank_time
from workloads.schema import make_trace
from workloads.sparse import SparseSelector

# -- block location --------------------------------------------------------------------------


def directory(gpus: int, per_machine: int, replicas: int, slots: int) -> BlockDirectory:
    """The directory tests' directory (``make``), roomy enough that no copy is evicted."""
    return make("replicate" if replicas > 1 else "first_writer", replicas, 10_000, gpus,
                per_machine, 0, slots)


def oracle_locate(d: BlockDirectory, g: int, dense: np.ndarray, valid: np.ndarray):
    """locate's answer, one selected block at a time: (local mask, groups per slot, copy hits,
    copy misses, per holder: selections held in its HBM away from home, and those of them
    served by a copy at home)."""
    B, S, W = dense.shape
    G = d.n_gpus
    local = np.zeros(dense.shape, bool)
    found: list[dict[int, list[tuple[int, int]]]] = [{} for _ in range(S)]
    hits = misses = 0
    away = np.zeros(G, np.int64)
    copy_hits = np.zeros(G, np.int64)
    for b in range(B):
        for s in range(S):
            for w in range(W):
                if not valid[b, s, w]:
                    continue
                blk = np.array([dense[b, s, w]])
                holder = int(d.nearest(blk, g)[0])
                tier = int(d.tier[blk[0]])
                has = bool(d.has_copy(g, blk, s)[0])
                own = holder == g and tier == HBM
                if tier == HBM and holder != g:
                    away[holder] += 1
                    copy_hits[holder] += has
                if own or has:
                    local[b, s, w] = True
                    hits += not own
                    continue
                misses += 1
                if tier == HBM:
                    key = holder
                elif tier == HOST:
                    key = G + int(d.machine_of[max(holder, 0)])
                else:
                    key = 2 * G
                found[s].setdefault(key, []).append((b, int(blk[0])))
    groups = [[(key, len({q for q, _ in found[s][key]}),
                [x for _, x in sorted(found[s][key], key=lambda m: m[0])])
               for key in sorted(found[s])] for s in range(S)]
    return local, groups, hits, misses, away, copy_hits


@st.composite
def located_steps(draw):
    """A directory with blocks placed, some on the host tier or dropped, and copies on every
    GPU; a home GPU and a step's (B, S, W) selections of those blocks."""
    gpus = draw(st.integers(2, 6))
    per_machine = draw(st.integers(1, 3))
    replicas = draw(st.integers(1, 3))
    S = draw(st.sampled_from([1, 3, 8, 70]))  # 70: copy bits over two words
    d = directory(gpus, per_machine, replicas, S)
    n = draw(st.integers(1, 30))
    idx = d.intern(np.arange(100, 100 + n))
    writers = draw(st.lists(st.integers(0, gpus - 1), min_size=n, max_size=n))
    for i, wr in enumerate(writers):
        d.place(idx[i : i + 1], writer=wr, now=0.0)
    tiers = draw(st.lists(st.sampled_from([HBM, HBM, HOST, DROPPED]), min_size=n, max_size=n))
    for i, t in enumerate(tiers):  # locate reads the tier and holders only
        d.tier[idx[i]] = t
        if t == DROPPED:
            d.base[idx[i]] = UNPLACED
    slots = st.integers(0, S - 1) | st.sampled_from([x for x in (63, 64, 65, 69) if x < S] or [0])
    for gpu, blk, slot in draw(st.lists(st.tuples(st.integers(0, gpus - 1),
                                                  st.integers(0, n - 1), slots), max_size=40)):
        d.add_copies(gpu, idx[blk : blk + 1], slot, now=1.0)
    B, W = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    dense = np.array(draw(st.lists(st.sampled_from(idx.tolist()), min_size=B * S * W,
                                   max_size=B * S * W)), np.int64).reshape(B, S, W)
    valid = np.array(draw(st.lists(st.booleans(), min_size=B * S * W, max_size=B * S * W)),
                     bool).reshape(B, S, W)
    dense[~valid] = 0  # padding, as StepData.select pads
    return d, draw(st.integers(0, gpus - 1)), dense, valid


def step_data(d: BlockDirectory, requests=None, selector=None, rngs=None, replay=None,
              S: int | None = None) -> StepData:
    S = d.cfg.layer_slots if S is None else S
    return StepData(requests, d, selector, rngs, replay, np.arange(S),
                    np.asarray(d.cfg.machine_of, np.int64))


@settings(max_examples=300, deadline=None)
@given(case=located_steps(), observe=st.booleans())
def test_locate_is_the_directory_asked_block_by_block(case, observe):
    d, g, dense, valid = case
    steps = step_data(d)
    if observe:
        steps.observed = object()  # only its presence matters to locate
    local, groups = steps.locate(g, dense, valid)
    want_local, want_groups, hits, misses, away, copy_hits = oracle_locate(d, g, dense, valid)
    assert np.array_equal(local, want_local)
    got = [[(int(k), int(nq), np.asarray(m).tolist()) for k, nq, m in slot] for slot in groups]
    assert got == want_groups
    assert (steps.copy_hits, steps.copy_misses) == (hits, misses)
    if observe:
        assert steps.away.tolist() == away.tolist()
        assert steps.owner_copy_hits.tolist() == copy_hits.tolist()
    else:
        assert steps.away is None and steps.owner_copy_hits is None
    again = steps.locate(g, dense, valid)  # the counters add up, step after step
    assert np.array_equal(again[0], local)
    assert (steps.copy_hits, steps.copy_misses) == (2 * hits, 2 * misses)
    # the array code the compiled pass replaced (bench_locate's baseline) answers alike
    ref = step_data(d)
    ref.observed = steps.observed
    ref_local, ref_groups = array_locate(ref, g, dense, valid)
    assert np.array_equal(ref_local, want_local)
    assert [[(int(k), int(nq), np.asarray(m).tolist()) for k, nq, m in slot]
            for slot in ref_groups] == want_groups
    assert (ref.copy_hits, ref.copy_misses) == (hits, misses)
    if observe:
        assert (ref.away.tolist(), ref.owner_copy_hits.tolist()) == (away.tolist(),
                                                                     copy_hits.tolist())


@pytest.mark.parametrize("batch", [1, 2])
def test_locate_on_a_large_cluster_whose_group_keys_pass_16_bits(batch):
    # 3 · 200 GPUs · 60 slots = 36,000 group keys: a one-query step sorts them as int64
    gpus, S = 200, 60
    d = directory(gpus, 8, 1, S)
    rng = np.random.default_rng(1)
    idx = d.intern(np.arange(400))
    for i, wr in enumerate(rng.integers(0, gpus, 400).tolist()):
        d.place(idx[i : i + 1], writer=wr, now=0.0)
    d.tier[idx[::7]] = HOST
    d.tier[idx[3::11]], d.base[idx[3::11]] = DROPPED, UNPLACED
    for blk, slot in zip(rng.integers(0, 400, 300).tolist(), rng.integers(0, S, 300).tolist(),
                         strict=True):
        d.add_copies(5, idx[blk : blk + 1], slot, now=0.0)
    dense = rng.choice(idx, (batch, S, 12))
    valid = rng.random((batch, S, 12)) < 0.9
    dense[~valid] = 0
    local, groups = step_data(d).locate(5, dense, valid)
    want_local, want_groups = oracle_locate(d, 5, dense, valid)[:2]
    assert np.array_equal(local, want_local)
    assert [[(int(k), int(n), m.tolist()) for k, n, m in s] for s in groups] == want_groups
    # some slot's group has a sort key (slot · 3G + holder key) past int16
    assert any(s * 3 * gpus + k >= 2**15 for s, slot in enumerate(want_groups)
               for k, _, _ in slot)


@pytest.mark.parametrize("slots", [64, 70, 130])
def test_a_copy_is_found_in_its_own_layer_slot_only_across_bitmap_words(slots):
    # slot s lives in word s // 64, bit s % 64: a copy kept in one slot makes that slot local
    # and no other, on either side of a word's edge
    d = directory(2, 1, 1, slots)
    blk = d.intern([5])
    d.place(blk, writer=1, now=0.0)
    dense = np.full((1, slots, 1), blk[0])
    valid = np.ones((1, slots, 1), bool)
    for s in sorted({0, 1, 62, 63, 64, 65, 66, 127, 128, slots - 1} & set(range(slots))):
        d.add_copies(0, blk, s, now=1.0)
        local = step_data(d).locate(0, dense, valid)[0]
        assert local[0, :, 0].nonzero()[0].tolist() == [s]
        d.copy_store.clear(0, blk)
        d.copies[0] -= 1


def test_locate_known_answer():
    # 4 GPUs, 2 per machine; home 0. Blocks: a on 0 (own), b on 1, c on 2, d on 3 demoted to
    # host (machine 1), e dropped; home 0 keeps a copy of c in slot 1 only.
    d = directory(4, 2, 1, 2)
    a, b, c, dd, e = d.intern([1, 2, 3, 4, 5]).tolist()
    for blk, wr in ((a, 0), (b, 1), (c, 2), (dd, 3), (e, 1)):
        d.place(np.array([blk]), writer=wr, now=0.0)
    d.tier[dd] = HOST
    d.tier[e], d.base[e] = DROPPED, UNPLACED
    d.add_copies(0, np.array([c]), 1, now=0.0)
    dense = np.array([[[a, b, c, dd, e], [c, b, e, b, 0]]])
    valid = np.array([[[True] * 5, [True, True, True, True, False]]])
    steps = step_data(d)
    steps.observed = object()  # only its presence matters to locate
    local, groups = steps.locate(0, dense, valid)
    assert local.tolist() == [[[True, False, False, False, False],
                               [True, False, False, False, False]]]
    # per holder: selections in its HBM away from home (b three times, c twice; d is on the
    # host, e nowhere), and those a copy at home served (c in slot 1)
    assert steps.away.tolist() == [0, 3, 2, 0]
    assert steps.owner_copy_hits.tolist() == [0, 0, 1, 0]
    # keys: holder GPU, 4 + machine for the host tier, 8 for a recompute; ascending
    assert [[(k, n, m.tolist()) for k, n, m in s] for s in groups] == [
        [(1, 1, [b]), (2, 1, [c]), (5, 1, [dd]), (8, 1, [e])],
        [(1, 1, [b, b]), (8, 1, [e])],
    ]


def test_a_colocated_policy_finds_every_valid_block_at_home():
    d = directory(2, 1, 1, 2)
    blk = d.intern([7])
    d.place(blk, writer=1, now=0.0)
    dense = np.zeros((1, 2, 3), np.int64)
    valid = np.array([[[True, False, True], [False, False, True]]])
    steps = step_data(d)
    local, groups = steps.locate_for(0, dense, valid, colocated=True)
    assert np.array_equal(local, valid) and groups == [[], []]
    local, groups = steps.locate_for(0, dense, valid, colocated=False)
    assert not local.any() and [len(s) for s in groups] == [1, 1]


# -- selections --------------------------------------------------------------------------------


def requests_of(contexts: list[np.ndarray], popular: list[int], focus: list[list[int]]):
    """The parts of :class:`~simulator.engine.admission.Admission` StepData reads."""
    return SimpleNamespace(sel_cache=[None] * len(contexts), gen=np.ones(len(contexts), np.int64),
                           ctx_idx=list(contexts), focus=[np.array(f, np.int64) for f in focus],
                           popular=np.array(popular, np.int64),
                           rid=np.arange(len(contexts)) + 500)


SEL = SparseSelector(kind="dsa", top_k_tokens=256, block_tokens=64, recent_tokens=128)


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 60), min_size=1, max_size=3), S=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1), holes=st.booleans())
def test_a_sample_is_the_selectors_positions_read_through_the_context(lengths, S, seed, holes):
    d = directory(2, 1, 1, S)
    contexts = [d.intern(np.arange(1000 * i, 1000 * i + n)) for i, n in enumerate(lengths)]
    if holes:  # a context entry of -1 (no block) is never a valid selection
        contexts = [np.where(np.arange(len(c)) % 3 == 1, -1, c) for c in contexts]
    popular = [max(1, n // 2) for n in lengths]
    focus = [list(range(0, n, 4))[: i + 1] for i, n in enumerate(lengths)]  # ragged: padded
    req = requests_of(contexts, popular, focus)
    rng = np.random.default_rng(seed)
    twin = copy.deepcopy(rng)
    steps = step_data(d, req, SEL, [rng], S=S)
    reqs = list(range(len(lengths)))
    steps.select(0, reqs)
    fw = max(len(f) for f in focus)
    sel = SEL.select_batch(twin, np.array(lengths), SELECTION_STEPS * S,
                           focus=np.array([f + [-1] * (fw - len(f)) for f in focus]),
                           popular_blocks=np.array(popular))
    for i in reqs:
        blocks, first, n_ctx, dense, ok = req.sel_cache[i]
        pos = sel.indices[i, :, : sel.counts[i]].reshape(SELECTION_STEPS, S, -1)
        want = contexts[i][pos]
        assert np.array_equal(blocks, want) and first == 0 and n_ctx == lengths[i]
        assert np.array_equal(ok, want >= 0)
        assert np.array_equal(dense, np.where(want >= 0, want, 0))
    assert rng.random() == twin.random()  # the same draws, no more


def test_a_batch_is_its_queries_selections_side_by_side():
    d = directory(2, 1, 1, 3)
    contexts = [d.intern(np.arange(1000 * i, 1000 * i + n)) for i, n in enumerate((5, 40, 12))]
    req = requests_of(contexts, [3, 20, 6], [[1], [2, 30], []])
    steps = step_data(d, req, SEL, [np.random.default_rng(3)], S=3)
    req.gen[:] = [1, 4, 2]  # each query at its own step of its sample
    batch, ok = steps.select(0, [2, 0, 1])
    assert batch.shape[0] == 3 and ok.shape == batch.shape
    for k, r in enumerate((2, 0, 1)):
        one, one_ok = steps.select(0, [r])
        c = req.sel_cache[r]
        i = int(req.gen[r]) - 1 - c[1]
        assert np.array_equal(one[0], c[3][i]) and np.array_equal(one_ok[0], c[4][i])
        w = one.shape[2]
        assert np.array_equal(batch[k, :, :w], one[0]) and np.array_equal(ok[k, :, :w], one_ok[0])
        assert not ok[k, :, w:].any() and not batch[k, :, w:].any()  # padding: 0, not valid


def test_a_sample_serves_its_steps_then_is_drawn_again():
    d = directory(2, 1, 1, 2)
    ctx = d.intern(np.arange(30))
    req = requests_of([ctx], [10], [[]])
    steps = step_data(d, req, SEL, [np.random.default_rng(5)], S=2)
    first, first_ok = steps.select(0, [0])
    sample = req.sel_cache[0]
    # the sample is handed out as views: read-only, so no step can change another's
    assert not first.flags.writeable and not first_ok.flags.writeable
    for step in range(2, SELECTION_STEPS + 1):  # the same sample, row after row
        req.gen[0] = step
        got, _ = steps.select(0, [0])
        assert req.sel_cache[0] is sample and np.array_equal(got[0], sample[3][step - 1])
    req.gen[0] = SELECTION_STEPS + 1  # past its steps: drawn again, from this step on
    steps.select(0, [0])
    assert req.sel_cache[0] is not sample and req.sel_cache[0][1] == SELECTION_STEPS
    fresh = req.sel_cache[0]
    req.ctx_idx[0] = np.append(ctx, d.intern([99]))  # the context gains a block: drawn again
    req.gen[0] = SELECTION_STEPS + 2
    steps.select(0, [0])
    assert req.sel_cache[0] is not fresh and req.sel_cache[0][2] == 31
    assert req.sel_cache[0][1] == SELECTION_STEPS + 1


def test_stability_counts_slot_zeros_blocks_selected_again_at_the_next_step():
    calls = []
    d = directory(2, 1, 1, 2)
    ctx = d.intern(np.arange(80))
    req = requests_of([ctx], [40], [[]])
    steps = step_data(d, req, SEL, [np.random.default_rng(11)], S=2)
    steps.observed = SimpleNamespace(selections=lambda n, again: calls.append((n, again)))
    steps.select(0, [0])
    blocks = req.sel_cache[0][0]
    a, b = blocks[:-1, 0], blocks[1:, 0]
    n = sum(int(x >= 0) for x in a.ravel())
    again = sum(int(a[t, j] >= 0 and a[t, j] in b[t]) for t in range(len(a))
                for j in range(a.shape[1]))
    assert calls == [(n, again)] and 0 < again < n
    # a context of 6 blocks, one of them no block (-1): all selected at every step, block 0
    # among them — the 5 real ones counted, each selected again at the next step
    small = requests_of([np.array([0, 1, -1, 3, 4, 5])], [3], [[]])
    steps = step_data(d, small, SEL, [np.random.default_rng(1)], S=2)
    steps.observed = SimpleNamespace(selections=lambda n, again: calls.append((n, again)))
    steps.select(0, [0])
    assert calls[-1] == (5 * (SELECTION_STEPS - 1), 5 * (SELECTION_STEPS - 1))


class Replay:
    """A recorded selection trace: block keys per (request id, step, first layer), or None."""

    def __init__(self, rows: dict[tuple[int, int, int], list[int]]) -> None:
        self.rows = rows

    def blocks(self, rid: int, step: int, layer: int):
        return self.rows.get((rid, step, layer))


def test_a_replayed_selection_replaces_the_sampled_one_where_recorded():
    d = directory(2, 1, 1, 2)
    contexts = [d.intern(np.arange(1000 * i, 1000 * i + 20)) for i in range(2)]
    req = requests_of(contexts, [10, 10], [[], []])
    keys = [7001, 7002, 7003, 7004, 7005, 7006, 7007]  # wider than any sampled row
    short = [7010, 7011]  # narrower than the sampled row it replaces
    # request 1's first step, layer slot 1 (layer 1); request 0's, slot 0
    replay = Replay({(501, 0, 1): keys, (500, 0, 0): short})
    steps = step_data(d, req, SEL, [np.random.default_rng(2)], replay, S=2)
    dense, ok = steps.select(0, [0, 1])
    sampled = [req.sel_cache[r] for r in (0, 1)]
    assert dense.shape[2] == max(len(keys), sampled[0][3].shape[2], sampled[1][3].shape[2])
    for (r, s), got in (((1, 1), keys), ((0, 0), short)):  # recorded: the recording, padded
        assert dense[r, s, : len(got)].tolist() == d.find(got).tolist()
        assert ok[r, s, : len(got)].all() and not ok[r, s, len(got):].any()
        assert not dense[r, s, len(got):].any()  # padding → 0, as a sample's
    assert sampled[0][3].shape[2] > len(short)
    for r, s in ((0, 1), (1, 0)):  # not recorded: the sample, padded
        w = sampled[r][3].shape[2]
        assert np.array_equal(dense[r, s, :w], sampled[r][3][0, s])
        assert np.array_equal(ok[r, s, :w], sampled[r][4][0, s])
        assert not ok[r, s, w:].any() and not dense[r, s, w:].any()


# -- memoized costs --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_parts():
    sc = small_scenario("dgx_h100:nodes=2", layer_groups=2)
    trace = make_trace(arrival_at=[0.0], input_tokens=[128], output_tokens=[2],
                       block_ids=[[1, 2]], block_tokens=64)
    return _Run(sc, get_policy("route"), 0, trace, None)


def costs_for(run, kinds: list[str], indexer: bool = True, req=None) -> StepCosts:
    gpus = [SimpleNamespace(spec=hardware.gpu(k)) for k in kinds]
    names = [run.names[i] for i in range(len(kinds))]
    return StepCosts(run.kernels, run.cm, run.arch, gpus, names, req, indexer)


@settings(max_examples=40, deadline=None)
@given(calls=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 40),
                                st.one_of(st.none(), st.integers(0, 40))), min_size=1,
                      max_size=12))
def test_projections_and_ffn_are_the_uncached_call_per_gpu_kind(run_parts, calls):
    run = run_parts
    kinds = ["H100", "H200", "H100"]
    costs = costs_for(run, kinds)
    for g, tokens, logits in calls:
        # the GPU's share of the 3 GPUs' step, each carrying as much
        rows = tokens if logits is None else logits
        want = run.kernels.non_attention_time(hardware.gpu(kinds[g]), run.arch, 3 * tokens,
                                              gpus=3, logits=3 * rows) / run.arch.layers
        assert costs.na(g, tokens, logits) == want


@settings(max_examples=40, deadline=None)
@given(g=st.integers(0, 2), tokens=st.integers(1, 9000),
       logits=st.one_of(st.none(), st.integers(0, 64)))
def test_a_gpus_projections_and_ffn_are_an_expert_parallel_ranks_at_equal_load(run_parts, g,
                                                                              tokens, logits):
    # a GPU of a run without a [deployment] is an attention data-parallel rank of the run's
    # 3 GPUs, the experts spread over them, every rank carrying as many tokens: its step is the
    # one a deployment's rank is charged (RankKernels, composed apart from non_attention_time)
    # — its own tokens through the attention side, tokens · k expert rows on its E / 3 experts.
    # (Until stop 69 its tokens were shared among the 3 GPUs: a third of the attention side.)
    run = run_parts
    kinds = ["H100", "H200", "H100"]
    costs = costs_for(run, kinds)
    rows = tokens if logits is None else logits
    want = ep_rank_time(run.kernels, hardware.gpu(kinds[g]), run.arch, tokens, rows, 3)
    assert costs.na(g, tokens, logits) * run.arch.layers == pytest.approx(want, rel=1e-12)


def test_the_indexer_is_the_uncached_call_over_the_batchs_mean_context(run_parts):
    run = run_parts
    req = SimpleNamespace(inp=np.array([1000, 3000, 64]), gen=np.array([5, 9, 1]))
    kinds = ["H100", "H200"]
    costs = costs_for(run, kinds, req=req)
    for g, batch in ((0, [0]), (1, [0]), (0, [1]), (0, [0, 1]), (1, [0, 1, 2]), (0, [2, 1])):
        ctx = sum(int(req.inp[r] + req.gen[r]) for r in batch) / len(batch)
        want = run.kernels.indexer_time(hardware.gpu(kinds[g]), run.arch, len(batch), ctx)
        assert want > 0 and costs.indexer(g, batch) == want
    req.gen[0] += 1  # a context that grew: a new answer, not the memoized one
    assert costs.indexer(0, [0]) == run.kernels.indexer_time(hardware.gpu("H100"), run.arch, 1,
                                                             1006.0)
    assert costs_for(run, kinds, indexer=False, req=req).indexer(0, [0, 1]) == 0.0


@settings(max_examples=40, deadline=None)
@given(calls=st.lists(st.tuples(st.sampled_from(["route", "fetch", "local"]),
                                st.integers(0, 1), st.integers(0, 15), st.integers(1, 64),
                                st.integers(1, 4)), min_size=1, max_size=12))
def test_round_costs_are_the_uncached_calls(run_parts, calls):
    run = run_parts
    costs = StepCosts(run.kernels, run.cm, run.arch, run.gpus, run.names, None, True)
    for option, g, owner, blocks, batch in calls:
        name, other = run.names[g], run.names[owner]
        assert costs.closed_form(option, g, owner, other, blocks, batch) == \
            getattr(run.cm, option)(name, other, blocks / batch, batch)
        assert costs.attention(name, blocks, batch) == \
            run.cm.attention_time(name, blocks / batch, batch)
        assert costs.route_payload(batch) == run.cm.route_payload(batch)
