"""Measure grouped GEMMs, which no shipped table holds, and compare them with the kernel model.

The GEMM model (``simulator/gpu/operators.py``, ``gemm``) streams a grouped GEMM's weights at
the HBM share of *all* its matrices, ``em·G·nk/(G·nk + b0)``, and its activations at one
matrix's — an assumption (stop 80; docs/accuracy.md, *Known faults*): every GEMM the profiles
were fitted on is a single matrix. This script measures what the assumption is about, on one
NVIDIA GPU with PyTorch:

    python benchmarks/gpu/measure_grouped_gemm.py --out calibration/h200/   # needs CUDA
    python benchmarks/gpu/measure_grouped_gemm.py --dry-run --out /tmp/g    # CPU: the script only

It writes ``<gpu>_grouped_gemm.csv`` — ``model, op, dtype, groups, m, n, k, copies, time_s, p10,
p90, weight_bytes, bytes_per_s`` — for MLA's absorbed per-head products (DeepSeek-V3's 128
heads and Kimi K2's 64: ``W_UK`` 512 × 128 and ``W_UV`` 128 × 512 per head) over 1 to 128 heads,
and DeepSeek-V3's routed experts (7,168 → 4,096) over 1 to 32 experts, as ``torch.bmm``
(equal rows per group). ``m`` counts the rows of all groups, as the model's ``m`` does (each
decoding token through every head: ``groups × tokens``). As ``calibration/h200/measure_gemm.py``
does for single matrices, each point cycles through enough distinct weight copies (≥ 256 MB in
all) inside one CUDA graph that weights come from HBM, not L2; time = graph time / GEMMs.

Then, without a GPU:

    python benchmarks/gpu/measure_grouped_gemm.py --compare calibration/h200/h200_grouped_gemm.csv --gpu H200

prints each row's measured time beside the model's (the shipped profile of ``--gpu``) and
beside the model as it was before stop 80 (every byte at one matrix's share), and the median
and p90 relative error of each.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: (model, op, heads or experts, n, k): y[m, n] = x[m, k]·W[k, n] per group.
SHAPES = [("deepseek-v3", "w_uk_absorb", 128, 512, 128),
          ("deepseek-v3", "w_uv_absorb", 128, 128, 512),
          ("kimi-k2", "w_uk_absorb", 64, 512, 128),
          ("kimi-k2", "w_uv_absorb", 64, 128, 512),
          ("deepseek-v3", "expert_gate_up", 32, 4096, 7168)]
#: Rows per group (decode: tokens per GPU through each head; experts: rows each receives).
ROWS = (1, 4, 16, 64, 256)
#: Bytes of distinct weights a point cycles through (weights from HBM, not L2).
STREAM_BYTES = 256e6
HEADER = ["model", "op", "dtype", "groups", "m", "n", "k", "copies", "time_s", "p10", "p90",
          "weight_bytes", "bytes_per_s"]


def group_counts(top: int) -> list[int]:
    """1, 2, 4, … up to ``top`` groups (the whole layer's), ``top`` included."""
    counts, g = [], 1
    while g < top:
        counts.append(g)
        g *= 2
    return [*counts, top]


def measure(out: Path, dry_run: bool, reps: int) -> Path:
    """Time every shape; returns the CSV written."""
    import torch

    dev = "cuda" if torch.cuda.is_available() and not dry_run else "cpu"
    name = torch.cuda.get_device_name().split()[1].lower() if dev == "cuda" else "cpu"
    shapes, rows_per = (SHAPES[:1], ROWS[:2]) if dry_run else (SHAPES, ROWS)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}_grouped_gemm.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for model, op, top, n, k in shapes:
            for groups in group_counts(top)[:2] if dry_run else group_counts(top):
                weight_bytes = groups * n * k * 2
                copies = 2 if dry_run else max(2, min(64, int(STREAM_BYTES // weight_bytes) + 1))
                weights = [torch.randn(groups, k, n, device=dev, dtype=torch.bfloat16)
                           for _ in range(copies)]
                for rows in rows_per:
                    x = torch.randn(groups, rows, k, device=dev, dtype=torch.bfloat16)
                    y = torch.empty(groups, rows, n, device=dev, dtype=torch.bfloat16)

                    def step(x=x, y=y, weights=weights):
                        for wt in weights:
                            torch.bmm(x, wt, out=y)

                    med, p10, p90 = _timed(torch, step, dev, reps)
                    t, lo, hi = med / copies, p10 / copies, p90 / copies
                    w.writerow([model, op, "bf16", groups, groups * rows, n, k, copies,
                                f"{t:.6g}", f"{lo:.6g}", f"{hi:.6g}", weight_bytes,
                                f"{weight_bytes / t:.6g}"])
                    print(f"{model} {op} groups={groups:3d} rows/group={rows:4d} "
                          f"{t * 1e6:9.2f} us {weight_bytes / t / 1e9:8.1f} GB/s", flush=True)
                del weights
    print(f"wrote {path}")
    return path


def _timed(torch, fn, dev: str, reps: int) -> tuple[float, float, float]:
    """Median, 10th and 90th percentile seconds of ``fn()``: on a GPU, one CUDA graph of it
    replayed ``reps`` times between events (``measure_kernels.graph_times``); on the CPU,
    wall-clock calls (the script's logic only)."""
    if dev == "cpu":
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    else:
        from measure_kernels import graph_times  # beside this script

        times = graph_times(fn, reps, inner=1, warmup=1)
    times.sort()
    q = statistics.quantiles(times, n=10) if len(times) > 1 else [times[0]] * 9
    return statistics.median(times), q[0], q[-1]


def compare(path: Path, gpu: str, profile: str | None) -> list[dict]:
    """Each row of a measured CSV beside the model's time (the GPU's shipped profile, or
    ``profile``) and the model's before stop 80; prints a table and the errors' median and p90."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from simulator.gpu import operators as ops
    from simulator.gpu.profiles import default_profile, load_profile
    from simulator.hardware import gpu as gpu_spec

    spec = gpu_spec(gpu)
    prof = load_profile(profile) if profile else default_profile(spec)
    p = {key: float(v) for key, v in prof.fit("gemm").params.items()}
    out = []
    with path.open() as f:
        for row in csv.DictReader(f):
            m, n, k, g = (float(row[c]) for c in ("m", "n", "k", "groups"))
            measured = float(row["time_s"])
            now = float(ops.gemm(p, spec, m, n, k, row["dtype"] == "fp8", g))
            # before stop 80: every byte at one matrix's share (b0 against one group's n·k)
            before = _per_group_share(p, spec, m, n, k, g, row["dtype"] == "fp8")
            out.append({**row, "model_s": now, "before_s": before,
                        "err": now / measured - 1, "err_before": before / measured - 1})
    print(f"{'model':12s} {'op':15s} {'G':>4s} {'m':>6s} {'measured':>10s} {'model':>10s} "
          f"{'before':>10s}")
    for r in out:
        print(f"{r['model']:12s} {r['op']:15s} {r['groups']:>4s} {r['m']:>6s} "
              f"{float(r['time_s']) * 1e6:8.2f}us {r['model_s'] * 1e6:8.2f}us "
              f"{r['before_s'] * 1e6:8.2f}us")
    for label, key in (("model (stop 80)", "err"), ("before stop 80", "err_before")):
        e = np.abs([r[key] for r in out])
        print(f"{label}: median |error| {np.median(e):.1%}, p90 {np.quantile(e, 0.9):.1%} "
              f"over {e.size} rows")
    return out


def _per_group_share(p: dict, spec, m: float, n: float, k: float, g: float,
                     fp8: bool) -> float:
    """The GEMM model with every byte at one group's share, ``em·nk/(nk + b0)`` (before stop
    80) [s]."""
    from simulator.gpu import operators as ops

    e = 1.0 if fp8 else 2.0
    peak = spec.peak_flops * (ops.FP8_PEAK_RATIO.get(spec.name, 2.0) if fp8 else 1.0)
    nbytes = g * n * k * e + m * k * e + m * n * 2.0
    em = p["em"] * n * k / (n * k + p["b0"])
    return p["t0"] + float(ops.smax(nbytes / (spec.hbm_bandwidth * em),
                                    2.0 * m * n * k / (peak * p["ec"]) + k * p["tau"], p["s"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--dry-run", action="store_true", help="run on the CPU, two points")
    ap.add_argument("--compare", type=Path, help="a measured CSV: compare it with the model")
    ap.add_argument("--gpu", default="H200", help="--compare: the GPU it was measured on")
    ap.add_argument("--profile", help="--compare: a profile name (default: the GPU's)")
    args = ap.parse_args(argv)
    if args.compare:
        compare(args.compare, args.gpu, args.profile)
    else:
        measure(args.out, args.dry_run, args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
