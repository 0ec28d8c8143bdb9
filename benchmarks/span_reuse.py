"""Prefix, span and no reuse on the same traces: RAG and nested generation (one H100, an 8B
model), and optionally the Copilot-like agents on 2 × DGX H100.

For each scenario, runs its trace under each reuse rule (``simulator.runner.compare_reuse``) and
prints TTFT p50/p99, the prefill tokens computed and the share of prompt blocks reused; for
nested generation also the judges' TTFT p50 (the calls whose prompts hold the answers).

    .venv/bin/python benchmarks/span_reuse.py              # RAG + nested, ~10 s
    .venv/bin/python benchmarks/span_reuse.py --copilot    # + copilot_agents.toml (minutes)
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from simulator import Scenario, run
from simulator.engine.trace import load_trace
from simulator.runner import compare_reuse

ROOT = Path(__file__).resolve().parents[1] / "scenarios"


def show(path: Path, rules: tuple[str, ...], judges: bool = False) -> None:
    sc = Scenario.load(path)
    trace = load_trace(sc, sc.seed)
    table = compare_reuse(sc, rules=rules, trace=trace)
    if judges:
        mask = (trace["spans"].map(len) > 0).to_numpy()
        p50 = []
        for rule in rules:
            sc_r = sc.with_changes(placement=dataclasses.replace(sc.placement, reuse=rule))
            r = run(sc_r, sc.policies[0], trace=trace).requests
            p50.append(float(np.median((r["first_token_at"] - r["arrival_at"])[mask])))
        table["judge_ttft_p50"] = p50
    print(f"{path.name}: {len(trace)} requests")
    for col in [c for c in table.columns if "ttft" in c]:
        table[col] = (table[col] * 1e3).round(2)
    print(table.rename(columns=lambda c: c + " [ms]" if "ttft" in c else c).to_string(
        index=False))
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copilot", action="store_true", help="also copilot_agents.toml (slow)")
    args = ap.parse_args()
    show(ROOT / "rag_spans.toml", ("prefix", "span", "none"))
    show(ROOT / "nested_generation.toml", ("prefix", "span", "none"), judges=True)
    if args.copilot:
        show(ROOT / "copilot_agents.toml", ("prefix", "span"))


if __name__ == "__main__":
    main()
