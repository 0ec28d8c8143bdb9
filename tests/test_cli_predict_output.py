"""``kvfabric predict``: every printed line, JSON key and plot element against the library.

Expected values come from :class:`simulator.costmodel.CostModel` called directly (or are known by
hand: the path of ``dgx_h100:nodes=2``, the GPU names of a preset), never from the command's own
output. Found unchecked by the mutation score (group ``cli_tools``).
"""

from __future__ import annotations

import json
import math
import struct

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from clitools import run_main
from matplotlib.figure import Figure

import topologies
from simulator.cli.predict import parse_sweep, sweep_points
from simulator.costmodel import CostModel
from simulator.errors import UserError
from simulator.gpu.calibration import run_kernels
from simulator.units import LARGEST_SIZE, fmt_rate, fmt_time, to_us

SRC, DST = "n0/gpu0", "n1/gpu0"
OPTS = ("route", "fetch", "local")


def predict(capsys, monkeypatch, *args) -> tuple[int, str, str]:
    """``kvfabric predict ARGS`` in-process on a 200-column console: (status, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", "200")
    return run_main(["predict", *args], capsys)


def ok(capsys, monkeypatch, *args) -> str:
    code, out, err = predict(capsys, monkeypatch, *args)
    assert code == 0, err
    return out


def refused(capsys, monkeypatch, *args) -> str:
    """The one ``error: …`` line of a refused command (exit status 2)."""
    code, out, err = predict(capsys, monkeypatch, *args)
    assert code == 2 and out == "", (code, out, err)
    (line,) = err.splitlines()
    return line


def cost_model(profile: str = "measured", block_tokens: int = 64) -> CostModel:
    return CostModel("deepseek-v3.2", topologies.build("dgx_h100", nodes=2), "ibgda",
                     block_tokens=block_tokens, kernels=run_kernels({"profile": profile}))


def cells(line: str) -> list[str]:
    """The cells of one table line (``│ a │ b │`` or ``┃ a ┃ b ┃``), padding kept."""
    sep = "┃" if "┃" in line else "│"
    return line.split(sep)[1:-1]


def right(cell: str, value: str) -> bool:
    return cell == " " + value.rjust(len(cell) - 2) + " "


def left(cell: str, value: str) -> bool:
    return cell == " " + value.ljust(len(cell) - 2) + " "


def table_line(text: str, first: str) -> str:
    """The table line whose first cell holds ``first``."""
    (line,) = [ln for ln in text.splitlines()
               if ln[:1] in "│┃" and cells(ln)[0].strip() == first]
    return line


# -- refused input: the exact bounds and messages -----------------------------------------------


@pytest.mark.parametrize("sweep", ["blocks=0:8", "blocks=8:8"])
def test_sweep_refuses_zero_and_an_empty_range(capsys, monkeypatch, sweep):
    assert refused(capsys, monkeypatch, "--sweep", sweep) == (
        f"error: --sweep {sweep!r}: write blocks=LO:HI with 0 < LO < HI <= 1e+15, e.g. "
        "--sweep blocks=1:4096")


def test_sweep_accepts_the_largest_size_as_its_end():
    assert parse_sweep("blocks=1:1e15") == (1.0, LARGEST_SIZE)
    with pytest.raises(UserError, match="--sweep"):
        parse_sweep("blocks=1:1.0000000000000002e15")


def test_sweep_points_are_the_powers_of_two_between_the_ends(capsys, monkeypatch):
    assert sweep_points(5, 40) == [5, 8, 16, 32, 40]
    assert sweep_points(0.3, 2) == [0.3, 0.5, 1, 2]
    out = json.loads(ok(capsys, monkeypatch, "--sweep", "blocks=5:40", "--json"))
    assert [row["blocks"] for row in out["sweep"]] == [5, 8, 16, 32, 40]


def test_a_number_at_the_largest_size_is_accepted_and_one_past_it_refused(capsys, monkeypatch):
    out = json.loads(ok(capsys, monkeypatch, "--blocks", "4", "--reuse", "1e15", "--json"))
    assert out["reuse"] == LARGEST_SIZE
    assert refused(capsys, monkeypatch, "--blocks", "4", "--reuse", "1.0000000000000002e15") \
        == "error: --reuse 1e+15: give a number > 0 and <= 1e+15"


@pytest.mark.parametrize(("topology", "shown"), [
    ("dgx_h100:nodes=2", "n0/gpu0, n0/gpu1, n0/gpu2, n0/gpu3, n0/gpu4, n0/gpu5, …"),
    ("single_node:gpus=7", "n0/gpu0, n0/gpu1, n0/gpu2, n0/gpu3, n0/gpu4, n0/gpu5, …"),
    ("single_node:gpus=6", "n0/gpu0, n0/gpu1, n0/gpu2, n0/gpu3, n0/gpu4, n0/gpu5"),
])
def test_an_unknown_gpu_is_refused_naming_the_first_six_gpus(capsys, monkeypatch, topology,
                                                             shown):
    assert refused(capsys, monkeypatch, "--topology", topology, "--src", "n0/gpu0",
                   "--dst", "n7/gpu9", "--blocks", "4") == (
        f"error: --dst 'n7/gpu9': not a GPU of the topology; give one of {shown}")


def test_heads_up_to_the_models_query_heads(capsys, monkeypatch):
    out = json.loads(ok(capsys, monkeypatch, "--blocks", "8", "--heads", "128", "--json"))
    cm = cost_model()
    assert out["route"] == pytest.approx(
        cm.option("route", SRC, DST, 8, heads=128).as_dict(), rel=1e-12)
    assert refused(capsys, monkeypatch, "--blocks", "8", "--heads", "129") == (
        "error: --heads 129: deepseek-v3.2 has 128 query heads; give 1 to that many")


# -- the JSON object ------------------------------------------------------------------------


def test_json_is_indented_by_two(capsys, monkeypatch):
    text = ok(capsys, monkeypatch, "--blocks", "4", "--json")
    assert text.startswith('{\n  "model": "deepseek-v3.2",\n  "topology": "dgx_h100:nodes=2",\n')


def test_a_crossing_below_one_block_is_no_crossover(capsys, monkeypatch):
    # 256-token blocks on the roofline: the formulas cross at ~0.47 of a block
    args = ("--block-tokens", "256", "--profile", "roofline")
    cm = cost_model("roofline", 256)
    k = cm.crossover(SRC, DST, "blocks")
    assert 0 < k < 1
    assert cm.option("route", SRC, DST, 1).total < cm.option("fetch", SRC, DST, 1).total
    out = json.loads(ok(capsys, monkeypatch, *args, "--sweep", "blocks=1:8", "--json"))
    assert out["crossover"] == {"blocks": None, "blocks_below_one": pytest.approx(k, rel=1e-12),
                                "cheaper_from_one_block": "route"}
    text = ok(capsys, monkeypatch, *args, "--blocks", "4")
    assert ("route = fetch at blocks per query: none from one block up — route is cheaper at "
            f"every whole number of blocks (the formulas cross at {k:.2g} of a block)"
            ) in text.splitlines()


def test_a_crossover_at_exactly_one_block_is_a_crossover(capsys, monkeypatch):
    crossover = CostModel.crossover

    def at_one(self, src, dst, over="blocks", **kw):
        return 1.0 if over == "blocks" else crossover(self, src, dst, over, **kw)

    monkeypatch.setattr(CostModel, "crossover", at_one)
    out = json.loads(ok(capsys, monkeypatch, "--sweep", "blocks=1:4", "--json"))
    assert out["crossover"] == {"blocks": 1.0}


# -- the printed report ---------------------------------------------------------------------


def test_the_report_prints_every_line_from_the_cost_model(capsys, monkeypatch):
    args = ("--blocks", "32", "--reuse", "2", "--profile", "roofline")
    text = ok(capsys, monkeypatch, *args)
    lines = text.splitlines()
    cm = cost_model("roofline")
    kw = dict(reuse=2)
    comp = cm.compare(SRC, DST, 32, **kw)
    w = cm.crossover(SRC, DST, "bandwidth", blocks=32, **kw)
    pr = cm.crossover(SRC, DST, "probe", blocks=32, **kw)
    k = cm.crossover(SRC, DST, "blocks", **kw)
    assert None not in (w, pr, k)
    assert lines[0] == ("deepseek-v3.2 on dgx_h100:nodes=2 (ibgda stack): n0/gpu0 (home) ↔ "
                        "n1/gpu0 (owner), batch 1, 64-token blocks, reuse 2, scattered fetch")
    # by hand: GPU → PCIe switch → NIC → leaf → NIC → PCIe switch → GPU, 4 × 0.3 + 2 × 0.2 µs
    assert lines[1] == "path: 6 hops, latency 1.6 µs, bottleneck 50 GB/s, inter-node"
    assert "One layer's round, 32 blocks per query [µs]" in text
    header = cells(table_line(text, "phase"))
    assert left(header[0], "phase")
    assert all(right(c, n) for c, n in zip(header[1:], OPTS, strict=True))
    for label in ("probe", "transfer", "compute", "return", "merge", "total"):
        row = cells(table_line(text, label))
        values = [f"{to_us(getattr(comp.option(n), 'ret' if label == 'return' else label)):.3f}"
                  for n in OPTS]
        assert left(row[0], label)
        assert all(right(c, v) for c, v in zip(row[1:], values, strict=True)), (label, row)
    row = cells(table_line(text, "all 61 layers"))
    assert [c.strip() for c in row[1:]] == [f"{to_us(61 * comp.option(n).total):.1f}"
                                            for n in OPTS]
    assert comp.decision == "route"
    assert (f"decision: route, cheaper than the runner-up by {fmt_time(comp.margin_time)} per "
            f"layer ({fmt_time(61 * comp.margin_time)} per decode step)") in lines
    assert f"route = fetch at bandwidth: {fmt_rate(w)}" in lines
    assert f"route = fetch at per-message latency: {fmt_time(pr)}" in lines
    assert f"route = fetch at blocks per query: {k:.4g}" in lines


def test_the_report_says_when_nothing_crosses(capsys, monkeypatch):
    lines = ok(capsys, monkeypatch, "--blocks", "32").splitlines()
    cm = cost_model()
    assert [cm.crossover(SRC, DST, over, blocks=32) for over in ("bandwidth", "probe")] == \
        [None, None]
    assert cm.crossover(SRC, DST, "blocks") is None
    assert lines[-3:] == [
        "route = fetch at bandwidth: none (the same side wins at any rate)",
        "route = fetch at per-message latency: none (both pay two messages; give --reuse > 1)",
        "route = fetch at blocks per query: none (the same side wins)"]


def test_the_sweep_table_rows(capsys, monkeypatch):
    text = ok(capsys, monkeypatch, "--sweep", "blocks=1:4", "--profile", "roofline")
    cm = cost_model("roofline")
    assert "Sweep: total of one layer's round [µs]" in text
    header = cells(table_line(text, "blocks"))
    assert right(header[0], "blocks") and left(header[-1], "decision")
    for k in (1, 2, 4):
        row = cells(table_line(text, str(k)))
        comp = cm.compare(SRC, DST, k)
        assert right(row[0], str(k)) and left(row[-1], comp.decision)
        assert [c.strip() for c in row[1:-1]] == [f"{to_us(comp.option(n).total):.3f}"
                                                  for n in OPTS]


# -- the plot -------------------------------------------------------------------------------


@pytest.fixture
def saved(monkeypatch):
    """The figures ``savefig`` wrote, with the format asked."""
    figures: list[tuple[Figure, str]] = []
    savefig = Figure.savefig

    def spy(self, fname, *args, **kwargs):
        figures.append((self, kwargs.get("format")))
        return savefig(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return figures


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_the_plot_draws_the_three_curves_and_the_crossover(capsys, monkeypatch, tmp_path,
                                                           saved):
    png = tmp_path / "curves.png"
    open_before = plt.get_fignums()
    text = ok(capsys, monkeypatch, "--sweep", "blocks=1:64", "--profile", "roofline",
              "--plot", str(png))
    assert f"plot written to {png}" in text.splitlines()
    assert plt.get_fignums() == open_before  # the figure is closed after saving
    assert png_size(png) == (700, 450)  # 7 × 4.5 inches at 100 dpi
    ((fig, fmt),) = saved
    assert fmt == "png"
    (ax,) = fig.axes
    cm = cost_model("roofline")
    k = cm.crossover(SRC, DST, "blocks")
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "selected blocks per query (64 tokens each)"
    assert ax.get_ylabel() == "one layer's round [µs]"
    assert ax.get_title() == "deepseek-v3.2: n0/gpu0 → n1/gpu0, ibgda, batch 1"
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == [*OPTS, f"crossover {k:.3g} blocks"]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == [*OPTS, f"crossover {k:.3g} blocks"]
    for name in OPTS:
        xs, ys = lines[name].get_xdata(), lines[name].get_ydata()
        assert xs[0] == pytest.approx(1) and xs[-1] == pytest.approx(64)
        assert np.allclose(np.diff(np.log(xs)), math.log(64) / (len(xs) - 1))
        for i in (0, len(xs) // 3, len(xs) - 1):
            assert ys[i] == pytest.approx(to_us(cm.option(name, SRC, DST, xs[i]).total),
                                          rel=1e-12)
    assert list(lines[f"crossover {k:.3g} blocks"].get_xdata()) == [k, k]
    # laid out tightly: the labels are inside the image, the axes wider than by default
    assert fig.subplotpars.left < matplotlib.rcParams["figure.subplot.left"]


@pytest.mark.parametrize("end", ["lo", "hi"])
def test_a_crossover_at_an_end_of_the_sweep_is_drawn(capsys, monkeypatch, tmp_path, saved, end):
    k = cost_model("roofline").crossover(SRC, DST, "blocks")
    sweep = f"blocks={k!r}:64" if end == "lo" else f"blocks=1:{k!r}"
    ok(capsys, monkeypatch, "--sweep", sweep, "--profile", "roofline",
       "--plot", str(tmp_path / "c.png"))
    ((fig, _),) = saved
    assert [list(line.get_xdata()) for line in fig.axes[0].get_lines()
            if line.get_label().startswith("crossover")] == [[k, k]]


@pytest.mark.parametrize(("name", "magic"), [("c.svg", b"<?xml"), ("c.pdf", b"%PDF"),
                                             ("c.PNG", b"\x89PNG")])
def test_the_plot_is_written_in_the_format_its_name_asks(capsys, monkeypatch, tmp_path, name,
                                                         magic):
    ok(capsys, monkeypatch, "--sweep", "blocks=1:8", "--plot", str(tmp_path / name))
    assert (tmp_path / name).read_bytes().startswith(magic)


def test_the_plot_is_drawn_without_a_display(capsys, monkeypatch, tmp_path):
    plt.switch_backend("pdf")  # as if the user's default were another (e.g. interactive) one
    try:
        ok(capsys, monkeypatch, "--sweep", "blocks=1:8", "--plot", str(tmp_path / "c.png"))
        assert matplotlib.get_backend().lower() == "agg"
    finally:
        plt.switch_backend("agg")
