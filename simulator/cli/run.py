"""``kvfabric run``: simulate a scenario under one or more policies, compare, write records.

    kvfabric run [SCENARIO] [--policy route,fetch,adaptive] [--out DIR] [--overwrite]
                 [--seed N] [--skip-bad] [--json]

SCENARIO is a ``.toml`` file or the name of a shipped scenario (``lamina_llama3_70b``), found
from any folder; without it the embedded default, ``scenarios/agentic_cluster.toml`` (64 GPUs,
1,225 requests, route / fetch / adaptive on the fast engine), runs. ``--engine exact|fast``
overrides the scenario's ``[engine] mode``; record files carry an ``engine`` column, and the
table, the plots, ``summary.json`` and the manifest say which engine made a result.

Everything that can be checked is checked before any work, each failure one line naming the
file, field or option (:mod:`simulator.cli.main`): the scenario (:mod:`simulator.scenario`),
the policies (a duplicate is refused as in the TOML), what the run needs from this machine
(:func:`simulator.runner.check`: the topology builds, a KV block fits, the workload's size fits
memory), and ``--out`` (created and written to; a previous result in a folder the user named
is replaced only with ``--overwrite``, in the default ``kvfabric_out/<scenario>`` always).
Then the trace is loaded once and replayed for every policy with the same seed, one policy
after another or several at once (``--jobs``; :mod:`simulator.cli.jobs`).

Progress goes to stderr (requests finished per policy; simulated seconds reached when the
scenario has an ``[engine] duration``, as a run cut at a duration may finish few requests); the
comparison table (:mod:`simulator.cli.tables`: wide, or vertical in a narrow terminal) or, with
``--json``, one JSON object to stdout. The result is written into a staging folder and swapped
onto ``--out`` in one piece (:mod:`simulator.cli.output`): one Parquet file per table
(``requests``, ``rounds``, ``iterations``, ``gpus``, ``links``, ``link_timeline``; a ``policy``
column tells the runs apart), ``summary.json`` (with ``notes`` on empty or degenerate runs), the
PNG plots of :mod:`simulator.plots` that have something to show, and ``manifest.json``
(scenario, seed, policies, engine, version, time) — written by :mod:`simulator.cli.results`.
This module holds the command, its checks and what it prints.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from simulator.cli.jobs import default_jobs, run_policies
from simulator.cli.results import (
    EXTRA_TABLES,
    _clean,
    manifest,
    notes,
    regret_report,
    traffic_figures,
    write_outputs,
)
from simulator.errors import UserError

__all__ = ["DEFAULT_SCENARIO", "DEPLOYMENT_KEYS", "ENGINE_KEYS", "EXTRA_KEYS", "EXTRA_TABLES",
           "JSON_KEYS", "default_jobs", "default_scenario", "deployment_layout", "manifest",
           "note_lines", "notes", "regret_report", "resolve_scenario", "run", "run_policies",
           "traffic_figures", "write_outputs"]

#: Keys of one policy's entry in ``run --json`` (DESIGN.md).
JSON_KEYS = (
    "requests", "completed", "ttft_p50", "ttft_p99", "tbt_p50", "tbt_p99",
    "throughput_tokens_per_s", "bytes_moved", "closed_form_error_p50", "closed_form_error_p99",
    "wall_time", "events",
)
#: Extra keys of disaggregation runs (Lamina-style comparison at equal cost).
EXTRA_KEYS = ("mean_batch", "cost_per_hour", "tokens_per_s_per_dollar_hour", "model_pool_idle",
              "attention_pool_idle", "max_context_tokens", "requests_over_context")
#: Keys of a ``[deployment]`` run (issue 16): MoE layers and KV transfers against their closed
#: forms.
DEPLOYMENT_KEYS = ("decode_gpus", "moe_layers", "moe_closed_form_error_p50",
                   "moe_closed_form_error_p99", "kv_transfers", "kv_transfer_time_p50",
                   "kv_transfer_time_p99", "kv_transfer_wait_p50", "kv_transfer_wait_p99")
#: Which engine made a policy's result, and why it fell back to the exact one if it did.
ENGINE_KEYS = ("engine", "engine_fallback")
#: The scenario ``kvfabric run`` runs without one (the earlier default, for the exact engine
#: and the tests, is ``agentic_repo.toml``).
DEFAULT_SCENARIO = "agentic_cluster.toml"


def default_scenario() -> Path:
    """The embedded default scenario: :data:`DEFAULT_SCENARIO` of the shipped scenarios."""
    from simulator.scenario import shipped_dir

    return shipped_dir() / DEFAULT_SCENARIO


def resolve_scenario(arg: str | None) -> Path:
    """The scenario file ``arg`` names (a path or a shipped name); the default if None."""
    from simulator.scenario import find

    return default_scenario() if arg is None else find(arg)


def _policies(option: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """``--policy`` as names, checked like the scenario's ``policies`` (known, each once)."""
    from simulator.policies import POLICIES

    if option is None:
        return default
    names = tuple(p.strip() for p in option.split(",") if p.strip())
    if not names:
        raise UserError("--policy: give one or more policy names separated by commas")
    for p in names:
        if p not in POLICIES:
            raise UserError(f"--policy: unknown policy {p!r}; known: {', '.join(POLICIES)}")
    twice = sorted({p for p in names if names.count(p) > 1})
    if twice:
        raise UserError(f"--policy: lists {', '.join(twice)} twice; name each policy once")
    return names


def note_lines(run_notes: dict[str, list[str]], policies: list[str]) -> list[str]:
    """The notes as printed: a note every policy of a run of several has (the trace's, e.g.
    requests over the context window) once, ``note: …``; the others per policy,
    ``note: POLICY: …``."""
    shared = []
    if len(policies) > 1 and set(run_notes) == set(policies):
        first = run_notes[policies[0]]
        shared = [n for n in first if all(n in run_notes[p] for p in policies)]
    out = [f"note: {n}" for n in shared]
    for p, lines in run_notes.items():
        out += [f"note: {p}: {n}" for n in lines if n not in shared]
    return out


@click.command("run")
@click.argument("scenario_path", required=False, metavar="[SCENARIO]")
@click.option("--policy", "policy_opt", default=None,
              help="Comma-separated policies (default: the scenario's list).")
@click.option("--out", "out_dir", default=None, type=click.Path(),
              help="Folder for Parquet records, summary.json, manifest.json and PNG plots "
                   "(default: kvfabric_out/<scenario name>).")
@click.option("--overwrite", is_flag=True,
              help="Replace the previous result in --out (the default folder is replaced "
                   "without it).")
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option("--skip-bad", is_flag=True, help="Skip (and count) trace lines that do not parse.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--no-write", is_flag=True, help="Do not write records or plots.")
@click.option("--engine", "engine", default=None, type=click.Choice(["exact", "fast"]),
              help="Decode-loop engine (default: the scenario's [engine] mode).")
@click.option("--jobs", type=int, default=None,
              help="Policies run at once in separate processes (default: every policy, up to "
                   "two per CPU; 1: one after another in this process).")
def run(scenario_path, policy_opt, out_dir, overwrite, seed, skip_bad, as_json,
        no_write, engine, jobs) -> None:
    """Run SCENARIO (a .toml file or a shipped name) for one or more policies and compare."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from simulator.cli.output import ResultFolder
    from simulator.runner import check, load_trace
    from simulator.scenario import Scenario

    if no_write and (out_dir is not None or overwrite):  # it silently wrote nowhere
        given = "--out" if out_dir is not None else "--overwrite"
        raise UserError(f"--no-write writes nothing, so {given} has nothing to do; drop one "
                        "of them")
    path = resolve_scenario(scenario_path)
    scenario = Scenario.load(path)
    policies = _policies(policy_opt, scenario.policies)
    seed = scenario.seed if seed is None else seed
    if seed < 0:
        raise UserError(f"--seed {seed}: give an integer >= 0")
    if out_dir == "":
        raise UserError("--out '': give a folder (or leave --out out for the default one)")
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs {jobs}: give an integer >= 1")
    jobs = default_jobs(policies) if jobs is None else jobs
    target = Path(out_dir) if out_dir else Path("kvfabric_out") / scenario.name
    graph = check(scenario, policies)
    layout = deployment_layout(scenario, graph)
    # a folder the user named is replaced only when asked; the default one always is
    folder = None if no_write else ResultFolder.open(target, overwrite=overwrite or not out_dir)

    err = Console(stderr=True, markup=False)  # notes, paths and names print as written
    if layout is not None:
        for line in layout["lines"]:
            err.print(f"deployment: {line}", highlight=False, soft_wrap=True)
    if scenario.engine.duration is None:  # the run ends with its requests: count them
        cols = (TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("requests"), TimeElapsedColumn())
    else:  # cut at a duration: simulated time reached (simulator.engine.clock)
        cols = (TextColumn("{task.description:<14}"), BarColumn(),
                TextColumn("{task.completed:.1f}/{task.total:.1f} simulated s"),
                TimeElapsedColumn())
    try:
        trace = load_trace(scenario, seed, skip_bad=skip_bad)  # a bad line: before any bar
        if trace.attrs.get("skipped_lines"):  # --skip-bad counts them: say how many
            err.print(f"note: --skip-bad skipped {trace.attrs['skipped_lines']:,} trace lines "
                      f"that do not parse ({trace.attrs.get('source', 'the trace')})",
                      highlight=False, soft_wrap=True)
        if scenario.workload.selections is not None:  # what it selects, against the requests'
            # contexts: before any bar too (each run reads it again when it starts)
            from simulator.engine.trace import scenario_selections

            scenario_selections(scenario, trace)
        with Progress(*cols, console=err, transient=False) as bar:
            tasks = {p: bar.add_task(escape(p), total=scenario.engine.duration)
                     for p in policies}

            def progress(policy, done, total):
                bar.update(tasks[policy], completed=done, total=total)

            results = run_policies(scenario, policies, seed, progress, trace=trace,
                                   engine=engine, jobs=jobs)
        written, skipped = [], {}
        if folder is not None:
            written, skipped = write_outputs(results, folder.path, scenario.name)
            folder.commit(manifest(scenario, path, seed, policies, results))
    except BaseException:
        if folder is not None:
            folder.discard()
        raise
    _report(results, scenario.name, seed, None if no_write else target, written, skipped,
            as_json, err, layout)


def deployment_layout(scenario, graph) -> dict | None:
    """The scenario's ``[deployment]`` layout on ``graph`` (``lines`` to print, ``pools`` and
    ``idle`` GPUs), or None without one."""
    if getattr(scenario, "deployment", None) is None:
        return None
    import topologies
    from simulator.deployment import build_layout
    from simulator.models import model

    names = list(topologies.gpus(graph))
    kinds = [graph.nodes[n].get("gpu", "H100") for n in names]
    lay = build_layout(scenario.deployment, names, kinds)
    return {"lines": lay.describe(model(scenario.model.name)), **lay.as_dict()}


def _report(results, name, seed, target, written, skipped, as_json, err,
            layout: dict | None = None) -> None:
    """The comparison table or JSON on stdout; notes, skipped plots and files on stderr."""
    from rich.console import Console

    from simulator.cli.tables import print_table
    from simulator.disaggregation import LOOPS, comparison_frame, comparison_table

    lamina = {p: results[p] for p in LOOPS if p in results}
    run_notes = notes(results)
    regret = regret_report(results)  # (None for one policy)
    if as_json:
        payload = {
            "scenario": name, "seed": seed,
            "policies": {p: _clean({**{k: r.summary[k] for k in
                                       JSON_KEYS + EXTRA_KEYS + ENGINE_KEYS + DEPLOYMENT_KEYS
                                       if k in r.summary}, **traffic_figures(r)})
                         for p, r in results.items()},
            "notes": run_notes, "plots_skipped": skipped,
            "out": str(target) if target is not None else None,
        }
        if len(lamina) == 2:
            payload["ratio"] = _clean(comparison_frame(lamina).iloc[2].to_dict())
        if layout is not None:
            payload["deployment"] = {k: v for k, v in layout.items() if k != "lines"}
        if regret is not None:
            payload["regret"] = _clean(regret)
        click.echo(json.dumps(payload))
        return
    con = Console()
    print_table(con, _table(name, seed, results))
    if regret is not None:
        from simulator.cli.regret_tables import choices_table, regret_table

        print_table(con, regret_table(regret))
        if (choices := choices_table(regret)) is not None:
            print_table(con, choices)
    if len(lamina) == 2:
        print_table(con, comparison_table(lamina))
    for line in note_lines(run_notes, list(results)):
        err.print(line, highlight=False, soft_wrap=True)
    for file, reason in skipped.items():
        err.print(f"skipped {file}: {reason}", highlight=False, soft_wrap=True)
    for p, r in results.items():
        if "engine_fallback" in r.summary:
            err.print(f"{p}: ran on the exact engine ({r.summary['engine_fallback']})",
                      highlight=False, soft_wrap=True)
    if written:
        err.print(f"wrote {len(written) + 1} files to {target}/", highlight=False,
                  soft_wrap=True)


def _table(name: str, seed: int, results: dict):
    from rich.markup import escape
    from rich.table import Table

    from simulator.cli.tables import percent
    from simulator.units import fmt_bytes, fmt_time

    engines = sorted({r.summary.get("engine", "exact") for r in results.values()})
    t = Table(title=f"{escape(name)} (seed {seed}, {' + '.join(engines)} engine)",
              caption="cf err: |simulated − closed form| / closed form per round; the closed "
                      "form prices an idle owner and idle links, so queueing makes it large")
    for col in ("policy", "done", "TTFT p50", "TTFT p99", "TBT p50", "TBT p99", "tokens/s",
                "bytes moved", "cf err p50", "cf err p99", "wall", "events"):
        t.add_column(col, justify="left" if col == "policy" else "right", no_wrap=True)

    def tm(x):
        return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt_time(x)

    for p, r in results.items():
        s = r.summary
        t.add_row(escape(p), f"{s['completed']}/{s['requests']}", tm(s["ttft_p50"]),
                  tm(s["ttft_p99"]), tm(s["tbt_p50"]), tm(s["tbt_p99"]),
                  f"{s['throughput_tokens_per_s']:.4g}", fmt_bytes(s["bytes_moved"]),
                  percent(s["closed_form_error_p50"]), percent(s["closed_form_error_p99"]),
                  f"{s['wall_time']:.1f} s", f"{s['events']:,}")
    return t
