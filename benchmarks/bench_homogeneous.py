"""The homogeneous loop's speed, exact against fast, on issue 15's TP4 workload.

The first ``--requests`` (2,000) requests of the Azure LLM 2023 conversation trace, open loop,
served by one tensor-parallel replica of Llama-3-70B on 4 × H100 (``scenarios/
lamina_llama3_70b.toml``'s baseline, every layer simulated unless ``--layer-groups``): both loops
run in this process one after the other, with raw SimPy's event rate measured in the same
process, and the fast mode's largest relative difference from the exact loop over the summary's
metrics and the per-request timestamps is printed beside the speeds (the contract:
``tests/test_disaggregation_fast.py``; the target: ≥ 500k decode tokens per wall-second).

    .venv/bin/python benchmarks/bench_homogeneous.py
    .venv/bin/python benchmarks/bench_homogeneous.py --requests 500 --repeat 3
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_engine import raw_simpy_rate  # noqa: E402

METRICS = ("ttft_p50", "ttft_p99", "tbt_p50", "tbt_p99", "throughput_tokens_per_s",
           "bytes_moved", "sim_time", "mean_batch")


def scenario(requests: int, groups: int):
    """The TP4 workload as a validated scenario."""
    from simulator.scenario import Scenario
    from simulator.sweep.spec import set_dotted

    data = tomllib.loads((ROOT / "scenarios" / "lamina_llama3_70b.toml").read_text())
    data["workload"].pop("concurrency", None)  # open loop: the trace's arrival times
    set_dotted(data, "workload.trace", "azure_llm_2023_conv")
    set_dotted(data, "engine.max_requests", requests)
    set_dotted(data, "engine.layer_groups", groups)
    set_dotted(data, "policies", ["homogeneous"])
    return Scenario.from_dict(data, source="bench_homogeneous", base=ROOT / "scenarios")


def timed(sc, trace, engine: str):
    from simulator.runner import run

    t = time.perf_counter()
    res = run(sc, "homogeneous", trace=trace, engine=engine)
    return res, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--layer-groups", type=int, default=0, help="0 = every layer (default)")
    ap.add_argument("--repeat", type=int, default=1, help="alternating runs of each; best kept")
    a = ap.parse_args()
    from simulator.runner import load_trace

    sc = scenario(a.requests, a.layer_groups)
    trace = load_trace(sc, sc.seed)
    walls: dict[str, list[float]] = {"exact": [], "fast": []}
    res = {}
    raw = []
    for _ in range(a.repeat):
        raw.append(raw_simpy_rate())
        for engine in ("exact", "fast"):
            res[engine], wall = timed(sc, trace, engine)
            walls[engine].append(wall)
            print(f"  {engine}: {wall:.1f} s", file=sys.stderr, flush=True)
    tokens = res["exact"].summary["decode_tokens"]
    print(f"raw SimPy (this process): {max(raw):,.0f} events/s; {len(trace):,} requests, "
          f"{tokens:,.0f} decode tokens, layer_groups = {a.layer_groups}")
    print(f"{'engine':<7}{'wall s':>9}{'events':>12}{'tokens/s':>11}{'µs/tok':>8}")
    for engine in ("exact", "fast"):
        w = min(walls[engine])
        print(f"{engine:<7}{w:>9.2f}{res[engine].summary['events']:>12,}{tokens / w:>11,.0f}"
              f"{1e6 * w / tokens:>8.2f}")
    print(f"fast / exact speed: {min(walls['exact']) / min(walls['fast']):.2f}×")
    e, f = res["exact"], res["fast"]
    diffs = {k: abs(f.summary[k] - e.summary[k]) / abs(e.summary[k]) for k in METRICS
             if e.summary[k]}
    cols = ["admitted_at", "first_token_at", "finished_at"]
    x, y = e.requests[cols].to_numpy(float), f.requests[cols].to_numpy(float)
    diffs["request timestamps"] = float(np.nanmax(np.abs(x - y) / np.maximum(np.abs(x), 1e-30)))
    worst = max(diffs, key=diffs.get)
    print(f"largest relative difference fast vs exact: {diffs[worst]:.1e} ({worst}); "
          f"fast engine: {f.summary['engine']}"
          + (f" ({f.summary['engine_fallback']})" if "engine_fallback" in f.summary else ""))


if __name__ == "__main__":
    main()
