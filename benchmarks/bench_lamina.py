"""The Lamina loop's fast mode against its exact loop: wall time and metric differences.

Each row runs one Lamina configuration on both loops in this process, one after the other, on
the same preloaded trace, and prints their wall times, the speed ratio, SimPy events, and the
fast mode's relative difference from the exact loop on the summary metrics of the engine
contract (TTFT and TBT p50/p99, throughput, capacity, bytes moved: within 5 % at p50 and on
throughput, 10 % at p99) and the largest over every request's timestamps. Rows:

- ``llama-3-70b``: ``scenarios/lamina_llama3_70b.toml`` as shipped (DOP (2, 4), n = 2, one TP-2
  slice, 3,000 Azure code requests, 1,024 outstanding, 4 layer slots);
- ``llama-3-70b-layers``: the same, every layer a slot (``layer_groups = 0``), 1,000 requests;
- ``deepseek-v3.2``: ``scenarios/lamina_deepseek_v32.toml`` as shipped (MLA + DSA, attention split
  by requests, 2,000 Mooncake requests);
- ``llama-33b-n4-eth100``: four micro-batches over three one-GPU slices of LLaMA-33B and two H20s
  behind 100 GbE, every layer, 200 requests at once — slices send to the same attention NICs at
  once, so flows of different micro-batches share links and composed slots are pushed back.

    .venv/bin/python benchmarks/bench_lamina.py
    .venv/bin/python benchmarks/bench_lamina.py --only llama-3-70b --requests 500
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

ROWS: dict[str, tuple[str, dict]] = {
    "llama-3-70b": ("lamina_llama3_70b", {}),
    "llama-3-70b-layers": ("lamina_llama3_70b", {"engine.layer_groups": 0,
                                                 "engine.max_requests": 1000}),
    "deepseek-v3.2": ("lamina_deepseek_v32", {}),
    "llama-33b-n4-eth100": ("lamina_llama_33b", {
        "topology.spec": "lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=4,nic=eth100",
        "disaggregation.model_gpus": 3, "disaggregation.micro_batches": 4,
        "disaggregation.attention_gpus": 2, "engine.layer_groups": 0,
        "engine.max_requests": 200, "workload.concurrency": 200}),
}
#: Column headings of the metrics.
SHORT = {"ttft_p50": "TTFT50", "ttft_p99": "TTFT99", "tbt_p50": "TBT50", "tbt_p99": "TBT99",
         "throughput_tokens_per_s": "thru", "capacity_tokens_per_s": "capac",
         "bytes_moved": "bytes"}
#: Metrics and their contract (relative).
METRICS = (("ttft_p50", 0.05), ("ttft_p99", 0.10), ("tbt_p50", 0.05), ("tbt_p99", 0.10),
           ("throughput_tokens_per_s", 0.05), ("capacity_tokens_per_s", 0.05),
           ("bytes_moved", 0.05))


def scenario(name: str, changes: dict, requests: int | None):
    """A shipped scenario with dotted fields changed, validated."""
    from simulator.scenario import Scenario
    from simulator.sweep.spec import set_dotted

    data = tomllib.loads((ROOT / "scenarios" / f"{name}.toml").read_text())
    for key, value in changes.items():
        set_dotted(data, key, value)
    if requests is not None:
        set_dotted(data, "engine.max_requests", requests)
    return Scenario.from_dict(data, source=f"bench_lamina:{name}", base=ROOT / "scenarios")


def rel(exact: float | None, fast: float | None) -> float:
    """``(fast − exact) / |exact|`` (0 when both are 0, missing or NaN — e.g. no steady
    window for the capacity)."""
    if exact is None or np.isnan(exact):
        return 0.0 if fast is None or np.isnan(fast) else float("inf")
    if not exact:
        return 0.0 if not fast else float("inf")
    return (fast - exact) / abs(exact)


def row(label: str, requests: int | None) -> bool:
    """Run one row on both loops, print it; True if the contract held."""
    from simulator.runner import load_trace, run

    name, changes = ROWS[label]
    sc = scenario(name, changes, requests)
    trace = load_trace(sc, sc.seed)
    res, wall = {}, {}
    for engine in ("exact", "fast"):
        t = time.perf_counter()
        res[engine] = run(sc, "disaggregated", trace=trace, engine=engine)
        wall[engine] = time.perf_counter() - t
    e, f = res["exact"], res["fast"]
    diffs = {m: rel(e.summary.get(m), f.summary.get(m)) for m, _ in METRICS}
    held = all(abs(diffs[m]) <= tol for m, tol in METRICS)
    cols = ["admitted_at", "first_token_at", "finished_at"]
    x, y = e.requests[cols].to_numpy(float), f.requests[cols].to_numpy(float)
    worst = float(np.nanmax(np.abs(y - x) / np.maximum(np.abs(x), 1e-30)))
    print(f"{label:<21}{len(trace):>6,}{wall['exact']:>9.1f}{wall['fast']:>8.1f}"
          f"{wall['exact'] / wall['fast']:>7.2f}×{e.summary['events']:>11,}"
          f"{f.summary['events']:>9,}  "
          + " ".join(f"{100 * diffs[m]:+7.3f}" for m, _ in METRICS)
          + f"  {worst:8.1e}  {'yes' if held else 'NO'}"
          + ("" if f.summary["engine"] == "fast" else f"  (fast engine: {f.summary['engine']})"),
          flush=True)
    return held


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated rows: " + ", ".join(ROWS))
    ap.add_argument("--requests", type=int, help="requests per run (default: each row's)")
    a = ap.parse_args(argv)
    labels = a.only.split(",") if a.only else list(ROWS)
    for label in labels:
        if label not in ROWS:
            ap.error(f"unknown row {label!r}; choose from {', '.join(ROWS)}")
    print(f"{'row':<21}{'reqs':>6}{'exact s':>9}{'fast s':>8}{'ratio':>8}{'events ex':>11}"
          f"{'fast':>9}  " + " ".join(f"{SHORT[m]:>7}" for m, _ in METRICS)
          + "  (% fast vs exact)  worst req  contract")
    held = sum(row(label, a.requests) for label in labels)
    print(f"contract held: {held} of {len(labels)}")
    return 0 if held == len(labels) else 1


if __name__ == "__main__":
    sys.exit(main())
