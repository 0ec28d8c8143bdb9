"""Promises pinned at their boundaries: admission, eviction's clock, uniform draws, seeds.

Each test here catches one of the single-line bugs issue 20 planted that every earlier test let
through (``python benchmarks/mutation.py planted`` replays them; docs/invariants.md lists which
test catches which).
"""

import math
from collections import deque

import numpy as np
import pytest
import simpy

from simulator.engine.admission import Admission
from simulator.engine.scheduler import ServingSpec
from simulator.kvcache import BlockDirectory, DirectoryConfig
from simulator.scenario import PlacementSpec
from workloads.schema import make_trace
from workloads.sparse import SparseSelector

BT = 64


def admission(cap: int, inputs, outputs, kv_allocation: str) -> Admission:
    """A real :class:`Admission` on one GPU with ``cap`` KV blocks (nothing cached)."""
    d = BlockDirectory(DirectoryConfig("first_writer", 1, (cap,), 0, (0,), ((0.0,),), 1))
    blocks = [list(range(1000 * i, 1000 * i + -(-n // BT))) for i, n in enumerate(inputs)]
    trace = make_trace(arrival_at=[0.0] * len(inputs), input_tokens=list(inputs),
                       output_tokens=list(outputs), block_ids=blocks, block_tokens=BT,
                       source="test")
    return Admission(simpy.Environment(), trace, d, n_gpus=1,
                     placement=PlacementSpec(block_tokens=BT),
                     serving=ServingSpec(kv_allocation=kv_allocation), max_num_seqs=8,
                     prefill_time=lambda g, t: 0.0, region_blocks=8,
                     focus_rng=np.random.default_rng(0), progress=None)


@pytest.mark.parametrize("kv_allocation", ["reserve", "on_demand"])
def test_a_request_that_exactly_fits_is_admitted(kv_allocation):
    # 100 prompt + 40 output tokens = 140 tokens = 3 blocks of 64 (ceil(2.19))
    fits = admission(3, [100], [40], kv_allocation)
    plan = fits.sched[0].step(deque([0]))
    assert plan.admitted == [0] and plan.rejected == []
    assert plan.chunks == [(0, 100)]  # its whole prompt is computed
    # one block less and it can never fit: rejected, not left waiting
    short = admission(2, [100], [40], kv_allocation)
    plan = short.sched[0].step(deque([0]))
    assert plan.rejected == [0] and plan.admitted == []


def test_the_reservation_counts_output_tokens():
    # reserve: 100 + 40 tokens reserve 3 blocks (2 for the prompt alone); two such requests
    # need 6 blocks — in a pool of 5 the second waits
    a = admission(5, [100, 100], [40, 40], "reserve")
    kv = a.sched[0].kv
    assert a.need_blocks(0) == 3
    assert kv.admit(0) == 100 and kv.reserved == 3
    assert kv.admit(1) == -1  # does not fit now (3 + 3 > 5), fits alone: it waits
    kv.release(0)
    assert kv.reserved == 0 and kv.admit(1) == 100
    # the output alone can tip the count: 64 + 1 tokens are 2 blocks, 64 + 0 would be 1
    b = admission(1, [64], [1], "reserve")
    assert b.need_blocks(0) == 2 and b.sched[0].kv.admit(0) is None


def test_on_demand_growth_stops_exactly_at_the_capacity():
    a = admission(3, [100], [92], "on_demand")  # 192 tokens = exactly 3 blocks
    kv = a.sched[0].kv
    assert kv.admit(0) == 100
    assert kv.grow(0, 100) and kv.reserved == 2
    assert kv.grow(0, 92) and kv.reserved == 3  # the last token fills block 3
    assert not kv.grow(0, 1)  # one more token needs a fourth block
    assert kv.reserved == 3


def test_copies_are_evicted_by_the_holding_gpus_clock():
    # GPU 1 holds copies of blocks a and b (owned by GPU 0). GPU 1 used a at t=2 and b at t=1;
    # GPU 0 used b at t=3 (its own clock, the block's owner's). GPU 1 evicting one copy must
    # drop b, its own least recently used, not a (least recent by the owner's clock).
    d = BlockDirectory(DirectoryConfig("first_writer", 1, (100, 100), 0, (0, 0),
                                       ((0.0, 0.0), (0.0, 0.0)), 1))
    idx = d.intern(np.array([10, 11]))
    d.place(idx, 0, 0.0)
    assert d.add_copies(1, idx, 0, 1.0) == 2
    d.touch(1, idx[:1], 2.0)
    d.touch(0, idx[1:], 3.0)
    assert d.eviction.evict_lru(1, 1) == 1  # GPU 1 owns nothing: copies only
    assert d.has_copy(1, idx, 0).tolist() == [True, False]


def test_uniform_draws_are_uniform_over_every_older_block():
    # no popularity, no focus, no layer correlation: each row keeps k = 4 distinct blocks of the
    # 40 older ones (oversampling path: 40 > 4k), a uniform 4-subset, so each block is in a row
    # with probability exactly 4/40 — an expected count not taken from the selector.
    sel = SparseSelector(kind="dsa", top_k_tokens=4 * BT, block_tokens=BT, recent_tokens=0,
                         popular_fraction=0.0, focus_fraction=0.0, layer_correlation=0.0)
    avail, k, layers, reps = 40, 4, 100, 200
    rng = np.random.default_rng(5)
    counts = np.zeros(avail)
    for _ in range(reps):
        counts += np.bincount(sel.select(rng, avail, layers).ravel(), minlength=avail)
    n = layers * reps  # rows: each includes a block at most once → Binomial(n, p) per block
    p = k / avail
    # 5 standard deviations per block: a false alarm has probability < 40 × 5.7e-7 per seed
    tol = 5 * math.sqrt(n * p * (1 - p))
    assert np.abs(counts - n * p).max() <= tol, (counts.min(), counts.max(), n * p, tol)
    # and the draws reach both ends
    assert counts[0] > 0 and counts[-1] > 0


def _run(seed: int):
    from simulator import Scenario, run

    sc = Scenario.from_dict({
        "name": "seeds", "stack": "ideal", "policies": ["route"],
        "topology": {"spec": "single_node:gpus=2"}, "model": {"name": "deepseek-v3.2"},
        "workload": {"kind": "trace", "trace": "<given>"},
        "placement": {"scheme": "range", "weights_per_gpu": 40e9},
        "engine": {"max_batch": 2, "layer_groups": 2},
    })
    trace = make_trace(arrival_at=[0.0, 0.001], input_tokens=[60 * BT, 50 * BT],
                       output_tokens=[4, 3], block_ids=[list(range(60)), list(range(50))],
                       block_tokens=BT, source="test")
    return run(sc, policy="route", seed=seed, trace=trace)


def test_different_seeds_give_different_records():
    # DSA samples 32 of the older blocks per layer: the selections, and with them the rounds,
    # depend on the seed — and only on it
    a, b, c = _run(1), _run(2), _run(1)
    cols = ["iteration", "layer", "owner", "blocks", "distinct_blocks", "bytes", "sim_time"]
    assert a.rounds[cols].equals(c.rounds[cols])
    assert a.requests.equals(c.requests)
    assert not a.rounds[cols].equals(b.rounds[cols])
    # the same shape of work, different blocks
    assert len(a.rounds) > 0 and set(a.rounds["option"].astype(str)) == {"route"}


def test_the_planted_bug_command_parses_its_own_arguments(monkeypatch, capsys):
    # `mutation.py planted` once read an option only `score` defines; a name that matches no
    # planted bug runs none and exits 0
    from benchtools import benchmark

    monkeypatch.chdir(".")  # main() changes to the repository; restored after the test
    assert benchmark("mutation").main(["planted", "no bug has this name"]) == 0
    assert capsys.readouterr().out == ""
