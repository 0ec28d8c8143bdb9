"""``kvfabric trace``: inspect, convert and generate request traces.

- ``trace stats FILE [--json]`` — summary of a Mooncake JSONL, Azure CSV or our Parquet trace
  (or a shipped name such as ``mooncake_conversation``); JSON keys as in DESIGN.md.
- ``trace convert FILE -o OUT.parquet`` — any supported trace to our Parquet schema.
- ``trace gen agentic [--<param> …] -o OUT.parquet`` — the agentic coding fleet; one option per
  field of :class:`workloads.agentic.AgenticParams` (``--subagents 32`` …); with ``--preset
  copilot_2026 [--param KEY=VALUE …]`` structured sessions (:mod:`workloads.sessions`).
- ``trace gen rag [--<param> …] -o OUT.parquet`` — the RAG-like generator.
- ``trace gen nested [--<param> …] -o OUT.parquet`` — nested generation (best-of-n, a judge).
- ``trace gen selections TRACE -o OUT.parquet`` — per (request, step, layer) selected blocks.

Bad input raises :class:`~simulator.errors.UserError` (one line, exit 2); outputs are atomic.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import click
import numpy as np

from simulator.errors import UserError
from simulator.units import fmt_time
from workloads.agentic import AgenticParams
from workloads.loaders import MAX_TRACE_TIME
from workloads.nested import NestedParams
from workloads.rag import RagParams

#: The options several commands share.
_SEED = click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
                     help="Random seed (an integer >= 0).")
_BLOCK_TOKENS = click.option("--block-tokens", default=512, show_default=True,
                             type=click.IntRange(min=1),
                             help="Block size for traces without blocks (Azure) [tokens].")


def _out_path(output: str) -> Path:
    from simulator.cli.output import output_file

    return output_file(output, "-o", (".parquet",))


def _load(file: str, skip_bad: bool, block_tokens: int):
    from workloads.loaders import load

    return load(file, skip_bad=skip_bad, block_tokens=block_tokens)


def _block_tokens_apply(file: str, block_tokens: int) -> None:
    """``--block-tokens`` given for a trace that brings its own blocks (Mooncake, Parquet) would
    be ignored: a :class:`UserError` saying so (a missing file is left to the loader)."""
    from workloads.loaders import SHIPPED, shipped, trace_format

    ctx = click.get_current_context()
    if ctx.get_parameter_source("block_tokens") is not click.core.ParameterSource.COMMANDLINE:
        return
    path = shipped(file) if file in SHIPPED else Path(file)
    if path.is_file() and trace_format(path) != "azure":
        raise UserError(f"--block-tokens {block_tokens}: only for Azure traces, whose requests "
                        f"have no blocks; {file} brings its own blocks: drop it")


def _fmt(v: float) -> str:
    return f"{v:,.1f}"


@click.group("trace")
def trace() -> None:
    """Inspect, convert and generate request traces."""


@trace.command("stats")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--skip-bad", is_flag=True, help="Skip (and count) lines that do not parse.")
@_BLOCK_TOKENS
def stats(file: str, as_json: bool, skip_bad: bool, block_tokens: int) -> None:
    """Summarize FILE: a Mooncake .jsonl[.gz], Azure .csv[.gz], our .parquet, or a shipped name."""
    from workloads.stats import trace_stats

    _block_tokens_apply(file, block_tokens)
    df = _load(file, skip_bad, block_tokens)
    if not len(df):
        skipped = df.attrs["skipped_lines"]
        raise UserError(f"{file}: holds no requests" + (f" ({skipped} bad lines skipped)"
                                                         if skipped else "")
                        + "; nothing to summarize")
    summary = trace_stats(df)
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"{file}")
    span = summary["duration"]  # under a second in µs or ms, not "0.0 s"
    shown = f"{span:,.1f} s" if span >= 1 else fmt_time(span)
    click.echo(f"  requests             {summary['requests']:,} over {shown}")
    click.echo(f"  block refs           {summary['block_refs']:,} "
               f"({summary['block_tokens']} tokens per block)")
    click.echo(f"  distinct blocks      {summary['distinct_blocks']:,}")
    click.echo(f"  reuse fraction       {summary['reuse_fraction']:.1%}")
    click.echo(f"  prefix-cache hits    {summary['prefix_hit_fraction']:.1%}")
    click.echo(f"  span (pos.-indep.)   {summary['span_hit_fraction']:.1%}")
    for key in ("input_tokens", "output_tokens"):
        s = summary[key]
        click.echo(f"  {key:<20} mean {_fmt(s['mean'])}  p50 {_fmt(s['p50'])}  "
                   f"p99 {_fmt(s['p99'])}")
    if summary["turns_per_session"] is not None:
        click.echo(f"  sessions             {summary['sessions']:,}: "
                   f"{summary['turns_per_session']:.2f} turns each, "
                   f"{summary['calls_per_turn']:.2f} calls and "
                   f"{summary['tool_calls_per_turn']:.2f} tool calls per turn")
        click.echo(f"  cached prompt        {summary['cached_prompt_fraction']:.1%} "
                   "(unbounded prefix cache, tokens)")
    if summary["skipped_lines"]:
        click.echo(f"  skipped bad lines    {summary['skipped_lines']:,}")


@trace.command("convert")
@click.argument("file")
@click.option("-o", "--output", required=True, help="Output .parquet file.")
@click.option("--skip-bad", is_flag=True, help="Skip (and count) lines that do not parse.")
@_BLOCK_TOKENS
def convert(file: str, output: str, skip_bad: bool, block_tokens: int) -> None:
    """Convert FILE (Mooncake, Azure, Parquet or a shipped name) to our Parquet schema."""
    from workloads.schema import write_trace

    path = _out_path(output)
    _block_tokens_apply(file, block_tokens)
    df = _load(file, skip_bad, block_tokens)
    write_trace(df, path)
    skipped = df.attrs["skipped_lines"]
    click.echo(f"wrote {len(df):,} requests to {path}" + (f" ({skipped} bad lines skipped)"
                                                           if skipped else ""))


@trace.group("gen")
def gen() -> None:
    """Generate traces: agentic, rag, nested, selections."""


def _params_options(cls):
    """One click option per dataclass field (``--field-name``), typed by its default."""

    def decorate(func):
        for f in reversed(dataclasses.fields(cls)):
            name = "--" + f.name.replace("_", "-")
            if isinstance(f.default, bool):
                func = click.option(f"{name}/--no-{f.name.replace('_', '-')}", f.name,
                                    default=None, help=f"(default {f.default})")(func)
            else:
                func = click.option(name, f.name, type=type(f.default), default=None,
                                    help=f"(default {f.default})")(func)
        return func

    return decorate


def _build(cls, values: dict):
    given = {k: v for k, v in values.items() if v is not None}
    for k, v in given.items():  # the generators' own checks take inf for a large number
        if isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"--{k.replace('_', '-')} {v}: give a finite number (see --help)")
        if k.endswith(("_time", "_time_mean")) and v > MAX_TRACE_TIME:  # as a scenario's are
            raise UserError(f"--{k.replace('_', '-')} {v:g}: give seconds <= {MAX_TRACE_TIME:g} "
                            "(116 days, the latest arrival a trace may give)")
    try:
        return cls(**given)
    except ValueError as exc:  # the generator names its fields: name the options instead
        # field names are identifiers: between word boundaries no two can match at one place,
        # so the alternatives' order does not matter
        names = "|".join(re.escape(f.name) for f in dataclasses.fields(cls))
        msg = re.sub(rf"\b({names})\b", lambda m: "--" + m.group(1).replace("_", "-"),
                     str(exc))
        raise UserError(f"bad option: {msg} (see --help)") from None


def _check_size(command: str, params, lower: str, *, least: bool = False) -> None:
    """Refuse, before generating, a trace too large for this machine's memory (as ``kvfabric
    run`` does: :func:`simulator.runner.check_generated_size`); ``lower`` names what to lower."""
    from simulator.runner import MEMORY_SHARE, check_generated_size, memory_bytes

    check_generated_size(f"trace gen {command}", params.expected_size(),
                         MEMORY_SHARE * memory_bytes(), lower, least=least)


def _options(params, fields: tuple[str, ...]) -> str:
    """``--a (1), --b (2) or --c (3)``: the options of ``fields`` with ``params``' values."""
    named = [f"--{f.replace('_', '-')} ({getattr(params, f):g})" for f in fields]
    return f"{', '.join(named[:-1])} or {named[-1]}"


def _write_generated(df, path: Path, what: str) -> None:
    from workloads.schema import write_trace
    from workloads.spans import hit_rates

    # turns follow their task by think and decode times, so a trace generated up to a duration
    # near MAX_TRACE_TIME can end past it, where the reader refuses it: refuse to write it
    late = float(df["arrival_at"].max()) if len(df) else 0.0
    if late > MAX_TRACE_TIME:
        raise UserError(f"trace gen {what}: an arrival at {late:g} s, past the latest a trace may "
                        f"give ({MAX_TRACE_TIME:g} s, 116 days), so {path} could not be read "
                        "back; lower the duration or the times between turns")
    write_trace(df, path)
    rates = hit_rates(df)
    click.echo(f"wrote {len(df):,} {what} requests ({rates['block_refs']:,} block refs, "
               f"prefix hits {rates['prefix_hit_fraction']:.1%}, span hits "
               f"{rates['span_hit_fraction']:.1%}) to {path}")


@gen.command("agentic")
@click.option("-o", "--output", required=True, help="Output .parquet file.")
@_SEED
@click.option("--preset", default=None, help="Structured sessions fitted to published traffic "
              "(copilot_2026); its fields are changed with --param.")
@click.option("--param", "session_params", multiple=True, metavar="KEY=VALUE",
              help="With --preset: set a SessionParams field (repeatable), e.g. sessions=50.")
@_params_options(AgenticParams)
def gen_agentic(output: str, seed: int, preset: str | None, session_params: tuple[str, ...],
                **params) -> None:
    """Coding sub-agents over shared repositories (options: AgenticParams fields), or with
    --preset structured sessions → turns → calls → tool calls (workloads.sessions)."""
    from workloads.agentic import generate_agentic

    path = _out_path(output)
    if preset is not None or session_params:
        _gen_sessions(path, seed, preset, session_params, params)
        return
    p = _build(AgenticParams, params)
    _check_size("agentic", p, _options(p, ("task_rate", "duration_time", "subagents",
                                           "turns_mean")))
    _write_generated(generate_agentic(np.random.default_rng(seed), p), path, "agentic")


def _gen_sessions(path: Path, seed: int, preset: str | None, pairs: tuple[str, ...],
                  fleet_options: dict) -> None:
    from workloads.presets import session_params
    from workloads.sessions import SessionParams, generate_sessions

    given = sorted(k for k, v in fleet_options.items() if v is not None)
    if given:
        raise UserError(f"--{given[0].replace('_', '-')} applies to the fleet generator, not to "
                        "--preset; set session fields with --param KEY=VALUE")
    if preset is None:
        raise UserError("--param needs --preset (e.g. --preset copilot_2026)")
    types = {f.name: type(f.default) for f in dataclasses.fields(SessionParams)}
    values = {}
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        if not eq or key not in types:
            raise UserError(f"--param {pair}: give KEY=VALUE with KEY one of "
                            f"{', '.join(sorted(types))}")
        try:
            value = float(raw) if types[key] in (int, float) else types[key](raw)
            if isinstance(value, float) and not (math.isfinite(value) and (
                    types[key] is float or value.is_integer())):
                raise ValueError
            values[key] = types[key](value)
        except ValueError:
            raise UserError(f"--param {pair}: {raw!r} is not a valid {key} "
                            f"({'a finite ' if types[key] is float else 'an '}"
                            f"{types[key].__name__})") from None
    try:
        p = session_params(preset, **values)
    except ValueError as exc:
        raise UserError(f"bad option: {exc} (see --help)") from None
    _check_size("agentic", p, f"--param sessions={p.sessions}" if p.sessions else
                f"--param session_rate={p.session_rate:g} or --param duration_time="
                f"{p.duration_time:g}", least=True)
    _write_generated(generate_sessions(np.random.default_rng(seed), p), path, preset)


@gen.command("rag")
@click.option("-o", "--output", required=True, help="Output .parquet file.")
@_SEED
@_params_options(RagParams)
def gen_rag(output: str, seed: int, **params) -> None:
    """RAG requests whose retrieved documents are permuted (options: RagParams fields)."""
    from workloads.rag import generate_rag

    path = _out_path(output)
    p = _build(RagParams, params)
    _check_size("rag", p, _options(p, ("request_rate", "duration_time", "docs_per_request",
                                       "n_documents")))
    _write_generated(generate_rag(np.random.default_rng(seed), p), path, "rag")


@gen.command("nested")
@click.option("-o", "--output", required=True, help="Output .parquet file.")
@_SEED
@_params_options(NestedParams)
def gen_nested(output: str, seed: int, **params) -> None:
    """Best-of-n queries whose n answers feed a judge as commuting spans (NestedParams fields)."""
    from workloads.nested import generate_nested

    path = _out_path(output)
    p = _build(NestedParams, params)
    _check_size("nested", p, _options(p, ("request_rate", "duration_time", "candidates")))
    _write_generated(generate_nested(np.random.default_rng(seed), p), path, "nested")


#: The least memory one selection row takes [B]: three int64 cells and its block-id array's
#: header (measured: 144 B a row with 47-block contexts).
SELECTION_ROW_BYTES = 136.0


def _check_selections_size(df, steps: int, layers: int, max_requests: int) -> None:
    """Refuse, before sampling, selections too many for this machine's memory: a row per
    (request, step, layer), a request's steps capped at its output tokens."""
    from simulator.runner import MEMORY_SHARE, memory_bytes
    from simulator.units import fmt_bytes

    out = df["output_tokens"].to_numpy()[: max_requests or None]
    rows = float(np.minimum(out, steps).sum()) * layers
    need, limit = rows * SELECTION_ROW_BYTES, MEMORY_SHARE * memory_bytes()
    if need > limit:
        raise UserError(f"trace gen selections: {rows:,.0f} selections (requests × steps × "
                        f"layers) need at least {fmt_bytes(need)} of memory, more than this "
                        f"machine's {fmt_bytes(limit)}; lower --steps, --layers or "
                        "--max-requests")


@gen.command("selections")
@click.argument("trace_file")
@click.option("-o", "--output", required=True, help="Output .parquet file.")
@_SEED
@click.option("--kind", type=click.Choice(["dsa", "nsa", "dense"]), default="dsa",
              show_default=True, help="Sparse attention kind.")
@click.option("--top-k-tokens", default=2048, show_default=True, type=click.IntRange(min=1),
              help="DSA top-k [tokens].")
@click.option("--block-tokens", default=64, show_default=True, type=click.IntRange(min=1),
              help="Engine block [tokens].")
@click.option("--layers", default=61, show_default=True, type=click.IntRange(min=1),
              help="Layers per step.")
@click.option("--steps", default=4, show_default=True, type=click.IntRange(min=1),
              help="First decode steps per request.")
@click.option("--max-requests", default=64, show_default=True, type=click.IntRange(min=0),
              help="Requests to cover (0: all).")
@click.option("--skip-bad", is_flag=True, help="Skip bad lines of TRACE_FILE.")
def gen_selections(trace_file: str, output: str, seed: int, kind: str, top_k_tokens: int,
                   block_tokens: int, layers: int, steps: int, max_requests: int,
                   skip_bad: bool) -> None:
    """What the sparse sampler would pick for TRACE_FILE's requests, replayable by the engine."""
    from rich.console import Console
    from rich.progress import Progress

    from workloads.selections import generate_selections, write_selections
    from workloads.sparse import SparseSelector

    path = _out_path(output)  # (the counts' ranges are click's: IntRange above)
    try:
        selector = SparseSelector(kind=kind, top_k_tokens=top_k_tokens, block_tokens=block_tokens)
    except ValueError as exc:
        raise UserError(f"bad option: {exc}") from None
    df = _load(trace_file, skip_bad, 512)
    _check_selections_size(df, steps, layers, max_requests)
    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("sampling selections", total=None)
        sel = generate_selections(
            np.random.default_rng(seed), df, selector, n_layers=layers, steps=steps,
            max_requests=max_requests or None,
            progress=lambda done, total: bar.update(task, completed=done, total=total))
    write_selections(sel, path, block_tokens=block_tokens)
    click.echo(f"wrote {len(sel):,} selections ({sel['request_id'].nunique():,} requests × "
               f"≤{steps} steps × {layers} layers) to {path}")
