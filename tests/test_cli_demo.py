"""``kvfabric demo``: the story's transfers and links against their closed forms, worked by hand.

Every expected time is first principles on ``dgx_h100:nodes=2`` with the ``ibgda`` stack
(simulator/hardware.py): a message waits overhead + path latency, then moves at the smaller of
the stack's per-message rate (efficiency × bottleneck) and its max-min share of each link.
Found unchecked by the mutation score (group ``cli_tools``).
"""

from __future__ import annotations

import json
import re

import pytest
from clitools import run_main

from simulator.units import fmt_time

REL = 1e-9
NVLINK, PCIE, IB = 450e9, 64e9, 50e9  # NVLink4, PCIe Gen5 x16, NDR InfiniBand [B/s]
# ibgda: half of Lamina's 33 µs round trip less its 2.2 µs reference path; 45.7 of 50 GB/s
INTER_OVERHEAD, INTER_RATE = 33e-6 / 2 - 2.2e-6, 45.7e9
# within a node: 3 µs one way less the 0.5 µs GPU → NVSwitch → GPU path; 374 of 450 GB/s
INTRA_OVERHEAD, INTRA_RATE = 3e-6 - 0.5e-6, 374e9
# path latencies: PCIe hop 0.3 µs, IB hop 0.2 µs, NVLink hop 0.25 µs
SAME_RAIL = 4 * 0.3e-6 + 2 * 0.2e-6  # GPU → PCIe sw → NIC → leaf → NIC → PCIe sw → GPU
VIA_SPINE = 4 * 0.3e-6 + 4 * 0.2e-6  # … → leaf → spine → leaf → …
NVSWITCH = 2 * 0.25e-6

# flow 0 (256 MB, n0/gpu0 → n1/gpu0) runs alone at 45.7 GB/s until flow 1 (128 MB, n0/gpu0 →
# n1/gpu1) starts; both then cross n0/nic0 → su0/leaf0 at half its 50 GB/s until flow 1 ends;
# flow 0 finishes alone again. Flows 2 and 3 (1.024 GB each into n0/gpu3) share the
# NVSwitch → gpu3 port: 225 GB/s each. Flow 4 (1 MB) goes the other way, alone.
START = [INTER_OVERHEAD + SAME_RAIL, 1e-3 + INTER_OVERHEAD + VIA_SPINE,
         2e-3 + INTRA_OVERHEAD + NVSWITCH, 2e-3 + INTRA_OVERHEAD + NVSWITCH,
         3e-3 + INTER_OVERHEAD + VIA_SPINE, 4e-3]
END1 = START[1] + 128e6 / (IB / 2)
SENT0 = INTER_RATE * (START[1] - START[0]) + IB / 2 * (END1 - START[1])
END = [END1 + (256e6 - SENT0) / INTER_RATE, END1,
       START[2] + 1024e6 / (NVLINK / 2), START[3] + 1024e6 / (NVLINK / 2),
       START[4] + 1e6 / INTER_RATE, 4e-3]
ISSUED = [0.0, 1e-3, 2e-3, 2e-3, 3e-3, 4e-3]
CLOSED = [INTER_OVERHEAD + SAME_RAIL + 256e6 / INTER_RATE,
          INTER_OVERHEAD + VIA_SPINE + 128e6 / INTER_RATE,
          INTRA_OVERHEAD + NVSWITCH + 1024e6 / INTRA_RATE,
          INTRA_OVERHEAD + NVSWITCH + 1024e6 / INTRA_RATE,
          INTER_OVERHEAD + VIA_SPINE + 1e6 / INTER_RATE, 0.0]
ENDS = [("n0/gpu0", "n1/gpu0", 256e6), ("n0/gpu0", "n1/gpu1", 128e6),
        ("n0/gpu2", "n0/gpu3", 1024e6), ("n0/gpu4", "n0/gpu3", 1024e6),
        ("n1/gpu5", "n0/gpu0", 1e6), ("n0/gpu6", "n0/gpu6", 64e6)]
NOW = END[0]

#: The nodes each flow crosses (flow 5 stays on its GPU).
PATHS = [
    ["n0/gpu0", "n0/pcie0", "n0/nic0", "su0/leaf0", "n1/nic0", "n1/pcie0", "n1/gpu0"],
    ["n0/gpu0", "n0/pcie0", "n0/nic0", "su0/leaf0", "spine", "su0/leaf1", "n1/nic1",
     "n1/pcie1", "n1/gpu1"],
    ["n0/gpu2", "n0/nvswitch", "n0/gpu3"],
    ["n0/gpu4", "n0/nvswitch", "n0/gpu3"],
    ["n1/gpu5", "n1/pcie5", "n1/nic5", "su0/leaf5", "spine", "su0/leaf0", "n0/nic0",
     "n0/pcie0", "n0/gpu0"],
]


def kind_of(a: str, b: str) -> tuple[str, float]:
    if "nvswitch" in a + b:
        return "nvlink", NVLINK
    if "pcie" in a + b:
        return "pcie", PCIE
    if "spine" in a + b:  # a leaf's uplinks as one bundle: its 2 NICs' NDR (non-blocking)
        return "ib", 2 * IB
    return "ib", IB


def expected_links() -> list[dict]:
    """The links that carried bytes, by utilization (then src, dst): bytes / (rate × run)."""
    carried: dict[tuple[str, str], float] = {}
    for path, (_, _, nbytes) in zip(PATHS, ENDS, strict=False):
        for a, b in zip(path, path[1:], strict=False):
            carried[a, b] = carried.get((a, b), 0.0) + nbytes
    rows = [{"src": a, "dst": b, "kind": kind_of(a, b)[0], "bandwidth": kind_of(a, b)[1],
             "bytes": n, "utilization": n / (kind_of(a, b)[1] * NOW)}
            for (a, b), n in carried.items()]
    return sorted(rows, key=lambda r: (-round(r["utilization"], 12), r["src"], r["dst"]))


def demo(capsys, *args) -> str:
    code, out, err = run_main(["demo", *args], capsys)
    assert code == 0, err
    return out


def test_demo_flows_match_the_closed_forms_and_max_min_sharing(capsys):
    text = demo(capsys, "--json")
    assert text.startswith('{\n  "stack": "ibgda",\n  "topology": "dgx_h100:nodes=2",\n')
    out = json.loads(text)
    assert out["now"] == pytest.approx(NOW, rel=REL)
    assert [f["flow"] for f in out["flows"]] == list(range(6))
    for i, f in enumerate(out["flows"]):
        src, dst, nbytes = ENDS[i]
        assert (f["src"], f["dst"], f["nbytes"]) == (src, dst, nbytes)
        assert f["issued_at"] == pytest.approx(ISSUED[i], rel=REL, abs=0), i
        assert f["started_at"] == pytest.approx(START[i], rel=REL), i
        assert f["finished_at"] == pytest.approx(END[i], rel=REL), i
        assert f["duration_time"] == pytest.approx(END[i] - ISSUED[i], rel=REL, abs=1e-15), i
        assert f["closed_form_time"] == pytest.approx(CLOSED[i], rel=REL, abs=0), i
        slowdown = (END[i] - ISSUED[i]) / CLOSED[i] if CLOSED[i] else 1.0
        assert f["slowdown"] == pytest.approx(slowdown, rel=REL), i
    # the two NVLink senders into one port: half the port each, slower than the closed form
    assert out["flows"][2]["slowdown"] == pytest.approx(
        (INTRA_OVERHEAD + NVSWITCH + 1024e6 / 225e9) / CLOSED[2], rel=REL)
    assert out["flows"][2]["slowdown"] > 1.6


def test_demo_links_are_those_that_carried_bytes_busiest_first(capsys):
    out = json.loads(demo(capsys, "--json"))
    links = out["links"]
    want = expected_links()
    assert [(r["src"], r["dst"]) for r in links] == [(r["src"], r["dst"]) for r in want]
    for got, exp in zip(links, want, strict=True):
        assert (got["kind"], got["bandwidth"]) == (exp["kind"], exp["bandwidth"])
        assert got["bytes"] == pytest.approx(exp["bytes"], rel=REL)
        assert got["utilization"] == pytest.approx(exp["utilization"], rel=REL)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cells(line: str) -> list[str]:
    sep = "┃" if "┃" in line else "│"
    return line.split(sep)[1:-1]


def rows(text: str, width: int) -> list[list[str]]:
    """The table lines ``width`` cells wide (header and data), as lists of cells."""
    return [cells(ln) for ln in text.splitlines()
            if ln[:1] in "│┃" and len(cells(ln)) == width]


def right(cell: str, value: str) -> bool:
    return cell == " " + value.rjust(len(cell) - 2) + " "


def left(cell: str, value: str) -> bool:
    return cell == " " + value.ljust(len(cell) - 2) + " "


SIZES = ["256 MB", "128 MB", "1.024 GB", "1.024 GB", "1 MB", "64 MB"]


def test_demo_tables_piped_at_full_width(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # piped: 120 columns whatever the variable says
    text = demo(capsys)
    lines = text.splitlines()
    assert lines[0].strip() == "Transfers on dgx_h100:nodes=2 (stack ibgda); times in ms"
    flows = rows(text, 9)
    header = ["#", "src → dst", "size", "issued", "started", "finished", "took", "closed form",
              "slowdown"]
    assert left(flows[0][1], header[1])
    assert all(right(c, h) for c, h in zip(flows[0], header, strict=True) if h != header[1])
    assert len(flows) == 7
    for i, row in enumerate(flows[1:]):
        src, dst, _ = ENDS[i]
        slowdown = (END[i] - ISSUED[i]) / CLOSED[i] if CLOSED[i] else 1.0
        want = [str(i), f"{src} → {dst}", SIZES[i],
                *(f"{1e3 * t:.4f}" for t in (ISSUED[i], START[i], END[i], END[i] - ISSUED[i],
                                             CLOSED[i])),
                f"{slowdown:.2f}×"]
        assert left(row[1], want[1]), row
        assert all(right(c, w) for c, w in zip(row, want, strict=True) if w != want[1]), row
    assert f"Links that carried bytes, over [0, {fmt_time(NOW)}]" in text
    links = rows(text, 6)
    header = ["link", "kind", "bandwidth", "bytes", "busy", "utilization"]
    assert all((left if h in ("link", "kind") else right)(c, h)
               for c, h in zip(links[0], header, strict=True))
    want = expected_links()
    assert len(links) == 1 + len(want)
    for row, exp in zip(links[1:], want, strict=True):
        assert left(row[0], f"{exp['src']} → {exp['dst']}") and left(row[1], exp["kind"])
        assert right(row[2], f"{exp['bandwidth'] / 1e9:g} GB/s")
        assert right(row[-1], f"{100 * exp['utilization']:.1f} %"), row
    busiest = links[1]
    assert [c.strip() for c in busiest] == ["n0/nic0 → su0/leaf0", "ib", "50 GB/s", "384 MB",
                                            fmt_time(NOW - START[0]), "96.8 %"]


def test_demo_rows_stay_one_line_each_in_a_narrow_terminal(capsys, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "70")
    text = ANSI.sub("", demo(capsys))
    assert max(len(line) for line in text.splitlines()) <= 70
    assert len(rows(text, 9)) == 1 + 6  # a transfer per line: cut short, never wrapped
    assert len(rows(text, 6)) == 1 + len(expected_links())


def test_both_helps_say_what_the_table_compares_with(capsys):
    # kvfabric --help once said "against their lone times", demo --help "against the closed
    # form": the table's column is the closed form, and both now say so
    _, top, _ = run_main(["--help"], capsys)
    _, own, _ = run_main(["demo", "--help"], capsys)
    _, table, _ = run_main(["demo"], capsys)
    assert "closed form" in table.splitlines()[2]  # the transfers table's header
    top, own = " ".join(top.split()), " ".join(own.split())  # as wrapped to any width
    assert "demo Fabric demo: six transfers sharing links, against the closed form." in top
    assert ("Fabric demo: six transfers sharing links on a 2-node DGX H100, against the closed "
            "form." in own)
