"""``kvfabric run``: simulate a scenario under one or more policies, compare, write records.

    kvfabric run [SCENARIO.toml] [--policy route,fetch,adaptive] [--out DIR] [--seed N] [--json]
                 [--engine exact|fast]

Without a scenario it runs the embedded default, ``scenarios/agentic_cluster.toml`` (64 GPUs,
~1,070 requests, route / fetch / adaptive on the fast engine; ``--engine exact`` for the
event-by-event engine). The trace is
loaded once and replayed for every policy with the same seed. Progress goes to stderr; the
comparison table (or, with ``--json``, one JSON object) to stdout. Into ``--out`` go one Parquet
file per table (``requests``, ``rounds``, ``iterations``, ``gpus``, ``links``,
``link_timeline``; a ``policy`` column tells the runs apart, an ``engine`` column says which
engine made them), ``summary.json`` and the PNG plots of :mod:`simulator.plots` — each written
atomically. ``--engine`` overrides the scenario's ``[engine] mode``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from simulator.errors import UserError

#: Keys of one policy's entry in ``run --json`` (DESIGN.md).
JSON_KEYS = (
    "requests", "completed", "ttft_p50", "ttft_p99", "tbt_p50", "tbt_p99",
    "throughput_tokens_per_s", "bytes_moved", "closed_form_error_p50", "closed_form_error_p99",
    "wall_time", "events",
)
#: Extra keys of disaggregation runs (Lamina-style comparison at equal cost).
#: Which engine made a policy's result, and why it fell back to the exact one if it did.
ENGINE_KEYS = ("engine", "engine_fallback")
EXTRA_KEYS = ("mean_batch", "cost_per_hour", "tokens_per_s_per_dollar_hour", "model_pool_idle",
              "attention_pool_idle")

#: The scenario ``kvfabric run`` runs without one (the earlier default, for the exact engine
#: and the tests, is ``agentic_repo.toml``).
DEFAULT_SCENARIO = "agentic_cluster.toml"


def default_scenario() -> Path:
    """The embedded default scenario: ``scenarios/agentic_cluster.toml`` of a source checkout,
    or the copy a regular (non-editable) install puts under ``<prefix>/share/kvfabric/scenarios``."""
    import sys

    checkout = Path(__file__).resolve().parents[2] / "scenarios" / DEFAULT_SCENARIO
    if checkout.is_file():
        return checkout
    return Path(sys.prefix) / "share" / "kvfabric" / "scenarios" / DEFAULT_SCENARIO


def _clean(value):
    """JSON-safe: NaN/inf → None, numpy scalars → Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _policies(option: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    from simulator.policies import POLICIES

    if option is None:
        return default
    names = tuple(p.strip() for p in option.split(",") if p.strip())
    if not names:
        raise UserError("--policy: give one or more policy names separated by commas")
    for p in names:
        if p not in POLICIES:
            raise UserError(f"--policy: unknown policy {p!r}; known: {', '.join(POLICIES)}")
    return names


def run_policies(scenario, policies, seed, progress=None, engine=None):
    """Run ``scenario`` for each policy (trace loaded once); returns ``{policy: Result}``.

    ``progress(policy, finished, total)`` is called as requests finish; ``engine`` overrides
    the scenario's ``[engine] mode``.
    """
    from simulator.runner import load_trace, run

    trace = load_trace(scenario, seed)
    out = {}
    for p in policies:
        cb = None if progress is None else (lambda done, total, p=p: progress(p, done, total))
        out[p] = run(scenario, p, seed, trace=trace, progress=cb, engine=engine)
    return out


def write_outputs(results: dict, out_dir: Path, scenario_name: str) -> list[Path]:
    """Parquet tables (a ``policy`` column per row), ``summary.json`` and the PNG plots."""
    import pandas as pd

    from simulator import plots
    from simulator.fileio import write_parquet, write_text

    written = []
    for table in ("requests", "rounds", "iterations", "gpus", "links", "link_timeline"):
        frames = []
        for policy, res in results.items():
            df = getattr(res, table)
            if len(df):
                df = df.copy()
                for col in df.columns:
                    if isinstance(df[col].dtype, pd.CategoricalDtype):
                        df[col] = df[col].astype(str)
                df.insert(0, "policy", policy)
                df.insert(1, "engine", res.summary.get("engine", "exact"))
                frames.append(df)
        if frames:
            written.append(write_parquet(pd.concat(frames, ignore_index=True),
                                         out_dir / f"{table}.parquet"))
    summary = {"scenario": scenario_name,
               "policies": {p: _clean(r.summary) for p, r in results.items()}}
    written.append(write_text(json.dumps(summary, indent=2) + "\n", out_dir / "summary.json"))
    written.extend(plots.write_all(results, out_dir))
    return written


@click.command("run")
@click.argument("scenario_path", required=False, type=click.Path(dir_okay=False))
@click.option("--policy", "policy_opt", default=None,
              help="Comma-separated policies (default: the scenario's list).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Folder for Parquet records, summary.json and PNG plots "
                   "(default: kvfabric_out/<scenario name>).")
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--no-write", is_flag=True, help="Do not write records or plots.")
@click.option("--engine", "engine", default=None, type=click.Choice(["exact", "fast"]),
              help="Decode-loop engine (default: the scenario's [engine] mode).")
def run(scenario_path, policy_opt, out_dir, seed, as_json, no_write, engine) -> None:
    """Run a scenario for one or more policies and compare them."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from simulator.scenario import Scenario

    path = Path(scenario_path) if scenario_path else default_scenario()
    if not path.is_file():
        raise UserError(f"{path}: scenario file not found; pass a scenario .toml file")
    scenario = Scenario.load(path)
    policies = _policies(policy_opt, scenario.policies)
    seed = scenario.seed if seed is None else seed
    if seed < 0:
        raise UserError(f"--seed {seed}: give an integer >= 0")
    target = Path(out_dir) if out_dir else Path("kvfabric_out") / scenario.name
    if not no_write and target.exists() and not target.is_dir():
        raise UserError(f"--out {target}: exists and is not a folder; choose another path")

    err = Console(stderr=True)
    cols = (TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("requests"), TimeElapsedColumn())
    with Progress(*cols, console=err, transient=False) as bar:
        tasks = {p: bar.add_task(p, total=None) for p in policies}

        def progress(policy, done, total):
            bar.update(tasks[policy], completed=done, total=total)

        results = run_policies(scenario, policies, seed, progress, engine)
    written = []
    if not no_write:
        target.mkdir(parents=True, exist_ok=True)
        written = write_outputs(results, target, scenario.name)
    from simulator.disaggregation import LOOPS, comparison_frame, comparison_table

    lamina = {p: results[p] for p in LOOPS if p in results}
    if as_json:
        payload = {
            "scenario": scenario.name, "seed": seed,
            "policies": {p: _clean({k: r.summary[k]
                                    for k in JSON_KEYS + EXTRA_KEYS + ENGINE_KEYS
                                    if k in r.summary})
                         for p, r in results.items()},
            "out": str(target) if not no_write else None,
        }
        if len(lamina) == 2:
            payload["ratio"] = _clean(comparison_frame(lamina).iloc[2].to_dict())
        click.echo(json.dumps(payload))
        return
    con = Console()
    if not con.is_terminal:  # piped: keep one row per policy
        con = Console(width=150)
    con.print(_table(scenario.name, seed, results))
    if len(lamina) == 2:
        con.print(comparison_table(lamina))
    for p, r in results.items():
        if "engine_fallback" in r.summary:
            err.print(f"{p}: ran on the exact engine ({r.summary['engine_fallback']})")
    if written:
        err.print(f"wrote {len(written)} files to {target}/")


def _table(name: str, seed: int, results: dict):
    from rich.table import Table

    from simulator.units import fmt_bytes, fmt_time

    engines = sorted({r.summary.get("engine", "exact") for r in results.values()})
    t = Table(title=f"{name} (seed {seed}, {' + '.join(engines)} engine)")
    for col in ("policy", "done", "TTFT p50", "TTFT p99", "TBT p50", "TBT p99", "tokens/s",
                "bytes moved", "cf err p50", "cf err p99", "wall", "events"):
        t.add_column(col, justify="left" if col == "policy" else "right", no_wrap=True)

    def tm(x):
        return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt_time(x)

    def pct(x):
        return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2%}"

    for p, r in results.items():
        s = r.summary
        t.add_row(p, f"{s['completed']}/{s['requests']}", tm(s["ttft_p50"]), tm(s["ttft_p99"]),
                  tm(s["tbt_p50"]), tm(s["tbt_p99"]), f"{s['throughput_tokens_per_s']:.4g}",
                  fmt_bytes(s["bytes_moved"]), pct(s["closed_form_error_p50"]),
                  pct(s["closed_form_error_p99"]), f"{s['wall_time']:.1f} s",
                  f"{s['events']:,}")
    return t
