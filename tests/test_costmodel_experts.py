"""Expert popularity, EPLB placement and top-k sampling without replacement."""

import numpy as np
import pytest

from simulator.costmodel.experts import place_experts, popularity, sample_topk


def test_topk_draws_k_distinct_experts_in_proportion_to_popularity():
    rng = np.random.default_rng(1)
    p = popularity("zipf", 64, rng, zipf_exponent=1.2)
    x = sample_topk(rng, np.cumsum(p), 40_000, 4)
    s = np.sort(x, axis=1)
    assert (s[:, 1:] != s[:, :-1]).all() and x.min() >= 0 and x.max() < 64
    # the first pick of each token follows the popularity exactly (Plackett–Luce)
    first = np.bincount(x[:, 0], minlength=64) / 40_000
    assert np.abs(first - p).max() < 0.01
    # hotter experts are in more top-k sets
    incl = np.bincount(x.ravel(), minlength=64)
    assert np.corrcoef(incl, p)[0, 1] > 0.9


def test_eplb_gives_replicas_to_the_hottest_experts_and_balances_ranks():
    p = popularity("zipf", 16, np.random.default_rng(0), zipf_exponent=1.5)
    place = place_experts(p, ranks=4, slots=5)  # 20 slots: 4 replicas
    assert place.shape == (4, 5) and sorted(set(place.ravel())) == list(range(16))
    count = np.bincount(place.ravel(), minlength=16)
    hottest = np.argsort(-p)[:4]
    assert count.sum() == 20 and set(np.flatnonzero(count > 1)) <= set(hottest)
    load = np.array([sum(p[e] / count[e] for e in row) for row in place])
    naive = p.reshape(4, 4).sum(axis=1)  # contiguous, no replicas
    assert load.max() - load.min() < naive.max() - naive.min()


def test_popularity_known_answers():
    assert popularity("uniform", 4, None).tolist() == [0.25] * 4
    p = popularity([3.0, 1.0], 2, None)  # a table of weights, normalized
    assert p.tolist() == [0.75, 0.25]
    assert popularity(np.array([1.0, 1.0, 2.0]), 3, None).tolist() == [0.25, 0.25, 0.5]
    # Zipf(1.5) over 8 experts: sorted, the weights 1 / i^1.5 normalized, in a random order
    z = popularity("zipf", 8, np.random.default_rng(3), zipf_exponent=1.5)
    w = 1.0 / np.arange(1, 9) ** 1.5
    assert np.sort(z)[::-1] == pytest.approx(w / w.sum(), rel=1e-12)
    assert not (np.diff(z) <= 0).all()  # not in rank order


def test_eplb_packs_the_heaviest_first_onto_the_least_loaded_rank_with_room():
    # 4 experts on 2 ranks × 2 slots: 0.4 → rank 0, 0.3 → rank 1, 0.2 → rank 1 (0.3 < 0.4),
    # 0.1 → rank 0: both ranks carry 0.5
    assert place_experts(np.array([0.4, 0.3, 0.2, 0.1]), 2, 2).tolist() == [[0, 3], [1, 2]]
    # a full rank takes nothing more, even when it is the least loaded
    assert place_experts(np.array([0.7, 0.1, 0.1, 0.1]), 2, 2).tolist() == [[0, 3], [1, 2]]
    # ties of load go to the lower rank, of weight to the lower expert id
    assert place_experts(np.full(4, 0.25), 2, 2).tolist() == [[0, 2], [1, 3]]


def test_eplb_gives_each_redundant_slot_to_the_heaviest_expert_per_replica():
    # 5 slots for 3 experts: the first replica to expert 0 (0.5), the second to expert 1 (its
    # 0.4 against 0.5 / 2); the replicas then pack by their load per replica
    place = place_experts(np.array([0.5, 0.4, 0.1]), 5, 1)
    assert np.bincount(place.ravel(), minlength=3).tolist() == [2, 2, 1]
    # 0.25, 0.25, 0.2, 0.2, 0.1 onto 5 ranks of one slot, in that order
    assert place.ravel().tolist() == [0, 0, 1, 1, 2]


def test_topk_of_every_expert_is_a_permutation_and_never_misses_the_last_one():
    rng = np.random.default_rng(5)
    p = np.array([0.05, 0.05, 0.1, 0.8])  # the hottest expert is the last
    x = sample_topk(rng, np.cumsum(p), 2_000, 4)
    assert (np.sort(x, axis=1) == np.arange(4)).all()
    first = np.bincount(sample_topk(rng, np.cumsum(p), 20_000, 1)[:, 0], minlength=4) / 20_000
    assert first == pytest.approx(p, abs=0.01)
    with pytest.raises(ValueError, match="top-5 of 4"):
        sample_topk(rng, np.cumsum(p), 1, 5)


def test_eplb_orders_replicas_by_their_load_per_replica():
    # 4 slots for 3 experts: expert 0 (0.5) gets the replica, so its two replicas weigh 0.25
    # each and expert 1 (0.4) goes first: 1 → rank 0, 0 → rank 1, 0 → rank 1 (0.25 < 0.4),
    # 2 → rank 0
    assert place_experts(np.array([0.5, 0.4, 0.1]), 2, 2).tolist() == [[1, 2], [0, 0]]
