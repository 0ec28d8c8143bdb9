"""Traffic classes on the Fabric: every byte is counted in its class, sent and delivered, per link
and over time; a tag changes no timing; aggregate link flows (the all-to-all's) are exact alone."""

import math

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import UserError
from simulator.network import Fabric
from simulator.network.traffic import (
    KV_FETCH,
    KV_ROUTE,
    MOE_COMBINE,
    MOE_DISPATCH,
    OTHER,
    PD_TRANSFER,
    TRAFFIC_CLASSES,
    by_class,
    tag,
)
from simulator.testing.fabric import fabric_cases, star_graph
from simulator.units import GB, MB, GBps, us


def tagged_run(g, flows, stack, tags):
    """Run ``flows`` (FlowSpec) with tag ``tags[i]``; return the Fabric and the records."""
    env = simpy.Environment()
    f = Fabric(env, g, stack)
    out = [None] * len(flows)

    def issue():
        for i in sorted(range(len(flows)), key=lambda i: (flows[i].issued_at, i)):
            fl = flows[i]
            if fl.issued_at > env.now:
                yield env.timeout(fl.issued_at - env.now)
            f.transfer(fl.src, fl.dst, fl.nbytes, lambda rec, i=i: out.__setitem__(i, rec),
                       tag=tags[i])

    env.process(issue())
    env.run()
    return f, out


def test_class_names_and_tags():
    assert TRAFFIC_CLASSES[0] == "other"
    for name in ("kv_route", "kv_fetch", "moe_dispatch", "moe_combine", "pd_transfer",
                 "tp_collective"):
        assert TRAFFIC_CLASSES[tag(name)] == name
    with pytest.raises(UserError, match="kv_teleport"):
        tag("kv_teleport")
    assert by_class([0.0, 2.0, 0.0, 5.0]) == {"kv_route": 2.0, "moe_dispatch": 5.0}


@settings(max_examples=40, deadline=None)
@given(fabric_cases(), st.data())
def test_bytes_are_conserved_per_class_sent_delivered_per_link_and_over_time(case, data):
    g, flows, stack = case
    tags = data.draw(st.lists(st.integers(0, len(TRAFFIC_CLASSES) - 1), min_size=len(flows),
                              max_size=len(flows)))
    f, recs = tagged_run(g, flows, stack, tags)
    expect = np.zeros(len(TRAFFIC_CLASSES))
    per_link: dict = {}
    for fl, t in zip(flows, tags, strict=True):
        expect[t] += fl.nbytes
        if fl.src != fl.dst:
            for e in f.path(fl.src, fl.dst).edges:
                per_link[(e, t)] = per_link.get((e, t), 0.0) + fl.nbytes
    assert f.sent_by_class == pytest.approx(expect.tolist(), rel=1e-12, abs=1e-9)
    assert f.delivered_by_class == pytest.approx(expect.tolist(), rel=1e-12, abs=1e-9)
    df = f.links_by_class()
    got = {((u, v), TRAFFIC_CLASSES.index(c)): b
           for u, v, c, b in zip(df.src, df.dst, df.traffic_class, df.bytes, strict=True)}
    assert set(got) <= set(per_link)
    for key, nbytes in per_link.items():
        assert got.get(key, 0.0) == pytest.approx(nbytes, rel=1e-9, abs=1e-3)
    # per link, the classes add up to the link's bytes
    links = f.links_frame().set_index(["src", "dst"])["bytes"]
    sums = df.groupby(["src", "dst"])["bytes"].sum()
    for key, nbytes in sums.items():
        assert nbytes == pytest.approx(links[key], rel=1e-9, abs=1e-3)
    if f.env.now > 0:  # over time: the bins add up to the totals, class by class
        tl = f.class_timeline(max(f.env.now / 7, 1e-9))
        total = df.assign(kind=[g.edges[u, v]["kind"] for u, v in zip(df.src, df.dst,
                                                                       strict=True)])
        want = total.groupby(["kind", "traffic_class"])["bytes"].sum()
        have = tl.groupby(["kind", "traffic_class"])["bytes"].sum()
        for key, nbytes in want.items():
            assert have[key] == pytest.approx(nbytes, rel=1e-9, abs=1e-3)


def test_a_tag_changes_no_timing():
    g = star_graph(3, GBps(100), us(1))
    flows = [(0.0, "h0", "h2", GB(1)), (0.001, "h1", "h2", GB(1)), (0.002, "h0", "h1", MB(3))]

    def run(tags):
        env = simpy.Environment()
        f = Fabric(env, g, "ibgda")
        recs = []

        def go():
            for (at, a, b, n), t in zip(flows, tags, strict=True):
                yield env.timeout(at - env.now)
                f.transfer(a, b, n, recs.append, tag=t)

        env.process(go())
        env.run()
        return sorted(recs)

    assert run([0, 0, 0]) == run([KV_ROUTE, KV_FETCH, PD_TRANSFER])


def _two_flows_into_h2():
    """Two 1 GB flows of two classes from h0 and h1 to h2 of a 100 GB/s star, issued at 0."""
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, GBps(100), 0.0))
    f.transfer("h0", "h2", GB(1), lambda r: None, tag=KV_ROUTE)
    f.transfer("h1", "h2", GB(1), lambda r: None, tag=MOE_DISPATCH)
    return env, f


def test_a_shared_flow_is_timed_by_the_filling_and_counted_in_its_class():
    env, f = _two_flows_into_h2()
    env.run()
    assert env.now == pytest.approx(0.02)  # both share sw -> h2 at 50 GB/s
    df = f.links_by_class()
    into = df[(df.src == "sw") & (df.dst == "h2")].set_index("traffic_class")["bytes"]
    assert into.to_dict() == pytest.approx({"kv_route": GB(1), "moe_dispatch": GB(1)})
    tl = f.class_timeline(0.01)
    assert set(tl.traffic_class) == {"kv_route", "moe_dispatch"}


def test_flows_sharing_a_link_when_the_clock_stops_count_their_bytes_so_far_in_their_class():
    # two 1 GB flows share sw -> h2 at 50 GB/s each; stopped at 5 ms each has moved 0.25 GB:
    # the link's total says so, and (until stop 73) the records by class said 0, a shared
    # flow's class record being written only when it ends
    env, f = _two_flows_into_h2()
    env.run(until=0.005)
    df = f.links_by_class()
    into = df[(df.src == "sw") & (df.dst == "h2")].set_index("traffic_class")["bytes"]
    assert into.to_dict() == pytest.approx({"kv_route": GB(0.25), "moe_dispatch": GB(0.25)},
                                           rel=1e-12)
    links = f.links_frame().set_index(["src", "dst"])["bytes"]
    assert links[("sw", "h2")] == pytest.approx(into.sum(), rel=1e-12)
    tl = f.class_timeline(0.001)
    assert tl["bytes"].sum() == pytest.approx(f.links_by_class()["bytes"].sum(), rel=1e-12)
    # asked again later, the same flows have moved further; nothing was recorded twice
    env.run(until=0.01)
    again = f.links_by_class()
    into = again[(again.src == "sw") & (again.dst == "h2")]["bytes"]
    assert into.tolist() == pytest.approx([GB(0.5), GB(0.5)], rel=1e-12)
    env.run()
    final = f.links_by_class()
    assert final[(final.src == "sw") & (final.dst == "h2")]["bytes"].tolist() == \
        pytest.approx([GB(1), GB(1)], rel=1e-12)


def test_a_link_flow_carries_an_aggregate_over_one_link_at_its_capped_share():
    g = star_graph(3, GBps(100), us(1))
    env = simpy.Environment()
    f = Fabric(env, g, "ibgda")
    done = []
    f.transfer_link("h0", "sw", GB(1), done.append, efficiency=0.5, delay_time=us(10),
                    tag=MOE_DISPATCH)
    env.run()
    (rec,) = done
    assert rec.finished_at == pytest.approx(us(10) + GB(1) / GBps(50), rel=1e-12)
    assert f.sent_by_class[MOE_DISPATCH] == GB(1) == f.delivered_by_class[MOE_DISPATCH]
    # it shares its link max-min with an ordinary message crossing it
    env = simpy.Environment()
    f = Fabric(env, g)
    recs = []
    f.transfer_link("h0", "sw", GB(1), recs.append)
    f.transfer("h0", "h1", GB(1), recs.append)
    env.run()
    # the link flow runs alone while the message waits out its 2 µs of latency, then both get
    # half of h0 -> sw; the message's last 0.2 MB go alone again
    assert [r.finished_at for r in recs] == pytest.approx([0.02 - us(2), 0.02], rel=1e-9)
    with pytest.raises(UserError, match="not a link"):
        f.transfer_link("h0", "h1", 1.0, print)
    with pytest.raises(UserError, match="efficiency"):
        f.transfer_link("h0", "sw", 1.0, print, efficiency=0.0)


@pytest.mark.parametrize("nbytes", [-1.0, math.inf, math.nan])
def test_a_link_flow_of_a_bad_size_is_refused(nbytes):
    f = Fabric(simpy.Environment(), star_graph(2, GBps(100), us(1)))
    with pytest.raises(UserError, match="transfer_link 'h0' -> 'sw': nbytes"):
        f.transfer_link("h0", "sw", nbytes, print)


@pytest.mark.parametrize("efficiency", [0.0, -0.5, 1.5, math.nan])
def test_a_link_flow_needs_an_efficiency_in_0_1(efficiency):
    f = Fabric(simpy.Environment(), star_graph(2, GBps(100), us(1)))
    with pytest.raises(UserError, match="efficiency must be in"):
        f.transfer_link("h0", "sw", 1.0, print, efficiency=efficiency)


def test_an_empty_link_flow_arrives_after_its_delay_and_never_inside_the_caller():
    env = simpy.Environment()
    f = Fabric(env, star_graph(2, GBps(100), us(1)))
    got = []
    f.transfer_link("h0", "sw", 0.0, got.append, efficiency=1.0)
    f.transfer_link("h0", "sw", 0.0, got.append, delay_time=us(10))
    assert got == [] and f.idle("h0", "h1")  # no bandwidth taken, before or after the delay
    env.run()
    assert [(r.nbytes, r.issued_at, r.finished_at) for r in got] == [(0.0, 0.0, 0.0),
                                                                   (0.0, us(10), us(10))]
    assert f.flows_completed == 2 and f.bytes_delivered == 0.0


def test_a_link_flow_counts_its_bytes_on_the_link_and_what_it_stands_for_in_its_class():
    # an aggregate of 1 GB on h0 -> sw standing for 3 GB of dispatched tokens (they cross
    # several links), one of 2 GB counted as such, and an ordinary message: flow ids in call
    # order, link bytes in bytes_sent, the counted bytes per class (sent now, delivered at the
    # last byte)
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, GBps(100), 0.0))
    recs = []
    f.transfer_link("h0", "sw", GB(1), recs.append, tag=MOE_DISPATCH, counted=GB(3))
    f.transfer_link("h1", "sw", GB(2), recs.append, tag=MOE_COMBINE, counted=GB(2))
    ev = f.transfer("h2", "h1", MB(1))
    sent = [0.0] * len(TRAFFIC_CLASSES)
    sent[MOE_DISPATCH], sent[MOE_COMBINE], sent[OTHER] = GB(3), GB(2), MB(1)
    assert f.sent_by_class == sent and f.delivered_by_class == [0.0] * len(TRAFFIC_CLASSES)
    assert f.bytes_sent == GB(3) + MB(1)
    env.run()
    assert sorted(r.flow_id for r in recs) == [0, 1] and ev.value.flow_id == 2
    assert [r.finished_at for r in sorted(recs, key=lambda r: r.flow_id)] == pytest.approx(
        [GB(1) / GBps(100), GB(2) / GBps(100)], rel=1e-12)
    assert f.delivered_by_class == sent
    assert f.bytes_delivered == GB(3) + MB(1) and f.flows_completed == 3


@pytest.mark.parametrize(("nbytes", "delay"), [(GB(1), 0.0), (1.0, us(10)), (0.0, us(10)),
                                               (0.0, 0.0)])
def test_a_link_flow_alone_costs_one_simpy_event(nbytes, delay):
    env = simpy.Environment()
    f = Fabric(env, star_graph(2, GBps(100), us(1)))
    got = []
    f.transfer_link("h0", "sw", nbytes, got.append, delay_time=delay)
    steps = 0
    while env.peek() < math.inf:
        env.step()
        steps += 1
    assert steps == 1 and got[0].finished_at == pytest.approx(delay + nbytes / GBps(100),
                                                              rel=1e-12)


def test_a_link_flow_on_a_busy_link_shares_it_from_its_start():
    # A (a message h0 -> h2, 1 GB) and L1 (1 GB on h0 -> sw) share h0 -> sw from 0; L2 (1 GB on
    # h0 -> sw, issued at 5 ms) joins them: 100/3 GB/s each. A and L1 have 0.75 GB left at
    # 5 ms: they end at 5 + 22.5 ms; L2 has 0.25 GB left then, alone: ends at 30 ms
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, GBps(100), 0.0))
    recs = []
    f.transfer("h0", "h2", GB(1), recs.append)
    f.transfer_link("h0", "sw", GB(1), recs.append)
    assert [s.rate for s in f.flows()] == [GBps(50), GBps(50)]  # at once, both
    f.transfer_link("h0", "sw", GB(1), recs.append, delay_time=0.005)
    env.run()
    assert [r.flow_id for r in recs] == [0, 1, 2]
    assert [r.finished_at for r in recs] == pytest.approx([0.0275, 0.0275, 0.03], rel=1e-9)
    assert f.links_frame().set_index(["src", "dst"]).loc[("h0", "sw"), "bytes"] == (
        pytest.approx(GB(3), rel=1e-12))
