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
    ("lamina_h100_h20:h100_nodes=-1,h20_nodes=2", "h100_nodes"),
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


def test_names_sort_by_their_numbers_and_a_superscript_is_text():
    from topologies.validate import natural_key

    names = ["n10/gpu0", "n2/gpu10", "n2/gpu9", "²", "n2/gpu9b"]
    assert sorted(names, key=natural_key) == ["n2/gpu9", "n2/gpu9b", "n2/gpu10", "n10/gpu0", "²"]


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
    # the aggregates: one for the cores, one per pod for its aggregation switches
    assert {n for n, d in f.nodes(data=True) if d.get("tier") == 2} == {"core"}
    assert {f.nodes[f"pod{p}/agg"]["tier"] for p in range(4)} == {1}


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
                           'link = "nvlink4"\nbandwidth = 1'))
    g = topologies.load(path)
    assert g.graph["source"] == str(path)
    # a GPU's catalog name in the catalog's spelling; another node's attribute as written
    assert g.nodes["a"]["gpu"] == "H100" and g.nodes["s"]["gpu"] == "h100"
    rate = g.edges["a", "s"]["bandwidth"]
    assert rate == 200.0 and isinstance(rate, float) and g.edges["a", "s"]["kind"] == "nvlink"
    assert g.edges["b", "s"]["bandwidth"] == 1.0  # MIN_BANDWIDTH, the slowest rate taken
    assert g.edges["s", "b"]["latency"] == LINKS["nvlink4"].latency


@pytest.mark.parametrize(("text", "words"), [
    # a link's rate and latency must be finite numbers
    *((_links('link = "nvlink4"', f'link = "nvlink4"\n{body}'), words) for body, words in (
        ("bandwidth = true", "bandwidth True"),
        ("bandwidth = inf", "bandwidth inf"),
        ("bandwidth = -1.0", "bandwidth -1.0"),
        ('bandwidth = "fast"', "bandwidth 'fast'"),
        ("latency = -1e-6", "latency -1e-06"),
        ("latency = inf", "latency inf"),
        ("latency = true", "latency True"),
        ('latency = "soon"', "latency 'soon'"))),
    # files of the wrong shape
    ('preset = "dgx_h100"\n[[nodes]]\nname = "a"\n', "not both"),
    ('preset = "dgx_h100"\n[[links]]\nsrc = "a"\n', "not both"),
    ('links = "a-b"\n[[nodes]]\nname = "a"\nkind = "host"\n', "'links' must be an array"),
    ('[[nodes]]\nname = ""\nkind = "host"\n', "field 'name'"),
    ('[[nodes]]\nname = 5\nkind = "host"\n', "field 'name'"),
    # a table where an array of tables belongs, even an empty one
    ('[[nodes]]\nname = "a"\nkind = "gpu"\ngpu = "H100"\n[links]\n', "'links' must be an array"),
])
def test_a_file_that_cannot_be_used_is_named(tmp_path, text, words):
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


def test_writing_leaves_catalog_figures_to_the_catalog_and_refuses_other_attributes():
    from topologies.loader import to_toml

    g = parse_spec("single_node:gpus=2")
    text = to_toml(g)
    assert "bandwidth" not in text and "latency" not in text and "kind = \"nvlink\"" not in text
    g.edges["n0/gpu0", "n0/pcie0"]["color"] = "red"
    with pytest.raises(TopologyError, match="attribute 'color' cannot be written"):
        to_toml(g)


# -- the summary ---------------------------------------------------------------------------------

def test_link_groups_order_kinds_then_rates_then_catalog_names():
    g = nx.DiGraph()  # one-way edges, in edge order: link "b", link "a", then a PCIe link
    g.add_edge("a1", "a2", kind="nvlink", bandwidth=1e9, link="b")
    g.add_edge("b1", "b2", kind="nvlink", bandwidth=1e9, link="a")
    g.add_edge("c1", "c2", kind="pcie", bandwidth=2e9)  # no catalog name: ""
    g.add_edge("d1", "d2", kind="ib", bandwidth=5e8, link="ib_ndr")
    g.add_edge("e1", "e1", kind="ib", bandwidth=5e8, link="ib_ndr")  # its own reverse: once
    assert [(x["kind"], x["link"], x["one_way"], x["count"]) for x in link_groups(g)] == [
        ("ib", "ib_ndr", False, 1), ("ib", "ib_ndr", True, 1), ("nvlink", "a", True, 1),
        ("nvlink", "b", True, 1), ("pcie", "", True, 1)]
    g.add_edge("a2", "a1", kind="nvlink", bandwidth=1e9, link="b")  # a1–a2 now full duplex
    g.add_edge("f1", "f1", kind="nvlink", bandwidth=1e9, link="a")
    assert [(x["link"], x["one_way"], x["count"]) for x in link_groups(g)
            if x["kind"] == "nvlink"] == [("a", False, 1), ("a", True, 1), ("b", False, 1)]


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
    # 16 NICs to their rail leaves at NDR, then 8 leaves' uplink bundles to the aggregate spine
    # at half a leaf's downlink (2 NICs × NDR / 2): NDR as well
    assert ib == [(NDR, 24)]


def test_an_odd_number_of_gpus_splits_into_unequal_halves():
    assert summarize(parse_spec("single_node:gpus=3"))["bisection_halves"] == [1, 2]


def test_an_unknown_node_is_named_with_two_gpus_as_examples():
    with pytest.raises(TopologyError, match="GPU names look like n0/gpu0, n0/gpu1 "):
        path_report(parse_spec("single_node:gpus=4"), "n0/gpu0", "n9/gpu0")


# -- the drawing ---------------------------------------------------------------------------------

def test_layers_go_from_cores_down_to_hosts_and_spread_each_row_in_name_order():
    from topologies.draw import layered_layout

    pos = layered_layout(parse_spec("single_node:gpus=2"))
    assert pos == {"n0/pcie0": (0.25, -4.0), "n0/pcie1": (0.75, -4.0),
                   "n0/gpu0": (0.25, -5.0), "n0/gpu1": (0.75, -5.0),
                   "n0/nvswitch": (0.5, -6.0), "n0/host": (0.5, -7.0)}
    rows = {n: y for n, (_, y) in layered_layout(parse_spec("fat_tree:k=4")).items()}
    assert rows["core"] == 0.0 and rows["pod0/agg"] == -1.0 and rows["pod0/edge0"] == -2.0
    assert rows["n0/nic0"] == -3.0
    g = nx.DiGraph()
    g.add_node("s", kind="spine")  # no tier: a spine of tier 1
    g.add_node("z", kind="router")  # an unknown kind: below every layer
    assert layered_layout(g) == {"s": (0.5, -1.0), "z": (0.5, -8.0)}


def _drawn(monkeypatch, tmp_path, spec, path=None) -> dict:
    """What draw() hands matplotlib for ``spec`` (or a graph): edge lists by colour, node
    colours in order, whether labels were drawn, the figure."""
    import topologies.draw as draw

    seen: dict = {"edges": {}, "labels": False}
    monkeypatch.setattr(draw.nx, "draw_networkx_edges", lambda u, pos, edgelist, ax,
                        edge_color, **kw: seen["edges"].setdefault(edge_color, []).extend(
                            edgelist))
    monkeypatch.setattr(draw.nx, "draw_networkx_nodes", lambda u, pos, ax, node_color, **kw:
                        seen.update(nodes=list(zip(u.nodes, node_color, strict=True))))
    monkeypatch.setattr(draw.nx, "draw_networkx_labels",
                        lambda *a, **kw: seen.update(labels=True))
    made = []

    class Kept(draw.Figure):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(draw, "Figure", Kept)
    g = parse_spec(spec) if isinstance(spec, str) else spec
    out = draw.draw(g, tmp_path / "t.png", path)
    assert out.is_file()
    seen["figure"] = made[0]
    seen["title"] = made[0].axes[0].get_title()
    return seen


@pytest.mark.filterwarnings("ignore:No artists with labels")  # the edges are not drawn here
def test_a_drawing_has_each_link_once_in_its_kinds_colour_and_the_path_in_red(monkeypatch,
                                                                               tmp_path):
    from topologies.draw import _EDGE_COLORS, _NODE_COLORS

    g = parse_spec("single_node:gpus=2")
    seen = _drawn(monkeypatch, tmp_path, "single_node:gpus=2",
                  ["n0/gpu0", "n0/nvswitch", "n0/gpu1"])
    nvlink = sorted(map(sorted, seen["edges"][_EDGE_COLORS["nvlink"]]))
    assert nvlink == [["n0/gpu0", "n0/nvswitch"], ["n0/gpu1", "n0/nvswitch"]]
    assert len(seen["edges"][_EDGE_COLORS["pcie"]]) == 4  # GPU–switch and switch–host, ×2
    assert seen["edges"]["red"] == [("n0/gpu0", "n0/nvswitch"), ("n0/nvswitch", "n0/gpu1")]
    assert seen["nodes"] == [(n, _NODE_COLORS[d["kind"]]) for n, d in g.nodes(data=True)]
    assert seen["labels"] and seen["title"] == "single_node"
    ax = seen["figure"].axes[0]
    assert not ax.axison and ax.get_legend().get_title().get_text() == "links"
    many = _drawn(monkeypatch, tmp_path, "dgx_h100:nodes=3")  # 88 nodes: no names
    assert not many["labels"] and "red" not in many["edges"]
    assert _drawn(monkeypatch, tmp_path, "single_node:gpus=2", ["n0/gpu0"])["edges"].get(
        "red") is None  # a path of one node has no hop to draw


@pytest.mark.filterwarnings("ignore:No artists with labels")
def test_a_drawing_is_as_wide_as_its_widest_row_between_8_and_40_inches(monkeypatch, tmp_path):
    size = {spec: tuple(_drawn(monkeypatch, tmp_path, spec)["figure"].get_size_inches())
            for spec in ("single_node:gpus=2", "dgx_h100:nodes=2", "fat_tree:k=8")}
    # widest rows: 2 GPUs; 16 GPUs, NICs or PCIe switches (0.7 in each); 128 one-GPU machines
    assert size == {"single_node:gpus=2": (8.0, 7.0), "dgx_h100:nodes=2": (pytest.approx(11.2),
                    7.0), "fat_tree:k=8": (40.0, 7.0)}
    assert _drawn(monkeypatch, tmp_path, "single_node:gpus=2")["figure"].dpi == 100


@pytest.mark.filterwarnings("ignore:No artists with labels")
def test_names_are_drawn_up_to_64_nodes_and_a_path_of_one_hop_in_red(monkeypatch, tmp_path):
    assert _drawn(monkeypatch, tmp_path, "single_node:gpus=31")["labels"]  # 64 nodes
    assert not _drawn(monkeypatch, tmp_path, "single_node:gpus=32")["labels"]  # 66
    hop = _drawn(monkeypatch, tmp_path, "single_node:gpus=2", ["n0/gpu0", "n0/nvswitch"])
    assert hop["edges"]["red"] == [("n0/gpu0", "n0/nvswitch")]


@pytest.mark.filterwarnings("ignore:No artists with labels")
def test_a_link_whose_directions_differ_is_drawn_as_its_first_direction(monkeypatch, tmp_path):
    from topologies.draw import _EDGE_COLORS

    g = nx.DiGraph(name="odd")
    g.add_node("n0/gpu0", kind="gpu")
    g.add_node("n0/gpu1", kind="gpu")
    g.add_edge("n0/gpu1", "n0/gpu0", kind="pcie", bandwidth=1e9, latency=0.0)
    g.add_edge("n0/gpu0", "n0/gpu1", kind="nvlink", bandwidth=1e9, latency=0.0)
    seen = _drawn(monkeypatch, tmp_path, g)  # gpu0 -> gpu1 comes first in name order
    assert list(seen["edges"]) == [_EDGE_COLORS["nvlink"]] and seen["title"] == "odd"


def test_a_drawing_without_links_has_no_legend_and_no_warning(monkeypatch, tmp_path):
    import warnings

    g = nx.DiGraph(name="one")
    g.add_node("n0/gpu0", kind="gpu", gpu="H100")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seen = _drawn(monkeypatch, tmp_path, g)
    assert seen["edges"] == {} and seen["figure"].axes[0].get_legend() is None


def test_a_drawing_needs_a_known_suffix_even_without_one(tmp_path):
    from topologies.draw import draw

    with pytest.raises(TopologyError, match="cannot draw to a suffix-less file; use one of "
                                            ".png, .svg, .pdf"):
        draw(parse_spec("single_node:gpus=2"), tmp_path / "t")


def test_topology_show_says_which_links_go_one_way(tmp_path, capsys, monkeypatch):
    from clitools import run_main

    monkeypatch.setenv("COLUMNS", "160")
    ring = tmp_path / "ring.toml"
    ring.write_text("".join(f'[[nodes]]\nname = "g{i}"\nkind = "gpu"\ngpu = "H100"\n'
                            for i in range(3))
                    + "".join(f'[[links]]\nsrc = "g{i}"\ndst = "g{(i + 1) % 3}"\n'
                              f'link = "nvlink4"\ndirected = true\n' for i in range(3)))
    code, out, _ = run_main(["topology", "show", str(ring)], capsys)
    assert code == 0 and "direction" in out and "one way" in out and "each way" not in out
    code, out, _ = run_main(["topology", "show", "single_node:gpus=2"], capsys)
    flat = "".join(out.split())  # a table's title wraps at its width
    assert code == 0 and "direction" not in out and "afull-duplexlinkcountedonce" in flat
