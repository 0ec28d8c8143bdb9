"""Are a change's records identical to another revision's? A check for behaviour-preserving work.

Runs a fixed set of cases through the public API only (``from simulator import Scenario, run``,
stable across revisions) and compares every table of every result — ``requests``, ``rounds``,
``iterations``, ``gpus``, ``links``, ``link_timeline`` — and the summary (less ``wall_time``)
cell by cell, NaN equal to NaN, floats bit for bit:

- ``default``: ``scenarios/agentic_repo.toml`` under its policies (route, fetch, adaptive);
- ``mooncake200``: the first 200 requests of ``scenarios/mooncake_conversation.toml`` under
  route and under fetch;
- ``lamina_*``: the four Lamina scenarios under ``disaggregated`` and ``homogeneous``.

    python benchmarks/same_records.py --base HEAD~3      # that revision (a temporary worktree)
                                                         # against this checkout
    python benchmarks/same_records.py --save DIR         # write this checkout's records to DIR
    python benchmarks/same_records.py --against DIR      # compare this checkout with DIR
    python benchmarks/same_records.py --base 7171816 --legacy-serving
        # this checkout under the serving loop kvfabric ran before chunked prefill
        # (simulator.engine.scheduler.LEGACY) against a revision from before it; columns the
        # newer records add are left out of the comparison

Prints one line per (case, policy, table) that differs — with the largest relative difference
of its numeric cells where the tables have the same shape — and a last line ``identical: N
tables`` or ``DIFFERENT: …``; exit status 1 when anything differs. ``--rtol X`` (for a change
that only reorders float additions) counts a table whose cells all agree within ``X`` relative
as ``close``, named on a line of its own, not as a difference. Summary keys only this checkout has
(a key added since ``--base``, e.g. ``engine`` and ``copy_hit_rate``) are named on a ``note:``
line and not compared; a key this checkout lost is a difference. ``--quick`` runs the Lamina cases only
up to 300 requests (seconds instead of a minute).

``--engine fast`` runs the fast engine's cases instead, each under route, fetch and adaptive
(minutes on one core; for work on :mod:`simulator.engine.fast` and what it calls):

- ``fast_mooncake150``: the first 150 requests of ``scenarios/mooncake_conversation.toml``,
  every layer simulated; ``fast_mooncake400g8``: the first 400 with ``layer_groups = 8``;
- ``fast_repo``: ``scenarios/agentic_repo.toml``;
- ``fast_cluster``: ``scenarios/agentic_cluster.toml`` up to 300 requests and 60 s.

    python benchmarks/same_records.py --engine fast --save DIR    # and --against DIR, --base REV
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("requests", "rounds", "iterations", "gpus", "links", "link_timeline")
#: Summary keys that measure the machine, not the simulation.
VOLATILE = {"wall_time"}


def cases(quick: bool, engine: str = "exact") -> list[tuple[str, str, dict, tuple[str, ...] | None]]:
    """(case name, scenario path, engine changes, policies or None for the scenario's own)."""
    sc = ROOT / "scenarios"
    if engine == "fast":
        every = ("route", "fetch", "adaptive")
        moon = str(sc / "mooncake_conversation.toml")
        return [("fast_mooncake150", moon, {"max_requests": 150, "layer_groups": 0,
                                            "duration": None, "mode": "fast"}, every),
                ("fast_mooncake400g8", moon, {"max_requests": 400, "layer_groups": 8,
                                              "duration": None, "mode": "fast"}, every),
                ("fast_repo", str(sc / "agentic_repo.toml"), {"mode": "fast"}, every),
                ("fast_cluster", str(sc / "agentic_cluster.toml"),
                 {"max_requests": 300, "duration": 60.0, "mode": "fast"}, every)]
    out = [("default", str(sc / "agentic_repo.toml"), {}, None),
           ("mooncake200", str(sc / "mooncake_conversation.toml"), {"max_requests": 200},
            ("route", "fetch"))]
    for name in ("lamina_llama_33b", "lamina_llama_65b", "lamina_llama3_70b",
                 "lamina_deepseek_v32"):
        out.append((name, str(sc / f"{name}.toml"), {"max_requests": 300} if quick else {},
                    None))
    return out


def save(out_dir: Path, quick: bool, legacy_serving: bool = False,
         engine_mode: str = "exact") -> None:
    """Run every case with the ``simulator`` importable now; write its records to ``out_dir``
    (with ``legacy_serving``, under :data:`simulator.engine.scheduler.LEGACY`)."""
    from simulator import Scenario, run

    for case, path, engine, policies in cases(quick, engine_mode):
        scenario = Scenario.load(path)
        if engine:
            scenario = scenario.with_changes(engine=dataclasses.replace(scenario.engine, **engine))
        if legacy_serving:
            from simulator.engine.scheduler import LEGACY

            scenario = scenario.with_changes(serving=LEGACY)
        for policy in policies or scenario.policies:
            res = run(scenario, policy=policy, seed=scenario.seed)
            d = out_dir / case / policy
            d.mkdir(parents=True, exist_ok=True)
            for table in TABLES:
                getattr(res, table).to_parquet(d / f"{table}.parquet")
            summary = {k: v for k, v in res.summary.items() if k not in VOLATILE}
            (d / "summary.json").write_text(json.dumps(summary, sort_keys=True, default=str))
            print(f"saved {case}/{policy}", file=sys.stderr)


def _same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def largest_relative_difference(x, y) -> float | None:
    """The largest ``|x − y| / max(|x|, |y|)`` over two tables' numeric cells (0 where both are
    0 or both NaN; inf where one is NaN); None where their shapes, columns or other cells
    differ."""
    import numpy as np
    import pandas as pd

    if x.shape != y.shape or list(x.columns) != list(y.columns):
        return None
    worst = 0.0
    for col in x.columns:
        a, b = x[col], y[col]
        if not (pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b)) or \
                pd.api.types.is_bool_dtype(a):
            if not a.equals(b):
                return None
            continue
        a, b = a.to_numpy(float), b.to_numpy(float)
        both_nan = np.isnan(a) & np.isnan(b)
        scale = np.maximum(np.abs(a), np.abs(b))
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(both_nan | (a == b), 0.0, np.abs(a - b) / scale)
        rel = np.where(np.isnan(rel), np.inf, rel)
        worst = max(worst, float(rel.max(initial=0.0)))
    return worst


def compare(a_dir: Path, b_dir: Path, new_columns: bool = False,
            rtol: float | None = None) -> list[str]:
    """Differences between two saved record folders (empty if identical); with
    ``new_columns``, columns or summary keys only ``b_dir`` has are left out; with ``rtol``,
    tables whose numeric cells all agree within it are printed as close, not returned."""
    import pandas as pd

    diffs: list[str] = []
    added: set[str] = set()
    runs_a = sorted(p.relative_to(a_dir) for p in a_dir.glob("*/*") if p.is_dir())
    runs_b = sorted(p.relative_to(b_dir) for p in b_dir.glob("*/*") if p.is_dir())
    if runs_a != runs_b:
        diffs.append(f"runs differ: {sorted(set(runs_a) ^ set(runs_b))}")
    count = close = 0
    for run_dir in runs_a:
        if run_dir not in runs_b:
            continue
        for table in TABLES:
            x = pd.read_parquet(a_dir / run_dir / f"{table}.parquet")
            y = pd.read_parquet(b_dir / run_dir / f"{table}.parquet")
            if new_columns and len(y.columns) > len(x.columns):
                y = y[[c for c in y.columns if c in x.columns]]
            count += 1
            try:
                pd.testing.assert_frame_equal(x, y, check_exact=True)
            except AssertionError as exc:
                first = str(exc).strip().splitlines()[:3]
                worst = largest_relative_difference(x, y)
                said = "" if worst is None else f" | largest relative difference {worst:.3g}"
                if rtol is not None and worst is not None and worst <= rtol:
                    close += 1
                    print(f"close: {run_dir}/{table}{said}")
                else:
                    diffs.append(f"{run_dir}/{table}: {' | '.join(first)}{said}")
        sa = json.loads((a_dir / run_dir / "summary.json").read_text())
        sb = json.loads((b_dir / run_dir / "summary.json").read_text())
        count += 1
        added.update(set(sb) - set(sa))
        keys = sorted(set(sa))
        bad = [k for k in keys if not _same_value(sa.get(k), sb.get(k))]
        if bad:
            shown = ", ".join(f"{k}: {sa.get(k)} vs {sb.get(k)}" for k in bad[:5])
            diffs.append(f"{run_dir}/summary: {shown}")
    if added:
        print(f"note: summary keys new in this checkout, not compared: {', '.join(sorted(added))}")
    if not diffs:
        print(f"identical: {count - close} tables" + (f", close: {close}" if close else ""))
    return diffs


def is_revision(rev: str) -> bool:
    """``rev`` names a commit of the checkout at ``ROOT``."""
    got = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet",
                          f"{rev}^{{commit}}"], capture_output=True, check=False)
    return got.returncode == 0


def save_revision(rev: str, out_dir: Path, quick: bool, engine_mode: str = "exact") -> None:
    """Check ``rev`` out into a temporary worktree and save its records with this script."""
    with tempfile.TemporaryDirectory() as tmp:
        wt = Path(tmp) / "wt"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(wt), rev],
                       check=True, capture_output=True)
        try:
            env = dict(os.environ, PYTHONPATH=str(wt))
            cmd = [sys.executable, str(Path(__file__).resolve()), "--save", str(out_dir),
                   "--root", str(wt)]
            if quick:
                cmd.append("--quick")
            cmd += ["--engine", engine_mode]
            subprocess.run(cmd, check=True, env=env, cwd=str(wt))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)],
                           check=False, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", help="a git revision to compare this checkout against")
    ap.add_argument("--save", type=Path, help="write this checkout's records here")
    ap.add_argument("--against", type=Path, help="compare this checkout with saved records")
    ap.add_argument("--quick", action="store_true", help="Lamina cases up to 300 requests")
    ap.add_argument("--legacy-serving", action="store_true",
                    help="run this checkout under the serving loop from before chunked prefill")
    ap.add_argument("--engine", default="exact", choices=("exact", "fast"),
                    help="which engine's cases to run (see the module docstring)")
    ap.add_argument("--rtol", type=float, help="count tables within this relative difference "
                    "as close, not different")
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)  # the checkout to run from
    args = ap.parse_args(argv)
    global ROOT
    if args.root is not None:
        ROOT = args.root.resolve()
    if args.save is not None:
        save(args.save, args.quick, args.legacy_serving, args.engine)
        return 0
    if args.base is not None and not is_revision(args.base):
        ap.error(f"--base {args.base!r}: not a commit of {ROOT} (give a branch, tag or hash)")
    if args.base is None and args.against is not None and not args.against.is_dir():
        ap.error(f"--against {str(args.against)!r}: no such folder (make one with --save DIR)")
    with tempfile.TemporaryDirectory() as tmp:
        mine = Path(tmp) / "mine"
        if args.base is not None:
            theirs = Path(tmp) / "base"
            save_revision(args.base, theirs, args.quick, args.engine)
        elif args.against is not None:
            theirs = args.against
        else:
            ap.error("give --base REV, --against DIR or --save DIR")
        save(mine, args.quick, args.legacy_serving, args.engine)
        diffs = compare(theirs, mine, new_columns=args.legacy_serving, rtol=args.rtol)
    for d in diffs:
        print(d)
    if diffs:
        print(f"DIFFERENT: {len(diffs)} tables")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
