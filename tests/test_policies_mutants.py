"""Known answers that the mutation score of the ``policies`` group (docs/mutation.md) found
missing outside adaptive's predicate: ``Observed``'s decayed counters, the two ways of pricing
bulk bytes at a live fair share (``FabricLoad``, ``adaptive_live``'s ``live_total``), the
registry's ``get`` and the fixed policies' answers. Each test names the lines it guards."""

import math

import numpy as np
import pytest
import simpy

import topologies
from simulator.costmodel import CostModel
from simulator.network import Fabric
from simulator.policies import Observed, PolicyContext, Round, get
from simulator.policies.adaptive import AdaptiveLive, live_total
from simulator.policies.colocated import Colocated
from simulator.policies.local import Local
from simulator.policies.observed import WINDOW, FabricLoad
from simulator.policies.route import Route

G = topologies.build("dgx_h100", nodes=2)
CM = CostModel("deepseek-v3.2", G, "ibgda")
HOME, NEAR, FAR = "n0/gpu0", "n0/gpu5", "n1/gpu3"


class Shares:
    """A fabric stand-in: a new flow on any path would get ``share`` [B/s], and take
    ``sharing`` [s] longer shared equally with the flows there as they finish."""

    def __init__(self, share: float, sharing: float = math.inf) -> None:
        self.share = share
        self.sharing = sharing
        self.asked = 0

    def fair_share(self, src, dst):
        return self.share

    def sharing_time(self, src, dst, nbytes):
        self.asked += 1
        return self.sharing


def test_a_pairs_counters_halve_once_past_the_window_and_only_that_pair():
    assert WINDOW == 4096.0
    obs = Observed(["h", "a", "b"], lambda g, at: 0.0)
    obs.copied(0, 1, 5000)  # past the window by copies alone: halved (observed.py:134)
    assert obs.copies[0, 1] == 2500.0
    obs.copied(0, 2, 4096)  # exactly at the window: kept
    assert obs.copies[0, 2] == 4096.0
    # hits from a step take (h, a) to 2,500 + 3,000 = 5,500 events: its copies and hits both
    # halve (observed.py:143, 168, 171, 172); (h, b), still at the window, is kept (:170)
    obs.step(0, np.array([0.0, 3000.0, 0.0]), None, 1, 1.0, 0.1, 10, 0)
    assert obs.copies[0].tolist() == [0.0, 1250.0, 4096.0]
    assert obs.hits[0].tolist() == [0.0, 1500.0, 0.0]



def test_a_pair_past_twice_the_window_halves_again_when_another_pair_grows():
    # copied() checks the whole row only when the grown pair is past the window or a pair
    # still was after the last decay (observed.py, _over): (h, a) at 10,000 halves to 5,000,
    # still past it, so copies of (h, b) far below the window halve it again
    obs = Observed(["h", "a", "b"], lambda g, at: 0.0)
    obs.copied(0, 1, 10000)
    assert obs.copies[0, 1] == 5000.0
    obs.copied(0, 2, 1)
    assert obs.copies[0].tolist() == [0.0, 2500.0, 1.0]
    obs.copied(0, 2, 1)  # now every pair is inside the window: nothing halves
    assert obs.copies[0].tolist() == [0.0, 2500.0, 2.0]
    # hits from a step past the window are seen by the next copies of another pair too
    obs.step(0, np.array([0.0, 0.0, 9000.0]), None, 1, 1.0, 0.1, 10, 0)
    assert obs.hits[0].tolist() == [0.0, 0.0, 4500.0] and obs.copies[0, 2] == 1.0  # 4,501 left
    obs.copied(0, 1, 1)
    assert obs.hits[0, 2] == 2250.0 and obs.copies[0, 2] == 0.5
    # rounds halve with them: (h, a) 1 → 0.5 → 0.25, + 1; (h, b) 2 → 1 → 0.5
    assert obs.rounds[0].tolist() == [0.0, 1.25, 0.5]
    # a pair whose hits took it near the window, past it by its own new copies
    obs = Observed(["h", "a"], lambda g, at: 0.0)
    obs.step(0, np.array([0.0, 3000.0]), None, 1, 1.0, 0.1, 10, 0)
    obs.copied(0, 1, 2000)
    assert (obs.copies[0, 1], obs.hits[0, 1], obs.rounds[0, 1]) == (1000.0, 1500.0, 0.5)

def test_a_step_that_selects_nothing_away_from_home_clears_the_last_selection():
    obs = Observed(["h", "a"], lambda g, at: 0.0)
    obs.step(0, None, np.array([0.0, 6.0]), 2, 1.0, 0.1, 10, 0)
    assert obs.selected_blocks(0, 1, 2) == 3.0
    obs.step(0, None, None, 2, 1.0, 0.1, 10, 0)  # observed.py:145
    assert obs.selected[0].tolist() == [0.0, 0.0] and obs.selected_blocks(0, 1, 2) == 0.0


def test_the_stability_counters_halve_once_past_their_window():
    obs = Observed(["h"], lambda g, at: 0.0)
    obs.selections(1, 1)  # one block, picked again: stability 1 (observed.py:192)
    assert obs.stability() == 1.0
    obs = Observed(["h"], lambda g, at: 0.0)
    obs.selections(65536, 40000)  # exactly at the window: kept (observed.py:163)
    assert (obs.picked, obs.picked_again) == (65536.0, 40000.0)
    obs.selections(2, 2)  # past it: both halve (observed.py:164, 165)
    assert (obs.picked, obs.picked_again) == (32769.0, 20001.0)
    assert obs.stability() == 20001.0 / 32769.0


def test_the_exact_engines_link_view_reads_the_fabrics_flows():
    env = simpy.Environment()
    fab = Fabric(env, G, "ibgda")
    load = FabricLoad(fab, CM.path_rate)
    assert load.idle(FAR, HOME, 0.0)  # observed.py:74
    assert load.extra_time(FAR, HOME, 1e6, 0.0) == 0.0  # idle: the path's static rate
    for _ in range(3):  # three long flows into HOME: a new one gets a quarter of the link
        fab.transfer(FAR, HOME, 1e12)
    env.run(until=1e-3)
    assert not load.idle(FAR, HOME, 1e-3) and load.idle(HOME, FAR, 1e-3)
    assert fab.fair_share(FAR, HOME) == 12.5e9 and CM.path_rate(FAR, HOME) == 45.7e9
    assert load.extra_time(FAR, HOME, 1e6, 1e-3) == pytest.approx(1e6 / 12.5e9 - 1e6 / 45.7e9)


def test_fabric_load_prices_bytes_at_the_share_below_the_static_rate():
    # n / share − n / static, share capped at the static rate; a stalled path never delivers
    # (observed.py:78, 79)
    def extra(share):
        return FabricLoad(Shares(share), lambda src, dst: 4e9).extra_time("a", "b", 1e6, 0.0)

    assert extra(1e9) == pytest.approx(1e-3 - 2.5e-4, rel=1e-12)
    assert extra(8e9) == 0.0
    assert extra(0.5) == pytest.approx(2e6 - 2.5e-4, rel=1e-12)  # slow, but not stalled
    assert extra(0.0) == math.inf


def test_fabric_load_takes_the_lesser_of_the_fair_share_and_the_sharing():
    # the fair share's delay, 7.5e-4 s at 1e9 B/s against a static 4e9, unless sharing with the
    # flows as they finish costs less (observed.py: FabricLoad.extra_time)
    def load(share, sharing):
        return FabricLoad(Shares(share, sharing), lambda src, dst: 4e9)

    assert load(1e9, 1e-5).extra_time("a", "b", 1e6, 0.0) == 1e-5  # flows about to end
    assert load(1e9, 1e-3).extra_time("a", "b", 1e6, 0.0) == pytest.approx(7.5e-4, rel=1e-12)
    assert load(1e9, 0.0).extra_time("a", "b", 1e6, 0.0) == 0.0  # nothing left on the path
    idle = Shares(8e9, 1e-5)  # the fair share above the static rate: nothing to add, or ask
    assert FabricLoad(idle, lambda src, dst: 4e9).extra_time("a", "b", 1e6, 0.0) == 0.0
    assert idle.asked == 0
    assert load(0.0, 1e-5).extra_time("a", "b", 1e6, 0.0) == math.inf  # a stalled path


def test_sharing_counts_each_flows_bytes_left_up_to_the_new_flows():
    # two flows into HOME share its NIC link (50e9 B/s, the least on the path): one long, one
    # short; a new flow of n bytes waits for all of the short one's rest and n of the long's
    env = simpy.Environment()
    fab = Fabric(env, G, "ibgda")
    load = FabricLoad(fab, CM.path_rate)
    fab.transfer(FAR, HOME, 1e12)
    fab.transfer(FAR, HOME, 2e6)
    env.run(until=7e-5)
    left = sorted(f.remaining_bytes for f in fab.flows())
    assert 0.0 < left[0] < 1e6 < left[1]  # the short one has less left than the new one's
    n = 1e6
    assert fab.sharing_time(FAR, HOME, n) == pytest.approx((left[0] + n) / 50e9, rel=1e-12)
    assert fab.sharing_time(HOME, FAR, n) == 0.0 and fab.sharing_time(HOME, HOME, n) == 0.0
    fair = n / fab.fair_share(FAR, HOME) - n / CM.path_rate(FAR, HOME)
    assert (left[0] + n) / 50e9 < fair  # the fair share charges the short flow as if it lasted
    assert load.extra_time(FAR, HOME, n, 7e-5) == pytest.approx((left[0] + n) / 50e9,
                                                                rel=1e-12)
    env.run(until=2e-4)  # the short one has ended: the long one alone, longer than n
    assert fab.sharing_time(FAR, HOME, n) == pytest.approx(n / 50e9, rel=1e-12)


def test_live_total_at_a_stalled_or_a_crawling_share():
    # a stalled path (share 0) makes an option with bytes on it never finish; half a byte a
    # second only makes it slow (adaptive.py:258, 259)
    rnd = Round(HOME, NEAR, 0, 1, 1, 1, 0.0)
    assert live_total(CM, Shares(0.0), "route", rnd) == math.inf
    assert live_total(CM, Shares(0.0), "local", rnd) == CM.local(HOME, NEAR, 1, 1).total
    q, r = CM.route_payload(1)
    static = CM.path_rate(HOME, NEAR)
    assert live_total(CM, Shares(0.5), "route", rnd) == pytest.approx(
        CM.route(HOME, NEAR, 1, 1).total + (q + r) / 0.5 - (q + r) / static, rel=1e-12)


def test_adaptive_live_breaks_a_tie_between_route_and_fetch_for_route():
    # route moves more bytes (query and answer rows) than fetch (one block) and is cheaper on
    # an idle path: at the share where their live totals are equal to the last bit route is
    # chosen (adaptive.py:237 `t < best_t`); one step of share lower, fetch
    rnd = Round(HOME, NEAR, 0, 1, 1, 1, 0.0)

    def total(option, share):
        return live_total(CM, Shares(share), option, rnd)

    lo, hi = 1e9, CM.path_rate(HOME, NEAR)
    assert total("route", lo) > total("fetch", lo) and total("route", hi) < total("fetch", hi)
    while math.nextafter(lo, hi) < hi:  # the lowest share at which route is no dearer
        mid = lo + (hi - lo) / 2
        lo, hi = (lo, mid) if total("route", mid) <= total("fetch", mid) else (mid, hi)
    assert total("route", hi) == total("fetch", hi) < total("local", hi)
    assert 2.7e10 < hi < 2.73e10

    def choice(share):
        return AdaptiveLive().choose(PolicyContext(CM, Shares(share), G, None), rnd)

    assert choice(hi) == "route" and choice(lo) == "fetch"


def test_get_makes_a_policy_of_a_class_and_the_fixed_policies_answer_so():
    assert isinstance(get(Route), Route)  # policies/__init__.py:52
    ctx = PolicyContext(CM, None, G, None)
    rnd = Round(HOME, NEAR, 0, 1, 1, 1, 0.0)
    assert Local().choose(ctx, rnd) == "local"  # local.py:20
    assert Colocated().choose(ctx, rnd) == "local"  # colocated.py:21 (kept for the interface)
