"""``kvfabric kernel``: one operator's modelled time and its source; ``kernel list``: the profiles.

``kvfabric kernel OP --gpu G [shape options] [--profile P] [--json]`` evaluates one operator of a
kernel profile (:class:`~simulator.gpu.profile.KernelProfile`) and prints its time and where the
number comes from (a measured row, interpolated, fitted, extrapolated). Shapes are plain counts at
this edge (tokens, heads, elements, bytes); the time is printed readably and, with ``--json``, in
seconds under ``time`` with ``source``. Every option is read here, so a bad value ends with one
line naming the option (exit 2). :func:`calibrate_folders` is what ``kvfabric calibrate DIR``
runs.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simulator import hardware
from simulator.errors import UserError
from simulator.gpu import operators as ops
from simulator.gpu.profile import KernelProfile, Timing
from simulator.gpu.profiles import (
    build_profile,
    default_profile,
    load_profile,
    profile_names,
    write_profile,
)
from simulator.units import LARGEST_SIZE, fmt_time

OPS = ("gemm", "attention", "prefill", "copy", "gather", "merge", "indexer", "allreduce",
       "allgather", "alltoall", "sendrecv", "launch", "list")


@click.command("kernel")
@click.argument("op", metavar="OP")
@click.option("--gpu", "gpu_name", default=None, help="GPU kind (H100, H200, H20, A100, B200).")
@click.option("--profile", "profile_name", default=None,
              help="Profile name or TOML path (default: the GPU's shipped profile).")
@click.option("--m", default=None, help="gemm: rows (tokens).")
@click.option("--n", default=None, help="gemm: output columns.")
@click.option("--k", default=None, help="gemm: reduction length.")
@click.option("--dtype", default="bf16", show_default=True, help="gemm: bf16, fp16 or fp8.")
@click.option("--groups", default=None, help="gemm: weight matrices in one grouped GEMM "
              "(experts, MLA's per-head products; --m counts the rows of all of them; "
              "default 1).")
@click.option("--batch", default=None, help="attention, merge, indexer: queries.")
@click.option("--context", default=None, help="attention, indexer: cached tokens per query; "
              "prefill: new tokens.")
@click.option("--cached", default=None, help="prefill: tokens already cached (default 0).")
@click.option("--q-heads", "q_heads", default=None, help="attention, prefill, merge: query heads.")
@click.option("--kv-heads", "kv_heads", default=None, help="attention, prefill: KV heads.")
@click.option("--head-dim", "head_dim", default=None, help="attention, prefill: head width; "
              "merge: output row width.")
@click.option("--paged", is_flag=True, help="attention: KV in pages gathered through a table.")
@click.option("--page-tokens", "page_tokens", default="16", show_default=True,
              help="attention --paged: tokens per page.")
@click.option("--mla", is_flag=True, help="attention: absorbed MLA (FlashMLA figures).")
@click.option("--topk", default=None, help="attention: sparse top-k tokens per query.")
@click.option("--bytes", "nbytes", default=None, help="copy, collectives: bytes.")
@click.option("--blocks", default=None, help="gather: blocks.")
@click.option("--block-bytes", "block_bytes", default=None, help="gather: bytes per block.")
@click.option("--partials", default="2", show_default=True, help="merge: partial results.")
@click.option("--ranks", default=None, help="collectives: GPUs.")
@click.option("--fabric", default="nvlink", show_default=True, help="collectives: nvlink, rdma.")
@click.option("--kernels", default="1", show_default=True, help="launch: kernels.")
@click.option("--cuda-graphs/--eager", "cuda_graphs", default=None,
              help="launch: override the profile's CUDA-graph flag.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def kernel(op, gpu_name, profile_name, dtype, paged, mla, fabric, cuda_graphs, as_json,
           **raw) -> None:
    """Modelled time of one operator (OP: gemm, attention, prefill, copy, gather, merge,
    indexer, allreduce, allgather, alltoall, sendrecv, launch), or `kernel list`."""
    if op not in OPS:
        raise UserError(f"kernel {op!r}: give one of {', '.join(OPS)}")
    if op == "list":
        _refuse_unused(op, set(), mla=False)
        return _list(as_json)
    if not gpu_name:
        raise UserError(f"kernel {op}: give --gpu (one of {', '.join(hardware.GPUS)})")
    try:
        spec = hardware.gpu(gpu_name)
    except UserError as exc:
        raise UserError(f"--gpu: {exc}") from None
    prof = (load_profile(profile_name).at(spec) if profile_name else default_profile(spec))
    if cuda_graphs is not None:
        prof = prof.with_cuda_graphs(cuda_graphs)
    v = _Values(op, raw)
    timing, shape = _evaluate(op, prof, v, dtype=dtype, paged=paged, mla=mla, fabric=fabric)
    _refuse_unused(op, v.read, mla=mla)
    t, src = float(timing.time.ravel()[0]), str(timing.source.ravel()[0])
    if as_json:
        click.echo(json.dumps({"op": op, "gpu": spec.name, "profile": prof.name, "shape": shape,
                               "time": t, "source": src, "kind": src.split(":")[0]}, indent=2))
        return
    shown = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in shape.items())
    click.echo(f"{op} {shown} on {spec.name} (profile {prof.name}): {fmt_time(t)}")
    click.echo(f"  source: {src}")


# the sizes are the options kernel() takes in **raw (text, read by _Values): shown as counts
for _option in kernel.params:
    if _option.name not in inspect.signature(kernel.callback).parameters:
        _option.metavar = "N"


#: The options that are not sizes → the operators they apply to (every other op ignores them).
_APPLIES = {"dtype": ("gemm",), "paged": ("attention",), "mla": ("attention",),
            "fabric": ops.COLLECTIVES, "gpu_name": OPS[:-1], "profile_name": OPS[:-1],
            "cuda_graphs": OPS[:-1], "as_json": OPS}


def _refuse_unused(op: str, read: set[str], *, mla: bool) -> None:
    """A :class:`UserError` for the first option given on the command line that ``op`` (with
    ``--mla`` if ``mla``) does not use (a size it never ``read``, or a flag of another
    operator): it would be ignored."""
    ctx = click.get_current_context()
    what = f"{op} --mla" if mla else op
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or (
                ctx.get_parameter_source(param.name) is not click.core.ParameterSource.COMMANDLINE):
            continue
        if not (op in _APPLIES[param.name] if param.name in _APPLIES else param.name in read):
            flag = max(param.opts, key=len)
            raise UserError(f"kernel {what}: {flag} does not apply to {what} (see 'kvfabric "
                            "kernel --help' for which options each operator takes); drop it")


class _Values:
    """The numeric options, each read on first use with a message naming it; ``read`` holds
    the names read."""

    def __init__(self, op: str, raw: dict) -> None:
        self.op, self.raw = op, raw
        self.read: set[str] = set()

    def __call__(self, name: str, default: float | None = None, minimum: float = 1.0) -> float:
        self.read.add(name)
        text = self.raw.get(name)
        flag = "--bytes" if name == "nbytes" else "--" + name.replace("_", "-")
        if text is None:
            if default is None:
                raise UserError(f"kernel {self.op}: give {flag}")
            return float(default)
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{flag} {text!r}: not a number") from None
        # every size is a count (tokens, heads, bytes, GPUs, kernels)
        if not (math.isfinite(value) and value.is_integer() and minimum <= value <= LARGEST_SIZE):
            raise UserError(f"{flag} {text}: give an integer >= {minimum:g} and <= "
                            f"{LARGEST_SIZE:g}")
        return value


def _evaluate(op: str, p: KernelProfile, v: _Values, *, dtype: str, paged: bool, mla: bool,
              fabric: str) -> tuple[Timing, dict]:
    if op in ops.COLLECTIVES:
        if fabric not in ops.FABRICS:
            raise UserError(f"--fabric {fabric!r}: give one of {', '.join(ops.FABRICS)}")
        shape = {"bytes": v("nbytes"), "ranks": v("ranks", 2 if op == "sendrecv" else None),
                 "fabric": fabric}
        return p.collective(op, shape["bytes"], shape["ranks"], fabric), shape
    if op == "gemm":
        if dtype not in ("bf16", "fp16", "fp8"):
            raise UserError(f"--dtype {dtype!r}: give bf16, fp16 or fp8")
        shape = {"m": v("m"), "n": v("n"), "k": v("k"), "dtype": dtype}
        groups = v("groups", 1)
        if groups != 1:
            shape["groups"] = groups
        return p.gemm(shape["m"], shape["n"], shape["k"], dtype, groups), shape
    if op == "attention":
        topk = v("topk", math.inf)
        topk_arg = None if math.isinf(topk) else int(topk)
        if mla:
            shape = {"batch": v("batch"), "context": v("context"), "q_heads": v("q_heads", 128),
                     "mla": True}
            if topk_arg is not None:
                shape["topk"] = topk_arg
            return p.mla_attention(shape["batch"], shape["context"], shape["q_heads"],
                                   topk=topk_arg), shape
        shape = {"batch": v("batch"), "context": v("context"), "q_heads": v("q_heads"),
                 "kv_heads": v("kv_heads"), "head_dim": v("head_dim", 128)}
        if shape["q_heads"] % shape["kv_heads"]:
            raise UserError(f"--q-heads {shape['q_heads']:g} is not a multiple of --kv-heads "
                            f"{shape['kv_heads']:g}")
        if paged:
            shape["page_tokens"] = v("page_tokens")
        if topk_arg is not None:
            shape["topk"] = topk_arg
        return p.attention(shape["batch"], shape["context"], shape["q_heads"], shape["kv_heads"],
                           shape["head_dim"], paged=paged,
                           page_tokens=int(shape.get("page_tokens", 16)), topk=topk_arg), shape
    if op == "prefill":
        shape = {"new": v("context"), "cached": v("cached", 0, minimum=0.0),
                 "q_heads": v("q_heads"), "kv_heads": v("kv_heads"),
                 "head_dim": v("head_dim", 128)}
        return p.prefill_attention(shape["new"], shape["cached"], shape["q_heads"],
                                   shape["kv_heads"], shape["head_dim"]), shape
    if op == "copy":
        shape = {"bytes": v("nbytes")}
        return p.copy(shape["bytes"]), shape
    if op == "gather":
        shape = {"blocks": v("blocks"), "block_bytes": v("block_bytes")}
        return p.gather(shape["blocks"], shape["block_bytes"]), shape
    if op == "merge":
        shape = {"batch": v("batch", 1), "heads": v("q_heads", 128), "dim": v("head_dim", 512),
                 "partials": v("partials", minimum=2.0)}
        return p.merge(shape["batch"], shape["heads"], shape["dim"], shape["partials"]), shape
    if op == "indexer":
        shape = {"batch": v("batch"), "context": v("context"), "heads": v("q_heads", 64),
                 "dim": v("head_dim", 128)}
        return p.indexer(shape["batch"], shape["context"], shape["heads"], shape["dim"]), shape
    shape = {"kernels": v("kernels", minimum=0.0),
             "cuda_graphs": p.cuda_graphs}
    return p.launch(shape["kernels"]), shape


def _list(as_json: bool) -> None:
    rows = []
    for name in profile_names():
        p = load_profile(name)
        operators = {op: {"measured_on": f.measured_on, "profile": f.profile, **f.summary}
                     for op, f in p.fits.items()}
        rows.append({"name": name, "gpu": p.gpu.name, "cuda_graphs": p.cuda_graphs,
                     "description": p.description, "operators": operators})
    if as_json:
        click.echo(json.dumps({"profiles": rows}, indent=2))
        return
    table = Table(title="kernel profiles (calibration/profiles/)")
    for col in ("profile", "GPU", "graphs", "measured here", "from elsewhere"):
        table.add_column(col)
    for r in rows:
        here = [f"{op} ({o['median_error']:.0%})" for op, o in r["operators"].items()
                if o["profile"] == r["name"] and "median_error" in o]
        other = sorted({f"{o['profile']}" for o in r["operators"].values()
                        if o["profile"] != r["name"]})
        table.add_row(escape(r["name"]), r["gpu"], "yes" if r["cuda_graphs"] else "no",
                      ", ".join(here) or "—", escape(", ".join(other)) or "—")
    Console().print(table)
    click.echo("(in brackets: the fit's median relative error over the measured rows)")


def calibrate_folders(folders: tuple[str, ...], output: str, gpu_name: str | None,
                      as_json: bool) -> None:
    """``kvfabric calibrate DIR... -o PROFILE``: fit a kernel profile, print its fits, write it.

    The GPU is ``gpu_name`` or read from the first folder's name (``h200`` → H200); the profile's
    name is the output file's stem.
    """
    paths = [Path(f) for f in folders]
    bad = [str(p) for p in paths if not p.is_dir()]
    if bad:
        raise UserError(f"{bad[0]}: give measurement folders only (or CSV files only)")
    spec = hardware.gpu(gpu_name) if gpu_name else _gpu_from_name(paths[0])
    out = Path(output)
    data = build_profile(paths, spec, out.stem, out)
    write_profile(data, out)
    if as_json:
        click.echo(json.dumps({"output": str(out), **data}, indent=2))
        return
    table = Table(title=escape(f"kernel profile {out.stem!r} for {spec.name}: fitted operators"))
    for col in ("operator", "rows", "median error", "p90 error", "or taken from"):
        table.add_column(col, justify="right")
    for op, e in data["operators"].items():
        if "from" in e:
            table.add_row(op, "", "", "", escape(e["from"]))
        else:
            table.add_row(op, str(e["rows"]), f"{e['median_error']:.1%}",
                          f"{e['p90_error']:.1%}", "")
    Console().print(table)
    click.echo(f"written: {out}")


def _gpu_from_name(folder: Path) -> hardware.GPUSpec:
    words = folder.resolve().name.upper().replace("-", "_").split("_")
    named = [kind for kind in hardware.GPUS if kind.upper() in words]
    if len(named) == 1:
        return hardware.GPUS[named[0]]
    which = f"it names {' and '.join(named)}" if named else "which GPU measured it?"
    raise UserError(f"{folder}: {which}; give --gpu (one of {', '.join(hardware.GPUS)})")
