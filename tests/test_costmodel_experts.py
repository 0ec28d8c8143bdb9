"""Expert popularity, EPLB placement and top-k sampling without replacement."""

import numpy as np

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
