"""``kvfabric topology list|show`` through the real entry point (exit codes, JSON, files)."""

from __future__ import annotations

import json

import pytest
from clitools import run_args as run

import topologies
from simulator.hardware import LINKS


def test_list_names_every_preset_with_its_parameters(capsys):
    code, out, _ = run(capsys, "topology", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert list(rows) == list(topologies.PRESETS)
    assert rows["dgx_h100"]["params"]["oversubscription"] == 1.0
    assert rows["dgx_h100"]["params"]["nic"] == "ib_ndr"
    code, out, _ = run(capsys, "topology", "list")
    assert code == 0 and "lamina_h100_h20" in out and "h20_nodes=1" in out


def test_show_json_summarizes_the_graph(capsys):
    code, out, _ = run(capsys, "topology", "show", "dgx_h100:nodes=4,nodes_per_su=2,"
                       "oversubscription=2", "--json")
    assert code == 0
    s = json.loads(out)
    for key in ("name", "nodes", "edges", "node_kinds", "gpus", "gpu_count", "links",
                "bisection_bandwidth", "bisection_halves"):
        assert key in s
    assert s["gpus"] == {"H100": 32} and s["bisection_halves"] == [16, 16]
    # 8 leaves × 2 NICs × 50 GB/s / oversubscription 2.
    assert s["bisection_bandwidth"] == pytest.approx(8 * 2 * LINKS["ib_ndr"].bandwidth / 2)
    nvlink = [row for row in s["links"] if row["kind"] == "nvlink"]
    assert nvlink == [{"kind": "nvlink", "link": "nvlink4", "bandwidth": 450e9, "one_way": False,
                      "count": 32}]


def test_show_path_reports_hops_latency_and_bottleneck(capsys):
    code, out, _ = run(capsys, "topology", "show", "dgx_h100:nic=ib_xdr", "--path", "n0/gpu0",
                       "n1/gpu0", "--json")
    assert code == 0
    p = json.loads(out)["path"]
    assert p["nodes"][0] == "n0/gpu0" and p["nodes"][-1] == "n1/gpu0"
    assert len(p["hops"]) == 6 and p["inter_node"] is True
    assert p["bottleneck_bandwidth"] == LINKS["pcie5"].bandwidth
    assert p["bottleneck"]["kind"] == "pcie"
    assert p["latency_time"] == pytest.approx(sum(h["latency"] for h in p["hops"]))

    code, out, _ = run(capsys, "topology", "show", "single_node", "--path", "n0/gpu0", "n0/gpu3")
    assert code == 0
    assert "bisection bandwidth" in out and "n0/nvswitch" in out and "2 hops" in out


def test_show_draws_a_png_atomically(capsys, tmp_path):
    target = tmp_path / "dgx.png"
    code, out, _ = run(capsys, "topology", "show", "dgx_h100", "--path", "n0/gpu0", "n1/gpu1",
                       "-o", str(target))
    assert code == 0 and "wrote" in out
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["dgx.png"]


def test_show_reads_a_toml_file(capsys, tmp_path):
    path = tmp_path / "t.toml"
    topologies.dump(topologies.build("fat_tree", k=2), path)
    code, out, _ = run(capsys, "topology", "show", str(path), "--json")
    assert code == 0 and json.loads(out)["gpu_count"] == 2


@pytest.mark.parametrize(("argv", "words"), [
    (["show", "{bad}"], ["bad.toml", "malformed TOML", "line 2"]),
    (["show", "{missing}"], ["missing.toml", "not found"]),
    (["show", "torus:k=4"], ["unknown topology preset 'torus'"]),
    (["show", "dgx_h100:nodes=-1"], ["nodes=-1"]),
    (["show", "dgx_h100", "--path", "n0/gpu0", "n9/gpu0"], ["'n9/gpu0' is not in the topology"]),
    (["show", "dgx_h100", "-o", "{out}/figure.jpeg"], ["figure.jpeg", ".png"]),
    (["show", "dgx_h100", "-o", "{out}/no/such/dir.png"], ["does not exist"]),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(capsys, tmp_path, argv, words):
    bad = tmp_path / "bad.toml"
    bad.write_text('preset = "dgx_h100"\nnodes = = 2\n')
    subs = {"bad": str(bad), "missing": str(tmp_path / "missing.toml"), "out": str(tmp_path)}
    code, out, err = run(capsys, "topology", *[a.format(**subs) for a in argv])
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    for w in words:
        assert w in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]
