"""The cost model's crossovers: at each, route and fetch cost the same; no sign change is missed;
known cases and the written formula."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import topologies
from simulator.costmodel import CostModel
from simulator.costmodel.crossover import CrossoverSearch
from simulator.errors import UserError
from simulator.gpu import KernelModel
from simulator.hardware import STACKS
from simulator.units import GBps
from tests.strategies import architectures, two_node_graph

HOME = "n0/gpu0"
PEER = "n0/gpu1"  # same machine, over NVSwitch
REMOTE = "n1/gpu0"  # other machine
G = two_node_graph()
pairs = st.sampled_from([(HOME, PEER), (HOME, REMOTE), (REMOTE, HOME), (HOME, "n1/gpu1")])
stacks = st.sampled_from(sorted(STACKS))


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


@given(architectures(), st.integers(1, 64), st.sampled_from([1.0, 4.0]), pairs, stacks)
def test_at_the_block_crossover_route_and_fetch_agree(arch, batch, reuse, pair, stack):
    cm = CostModel(arch, G, stack)
    k = cm.crossover(*pair, batch=batch, reuse=reuse)
    if k is not None:
        assert k > 0
        r = cm.route(*pair, k, batch, reuse=reuse).total
        f = cm.fetch(*pair, k, batch, reuse=reuse).total
        assert rel(r, f) <= 1e-9
    # No sign change is missed: below the crossover (or anywhere, without one) the sign of
    # fetch − route is that of the first block.
    grid = [0.25 * 2**i for i in range(16)]
    signs = {cm.fetch(*pair, x, batch, reuse=reuse).total
             > cm.route(*pair, x, batch, reuse=reuse).total
             for x in grid if k is None or x < k * (1 - 1e-6)}
    assert len(signs) <= 1


@given(architectures(), st.integers(1, 16), st.integers(1, 32), pairs, stacks)
def test_at_the_bandwidth_crossover_route_and_fetch_agree(arch, blocks, batch, pair, stack):
    cm = CostModel(arch, G, stack)
    w = cm.crossover(*pair, "bandwidth", blocks=blocks, batch=batch)
    if w is not None:
        at = cm.replace(bandwidth=w)
        r, f = at.route(*pair, blocks, batch).total, at.fetch(*pair, blocks, batch).total
        assert rel(r, f) <= 1e-9
    else:  # then the sign of fetch − route is the same at any bandwidth
        signs = {cm.replace(bandwidth=bw).fetch(*pair, blocks, batch).total
                 > cm.replace(bandwidth=bw).route(*pair, blocks, batch).total
                 for bw in (1e6, 1e9, 1e12, 1e15)}
        assert len(signs) == 1


def test_bandwidth_crossover_known_case():
    # One DeepSeek-V3.2 block (73.7 KB) against a 279 KB routed payload: fetching moves fewer
    # bytes but pays a gather kernel, so below some bandwidth fetching wins.
    cm = CostModel("deepseek-v3.2", G, "ibgda")
    w = cm.crossover(HOME, REMOTE, "bandwidth", blocks=1)
    assert w is not None and w > 0
    assert cm.replace(bandwidth=w / 2).decide(HOME, REMOTE, 1, options=("route", "fetch")) == "fetch"
    assert cm.replace(bandwidth=w * 2).decide(HOME, REMOTE, 1, options=("route", "fetch")) == "route"


@given(architectures(), st.integers(1, 4096), st.integers(1, 32), st.floats(1.5, 64.0),
       st.sampled_from([(HOME, PEER), (HOME, REMOTE)]), stacks)
def test_at_the_probe_crossover_route_and_fetch_agree(arch, blocks, batch, reuse, pair, stack):
    cm = CostModel(arch, G, stack)
    p = cm.crossover(*pair, "probe", blocks=blocks, batch=batch, reuse=reuse)
    assume(p is not None)
    at = cm.replace(message_fixed_time=p)
    r = at.route(*pair, blocks, batch, reuse=reuse).total
    f = at.fetch(*pair, blocks, batch, reuse=reuse).total
    assert rel(r, f) <= 1e-9
    assert cm.crossover(*pair, "probe", blocks=blocks, batch=batch, reuse=1.0) is None


def test_block_crossover_matches_the_written_formula():
    # docs/costmodel.md: K* = (B(q+r)/(ηW) − λ) / (B(8 + bt·kv)/(ηW) + 2·B·bt·kv/(β·c)).
    k = KernelModel()
    cm = CostModel("deepseek-v3.2", G, "ibgda", kernels=k)
    for batch in (1, 4):
        eta_w = GBps(45.7)
        beta_c = cm.gpu_spec(HOME).hbm_bandwidth * k.copy_efficiency
        num = batch * (147_456 + 131_584) / eta_w - k.launch_time
        den = batch * (8 + 64 * 1152) / eta_w + 2 * batch * 64 * 1152 / beta_c
        assert cm.crossover(HOME, REMOTE, batch=batch) == pytest.approx(num / den, rel=1e-9)


@pytest.mark.parametrize("kernels", ["roofline", "profile", "H200 profile"])
@pytest.mark.parametrize("batch", [1, 8])
def test_a_crossover_past_the_attention_kink_is_found_in_its_own_piece(kernels, batch):
    # copies used 4 times: fetch pays a quarter of its round per use, and it stays cheaper
    # than route past the attention roofline's kink (4.92 blocks of DeepSeek-V3.2's 64 tokens
    # on an H100), where D has another slope. Found in that piece, D vanishes there (with a
    # measured table, the H200's, after secant steps: its attention curves between the
    # breakpoints) and changes sign around it; below it fetch is cheaper all along
    graph = topologies.build("dgx_h100", nodes=2, gpu="H200") if kernels == "H200 profile" else G
    cm = CostModel("deepseek-v3.2", graph, "ibgda",
                   **({"kernels": KernelModel()} if kernels == "roofline" else {}))
    kinks = sorted(set(CrossoverSearch(cm)._kinks((HOME, REMOTE), batch, None)))
    assert kinks and kinks[0] == pytest.approx(
        cm.kernels.attention_breakpoints(cm.gpu_spec(HOME), cm.model, batch, None)[0] / 64)
    k = cm.crossover(HOME, REMOTE, batch=batch, reuse=4.0)
    assert k is not None and k > kinks[0]

    def d(x):
        return (cm.fetch(HOME, REMOTE, x, batch, reuse=4.0).total
                - cm.route(HOME, REMOTE, x, batch, reuse=4.0).total)

    scale = cm.route(HOME, REMOTE, k, batch, reuse=4.0).total
    assert abs(d(k)) <= 1e-9 * scale
    assert d(k * 0.99) < 0 < d(k * 1.01)
    assert all(d(x) < 0 for x in (0.5, 1.0, kinks[0], (kinks[0] + k) / 2))


def test_bandwidth_and_probe_crossovers_with_reused_copies():
    # with copies used 4 times, fetch's bytes and messages count a quarter each: the line rate
    # where the two meet, and the per-message overhead + latency where they do (route's two
    # messages against fetch's half message per use: p* = D0 / (2 − 2/4), D0 with no fixed
    # message time)
    cm = CostModel("deepseek-v3.2", G, "ibgda", kernels=KernelModel())
    w = cm.crossover(HOME, REMOTE, "bandwidth", blocks=64, reuse=4.0)
    at = cm.replace(bandwidth=w)
    r, f = (at.route(HOME, REMOTE, 64, reuse=4.0).total,
            at.fetch(HOME, REMOTE, 64, reuse=4.0).total)
    assert rel(r, f) <= 1e-9
    p = cm.crossover(HOME, REMOTE, "probe", blocks=64, reuse=4.0)
    free = cm.replace(message_fixed_time=0.0)
    d0 = free.fetch(HOME, REMOTE, 64, reuse=4.0).total - free.route(HOME, REMOTE, 64,
                                                                   reuse=4.0).total
    assert p == pytest.approx(d0 / (2 - 2 / 4), rel=1e-12)
    at = cm.replace(message_fixed_time=p)
    assert rel(at.route(HOME, REMOTE, 64, reuse=4.0).total,
               at.fetch(HOME, REMOTE, 64, reuse=4.0).total) <= 1e-9
    # the same GPU: no message at all, so neither the line rate nor the latency decides
    assert cm.crossover(HOME, HOME, "probe", blocks=64, reuse=4.0) is None


@pytest.mark.parametrize("over", ["blocks", "bandwidth", "probe"])
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch": 0}, "batch=0"), ({"reuse": 0.5}, "reuse=0.5"), ({"blocks": -1.0}, "blocks=-1")])
def test_a_crossover_of_an_impossible_round_is_refused(over, kwargs, message):
    cm = CostModel("deepseek-v3.2", G, "ibgda", kernels=KernelModel())
    args = {"blocks": 4.0, **kwargs} if over != "blocks" else dict(kwargs)
    if over == "blocks" and "blocks" in kwargs:
        return  # the block crossover takes no block count
    with pytest.raises(UserError, match=message):
        cm.crossover(HOME, REMOTE, over, **args)


@pytest.mark.parametrize(("reuse", "piece"), [(1.0, 1), (4.0, 2)])
@pytest.mark.parametrize("batch", [1, 8])
def test_a_home_and_owner_of_two_kinds_have_two_kinks_and_each_piece_is_searched(reuse, batch,
                                                                               piece):
    # an H100 home fetching from or routing to an H20 owner (Lamina's cluster): the two GPUs'
    # attention rooflines kink at 0.29 and 4.92 blocks, so D is affine on three pieces. Used
    # once, the crossover lies in the middle piece; used 4 times, in the last. Each is a root
    # of D in its piece, D keeps one sign below it, and the pieces' ends are the kinks
    g = topologies.build("lamina_h100_h20", gpus_per_node=2)
    cm = CostModel("deepseek-v3.2", g, "ibgda", kernels=KernelModel())
    home, owner = "n0/gpu0", "n1/gpu0"
    assert (cm.gpu_spec(home).name, cm.gpu_spec(owner).name) == ("H100", "H20")
    kinks = sorted(set(CrossoverSearch(cm)._kinks((home, owner), batch, None)))
    assert kinks == pytest.approx([0.28856, 4.92094], rel=1e-4)
    k = cm.crossover(home, owner, batch=batch, reuse=reuse)
    edges = [0.0, *kinks, float("inf")]
    assert edges[piece] < k <= edges[piece + 1]

    def d(x):
        return (cm.fetch(home, owner, x, batch, reuse=reuse).total
                - cm.route(home, owner, x, batch, reuse=reuse).total)

    assert abs(d(k)) <= 1e-9 * cm.route(home, owner, k, batch, reuse=reuse).total
    assert d(k * 0.99) < 0 < d(k * 1.01)
    below = [x for x in (0.1, 0.2, *kinks, 1.0, 2.0, 8.0, 30.0) if x < k * 0.99]
    assert all(d(x) < 0 for x in below) and below
