"""The cost model's crossovers: at each, route and fetch cost the same; no sign change is missed;
known cases and the written formula."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from simulator.costmodel import CostModel
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
