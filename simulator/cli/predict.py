"""``kvfabric predict``: the closed-form route / fetch / local cost of one round, as a table.

Only formats what :class:`simulator.costmodel.CostModel` computes: the phases of each option for
one layer's round (µs), the same across all layers (what a decode step pays), the decision and
its margin, and the crossovers. ``--sweep blocks=LO:HI`` evaluates the totals over powers of two
in that range, prints the crossover and with ``--plot FILE.png`` draws the curves.
"""

from __future__ import annotations

import json
import math

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simulator.costmodel import OPTIONS, CostModel
from simulator.errors import UserError
from simulator.hardware import stack as lookup_stack
from simulator.models import model as lookup_model
from simulator.units import LARGEST_SIZE, fmt_rate, fmt_time, to_us

PHASE_ROWS = (("probe", "probe"), ("transfer", "transfer"), ("compute", "compute"),
              ("ret", "return"), ("merge", "merge"))


def parse_sweep(text: str) -> tuple[float, float]:
    """``"blocks=LO:HI"`` → (LO, HI); a :class:`UserError` naming ``--sweep`` otherwise."""
    var, eq, rng = text.partition("=")
    lo_s, colon, hi_s = rng.partition(":")
    try:
        lo, hi = float(lo_s), float(hi_s)
    except ValueError:
        lo = hi = math.nan
    if var.strip() != "blocks" or not eq or not colon or not (0 < lo < hi <= LARGEST_SIZE):
        raise UserError(f"--sweep {text!r}: write blocks=LO:HI with 0 < LO < HI <= "
                        f"{LARGEST_SIZE:g}, e.g. --sweep blocks=1:4096")
    return lo, hi


def sweep_points(lo: float, hi: float) -> list[float]:
    """LO, the powers of two strictly between, and HI."""
    pts = [lo]
    p = 2.0 ** math.floor(math.log2(lo) + 1)
    while p < hi:
        pts.append(p)
        p *= 2
    pts.append(hi)
    return pts


def _load_topology(spec: str):
    import topologies  # noqa: PLC0415 - imported when the command runs (lazy CLI)

    return topologies.parse_spec(spec)


def _check_name(option: str, name: str, lookup) -> None:
    try:
        lookup(name)
    except UserError as exc:
        raise UserError(f"{option} {name!r}: {exc}") from None


def _check_numbers(**values) -> None:
    for name, v in values.items():
        if v is not None and not (math.isfinite(v) and 0 < v <= LARGEST_SIZE):
            raise UserError(f"--{name.replace('_', '-')} {v:g}: give a number > 0 and <= "
                            f"{LARGEST_SIZE:g}")


def _check_gpu(g, node: str, option: str) -> None:
    if node not in g or g.nodes[node].get("kind", "gpu") != "gpu":
        names = sorted(n for n, d in g.nodes(data=True) if d.get("kind") == "gpu")
        shown = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
        raise UserError(f"{option} {node!r}: not a GPU of the topology; give one of {shown}")


@click.command("predict")
@click.option("--model", "model_name", default="deepseek-v3.2", show_default=True,
              help="Architecture (deepseek-v3.2, deepseek-v3, glm-5, kimi-k2, llama-3-70b, …).")
@click.option("--topology", "topology_spec", default="dgx_h100:nodes=2", show_default=True,
              help="Preset with optional parameters (dgx_h100:nodes=4) or a topology TOML file.")
@click.option("--src", default="n0/gpu0", show_default=True, help="Home GPU (holds the query).")
@click.option("--dst", default="n1/gpu0", show_default=True, help="Owner GPU (holds the blocks).")
@click.option("--blocks", type=float, default=None, help="Selected blocks per query on the owner.")
@click.option("--block-tokens", type=int, default=64, show_default=True, help="Tokens per block.")
@click.option("--batch", type=int, default=1, show_default=True,
              help="Queries sent together to the owner.")
@click.option("--heads", type=int, default=None, help="Route only this many query heads.")
@click.option("--reuse", type=float, default=1.0, show_default=True,
              help="Uses of each fetched block (amortizes a fetch).")
@click.option("--stack", default="ibgda", show_default=True,
              help="Network stack: ideal, nccl or ibgda.")
@click.option("--kv-dtype", type=click.Choice(["bf16", "fp8"]), default=None,
              help="KV cache layout (default: the model's).")
@click.option("--layout", type=click.Choice(["scattered", "contiguous"]), default=None,
              help="Fetched blocks are gathered or spliced (default: by model sparsity).")
@click.option("--sweep", default=None, metavar="blocks=LO:HI",
              help="Evaluate over a range of block counts and print the crossover.")
@click.option("--plot", "plot_file", default=None, metavar="FILE.png",
              help="With --sweep: save the curves to this image.")
@click.option("--profile", default="measured", show_default=True,
              help="Kernel times: 'measured' (each GPU its shipped profile), 'roofline', or a "
                   "profile name or TOML file (kvfabric kernel list).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def predict(model_name, topology_spec, src, dst, blocks, block_tokens, batch, heads, reuse,
            stack, kv_dtype, layout, sweep, plot_file, profile, as_json) -> None:
    """Closed-form route / fetch / local cost of one round (B queries against one owner)."""
    if blocks is None and sweep is None:
        raise UserError("predict: give --blocks K (selected blocks per query) or "
                        "--sweep blocks=LO:HI")
    if plot_file is not None and sweep is None:
        raise UserError("--plot: only with --sweep blocks=LO:HI")
    rng = parse_sweep(sweep) if sweep is not None else None
    _check_numbers(blocks=blocks, batch=batch, block_tokens=block_tokens, reuse=reuse,
                   heads=heads)
    if plot_file is not None:
        from simulator.cli.output import output_file

        output_file(plot_file, "--plot", (".png", ".pdf", ".svg"))
    _check_name("--model", model_name, lookup_model)
    query_heads = lookup_model(model_name).query_heads
    if heads is not None and heads > query_heads:
        raise UserError(f"--heads {heads}: {model_name} has {query_heads} query heads; give 1 "
                        "to that many")
    _check_name("--stack", stack, lookup_stack)
    g = _load_topology(topology_spec)
    _check_gpu(g, src, "--src")
    _check_gpu(g, dst, "--dst")
    if src == dst:
        raise UserError(f"--dst {dst!r}: the home's own GPU (--src); a round reads blocks on "
                        "another GPU, so route and fetch need an owner elsewhere: give another "
                        "GPU as --dst")
    from simulator.gpu.calibration import run_kernels

    try:
        kernels = run_kernels({"profile": profile})
    except UserError as exc:
        raise UserError(f"--profile {profile!r}: {exc}") from None
    cm = CostModel(model_name, g, stack, block_tokens=block_tokens, layout=layout,
                   kv_dtype=kv_dtype, kernels=kernels)
    kw = dict(batch=batch, heads=heads, reuse=reuse)
    out: dict = {"model": cm.model.name, "topology": topology_spec, "src": src, "dst": dst,
                 "stack": cm.stack.name, "profile": profile, "block_tokens": block_tokens,
                 "batch": batch,
                 "reuse": reuse, "layout": cm.layout, "layers": cm.model.layers}
    k_star = cm.crossover(src, dst, "blocks", **kw)
    out["crossover"] = {"blocks": k_star}
    if k_star is not None and k_star < 1:
        # a query selects whole blocks: a crossing below one block is no crossover at all
        one = cm.compare(src, dst, 1.0, **kw)
        out["crossover"] = {"blocks": None, "blocks_below_one": k_star,
                            "cheaper_from_one_block": ("route" if one.option("route").total
                                                       <= one.option("fetch").total
                                                       else "fetch")}
        k_star = None
    if blocks is not None:
        comp = cm.compare(src, dst, blocks, **kw)
        out["blocks"] = blocks
        out["decision"] = comp.decision
        out["margin"] = comp.margin_time
        for name in OPTIONS:
            out[name] = comp.option(name).as_dict()
        out["per_token"] = {n: cm.per_token(comp.option(n)).total for n in OPTIONS}
        out["crossover"]["bandwidth"] = cm.crossover(src, dst, "bandwidth", blocks=blocks, **kw)
        out["crossover"]["probe"] = cm.crossover(src, dst, "probe", blocks=blocks, **kw)
    if rng is not None:
        out["sweep"] = []
        for k in sweep_points(*rng):
            c = cm.compare(src, dst, k, **kw)
            row = {"blocks": k, "decision": c.decision}
            row.update({n: c.option(n).total for n in OPTIONS})
            out["sweep"].append(row)
        if plot_file is not None:
            _plot(cm, src, dst, rng, kw, k_star, plot_file)
            out["plot"] = plot_file
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    _print(Console(), cm, out)


def _print(console: Console, cm: CostModel, out: dict) -> None:
    console.print(f"[bold]{escape(out['model'])}[/bold] " + escape(
        f"on {out['topology']} ({out['stack']} stack): "
        f"{out['src']} (home) ↔ {out['dst']} (owner), batch {out['batch']}, "
        f"{out['block_tokens']}-token blocks, reuse {out['reuse']:g}, {out['layout']} fetch"))
    p = cm.path(out["src"], out["dst"])  # src != dst: predict refused the home's own GPU
    console.print(f"path: {p.hops} hops, latency {fmt_time(p.latency_time)}, bottleneck "
                  f"{fmt_rate(p.bottleneck_bandwidth)}, "
                  f"{'inter-node' if p.inter_node else 'intra-node'}")
    if "decision" in out:
        table = Table(title=f"One layer's round, {out['blocks']:g} blocks per query [µs]")
        table.add_column("phase")
        for name in OPTIONS:
            table.add_column(name, justify="right")
        for _attr, label in PHASE_ROWS:
            table.add_row(label, *(f"{to_us(out[n][label]):.3f}" for n in OPTIONS))
        table.add_row("[bold]total[/bold]",
                      *(f"[bold]{to_us(out[n]['total']):.3f}[/bold]" for n in OPTIONS))
        table.add_row(f"all {out['layers']} layers",
                      *(f"{to_us(out['per_token'][n]):.1f}" for n in OPTIONS))
        console.print(table)
        best = out["decision"]
        console.print(f"decision: [bold green]{best}[/bold green], cheaper than the runner-up by "
                      f"{fmt_time(out['margin'])} per layer "
                      f"({fmt_time(out['margin'] * out['layers'])} per decode step)")
        w, pr = out["crossover"]["bandwidth"], out["crossover"]["probe"]
        console.print("route = fetch at bandwidth: "
                      + (fmt_rate(w) if w is not None else "none (the same side wins at any rate)"))
        console.print("route = fetch at per-message latency: "
                      + (fmt_time(pr) if pr is not None else
                         "none (both pay two messages; give --reuse > 1)"))
    k = out["crossover"]["blocks"]
    below = out["crossover"].get("blocks_below_one")
    if below is not None:
        console.print(f"route = fetch at blocks per query: none from one block up — "
                      f"{out['crossover']['cheaper_from_one_block']} is cheaper at every whole "
                      f"number of blocks (the formulas cross at {below:.2g} of a block)")
    else:
        console.print("route = fetch at blocks per query: "
                      + (f"[bold]{k:.4g}[/bold]" if k is not None
                         else "none (the same side wins)"))
    if "sweep" in out:
        table = Table(title="Sweep: total of one layer's round [µs]")
        for col in ("blocks", *OPTIONS, "decision"):
            table.add_column(col, justify="left" if col == "decision" else "right")
        for row in out["sweep"]:
            table.add_row(f"{row['blocks']:g}", *(f"{to_us(row[n]):.3f}" for n in OPTIONS),
                          row["decision"])
        console.print(table)
        if "plot" in out:
            console.print(f"plot written to {out['plot']}", markup=False)


def _plot(cm: CostModel, src: str, dst: str, rng: tuple[float, float], kw: dict,
          k_star: float | None, target: str) -> None:
    import matplotlib  # noqa: PLC0415 - plotting only when asked

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from simulator.fileio import atomic_path  # noqa: PLC0415

    xs = np.geomspace(rng[0], rng[1], 200)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in OPTIONS:
        ax.plot(xs, [to_us(cm.option(name, src, dst, x, **kw).total) for x in xs], label=name)
    if k_star is not None and rng[0] <= k_star <= rng[1]:
        ax.axvline(k_star, color="grey", linestyle="--", label=f"crossover {k_star:.3g} blocks")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"selected blocks per query ({cm.block_tokens} tokens each)")
    ax.set_ylabel("one layer's round [µs]")
    ax.set_title(f"{cm.model.name}: {src} → {dst}, {cm.stack.name}, batch {kw['batch']}")
    ax.legend()
    fig.tight_layout()
    fmt = target.rsplit(".", 1)[-1].lower() if "." in target else "png"
    try:
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt)
    except ValueError as exc:
        raise UserError(f"--plot {target!r}: {exc}; use a .png, .pdf or .svg name") from None
    finally:
        plt.close(fig)
