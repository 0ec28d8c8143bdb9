"""The crossover search over cost models written out by hand: route's and fetch's totals
affine in the block count (with kinks where the model reports them), in 1 / line rate and in
the per-message time, so every crossover is solved on paper. What they pin: a root exactly at
a kink or at zero blocks, a piece flat to a billionth of the larger total, an exact root where
both totals vanish, and bandwidth and latency crossovers at the edges of their ranges."""

import math
from dataclasses import dataclass, replace
from types import SimpleNamespace

import pytest

from simulator.costmodel.crossover import CrossoverSearch

BLOCK_TOKENS = 64
SRC, DST = "home", "owner"


@dataclass(frozen=True)
class LinearRound:
    """A stand-in for the closed form's CostModel with the totals written out:

    route = ``route_at(K)`` + (q + r)/W + 2·m, fetch = ``fetch_at(K)`` + (8·K + b·K)/(R·W)
    + (2/R)·m (fetch's two messages only with K > 0), with W the line rate, m every message's
    fixed time, R the copies' reuse, q + r route's bytes and b a block's bytes (efficiency 1).
    ``kinks``: the block counts the kernel model reports as attention breakpoints.
    """

    route_at: object
    fetch_at: object
    kinks: tuple = ()
    bandwidth: float = math.inf
    message_fixed_time: float = 0.0
    q_r: tuple = (0.0, 0.0)
    block_bytes: float = 0.0

    # what the search reads besides the totals
    block_tokens = BLOCK_TOKENS
    model = None
    stack = SimpleNamespace(efficiency=lambda inter_node: 1.0)

    @property
    def kernels(self):
        return SimpleNamespace(attention_breakpoints=lambda spec, arch, batch, heads: [
            k * BLOCK_TOKENS for k in self.kinks])

    def gpu_spec(self, node):
        return node

    def path(self, src, dst):
        return SimpleNamespace(inter_node=True)

    def replace(self, **changes):
        return replace(self, **changes)

    def route_payload(self, batch, heads):
        return self.q_r

    def request_bytes(self, blocks, batch):
        return 8.0 * blocks

    def fetch_bytes(self, blocks, batch):
        return self.block_bytes * blocks

    def route(self, src, dst, blocks, batch=1, heads=None, reuse=1.0):
        wire = sum(self.q_r) / self.bandwidth + 2 * self.message_fixed_time
        return SimpleNamespace(total=self.route_at(blocks) + wire)

    def fetch(self, src, dst, blocks, batch=1, heads=None, reuse=1.0):
        wire = 0.0
        if blocks > 0:
            wire = ((self.request_bytes(blocks, batch) + self.fetch_bytes(blocks, batch))
                    / self.bandwidth + 2 * self.message_fixed_time) / reuse
        return SimpleNamespace(total=self.fetch_at(blocks) + wire)


def crossing(cm, over="blocks", **kw):
    return CrossoverSearch(cm).find(SRC, DST, over, **kw)


def gap(cm, k, reuse=1.0):
    return (cm.fetch(SRC, DST, k, reuse=reuse).total
            - cm.route(SRC, DST, k, reuse=reuse).total)


def kinked_fetch(k):
    # slope 2 up to the kink at 1.5 blocks, 3 past it
    return 0.5 + 2.0 * k if k <= 1.5 else 3.5 + 3.0 * (k - 1.5)


def test_a_crossover_exactly_at_a_kink_is_found():
    # route = 2 + K, fetch = 0.5 + 2K up to the kink at 1.5 blocks (96 tokens), 3.5 + 3(K − 1.5)
    # past it: D = K − 1.5 below the kink and 2(K − 1.5) above, so route and fetch cost the
    # same at the kink itself (both 3.5), fetch the cheaper below it and the dearer above.
    # The first piece (0, 1.5] holds that root: K* = 1.5 (the next piece starts past it)
    cm = LinearRound(route_at=lambda k: 2.0 + k, fetch_at=kinked_fetch, kinks=(1.5,))
    assert crossing(cm) == 1.5
    assert gap(cm, 1.5) == 0.0 and gap(cm, 1.4) < 0 < gap(cm, 1.6)


def test_equal_costs_at_zero_blocks_only_are_no_crossover():
    # route = K, fetch = 2K: they agree at K = 0 and nowhere else; for any block count
    # (> 0) fetch is the dearer, so no block count flips the choice
    cm = LinearRound(route_at=lambda k: k, fetch_at=lambda k: 2.0 * k)
    assert all(gap(cm, k) > 0 for k in (1e-6, 0.5, 1.0, 1e6))
    assert crossing(cm) is None


@pytest.mark.parametrize(("route_at", "fetch_at"), [
    # fetch far the cheaper (1 µs against route's 1 s), D = −(1 − 1e-6) + 1.5e-9·K: between
    # the piece's two points (1/3 and 2/3 of a block) D changes by 5e-10, half a billionth of
    # the larger total (route's 1 s) but 500 times a billionth of the smaller
    (lambda k: 1.0, lambda k: 1e-6 + 1.5e-9 * k),
    # route = K + 1e-3, fetch = (1 + 1.5e-9)·K: the larger total is 0.33 at the first point
    # and 0.67 at the second, and D changes by 5e-10 between them: below a billionth of the
    # second, above a billionth of the first
    (lambda k: k + 1e-3, lambda k: (1.0 + 1.5e-9) * k),
])
def test_a_piece_is_flat_when_d_moves_by_at_most_a_billionth_of_the_larger_total(route_at,
                                                                                   fetch_at):
    # D's root lies 670 thousand (or million) blocks out, but across the sampled block D moves
    # by no more than rounding of the larger total at either point: the search reads the
    # piece as flat and answers None (the module's ROUNDING rule), rather than extrapolating
    # a slope out of what it counts as noise
    cm = LinearRound(route_at=route_at, fetch_at=fetch_at)
    d1, d2 = gap(cm, 1 / 3), gap(cm, 2 / 3)
    big = [max(cm.route(SRC, DST, x).total, cm.fetch(SRC, DST, x).total) for x in (1 / 3, 2 / 3)]
    assert d2 - d1 == pytest.approx(5e-10, rel=1e-6) and 1e-9 * max(big) > 5e-10
    assert crossing(cm) is None


def test_two_free_options_have_no_crossover():
    # route and fetch both cost 0 at every block count: D is 0, a billionth of 0 is 0, and
    # the piece is flat (not a slope of 0 / 0)
    cm = LinearRound(route_at=lambda k: 0.0, fetch_at=lambda k: 0.0)
    assert crossing(cm) is None


def test_an_exact_root_where_both_options_are_free_is_a_root():
    # route = |K − 1.5|, fetch = (1.5 − K)/2 below the kink at 1.5 blocks and 2(K − 1.5) past
    # it: D = (K − 1.5)/2, then K − 1.5, and both totals are 0 at the root. |D| = 0 is within
    # a billionth of the larger total (0) there: K* = 1.5
    cm = LinearRound(route_at=lambda k: abs(k - 1.5),
                     fetch_at=lambda k: (1.5 - k) / 2 if k <= 1.5 else 2.0 * (k - 1.5),
                     kinks=(1.5,))
    assert gap(cm, 1.0) < 0 < gap(cm, 2.0)
    assert crossing(cm) == 1.5


@pytest.mark.parametrize(("a_gap", "want"), [(1.0, 0.5), (1e-9, 5e8), (-1.0, None), (0.0, None)])
def test_the_bandwidth_crossover_is_the_byte_gap_over_the_time_gap(a_gap, want):
    # route moves q + r = 10 B and fetch 8 + 2 = 10 B per block; at 1.05 blocks fetch moves
    # 0.5 B more, and route's other work takes a_gap seconds (fetch's none): total = A + X/W gives
    # W* = 0.5 B / a_gap — 0.5 B/s for a second's gap (any positive rate is a line rate), and
    # none where the gap is the wrong way or 0 (the bytes alone then decide, at every W)
    blocks = 1.05
    cm = LinearRound(route_at=lambda k: a_gap, fetch_at=lambda k: 0.0,
                     q_r=(6.0, 4.0), block_bytes=2.0, bandwidth=1e9)
    w = crossing(cm, "bandwidth", blocks=blocks)
    if want is None:
        assert w is None
        return
    assert w == pytest.approx(want, rel=1e-9)
    assert gap(cm.replace(bandwidth=w), blocks) == pytest.approx(0.0, abs=1e-9 * a_gap)
    assert gap(cm.replace(bandwidth=w / 2), blocks) > 0 > gap(cm.replace(bandwidth=2 * w), blocks)


@pytest.mark.parametrize(("reuse", "want"), [(2.0, 0.0), (4.0, 0.0), (1.0, None)])
def test_where_route_and_fetch_agree_with_free_messages_the_probe_crossover_is_zero(reuse, want):
    # the same 1 s of other work and no wire time: with m = 0 the totals agree (D0 = 0), and
    # with m > 0 route's two messages cost more than fetch's 2/R: they meet at a latency of 0,
    # which is a latency (the search's own baseline); with R = 1 they agree at every m
    cm = LinearRound(route_at=lambda k: 1.0, fetch_at=lambda k: 1.0)
    p = crossing(cm, "probe", blocks=4, reuse=reuse)
    assert p == want
    if want is not None:
        at = cm.replace(message_fixed_time=1e-6)
        assert gap(at, 4, reuse) < 0


def test_route_and_fetch_equal_up_to_a_kink_then_apart_have_no_crossover():
    # route = fetch = 1 up to the kink at 1.5 blocks (the same work: D = 0, a flat piece),
    # fetch the dearer past it (D = K − 1.5): the choice never flips, from a tie to fetch
    # dearer is no crossing, and the root the last piece extrapolates to sits at its start
    cm = LinearRound(route_at=lambda k: 1.0, fetch_at=lambda k: 1.0 + max(k - 1.5, 0.0),
                     kinks=(1.5,))
    assert crossing(cm) is None


@pytest.mark.parametrize(("fixed", "slope"), [(1.0, 0.37), (3.0, 1.0), (3.0, 0.37), (0.1, 1.0)])
def test_a_root_within_rounding_of_zero_blocks_is_no_crossover(fixed, slope):
    # route = c + K, fetch = c + (1 + s)·K: the same fixed cost, so D = s·K is 0 at zero
    # blocks and positive at any block count. The root read off the first piece,
    # x1 − D(x1)/slope, lands a few 1e-16 blocks off 0 in rounding (these c and s put it
    # above 0, where D is within rounding of 0 too): no crossover, not one at 1e-15 blocks
    cm = LinearRound(route_at=lambda k: fixed + k, fetch_at=lambda k: fixed + (1 + slope) * k)
    assert all(gap(cm, k) > 0 for k in (1e-9, 0.5, 1.0, 1e6))
    assert crossing(cm) is None
