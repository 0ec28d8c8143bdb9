"""``kvfabric calibrate``: fit fabric and kernel coefficients from CSV measurements, write TOML.

Formats what :mod:`simulator.gpu.calibration` fits: a residual table per file, the coefficients, and
a TOML file (written atomically) that a scenario includes with ``include = "calibration.toml"``.
Units at this edge: ``--line-rate`` in GB/s, ``--path-latency`` in µs; the TOML is SI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import tomli_w
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simulator.errors import UserError
from simulator.fileio import write_text
from simulator.gpu import calibration as cal
from simulator.hardware import gpu as lookup_gpu
from simulator.models import model as lookup_model
from simulator.units import GBps, fmt_rate, fmt_time, us


@click.command("calibrate")
@click.argument("files", nargs=-1, required=True, type=click.Path(),
                metavar="FILE.csv... | DIR...")
@click.option("-o", "--output", default="calibration.toml", show_default=True,
              metavar="OUT.toml", help="Where to write the fitted coefficients.")
@click.option("--model", "model_name", default="deepseek-v3", show_default=True,
              help="Architecture of kernel rows (its KV bytes per token).")
@click.option("--gpu", "gpu_name", default="H100", show_default=True,
              help="GPU of kernel rows (its HBM bandwidth).")
@click.option("--line-rate", type=float, default=None, metavar="GB/s",
              help="Line rate of the measured path, to derive the stack efficiency.")
@click.option("--path-latency", type=float, default=None, metavar="µs",
              help="Summed hop latency of the measured path, to derive the stack overhead.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def calibrate(files, output, model_name, gpu_name, line_rate, path_latency, as_json) -> None:
    """Fit fabric latency/bandwidth (bytes,seconds rows) and kernel coefficients
    (batch,tokens,seconds rows) by least squares; print residuals; write a TOML file.
    Given measurement folders (laid out like calibration/h200/), fit a kernel profile instead."""
    from simulator.cli.output import output_file

    if any(Path(f).is_dir() for f in files):
        from simulator.cli.kernel import calibrate_folders

        output_file(output, "-o", (".toml",))
        given = click.get_current_context().get_parameter_source("gpu_name")
        return calibrate_folders(files, output, None if given.name == "DEFAULT" else gpu_name,
                                 as_json)
    try:
        arch = lookup_model(model_name)
    except UserError as exc:
        raise UserError(f"--model {model_name!r}: {exc}") from None
    try:
        spec = lookup_gpu(gpu_name)
    except UserError as exc:
        raise UserError(f"--gpu {gpu_name!r}: {exc}") from None
    output_file(output, "-o", (".toml",))
    if line_rate is not None and not 0 < line_rate < math.inf:  # nan, inf were written out
        finite = "" if math.isfinite(line_rate) else ", a finite one"
        raise UserError(f"--line-rate {line_rate}: give a positive rate in GB/s{finite}")
    if path_latency is not None and not 0 <= path_latency < math.inf:
        finite = "" if math.isfinite(path_latency) else ", a finite number"
        raise UserError(f"--path-latency {path_latency}: give microseconds >= 0{finite}")
    result: dict[str, dict] = {}
    fits: list[tuple[cal.Measurements, cal.Fit]] = []
    for f in files:
        m = cal.read_csv(f)
        section = "fabric" if m.kind == "pingpong" else "kernels"
        if section in result:
            raise UserError(f"{f}: a second {m.kind} file; give one file of each kind")
        fit = cal.fit_line(m)
        try:
            if section == "fabric":
                result["fabric"] = cal.fabric_coefficients(
                    fit, GBps(line_rate) if line_rate is not None else None,
                    us(path_latency) if path_latency is not None else None)
            else:
                result["kernels"] = cal.kernel_coefficients(fit, arch.kv_bytes_per_token,
                                                            spec.hbm_bandwidth)
                result["kernels"]["model"] = arch.name
                result["kernels"]["gpu"] = spec.name
        except UserError as exc:
            raise UserError(f"{f}: {exc}") from None
        result[section]["source"] = str(f)
        fits.append((m, fit))
    header = ("# Written by `kvfabric calibrate` (SI units: seconds, bytes, bytes/s).\n"
              "# Include it from a scenario: include = \"<this file>\"\n")
    write_text(header + tomli_w.dumps(result), output)
    if as_json:
        out = dict(result)
        out["output"] = str(output)
        out["residuals"] = {m.path: [float(r) for r in fit.residuals] for m, fit in fits}
        click.echo(json.dumps(out, indent=2))
        return
    console = Console()
    for m, fit in fits:
        _print_fit(console, m, fit, result["fabric" if m.kind == "pingpong" else "kernels"])
    console.print(f"written: {output}", markup=False)


def _print_fit(console: Console, m: cal.Measurements, fit: cal.Fit, coeffs: dict) -> None:
    table = Table(title=escape(f"{m.path}: {m.kind} rows, fit and residuals"))
    for col in (*m.columns, "fitted", "residual", "relative"):
        table.add_column(escape(col), justify="right")
    for inputs, fitted, res in zip(m.inputs, fit.fitted, fit.residuals, strict=True):
        shown = [f"{v:g}" for v in inputs]
        if m.columns[-1] == "rtt_seconds":
            fitted, res = 2 * fitted, 2 * res  # display round trips like the input
        table.add_row(*shown, f"{fitted:.5g}", f"{res:+.3g}", f"{res / fitted:+.2%}")
    console.print(table)
    if m.kind == "pingpong":
        line = (f"one-way message = [bold]{fmt_time(coeffs['message_fixed_time'])}[/bold] + "
                f"bytes / [bold]{fmt_rate(coeffs['rate'])}[/bold]")
        if "overhead_time" in coeffs:
            line += f"; stack overhead {fmt_time(coeffs['overhead_time'])}"
        if "efficiency" in coeffs:
            line += f"; efficiency {coeffs['efficiency']:.3f} of the line rate"
    else:
        line = (f"kernel = [bold]{fmt_time(coeffs['launch_time'])}[/bold] + batch·tokens × "
                f"{coeffs['bytes_per_token']:g} B / "
                f"[bold]{fmt_rate(coeffs['effective_bandwidth'])}[/bold]; memory efficiency "
                f"{coeffs['memory_efficiency']:.3f} of {coeffs['gpu']}'s HBM")
    console.print(line)
    console.print(f"rms residual {fmt_time(fit.rms_residual)}, "
                  f"largest relative {fit.max_relative_residual:.2%}")
