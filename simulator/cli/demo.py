"""``kvfabric demo``: a short, visible story of the fluid Fabric on a 2-node DGX H100.

A few transfers arrive at staggered times; some share links (two GPUs sending to one GPU over
NVLink, two cross-node flows on one NIC). The table shows when each started and finished next to
its uncontended closed-form time (``Fabric.message_time``): where they differ, contention is the
reason. A second table shows the links that carried bytes, with their time-weighted utilization.
"""

from __future__ import annotations

import json

import click
import simpy

from simulator import hardware
from simulator.units import MB, fmt_bytes, fmt_time, ms, to_GBps, to_ms

#: (issued_at [s], src, dst, nbytes [B]) of the story.
STORY: tuple[tuple[float, str, str, float], ...] = (
    (0.0, "n0/gpu0", "n1/gpu0", MB(256)),  # cross-node, alone at first
    (ms(1), "n0/gpu0", "n1/gpu1", MB(128)),  # joins it on n0/gpu0's PCIe switch and NIC
    (ms(2), "n0/gpu2", "n0/gpu3", MB(1024)),  # NVLink
    (ms(2), "n0/gpu4", "n0/gpu3", MB(1024)),  # shares NVSwitch -> gpu3 with the one above
    (ms(3), "n1/gpu5", "n0/gpu0", MB(1)),  # a small message crossing the other way
    (ms(4), "n0/gpu6", "n0/gpu6", MB(64)),  # same GPU: free
)


def run_story(stack: str = "ibgda") -> dict:
    """Run :data:`STORY` on ``topologies.build("dgx_h100", nodes=2)``; flows and links as dicts."""
    import topologies
    from simulator.network import Fabric

    g = topologies.build("dgx_h100", nodes=2)
    env = simpy.Environment()
    fabric = Fabric(env, g, stack=stack)
    recs = []

    def issue():
        for at, src, dst, nbytes in STORY:
            yield env.timeout(at - env.now)
            fabric.transfer(src, dst, nbytes).callbacks.append(lambda ev: recs.append(ev.value))

    env.process(issue())
    env.run()
    recs.sort(key=lambda r: r.flow_id)
    rows = []
    for rec in recs:
        closed = fabric.message_time(rec.src, rec.dst, rec.nbytes)
        rows.append({
            "flow": rec.flow_id, "src": rec.src, "dst": rec.dst, "nbytes": rec.nbytes,
            "issued_at": rec.issued_at, "started_at": rec.started_at,
            "finished_at": rec.finished_at, "duration_time": rec.duration_time,
            "closed_form_time": closed,
            "slowdown": rec.duration_time / closed if closed > 0 else 1.0,
        })
    links = fabric.links_frame()
    links = links[links.bytes > 0].sort_values(["utilization", "src", "dst"],
                                               ascending=[False, True, True])
    return {"stack": stack, "topology": "dgx_h100:nodes=2", "now": fabric.env.now,
            "flows": rows, "links": links.to_dict(orient="records")}


@click.command()
@click.option("--stack", type=click.Choice(sorted(hardware.STACKS)), default="ibgda",
              show_default=True, help="Endpoint network stack preset.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def demo(stack: str, as_json: bool) -> None:
    """Fabric demo: six transfers sharing links on a 2-node DGX H100, against the closed form."""
    out = run_story(stack)
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    flows = Table(title=f"Transfers on {out['topology']} (stack {stack}); times in ms")
    for col in ("#", "src → dst", "size", "issued", "started", "finished", "took",
                "closed form", "slowdown"):
        flows.add_column(col, justify="left" if col == "src → dst" else "right", no_wrap=True)
    for r in out["flows"]:
        t = [f"{to_ms(r[k]):.4f}" for k in ("issued_at", "started_at", "finished_at",
                                             "duration_time", "closed_form_time")]
        flows.add_row(str(r["flow"]), f"{r['src']} → {r['dst']}", fmt_bytes(r["nbytes"]), *t,
                      f"{r['slowdown']:.2f}×")
    links = Table(title=f"Links that carried bytes, over [0, {fmt_time(out['now'])}]")
    for col in ("link", "kind", "bandwidth", "bytes", "busy", "utilization"):
        links.add_column(col, justify="left" if col in ("link", "kind") else "right",
                         no_wrap=True)
    for r in out["links"]:
        links.add_row(f"{r['src']} → {r['dst']}", r["kind"], f"{to_GBps(r['bandwidth']):g} GB/s",
                      fmt_bytes(r["bytes"]), fmt_time(r["busy_time"]),
                      f"{100 * r['utilization']:.1f} %")
    console = Console()
    if not console.is_terminal:
        console.width = 120  # piped: do not squeeze the tables to 80 columns
    console.print(flows)
    console.print(links)
