"""What a run's results become: Parquet tables, ``summary.json``, plots and the manifest.

:func:`write_outputs` writes one Parquet file per record table (a ``policy`` and an ``engine``
column tell the runs apart), ``summary.json`` (each policy's summary with its traffic figures,
``notes`` on empty or degenerate runs, ``regret`` when the run compares policies) and the PNG plots
of :mod:`simulator.plots` into a folder (:mod:`simulator.cli.output` stages and swaps it);
:func:`manifest` says what made them. :func:`notes`, :func:`regret_report`,
:func:`traffic_figures` serve the printed report too (:mod:`simulator.cli.run`).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

#: Record tables a result may carry in its extras (written when present).
EXTRA_TABLES = ("link_classes", "class_timeline", "moe", "kv_transfers")


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
