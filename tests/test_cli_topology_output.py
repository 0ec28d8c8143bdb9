"""What ``kvfabric topology show|list`` prints: the summary's tables line by line, the path's
hops, the bisection line, the deployment's lines as given, and the presets' table."""

from __future__ import annotations

import json

import pytest
from clitools import DEPLOYED, colour_terminal, rich_tables, run_main

from simulator.hardware import LINKS
from simulator.units import fmt_rate, fmt_time

#: Two H100s on one custom link (no catalog name), their names holding rich markup.
TWO = """
[[nodes]]
name = "a[bold]/g0"
kind = "gpu"
gpu = "H100"
[[nodes]]
name = "a[bold]/g1"
kind = "gpu"
gpu = "H100"
[[links]]
src = "a[bold]/g0"
dst = "a[bold]/g1"
kind = "nvlink"
bandwidth = 100e9
latency = 1e-6
"""

#: A dense model laid out on TWO's GPUs: one decode instance, attention DP2.
SCENARIO = DEPLOYED.format(name="ep[red]x", spec="two.toml", model="llama-3.1-8b",
                           deployment="attention_dp = 2")
LAYOUT_LINE = "decode instance 0: 2 GPUs a[bold]/g0 … a[bold]/g1, attention DP2 × TP1"

#: The keys of ``topology show --json`` without --path, -o or --deployment.
SUMMARY_KEYS = {"name", "nodes", "edges", "node_kinds", "gpus", "gpu_count", "links",
                "bisection_bandwidth", "bisection_halves"}


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "two.toml").write_text(TWO)
    (tmp_path / "ep.toml").write_text(SCENARIO)
    return tmp_path


def test_show_prints_counts_tables_and_bisection_of_a_preset(capsys, wide):
    code, out, err = run_main(["topology", "show", "single_node:gpus=2"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    # 2 GPUs, an NVSwitch, a PCIe switch per GPU and a host; 6 full-duplex links
    assert lines[0] == "single_node: 6 nodes, 12 directed edges, 2 GPUs"
    assert rich_tables(out) == [
        (["GPU", "count"], [["H100", "2"]]),
        (["kind", "count"], [["gpu", "2"], ["host", "1"], ["nvswitch", "1"],
                             ["pcie_switch", "2"]]),
        (["kind", "catalog link", "bandwidth", "count"],
         [["nvlink", "nvlink4", fmt_rate(LINKS["nvlink4"].bandwidth), "2"],
          ["pcie", "pcie5", fmt_rate(LINKS["pcie5"].bandwidth), "4"]]),
    ]
    # counts to the right, names to the left
    assert "│ H100 │     2 │" in lines
    assert "│ pcie_switch │     2 │" in lines
    assert "│ nvlink │ nvlink4      │ 450 GB/s  │     2 │" in lines
    # gpu0 -> gpu1: over the NVSwitch and through the PCIe switches and the host
    both = fmt_rate(LINKS["nvlink4"].bandwidth + LINKS["pcie5"].bandwidth)
    assert lines[-1] == (f"bisection bandwidth: {both} (max flow from the first 1 GPUs to the "
                         "last 1, natural order)")
    assert both == "514 GB/s"


def test_one_gpu_has_no_bisection(capsys, wide):
    code, out, err = run_main(["topology", "show", "single_node:gpus=1"], capsys)
    assert code == 0, err
    assert out.splitlines()[-1] == ("bisection bandwidth: n/a (max flow from the first 0 GPUs "
                                    "to the last 1, natural order)")


def test_show_prints_each_hop_of_a_path_numbered_from_one(capsys, wide):
    code, out, err = run_main(["topology", "show", "single_node:gpus=2", "--path", "n0/gpu0",
                               "n0/gpu1"], capsys)
    assert code == 0, err
    nv = (fmt_rate(LINKS["nvlink4"].bandwidth), fmt_time(LINKS["nvlink4"].latency))
    assert rich_tables(out)[-1] == (
        ["#", "from", "to", "kind", "link", "bandwidth", "latency"],
        [["1", "n0/gpu0", "n0/nvswitch", "nvlink", "nvlink4", *nv],
         ["2", "n0/nvswitch", "n0/gpu1", "nvlink", "nvlink4", *nv]])
    assert out.splitlines()[-1] == ("2 hops, summed latency 500 ns, bottleneck 450 GB/s "
                                    "(n0/gpu0 -> n0/nvswitch, nvlink), stays inside a machine")


def test_a_link_without_a_catalog_name_shows_a_dash(capsys, wide, files):
    code, out, err = run_main(["topology", "show", "two.toml", "--path", "a[bold]/g0",
                               "a[bold]/g1"], capsys)
    assert code == 0, err
    found = rich_tables(out)
    assert found[2] == (["kind", "catalog link", "bandwidth", "count"],
                        [["nvlink", "-", "100 GB/s", "1"]])
    assert found[3] == (["#", "from", "to", "kind", "link", "bandwidth", "latency"],
                        [["1", "a[bold]/g0", "a[bold]/g1", "nvlink", "-", "100 GB/s", "1 µs"]])


def test_json_has_the_deployment_only_when_asked(capsys, files):
    code, out, err = run_main(["topology", "show", "two.toml", "--json"], capsys)
    assert code == 0, err
    assert set(json.loads(out)) == SUMMARY_KEYS
    code, out, err = run_main(["topology", "show", "two.toml", "--deployment", "ep.toml",
                               "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == SUMMARY_KEYS | {"deployment"}
    assert data["deployment"] == {
        "scenario": "ep[red]x", "lines": [LAYOUT_LINE],
        "pools": {"decode": [{"gpus": ["a[bold]/g0", "a[bold]/g1"], "attention_dp": 2,
                              "attention_tp": 1, "ep": 2, "moe_kernels": "low_latency",
                              "two_batch_overlap": False}]},
        "idle": []}


def test_deployment_lines_print_as_given_on_a_narrow_terminal(capsys, files, monkeypatch):
    # a terminal 40 columns wide, in colour: the layout's line is printed whole, its names'
    # brackets kept and nothing in it coloured
    colour_terminal(monkeypatch, 40)
    code, out, err = run_main(["topology", "show", "two.toml", "--deployment", "ep.toml"],
                              capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert f"  {LAYOUT_LINE}" in lines
    assert "deployment of ep[red]x:" in [line.replace("\x1b[1m", "").replace("\x1b[0m", "")
                                         for line in lines]


def test_list_prints_each_preset_with_its_parameters_and_first_docstring_line(capsys,
                                                                                monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    code, out, err = run_main(["topology", "list"], capsys)
    assert code == 0, err
    header, rows = rich_tables(out)[0]
    assert header == ["preset", "parameters (defaults)", "description"]
    assert rows[0] == ["single_node", "gpus=8, gpu=H100, nvlink=nvlink4, pcie=pcie5",
                       "One machine: GPUs on one NVSwitch, a PCIe switch per GPU and a host; "
                       "no network."]
    assert rows[2][:2] == ["fat_tree", "k=4, link=ib_ndr, gpu=H100, pcie=pcie5"]
    assert [r[0] for r in rows] == ["single_node", "dgx_h100", "fat_tree", "lamina_h100_h20"]
    code, out, err = run_main(["topology", "list", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["dgx_h100"]["description"] == (
        "DGX H100 machines (8 H100, one NIC per GPU behind a PCIe switch) on a rail-optimized "
        "fabric.")
    assert all(row["description"].endswith(".") for row in data.values())
