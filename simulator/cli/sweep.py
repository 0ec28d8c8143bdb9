"""``kvfabric sweep``: run a parameter sweep locally or on Dask and gather the results."""

from __future__ import annotations

import json
from pathlib import Path

import click

from simulator.sweep import BACKENDS, Sweep, execute
from simulator.units import fmt_time

#: Result columns shown in the terminal table (all of them are in results.parquet).
HEADLINE = ("completed", "ttft_p50", "tbt_p50", "tbt_p99", "throughput_tokens_per_s",
            "tokens_per_s_per_dollar_hour", "closed_form_error_p99", "total_time", "decision")
_TIMES = ("ttft_p50", "tbt_p50", "tbt_p99")


def _cell(column: str, value: object) -> str:
    if isinstance(value, float):
        if column.endswith("_time") or column in _TIMES:
            return fmt_time(value)
        return f"{value:.4g}"
    return str(value)


@click.command("sweep")
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--backend", type=click.Choice(BACKENDS), default="local", show_default=True,
              help="local: a process pool; dask: dask.distributed.")
@click.option("--scheduler", default=None, metavar="ADDR",
              help="Dask scheduler address (tcp://host:8786; implies --backend dask); "
                   "default: a LocalCluster.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: CPU count locally, 2 on a Dask LocalCluster).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Results folder (default: out/sweep-<name>). Finished points are kept there, "
                   "so running again resumes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def sweep(sweep_file: Path, backend: str, scheduler: str | None, workers: int | None,
          out: Path | None, as_json: bool) -> None:
    """Run every point of SWEEP_FILE not yet finished in --out; write results.parquet."""
    spec = Sweep.load(sweep_file)
    if scheduler is not None and backend != "dask":
        backend = "dask"
    out = out if out is not None else Path("out") / f"sweep-{spec.name}"
    res = execute(spec, out, backend, workers=workers, scheduler=scheduler,
                  progress=not as_json)
    summary = {"sweep": spec.name, "points": len(spec.points()), "computed": res.computed,
               "resumed": res.resumed, "failed": len(res.failures),
               "results": str(out / "results.parquet"), "rows": len(res.results),
               "failures": [{"params": f["params"], "error": f["error"]} for f in res.failures]}
    if as_json:
        click.echo(json.dumps(summary, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{spec.name}[/]: {summary['points']} points — {res.computed} computed, "
                  f"{res.resumed} already done, {len(res.failures)} failed → {summary['results']}")
    if len(res.results):
        table = Table(show_lines=False)
        params = [k for k, _ in spec.grid] + [k for k, _ in spec.random]
        cols = [c for c in (*params, "policy", "option", *HEADLINE) if c in res.results.columns]
        shown = res.results[list(dict.fromkeys(cols))].head(20)
        for col in shown.columns:
            table.add_column(str(col), overflow="fold")
        for row in shown.itertuples(index=False):
            table.add_row(*(_cell(col, v) for col, v in zip(shown.columns, row, strict=True)))
        console.print(table)
        if len(res.results) > 20:
            console.print(f"… {len(res.results) - 20} more rows in {summary['results']}")
    for f in res.failures:
        console.print(f"[red]failed[/] point {f['point']} {f['params']}: {f['error']}")
    if res.failures:
        raise SystemExit(1)
