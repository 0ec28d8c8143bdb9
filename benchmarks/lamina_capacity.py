"""The Lamina study measured at capacity: disaggregated vs homogeneous at (about) equal cost.

Lamina's configurations (arXiv 2405.01814; REFERENCE.md "Lamina setup"), n = 2 micro-batches
(one model replica):

- LLaMA-33B: DOP (1, 2) — 1 × H100 + 2 × H20 ($20.32/h) — against 2 × H100 in TP 2 ($22.12/h);
- LLaMA-65B and Llama-3-70B: DOP (2, 4) — 2 × H100 + 4 × H20 ($40.64/h) — against 4 × H100 in
  TP 4 ($44.24/h);

on the traces Lamina used that kvfabric ships: Azure LLM 2023 code and conversation, Kimi
(Mooncake) conversation. (Lamina's fourth, a Kimi tool/agent trace, is not shipped: the Mooncake
release kvfabric carries has the conversation and synthetic traces only.)

Each run is a closed loop of ``--concurrency`` outstanding requests (more than either side's KV
holds, so both run KV-bound at capacity), prompts prefilled elsewhere as Lamina evaluates decode;
the throughput is the steady window's (``capacity_tokens_per_s``: after the first cohort of
``concurrency`` completions, before the drain). Printed per configuration and trace: capacity
[tok/s] of each side, the ratio, tokens/s per $/h of each side and their ratio, the mean decode
batch and TBT p50 of each side.

    python benchmarks/lamina_capacity.py                       # ~1–2 min on this machine
    python benchmarks/lamina_capacity.py --requests 6000 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = (
    ("llama-33b", "lamina_llama_33b"),
    ("llama-65b", "lamina_llama_65b"),
    ("llama-3-70b", "lamina_llama3_70b"),
)
TRACES = ("azure_llm_2023_code", "azure_llm_2023_conv", "mooncake_conversation")


def run_one(scenario_name: str, trace: str, requests: int, concurrency: int,
            layer_groups: int) -> dict:
    """Both policies on one configuration and trace; their summaries."""
    from simulator import Scenario, run

    sc = Scenario.load(ROOT / "scenarios" / f"{scenario_name}.toml")
    sc = sc.with_changes(
        workload=dataclasses.replace(sc.workload, trace=trace, concurrency=concurrency,
                                     time_scale=1.0),
        engine=dataclasses.replace(sc.engine, max_requests=requests, duration=None,
                                   layer_groups=layer_groups))
    return {p: run(sc, p).summary for p in ("disaggregated", "homogeneous")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000, help="requests per run")
    ap.add_argument("--concurrency", type=int, default=1024, help="outstanding requests")
    ap.add_argument("--layer-groups", type=int, default=4)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    rows = []
    head = (f"{'model':12s} {'trace':22s} {'disagg tok/s':>12s} {'homog tok/s':>12s} "
            f"{'ratio':>6s} {'d tok/s/$h':>10s} {'h tok/s/$h':>10s} {'ratio':>6s} "
            f"{'d batch':>7s} {'h batch':>7s} {'d TBT ms':>8s} {'h TBT ms':>8s}")
    print(head)
    t0 = time.perf_counter()
    for model, scenario_name in CONFIGS:
        for trace in TRACES:
            s = run_one(scenario_name, trace, args.requests, args.concurrency,
                        args.layer_groups)
            d, h = s["disaggregated"], s["homogeneous"]
            row = {"model": model, "trace": trace,
                   "disaggregated": {k: d.get(k) for k in
                                     ("capacity_tokens_per_s", "tokens_per_s_per_dollar_hour",
                                      "mean_batch", "tbt_p50", "cost_per_hour",
                                      "preemptions")},
                   "homogeneous": {k: h.get(k) for k in
                                   ("capacity_tokens_per_s", "tokens_per_s_per_dollar_hour",
                                    "mean_batch", "tbt_p50", "cost_per_hour", "preemptions")}}
            rows.append(row)
            dc, hc = d["capacity_tokens_per_s"], h["capacity_tokens_per_s"]
            dd, hd = d["tokens_per_s_per_dollar_hour"], h["tokens_per_s_per_dollar_hour"]
            print(f"{model:12s} {trace:22s} {dc:12.0f} {hc:12.0f} {dc / hc:6.2f} {dd:10.1f} "
                  f"{hd:10.1f} {dd / hd:6.2f} {d['mean_batch']:7.1f} {h['mean_batch']:7.1f} "
                  f"{d['tbt_p50'] * 1e3:8.2f} {h['tbt_p50'] * 1e3:8.2f}", flush=True)
    print(f"wall time {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
