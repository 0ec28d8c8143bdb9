"""``kvfabric sweep``: run a parameter sweep locally or on Dask and gather the results.

Every point is validated before any runs (:func:`simulator.sweep.check.check_points`): a bad
field or value ends in one line naming the sweep file, the point and the field, exit status 2,
and nothing written. Ctrl-C stops the sweep within about a second — queued points cancelled,
workers ended, finished points kept for the next run (exit status 130). SWEEP may be a file or
a shipped sweep's name (``example_sweep``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from simulator.cli.tables import percent
from simulator.errors import UserError
from simulator.sweep import BACKENDS, Sweep, execute
from simulator.units import fmt_time

#: Result columns shown in the terminal table (all of them are in results.parquet).
HEADLINE = ("completed", "ttft_p50", "tbt_p50", "tbt_p99", "throughput_tokens_per_s",
            "tokens_per_s_per_dollar_hour", "closed_form_error_p99", "total_time", "decision")
_TIMES = ("ttft_p50", "tbt_p50", "tbt_p99")


def _cell(column: str, value: object) -> str:
    if isinstance(value, float):
        if "closed_form_error" in column:  # a fraction, shown as kvfabric run shows it
            return percent(value)
        if value != value:  # NaN: an empty run's latency
            return "—"
        if column.endswith("_time") or column in _TIMES:
            return fmt_time(value)
        return f"{value:.4g}"
    return str(value)


@click.command("sweep")
@click.argument("sweep_file", metavar="SWEEP")
@click.option("--backend", type=click.Choice(BACKENDS), default="local", show_default=True,
              help="local: a process pool; dask: dask.distributed.")
@click.option("--scheduler", default=None, metavar="ADDR",
              help="Dask scheduler address (tcp://host:8786; implies --backend dask); "
                   "default: a LocalCluster.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: CPU count locally, 2 on a Dask LocalCluster).")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Results folder (default: out/sweep-<name>). Finished points are kept there, "
                   "so running again resumes.")
@click.option("--skip-bad", is_flag=True, help="Skip (and count) trace lines that do not parse.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def sweep(sweep_file: str, backend: str, scheduler: str | None, workers: int | None,
          out: Path | None, skip_bad: bool, as_json: bool) -> None:
    """Run every point of SWEEP not yet finished in --out; write results.parquet."""
    import os

    from simulator.sweep.check import check_points
    from simulator.sweep.executor import Interrupted

    if scheduler is not None and backend != "dask":
        given = click.get_current_context().get_parameter_source("backend")
        if given is not click.core.ParameterSource.DEFAULT:
            raise UserError(f"--scheduler {scheduler} runs the points on Dask, --backend "
                            f"{backend} on this machine; drop one of them")
        backend = "dask"
    spec = Sweep.load(sweep_file)
    if skip_bad:
        spec = dataclasses.replace(spec, skip_bad=True)
    out = out if out is not None else Path("out") / f"sweep-{spec.name}"
    parallel = workers or ((os.cpu_count() or 1) if backend == "local" else 2)
    check_points(spec, parallel=min(parallel, len(spec.points())))
    try:
        res = execute(spec, out, backend, workers=workers, scheduler=scheduler,
                      progress=not as_json, check=False)
    except Interrupted as stop:
        click.echo(f"interrupted: {stop.finished} of {stop.total} points finished and kept in "
                   f"{stop.out / 'points'}; run the same command again to resume", err=True)
        sys.exit(130)
    summary = {"sweep": spec.name, "points": len(spec.points()), "computed": res.computed,
               "resumed": res.resumed, "recomputed_stale": res.stale,
               "failed": len(res.failures), "results": str(out / "results.parquet"),
               "rows": len(res.results),
               "failures": [{"params": f["params"], "error": f["error"]} for f in res.failures]}
    if as_json:
        click.echo(json.dumps(summary, default=str))
    else:
        _print(spec, res, summary)
    if res.failures:  # with --json too: a script reads the status before the JSON
        raise SystemExit(1)


def _print(spec: Sweep, res, summary: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from simulator.cli.tables import print_table

    console = Console()
    stale = f" ({res.stale} recomputed: their inputs changed)" if res.stale else ""
    points = f"{summary['points']} point{'' if summary['points'] == 1 else 's'}"
    console.print(f"[bold]{escape(spec.name)}[/]: " + escape(
        f"{points} — {res.computed} computed{stale}, {res.resumed} already "
        f"done, {len(res.failures)} failed → {summary['results']}"), soft_wrap=True)
    err = Console(stderr=True, markup=False)  # notes and errors print as written
    if len(res.results):
        table = Table()
        params = [k for k, _ in spec.grid] + [k for k, _ in spec.random]
        cols = [c for c in ("point", *params, "policy", "option", *HEADLINE)
                if c in res.results.columns]
        shown = res.results[list(dict.fromkeys(cols))].head(20)
        for col in shown.columns:
            table.add_column(escape(str(col)), no_wrap=True)
        for row in shown.itertuples(index=False):
            table.add_row(*(escape(_cell(col, v))
                            for col, v in zip(shown.columns, row, strict=True)))
        print_table(console, table)
        if len(res.results) > 20:
            console.print(f"… {len(res.results) - 20} more rows in {summary['results']}",
                          markup=False)
        if "note" in res.results.columns:
            for row in res.results[res.results["note"].fillna("") != ""].itertuples():
                err.print(f"note: point {row.point}: {row.note}", highlight=False,
                          soft_wrap=True)
    for f in res.failures:
        err.print(f"failed point {f['point']} {f['params']}: {f['error']}", highlight=False,
                  soft_wrap=True)
