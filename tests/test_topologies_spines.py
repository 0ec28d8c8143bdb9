"""The spine layer as one aggregate (ideal load balance over the spines).

With one node per spine and a fixed path per pair (ECMP off, as every run has it), every
inter-leaf pair of a rail fabric took ``spine0`` and each leaf–spine link carried 1/``spines`` of
the leaf's uplink: two flows leaving one leaf of a "non-blocking" dgx_h100 took 2002 µs for
what the non-blocking fabric does in 1002 µs. Likewise every inter-pod pair of a fat tree took
``agg0`` and ``core0``. The builders now join each leaf (edge switch) to one aggregate node with
its whole uplink; the times below are computed by hand from the catalog links.
"""

from __future__ import annotations

import json

import pytest
import simpy
from clitools import run_main

import topologies
from simulator.hardware import LINKS
from simulator.network import Fabric

NDR = LINKS["ib_ndr"]
PCIE = LINKS["pcie5"]


def makespan(g, pairs, nbytes=50e6) -> float:
    env = simpy.Environment()
    fabric = Fabric(env, g, "ideal")
    ends = []

    def send(src, dst):
        yield fabric.transfer(src, dst, nbytes)
        ends.append(env.now)

    for src, dst in pairs:
        env.process(send(src, dst))
    env.run()
    return max(ends)


@pytest.mark.parametrize("spines", [1, 2, 3])
def test_two_flows_leaving_one_leaf_of_a_non_blocking_fabric_take_the_nic_time(spines):
    # 4 machines, 2 per unit: n0, n1 under su0's leaves, n2, n3 under su1's. Two flows from
    # su0/leaf0 to su1/leaf0, 50 MB each. By hand: latency GPU→PCIe→NIC (2 PCIe hops),
    # NIC→leaf→spine→leaf→NIC (4 NDR hops), NIC→PCIe→GPU (2 PCIe hops); each flow alone on its
    # NIC at 50 GB/s, and the leaf's uplink (2 NICs × 50 GB/s, oversubscription 1) carries both.
    g = topologies.build("dgx_h100", nodes=4, nodes_per_su=2, spines=spines)
    latency = 4 * PCIE.latency + 4 * NDR.latency  # 2.0 µs
    assert NDR.bandwidth < PCIE.bandwidth
    hand = latency + 50e6 / NDR.bandwidth  # 1002.0 µs (2002.0 µs before: one spine link)
    pairs = [("n0/gpu0", "n2/gpu0"), ("n1/gpu0", "n3/gpu0")]
    assert makespan(g, pairs) == pytest.approx(hand, rel=1e-9)


def test_an_oversubscribed_leaf_shares_its_whole_uplink():
    # oversubscription 2: the leaf's uplink is 2 × 50 GB/s / 2 = 50 GB/s for both flows
    g = topologies.build("dgx_h100", nodes=4, nodes_per_su=2, oversubscription=2.0)
    hand = 4 * PCIE.latency + 4 * NDR.latency + 2 * 50e6 / NDR.bandwidth
    pairs = [("n0/gpu0", "n2/gpu0"), ("n1/gpu0", "n3/gpu0")]
    assert makespan(g, pairs) == pytest.approx(hand, rel=1e-9)


def test_eight_flows_across_a_k4_fat_tree_take_the_nic_time():
    # k = 4: pods 0 and 1 (n0 … n7) send to pods 2 and 3 (n8 … n15), 50 MB each. By hand:
    # 4 PCIe hops + 6 NDR hops (NIC→edge→agg→core→agg→edge→NIC); each pod's 4 flows share its
    # 4 NDR links to the cores and each edge switch's 2 flows its 2 uplinks: the NIC bounds.
    g = topologies.build("fat_tree", k=4)
    hand = 4 * PCIE.latency + 6 * NDR.latency + 50e6 / NDR.bandwidth  # 1002.4 µs (4002.4 before)
    pairs = [(f"n{i}/gpu0", f"n{i + 8}/gpu0") for i in range(8)]
    assert makespan(g, pairs) == pytest.approx(hand, rel=1e-9)


@pytest.mark.parametrize("spec, bisection", [
    # 8 machines, 4 per unit: the first half is unit 0, 32 NICs
    ("dgx_h100:nodes=8,nodes_per_su=4", 32 * NDR.bandwidth),
    ("dgx_h100:nodes=8,nodes_per_su=4,spines=5", 32 * NDR.bandwidth),
    ("dgx_h100:nodes=8,nodes_per_su=4,oversubscription=4", 8 * NDR.bandwidth),
    ("fat_tree:k=4", 8 * NDR.bandwidth),  # k³/8 hosts on each side
    ("fat_tree:k=6", 27 * NDR.bandwidth),
])
def test_the_bisection_bandwidth_is_unchanged(spec, bisection):
    assert topologies.bisection_bandwidth(topologies.parse_spec(spec)) == pytest.approx(bisection)


def test_the_spines_count_is_accepted_recorded_and_shown(capsys):
    g = topologies.parse_spec("dgx_h100:spines=4")
    assert g.graph["params"]["spines"] == 4
    assert [n for n, d in g.nodes(data=True) if d["kind"] == "spine"] == ["spine"]
    assert g.nodes["spine"]["switches"] == 4
    code, out, err = run_main(["topology", "show", "dgx_h100:spines=4", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["aggregates"] == {"nodes": 1, "switches": 4}
    code, out, err = run_main(["topology", "show", "fat_tree:k=4", "--json"], capsys)
    assert json.loads(out)["aggregates"] == {"nodes": 5, "switches": 12}  # 4 pods × 2 + 4
    code, out, err = run_main(["topology", "show", "single_node", "--json"], capsys)
    assert "aggregates" not in json.loads(out)
