"""The topology presets, files and summaries with known answers: every preset parameter's check
names its parameter, switch tiers and the fat tree's wiring, a TOML file's fields read as
written, one record per full-duplex link when writing, and the summary's groups, halves and
bisection of small graphs worked out by hand (the mutation group `topologies`)."""

from __future__ import annotations

import networkx as nx
import pytest

import topologies
from simulator.hardware import LINKS
from topologies import TopologyError
from topologies.loader import parse_spec
from topologies.summary import bisection_bandwidth, link_groups, path_report, summarize

NDR = LINKS["ib_ndr"].bandwidth


# -- preset parameters ---------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "param"), [
    ("single_node:gpus=0", "gpus"),
    ("single_node:gpu=Z9", "gpu"),
    ("single_node:nvlink=pcie5", "nvlink"),
    ("single_node:pcie=nvlink4", "pcie"),
    ("dgx_h100:nodes=0", "nodes"),
    ("dgx_h100:gpu=Z9", "gpu"),
    ("dgx_h100:nic=pcie5", "nic"),
    ("dgx_h100:pcie=ib_ndr", "pcie"),
    ("dgx_h100:nvlink=ib_ndr", "nvlink"),
    ("dgx_h100:oversubscription=0", "oversubscription"),
    ("dgx_h100:nodes_per_su=0", "nodes_per_su"),
    ("dgx_h100:spines=0", "spines"),
    ("lamina_h100_h20:h100_nodes=-1", "h100_nodes"),
    ("lamina_h100_h20:h20_nodes=-1", "h20_nodes"),
    ("lamina_h100_h20:h100_nodes=0,h20_nodes=0", "h100_nodes"),
    ("lamina_h100_h20:gpus_per_node=0", "gpus_per_node"),
    ("lamina_h100_h20:nic=pcie5", "nic"),
    ("lamina_h100_h20:pcie=roce400", "pcie"),
    ("lamina_h100_h20:oversubscription=0", "oversubscription"),
    ("lamina_h100_h20:spines=0", "spines"),
    ("fat_tree:k=0", "k"),
    ("fat_tree:link=pcie5", "link"),
    ("fat_tree:gpu=Z9", "gpu"),
    ("fat_tree:pcie=ib_ndr", "pcie"),
])
def test_every_preset_parameter_is_checked_by_name_before_building(spec, param):
    preset = spec.partition(":")[0]
    with pytest.raises(TopologyError) as err:
        parse_spec(spec)
    assert str(err.value).startswith(f"preset {preset}: parameter {param}=")


@pytest.mark.parametrize("spec", ["lamina_h100_h20:h100_nodes=1,h20_nodes=0",
                                  "lamina_h100_h20:h100_nodes=0,h20_nodes=1"])
def test_a_lamina_testbed_of_one_machine_builds(spec):
    g = parse_spec(spec)
    assert len(topologies.gpus(g)) == 8


@pytest.mark.parametrize("spec", ["dgx_h100:nodes=true", "single_node:gpus=false"])
def test_a_boolean_is_not_a_count(spec):
    with pytest.raises(TopologyError, match="must be of type int"):
        parse_spec(spec)


def test_values_in_a_spec_are_read_as_booleans_numbers_or_words():
    from topologies.loader import _parse_value

    assert _parse_value("true") is True and _parse_value("False") is False
    assert _parse_value("4") == 4 and isinstance(_parse_value("4"), int)
    assert _parse_value("2.5") == 2.5 and _parse_value(" ib_ndr ") == "ib_ndr"


# -- what the presets build ----------------------------------------------------------------------

def _tiers(g: nx.DiGraph, kind: str) -> set:
    return {d["tier"] for _, d in g.nodes(data=True) if d["kind"] == kind}


def test_leaves_spines_and_cores_sit_on_their_tiers():
    g = parse_spec("dgx_h100:nodes=2")
    assert _tiers(g, "leaf") == {0} and _tiers(g, "spine") == {1}
    f = parse_spec("fat_tree:k=4")
    assert _tiers(f, "leaf") == {0} and _tiers(f, "spine") == {1, 2}
    assert {n for n, d in f.nodes(data=True) if d.get("tier") == 2} == {f"core{c}" for c in
                                                                       range(4)}
    assert {f.nodes[f"pod{p}/agg{a}"]["tier"] for p in range(4) for a in range(2)} == {1}


def test_a_fat_trees_machines_are_numbered_edge_after_edge():
    g = parse_spec("fat_tree:k=4")  # 4 pods of 2 edges with 2 machines each: n0 … n15
    assert topologies.gpus(g) == [f"n{m}/gpu0" for m in range(16)]
    for m in range(16):
        pod, edge = divmod(m // 2, 2)
        assert g.has_edge(f"n{m}/nic0", f"pod{pod}/edge{edge}")


def test_a_machine_of_two_gpus_has_its_nvswitch():
    g = parse_spec("single_node:gpus=2")
    assert g.nodes["n0/nvswitch"] == {"kind": "nvswitch", "node": 0}
    assert "n0/nvswitch" not in parse_spec("single_node:gpus=1")


def test_a_preset_graph_names_its_preset_and_parameters():
    g = parse_spec("dgx_h100:nodes=1,spines=3")
    assert g.graph["name"] == "dgx_h100" and g.graph["params"]["spines"] == 3
    assert g.graph["params"]["nodes"] == 1 and g.graph["params"]["gpu"] == "H100"


# -- topology files ------------------------------------------------------------------------------

TWO = ('[[nodes]]\nname = "a"\nkind = "gpu"\ngpu = "h100"\n'
       '[[nodes]]\nname = "b"\nkind = "gpu"\ngpu = "H100"\n'
       '[[nodes]]\nname = "s"\nkind = "nvswitch"\ngpu = "h100"\n')


def _links(*tables: str) -> str:
    return TWO + "".join(f"[[links]]\nsrc = \"{s}\"\ndst = \"s\"\n{body}\n"
                         for s, body in zip("ab", tables, strict=True))


def test_a_file_keeps_what_it_says_and_reads_integers_as_rates(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(_links('kind = "nvlink"\nbandwidth = 200\nlatency = 0',
                           'link = "nvlink4"\nbandwidth = 0.5'))
    g = topologies.load(path)
    assert g.graph["source"] == str(path)
    # a GPU's catalog name in the catalog's spelling; another node's attribute as written
    assert g.nodes["a"]["gpu"] == "H100" and g.nodes["s"]["gpu"] == "h100"
    rate = g.edges["a", "s"]["bandwidth"]
    assert rate == 200.0 and isinstance(rate, float) and g.edges["a", "s"]["kind"] == "nvlink"
    assert g.edges["b", "s"]["bandwidth"] == 0.5  # below 1 B/s, but > 0: a rate
    assert g.edges["s", "b"]["latency"] == LINKS["nvlink4"].latency


@pytest.mark.parametrize(("body", "words"), [
    ("bandwidth = true", "bandwidth True"),
    ("bandwidth = inf", "bandwidth inf"),
    ("bandwidth = -1.0", "bandwidth -1.0"),
    ('bandwidth = "fast"', "bandwidth 'fast'"),
    ("latency = -1e-6", "latency -1e-06"),
    ("latency = inf", "latency inf"),
    ("latency = true", "latency True"),
    ('latency = "soon"', "latency 'soon'"),
])
def test_a_links_rate_and_latency_must_be_finite_numbers(tmp_path, body, words):
    path = tmp_path / "t.toml"
    path.write_text(_links('link = "nvlink4"', f'link = "nvlink4"\n{body}'))
    with pytest.raises(TopologyError, match=words.replace("(", r"\(")):
        topologies.load(path)


@pytest.mark.parametrize(("text", "words"), [
    ('preset = "dgx_h100"\n[[nodes]]\nname = "a"\n', "not both"),
    ('preset = "dgx_h100"\n[[links]]\nsrc = "a"\n', "not both"),
    ('links = "a-b"\n[[nodes]]\nname = "a"\nkind = "host"\n', "'links' must be an array"),
    ('[[nodes]]\nname = ""\nkind = "host"\n', "field 'name'"),
    ('[[nodes]]\nname = 5\nkind = "host"\n', "field 'name'"),
])
def test_a_file_of_the_wrong_shape_is_named(tmp_path, text, words):
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(TopologyError, match=words):
        topologies.load(path)


def test_a_shipped_preset_file_is_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    g = topologies.load("topologies/presets/single_node.toml")
    assert len(topologies.gpus(g)) == 8
    with pytest.raises(TopologyError, match="not found"):
        topologies.load("topologies/presets/none.toml")
    with pytest.raises(TopologyError, match="not found"):
        topologies.load("elsewhere/presets/single_node.toml")


@pytest.mark.parametrize("name", ["mytopo", "sub/mytopo"])
def test_a_spec_naming_a_file_loads_the_file(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / name).write_text('preset = "single_node"\n[params]\ngpus = 2\n')
    assert len(topologies.gpus(parse_spec(name))) == 2


def test_writing_keeps_one_record_per_full_duplex_link_and_marks_one_way_edges():
    from topologies.loader import to_toml

    g = parse_spec("single_node:gpus=2")
    pairs = {frozenset(e) for e in g.edges}
    text = to_toml(g)
    assert text.count("src = ") == len(pairs) == 6 and "directed" not in text
    g.edges["n0/gpu0", "n0/nvswitch"]["bandwidth"] = 1e9  # one direction changed: two records
    text = to_toml(g)
    assert text.count("src = ") == 7 and text.count("directed = true") == 2


# -- the summary ---------------------------------------------------------------------------------

def test_the_bisection_of_two_gpus_is_every_path_between_them():
    g = parse_spec("single_node:gpus=2")  # over the NVSwitch, and through PCIe and the host
    assert bisection_bandwidth(g) == pytest.approx(LINKS["nvlink4"].bandwidth
                                                   + LINKS["pcie5"].bandwidth)
    assert bisection_bandwidth(parse_spec("single_node:gpus=1")) is None


def test_link_groups_go_by_kind_then_fastest_first():
    g = parse_spec("dgx_h100:nodes=2,oversubscription=2")
    groups = link_groups(g)
    assert [x["kind"] for x in groups] == sorted(x["kind"] for x in groups)
    ib = [(x["bandwidth"], x["count"]) for x in groups if x["kind"] == "ib"]
    # 16 NICs to their rail leaves at NDR, then 8 leaves × 2 spines at half a leaf's downlink
    # (2 NICs × NDR / 2 / 2 spines)
    assert ib == [(NDR, 16), (NDR / 2, 16)]


def test_an_odd_number_of_gpus_splits_into_unequal_halves():
    assert summarize(parse_spec("single_node:gpus=3"))["bisection_halves"] == [1, 2]


def test_an_unknown_node_is_named_with_two_gpus_as_examples():
    with pytest.raises(TopologyError, match="GPU names look like n0/gpu0, n0/gpu1 "):
        path_report(parse_spec("single_node:gpus=4"), "n0/gpu0", "n9/gpu0")
