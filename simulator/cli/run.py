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
Then the trace is loaded once and replayed for every policy with the same seed.

Progress goes to stderr (requests finished per policy; simulated seconds reached when the
scenario has an ``[engine] duration``, as a run cut at a duration may finish few requests); the
comparison table (:mod:`simulator.cli.tables`: wide, or vertical in a narrow terminal) or, with
``--json``, one JSON object to stdout. The result is written into a staging folder and swapped
onto ``--out`` in one piece (:mod:`simulator.cli.output`): one Parquet file per table
(``requests``, ``rounds``, ``iterations``, ``gpus``, ``links``, ``link_timeline``; a ``policy``
column tells the runs apart), ``summary.json`` (with ``notes`` on empty or degenerate runs), the
PNG plots of :mod:`simulator.plots` that have something to show, and ``manifest.json``
(scenario, seed, policies, engine, version, time).
"""

from __future__ import annotations

import hashlib
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
EXTRA_KEYS = ("mean_batch", "cost_per_hour", "tokens_per_s_per_dollar_hour", "model_pool_idle",
              "attention_pool_idle", "max_context_tokens", "requests_over_context")
#: Keys of a ``[deployment]`` run (issue 16): MoE layers and KV transfers against their closed
#: forms.
DEPLOYMENT_KEYS = ("decode_gpus", "moe_layers", "moe_closed_form_error_p50",
                   "moe_closed_form_error_p99", "kv_transfers", "kv_transfer_time_p50",
                   "kv_transfer_time_p99", "kv_transfer_wait_p50", "kv_transfer_wait_p99")
#: Record tables a result may carry in its extras (written when present).
EXTRA_TABLES = ("link_classes", "class_timeline", "moe", "kv_transfers")
#: Which engine made a policy's result, and why it fell back to the exact one if it did.
ENGINE_KEYS = ("engine", "engine_fallback")
#: The scenario ``kvfabric run`` runs without one (the earlier default, for the exact engine
#: and the tests, is ``agentic_repo.toml``).
DEFAULT_SCENARIO = "agentic_cluster.toml"


def traffic_figures(res) -> dict:
    """``bytes_by_class`` (traffic class → bytes sent on the fabric) and
    ``decode_tokens_per_s_per_gpu`` (decode tokens per simulated second — at capacity in a
    closed loop — per GPU that decodes: a deployment's decode pool, else every GPU of the
    run) of one result."""
    s = res.summary
    gpus = res.extras.get("decode_gpus") or max(len(res.gpus), 1)
    if s.get("capacity_tokens_per_s") is not None and math.isfinite(s["capacity_tokens_per_s"]):
        tput = s["capacity_tokens_per_s"]
    else:
        tput = s["throughput_tokens_per_s"]
    return {"bytes_by_class": dict(res.extras.get("bytes_by_class", {})),
            "decode_tokens_per_s_per_gpu": float(tput) / gpus}


def default_scenario() -> Path:
    """The embedded default scenario: :data:`DEFAULT_SCENARIO` of the shipped scenarios."""
    from simulator.scenario import shipped_dir

    return shipped_dir() / DEFAULT_SCENARIO


def resolve_scenario(arg: str | None) -> Path:
    """The scenario file ``arg`` names (a path or a shipped name); the default if None."""
    from simulator.scenario import find

    return default_scenario() if arg is None else find(arg)


def _clean(value):
    """JSON-safe: NaN/inf → None, numpy scalars → Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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


def run_policies(scenario, policies, seed, progress=None, *, skip_bad: bool = False,
                 trace=None, engine=None, jobs: int = 1):
    """Run ``scenario`` for each policy (trace loaded once); returns ``{policy: Result}`` in
    the order of ``policies``.

    ``progress(policy, finished, total)`` is called as requests finish; ``skip_bad`` skips
    (and counts) trace lines that do not parse; ``trace``: already loaded; ``engine``
    overrides the scenario's ``[engine] mode``; ``jobs`` > 1 runs that many policies at once
    in spawned processes (each run is independent: the same results as one after another).
    """
    from simulator.runner import load_trace, run

    if trace is None:
        trace = load_trace(scenario, seed, skip_bad=skip_bad)
    if jobs > 1 and len(policies) > 1:
        return _run_parallel(scenario, policies, seed, progress, trace, engine,
                             min(jobs, len(policies)))
    out = {}
    for p in policies:
        cb = None if progress is None else (lambda done, total, p=p: progress(p, done, total))
        out[p] = run(scenario, p, seed, trace=trace, progress=cb, engine=engine)
    return out


def default_jobs(policies) -> int:
    """Policies run at once by default: every policy, up to two per CPU this process may use
    (runs differ in length, so a CPU that finishes one early takes up another's share; each
    process holds one run's memory)."""
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(len(policies), 2 * (cpus or 1)))


_QUEUE = None  # a worker's progress queue (set by _worker_init)


def _worker_init(queue) -> None:
    import signal

    global _QUEUE
    _QUEUE = queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C


def _worker_run(scenario, policy, seed, trace, engine):
    from simulator.runner import run

    def cb(done, total):
        _QUEUE.put((policy, done, total))

    return run(scenario, policy, seed, trace=trace, progress=cb, engine=engine)


def _run_parallel(scenario, policies, seed, progress, trace, engine, jobs: int) -> dict:
    """:func:`run_policies` over ``jobs`` spawned processes; progress comes back on a queue."""
    import queue as queues
    from concurrent.futures import ProcessPoolExecutor, wait
    from multiprocessing import get_context

    ctx = get_context("spawn")
    q = ctx.Queue()

    def drain(timeout: float) -> None:
        try:
            while True:
                item = q.get(timeout=timeout)
                if progress is not None:
                    progress(*item)
                timeout = 0.0
        except queues.Empty:
            pass

    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init, initargs=(q,))
    try:
        futures = {pool.submit(_worker_run, scenario, p, seed, trace, engine): p
                   for p in policies}
        pending = set(futures)
        while pending:
            drain(0.2)
            finished, pending = wait(pending, timeout=0)
            for f in finished:
                if f.exception() is not None:  # a run failed: stop the others now
                    raise f.exception()
        drain(0.0)
        done = {futures[f]: f.result() for f in futures}
    except BaseException:
        # Ctrl-C or a failed run: stop the other runs now (the workers ignore SIGINT, and the
        # executor's exit hook would otherwise wait for them to finish)
        workers = list((getattr(pool, "_processes", None) or {}).values())
        for proc in workers:
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers:
            proc.join(timeout=5)
        raise
    pool.shutdown()
    return {p: done[p] for p in policies}


def notes(results: dict) -> dict[str, list[str]]:
    """``{policy: notes}`` on empty or degenerate runs (:func:`~simulator.engine.records.run_notes`)."""
    from simulator.engine.records import run_notes
    from simulator.policies import get

    out = {}
    for p, r in results.items():
        n = run_notes(r.summary, pool_loop=get(p).loop is not None)
        if n:
            out[p] = n
    return out


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


def regret_report(results: dict) -> dict | None:
    """Regret against the best static policy and adaptive choices over time, when the run
    compares policies and one of them is static (:func:`simulator.engine.regret.report`)."""
    from simulator.engine.regret import report

    return report(results) if len(results) > 1 else None


def write_outputs(results: dict, out_dir: Path, scenario_name: str
                  ) -> tuple[list[Path], dict[str, str]]:
    """Parquet tables (a ``policy`` column per row), ``summary.json`` (with ``regret`` when
    the run compares policies) and the PNG plots; returns the files written and the plots
    skipped with the reason."""
    import pandas as pd

    from simulator import plots
    from simulator.fileio import write_parquet, write_text

    written = []
    tables = ["requests", "rounds", "iterations", "gpus", "links", "link_timeline"]
    tables += [t for t in EXTRA_TABLES
               if any(isinstance(r.extras.get(t), pd.DataFrame) for r in results.values())]
    for table in tables:
        frames = []
        for policy, res in results.items():
            df = getattr(res, table) if hasattr(res, table) else res.extras.get(table)
            if not isinstance(df, pd.DataFrame):
                continue
            if len(df) or not frames:  # an empty run still writes every table (no rows)
                df = df.copy()
                for col in df.columns:
                    if isinstance(df[col].dtype, pd.CategoricalDtype):
                        df[col] = df[col].astype(str)
                df.insert(0, "policy", policy)
                df.insert(1, "engine", res.summary.get("engine", "exact"))
                frames.append(df)
        frames = [f for f in frames if len(f)] or frames[:1]
        written.append(write_parquet(pd.concat(frames, ignore_index=True),
                                     out_dir / f"{table}.parquet"))
    figures, skipped = plots.write_all(results, out_dir)
    summary = {"scenario": scenario_name,
               "policies": {p: _clean({**r.summary, **traffic_figures(r)})
                            for p, r in results.items()}}
    for p, n in notes(results).items():
        summary["policies"][p]["notes"] = n
    regret = regret_report(results)
    if regret is not None:
        summary["regret"] = _clean(regret)
    if skipped:
        summary["plots_skipped"] = skipped
    written.append(write_text(json.dumps(summary, indent=2) + "\n", out_dir / "summary.json"))
    return written + figures, skipped


def manifest(scenario, path: Path, seed: int, policies, results: dict) -> dict:
    """What made a result (:mod:`simulator.cli.output` adds files, time and version)."""
    engines = {p: r.summary.get("engine", "exact") for p, r in results.items()}
    return {"scenario": {"name": scenario.name, "source": str(path.resolve()),
                         "sha256": hashlib.sha256(path.read_bytes()).hexdigest()},
            "seed": seed, "policies": list(policies), "engine": engines}


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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from simulator.cli.output import ResultFolder
    from simulator.runner import check, engine_mode, load_trace
    from simulator.scenario import Scenario

    path = resolve_scenario(scenario_path)
    scenario = Scenario.load(path)
    policies = _policies(policy_opt, scenario.policies)
    seed = scenario.seed if seed is None else seed
    if seed < 0:
        raise UserError(f"--seed {seed}: give an integer >= 0")
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs {jobs}: give an integer >= 1")
    jobs = default_jobs(policies) if jobs is None else jobs
    target = Path(out_dir) if out_dir else Path("kvfabric_out") / scenario.name
    engine_mode(scenario, engine)  # a bad engine for this scenario: before anything runs
    graph = check(scenario, policies)
    layout = deployment_layout(scenario, graph)
    # a folder the user named is replaced only when asked; the default one always is
    folder = None if no_write else ResultFolder.open(target, overwrite=overwrite or not out_dir)

    err = Console(stderr=True)
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
        with Progress(*cols, console=err, transient=False) as bar:
            tasks = {p: bar.add_task(p, total=scenario.engine.duration) for p in policies}

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
    regret = regret_report(results) if len(results) > 1 else None
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
    from rich.table import Table

    from simulator.units import fmt_bytes, fmt_time

    engines = sorted({r.summary.get("engine", "exact") for r in results.values()})
    t = Table(title=f"{name} (seed {seed}, {' + '.join(engines)} engine)",
              caption="cf err: |simulated − closed form| / closed form per round; the closed "
                      "form prices an idle owner and idle links, so queueing makes it large")
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
