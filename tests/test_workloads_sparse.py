"""Sparse selection: known counts, locality knobs, invariants, and an oracle for the sampler.

The compiled kernels (:mod:`workloads.sparse_kernels`) are held to the array code they replaced
(:mod:`simulator.testing.sparse_reference`) bit for bit: the same draws, the same selections."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.testing import sparse_reference as reference
from simulator.testing.sparse_reference import first_distinct as _first_distinct
from simulator.testing.sparse_reference import last_renewal as _last_renewal
from simulator.testing.traces import sparse_selectors
from workloads.focus import draw_focus
from workloads.sparse import SparseSelector
from workloads.sparse_kernels import NO_MASK, PRIME, gumbel_keys

CTX_256K = 262_144 // 64  # a 256k-token context in 64-token blocks


def test_dsa_reads_top_2048_tokens_as_32_blocks_plus_the_recent_window():
    sel = SparseSelector(kind="dsa")
    assert sel.sampled_per_layer == 32 and sel.window_blocks == 2
    picks = sel.select(np.random.default_rng(0), CTX_256K, n_layers=61)
    assert picks.shape == (61, 34)
    assert (picks[:, -2:] == [CTX_256K - 2, CTX_256K - 1]).all()


def test_nsa_reads_16_selected_blocks_and_a_512_token_window():
    sel = SparseSelector(kind="nsa")
    picks = sel.select(np.random.default_rng(0), 1000, n_layers=3)
    assert picks.shape == (3, 16 + 8)
    assert (picks[:, -8:] == np.arange(992, 1000)).all()
    assert SparseSelector(kind="nsa", block_tokens=128).counts(1000) == 8 + 4


def test_dense_reads_everything_and_small_contexts_are_read_whole():
    rng = np.random.default_rng(0)
    assert (SparseSelector(kind="dense").select(rng, 50, 2) == np.arange(50)).all()
    assert (SparseSelector(kind="dsa").select(rng, 30, 2) == np.arange(30)).all()
    assert SparseSelector().counts([1, 33, 34, 35, 5000]).tolist() == [1, 33, 34, 34, 34]


def test_a_batch_pads_short_rows_with_minus_one():
    sel = SparseSelector().select_batch(np.random.default_rng(0), [3, 100, 4096], 2)
    assert sel.indices.shape == (3, 2, 34)
    assert sel.counts.tolist() == [3, 34, 34]
    assert (sel.indices[0, :, 3:] == -1).all() and (sel.query(0) == [0, 1, 2]).all()
    assert sel.total_blocks == (3 + 34 + 34) * 2


def test_same_seed_same_selection():
    sel = SparseSelector()
    a = sel.select_batch(np.random.default_rng(7), [500, 4096, 60], 5).indices
    b = sel.select_batch(np.random.default_rng(7), [500, 4096, 60], 5).indices
    assert np.array_equal(a, b)


def overlap(picks):
    """Mean share of a layer's sampled blocks also picked by the previous layer."""
    return np.mean([len(np.intersect1d(picks[i], picks[i + 1])) / picks.shape[1]
                    for i in range(len(picks) - 1)])


def test_layer_correlation_makes_adjacent_layers_overlap():
    rng = np.random.default_rng(1)
    loose = SparseSelector(layer_correlation=0.0, recent_tokens=0, popular_fraction=0)
    tight = SparseSelector(layer_correlation=0.9, recent_tokens=0, popular_fraction=0)
    assert overlap(loose.select(rng, CTX_256K, 61)) < 0.05
    assert overlap(tight.select(rng, CTX_256K, 61)) > 0.8


@pytest.mark.parametrize(("zipf_s", "popular"), [(2.0, 1.0), (1.0, 0.5)])  # exact, oversampled
def test_zipf_popularity_concentrates_on_the_hot_region(zipf_s, popular):
    sel = SparseSelector(popular_fraction=popular, focus_fraction=0.0, zipf_s=zipf_s, salt=5,
                         layer_correlation=0.0, recent_tokens=0)
    picks = sel.select(np.random.default_rng(2), 1024, 200, popular_blocks=512)
    if popular == 1.0:
        assert picks.max() < 512  # popular draws stay within the repository part
    regions = np.bincount((picks // 16).ravel(), minlength=32)
    hottest = (0 * PRIME + 5) % 32  # rank 0 maps to region salt mod R
    assert regions.argmax() == hottest


def test_focus_draws_come_from_the_focus_set():
    sel = SparseSelector(popular_fraction=0.0, focus_fraction=1.0, recent_tokens=64)
    focus = np.arange(100, 164)
    picks = sel.select(np.random.default_rng(3), 4096, 10, focus=focus)
    sampled = picks[:, :-1]
    assert np.isin(sampled, focus).all()


def test_bad_knobs_are_rejected():
    with pytest.raises(ValueError, match="kind"):
        SparseSelector(kind="sparse")
    with pytest.raises(ValueError, match="popular_fraction"):
        SparseSelector(popular_fraction=0.8, focus_fraction=0.5)
    with pytest.raises(ValueError, match="context_blocks"):
        SparseSelector().select_batch(np.random.default_rng(0), [0], 1)


@given(sparse_selectors(), st.lists(st.integers(1, 3000), min_size=1, max_size=6),
       st.integers(1, 6), st.integers(0, 2**32 - 1), st.booleans())
def test_selections_stay_in_context_and_include_the_recent_window(sel, ctx, layers, seed,
                                                                 with_focus):
    rng = np.random.default_rng(seed)
    ctx = np.array(ctx)
    focus = None
    if with_focus:
        focus = np.stack([np.resize(draw_focus(rng, n, 2, 8), 16) for n in ctx])
    out = sel.select_batch(rng, ctx, layers, focus=focus, popular_blocks=ctx // 2)
    assert out.counts.tolist() == sel.counts(ctx).tolist()
    for q, n in enumerate(ctx):
        picks = out.query(q)
        assert picks.shape == (layers, out.counts[q])
        assert ((picks >= 0) & (picks < n)).all()
        assert (np.diff(picks, axis=1) > 0).all()  # sorted, no duplicates
        recent = np.arange(max(n - sel.window_blocks, 0), n)
        assert np.isin(recent, picks).all()
        assert (out.indices[q, :, out.counts[q]:] == -1).all()


def mixture_weights(sel, avail, pop, focus):
    """The exact path's weight of each older block, the obvious way, with its edge rules: no
    repository (pop = 0) spreads the popular share uniformly, as does a focus set with no
    valid entry; negative focus entries are padding; no focus set at all: no focus share."""
    p_foc = sel.focus_fraction if focus is not None else 0.0
    w = np.full(avail, (1 - sel.popular_fraction - p_foc) / avail)
    regions = -(-pop // sel.region_blocks)
    if regions == 0:
        w += sel.popular_fraction / avail
    else:
        zipf = np.arange(1, regions + 1) ** -sel.zipf_s
        zipf /= zipf.sum()
        for rank in range(regions):
            region = (rank * PRIME + sel.salt) % regions
            blocks = np.arange(region * sel.region_blocks,
                               min((region + 1) * sel.region_blocks, pop))
            w[blocks] += sel.popular_fraction * zipf[rank] / len(blocks)
    if focus is not None:
        entries = [int(b) for b in focus if b >= 0]
        if not entries:
            w += p_foc / avail
        for b in entries:
            w[b] += p_foc / len(entries)
    return w


@pytest.mark.parametrize("avail", [24, 300])  # exact (Gumbel) path and oversampling path
def test_inclusion_frequencies_match_sampling_without_replacement(avail):
    """Oracle: numpy's rng.choice(replace=False, p=w) draws successively without replacement,
    which is what both sampling paths implement."""
    sel = SparseSelector(top_k_tokens=8 * 64, recent_tokens=64, layer_correlation=0.0,
                         popular_fraction=0.4, focus_fraction=0.3, zipf_s=1.2, salt=3,
                         region_blocks=8)
    n, pop, layers, reps = avail + 1, avail * 3 // 4, 50, 40
    focus = np.arange(5, 13)
    rng = np.random.default_rng(11)
    counts = np.zeros(avail)
    for _ in range(reps):
        picks = sel.select(rng, n, layers, focus=focus, popular_blocks=pop)[:, :-1]
        counts += np.bincount(picks.ravel(), minlength=avail)
    w = mixture_weights(sel, avail, pop, focus)
    ref = np.zeros(avail)
    orng = np.random.default_rng(12)
    for _ in range(reps * layers):
        ref[orng.choice(avail, size=8, replace=False, p=w / w.sum())] += 1
    total = reps * layers
    # each block's count in either sample is Binomial(total, p_b); their difference has standard
    # deviation sqrt(2·p_b(1−p_b)/total) as a frequency: allow 4.5 of them per block (the
    # reference's frequency as p_b; a false alarm < avail × 7e-6), not a fixed 0.06 that dwarfs
    # frequencies of 8/300
    p = (counts + ref) / (2 * total)
    tol = 4.5 * np.sqrt(2 * p * (1 - p) / total) + 1 / total
    assert (np.abs(counts - ref) / total <= tol).all(), np.max(np.abs(counts - ref) / total / tol)


@given(rows=st.integers(1, 6), width=st.integers(1, 12), k=st.integers(1, 8),
       vmax=st.sampled_from([3, 20, 2**40]), seed=st.integers(0, 2**32 - 1))
def test_first_distinct_keeps_each_rows_first_k_distinct_values_in_order(rows, width, k, vmax,
                                                                          seed):
    cand = np.random.default_rng(seed).integers(0, vmax, (rows, width))
    got, ok = _first_distinct(cand, k)
    for r in range(rows):
        firsts = list(dict.fromkeys(cand[r].tolist()))  # distinct, in first-seen order
        assert ok[r] == (len(firsts) >= k)
        assert got[r].tolist() == (firsts[:k] if ok[r] else [0] * k)


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 5)),
       seed=st.integers(0, 2**32 - 1))
def test_last_renewal_points_each_slot_at_its_last_renewing_layer(shape, seed):
    renew = np.random.default_rng(seed).random(shape) < 0.4
    renew[:, 0, :] = True
    src = _last_renewal(renew)
    flat = np.arange(renew.size).reshape(shape)
    for q, layer, c in np.ndindex(*shape):
        last = max(x for x in range(layer + 1) if renew[q, x, c])
        assert src[q, layer, c] == flat[q, last, c]


@pytest.mark.parametrize(("knobs", "field"), [
    ({"top_k_tokens": 0}, "top_k_tokens"), ({"block_tokens": 0}, "block_tokens"),
    ({"nsa_selected_blocks": 0}, "nsa_selected_blocks"),
    ({"nsa_selection_tokens": -1}, "nsa_selection_tokens"), ({"region_blocks": 0}, "region_blocks"),
    ({"recent_tokens": -1}, "recent_tokens"), ({"nsa_window_tokens": -64}, "nsa_window_tokens"),
    ({"zipf_s": -0.5}, "zipf_s"), ({"popular_fraction": -0.1}, "popular_fraction"),
    ({"focus_fraction": 1.5, "popular_fraction": 0.0}, "focus_fraction"),
    ({"popular_fraction": 1.5, "focus_fraction": 0.0}, "popular_fraction"),
    ({"layer_correlation": 1.5}, "layer_correlation"),
    ({"layer_correlation": -0.1}, "layer_correlation"),
    ({"layer_correlation": 1.0}, "layer_correlation"), ({"oversample": 0.99}, "oversample"),
])
def test_each_bad_knob_is_rejected_by_name(knobs, field):
    with pytest.raises(ValueError, match=field):
        SparseSelector(**knobs)
    if field.endswith(("_fraction", "_correlation")) and knobs[field] != 1.0:  # out of [0, 1]
        with pytest.raises(ValueError, match=rf"{field} must be in \[0, 1\]"):
            SparseSelector(**knobs)


def test_knobs_at_their_bounds_are_accepted():
    # the smallest and largest values each knob allows
    SparseSelector(top_k_tokens=1, block_tokens=1, nsa_selected_blocks=1, nsa_selection_tokens=1,
                   region_blocks=1, recent_tokens=0, nsa_window_tokens=0, zipf_s=0.0,
                   popular_fraction=0.0, focus_fraction=0.0, layer_correlation=0.0,
                   oversample=1.0)
    SparseSelector(popular_fraction=1.0, focus_fraction=0.0)
    SparseSelector(popular_fraction=0.0, focus_fraction=1.0)
    SparseSelector(popular_fraction=0.4, focus_fraction=0.6)  # together exactly 1
    with pytest.raises(ValueError, match="n_layers"):
        SparseSelector().select_batch(np.random.default_rng(0), [10], 0)
    one = SparseSelector().select_batch(np.random.default_rng(0), [1], 1)
    assert one.query(0).tolist() == [[0]]  # a one-block context, one layer


def test_focus_entries_outside_the_older_blocks_are_ignored_and_block_zero_counts():
    # every draw from the focus set (32 blocks sampled per layer): the set is blocks 0 and
    # 10..48, and some entries that are no older block (negative, or in the recent window:
    # 4094, 4095)
    sel = SparseSelector(popular_fraction=0.0, focus_fraction=1.0, layer_correlation=0.0)
    valid = np.array([0, *range(10, 49)])
    focus = np.array([-1, -5, 4094, 4095, *valid])
    picks = sel.select(np.random.default_rng(4), 4096, 20, focus=focus)
    sampled = picks[:, :-2]  # the last 2 blocks are the recent window
    assert np.isin(sampled, valid).all()
    # 32 of 40 each layer: block 0 is picked in about 4/5 of the 20 layers, never in none
    assert (sampled == 0).any(axis=1).sum() >= 8
    # a focus set of 200 blocks: 56 draws a layer find 32 distinct ones, so the fast
    # (oversampled) path serves it. There too every draw picks one of the valid entries (the
    # ignored ones, 4 of 204, are never drawn), so every sampled block is one of them; block 0
    # is picked in about 16 % of the layers (uniform over the older blocks: 0.8 %)
    valid = np.array([0, *range(10, 209)])
    focus = np.array([-1, -5, 4094, 4095, *valid])
    sampled = sel.select(np.random.default_rng(5), 4096, 60, focus=focus)[:, :-2]
    assert np.isin(sampled, valid).all()
    assert (sampled == 0).any(axis=1).sum() >= 3


@settings(max_examples=150, deadline=None)
@given(sel=sparse_selectors(), ctx=st.lists(st.integers(1, 3000), min_size=1, max_size=4),
       layers=st.integers(1, 5), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_a_querys_selections_do_not_depend_on_the_padding_of_its_focus_row(sel, ctx, layers,
                                                                           seed, data):
    # A batch pads every focus row to its widest set (StepData), and entries that are no older
    # block of the query are ignored: neither may change what a query selects — the same
    # draws pick the same blocks (both paths: contexts of up to 3,000 blocks)
    ctx = np.array(ctx)
    rows = [data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=12)) for n in ctx]
    width = max([len(r) for r in rows] + [1])
    tight = np.full((len(ctx), width), -1, np.int64)
    for q, r in enumerate(rows):
        tight[q, : len(r)] = r
    padded = []
    for q, r in enumerate(rows):  # ignored entries inserted anywhere: padding, or no older block
        row = list(r)
        for _ in range(data.draw(st.integers(0, 8))):
            junk = data.draw(st.sampled_from([-1, -7, int(ctx[q]) - 1, int(ctx[q]) + 3]))
            if junk >= 0 and junk < ctx[q] - sel.window_blocks:  # an older block: not junk
                junk = -1
            row.insert(data.draw(st.integers(0, len(row))), junk)
        padded.append(row)
    wide = np.full((len(ctx), max(len(r) for r in padded) + 3), -1, np.int64)
    for q, r in enumerate(padded):
        wide[q, : len(r)] = r
    a = sel.select_batch(np.random.default_rng(seed), ctx, layers, focus=tight,
                         popular_blocks=ctx // 2)
    b = sel.select_batch(np.random.default_rng(seed), ctx, layers, focus=wide,
                         popular_blocks=ctx // 2)
    assert np.array_equal(a.indices, b.indices)


def test_a_querys_focus_share_does_not_depend_on_its_batch():
    # query A's focus set is 2 blocks, B's 60: beside B, A's row is padded to 60 entries. Every
    # focus draw of A still picks one of its 2 (before the fix: 2 in 60 did, and A selected its
    # focus blocks 0.5 times a layer instead of 2)
    sel = SparseSelector(popular_fraction=0.0, focus_fraction=0.5, layer_correlation=0.0)
    fa = np.array([10, 20])
    alone = sel.select_batch(np.random.default_rng(0), [1000], 400, focus=fa[None, :]).query(0)
    row = np.full(60, -1)
    row[:2] = fa
    batch = sel.select_batch(np.random.default_rng(0), [1000, 1000], 400,
                             focus=np.stack([row, np.arange(100, 160)])).query(0)
    for picks in (alone, batch):  # both focus blocks in every layer's sampled blocks
        assert (picks[:, : sel.sampled_per_layer, None] == fa).any(axis=1).all()


def test_a_focus_of_the_wrong_shape_is_refused_and_an_empty_batch_selects_nothing():
    sel = SparseSelector()
    with pytest.raises(ValueError, match="focus must be"):
        sel.select_batch(np.random.default_rng(0), [4096], 2, focus=np.arange(5))  # 1-D
    with pytest.raises(ValueError, match="focus must be"):
        sel.select_batch(np.random.default_rng(0), [4096], 2, focus=np.zeros((2, 5), np.int64))
    empty = sel.select_batch(np.random.default_rng(0), np.zeros(0, np.int64), 3)
    assert empty.indices.shape == (0, 3, 0) and empty.total_blocks == 0


def test_popular_draws_cover_every_region_of_the_repository_and_only_it():
    # 8 blocks sampled per layer (512 tokens), all draws popular, 16-block regions
    def picks(popular_blocks, layers=60, popular=1.0):
        sel = SparseSelector(top_k_tokens=512, popular_fraction=popular, focus_fraction=0.0,
                             layer_correlation=0.0, recent_tokens=0)
        return sel.select(np.random.default_rng(6), 4096, layers, popular_blocks=popular_blocks)

    # one region (16 blocks): every pick in it
    assert picks(16).max() < 16
    # four regions: ranks map to regions 0..3 (P mod 4 = 1, salt 0); the coldest of a
    # Zipf(1.1) over 4 has probability ~0.16 — about 75 of the 480 picks, none is unlikely
    many = picks(64)
    assert many.max() < 64
    assert np.bincount(many.ravel() // 16, minlength=4).min() > 20
    # no repository (0 popular blocks): draws stay uniform over the older blocks
    spread = picks(0, layers=40, popular=0.5)
    assert (spread == 0).any(axis=1).sum() < 5 and spread.max() > 1000


# -- the exact (Gumbel) path at its edges: 8 blocks sampled of 24 older ones -------------------


def exact(**knobs) -> SparseSelector:
    return SparseSelector(top_k_tokens=512, recent_tokens=64, layer_correlation=0.0, **knobs)


def test_the_exact_path_never_picks_a_block_of_zero_weight_while_others_remain():
    # all draws popular, 16 popular blocks (2 regions of 8): only those have weight
    sel = exact(popular_fraction=1.0, focus_fraction=0.0, region_blocks=8)
    picks = sel.select(np.random.default_rng(1), 25, 200, popular_blocks=16)[:, :-1]
    assert picks.max() < 16
    assert len(np.unique(picks)) == 16


def test_the_exact_path_fills_a_row_short_of_weighted_blocks_with_other_older_blocks():
    # 4 popular blocks (< 8 to pick): all 4 every layer, then 4 other blocks, distinct, of
    # each query's own older blocks (contexts of 25 and 20 blocks: 24 and 19 older; 20
    # would be the second query's recent window)
    sel = exact(popular_fraction=1.0, focus_fraction=0.0, region_blocks=8)
    s = sel.select_batch(np.random.default_rng(2), [20, 25], 100, popular_blocks=[4, 4])
    for q, older in ((0, 19), (1, 24)):
        picks = s.query(q)[:, :-1]
        assert all(set(range(4)) <= set(row) for row in picks.tolist())
        assert picks.max() < older
        assert all(len(set(row)) == 8 for row in picks.tolist())


@pytest.mark.parametrize("knobs", [
    {"popular_fraction": 1.0, "focus_fraction": 0.0},  # no repository: popular → uniform
    {"popular_fraction": 0.0, "focus_fraction": 1.0},  # no valid focus entry: → uniform
])
def test_the_exact_path_falls_back_to_uniform_draws(knobs):
    sel = exact(**knobs)
    focus = np.array([-1, -3])
    rng = np.random.default_rng(3)
    counts = np.zeros(24)
    layers = 600
    picks = sel.select(rng, 25, layers, focus=focus, popular_blocks=0)[:, :-1]
    counts += np.bincount(picks.ravel(), minlength=24)
    # each block is in a layer's 8 of 24 with probability 1/3: Binomial(600, 1/3) per block
    p, sd = 1 / 3, math.sqrt(layers / 3 * 2 / 3)
    assert (np.abs(counts - layers * p) <= 5 * sd).all(), counts


def test_adjacent_layers_overlap_even_when_there_are_only_two():
    rng = np.random.default_rng(8)
    tight = SparseSelector(layer_correlation=0.9, recent_tokens=0, popular_fraction=0)
    for ctx in (CTX_256K, 100):  # the oversampled path, and the exact one
        assert overlap(tight.select(rng, ctx, 2)) > 0.7


def test_first_distinct_keeps_values_that_need_64_bit_keys():
    # values near 2**31 and 2**40 packed with the column index: they must not overflow
    # (2**40 and 2**41 would be one value in 32 bits)
    rows = np.array([[2**30 + 5, 3, 2**30 + 5], [2**40, 2**41, 7]], np.int64)
    got, ok = _first_distinct(rows, 2)
    assert got.tolist() == [[2**30 + 5, 3], [2**40, 2**41]] and ok.tolist() == [True, True]


# -- the compiled kernels against the array code they replaced, bit for bit --------------------


def _queries(data, sel: SparseSelector, focus: bool):
    """Random older-block counts, repository lengths and focus sets for a few queries."""
    k = sel.sampled_per_layer
    qn = data.draw(st.integers(1, 4))
    avail = np.array(data.draw(st.lists(st.integers(k + 1, 40 * k), min_size=qn, max_size=qn)))
    pop = np.array([data.draw(st.integers(0, int(a))) for a in avail])
    foc = None
    if focus:
        width = data.draw(st.integers(1, 12))
        foc = np.array(data.draw(st.lists(st.lists(st.integers(-1, int(avail.max()) - 1),
                                                   min_size=width, max_size=width),
                                          min_size=qn, max_size=qn)))
        foc = np.where(foc < avail[:, None], foc, -1)
    return avail, pop, foc


@given(sel=sparse_selectors(kinds=("dsa", "nsa")), data=st.data(), layers=st.integers(1, 40),
       focus=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_the_oversampled_kernel_gives_the_array_codes_picks_from_the_same_draws(sel, data, layers,
                                                                              focus, seed):
    avail, pop, foc = _queries(data, sel, focus)
    k = sel.sampled_per_layer
    rng_new, rng_old = np.random.default_rng(seed), np.random.default_rng(seed)
    got, ok = sel._oversampled(rng_new, avail, pop, foc, layers, k)
    want, want_ok = reference.oversampled(sel, rng_old, avail, pop, foc, layers, k)
    assert rng_new.bit_generator.state == rng_old.bit_generator.state  # the same draws
    assert ok.tolist() == want_ok.tolist()
    # the array code's rows are in draw order, the kernel's too; the selector sorts them
    assert np.array_equal(got[ok], want[want_ok])


@given(sel=sparse_selectors(kinds=("dsa", "nsa")), data=st.data(), layers=st.integers(1, 40),
       focus=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_the_gumbel_kernel_gives_the_array_codes_keys_from_the_same_draws(sel, data, layers,
                                                                        focus, seed):
    avail, pop, foc = _queries(data, sel, focus)
    logw, valid = sel._log_weights(avail, pop, foc)
    k = min(sel.sampled_per_layer, int(avail.min()))
    rng_new, rng_old = np.random.default_rng(seed), np.random.default_rng(seed)
    uniforms = rng_new.random((len(avail), layers, logw.shape[1]))
    renew = sel._renew_mask(rng_new, uniforms.shape)
    keys = gumbel_keys(logw, valid, uniforms, NO_MASK if renew is None else renew)
    want = reference.gumbel_keys(sel, rng_old, logw, valid, layers)
    assert rng_new.bit_generator.state == rng_old.bit_generator.state
    assert np.array_equal(keys, want)  # every float, infinities included
    rng_new, rng_old = np.random.default_rng(seed), np.random.default_rng(seed)
    assert np.array_equal(np.sort(sel._gumbel_top(rng_new, logw, valid, layers, k), axis=2),
                          np.sort(reference.gumbel_top(sel, rng_old, logw, valid, layers, k),
                                  axis=2))


def test_the_gumbel_kernels_noise_is_numpys_gumbel_to_the_bit():
    uniforms = np.random.default_rng(5).random((1, 1, 200_000))
    logw = np.zeros((1, 200_000))
    keys = gumbel_keys(logw, np.ones((1, 200_000), bool), uniforms, NO_MASK)
    assert np.array_equal(-keys[0, 0], np.random.default_rng(5).gumbel(size=200_000))


def test_a_row_short_of_weighted_blocks_gets_the_fill_keys():
    # -inf weight: 1e300 for a valid block, +inf for padding; a finite weight: −(logw + noise)
    logw = np.array([[0.0, -np.inf, -np.inf]])
    valid = np.array([[True, True, False]])
    uniforms = np.full((1, 2, 3), 0.5)
    keys = gumbel_keys(logw, valid, uniforms, NO_MASK)
    noise = -math.log(-math.log(0.5))
    assert keys[0, :, 0].tolist() == [-noise, -noise]
    assert keys[0, :, 1].tolist() == [1e300, 1e300] and np.isinf(keys[0, :, 2]).all()


def test_persisting_noise_is_the_last_renewing_layers():
    uniforms = np.array([[[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]])  # (1 query, 3 layers, 2 blocks)
    renew = np.array([[[True, True], [False, True], [True, False]]])
    keys = gumbel_keys(np.zeros((1, 2)), np.ones((1, 2), bool), uniforms, renew)
    g = [-math.log(-math.log(1.0 - u)) for u in (0.1, 0.2, 0.4, 0.5)]
    assert keys[0, :, 0].tolist() == [-g[0], -g[0], -g[3]]
    assert keys[0, :, 1].tolist() == [-g[1], -g[2], -g[2]]


@given(sel=sparse_selectors(), ctx=st.lists(st.integers(1, 3000), min_size=1, max_size=5),
       layers=st.integers(1, 20), seed=st.integers(0, 2**32 - 1), with_focus=st.booleans())
def test_a_whole_batch_is_the_array_codes_selection(sel, ctx, layers, seed, with_focus):
    """The selector with its kernels against the selector with the array code in their place
    (the fallback of rows short of k distinct candidates included)."""
    rng = np.random.default_rng(seed)
    ctx = np.array(ctx)
    focus = None
    if with_focus:
        focus = np.stack([np.resize(draw_focus(rng, n, 2, 8), 16) for n in ctx])
    got = sel.select_batch(np.random.default_rng(seed), ctx, layers, focus=focus,
                           popular_blocks=ctx // 2)
    want = reference.array_selector(sel).select_batch(np.random.default_rng(seed), ctx, layers, focus=focus,
                            popular_blocks=ctx // 2)
    assert np.array_equal(got.indices, want.indices)


@given(sel=sparse_selectors(kinds=("dsa",)), data=st.data(), focus=st.booleans())
def test_the_exact_paths_weights_are_the_mixtures_for_every_query_of_a_batch(sel, data, focus):
    avail, pop, foc = _queries(data, sel, focus)
    if focus and data.draw(st.booleans()):
        foc[0] = -1  # a query whose focus set has no valid entry
    logw, valid = sel._log_weights(avail, pop, foc)
    assert logw.shape == valid.shape == (len(avail), avail.max())
    for q, a in enumerate(avail.tolist()):
        want = mixture_weights(sel, a, int(pop[q]), None if foc is None else foc[q])
        assert valid[q].tolist() == [True] * a + [False] * (avail.max() - a)
        assert np.allclose(np.exp(logw[q, :a]), want, rtol=1e-9, atol=0)
        assert (logw[q, :a][want == 0] == -np.inf).all()
        assert (logw[q, a:] == -np.inf).all()


def test_a_query_without_a_repository_draws_no_popular_block_in_either_code():
    # pop = 0: no region to draw from, so a "popular" draw stays uniform (the kernel must not
    # take a region modulo 0), beside a query that has one
    sel = SparseSelector(popular_fraction=0.6, focus_fraction=0.2, layer_correlation=0.5)
    avail, pop = np.array([300, 500]), np.array([0, 320])
    foc = np.array([[3, 9, -1], [-1, -1, -1]])
    for seed in range(3):
        got, ok = sel._oversampled(np.random.default_rng(seed), avail, pop, foc, 12, 32)
        want, want_ok = reference.oversampled(sel, np.random.default_rng(seed), avail, pop, foc,
                                              12, 32)
        assert ok.tolist() == want_ok.tolist() == [True, True]
        assert np.array_equal(got, want)


def test_a_batch_whose_later_query_has_more_older_blocks_keeps_them_all_apart():
    # the kernel's stamp array must cover the batch's largest context, wherever it is
    sel = SparseSelector(popular_fraction=0.0, focus_fraction=0.0, layer_correlation=0.3)
    avail, pop = np.array([100, 102, 40, 400]), np.array([0, 0, 0, 0])
    got, ok = sel._oversampled(np.random.default_rng(4), avail, pop, None, 30, 32)
    want, want_ok = reference.oversampled(sel, np.random.default_rng(4), avail, pop, None, 30, 32)
    assert ok.tolist() == want_ok.tolist()
    assert np.array_equal(got[ok], want[want_ok])
    assert got[3].max() >= 390  # the last query's blocks reach its end


def test_the_exact_paths_top_k_are_the_k_smallest_keys():
    # a partition around k - 2 instead of k - 1 keeps a wrong k-th key now and then: numpy's
    # introselect misplaces it only in long rows with a large k (280 older blocks, k = 128 at
    # 16-token blocks), which this covers over 40 seeds
    sel = SparseSelector(block_tokens=16, recent_tokens=0, layer_correlation=0.0)
    k = sel.sampled_per_layer
    logw, valid = np.zeros((1, 280)), np.ones((1, 280), bool)
    for seed in range(40):
        top = sel._gumbel_top(np.random.default_rng(seed), logw, valid, 8, k)
        keys = reference.gumbel_keys(sel, np.random.default_rng(seed), logw, valid, 8)
        assert np.array_equal(np.sort(top, axis=2), np.sort(np.argsort(keys, axis=2)[:, :, :k],
                                                              axis=2))


@pytest.mark.parametrize("blocks", [4096, 40])  # the oversampling path, the exact path
def test_without_layer_correlation_no_renewal_mask_is_drawn(blocks):
    # every slot draws afresh at every layer: the stream gives exactly the draws the picks use
    # (oversampling: 3 uniforms per candidate slot; exact: one per older block and layer)
    sel = SparseSelector(layer_correlation=0.0, popular_fraction=0.0, focus_fraction=0.0,
                         recent_tokens=64)
    rng, twin = np.random.default_rng(1), np.random.default_rng(1)
    layers = 3
    sel.select_batch(rng, [blocks], layers)
    avail = blocks - sel.window_blocks
    if avail > 4 * sel.sampled_per_layer:
        twin.random((3, layers * (int(np.ceil(sel.sampled_per_layer * sel.oversample)) + 4)))
    else:
        twin.random((1, layers, avail))
    assert rng.random() == twin.random()


@pytest.mark.parametrize("kind", ["dsa", "nsa", "dense"])
def test_the_blocks_always_picked_are_in_every_layers_selection(kind):
    sel = SparseSelector(kind=kind, top_k_tokens=256, block_tokens=64, recent_tokens=128)
    rng = np.random.default_rng(7)
    for n in range(1, 60):
        every = int(sel.always_picked(n))
        rows = sel.select_batch(rng, np.array([n]), 12).query(0)
        tail = np.arange(n - every, n)
        assert all(np.isin(tail, row).all() for row in rows), (kind, n)
    if kind == "dsa":  # 4 sampled + 2 recent: a context of 6 is picked whole, of 7 not
        assert sel.always_picked(np.array([1, 6, 7, 40])).tolist() == [1, 6, 2, 2]
