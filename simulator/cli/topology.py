"""``kvfabric topology``: list the presets, summarize and draw a topology, show one path.

The command only formats what :mod:`topologies` computes (:func:`topologies.summarize`,
:func:`topologies.path_report`, :func:`topologies.draw.draw`); user errors are raised as
:class:`~simulator.errors.UserError` and printed by :func:`simulator.cli.main` as one line.
"""

from __future__ import annotations

import inspect
import json

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simulator.units import fmt_rate, fmt_time


@click.group("topology")
def topology() -> None:
    """Inspect and draw cluster topologies (presets or TOML files)."""


def _rate(value: float | None) -> str:
    return "n/a" if value is None else fmt_rate(value)


def _print_summary(console: Console, s: dict) -> None:
    console.print(
        f"[bold]{escape(s['name'])}[/bold]: {s['nodes']} nodes, {s['edges']} directed edges, "
        f"{s['gpu_count']} GPUs"
    )
    gpus = Table(title="GPUs by kind")
    gpus.add_column("GPU")
    gpus.add_column("count", justify="right")
    for model, n in s["gpus"].items():
        gpus.add_row(escape(model), str(n))
    console.print(gpus)
    nodes = Table(title="Nodes by kind")
    nodes.add_column("kind")
    nodes.add_column("count", justify="right")
    for kind, n in s["node_kinds"].items():
        nodes.add_row(escape(kind), str(n))
    console.print(nodes)
    if "aggregates" in s:
        agg = s["aggregates"]
        console.print(
            f"{agg['switches']} physical switches modelled as {agg['nodes']} aggregate "
            f"node{'s' * (agg['nodes'] != 1)} (each lower switch's uplinks into them one "
            "bundle: ideal load balance, no ECMP hash collisions)")
    one_way = any(row["one_way"] for row in s["links"])
    links = Table(title="Links by kind and bandwidth (a full-duplex link counted once)")
    for col in ("kind", "catalog link", "bandwidth", *(("direction",) if one_way else ()),
                "count"):
        links.add_column(col, justify="right" if col == "count" else "left")
    for row in s["links"]:
        way = ("one way" if row["one_way"] else "each way",) if one_way else ()
        links.add_row(escape(row["kind"]), escape(row["link"] or "-"), fmt_rate(row["bandwidth"]),
                      *way, str(row["count"]))
    console.print(links)
    a, b = s["bisection_halves"]
    console.print(
        f"bisection bandwidth: [bold]{_rate(s['bisection_bandwidth'])}[/bold] "
        f"(max flow from the first {a} GPUs to the last {b}, natural order)"
    )


def _print_path(console: Console, p: dict) -> None:
    table = Table(title=escape(f"Path {p['src']} -> {p['dst']}"))
    for col in ("#", "from", "to", "kind", "link", "bandwidth", "latency"):
        table.add_column(col)
    for i, h in enumerate(p["hops"], 1):
        names = (h["src"], h["dst"], h["kind"], h["link"] or "-")
        table.add_row(str(i), *map(escape, names), fmt_rate(h["bandwidth"]),
                      fmt_time(h["latency"]))
    console.print(table)
    neck = p["bottleneck"]
    where = f" ({neck['src']} -> {neck['dst']}, {neck['kind']})" if neck else ""
    console.print(escape(
        f"{len(p['hops'])} hops, summed latency {fmt_time(p['latency_time'])}, "
        f"bottleneck {_rate(p['bottleneck_bandwidth'])}{where}, "
        f"{'crosses a NIC' if p['inter_node'] else 'stays inside a machine'}"))


@topology.command("show")
@click.argument("spec", metavar="NAME_OR_FILE")
@click.option("--path", "path", nargs=2, default=None, metavar="A B",
              help="Also show the path from node A to node B (e.g. n0/gpu0 n1/gpu0).")
@click.option("-o", "--output", default=None, metavar="FILE.png",
              help="Draw the graph to this file (.png, .svg or .pdf), written atomically.")
@click.option("--deployment", "scenario_file", default=None, metavar="SCENARIO",
              help="Also lay out SCENARIO's [deployment] (a .toml file or a shipped name) on "
                   "this topology: pools, instances, ranks, experts.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def show(spec: str, path: tuple[str, str] | None, output: str | None, scenario_file: str | None,
         as_json: bool) -> None:
    """Summarize the topology NAME_OR_FILE: a preset with optional parameters
    (dgx_h100:nodes=4,oversubscription=2) or a topology TOML file.

    Prints GPUs by kind, links by kind and bandwidth, and the bisection bandwidth. The exact
    bisection (minimum over all balanced halves) is NP-hard in general; reported instead is the
    max flow (= min cut, networkx) from the first half of the GPUs in natural order (n0/gpu0,
    n0/gpu1, ...) to the second half. JSON rates are in B/s and times in s.
    """
    import topologies

    if output:
        from simulator.cli.output import output_file

        output_file(output, "-o", (".png", ".svg", ".pdf"))
    g = topologies.parse_spec(spec)
    layout = _deployment(scenario_file, g) if scenario_file else None
    summary = topologies.summarize(g, path=tuple(path) if path else None)
    if layout is not None:
        summary["deployment"] = layout
    if output:
        from topologies.draw import draw

        nodes = summary["path"]["nodes"] if path else None
        summary["figure"] = str(draw(g, output, path=nodes))
    if as_json:
        click.echo(json.dumps(summary))
        return
    console = Console()
    _print_summary(console, summary)
    if path:
        _print_path(console, summary["path"])
    if layout is not None:
        console.print(f"[bold]deployment[/bold] of {escape(str(layout['scenario']))}:")
        for line in layout["lines"]:
            console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
    if output:
        console.print(f"wrote {summary['figure']}", markup=False)


def _deployment(scenario_file: str, graph) -> dict:
    """SCENARIO's ``[deployment]`` laid out on ``graph``: ``lines``, ``pools``, ``idle``; a
    :class:`~simulator.errors.UserError` naming the field if it does not fit."""
    import topologies
    from simulator.deployment import build_layout, check_against
    from simulator.deployment.checks import room_block_bytes
    from simulator.errors import UserError
    from simulator.models import model
    from simulator.scenario import Scenario, find

    path = find(scenario_file)
    sc = Scenario.load(path)
    if sc.deployment is None:
        raise UserError(f"{path}: field 'deployment': missing; --deployment needs a scenario "
                        "with a [deployment] section")
    names = list(topologies.gpus(graph))
    kinds = [graph.nodes[n].get("gpu", "H100") for n in names]
    arch = model(sc.model.name)
    check_against(sc.deployment, arch, kinds, str(path), sc.placement.reserve_fraction,
                  block_bytes=room_block_bytes(sc.placement, arch))
    lay = build_layout(sc.deployment, names, kinds)
    return {"scenario": sc.name, "lines": lay.describe(arch), **lay.as_dict()}


@topology.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def list_presets(as_json: bool) -> None:
    """List the topology presets and their parameters (with defaults)."""
    import topologies

    rows = {}
    for name, builder in topologies.PRESETS.items():
        doc = inspect.getdoc(builder) or ""
        rows[name] = {"description": doc.splitlines()[0] if doc else "",
                      "params": topologies.preset_params(name)}
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table(title="Topology presets (use as NAME or NAME:key=value,...)")
    for col in ("preset", "parameters (defaults)", "description"):
        table.add_column(col)
    for name, row in rows.items():
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        table.add_row(name, params, row["description"])
    Console().print(table)
