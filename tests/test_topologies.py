"""The topology catalog: preset shapes, paths over them, bisection, validation, TOML files.

Known answers first (counts worked out by hand from each preset's definition), then hypothesis
properties, then oracles: a naive Edmonds–Karp max flow against the bisection bandwidth.
"""

from __future__ import annotations

from collections import Counter, deque

import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import topologies
from simulator.errors import UserError
from simulator.hardware import GPUS, LINKS, gpu
from simulator.network.paths import path_info
from topologies import TopologyError

NDR = LINKS["ib_ndr"].bandwidth  # 50 GB/s
PCIE5 = LINKS["pcie5"].bandwidth  # 64 GB/s


def kinds(g: nx.DiGraph) -> Counter:
    return Counter(d["kind"] for _, d in g.nodes(data=True))


# -- preset shapes ------------------------------------------------------------------------------

def test_dgx_h100_two_nodes_has_the_documented_parts():
    g = topologies.build("dgx_h100", nodes=2)
    # Per machine: 8 GPUs, 1 NVSwitch, 8 PCIe switches, 8 NICs, 1 host; fabric: 8 rail leaves
    # (one scalable unit) and the spine layer as one aggregate node (2 spines, recorded).
    assert kinds(g) == {"gpu": 16, "nvswitch": 2, "pcie_switch": 16, "nic": 16, "host": 2,
                        "leaf": 8, "spine": 1}
    assert g.nodes["spine"]["switches"] == 2 and g.graph["params"]["spines"] == 2
    # Links per machine: 8 GPU-NVSwitch + 8 GPU-PCIe + 8 PCIe-NIC + 8 PCIe-host = 32 → 64;
    # 16 NIC-leaf; 8 leaves × 1 bundle of uplinks = 8. 88 links, two directed edges each.
    assert g.number_of_edges() == 2 * (64 + 16 + 8)
    assert topologies.gpus(g)[:3] == ["n0/gpu0", "n0/gpu1", "n0/gpu2"]
    assert topologies.gpus(g)[8] == "n1/gpu0"
    assert all(g.nodes[n]["gpu"] == "H100" for n in topologies.gpus(g))
    assert gpu(g.nodes["n1/gpu7"]["gpu"]) is GPUS["H100"]
    # Rail-optimized: NIC i of every machine hangs off leaf i.
    assert set(g.successors("su0/leaf3")) == {"n0/nic3", "n1/nic3", "spine"}
    # whose uplink bundle to the spines is its whole downlink (non-blocking: 2 NICs × NDR)
    assert g.edges["su0/leaf3", "spine"]["bandwidth"] == 2 * NDR
    # The host DRAM tier is one PCIe hop behind each GPU's PCIe switch.
    assert path_info(g, "n0/gpu5", "n0/host").nodes == ("n0/gpu5", "n0/pcie5", "n0/host")



def test_dgx_h100_with_h200s_is_the_same_machine_with_141_gb_gpus():
    g = topologies.build("dgx_h100", nodes=2, gpu="H200")
    h100 = topologies.build("dgx_h100", nodes=2)
    assert all(g.nodes[n]["gpu"] == "H200" for n in topologies.gpus(g))
    assert gpu(g.nodes["n1/gpu3"]["gpu"]).hbm_bytes == 141e9
    assert sorted(g.edges) == sorted(h100.edges)  # the same links
    assert all(g.edges[e] == h100.edges[e] for e in g.edges)
    with pytest.raises(topologies.TopologyError, match="gpu='H300': unknown GPU"):
        topologies.build("dgx_h100", gpu="H300")

def test_single_node_fat_tree_and_lamina_counts():
    g = topologies.build("single_node")
    assert kinds(g) == {"gpu": 8, "nvswitch": 1, "pcie_switch": 8, "host": 1}
    assert g.number_of_edges() == 2 * (8 + 8 + 8)

    g = topologies.build("single_node", gpus=1)
    assert kinds(g) == {"gpu": 1, "pcie_switch": 1, "host": 1}

    # k = 4: k³/4 = 16 one-GPU machines (GPU, PCIe switch, NIC, host each), 8 edge switches,
    # one aggregate per pod for its 2 aggregation switches, one aggregate for the 4 cores.
    g = topologies.build("fat_tree", k=4)
    assert kinds(g) == {"gpu": 16, "pcie_switch": 16, "nic": 16, "host": 16, "leaf": 8,
                        "spine": 5}
    assert g.nodes["core"]["switches"] == 4 and g.nodes["pod0/agg"]["switches"] == 2
    # PCIe: 16 × 3; IB: 16 NIC-edge + 8 edge-agg bundles + 4 agg-core bundles = 28.
    assert Counter(d["kind"] for *_, d in g.edges(data=True)) == {"pcie": 96, "ib": 56}
    # the bundles carry what the physical links did: 2 uplinks per edge switch, 4 per pod
    assert g.edges["pod0/edge1", "pod0/agg"]["bandwidth"] == 2 * NDR
    assert g.edges["pod3/agg", "core"]["bandwidth"] == 4 * NDR

    g = topologies.build("lamina_h100_h20", h100_nodes=1, h20_nodes=2)
    assert Counter(g.nodes[n]["gpu"] for n in topologies.gpus(g)) == {"H100": 8, "H20": 16}
    assert g.nodes["n0/gpu0"]["gpu"] == "H100" and g.nodes["n1/gpu0"]["gpu"] == "H20"
    assert kinds(g)["nic"] == 24
    assert {d["kind"] for u, v, d in g.edges(data=True) if "nic" in u} == {"pcie", "roce"}


@pytest.mark.parametrize("spec", [
    "single_node", "single_node:gpus=3", "dgx_h100", "dgx_h100:nodes=5,nodes_per_su=2,spines=3",
    "fat_tree", "fat_tree:k=2", "lamina_h100_h20", "lamina_h100_h20:h100_nodes=0,h20_nodes=2",
])
def test_every_link_has_both_directions_with_equal_attributes(spec):
    g = topologies.parse_spec(spec)
    for u, v, d in g.edges(data=True):
        assert g.has_edge(v, u), (u, v)
        assert g.edges[v, u] == d
        assert d["bandwidth"] > 0 and d["latency"] >= 0 and d["kind"] == LINKS[d["link"]].kind


def test_gpus_are_in_natural_order():
    g = topologies.build("dgx_h100", nodes=11)
    names = topologies.gpus(g)
    assert names == [f"n{m}/gpu{i}" for m in range(11) for i in range(8)]


# -- paths over the presets -----------------------------------------------------------------------

def test_gpus_of_one_machine_talk_over_nvlink():
    g = topologies.build("dgx_h100", nodes=2)
    for a in range(8):
        for b in range(8):
            if a != b:
                p = path_info(g, f"n1/gpu{a}", f"n1/gpu{b}")
                assert p.nodes == (f"n1/gpu{a}", "n1/nvswitch", f"n1/gpu{b}")
                assert {g.edges[e]["kind"] for e in p.edges} == {"nvlink"}
                assert not p.inter_node
                # NVLink hop pair (0.5 µs) beats the PCIe detour through the host (4 × 0.3 µs).
                assert p.latency_time == pytest.approx(2 * LINKS["nvlink4"].latency)


def test_across_machines_the_path_is_pcie_nic_leaf_nic_pcie():
    g = topologies.build("dgx_h100", nodes=2)
    p = path_info(g, "n0/gpu2", "n1/gpu2")
    assert [g.nodes[n]["kind"] for n in p.nodes] == [
        "gpu", "pcie_switch", "nic", "leaf", "nic", "pcie_switch", "gpu"]
    assert [g.edges[e]["kind"] for e in p.edges] == ["pcie", "pcie", "ib", "ib", "pcie", "pcie"]
    assert p.inter_node
    # 4 PCIe hops + 2 IB hops (hardware.py: 1.6 µs for this path).
    assert p.latency_time == pytest.approx(4 * LINKS["pcie5"].latency + 2 * LINKS["ib_ndr"].latency)
    # NDR (50 GB/s) is slower than PCIe Gen5 (64 GB/s): the IB link is the bottleneck.
    assert p.bottleneck_bandwidth == NDR
    # Another rail goes up through a spine.
    p = path_info(g, "n0/gpu0", "n1/gpu3")
    assert [g.nodes[n]["kind"] for n in p.nodes][3:6] == ["leaf", "spine", "leaf"]


@pytest.mark.parametrize(("spec", "bottleneck"), [
    ("dgx_h100:nic=ib_xdr", LINKS["pcie5"].bandwidth),  # 100 GB/s NIC behind 64 GB/s PCIe
    ("dgx_h100:pcie=pcie4", LINKS["pcie4"].bandwidth),  # 50 GB/s NIC behind 32 GB/s PCIe
    ("lamina_h100_h20:pcie=pcie4", LINKS["pcie4"].bandwidth),
])
def test_pcie_can_be_the_cross_node_bottleneck(spec, bottleneck):
    g = topologies.parse_spec(spec)
    report = topologies.path_report(g, "n0/gpu1", "n1/gpu1")
    assert report["bottleneck_bandwidth"] == bottleneck
    assert report["bottleneck"]["kind"] == "pcie"
    assert report["bottleneck"]["src"] == "n0/gpu1"  # the first hop at that rate
    assert report["inter_node"]


# -- bisection ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("factor", "expected"), [
    # 4 machines, 2 per scalable unit: the halves sit on different leaf sets, so everything
    # crosses the 8 leaves' uplinks: 8 leaves × (2 NICs × 50 GB/s) / factor.
    (1.0, 8 * 2 * NDR),
    (2.0, 8 * 2 * NDR / 2),
    (4.0, 8 * 2 * NDR / 4),
    # Uplinks faster than downlinks: the NICs of one half limit (16 × 50 GB/s).
    (0.5, 16 * NDR),
])
def test_oversubscription_cuts_bisection_bandwidth(factor, expected):
    g = topologies.build("dgx_h100", nodes=4, nodes_per_su=2, oversubscription=factor)
    assert topologies.bisection_bandwidth(g) == pytest.approx(expected, rel=1e-12)


def test_bisection_known_answers():
    # One scalable unit: the halves meet at the rail leaves, so oversubscription does not matter.
    for factor in (1.0, 4.0):
        g = topologies.build("dgx_h100", nodes=2, oversubscription=factor)
        assert topologies.bisection_bandwidth(g) == pytest.approx(8 * NDR)
    # PCIe-limited NICs: 8 × 64 GB/s.
    g = topologies.build("dgx_h100", nic="ib_xdr")
    assert topologies.bisection_bandwidth(g) == pytest.approx(8 * PCIE5)
    # A fat tree has full bisection: half the hosts × the link rate.
    assert topologies.bisection_bandwidth(topologies.build("fat_tree", k=4)) == pytest.approx(
        8 * NDR)
    assert topologies.bisection_bandwidth(topologies.build("fat_tree", k=6)) == pytest.approx(
        27 * NDR)
    assert topologies.bisection_bandwidth(topologies.build("single_node", gpus=1)) is None


@given(m=st.integers(1, 3), factor=st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0]),
       spines=st.integers(1, 3))
def test_bisection_of_two_scalable_units_is_nics_over_oversubscription(m, factor, spines):
    # 2m machines, m per unit: the first half is exactly unit 0.
    g = topologies.build("dgx_h100", nodes=2 * m, nodes_per_su=m, oversubscription=factor,
                         spines=spines)
    assert topologies.bisection_bandwidth(g) == pytest.approx(8 * m * NDR / max(factor, 1.0))


# -- validation -------------------------------------------------------------------------------

def two_gpus() -> nx.DiGraph:
    """Two H100s on an NVSwitch: the smallest valid topology."""
    g = nx.DiGraph()
    g.add_node("n0/gpu0", kind="gpu", gpu="H100")
    g.add_node("n0/gpu1", kind="gpu", gpu="H100")
    g.add_node("n0/nvswitch", kind="nvswitch")
    for n in ("n0/gpu0", "n0/gpu1"):
        for a, b in ((n, "n0/nvswitch"), ("n0/nvswitch", n)):
            g.add_edge(a, b, bandwidth=450e9, latency=2.5e-7, kind="nvlink")
    return g


def test_a_small_hand_graph_is_valid():
    assert topologies.validate(two_gpus()) is not None


@pytest.mark.parametrize(("mutate", "words"), [
    (lambda g: g.nodes["n0/gpu1"].update(gpu="H900"), ["'n0/gpu1'", "unknown gpu 'H900'", "H100"]),
    (lambda g: g.nodes["n0/gpu1"].pop("gpu"), ["'n0/gpu1'", "no attribute 'gpu'"]),
    (lambda g: g.nodes["n0/nvswitch"].pop("kind"), ["'n0/nvswitch'", "no attribute 'kind'"]),
    (lambda g: g.nodes["n0/nvswitch"].update(kind="router"), ["unknown kind 'router'"]),
    (lambda g: g.edges["n0/gpu0", "n0/nvswitch"].update(kind="carrier_pigeon"),
     ["'n0/gpu0' -> 'n0/nvswitch'", "unknown link kind 'carrier_pigeon'", "nvlink"]),
    (lambda g: g.edges["n0/gpu0", "n0/nvswitch"].pop("bandwidth"),
     ["'n0/gpu0' -> 'n0/nvswitch'", "no attribute 'bandwidth'"]),
    (lambda g: g.edges["n0/nvswitch", "n0/gpu1"].pop("latency"), ["no attribute 'latency'"]),
    (lambda g: g.edges["n0/gpu0", "n0/nvswitch"].update(bandwidth=0.0), ["bandwidth 0.0", ">= 1"]),
    # below a byte per second (a denormal too) is no link's rate: refused, not run into inf times
    (lambda g: g.edges["n0/gpu0", "n0/nvswitch"].update(bandwidth=1e-300),
     ["bandwidth 1e-300", ">= 1 in bytes per second"]),
    (lambda g: g.edges["n0/gpu0", "n0/nvswitch"].update(bandwidth=5e-324), ["bandwidth 5e-324"]),
    (lambda g: g.edges["n0/gpu0", "n0/nvswitch"].update(bandwidth=-1.0), ["bandwidth -1.0"]),
    (lambda g: g.edges["n0/gpu0", "n0/nvswitch"].update(latency=-1e-6), ["latency -1e-06", ">= 0"]),
    (lambda g: g.remove_edge("n0/nvswitch", "n0/gpu1"),
     ["GPU 'n0/gpu0' cannot reach GPU 'n0/gpu1'"]),
    (lambda g: g.remove_edge("n0/gpu1", "n0/nvswitch"),
     ["GPU 'n0/gpu1' cannot reach GPU 'n0/gpu0'"]),
    (lambda g: g.remove_nodes_from(["n0/gpu0", "n0/gpu1"]), ["no GPU nodes"]),
])
def test_each_validation_error_names_the_culprit_and_the_fix(mutate, words):
    g = two_gpus()
    mutate(g)
    with pytest.raises(TopologyError) as err:
        topologies.validate(g, source="my.toml")
    message = str(err.value)
    assert message.startswith("my.toml: ")
    for w in words:
        assert w in message
    assert isinstance(err.value, UserError)


@pytest.mark.parametrize(("spec", "words"), [
    ("torus", ["unknown topology preset 'torus'", "dgx_h100"]),
    ("dgx_h100:gpus=4", ["unknown parameter 'gpus'", "nodes (default 2)"]),
    ("dgx_h100:nodes=two", ["nodes='two'", "int"]),
    ("dgx_h100:nodes=0", ["nodes=0", "from 1 to 65,536"]),
    # past what this tool can build (stop 67: nodes=1e6 exhausted memory building the graph)
    ("dgx_h100:nodes=1e6", ["nodes=1000000", "from 1 to 65,536"]),
    ("dgx_h100:nodes=8193", ["nodes=8193", "builds 65,544 GPUs", "at most 65,536"]),
    ("dgx_h100:spines=65537", ["spines=65537", "from 1 to 65,536"]),
    ("single_node:gpus=65537", ["gpus=65537", "from 1 to 65,536"]),
    ("fat_tree:k=66", ["k=66", "builds 71,874 GPUs"]),
    ("lamina_h100_h20:h100_nodes=4096,h20_nodes=4097",
     ["gpus_per_node=8", "builds 65,544 GPUs"]),
    ("dgx_h100:nic=ib_fast", ["nic='ib_fast'", "ib_ndr"]),
    ("dgx_h100:nic=pcie5", ["nic='pcie5'", "kind ib/roce/ethernet"]),
    ("dgx_h100:oversubscription=0", ["oversubscription=0.0", "> 0"]),
    ("fat_tree:k=3", ["k=3", "even"]),
    ("single_node:gpu=H900", ["gpu='H900'", "unknown GPU"]),
    ("dgx_h100:nodes", ["'nodes' is not key=value"]),
])
def test_bad_preset_specs_are_user_errors(spec, words):
    with pytest.raises(UserError) as err:
        topologies.parse_spec(spec)
    for w in words:
        assert w in str(err.value)


def test_a_count_of_exactly_the_limit_is_built():
    # 65,536 machines per scalable unit (its limit) on one machine: a count, not GPUs
    g = topologies.parse_spec("dgx_h100:nodes=1,nodes_per_su=65536")
    assert g.graph["params"]["nodes_per_su"] == 65_536
    assert sum(1 for _, d in g.nodes(data=True) if d.get("kind") == "gpu") == 8
    # exactly 65,536 GPUs pass the check (8,192 DGX machines: not built here, ~10 s)
    from topologies.builders import _check_gpus

    _check_gpus("dgx_h100", "nodes", 8192, 8192 * 8)
    with pytest.raises(UserError, match="builds 65,537 GPUs"):
        _check_gpus("dgx_h100", "nodes", 8193, 65_537)


# -- TOML files -------------------------------------------------------------------------------

def assert_same_graph(a: nx.DiGraph, b: nx.DiGraph) -> None:
    assert dict(a.nodes(data=True)) == dict(b.nodes(data=True))
    assert {(u, v): d for u, v, d in a.edges(data=True)} == {
        (u, v): d for u, v, d in b.edges(data=True)}
    if a.number_of_nodes() <= 20:  # (same names and attributes already imply isomorphism)
        assert nx.is_isomorphic(a, b, node_match=dict.__eq__, edge_match=dict.__eq__)


@pytest.mark.parametrize("name", sorted(topologies.PRESETS))
def test_shipped_preset_files_equal_their_builders(name):
    g = topologies.load(f"topologies/presets/{name}.toml")
    assert_same_graph(g, topologies.build(name))
    assert (topologies.PRESET_DIR / f"{name}.toml").is_file()


@pytest.mark.parametrize("spec", ["single_node:gpus=2", "dgx_h100:oversubscription=3",
                                  "fat_tree", "lamina_h100_h20"])
def test_dump_then_load_gives_the_same_graph(tmp_path, spec):
    g = topologies.parse_spec(spec)
    target = tmp_path / "g.toml"
    assert topologies.dump(g, target) == target
    assert_same_graph(topologies.load(target), g)
    assert topologies.parse_spec(str(target)).number_of_edges() == g.number_of_edges()
    assert [p.name for p in tmp_path.iterdir()] == ["g.toml"]  # no temporary left behind


def test_explicit_file_with_catalog_links_overrides_and_one_way_links(tmp_path):
    path = tmp_path / "pair.toml"
    path.write_text(
        'name = "two GPUs over PCIe"\n'
        '[[nodes]]\nname = "n0/gpu0"\nkind = "gpu"\ngpu = "h20"\n'
        '[[nodes]]\nname = "n0/gpu1"\nkind = "gpu"\ngpu = "H100"\n'
        '[[nodes]]\nname = "n0/pcie0"\nkind = "pcie_switch"\n'
        '[[links]]\nsrc = "n0/gpu0"\ndst = "n0/pcie0"\nlink = "pcie5"\n'
        '[[links]]\nsrc = "n0/gpu1"\ndst = "n0/pcie0"\nlink = "pcie4"\nbandwidth = 1e9\n'
        'directed = true\n'
        '[[links]]\nsrc = "n0/pcie0"\ndst = "n0/gpu1"\nkind = "pcie"\nbandwidth = 2000000000\n'
        'latency = 1e-6\ndirected = true\n'
    )
    g = topologies.load(path)
    assert g.graph["name"] == "two GPUs over PCIe"
    assert g.nodes["n0/gpu0"]["gpu"] == "H20"  # catalog spelling
    assert g.edges["n0/pcie0", "n0/gpu0"] == g.edges["n0/gpu0", "n0/pcie0"]
    assert g.edges["n0/gpu1", "n0/pcie0"] == {
        "bandwidth": 1e9, "latency": LINKS["pcie4"].latency, "kind": "pcie", "link": "pcie4"}
    assert g.edges["n0/pcie0", "n0/gpu1"] == {"bandwidth": 2e9, "latency": 1e-6, "kind": "pcie"}
    again = tmp_path / "again.toml"
    topologies.dump(g, again)
    assert_same_graph(topologies.load(again), g)
    assert "directed = true" in again.read_text()


@pytest.mark.parametrize(("text", "words"), [
    ('preset = "dgx_h100"\n[params]\nnodes = \n', ["bad.toml", "malformed TOML", "line 3"]),
    ('preset = "dgx_h100"\n[params]\nnodez = 2\n', ["bad.toml", "unknown parameter 'nodez'"]),
    ('preset = "mesh"\n', ["bad.toml", "unknown topology preset 'mesh'"]),
    ('name = "x"\n', ["bad.toml", "neither 'preset' nor"]),
    ('topology = "x"\n', ["bad.toml", "unknown top-level field 'topology'"]),
    ('[[nodes]]\nname = "a"\nkind = "gpu"\ngpu = "H100"\n'
     '[[links]]\nsrc = "a"\ndst = "b"\nlink = "pcie5"\n',
     ["bad.toml: links[0]", "node 'b' is not declared"]),
    ('[[nodes]]\nname = "a"\nkind = "gpu"\ngpu = "H100"\n[[nodes]]\nname = "b"\nkind = "host"\n'
     '[[links]]\nsrc = "a"\ndst = "b"\nlink = "pcie9"\n',
     ["bad.toml: links[0] (a -> b)", "unknown link 'pcie9'", "pcie5"]),
    ('[[nodes]]\nname = "a"\nkind = "gpu"\ngpu = "H100"\n[[nodes]]\nname = "b"\nkind = "host"\n'
     '[[links]]\nsrc = "a"\ndst = "b"\nkind = "pcie"\nbandwidth = 1e9\n',
     ["bad.toml", "'a' -> 'b'", "no attribute 'latency'"]),
    ('[[nodes]]\nname = "a"\nkind = "gpu"\ngpu = "H100"\n[[nodes]]\nname = "b"\nkind = "gpu"\n'
     'gpu = "H100"\n',
     ["bad.toml", "GPU 'a' cannot reach GPU 'b'"]),
    ('[[nodes]]\nname = "a"\nkind = "gpu"\ngpu = "H100"\n[[nodes]]\nname = "a"\nkind = "host"\n',
     ["bad.toml: nodes[1]", "declared twice"]),
    ('[[nodes]]\nname = "a"\nkind = "gpu"\ngpu = "H100"\n[[nodes]]\nname = "b"\nkind = "host"\n'
     '[[links]]\nsrc = "a"\ndst = "b"\nlink = "pcie5"\nlatncy = 1\n',
     ["bad.toml: links[0]", "unknown field 'latncy'"]),
])
def test_bad_files_name_the_file_and_the_fix(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        topologies.load(path)
    for w in words:
        assert w in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        topologies.parse_spec(str(tmp_path / "none.toml"))


def test_specs_with_parameters():
    g = topologies.parse_spec("dgx_h100:nodes=4, oversubscription=2")
    assert g.graph["params"]["nodes"] == 4 and g.graph["params"]["oversubscription"] == 2.0
    assert len(topologies.gpus(g)) == 32
    assert topologies.parse_spec("fat_tree:k=2.0,link=roce400").number_of_nodes() == 2 * 4 + 5


# -- properties ---------------------------------------------------------------------------------

@st.composite
def explicit_graphs(draw):
    """Random valid explicit graphs: a chain of GPUs and switches plus random extra links."""
    n = draw(st.integers(2, 7))
    g = nx.DiGraph(name="random")
    names = [f"n{i}/gpu0" if draw(st.booleans()) or i < 2 else f"sw{i}" for i in range(n)]
    for name in names:
        if name.startswith("n"):
            g.add_node(name, kind="gpu", gpu=draw(st.sampled_from(sorted(GPUS))))
        else:
            g.add_node(name, kind=draw(st.sampled_from(["leaf", "spine", "nvswitch"])), tier=1)
    links = st.one_of(
        st.sampled_from(sorted(LINKS)).map(lambda k: {
            "bandwidth": LINKS[k].bandwidth, "latency": LINKS[k].latency,
            "kind": LINKS[k].kind, "link": k}),
        st.builds(lambda b, lat, k: {"bandwidth": b, "latency": lat, "kind": k},
                  st.floats(1e6, 1e13), st.floats(0, 1e-3), st.sampled_from(["ib", "roce"])),
    )
    for a, b in zip(names, names[1:], strict=False):
        attrs = draw(links)
        g.add_edge(a, b, **attrs)
        g.add_edge(b, a, **(attrs if draw(st.booleans()) else draw(links)))
    for _ in range(draw(st.integers(0, 4))):
        a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        if a != b:
            g.add_edge(a, b, **draw(links))
    return g


@given(explicit_graphs())
def test_any_valid_graph_survives_a_toml_round_trip(g):
    topologies.validate(g)
    assert_same_graph(topologies.loads(topologies.to_toml(g)), g)


@given(nodes=st.integers(1, 6), nodes_per_su=st.integers(1, 4), spines=st.integers(1, 3),
       factor=st.floats(0.25, 8))
def test_dgx_fabric_properties(nodes, nodes_per_su, spines, factor):
    g = topologies.build("dgx_h100", nodes=nodes, nodes_per_su=nodes_per_su, spines=spines,
                         oversubscription=factor)
    units = -(-nodes // nodes_per_su)
    assert kinds(g)["leaf"] == 8 * units and kinds(g)["spine"] == 1  # the aggregate
    assert g.nodes["spine"]["switches"] == spines
    # Each leaf's uplinks add up to its downlinks / oversubscription.
    for leaf in (n for n, d in g.nodes(data=True) if d["kind"] == "leaf"):
        down = sum(g.edges[leaf, n]["bandwidth"] for n in g.successors(leaf)
                   if g.nodes[n]["kind"] == "nic")
        up = sum(g.edges[leaf, n]["bandwidth"] for n in g.successors(leaf)
                 if g.nodes[n]["kind"] == "spine")
        assert up == pytest.approx(down / factor)
    if nodes % 2 == 0:
        # The first half is whole machines: their NICs bound the flow, and a non-blocking
        # fabric (factor <= 1) reaches that bound.
        bis = topologies.bisection_bandwidth(g)
        nics = 8 * NDR * nodes / 2
        assert bis <= nics * (1 + 1e-9)
        if factor <= 1:
            assert bis == pytest.approx(nics)


# -- oracle: naive max flow ----------------------------------------------------------------------

def naive_max_flow(g: nx.DiGraph, sources: list[str], sinks: list[str]) -> float:
    """Edmonds–Karp on a residual dict, written from scratch for the comparison."""
    residual: dict = {}
    for u, v, d in g.edges(data=True):
        residual.setdefault(u, {})[v] = residual.get(u, {}).get(v, 0.0) + d["bandwidth"]
        residual.setdefault(v, {}).setdefault(u, 0.0)
    s, t = ("S",), ("T",)
    residual[s] = {n: float("inf") for n in sources}
    for n in sources:
        residual[n].setdefault(s, 0.0)
    residual[t] = {}
    for n in sinks:
        residual[n][t] = float("inf")
        residual[t][n] = 0.0
    total = 0.0
    while True:
        parent = {s: None}
        queue = deque([s])
        while queue and t not in parent:
            u = queue.popleft()
            for v in sorted(residual[u], key=str):
                if v not in parent and residual[u][v] > 1e-6:
                    parent[v] = u
                    queue.append(v)
        if t not in parent:
            return total
        path, v = [], t
        while parent[v] is not None:
            path.append((parent[v], v))
            v = parent[v]
        push = min(residual[u][v] for u, v in path)
        for u, v in path:
            residual[u][v] -= push
            residual[v][u] += push
        total += push


@pytest.mark.parametrize("spec", ["dgx_h100:nodes=4,nodes_per_su=2,oversubscription=3",
                                  "dgx_h100:nodes=3,pcie=pcie4", "fat_tree", "single_node",
                                  "lamina_h100_h20:oversubscription=2"])
def test_bisection_matches_a_naive_max_flow(spec):
    g = topologies.parse_spec(spec)
    names = topologies.gpus(g)
    half = len(names) // 2
    expected = naive_max_flow(g, names[:half], names[half:])
    assert topologies.bisection_bandwidth(g) == pytest.approx(expected, rel=1e-9)
