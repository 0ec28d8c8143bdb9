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
from simulator.models import MODELS
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


def first_root(d, lo: float = 1e-3, hi: float = 1e6, points: int = 600) -> float | None:
    """The oracle: D's first sign change on a log grid of block counts, bisected to its end."""
    grid = [lo * (hi / lo) ** (i / (points - 1)) for i in range(points)]
    prev_x, prev_d = grid[0], d(grid[0])
    for x in grid[1:]:
        dx = d(x)
        if prev_d != 0 and (dx == 0 or (dx > 0) != (prev_d > 0)):
            a, b = prev_x, x
            for _ in range(200):
                m = 0.5 * (a + b)
                dm = d(m)
                if dm == 0 or (dm > 0) != (prev_d > 0):
                    b = m
                else:
                    a = m
            return 0.5 * (a + b)
        prev_x, prev_d = x, dx
    return None


LAMINA = topologies.build("lamina_h100_h20", gpus_per_node=2)


@pytest.mark.parametrize("kernels", ["profile", "roofline"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_block_crossover_is_the_first_root_a_brute_force_search_finds(model, kernels):
    # an independent oracle: D = fetch − route on a fine log grid, its first sign change
    # bisected. Over every catalogue model and both KV dtypes, the machine's own NVSwitch,
    # the network, an H100 home with an H20 owner (two kinks) and the home's own GPU (where
    # route and fetch are the same local work: no crossover; the search answered 1.5e18 blocks
    # there, and 1e-12 where fetch's launch made D a constant 37.5 µs), batches 1 / 8 / 64,
    # copies used once and 4 times; the roots found lie from 0.03 blocks (GLM-5 over the
    # network) up
    found = 0
    for dtype in ("bf16", "fp8"):
        arch = MODELS[model].with_kv_dtype(dtype)
        for graph, src, dst in ((G, HOME, PEER), (G, HOME, REMOTE), (G, HOME, HOME),
                                (LAMINA, "n0/gpu0", "n1/gpu0")):
            cm = CostModel(arch, graph, "ibgda",
                           **({"kernels": KernelModel()} if kernels == "roofline" else {}))
            for batch in (1, 8, 64):
                for reuse in (1.0, 4.0):
                    def d(x, cm=cm, src=src, dst=dst, batch=batch, reuse=reuse):
                        return (cm.fetch(src, dst, x, batch, reuse=reuse).total
                                - cm.route(src, dst, x, batch, reuse=reuse).total)

                    k = cm.crossover(src, dst, batch=batch, reuse=reuse)
                    want = first_root(d)
                    assert (k is None) == (want is None), (dtype, src, dst, batch, reuse, k, want)
                    if k is not None:
                        found += 1
                        assert k == pytest.approx(want, rel=1e-6), (dtype, src, dst, batch, reuse)
    assert found >= 4


@pytest.mark.parametrize("kernels", ["profile", "roofline"])
@pytest.mark.parametrize("model", ["llama-65b", "llama-33b", "deepseek-v3.2"])
def test_at_the_homes_own_gpu_nothing_crosses(model, kernels):
    # no message either way: neither the block count, the line rate nor the latency flips the
    # choice (llama-65b in fp8 with the roofline makes fetch a constant 37.5 µs dearer there:
    # a bandwidth "crossover" of 0 B/s is none)
    cm = CostModel(MODELS[model].with_kv_dtype("fp8"), G, "ibgda",
                   **({"kernels": KernelModel()} if kernels == "roofline" else {}))
    for batch in (1, 8):
        assert cm.crossover(HOME, HOME, batch=batch) is None
        assert cm.crossover(HOME, HOME, "bandwidth", blocks=4, batch=batch) is None
        assert cm.crossover(HOME, HOME, "probe", blocks=4, batch=batch, reuse=2.0) is None


def test_a_round_of_no_blocks_has_no_probe_crossover():
    # with no block selected fetch sends nothing and only merges, while route still sends its
    # query and its result: fetch is the cheaper at every latency (D = D0 − 2p with D0 < 0)
    for model in sorted(MODELS):
        cm = CostModel(model, G, "ibgda", kernels=KernelModel())
        for owner in (PEER, REMOTE):
            free = cm.replace(message_fixed_time=0.0)
            assert free.fetch(HOME, owner, 0).total < free.route(HOME, owner, 0).total
            assert cm.crossover(HOME, owner, "probe", blocks=0) is None


@given(architectures(), st.integers(0, 4096), st.integers(1, 32), st.floats(1.0, 64.0),
       st.sampled_from([(HOME, PEER), (HOME, REMOTE)]), stacks)
def test_the_latency_flips_the_choice_at_the_probe_crossover_and_nowhere_else(
        arch, blocks, batch, reuse, pair, stack):
    cm = CostModel(arch, G, stack)
    p = cm.crossover(*pair, "probe", blocks=blocks, batch=batch, reuse=reuse)

    def fetch_dearer(latency):
        at = cm.replace(message_fixed_time=latency)
        return (at.fetch(*pair, blocks, batch, reuse=reuse).total
                > at.route(*pair, blocks, batch, reuse=reuse).total)

    if p is None:
        assert len({fetch_dearer(x) for x in (0.0, 1e-6, 1e-4, 1e-2, 1.0)}) == 1
    else:
        assert p >= 0
        assert len({fetch_dearer(x) for x in (0.0, 1e-6, 1e-4, 1e-2, 1.0) if x < p / 1.01}) <= 1
        assert len({fetch_dearer(x) for x in (1e-6, 1e-4, 1e-2, 1.0) if x > p * 1.01}) <= 1
        if 0 < p < 1.0:  # (past a second of latency the totals' rounding hides a µs of D)
            assert fetch_dearer(p * 0.5) != fetch_dearer(p * 2.0)


def block_counts_priced(cm: CostModel) -> list[float]:
    """The block counts at which ``cm`` prices a fetch from now on, in order (a list that
    fills as the search runs)."""
    calls: list[float] = []
    fetch = cm.fetch
    cm.fetch = lambda *a, **kw: calls.append(a[2]) or fetch(*a, **kw)
    return calls


@pytest.mark.parametrize("model", ["deepseek-v3.2", "glm-5", "llama-3-70b"])
@pytest.mark.parametrize(("graph", "owner"), [(G, REMOTE), (G, PEER), (LAMINA, "n1/gpu0")])
@pytest.mark.parametrize("reuse", [1.0, 4.0])
def test_a_roofline_crossover_is_read_off_its_piece_without_a_secant_step(model, graph, owner,
                                                                          reuse):
    # the module's design: with the roofline, D is affine between the kinks, so two points
    # inside a piece give its root exactly. The search prices D at two points of each piece it
    # looks at and once more at the root it found; a point outside the piece (across a kink)
    # would need secant steps, each one more pricing
    cm = CostModel(model, graph, "ibgda", kernels=KernelModel())
    home = "n0/gpu0"
    calls = block_counts_priced(cm)
    kinks = sorted(set(CrossoverSearch(cm)._kinks((home, owner), 1, None)))
    k = cm.crossover(home, owner, reuse=reuse)
    if k is None:
        assert len(calls) == 2 * (len(kinks) + 1)
        return
    pieces = [0.0, *kinks, float("inf")]
    piece = next(i for i in range(len(pieces) - 1) if pieces[i] < k <= pieces[i + 1])
    assert len(calls) == 2 * (piece + 1) + 1
    # the two points of each piece lie inside it, and the last pricing is at the root
    for i in range(piece + 1):
        lo, hi = pieces[i], pieces[i + 1]
        assert all(lo < x < hi for x in calls[2 * i:2 * i + 2])
    assert calls[-1] == k


class OddBreakpoints(KernelModel):
    """The roofline with breakpoints a custom kernel model might report: none of them real."""

    def attention_breakpoints(self, spec, arch, batch, heads=None):
        return [0.0, -64.0, float("inf"), float("nan"), *super().attention_breakpoints(
            spec, arch, batch, heads)]


@pytest.mark.parametrize("reuse", [1.0, 4.0])
def test_breakpoints_at_zero_below_it_or_infinite_are_not_kinks(reuse):
    plain = CostModel("deepseek-v3.2", G, "ibgda", kernels=KernelModel())
    odd = CostModel("deepseek-v3.2", G, "ibgda", kernels=OddBreakpoints())
    assert CrossoverSearch(odd)._kinks((HOME, REMOTE), 1, None) == CrossoverSearch(
        plain)._kinks((HOME, REMOTE), 1, None)
    assert odd.crossover(HOME, REMOTE, reuse=reuse) == plain.crossover(HOME, REMOTE, reuse=reuse)


def test_a_search_across_two_close_kinks_still_takes_its_points_inside_each_piece():
    # an H100 home and an H200 owner: the same peak FLOP/s, more HBM bandwidth on the H200, so
    # their attention rooflines kink within a factor of five of each other; a middle piece
    # that short is where points taken from the piece's length off its start leave it
    graph = G.copy()
    for gpu in ("n1/gpu0", "n1/gpu1"):
        graph.nodes[gpu]["gpu"] = "H200"
    cm = CostModel("deepseek-v3.2", graph, "ibgda", kernels=KernelModel())
    kinks = sorted(set(CrossoverSearch(cm)._kinks((HOME, REMOTE), 1, None)))
    assert len(kinks) == 2 and kinks[1] < 5 * kinks[0]
    calls = block_counts_priced(cm)
    k = cm.crossover(HOME, REMOTE, reuse=4.0)
    assert k > kinks[1]  # found in the last piece, after searching the two before it
    assert len(calls) == 2 * 3 + 1
    assert kinks[0] < calls[2] < calls[3] < kinks[1]


class SteppedGather(KernelModel):
    """The roofline's gather plus 100 µs from 1.85 DeepSeek-V3.2 blocks (136,397 B) on: a cost
    that jumps (at a breakpoint the model does not report)."""

    def gather_time(self, spec, nbytes):
        return super().gather_time(spec, nbytes) + (100e-6 if nbytes >= 136_397 else 0.0)


def test_where_fetch_jumps_past_route_no_block_count_makes_them_equal():
    # fetch is the cheaper below 1.87 blocks (the written formula's case); its gather jumps by
    # 100 µs at 1.85 blocks, past route, and fetch stays the dearer from there on. D changes
    # sign there without a root: the secant steps close in on the jump, where D is still
    # −0.1 µs on one side and +100 µs on the other, reach no root, and the search says so
    # instead of answering a point where route and fetch differ
    cm = CostModel("deepseek-v3.2", G, "ibgda", kernels=SteppedGather(), layout="scattered")

    def d(x):
        return cm.fetch(HOME, REMOTE, x).total - cm.route(HOME, REMOTE, x).total

    assert -1e-6 < d(1.8499) < 0 < d(1.8501)
    assert all(d(x) > 0 for x in (1.87, 2.0, 4.0, 8.0, 64.0, 4096.0))
    assert cm.crossover(HOME, REMOTE) is None


@pytest.mark.parametrize("batch", [1, 8])
def test_at_the_homes_own_gpu_a_launch_free_gather_has_no_crossover(batch):
    # a kernel model without launch time (KernelModel(launch_time=0), allowed: >= 0): at the
    # home's own GPU route and fetch do the same local work but for fetch's install copy, so
    # D = install(K) / reuse is 0 at zero blocks and positive at any block count. The search
    # answered 4.3e-15 blocks for GLM-5 with copies used 4 times (its first piece's root
    # extrapolated to 0 and landed just above it in rounding)
    cm = CostModel("glm-5", G, "ibgda", kernels=KernelModel(launch_time=0.0))
    for reuse in (1.0, 4.0):
        assert all(cm.fetch(HOME, HOME, x, batch, reuse=reuse).total
                   > cm.route(HOME, HOME, x, batch, reuse=reuse).total
                   for x in (0.01, 1.0, 64.0, 4096.0))
        assert cm.crossover(HOME, HOME, batch=batch, reuse=reuse) is None
