"""The ``copilot_2026`` preset against the aggregates GitHub Copilot's trace release publishes.

Generates the preset's sessions for a few seeds at the engine's 64-token pages and prints, per
aggregate, the target (Azure/AzurePublicDataset ``GitHubCopilotCodingAgentDataset2026.md``), the
mean over seeds, the spread between seeds and the relative error. ~20 s a seed at 600 sessions
(1.6 GB for the hit classification; use ``--block-tokens 256`` for a quarter of that).

    .venv/bin/python benchmarks/copilot_preset.py                 # 3 seeds × 600 sessions
    .venv/bin/python benchmarks/copilot_preset.py --seeds 1 --sessions 200 --json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from workloads.presets import compare, session_params
from workloads.sessions import generate_sessions
from workloads.stats import trace_stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=600)
    ap.add_argument("--block-tokens", type=int, default=64)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args()
    per_seed = []
    extra = []
    for seed in range(args.seeds):
        p = session_params("copilot_2026", sessions=args.sessions,
                           block_tokens=args.block_tokens)
        df = generate_sessions(np.random.default_rng(seed), p)
        stats = trace_stats(df)
        per_seed.append(compare(stats))
        extra.append({"calls": len(df), "span_hit_fraction": stats["span_hit_fraction"],
                      "prefix_hit_fraction": stats["prefix_hit_fraction"],
                      "padding_share": df.attrs["padding_tokens"] / df["input_tokens"].sum()})
    out = {}
    for key in per_seed[0]:
        values = np.array([s[key]["value"] for s in per_seed])
        target = per_seed[0][key]["target"]
        out[key] = {"target": target, "mean": float(values.mean()),
                    "spread": float(values.max() - values.min()),
                    "relative_error": float(values.mean() / target - 1.0)}
    for key in extra[0]:
        out[key] = {"mean": float(np.mean([e[key] for e in extra]))}
    if args.json:
        print(json.dumps(out))
        return
    print(f"copilot_2026: {args.seeds} seeds × {args.sessions} sessions, "
          f"{args.block_tokens}-token blocks")
    print(f"  {'aggregate':<28}{'target':>12}{'generated':>12}{'spread':>10}{'error':>8}")
    for key, row in out.items():
        if "target" in row:
            print(f"  {key:<28}{row['target']:>12,.3f}{row['mean']:>12,.3f}"
                  f"{row['spread']:>10,.3f}{row['relative_error']:>+8.1%}")
        else:
            print(f"  {key:<28}{'':>12}{row['mean']:>12,.3f}")


if __name__ == "__main__":
    main()
