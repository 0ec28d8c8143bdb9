"""Speed of sparse block selection: selected blocks produced per wall-second.

Workload: a batch of decode queries, each over a 256k-token context (262,144 tokens = 4,096
blocks of 64 tokens), selecting for all 61 layers of DeepSeek-V3.2 at once
(``SparseSelector.select_batch``). DSA picks top-2048 tokens = 32 blocks plus a 2-block recent
window per layer; every query has a 64-block focus set and a 4,000-block popular repository.
Also measured: NSA (16 + 8 blocks) and a mixed batch of context lengths (1k to 256k tokens).
Target: ≥ 1 million selected blocks per second (DSA, batch 64). Each case warms up once, then
runs for at least ``--seconds`` (default 2 s); the best of three runs is reported.

Last, the engine's own call (:mod:`simulator.engine.locate`): one query sampled for 16 decode steps ×
8 layer slots at once (``layer_groups = 8``) and × 61 (every layer), at Mooncake-like contexts;
printed as wall time per decode token — the figure to hold against the engine's per-token budget
(60 s for the whole Mooncake trace's 4.12 M decode tokens is 14.6 µs a token).

Every case is also run, in the same process, with the array code the compiled kernels replaced
(:class:`simulator.testing.sparse_reference.ArraySelector`: the same draws, the same
selections), and the ratio printed: this machine's speed varies, the ratio less.

    .venv/bin/python benchmarks/bench_sparse.py            # ~1 min
    .venv/bin/python benchmarks/bench_sparse.py --json     # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from simulator.testing.sparse_reference import array_selector
from workloads.focus import draw_focus
from workloads.sparse import SparseSelector

LAYERS = 61  # DeepSeek-V3.2 num_hidden_layers (HF config.json)
CONTEXT_BLOCKS = 262_144 // 64
TARGET = 1e6


def measure(selector: SparseSelector, contexts: np.ndarray, seconds: float, seed: int = 0,
            ) -> float:
    """Selected blocks per wall-second, best of three runs of at least ``seconds`` each."""
    rng = np.random.default_rng(seed)
    focus = np.full((len(contexts), 64), -1, dtype=np.int64)  # -1: padding, ignored
    for q, n in enumerate(contexts):
        f = draw_focus(rng, int(n) - 8, 4, 16)
        focus[q, : len(f)] = f
    popular = np.minimum(contexts, 4000)
    selector.select_batch(rng, contexts, LAYERS, focus=focus, popular_blocks=popular)  # warm up
    best = 0.0
    for _ in range(3):
        blocks, start = 0, time.perf_counter()
        while True:
            sel = selector.select_batch(rng, contexts, LAYERS, focus=focus,
                                        popular_blocks=popular)
            blocks += sel.total_blocks
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, blocks / elapsed)
    return best


def engine_time_per_token(context_blocks: int, seconds: float, steps: int = 16, slots: int = 8,
                          seed: int = 0, arrays: bool = False) -> float:
    """Wall time [s] per decode token of the engine's sampling call (one query, ``steps`` ×
    ``slots`` layer rows per call), best of three runs of at least ``seconds``; ``arrays``:
    with the array code in place of the kernels."""
    rng = np.random.default_rng(seed)
    sel = SparseSelector("dsa")
    if arrays:
        sel = array_selector(sel)
    focus = draw_focus(rng, context_blocks - 8, 4, 16)[None, :]
    args = (np.array([context_blocks]), steps * slots)
    kw = {"focus": focus, "popular_blocks": np.array([context_blocks // 2])}
    sel.select_batch(rng, *args, **kw)  # warm up
    best = float("inf")
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            sel.select_batch(rng, *args, **kw)
            calls += 1
        best = min(best, elapsed / max(calls, 1) / steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="queries per call")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum time per run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    full = np.full(args.batch, CONTEXT_BLOCKS, dtype=np.int64)
    mixed = np.geomspace(16, CONTEXT_BLOCKS, args.batch).astype(np.int64)
    cases = {
        f"dsa, 256k context, batch {args.batch} x {LAYERS} layers": (SparseSelector("dsa"), full),
        f"nsa, 256k context, batch {args.batch} x {LAYERS} layers": (SparseSelector("nsa"), full),
        f"dsa, 1k-256k contexts, batch {args.batch} x {LAYERS} layers":
            (SparseSelector("dsa"), mixed),
        f"dsa, 256k context, batch 1 x {LAYERS} layers": (SparseSelector("dsa"), full[:1]),
    }
    results = {name: measure(sel, ctx, args.seconds) for name, (sel, ctx) in cases.items()}
    baseline = {name: measure(array_selector(sel), ctx, args.seconds)
                for name, (sel, ctx) in cases.items()}
    headline = results[next(iter(results))]
    calls = [(n, slots) for slots in (8, LAYERS) for n in (100, 300, 1000)]
    per_token = {f"{n}-block context, 16 steps x {slots} slots":
                 (engine_time_per_token(n, args.seconds, slots=slots),
                  engine_time_per_token(n, args.seconds, slots=slots, arrays=True))
                 for n, slots in calls}
    if args.json:
        print(json.dumps({"blocks_per_s": results, "array_code_blocks_per_s": baseline,
                          "target": TARGET, "meets_target": headline >= TARGET,
                          "engine_time_per_token": {k: v[0] for k, v in per_token.items()},
                          "array_code_time_per_token": {k: v[1] for k, v in per_token.items()}}))
        return
    print(f"{'case':<52} {'kernels':>9} {'arrays':>9} {'ratio':>6}")
    for name, rate in results.items():
        print(f"{name:<52} {rate / 1e6:7.2f} M {baseline[name] / 1e6:7.2f} M "
              f"{rate / baseline[name]:5.2f}x   selected blocks/s")
    for name, (t, t_arrays) in per_token.items():
        print(f"engine call, {name:<39} {t * 1e6:7.1f}   {t_arrays * 1e6:7.1f}   "
              f"{t_arrays / t:5.2f}x  µs per token")
    verdict = "meets" if headline >= TARGET else "MISSES"
    print(f"headline (first line) {headline / 1e6:.2f} M/s {verdict} the 1 M/s target")


if __name__ == "__main__":
    main()
