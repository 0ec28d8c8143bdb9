"""Random valid scenarios through both engines: the search for bugs the written tests miss.

Each case is a scenario drawn at random from the whole space a user can write — topologies and
GPUs, models and selections, placements and host tiers, serving options, every workload kind,
deployments and pools — validated as ``kvfabric`` validates a file (a refusal is fine: it must be
one :class:`~simulator.errors.UserError` line) and then run:

- under its first policy on **both engines** (for a quarter of the cases checking the KV
  directory after every iteration, ``run(..., check_invariants=True)``), each run held to the
  invariants of
  :func:`simulator.testing.invariants.check_run` (every request once, completed or with a reason;
  timestamps in order; bytes sent = bytes delivered; phases add up; steps one at a time) and to
  the summary's own (:func:`summary_problems`: finite, non-negative metrics; decode tokens and
  unfinished requests that match the records); the two engines hold the same requests;
- under its other policy (if it names two) on its own engine, held to the same;
- again under the first policy on its own engine: the **same seed gives the same summary**;
- with one request (``--lone`` makes every case so), the engines' summaries within 1e-6 of each
  other (:func:`lone_differences`: issue 15's contract for a request alone);
- for some cases, through the **command line** (``kvfabric run FILE --json --no-write``): exit 0
  and strict JSON.

Three generators (``--kind``, in :mod:`fuzz_draws`): ``plain`` (every section at once),
``wide`` (a ``[deployment]``, other GPU kinds, oversubscribed or RoCE fabrics, odd block sizes,
foldings, cuts and seeds) and ``pools`` (prefill units feeding EP deployments, and Lamina /
homogeneous pools). A case that runs past ``--timeout`` seconds (``SIGALRM``: Unix) is reported
and skipped (known slow shapes: tiny prefill chunks of long prompts on the exact engine, every
chunk a step; the KV directory checked every iteration over long prompts).

    python benchmarks/fuzz.py --seed 81 --cases 200
    python benchmarks/fuzz.py --seed 81 --cases 120 --kind wide --out wide81.jsonl

Prints a line per case (``ok``, ``REFUSED``, ``TIMEOUT``, ``PROBLEM``, ``ERROR``) and a last line
of counts; exit status 1 if any case broke an invariant or raised anything but a refusal.
``--out`` keeps every case (its scenario as a dict, ``Scenario.from_dict`` replays it) as JSON
lines. The draws are Python's ``random.Random(seed)``: the same seed, the same cases.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback

import tomli_w
from fuzz_draws import KINDS, scenario_fields

from simulator import Scenario, run
from simulator.errors import UserError
from simulator.runner import check, load_trace
from simulator.testing.invariants import check_run

# -- the checks ----------------------------------------------------------------------------------


#: Summary metrics over completed requests: NaN ("no data") where none completed.
PER_REQUEST = ("ttft_p50", "ttft_p99", "throughput_tokens_per_s")


def summary_problems(res) -> list[str]:
    """What a result's summary says that its records or arithmetic deny: a metric infinite,
    negative, or NaN although requests completed (NaN is "no data": nothing completed);
    decode tokens other than the requests' sum; unfinished requests miscounted."""
    s, req = res.summary, res.requests
    out = []
    for key, value in s.items():
        if isinstance(value, float) and math.isinf(value):
            out.append(f"summary {key} is infinite")
    done = int(req["completed"].sum())
    for key in (*PER_REQUEST, "sim_time", "bytes_moved"):
        value = s.get(key)
        no_data = not done and key in PER_REQUEST and isinstance(value, float) and \
            math.isnan(value)
        if value is not None and not no_data and not (isinstance(value, int | float)
                                                      and value >= 0):
            out.append(f"summary {key} = {value!r} with {done} requests completed")
    if "decode_tokens" in s and int(req["tokens_generated"].sum()) != s["decode_tokens"]:
        out.append(f"summary decode_tokens {s['decode_tokens']} against "
                   f"{int(req['tokens_generated'].sum())} generated")
    unfinished = sum(s.get("unfinished", {}).values())
    if unfinished != len(req) - done:
        out.append(f"summary counts {unfinished} unfinished, the records {len(req) - done}")
    if (req["tokens_generated"] > req["output_tokens"]).any():
        out.append("a request generated more tokens than it asked for")
    return out


def problems(res, trace, tag: str) -> list[str]:
    """Every invariant ``res`` breaks (:func:`check_run`, :func:`summary_problems`), each
    prefixed with ``tag``."""
    out = []
    try:
        check_run(res, trace)
    except AssertionError as e:
        out.append(f"{e}")
    out += summary_problems(res)
    return [f"{tag}: {p}" for p in out]


#: Summary keys the engines must agree on for a request alone (issue 15's contract: 1e-6).
LONE_KEYS = ("sim_time", "ttft_p50", "tbt_p50", "tbt_p99", "tpot_p50", "decode_tokens",
             "prefill_tokens", "completed", "bytes_moved")


def lone_differences(exact: dict, fast: dict, rel: float = 1e-6) -> dict:
    """The summary keys of :data:`LONE_KEYS` on which the two engines' runs of one request
    differ by more than ``rel`` relative (NaN equal to NaN): the fast engine's contract."""
    out = {}
    for k in LONE_KEYS:
        a, b = exact.get(k), fast.get(k)
        if a is None or b is None:
            continue
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            continue
        if not abs(a - b) <= rel * max(abs(a), abs(b)):
            out[k] = (a, b)
    return out


def _same(a: dict, b: dict) -> dict:
    """The summary keys on which ``a`` and ``b`` differ, ``wall_time`` aside (compared as JSON
    text: NaN equal to NaN, inside lists too)."""
    def text(x):
        return json.dumps(x, sort_keys=True, default=str)
    return {k: (a.get(k), b.get(k)) for k in (set(a) | set(b)) - {"wall_time"}
            if text(a.get(k)) != text(b.get(k))}


def _cli(d: dict, timeout: float) -> list[str]:
    """Run ``d`` through ``kvfabric run FILE --json --no-write``: exit 0 and strict JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fuzz.toml")
        with open(path, "wb") as f:
            tomli_w.dump(scenario_fields(d), f)
        cp = subprocess.run(["kvfabric", "run", path, "--json", "--no-write", "--jobs", "1"],
                            capture_output=True, text=True, timeout=timeout)
    if cp.returncode != 0:
        return [f"cli: exit {cp.returncode}: {cp.stderr[-400:]}"]

    def strict(c):
        raise ValueError(f"not strict JSON: {c}")
    try:
        json.loads(cp.stdout, parse_constant=strict)
    except ValueError as e:
        return [f"cli: {e}"]
    return []


class _Timeout(Exception):
    pass


def _alarm(*_) -> None:
    raise _Timeout


def run_case(d: dict, timeout: int = 90) -> dict:
    """Validate and run one drawn scenario (module docstring); ``{"status", "problems",
    "detail", "time"}``, status one of ``ok``, ``REFUSED``, ``TIMEOUT``, ``PROBLEM``,
    ``ERROR``."""
    out: dict = {"status": "ok", "problems": [], "detail": ""}
    t = time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        sc = Scenario.from_dict(scenario_fields(d))
        check(sc, tuple(d["policies"]))  # what run() checks before it loads a trace itself
        trace = load_trace(sc, sc.seed)
        first, others = d["policies"][0], d["policies"][1:]
        probs = out["problems"]
        for other in others:
            probs += problems(run(sc, other, trace=trace), trace, other)
        res = {}
        for engine in ("exact", "fast"):
            res[engine] = run(sc, first, trace=trace, engine=engine,
                              check_invariants=bool(d.get("_inv")))
            probs += problems(res[engine], trace, f"{first} {engine}")
        if set(res["exact"].requests["request_id"]) != set(res["fast"].requests["request_id"]):
            probs.append("the engines hold different requests")
        if len(trace) == 1:  # a request alone: the fast engine's times are the exact one's
            apart = lone_differences(res["exact"].summary, res["fast"].summary)
            if apart:
                probs.append(f"{first}: one request, the engines apart: {apart}")
        mode = d["engine"]["mode"]
        again = _same(res[mode].summary, run(sc, first, trace=trace, engine=mode).summary)
        if again:
            probs.append(f"{first} {mode} again: {again}")
        if d.get("_cli"):
            probs += _cli(d, timeout)
        if probs:
            out["status"] = "PROBLEM"
    except UserError as e:
        out["status"], out["detail"] = "REFUSED", str(e)
        if "\n" in str(e).strip():
            out["status"] = "PROBLEM"
            out["problems"].append(f"a refusal of more than one line: {e}")
    except _Timeout:
        out["status"] = "TIMEOUT"
    except Exception as e:  # noqa: BLE001 (anything but a refusal is a finding)
        out["status"] = "ERROR"
        out["detail"] = "".join(traceback.format_exception(e)[-6:])
    finally:
        signal.alarm(0)
    out["time"] = round(time.perf_counter() - t, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="the draws' seed")
    ap.add_argument("--cases", type=int, default=50, help="cases to draw")
    ap.add_argument("--start", type=int, default=0, help="the first case to run (resume)")
    ap.add_argument("--kind", choices=sorted(KINDS), default="plain", help="the generator")
    ap.add_argument("--timeout", type=int, default=90, help="seconds a case may take")
    ap.add_argument("--out", help="also write every case as a JSON line here")
    ap.add_argument("--lone", action="store_true",
                    help="one request per case (engine.max_requests = 1): the engines' "
                    "contract for a request alone, on every case")
    args = ap.parse_args(argv)
    if args.cases < 1 or args.timeout < 1 or args.start < 0:
        ap.error("--cases and --timeout must be at least 1, --start at least 0")
    rng = random.Random(args.seed)
    cases = [KINDS[args.kind](rng) for _ in range(args.cases)]
    if args.lone:  # after the draws: the same cases, each cut to its first request
        for d in cases:
            d["engine"]["max_requests"] = 1
    try:  # before any case: a path that cannot be written is one line, exit 2
        log = open(args.out, "a") if args.out else None  # noqa: SIM115 (a line per case)
    except OSError as e:
        ap.error(f"--out {args.out}: {e.strerror}; give a file in a folder that exists")
    counts: dict[str, int] = {}
    for i in range(args.start, args.cases):
        o = run_case(cases[i], args.timeout)
        counts[o["status"]] = counts.get(o["status"], 0) + 1
        print(i, o["status"], o["time"], "; ".join(o["problems"])[:600],
              o["detail"].strip()[-400:], flush=True)
        if log:
            log.write(json.dumps({"case": i, **o, "scenario": cases[i]}) + "\n")
            log.flush()
    if log:
        log.close()
    print(" ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 1 if counts.get("PROBLEM") or counts.get("ERROR") else 0


if __name__ == "__main__":
    sys.exit(main())
