"""The max-min fair fluid Fabric: known answers first, then properties, then the naive oracle."""

import dataclasses
import math
from functools import reduce
from operator import add
from types import SimpleNamespace
from unittest import mock

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

import topologies
from simulator import hardware
from simulator.cli import main
from simulator.errors import UserError
from simulator.network import Fabric, TransferRecord, linkstats, maxmin
from simulator.network.accounts import AccountField
from simulator.network.paths import NoPathError
from simulator.network.traffic import KV_FETCH, KV_ROUTE, PD_TRANSFER
from simulator.testing.fabric import (
    FlowSpec,
    NaiveFabric,
    cross_node_pcie_graph,
    fabric_cases,
    max_min_rates,
    max_min_violations,
    parking_lot_graph,
    run_flows,
    star_graph,
)
from simulator.units import GB, MB, GBps, us

REL = 1e-12


def fabric(g, stack="ideal"):
    return Fabric(simpy.Environment(), g, stack=stack)


# -- known answers ---------------------------------------------------------------------------------

def test_one_flow_takes_latency_plus_size_over_bandwidth():
    f = fabric(star_graph(2, GBps(100), us(1)))
    (rec,) = run_flows(f, [FlowSpec(0.0, "h0", "h1", GB(1))])
    assert rec.started_at == pytest.approx(us(2), rel=REL, abs=0)  # two hops of 1 µs
    assert rec.finished_at == pytest.approx(us(2) + GB(1) / GBps(100), rel=REL, abs=0)
    assert rec.duration_time == pytest.approx(f.message_time("h0", "h1", GB(1)), rel=REL, abs=0)
    assert (rec.src, rec.dst, rec.nbytes, rec.issued_at) == ("h0", "h1", GB(1), 0.0)


def test_two_equal_flows_on_one_link_take_twice_as_long():
    f = fabric(star_graph(3, GBps(100), 0.0))
    recs = run_flows(f, [FlowSpec(0.0, "h0", "h2", GB(1)), FlowSpec(0.0, "h1", "h2", GB(1))])
    # both cross sw -> h2 and get 50 GB/s each
    assert [r.finished_at for r in recs] == pytest.approx([0.02, 0.02], rel=REL, abs=0)


def test_staggered_arrival_slows_the_first_flow_down():
    f = fabric(star_graph(3, GBps(100), 0.0))
    a, b = run_flows(f, [FlowSpec(0.0, "h0", "h2", GB(1)), FlowSpec(0.005, "h1", "h2", GB(1))])
    # A alone for 5 ms (0.5 GB), then both at 50 GB/s: A's last 0.5 GB take 10 ms -> 15 ms.
    # B has 0.5 GB by then; alone again at 100 GB/s it needs 5 ms more -> 20 ms.
    assert a.finished_at == pytest.approx(0.015, rel=REL, abs=0)
    assert b.finished_at == pytest.approx(0.020, rel=REL, abs=0)
    assert b.started_at == 0.005


def test_parking_lot_gets_max_min_rates():
    # r0 -10-> r1 -4-> r2 -10-> r3 (GB/s); one long flow over all three hops, one short per hop
    g = parking_lot_graph([GBps(10), GBps(4), GBps(10)])
    f = fabric(g)
    flows = [FlowSpec(0.0, "r0", "r3", GB(100))] + [
        FlowSpec(0.0, f"r{i}", f"r{i + 1}", GB(100)) for i in range(3)
    ]
    seen = {}

    def probe(now):
        seen.setdefault(now, {s.flow_id: s.rate for s in f.flows()})

    run_flows(f, flows, probe_at=[1.0], probe=probe)
    # middle hop: long and short share 4 -> 2 each; outer hops: the short flows take the rest, 8
    assert seen[1.0] == pytest.approx({0: GBps(2), 1: GBps(8), 2: GBps(2), 3: GBps(8)}, rel=REL, abs=0)
    paths = [[("r0", "r1"), ("r1", "r2"), ("r2", "r3")], [("r0", "r1")], [("r1", "r2")],
             [("r2", "r3")]]
    cap = {e: g.edges[e]["bandwidth"] for e in g.edges}
    assert max_min_rates(paths, [math.inf] * 4, cap) == pytest.approx(
        [GBps(2), GBps(8), GBps(2), GBps(8)], rel=REL, abs=0)


def test_cross_node_bottleneck_is_the_pcie_hop_not_infiniband():
    g = cross_node_pcie_graph()
    f = fabric(g)
    info = f.path("n0/gpu0", "n1/gpu0")
    assert info.inter_node and info.hops == 6
    assert info.bottleneck_bandwidth == GBps(32)  # PCIe Gen4 x16 < IB NDR 50 GB/s
    (rec,) = run_flows(f, [FlowSpec(0.0, "n0/gpu0", "n1/gpu0", GB(1))])
    latency = 4 * us(0.3) + 2 * us(0.2)
    assert rec.finished_at == pytest.approx(latency + GB(1) / GBps(32), rel=REL, abs=0)


def test_stack_overhead_and_efficiency_come_from_the_measured_round_trip():
    g = cross_node_pcie_graph()
    f = fabric(g, "ibgda")
    latency = 4 * us(0.3) + 2 * us(0.2)
    overhead = us(33.0) / 2 - (4 * us(0.3) + 2 * us(0.5))  # Lamina §6.3 RTT / 2 - L_ref
    empty, big = run_flows(f, [FlowSpec(0.0, "n0/gpu0", "n1/gpu0", 0.0),
                               FlowSpec(1.0, "n0/gpu0", "n1/gpu0", GB(1))])
    assert empty.finished_at == pytest.approx(overhead + latency, rel=REL, abs=0)
    assert empty.started_at == empty.finished_at  # a zero-byte message pays overhead + latency
    rate = 45.7 / 50.0 * GBps(32)  # efficiency 91.4 % of the bottleneck line rate
    assert big.duration_time == pytest.approx(overhead + latency + GB(1) / rate, rel=REL, abs=0)
    assert big.duration_time == pytest.approx(f.message_time("n0/gpu0", "n1/gpu0", GB(1)), rel=REL, abs=0)
    # within a node (no NIC on the path) the intra-node figures apply
    intra = fabric(star_graph(2, GBps(450), us(0.25)), "nccl")
    assert intra.message_time("h0", "h1", 0) == pytest.approx(us(3.0), rel=REL, abs=0)


def test_same_gpu_transfer_is_free_and_counted():
    f = fabric(star_graph(2))
    (rec,) = run_flows(f, [FlowSpec(0.5, "h0", "h0", MB(3))])
    assert rec == TransferRecord("h0", "h0", MB(3), 0.5, 0.5, 0.5, 0)
    assert f.bytes_sent == f.bytes_delivered == MB(3) and f.flows_completed == 1
    assert f.message_time("h0", "h0", MB(3)) == 0.0 and f.fair_share("h0", "h0") == math.inf


def test_a_callback_transfer_gets_the_same_record_and_never_runs_inside_the_caller():
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, GBps(100), us(1)), "ibgda")
    got = []

    def sender():
        yield env.timeout(0.25)
        ev = f.transfer("h0", "h1", MB(8))
        assert f.transfer("h2", "h1", MB(8), then=lambda rec: got.append(("cb", rec))) is None
        f.transfer("h2", "h2", MB(1), then=lambda rec: got.append(("local", rec)))
        assert got == []  # a same-GPU copy completes at once, but after the caller returns
        got.append(("ev", (yield ev)))

    env.process(sender())
    env.run()
    recs = dict(got)
    assert recs["local"] == TransferRecord("h2", "h2", MB(1), 0.25, 0.25, 0.25, 2)
    # the two 8 MB messages share h1's down link: same times, whichever form was used
    assert recs["cb"].finished_at == recs["ev"].finished_at
    assert recs["cb"].started_at == recs["ev"].started_at
    assert recs["cb"].duration_time > f.message_time("h2", "h1", MB(8)) * 1.5
    assert f.flows_completed == 3 and f.bytes_delivered == f.bytes_sent


def test_simultaneous_completions_fire_in_flow_id_order():
    env = simpy.Environment()
    f = Fabric(env, star_graph(4, GBps(100), 0.0))
    log = []

    def sender(name, src, dst):
        rec = yield f.transfer(src, dst, GB(1))
        log.append((name, rec.flow_id, env.now))

    for name, src, dst in [("c", "h2", "h3"), ("a", "h0", "h1"), ("b", "h1", "h0")]:
        env.process(sender(name, src, dst))
    env.run()
    assert log == [("c", 0, 0.01), ("a", 1, 0.01), ("b", 2, 0.01)]


def test_links_frame_accounts_bytes_busy_time_and_utilization():
    f = fabric(star_graph(3, GBps(100), 0.0))
    run_flows(f, [FlowSpec(0.0, "h0", "h2", GB(1)), FlowSpec(0.005, "h1", "h2", GB(1))])
    df = f.links_frame().set_index(["src", "dst"])
    assert list(df.columns) == ["kind", "bandwidth", "bytes", "busy_time", "utilization"]
    assert df.loc[("sw", "h2"), "bytes"] == pytest.approx(GB(2), rel=REL, abs=0)
    assert df.loc[("sw", "h2"), "busy_time"] == pytest.approx(0.02, rel=REL, abs=0)
    assert df.loc[("sw", "h2"), "utilization"] == pytest.approx(1.0, rel=REL, abs=0)
    assert df.loc[("h0", "sw"), "busy_time"] == pytest.approx(0.015, rel=REL, abs=0)
    assert df.loc[("h0", "sw"), "utilization"] == pytest.approx(GB(1) / (GBps(100) * 0.02))
    assert df.loc[("h2", "sw"), "bytes"] == 0.0 and df.loc[("h2", "sw"), "busy_time"] == 0.0


def test_link_timeline_bins_utilization():
    f = fabric(star_graph(3, GBps(100), 0.0))
    run_flows(f, [FlowSpec(0.0, "h0", "h2", GB(1)), FlowSpec(0.005, "h1", "h2", GB(1))])
    tl = f.link_timeline(0.005)
    up0 = tl[(tl.src == "h0") & (tl.dst == "sw")]
    # h0's uplink: full for 5 ms, then half for 10 ms, then idle
    assert up0.utilization.tolist() == pytest.approx([1.0, 0.5, 0.5, 0.0], abs=1e-12)
    assert up0.start_at.tolist() == pytest.approx([0.0, 0.005, 0.01, 0.015])
    totals = tl.groupby(["src", "dst"]).bytes.sum()
    frame = f.links_frame().set_index(["src", "dst"]).bytes
    assert totals.loc[frame.index].to_numpy() == pytest.approx(frame.to_numpy(), abs=1.0)
    with pytest.raises(UserError, match="bin_time"):
        f.link_timeline(0.0)


def test_a_lone_flow_is_binned_by_its_overlap_with_each_bin():
    # one 1 GB message alone on idle links from 2 ms to 12 ms: 3, 5 and 2 ms of it in the bins
    # (the run, hence the last bin, ends at 12 ms)
    f = fabric(star_graph(3, GBps(100), 0.0))
    run_flows(f, [FlowSpec(0.002, "h0", "h2", GB(1))])
    tl = f.link_timeline(0.005)
    down = tl[(tl.src == "sw") & (tl.dst == "h2")]
    assert down.bytes.tolist() == pytest.approx([GB(0.3), GB(0.5), GB(0.2)], rel=1e-12)
    assert down.utilization.tolist() == pytest.approx([0.6, 1.0, 1.0], abs=1e-12)
    frame = f.links_frame().set_index(["src", "dst"])
    assert frame.loc[("sw", "h2"), "bytes"] == GB(1)
    assert frame.loc[("sw", "h2"), "busy_time"] == pytest.approx(0.01, rel=REL)


def test_looking_at_a_lone_flow_midway_changes_nothing_but_shows_its_bytes_so_far():
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, GBps(100), 0.0))
    seen = {}

    def look():
        yield env.timeout(0.005)
        seen["bytes"] = f.links_frame().set_index(["src", "dst"]).loc[("h0", "sw"), "bytes"]
        seen["flows"] = [(s.rate, s.remaining_bytes) for s in f.flows()]

    done = f.transfer("h0", "h2", GB(1))
    env.process(look())
    env.run()
    assert seen["bytes"] == pytest.approx(GB(0.5), rel=1e-12)
    assert seen["flows"] == [(GBps(100), pytest.approx(GB(0.5), rel=1e-12))]
    assert done.value.finished_at == pytest.approx(0.01, rel=1e-12)
    assert f.links_frame().set_index(["src", "dst"]).loc[("h0", "sw"), "bytes"] == (
        pytest.approx(GB(1), rel=1e-12))


def test_a_delayed_message_that_is_overtaken_before_it_starts_shares_from_its_start():
    # A is sent at 0 to go at 1 ms (delay_time: e.g. when a kernel ends); B starts at 0.5 ms on
    # the same downlink, before A has started: B runs alone, then both share 50/50 from 1 ms
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, GBps(100), 0.0))
    recs = {}

    def b():
        yield env.timeout(0.0005)
        recs["b"] = yield f.transfer("h1", "h2", GB(1))

    f.transfer("h0", "h2", GB(1), then=lambda rec: recs.setdefault("a", rec), delay_time=0.001)
    env.process(b())
    env.run()
    assert (recs["a"].issued_at, recs["a"].started_at) == (0.001, 0.001)
    # B: 0.05 GB alone, 0.95 GB at half rate → 20 ms; A: the last 0.05 GB alone → 20.5 ms
    assert recs["b"].finished_at == pytest.approx(0.020, rel=1e-12)
    assert recs["a"].finished_at == pytest.approx(0.0205, rel=1e-12)
    assert f.links_frame().set_index(["src", "dst"]).loc[("sw", "h2"), "bytes"] == (
        pytest.approx(GB(2), rel=1e-12))
    with pytest.raises(UserError, match="delay_time"):
        f.transfer("h0", "h1", 1.0, delay_time=-1.0)


def test_fair_share_is_the_rate_a_new_flow_would_get():
    env = simpy.Environment()
    f = Fabric(env, star_graph(4, GBps(100), 0.0))
    assert f.fair_share("h0", "h1") == GBps(100)
    f.transfer("h0", "h2", GB(1))
    assert f.fair_share("h1", "h2") == pytest.approx(GBps(50))  # shares sw -> h2
    assert f.fair_share("h0", "h2") == pytest.approx(GBps(50))  # joins its own class
    assert f.fair_share("h3", "h1") == GBps(100)
    assert [s.rate for s in f.flows()] == [GBps(100)]  # asking changed nothing
    capped = Fabric(simpy.Environment(), cross_node_pcie_graph(), "nccl")
    assert capped.fair_share("n0/gpu0", "n1/gpu0") == pytest.approx(35.5 / 50 * GBps(32))


def test_bad_input_is_a_user_error_naming_the_field():
    f = fabric(star_graph(2))
    with pytest.raises(UserError, match="nbytes"):
        f.transfer("h0", "h1", -1)
    with pytest.raises(UserError, match="nbytes"):
        f.transfer("h0", "h1", float("nan"))
    with pytest.raises(NoPathError):
        f.transfer("h0", "nowhere", 1)
    g = star_graph(2)
    g.edges["h0", "sw"]["bandwidth"] = 0.0
    with pytest.raises(UserError, match="'h0' -> 'sw'.*bandwidth"):
        fabric(g)
    h = nx.DiGraph()
    h.add_edge("a", "b", bandwidth=1e9)
    with pytest.raises(NoPathError):
        fabric(h).transfer("b", "a", 1)


def test_same_input_same_records_bit_for_bit():
    g = star_graph(5)
    rng = np.random.default_rng(7)
    flows = [FlowSpec(float(t), f"h{a}", f"h{b}", float(s)) for t, a, b, s in zip(
        np.cumsum(rng.exponential(1e-3, 200)), rng.integers(0, 5, 200), rng.integers(0, 5, 200),
        rng.exponential(MB(50), 200), strict=True)]
    assert run_flows(fabric(g), flows) == run_flows(fabric(g), flows)


# -- properties ------------------------------------------------------------------------------------

def _caps(f: Fabric, flows):
    """flow id -> per-flow cap [B/s] (ids are issued in time order, ties by list order)."""
    order = sorted(range(len(flows)), key=lambda i: (flows[i].issued_at, i))
    caps = {}
    for fid, i in enumerate(order):
        s = flows[i]
        if s.src != s.dst:
            info = f.path(s.src, s.dst)
            caps[fid] = f.stack.efficiency(info.inter_node) * info.bottleneck_bandwidth
    return caps


@given(fabric_cases())
def test_allocation_is_feasible_and_max_min_fair_at_every_step(case):
    g, flows, stack = case
    f = fabric(g, stack)
    caps = _caps(f, flows)
    problems = []

    def probe(now):
        problems.extend(max_min_violations(f.flows(), g, caps))
        df = f.links_frame()
        assert (df.utilization <= 1 + 1e-9).all() and (df.busy_time <= now * (1 + 1e-12)).all()

    times = sorted({t for fl in flows for t in (fl.issued_at + 1e-6, fl.issued_at + 3e-4)})
    run_flows(f, flows, probe_at=times, probe=probe)
    assert problems == []


@given(fabric_cases())
def test_bytes_are_conserved_and_nothing_beats_the_closed_form(case):
    g, flows, stack = case
    f = fabric(g, stack)
    recs = run_flows(f, flows)
    assert f.flows_completed == len(flows) and f.flows() == []
    assert f.bytes_delivered == pytest.approx(f.bytes_sent, rel=1e-12)
    assert f.bytes_sent == pytest.approx(sum(fl.nbytes for fl in flows), rel=1e-12)
    for fl, rec in zip(flows, recs, strict=True):
        assert rec.issued_at == pytest.approx(fl.issued_at, rel=1e-12) and rec.nbytes == fl.nbytes
        assert rec.issued_at <= rec.started_at <= rec.finished_at
        # a duration is a difference of absolute times: it is exact only to their spacing
        slack = 4 * np.spacing(rec.finished_at)
        assert rec.duration_time >= f.message_time(fl.src, fl.dst, fl.nbytes) * (1 - 1e-12) - slack
    # each link carried exactly the bytes of the flows that crossed it
    expect = {}
    for fl in flows:
        for e in f.path(fl.src, fl.dst).edges:
            expect[e] = expect.get(e, 0.0) + fl.nbytes
    df = f.links_frame()
    got = dict(zip(zip(df.src, df.dst, strict=True), df.bytes, strict=True))
    for e, nbytes in got.items():
        assert nbytes == pytest.approx(expect.get(e, 0.0), rel=1e-9, abs=1e-3)


@given(fabric_cases(), st.integers(1, 5))
def test_link_records_moved_to_temporary_files_give_the_same_totals_and_timeline(case, piece):
    g, flows, stack = case
    plain, spilled = fabric(g, stack), fabric(g, stack)
    times = sorted({fl.issued_at + 1e-6 for fl in flows})
    run_flows(plain, flows, probe_at=times, probe=lambda now: None)
    want = plain.links_frame(), plain.link_timeline(3e-4)  # all records in one piece
    # move every record to disk at each probe, and go over them a few rows at a time
    with mock.patch.object(linkstats, "PIECE_ROWS", piece), \
            mock.patch.object(linkstats, "CHANGE_ROWS", piece):
        run_flows(spilled, flows, probe_at=times,
                  probe=lambda now: spilled._stats.spill(rows=1, spill_bytes=0))
        spilled._stats.spill(rows=1, spill_bytes=0)
        moved = spilled._stats._spills
        assert moved is None or any(x.spilled for x in moved.values())
        got = spilled.links_frame(), spilled.link_timeline(3e-4)
    for a, b in zip(want, got, strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=1e-6)
    # the timeline's bins add up to each link's bytes
    binned = got[1].groupby(["src", "dst"], sort=False)["bytes"].sum()
    total = got[0].set_index(["src", "dst"])["bytes"]
    assert np.allclose(binned.loc[total.index], total, rtol=1e-9, atol=1e-3)


@given(fabric_cases(), st.sampled_from([0, 1]))
def test_agrees_with_the_naive_oracle(case, ecmp):
    g, flows, stack = case
    env_a, env_b = simpy.Environment(), simpy.Environment()
    got = run_flows(Fabric(env_a, g, stack, ecmp=bool(ecmp)), flows)
    want = run_flows(NaiveFabric(env_b, g, stack, ecmp=bool(ecmp)), flows)
    for a, b in zip(got, want, strict=True):
        assert (a.src, a.dst, a.nbytes, a.issued_at, a.started_at, a.flow_id) == (
            b.src, b.dst, b.nbytes, b.issued_at, b.started_at, b.flow_id)
        assert a.finished_at == pytest.approx(b.finished_at, rel=1e-9, abs=0)


@given(fabric_cases(), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
def test_messages_sent_ahead_with_a_delay_agree_with_the_oracle(case, fractions):
    # the Fabric is told of some messages early (delay_time = part of their issue time), as
    # the engine does at a kernel's known end; the oracle gets them at their issue time
    g, flows, stack = case
    ahead = [dataclasses.replace(f, ahead_time=f.issued_at * fractions[i % len(fractions)])
             for i, f in enumerate(flows)]
    got = run_flows(Fabric(simpy.Environment(), g, stack), ahead)
    want = run_flows(NaiveFabric(simpy.Environment(), g, stack), flows)
    for a, b in zip(got, want, strict=True):
        assert (a.src, a.dst, a.nbytes) == (b.src, b.dst, b.nbytes)
        for t in ("issued_at", "started_at", "finished_at"):
            assert getattr(a, t) == pytest.approx(getattr(b, t), rel=1e-9, abs=1e-15)


# -- oracle comparison at scale --------------------------------------------------------------------

def _poisson_flows(names, n, mean_bytes, load_rate, rng):
    src = rng.integers(0, len(names), n)
    dst = (src + rng.integers(1, len(names), n)) % len(names)
    at = np.cumsum(rng.exponential(1.0 / load_rate, n))
    size = rng.exponential(mean_bytes, n)
    return [FlowSpec(float(t), names[a], names[b], float(s))
            for t, a, b, s in zip(at, src, dst, size, strict=True)]


@pytest.mark.parametrize("stack", ["ideal", "ibgda"])
def test_matches_oracle_on_a_loaded_star(stack):
    g = star_graph(8, GBps(100), us(1))
    # 8 hosts × 100 GB/s at load 0.7 with 1 GB mean flows: 560 flows/s
    flows = _poisson_flows([f"h{i}" for i in range(8)], 400, GB(1), 560.0,
                           np.random.default_rng(3))
    a = run_flows(fabric(g, stack), flows)
    b = run_flows(NaiveFabric(simpy.Environment(), g, stack), flows)
    fa = np.array([r.finished_at for r in a])
    fb = np.array([r.finished_at for r in b])
    assert np.max(np.abs(fa - fb) / fb) < 1e-9


@pytest.mark.parametrize("scan_links", [0, 128])  # heap search / linear scan for the bottleneck
def test_matches_oracle_on_two_dgx_h100(scan_links, monkeypatch):
    monkeypatch.setattr(maxmin, "_SCAN_LINKS", scan_links)
    g = topologies.build("dgx_h100", nodes=2)
    names = topologies.gpus(g)
    flows = _poisson_flows(names, 150, MB(64), 2e4, np.random.default_rng(4))
    a = run_flows(fabric(g, "ibgda"), flows)
    b = run_flows(NaiveFabric(simpy.Environment(), g, "ibgda"), flows)
    fa = np.array([r.finished_at for r in a])
    fb = np.array([r.finished_at for r in b])
    assert np.max(np.abs(fa - fb) / fb) < 1e-9
    nvlink = hardware.link("nvlink4").bandwidth
    assert any(fabric(g).path(a.src, a.dst).bottleneck_bandwidth == nvlink for a in a)


def test_demo_command_prints_the_story_as_json(capsys):
    import json

    main(["demo", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert len(out["flows"]) == 6 and out["links"]
    shared = [f for f in out["flows"] if f["dst"] == "n0/gpu3"]
    assert all(f["slowdown"] > 1.5 for f in shared)  # two senders into one NVLink port
    local = out["flows"][-1]
    assert local["src"] == local["dst"] and local["duration_time"] == 0.0


# -- boundaries the mutation score found unchecked ---------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("bandwidth", math.inf), ("bandwidth", -1e9), ("bandwidth", True), ("bandwidth", "1e9"),
    ("bandwidth", None), ("latency", -1e-6), ("latency", math.inf), ("latency", True),
    ("latency", "0"),
])
def test_a_bad_edge_is_refused_naming_it_and_its_field(field, value):
    g = star_graph(2)
    g.edges["sw", "h1"][field] = value
    with pytest.raises(UserError, match=f"'sw' -> 'h1': field '{field}'"):
        fabric(g)


def test_an_edge_without_latency_has_none_and_zero_latency_is_allowed():
    g = nx.DiGraph()
    g.add_edge("a", "b", bandwidth=1e9)  # no latency given
    g.add_edge("b", "c", bandwidth=2e9, latency=0.0)
    f = fabric(g)
    (rec,) = run_flows(f, [FlowSpec(0.0, "a", "c", 1e6)])
    assert (rec.started_at, rec.finished_at) == (0.0, pytest.approx(1e-3, rel=REL, abs=0))
    assert f.message_time("a", "c", 1e6) == pytest.approx(1e-3, rel=REL, abs=0)


@pytest.mark.parametrize("delay", [-1e-6, math.inf, math.nan])
def test_a_bad_delay_is_refused(delay):
    f = fabric(star_graph(2))
    with pytest.raises(UserError, match="delay_time"):
        f.transfer("h0", "h1", 1.0, delay_time=delay)
    with pytest.raises(UserError, match="nbytes"):
        f.transfer("h0", "h1", math.inf)


def test_an_empty_message_takes_the_paths_latency_and_never_completes_inside_the_caller():
    # 2 hops of 1 µs: an empty message arrives after 2 µs; without latency, at once — but after
    # the caller returns, as an event or as a callback
    f = fabric(star_graph(2, GBps(100), us(1)))
    (rec,) = run_flows(f, [FlowSpec(0.0, "h0", "h1", 0.0)])
    assert (rec.nbytes, rec.started_at, rec.finished_at) == (0.0, us(2), us(2))
    assert f.flows_completed == 1 and f.bytes_delivered == 0.0
    g = fabric(star_graph(2, GBps(100), 0.0))
    got = []
    assert g.transfer("h0", "h1", 0.0, then=got.append) is None
    assert got == []
    ev = g.transfer("h0", "h1", 0.0)
    assert not ev.processed  # its callbacks run when the clock gets there, not now
    g.env.run()
    assert [r.finished_at for r in got] == [0.0] and ev.value.finished_at == 0.0


def test_a_message_waits_its_paths_latency_before_it_shares_the_links():
    # 2 hops of 1 ms at 1 GB/s. A (1 MB) and B (1 MB) leave at 0: both wait 2 ms, then share
    # the links at 0.5 GB/s each: both end at 2 + 2 = 4 ms. A third, C, leaves at 3 ms: it
    # starts at 5 ms, after A and B are done, alone: ends at 6 ms
    f = fabric(star_graph(3, 1e9, 1e-3))
    recs = run_flows(f, [FlowSpec(0.0, "h0", "h2", 1e6), FlowSpec(0.0, "h1", "h2", 1e6),
                         FlowSpec(3e-3, "h0", "h2", 1e6)])
    assert [r.started_at for r in recs] == pytest.approx([2e-3, 2e-3, 5e-3], rel=REL, abs=0)
    assert [r.finished_at for r in recs] == pytest.approx([4e-3, 4e-3, 6e-3], rel=REL, abs=0)


def test_a_message_to_itself_still_needs_a_known_node():
    f = fabric(star_graph(2))
    assert f.message_time("h0", "h0", 1e9) == 0.0
    with pytest.raises(NoPathError):
        f.message_time("nowhere", "nowhere", 1.0)
    with pytest.raises(NoPathError):
        f.transfer("nowhere", "nowhere", 1.0)
    with pytest.raises(NoPathError):
        f.fair_share("nowhere", "nowhere")
    assert f.idle("h0", "h0") is True
    g = nx.DiGraph()
    g.add_edge("a", "b", bandwidth=0.5)  # any positive rate is a rate (here 0.5 B/s)
    (rec,) = run_flows(fabric(g), [FlowSpec(0.0, "a", "b", 1.0)])
    assert rec.finished_at == pytest.approx(2.0, rel=REL, abs=0)


def test_a_flow_joining_at_its_own_cap_is_predicted_to_finish_on_time():
    # efficiency 0.3: each message is capped at 0.3 GB/s of a 1 GB/s path, so a second
    # message between the same GPUs joins without changing anyone's rate. A (10 MB) runs
    # 0 → 33.3 ms; B (1 MB) joins at 1 ms and ends 3.33 ms later, not when A does
    slow = hardware.StackSpec("slow", inter_node_efficiency=0.3, intra_node_efficiency=0.3)
    f = Fabric(simpy.Environment(), star_graph(2, 1e9, 0.0), stack=slow)
    a, b = run_flows(f, [FlowSpec(0.0, "h0", "h1", 1e7), FlowSpec(1e-3, "h0", "h1", 1e6)])
    assert a.finished_at == pytest.approx(1e7 / 3e8, rel=1e-9, abs=0)
    assert b.finished_at == pytest.approx(1e-3 + 1e6 / 3e8, rel=1e-9, abs=0)


def _events(env) -> int:
    """Run ``env`` to the end; the number of SimPy events it processed."""
    n = 0
    while env.peek() < math.inf:
        env.step()
        n += 1
    return n


@pytest.mark.parametrize(("nbytes", "latency", "as_event"), [
    (GB(1), us(1), 2),  # alone on idle links: one event, at its last byte
    (1.0, us(1), 2),  # however small
    (0.0, us(1), 2),  # an empty message: one event, at the end of its latency
    (0.0, 0.0, 1),  # ... and without latency one event, so as not to run inside the caller
])
def test_a_message_sent_with_a_callback_costs_one_simpy_event(nbytes, latency, as_event):
    # the documented point of `then`: one SimPy event per message (the event form needs one
    # more, its own, except where that one is all it takes)
    events = 1
    env = simpy.Environment()
    f = Fabric(env, star_graph(2, GBps(100), latency))
    got = []
    assert f.transfer("h0", "h1", nbytes, then=got.append) is None
    assert _events(env) == events
    (rec,) = got
    assert rec.finished_at == pytest.approx(2 * latency + nbytes / GBps(100), rel=REL, abs=0)
    env = simpy.Environment()
    f = Fabric(env, star_graph(2, GBps(100), latency))
    ev = f.transfer("h0", "h1", nbytes)
    assert _events(env) == as_event and ev.value.finished_at == rec.finished_at


def test_an_empty_message_in_its_latency_leaves_the_links_idle():
    # an empty message takes no bandwidth, before or after its latency: a message sent
    # meanwhile runs alone at the full line rate
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, GBps(100), us(1)))
    empty = f.transfer("h0", "h2", 0.0)
    assert f.idle("h0", "h2") and f.idle("h1", "h2") and f.fair_share("h1", "h2") == GBps(100)
    big = f.transfer("h1", "h2", GB(1))
    env.run()
    assert empty.value.finished_at == pytest.approx(us(2), rel=REL, abs=0)
    assert big.value.finished_at == pytest.approx(us(2) + GB(1) / GBps(100), rel=REL, abs=0)


def test_a_message_without_latency_shares_its_links_from_the_moment_it_is_sent():
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, GBps(100), 0.0))
    f.transfer("h0", "h2", GB(1))
    assert f.idle("h1", "h2") is False and f.idle("h1", "h0") is True
    f.transfer("h1", "h2", GB(1))
    # at once (no clock step in between): both share sw -> h2 at 50 GB/s, with all bytes left
    assert [(s.src, s.rate, s.remaining_bytes) for s in f.flows()] == [
        ("h0", GBps(50), GB(1)), ("h1", GBps(50), GB(1))]
    assert f.fair_share("h0", "h1") == GBps(50)  # h0's uplink carries one of them


def test_bytes_are_counted_in_their_class_when_sent_and_again_at_their_last_byte():
    # 1 GB kv_route alone (ends 10 ms if alone), 1 GB kv_fetch sharing sw -> h2 with it (both
    # end at 20 ms), and two same-GPU copies of pd_transfer: 3 MB now, 5 MB issued at 1 ms
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, GBps(100), 0.0))
    f.transfer("h0", "h2", GB(1), tag=KV_ROUTE)
    f.transfer("h1", "h2", GB(1), tag=KV_FETCH)
    f.transfer("h2", "h2", MB(5), tag=PD_TRANSFER, delay_time=0.001)
    f.transfer("h2", "h2", MB(3), tag=PD_TRANSFER)
    sent = [0.0] * 7
    sent[KV_ROUTE], sent[KV_FETCH], sent[PD_TRANSFER] = GB(1), GB(1), MB(8)
    # a same-GPU copy is delivered at once (its event fires when the clock gets there)
    assert f.sent_by_class == sent and f.delivered_by_class == [0.0] * PD_TRANSFER + [MB(3), 0.0]
    env.run(until=0.0005)
    assert f.delivered_by_class == [0.0] * PD_TRANSFER + [MB(3), 0.0]
    env.run(until=0.015)
    assert f.delivered_by_class == [0.0] * PD_TRANSFER + [MB(8), 0.0]
    env.run()
    assert env.now == pytest.approx(0.02, rel=REL, abs=0)
    assert f.delivered_by_class == f.sent_by_class == sent
    assert f.bytes_sent == f.bytes_delivered == GB(2) + MB(8) and f.flows_completed == 4


def test_a_one_byte_message_on_a_busy_link_takes_its_share_of_time():
    # links of 2 B/s: A (100 B) runs alone from 0; B (1 B) shares sw -> h2 at 1 B/s from 0 and
    # ends at 1 s; A has 99 B left then, alone at 2 B/s: ends at 1 + 49.5 s
    f = fabric(star_graph(3, 2.0, 0.0))
    a, b = run_flows(f, [FlowSpec(0.0, "h0", "h2", 100.0), FlowSpec(0.0, "h1", "h2", 1.0)])
    assert b.finished_at == pytest.approx(1.0, rel=REL, abs=0)
    assert a.finished_at == pytest.approx(50.5, rel=REL, abs=0)


@pytest.mark.parametrize("elsewhere", [False, True])
def test_a_message_joining_its_class_at_the_cap_finishes_on_time(elsewhere):
    # efficiency 0.3: each message is capped at 0.3 GB/s of a 1 GB/s link. From 0, A (h0 -> h1,
    # 10 MB) and three of 1 MB from h2 share sw -> h1 at 0.25 GB/s each; the three end at 4 ms
    # and A speeds up to its cap. C (h0 -> h1, 1 MB) joins A at 5 ms without changing its rate
    # (0.6 of the link) and ends 1e6 / 3e8 s later; A ends at 4 + 9e6 / 3e8 s. With
    # `elsewhere`, two flows between other hosts make a second component (the fabric then keeps
    # a heap of predictions)
    slow = hardware.StackSpec("slow", inter_node_efficiency=0.3, intra_node_efficiency=0.3)
    f = Fabric(simpy.Environment(), star_graph(5, 1e9, 0.0), stack=slow)
    flows = [FlowSpec(0.0, "h0", "h1", 1e7)] + [FlowSpec(0.0, "h2", "h1", 1e6)] * 3 + [
        FlowSpec(5e-3, "h0", "h1", 1e6)]
    if elsewhere:
        flows += [FlowSpec(0.0, "h3", "h4", 1e8), FlowSpec(0.0, "h3", "h4", 1e8)]
    recs = run_flows(f, flows)
    want = [4e-3 + 9e6 / 3e8] + [4e-3] * 3 + [5e-3 + 1e6 / 3e8] + [1e8 / 3e8] * 2 * elsewhere
    assert [r.finished_at for r in recs] == pytest.approx(want, rel=1e-9, abs=0)


def test_a_shared_flows_bytes_are_spread_over_the_time_it_shared():
    # A (kv_route, 1 GB) alone for 5 ms, then shares sw -> h2 with B (kv_fetch, 1 GB) until
    # 15 ms; B then runs alone to 20 ms. Once shared, a flow's bytes are spread evenly over its
    # time in the class: A's last 0.5 GB over 5-15 ms, all of B's over 5-20 ms. Per 5 ms bin and
    # class, over both links each crosses (bytes per link × 2):
    f = fabric(star_graph(3, GBps(100), 0.0))
    run_flows(f, [FlowSpec(0.0, "h0", "h2", GB(1)), FlowSpec(0.005, "h1", "h2", GB(1))])
    tl = f.class_timeline(0.005).set_index(["traffic_class", "start_at"])["bytes"]
    assert tl.loc["other"].tolist() == pytest.approx(
        [GB(1), GB(0.5) + GB(2 / 3), GB(0.5) + GB(2 / 3), GB(2 / 3)], rel=1e-9)


@pytest.mark.parametrize("stack", ["ideal", "nccl"])  # nccl: every flow capped (above 25 GB/s)
def test_a_fair_share_probe_sees_every_class_and_changes_nothing(stack):
    # two messages h0 -> h2 (1 GB) and two h1 -> h2 (2 GB) share sw -> h2 (25 GB/s each); a
    # probe for h3 -> h2 would be the fifth: 20 GB/s. The probes change no finish time: the
    # first two end at 40 ms, the others (1 GB left, 50 GB/s each) at 60 ms (after the stack's
    # overhead)
    env = simpy.Environment()
    f = Fabric(env, star_graph(4, GBps(100), 0.0), stack)
    evs = [f.transfer(a, "h2", GB(n)) for a, n in (("h0", 1), ("h0", 1), ("h1", 2), ("h1", 2))]
    if f.stack.overhead_time(False) > 0:
        env.run(until=1.5 * f.stack.overhead_time(False))  # the four have started
    assert f.fair_share("h3", "h2") == pytest.approx(GBps(20), rel=REL, abs=0)
    assert f.fair_share("h1", "h2") == pytest.approx(GBps(20), rel=REL, abs=0)
    assert [s.rate for s in f.flows()] == pytest.approx([GBps(25)] * 4, rel=REL, abs=0)
    env.run()
    assert [e.value.finished_at for e in evs] == pytest.approx(
        [t + f.stack.overhead_time(False) for t in (0.04, 0.04, 0.06, 0.06)], rel=REL, abs=0)


@pytest.mark.parametrize("elsewhere", [False, True])
def test_flows_slower_than_one_byte_per_second_still_finish(elsewhere):
    # links of 2 B/s, efficiency 0.3: each message is capped at 0.6 B/s. A (100 B) from 0,
    # B (1 B) from 1 s and C (1 B) from 2 s share h0 -> h1 at the cap (1.8 of 2 B/s)
    slow = hardware.StackSpec("slow", inter_node_efficiency=0.3, intra_node_efficiency=0.3)
    f = Fabric(simpy.Environment(), star_graph(5, 2.0, 0.0), stack=slow)
    flows = [FlowSpec(0.0, "h0", "h1", 100.0), FlowSpec(1.0, "h0", "h1", 1.0),
             FlowSpec(2.0, "h0", "h1", 1.0)]
    if elsewhere:
        flows += [FlowSpec(0.0, "h3", "h4", 200.0), FlowSpec(0.0, "h3", "h4", 200.0)]
    recs = run_flows(f, flows)
    want = [100 / 0.6, 1 + 1 / 0.6, 2 + 1 / 0.6] + [200 / 0.6] * 2 * elsewhere
    assert [r.finished_at for r in recs] == pytest.approx(want, rel=1e-9, abs=0)


def test_a_message_route_is_the_delay_rate_and_links_a_lone_message_gets():
    # what the fast engine times messages by: overhead + latency, min(efficiency x bottleneck,
    # bottleneck) and the directed links crossed (indices into link_bandwidth)
    g = star_graph(3, GBps(100), us(1))
    g.edges["sw", "h1"]["bandwidth"] = GBps(40)
    f = Fabric(simpy.Environment(), g, "nccl")
    eff, over = f.stack.efficiency(False), f.stack.overhead_time(False)
    delay, rate, links, sid = f.message_route("h0", "h1")
    assert delay == pytest.approx(over + us(2), rel=REL, abs=0)
    assert rate == pytest.approx(eff * GBps(40), rel=REL, abs=0)
    edges = sorted(g.edges)
    assert [edges[i] for i in links] == [("h0", "sw"), ("sw", "h1")]
    assert [f.link_bandwidth[i] for i in links] == [GBps(100), GBps(40)]
    ideal = Fabric(simpy.Environment(), g)
    assert ideal.message_route("h0", "h1")[:2] == (us(2), GBps(40))  # no cap: the line rate
    assert f.message_route("h2", "h1")[3] != sid  # another route
    assert f.message_route("h0", "h1")[3] == sid


def test_a_link_route_is_the_links_index_and_an_id_that_records_on_that_link_alone():
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, GBps(100), 0.0))
    i, rid = f.link_route("sw", "h1")
    assert sorted(f.graph.edges)[i] == ("sw", "h1") and f.link_bandwidth[i] == GBps(100)
    assert f.link_route("sw", "h1") == (i, rid)  # the same link, the same route id
    assert rid != f.message_route("h0", "h1")[3]  # a message's route crosses two links
    f.record_messages([rid], [0.0], [0.01], [GB(1)])
    env.run(until=0.02)
    per_link = f.links_frame().set_index(["src", "dst"])["bytes"]
    assert per_link[("sw", "h1")] == GB(1) and per_link.sum() == GB(1)
    with pytest.raises(UserError, match="is not a link of the topology"):
        f.link_route("h0", "h1")  # a path of two links


def test_messages_timed_outside_are_counted_and_put_on_their_links():
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, GBps(100), 0.0))
    a, b = f.message_route("h0", "h1")[3], f.message_route("h2", "h1")[3]
    # 1 GB h0 -> h1 over 0-10 ms (kv_route), then 0.2 GB h2 -> h1 over 10-12 ms (kv_fetch)
    # and 12-14 ms (untagged: other)
    f.record_messages([a, b], [0.0, 0.01], [0.01, 0.012], [GB(1), GB(0.2)],
                      [KV_ROUTE, KV_FETCH])
    f.record_messages([b], [0.012], [0.014], [GB(0.2)])
    f.record_sent(GB(0.5), PD_TRANSFER)  # sent, delivered after the run's end
    f.record_sent(GB(0.1))
    env.run(until=0.02)
    assert f.bytes_sent == pytest.approx(GB(2), rel=REL) and f.flows_completed == 3
    assert f.bytes_delivered == pytest.approx(GB(1.4), rel=REL)
    sent = [0.0] * 7
    sent[0], sent[KV_ROUTE], sent[KV_FETCH], sent[PD_TRANSFER] = (GB(0.3), GB(1), GB(0.2),
                                                                  GB(0.5))
    assert f.sent_by_class == pytest.approx(sent, rel=REL)
    sent[0], sent[PD_TRANSFER] = GB(0.2), 0.0
    assert f.delivered_by_class == pytest.approx(sent, rel=REL)
    df = f.links_frame().set_index(["src", "dst"])
    assert df.loc[("sw", "h1"), "bytes"] == pytest.approx(GB(1.4), rel=REL)
    assert df.loc[("sw", "h1"), "busy_time"] == pytest.approx(0.014, rel=REL)
    assert df.loc[("h2", "sw"), "bytes"] == pytest.approx(GB(0.4), rel=REL)
    assert df.loc[("h0", "sw"), "utilization"] == pytest.approx(GB(1) / (GBps(100) * 0.02))
    with pytest.raises(ValueError):  # one tag per message
        fabric(star_graph(3)).record_messages([a, b], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0],
                                              [KV_ROUTE])
    # a refused call counts nothing (it once added its totals before finding the mismatch)
    counters = (f.bytes_sent, f.bytes_delivered, f.flows_completed, list(f.sent_by_class),
                list(f.delivered_by_class))
    for bad in (([a, b], [0.0], [1.0, 1.0], [1.0, 1.0], None),
                ([a, b], [0.0, 0.0], [1.0, 1.0], [1.0], None),
                ([a, b], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [KV_ROUTE])):
        with pytest.raises(ValueError, match="one entry per message"):
            f.record_messages(*bad)
    assert (f.bytes_sent, f.bytes_delivered, f.flows_completed, list(f.sent_by_class),
            list(f.delivered_by_class)) == counters


@pytest.mark.parametrize(("start", "values"), [
    (0.0, [3.0, 5.0, 7.0]),  # whole bytes: added at once (numpy), the same sum
    (2.0 ** 52, [0.5, 0.5]),  # halves: each rounds away alone, not so their sum of 1
    (2.0 ** 53, [1.0, 1.0, 2.0]),  # past 2**53 whole numbers stop being exact: the order counts
])
def test_messages_recorded_as_arrays_count_as_one_addition_after_another(start, values):
    # The fast engine hands record_messages numpy arrays; a batch of one class is added at once
    # only where the order cannot change the sum: the per-class counters are bit for bit those
    # of one message after another (reduce), whatever the counter held before
    env = simpy.Environment()
    f = Fabric(env, star_graph(2, GBps(100), 0.0))
    rid, n = f.message_route("h0", "h1")[3], len(values)
    f.sent_by_class[KV_ROUTE] = f.delivered_by_class[KV_ROUTE] = start
    f.record_messages(np.full(n, rid), np.zeros(n), np.ones(n), np.array(values),
                      np.full(n, KV_ROUTE))
    want = reduce(add, values, start)
    assert f.sent_by_class[KV_ROUTE] == want and f.delivered_by_class[KV_ROUTE] == want


@pytest.mark.parametrize("as_array", [False, True])
def test_record_messages_of_one_class_after_bytes_sent_ahead_and_of_none(as_array):
    env = simpy.Environment()
    f = Fabric(env, star_graph(2, GBps(100), 0.0))
    rid = f.message_route("h0", "h1")[3]

    def seq(xs, dtype=float):
        return np.array(xs, dtype) if as_array else list(xs)

    f.record_messages(seq([], int), seq([]), seq([]), seq([]), seq([], int))  # none: nothing
    assert (f.bytes_sent, f.flows_completed, sum(f.sent_by_class)) == (0.0, 0, 0.0)
    f.record_sent(GB(0.5), KV_ROUTE)  # sent, not (yet) delivered
    f.record_messages(seq([rid], int), seq([0.0]), seq([1.0]), seq([GB(1)]), seq([KV_ROUTE], int))
    f.record_messages(seq([rid, rid], int), seq([1.0, 1.0]), seq([2.0, 2.0]),
                      seq([GB(1), GB(2)]), seq([KV_ROUTE, KV_FETCH], int))
    assert f.sent_by_class[KV_ROUTE] == GB(2.5) and f.delivered_by_class[KV_ROUTE] == GB(2)
    assert f.sent_by_class[KV_FETCH] == f.delivered_by_class[KV_FETCH] == GB(2)
    assert (f.bytes_sent, f.bytes_delivered, f.flows_completed) == (GB(4.5), GB(4), 3)
    f.bytes_sent = 0.0  # a counter assigned on the Fabric is assigned in its accounts
    assert f.bytes_sent == 0.0 == f._accounts.bytes_sent


def test_an_account_field_reads_and_assigns_the_counter_of_its_own_name():
    class Owner:  # as the Fabric shows its Accounts' counters
        spent = AccountField()

        def __init__(self):
            self._accounts = SimpleNamespace(spent=1.0, other=7.0)

    o = Owner()
    assert o.spent == 1.0 and isinstance(Owner.spent, AccountField)
    o.spent = 2.5
    assert o._accounts == SimpleNamespace(spent=2.5, other=7.0) and o.spent == 2.5


def test_spilling_link_records_moves_them_out_of_memory_and_changes_no_result(monkeypatch):
    f = fabric(star_graph(3, GBps(100), 0.0))
    run_flows(f, [FlowSpec(0.0, "h0", "h2", GB(1)), FlowSpec(0.005, "h1", "h2", GB(1))])
    want = f.links_frame(), f.link_timeline(0.005)
    monkeypatch.setattr(linkstats, "SPILL_ROWS", 1)
    f.spill_records()
    assert len(f._stats.tl_link) == 0  # the records lie in temporary files now
    pd.testing.assert_frame_equal(f.links_frame(), want[0])
    pd.testing.assert_frame_equal(f.link_timeline(0.005), want[1])


def test_many_flows_finishing_one_by_one_on_two_components_agree_with_the_oracle():
    # 24 messages of 1, 2, ... 24 MB into h24 share its down link; as each finishes the others
    # speed up, so each departure makes every remaining prediction earlier. Two messages
    # h25 -> h26 make a second component: the fabric keeps a heap of predictions, fills with
    # superseded ones and compacts it now and then. Finish times as the naive oracle's
    n = 24
    g = star_graph(n + 3, GBps(100), us(1))
    flows = [FlowSpec(0.0, f"h{i}", f"h{n}", MB(1 + i)) for i in range(n)]
    flows += [FlowSpec(0.0, f"h{n + 1}", f"h{n + 2}", GB(1))] * 2
    got = run_flows(fabric(g), flows)
    want = run_flows(NaiveFabric(simpy.Environment(), g), flows)
    assert [r.finished_at for r in got] == pytest.approx([r.finished_at for r in want],
                                                         rel=1e-9, abs=0)


def two_flows_to_h1(rate: float, a: float, src: str, b: float, other: float) -> list:
    """The records of ``a`` B from h0 and then ``b`` B from ``src``, both to h1, on a star of
    five hosts with ``rate`` B/s links; first, if ``other`` > 0, two flows of ``other`` B from h3
    to h4 (a second component: a heap of predictions)."""
    env = simpy.Environment()
    f = Fabric(env, star_graph(5, rate, 0.0))
    log = []
    for _ in range(2 if other else 0):
        f.transfer("h3", "h4", other, then=log.append)
    f.transfer("h0", "h1", a, then=log.append)
    f.transfer(src, "h1", b, then=log.append)
    env.run()
    return [r for r in log if r.dst == "h1"]


@pytest.mark.parametrize("elsewhere", [False, True])
@pytest.mark.parametrize(("extra", "together"), [(5e-4, True), (2e-3, False)])
def test_messages_within_the_tolerance_of_a_completion_finish_with_it(extra, together,
                                                                      elsewhere):
    # A (1 GB) and B (1 GB + extra bytes) share h0 -> h1 at 0.5 GB/s from 0: A ends at 2 s.
    # Flows within REL_TOL of that (rate x time x 1e-12 = 1e-3 B) finish with it, in flow-id
    # order; B with 2e-3 B more goes on alone at 1 GB/s for 2e-12 s. With `elsewhere`, two
    # flows between other hosts make a second component (a heap of predictions)
    mine = two_flows_to_h1(1e9, 1e9, "h0", 1e9 + extra, 3e9 if elsewhere else 0.0)
    assert [r.flow_id for r in mine] == [2 * elsewhere, 2 * elsewhere + 1]
    assert mine[0].finished_at == 2.0
    assert mine[1].finished_at == (2.0 if together else pytest.approx(2.0 + 2e-12, rel=1e-15))


@pytest.mark.parametrize("elsewhere", [False, True])
@pytest.mark.parametrize("src", ["h0", "h2"])
def test_a_message_exactly_at_the_tolerance_of_a_completion_finishes_with_it(src, elsewhere):
    # A (1e12 B, h0 -> h1) and B (1e12 + 1 B, from `src` to h1) share sw -> h1 (2e9 B/s) at
    # 1e9 B/s each from 0: A ends at 1000 s, where the tolerance (rate x time x REL_TOL) is
    # 1e9 x 1000 x 1e-12 = 1 B — B's one byte more, exactly (every number here is exact in
    # float64). Within the tolerance includes its bound: B finishes with A. From h0, B is in
    # A's class (the loop that finishes a class's members); from h2 it is a class of its own
    # (the test that finds a class due). With `elsewhere`, two flows between other hosts make
    # a second component (a heap of predictions)
    mine = two_flows_to_h1(2e9, 1e12, src, 1e12 + 1.0, 3e12 if elsewhere else 0.0)
    assert [r.flow_id for r in mine] == [2 * elsewhere, 2 * elsewhere + 1]
    assert [r.finished_at for r in mine] == [1000.0, 1000.0]


@pytest.mark.parametrize("look", ["flows", "links_by_class", "class_timeline", "link_timeline"])
def test_any_look_at_a_lone_flow_midway_shows_its_bytes_so_far(look):
    # 1 GB alone on h0 -> sw -> h2 at 100 GB/s: half of it by 5 ms, whichever look comes first
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, GBps(100), 0.0))
    f.transfer("h0", "h2", GB(1))
    env.run(until=0.005)
    if look == "flows":
        assert [(s.rate, s.remaining_bytes) for s in f.flows()] == [
            (GBps(100), pytest.approx(GB(0.5), rel=1e-12))]
    elif look == "links_by_class":
        df = f.links_by_class().set_index(["src", "dst"])["bytes"]
        assert df.to_dict() == pytest.approx({("h0", "sw"): GB(0.5), ("sw", "h2"): GB(0.5)},
                                             rel=1e-12)
    elif look == "class_timeline":  # both links are of one kind: 2 x 0.5 GB
        assert f.class_timeline(0.005)["bytes"].tolist() == pytest.approx([GB(1)], rel=1e-12)
    else:
        tl = f.link_timeline(0.005)
        assert tl[(tl.src == "h0") & (tl.dst == "sw")]["bytes"].tolist() == pytest.approx(
            [GB(0.5)], rel=1e-12)


def test_a_shared_flows_remaining_bytes_follow_its_rate_changes():
    # A (h0 -> h2, 1 GB) alone until 5 ms (0.5 GB), then with B (h1 -> h2, 0.2 GB) at 50 GB/s
    # until B ends at 9 ms (0.2 GB), then alone at 100 GB/s: 0.2 GB left at 10 ms, and
    # 0.1 B left 1 ps before it ends at 12 ms
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, GBps(100), 0.0))
    a = f.transfer("h0", "h2", GB(1))
    env.run(until=0.005)
    f.transfer("h1", "h2", GB(0.2))
    env.run(until=0.01)
    assert [(s.flow_id, s.rate, s.remaining_bytes) for s in f.flows()] == [
        (0, GBps(100), pytest.approx(GB(0.2), rel=1e-9))]
    env.run(until=0.012 - 1e-12)
    (s,) = f.flows()
    assert s.remaining_bytes == pytest.approx(0.1, rel=1e-3)
    env.run()
    assert a.value.finished_at == pytest.approx(0.012, rel=1e-12)


def test_flows_finishing_together_in_two_classes_complete_and_are_listed_in_flow_id_order():
    # 1 GB/s into h2. f0 (h0 -> h2, 1 GB) and f1 (h1 -> h2, 0.2 GB) share it from 0 at
    # 0.5 GB/s; f2 (h0 -> h2, 0.1 GB) joins f0's class at 0.2 s: 1/3 GB/s each. f1 (0.1 GB
    # left) and f2 both end at 0.5 s: completions in flow-id order, f1 first; f0 (0.8 GB left)
    # ends at 1.3 s
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, 1e9, 0.0))
    log = []
    f.transfer("h0", "h2", 1e9, then=log.append)
    f.transfer("h1", "h2", 2e8, then=log.append)
    env.run(until=0.2)
    f.transfer("h0", "h2", 1e8, then=log.append)
    env.run(until=0.3)
    assert [s.flow_id for s in f.flows()] == [0, 1, 2]
    env.run()
    assert [(r.flow_id, r.finished_at) for r in log] == [
        (1, pytest.approx(0.5, rel=1e-12)), (2, pytest.approx(0.5, rel=1e-12)),
        (0, pytest.approx(1.3, rel=1e-12))]


def test_a_class_left_at_its_cap_after_a_joint_completion_still_finishes():
    # efficiency 0.3: every message capped at 0.3 GB/s of 1 GB/s links. A1 (3 MB) and A2 (6 MB)
    # h0 -> h1, and B (3 MB) h2 -> h3, all at the cap from 0: A1 and B end together at 10 ms
    # (two classes at one completion); A2 goes on at the same rate and ends at 20 ms
    slow = hardware.StackSpec("slow", inter_node_efficiency=0.3, intra_node_efficiency=0.3)
    f = Fabric(simpy.Environment(), star_graph(4, 1e9, 0.0), stack=slow)
    recs = run_flows(f, [FlowSpec(0.0, "h0", "h1", 3e6), FlowSpec(0.0, "h0", "h1", 6e6),
                         FlowSpec(0.0, "h2", "h3", 3e6), FlowSpec(0.0, "h2", "h3", 3e6)])
    assert [r.finished_at for r in recs] == pytest.approx([0.01, 0.02, 0.01, 0.01],
                                                          rel=1e-12, abs=0)


def _uneven_star() -> nx.DiGraph:
    """h0, h1, h2 around one switch; up links of 100, 40 and 200 GB/s, down links 200 GB/s."""
    g = star_graph(3, GBps(200), 0.0)
    g.edges["h0", "sw"]["bandwidth"] = GBps(100)
    g.edges["h1", "sw"]["bandwidth"] = GBps(40)
    return g


@pytest.mark.parametrize("first", ["h0", "h1"])
def test_capped_messages_freeze_at_their_own_caps_lowest_first(first):
    # nccl caps each message at e x its bottleneck: h0 -> h2 at e x 100, h1 -> h2 at e x 40
    # GB/s (below h1's 40 GB/s link); together 1.16 x 100 < 200 GB/s into h2: both at the cap
    env = simpy.Environment()
    f = Fabric(env, _uneven_star(), "nccl")
    e = f.stack.efficiency(False)
    second = "h1" if first == "h0" else "h0"
    f.transfer(first, "h2", GB(1))
    f.transfer(second, "h2", GB(1))
    env.run(until=1.5 * f.stack.overhead_time(False))
    rates = {s.src: s.rate for s in f.flows()}
    assert rates == pytest.approx({"h0": e * GBps(100), "h1": e * GBps(40)}, rel=REL, abs=0)


def test_a_capped_message_and_an_uncapped_link_flow_share_a_link():
    # into h2 (200 GB/s): a message from h0 capped at e x 100 GB/s (nccl) and an aggregate on
    # sw -> h2 at efficiency 1 (no cap of its own): the message at its cap, the aggregate the rest
    env = simpy.Environment()
    f = Fabric(env, _uneven_star(), "nccl")
    e = f.stack.efficiency(False)
    f.transfer("h0", "h2", GB(1))
    env.run(until=1.5 * f.stack.overhead_time(False))
    f.transfer_link("sw", "h2", GB(1), lambda rec: None)
    assert [s.rate for s in f.flows()] == pytest.approx(
        [e * GBps(100), GBps(200) - e * GBps(100)], rel=REL, abs=0)


def test_sharing_time_is_the_worst_links_bytes_left_each_up_to_the_new_flows():
    # a parking lot of 10 and 4 GB/s: one flow on each hop, each alone on its links (lone
    # flows, reserved: sharing_time materializes them first). After 10 ms the first has
    # 0.9 GB left, the second 0.96 GB. A new r0 -> r2 flow of 0.5 GB waits on each hop for the
    # bytes the others have left, each counted up to its own 0.5 GB: 0.05 s on the first hop,
    # 0.125 s on the second, the worse of the two
    f = fabric(parking_lot_graph([GBps(10), GBps(4)]))
    f.transfer("r0", "r1", GB(1))
    f.transfer("r1", "r2", GB(1))
    f.env.run(until=0.01)
    assert f.sharing_time("r0", "r2", GB(0.5)) == pytest.approx(GB(0.5) / GBps(4), rel=1e-9)
    # a new flow of 0.1 GB counts 0.1 GB of each: 0.01 s and 0.025 s
    assert f.sharing_time("r0", "r2", GB(0.1)) == pytest.approx(GB(0.1) / GBps(4), rel=1e-9)
    # on the first hop alone: 0.5 GB of the first flow's 0.9; nothing the other way, or at home
    assert f.sharing_time("r0", "r1", GB(0.5)) == pytest.approx(GB(0.5) / GBps(10), rel=1e-9)
    assert f.sharing_time("r2", "r0", GB(0.5)) == 0.0 and f.sharing_time("r1", "r1", 1.0) == 0.0
    f.env.run(until=0.2)  # the first ended at 0.1 s; the second has 0.2 GB left
    assert f.sharing_time("r0", "r2", GB(0.5)) == pytest.approx(GB(0.2) / GBps(4), rel=1e-9)
    assert f.sharing_time("r0", "r1", GB(0.5)) == 0.0
    # less than a byte left counts too: half a byte on a 1 B/s hop is half a second
    slow = fabric(parking_lot_graph([1.0]))
    slow.transfer("r0", "r1", 1.0)
    slow.env.run(until=0.5)
    assert slow.sharing_time("r0", "r1", 1.0) == pytest.approx(0.5, rel=1e-9)


def test_shared_links_slower_than_one_byte_per_second_are_filled_fairly():
    # a parking lot of 1 and 4 B/s: the long flow (r0 -> r2) and a short one on the first hop
    # get 0.5 B/s each there; the short one on the second hop gets the other 3.5 B/s
    f = fabric(parking_lot_graph([1.0, 4.0]))
    recs = run_flows(f, [FlowSpec(0.0, "r0", "r2", 1.0), FlowSpec(0.0, "r0", "r1", 1.0),
                         FlowSpec(0.0, "r1", "r2", 7.0)])
    assert [r.finished_at for r in recs] == pytest.approx([2.0, 2.0, 2.0], rel=1e-12, abs=0)
    # the same on hops of 1 and 1.5 B/s: the second hop's short flow gets the 1 B/s left
    f = fabric(parking_lot_graph([1.0, 1.5]))
    recs = run_flows(f, [FlowSpec(0.0, "r0", "r2", 1.0), FlowSpec(0.0, "r0", "r1", 1.0),
                         FlowSpec(0.0, "r1", "r2", 2.0)])
    assert [r.finished_at for r in recs] == pytest.approx([2.0, 2.0, 2.0], rel=1e-12, abs=0)
    # and two messages capped below 1 B/s (efficiency 0.3 of 2 B/s links) sharing a link
    slow = hardware.StackSpec("slow", inter_node_efficiency=0.3, intra_node_efficiency=0.3)
    f = Fabric(simpy.Environment(), star_graph(3, 2.0, 0.0), stack=slow)
    recs = run_flows(f, [FlowSpec(0.0, "h0", "h2", 1.0), FlowSpec(0.0, "h1", "h2", 1.0)])
    assert [r.finished_at for r in recs] == pytest.approx([1 / 0.6] * 2, rel=1e-12, abs=0)


def test_a_lone_flow_overtaken_at_its_last_byte_finishes_then():
    # A (0.5 GB, h0 -> h2 at 1 GB/s) alone from 0 has all its bytes at 0.5 s, when B is sent
    # to h2 (before A's end is processed): A still ends at 0.5 s, B alone from then, at 1 s
    env = simpy.Environment()
    f = Fabric(env, star_graph(3, 1e9, 0.0))
    log = []

    def sender():
        at = env.timeout(0.5)  # scheduled before A's end: runs first at 0.5 s
        f.transfer("h0", "h2", 5e8, then=log.append)
        yield at
        f.transfer("h1", "h2", 5e8, then=log.append)

    env.process(sender())
    env.run()
    assert [(r.flow_id, r.finished_at) for r in log] == [(0, 0.5), (1, pytest.approx(1.0))]


def test_a_lone_flow_is_seen_from_the_moment_it_starts():
    # 2 hops of 1 us: the message starts moving at 2 us; a look then shows it, all bytes left
    env = simpy.Environment()
    f = Fabric(env, star_graph(2, GBps(100), us(1)))
    f.transfer("h0", "h1", GB(1))
    env.run(until=us(2))
    assert [(s.rate, s.remaining_bytes) for s in f.flows()] == [(GBps(100), GB(1))]
